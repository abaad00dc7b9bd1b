"""resume_mismatch: which edits of a run's config a checkpoint can continue under."""

from curriculum.core.overrides import build_config
from curriculum.core.resume_check import resume_mismatch
from curriculum.core.scheduler import SchedulerState

SAVED = build_config("tiny", None, [])  # 10-20-30-40


def edited(*overrides):
    return build_config("tiny", None, list(overrides))


def test_later_stages_gates_and_budgets_may_change_but_not_the_ladder_trained():
    in_stage_1 = SchedulerState(stage=1)
    assert resume_mismatch(SAVED, SAVED, in_stage_1) is None
    assert resume_mismatch(SAVED, edited("curriculum.stages.2.size=35", "train.lr=1e-4"), in_stage_1) is None
    assert resume_mismatch(SAVED, edited("curriculum.stages.1.gate.threshold=0.5"), in_stage_1) is None
    assert "curriculum.stages.1.size is 25" in resume_mismatch(SAVED, edited("curriculum.stages.1.size=25"), in_stage_1)
    in_stage_3 = SchedulerState(stage=3)
    shorter = build_config("smoke", None, [])  # two stages
    assert "in stage 3 (40x40), but the config has 2 stages" in resume_mismatch(SAVED, shorter, in_stage_3)
