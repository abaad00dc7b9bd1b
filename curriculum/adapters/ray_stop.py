"""A stop request from the driver to Ray Train workers: a flag actor the driver sets, polled by each worker
without ever blocking a training step."""

from __future__ import annotations


class Flag:
    """A Ray actor holding one boolean: the driver sets it when the run is asked to stop."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


class StopPoller:
    """``stop_requested`` of a worker: asks the driver's flag with at most one request in flight, so a
    training step never waits for the answer."""

    def __init__(self, flag) -> None:
        self.flag, self.pending, self.stopped = flag, None, False

    def __call__(self) -> bool:
        import ray
        from ray.exceptions import RayActorError

        if self.stopped or self.flag is None:
            return self.stopped
        if self.pending is None:
            self.pending = self.flag.is_set.remote()
        ready, _ = ray.wait([self.pending], timeout=0)
        if ready:
            try:
                self.stopped = bool(ray.get(self.pending))
            except RayActorError:  # the driver that owns the flag is gone: stop with a checkpoint
                self.stopped = True
            self.pending = None
        return self.stopped
