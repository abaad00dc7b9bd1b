"""benchmarks/device_check.py: its dry run end to end, where neither Ray nor MLflow can be imported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.py"

# Loaded at interpreter start from PYTHONPATH: the GPU machine has neither package.
BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mlflow', 'ray', 'matplotlib'):
            raise ImportError(name + ' is not installed on the GPU machine')
sys.meta_path.insert(0, _Block())
"""


def test_dry_run_measures_and_writes_json_and_markdown_without_ray_or_mlflow(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert report["dry_run"] is True and report["device"].startswith("cpu")
    rows = report["throughput"]
    assert [(r["preset"], r["size"]) for r in rows] == [("smoke", 8), ("smoke", 10)]
    for row in rows:
        assert "error" not in row, row
        assert row["ms_per_step"] > 0 and row["tflops"] > 0 and row["share_of_peak"] is None  # no GPU peak on a CPU
        assert row["tokens_per_s"] == pytest.approx(
            row["batch"] * (row["size"] ** 2 + 1) / row["ms_per_step"] * 1e3, rel=0.01
        )
    assert report["memory"] == [{"skipped": "no CUDA device: peak memory is a GPU measurement"}]
    run = report["curriculum"]
    assert "error" not in run, run
    assert run["steps"] == 20 and set(run["held_out"]) == {"8", "10"}
    assert 0.0 <= run["held_out"]["10"]["valid_route"] <= 1.0
    table = (tmp_path / "out" / "device_check.md").read_text()
    assert "| smoke | 10×10 | 4 |" in table and "| 10×10 |" in table
    assert table in result.stdout


def test_missing_packages_without_a_wheel_folder_stop_with_the_recipe(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import device_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setattr(device_check, "NEEDED", {"no_such_module_here": "no-such-package"})
    with pytest.raises(SystemExit, match="no-such-package missing and no wheel folder"):
        device_check.ensure_dependencies(tmp_path / "no-wheels")
