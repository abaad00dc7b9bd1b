"""How the driver takes Ctrl-C and SIGTERM: the first asks for a checkpoint and a clean stop, a second
(sent later) stops at once."""

from __future__ import annotations

import signal
import sys
import time


class StopFlag:
    """First Ctrl-C or SIGTERM: finish the current step, checkpoint, stop. Second: stop at once.

    A second signal within ``SAME_REQUEST_S`` of the first is the same request delivered twice:
    GNU ``timeout`` signals its child and then the child's whole process group, and a batch
    scheduler may signal every process of a job, so the driver gets one SIGTERM from each.
    """

    SAME_REQUEST_S = 2.0

    def __init__(self) -> None:
        self.set = False
        self.signum = int(signal.SIGINT)
        self.first_at: float | None = None  # None until the first request is fully taken

    def __call__(self, signum, frame) -> None:
        # Python runs a pending handler at the next call, also inside this one: a second SIGTERM that
        # lands while the first is handled re-enters here. Read and set the flag with no call between,
        # so the nested one sees the first request taken and does not announce it again.
        already, self.set = self.set, True
        if already:
            if self.first_at is None or time.monotonic() - self.first_at < self.SAME_REQUEST_S:
                return
            raise KeyboardInterrupt
        self.signum = int(signum)
        self.first_at = time.monotonic()
        print(
            f"\n{signal.Signals(signum).name}: finishing the current step and writing a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum
