"""Keeping freed memory: large tensors freed and allocated again stop costing page faults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from curriculum.core.presets import preset_config
from curriculum.trainer.host_memory import ALLOCATOR_ENV, is_glibc, keep_freed_memory, ray_runtime_env

glibc_only = pytest.mark.skipif(not is_glibc(), reason="the settings are glibc's")

# Allocates and frees a 100 MiB tensor, five times to warm up and then ten times, on the main thread or on a
# thread of its own (as a Ray Train worker runs the loop), and prints the minor page faults those ten cost.
_PROBE = textwrap.dedent(
    """
    import resource, sys, threading, torch
    from curriculum.trainer.host_memory import keep_freed_memory

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def work(out):
        torch.empty(1000).fill_(1)  # the thread takes its allocator arena before any setting
        if sys.argv[1] == "keep":
            keep_freed_memory()
        for _ in range(5):  # the heap settles after a few (holes left between blocks fill up)
            torch.empty(25 * 2**20).fill_(1)
        before = faults()
        for _ in range(10):
            torch.empty(25 * 2**20).fill_(1)
        out.append(faults() - before)

    out = []
    if sys.argv[2] == "thread":
        thread = threading.Thread(target=work, args=(out,))
        thread.start()
        thread.join()
    else:
        work(out)
    print(out[0])
    """
)


def _faults(mode: str, where: str, env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, where],
        env={**clean, **env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


@glibc_only
def test_keeping_freed_memory_stops_the_page_faults_of_large_tensors():
    pages = 10 * 100 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    returned = _faults("system", "main", {})
    kept = _faults("keep", "main", {})
    assert returned >= pages * 9 // 10  # each new tensor is a fresh mapping, every page faulted in again
    assert kept <= returned // 2


@glibc_only
def test_a_worker_thread_needs_the_environment_not_only_mallopt():
    returned = _faults("keep", "thread", {})  # its own arena maps large blocks whatever mallopt says
    kept = _faults("system", "thread", ALLOCATOR_ENV)
    assert kept <= returned // 2


@glibc_only
def test_keep_freed_memory_reports_that_glibc_took_the_settings():
    assert keep_freed_memory() is True


def test_the_workers_runtime_env_follows_the_config_field():
    config = preset_config("smoke")
    assert config.train.keep_freed_memory is True
    off = config.model_copy(update={"train": config.train.model_copy(update={"keep_freed_memory": False})})
    assert ray_runtime_env(off.train.keep_freed_memory) is None
    expected = {"env_vars": ALLOCATOR_ENV} if is_glibc() else None
    assert ray_runtime_env(config.train.keep_freed_memory) == expected
