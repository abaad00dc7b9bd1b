"""The end-of-run summary table: steps and minutes per stage, final held-out metrics."""

from __future__ import annotations

from curriculum.core.config import RunConfig
from curriculum.core.outcome import RunOutcome

SHOWN = ("connectivity", "valid_route", "optimal", "exact", "excess", "cost_ratio")


def summary_table(config: RunConfig, outcome: RunOutcome) -> str:
    """Plain-text table of the run."""
    stages = config.curriculum.stages
    lines = [
        f"outcome: {outcome.outcome} at step {outcome.step} (stage {outcome.stage}, "
        f"{stages[outcome.stage].size}x{stages[outcome.stage].size})",
        "",
    ]
    lines.append(f"{'#':>2} | {'grid':>6} | {'steps':>7} | {'minutes':>7} | how it ended")
    # Stage visits in order, rebuilt from the transitions (back-offs can revisit a stage).
    visits, current = [], 0
    for t in outcome.transitions:
        visits.append((current, t["action"], t.get("value")))
        current = t["to_stage"]
    if not outcome.transitions or outcome.transitions[-1]["action"] not in ("finish", "stall"):
        visits.append((current, "running" if outcome.outcome == "killed" else outcome.outcome, None))
    for i, (stage, how, value) in enumerate(visits):
        steps = outcome.stage_steps[i] if i < len(outcome.stage_steps) else 0
        seconds = outcome.stage_seconds[i] if i < len(outcome.stage_seconds) else 0.0
        size = stages[stage].size
        detail = f"{how} ({stages[stage].gate.metric} {value:.3f})" if value is not None else how
        lines.append(f"{stage:>2} | {size:>2}x{size:<3} | {steps:>7} | {seconds / 60:>7.1f} | {detail}")
    if outcome.final_metrics:
        lines.append("")
        lines.append(
            "final held-out: "
            + ", ".join(
                f"{name} {outcome.final_metrics[f'eval/{name}']:.3f}"
                for name in SHOWN
                if f"eval/{name}" in outcome.final_metrics
            )
        )
    return "\n".join(lines)
