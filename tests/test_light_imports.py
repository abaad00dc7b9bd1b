"""Run configs load without torch, Numba, Ray or MLflow, so a bad config is reported at once; the oracle
package still offers every name it did."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "numba", "ray", "mlflow")


def _loaded_after(statement: str) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after running ``statement``."""
    probe = f"import sys\n{statement}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


@pytest.mark.parametrize(
    "statement",
    [
        "import curriculum.core.config",
        "from curriculum.core.overrides import build_config; build_config('tiny', overrides=['train.lr=3e-4'])",
        "import routing.penalties, routing.metric_names, oracle.spec",
    ],
)
def test_configs_load_without_the_heavy_packages(statement: str):
    assert _loaded_after(statement) == []


def test_the_probe_sees_a_heavy_import():
    # The check above could pass by never seeing anything: here a module that needs torch shows it.
    assert _loaded_after("import routing.losses") == ["torch"]


def test_the_oracle_package_loads_each_name_from_its_module_on_first_use():
    import oracle
    import oracle.generator

    assert oracle.generate_tasks is oracle.generator.generate_tasks
    from oracle import TaskSpec, verify_paths  # from-imports go through the same lookup

    assert TaskSpec.__module__ == "oracle.spec" and verify_paths.__module__ == "oracle.verify"
    assert {"generate_tasks", "TaskBatch", "load_dataset"} <= set(dir(oracle))
    with pytest.raises(AttributeError, match="no attribute 'generate_task'"):
        oracle.generate_task  # noqa: B018 - a misspelt name fails as on any module


def test_a_bad_run_config_is_reported_before_torch_or_ray_load(tmp_path):
    # -X importtime lists every module the command imported, on stderr beside the error itself.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "curriculum.run", "model.hidden_size=-1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(errors) == 1 and "model.hidden_size" in errors[0], done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert imported & set(HEAVY) == set()
    assert "curriculum.core.config" in imported  # the probe does list what was loaded
    assert not any(tmp_path.iterdir())  # and the refused run left nothing behind
