"""Several runs started at the same moment on a fresh SQLite store: every one gets its MLflow run."""

import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

CREATE_AT = """
import sys, time
from curriculum.adapters.mlflow_store import create_run
uri, at, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, at - time.time()))  # all processes open the new store together
print(create_run(uri, "together", name))
"""


def test_simultaneous_first_runs_on_a_new_sqlite_store_all_start(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    at = time.time() + 8.0  # after every interpreter has imported MLflow
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_AT, uri, str(at), f"run-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-1500:] for _, err in results]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"run-{i}" for i in range(4)]
    assert {r.info.run_id for r in runs} == {out.strip() for out, _ in results}
