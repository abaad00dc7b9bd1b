"""The driver's Ctrl-C and SIGTERM handler as a value: one request announced once, however it is delivered;
a second request later stops at once."""

from __future__ import annotations

import signal

import pytest

from curriculum.cli import stop_flag
from curriculum.cli.stop_flag import StopFlag

ANNOUNCEMENT = "SIGTERM: finishing the current step"


class Clock:
    """``time.monotonic`` under the test's control; ``during_first_read`` runs inside the first reading,
    where Python may run a handler for a signal that arrived meanwhile."""

    def __init__(self, during_first_read=None) -> None:
        self.now = 100.0
        self.during_first_read = during_first_read

    def __call__(self) -> float:
        nested, self.during_first_read = self.during_first_read, None
        if nested is not None:
            nested()
        return self.now


def test_the_same_sigterm_twice_at_once_is_one_request(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(stop_flag.time, "monotonic", clock)
    stop = StopFlag()
    stop(signal.SIGTERM, None)
    clock.now += StopFlag.SAME_REQUEST_S / 2
    stop(signal.SIGTERM, None)
    assert stop.set and stop.exit_code == 143
    assert capsys.readouterr().err.count(ANNOUNCEMENT) == 1


def test_a_sigterm_that_lands_while_the_first_is_handled_is_not_announced_again(monkeypatch, capsys):
    stop = StopFlag()
    # The second delivery (timeout's signal to the group) re-enters the handler mid-way through the first.
    monkeypatch.setattr(stop_flag.time, "monotonic", Clock(during_first_read=lambda: stop(signal.SIGTERM, None)))
    stop(signal.SIGTERM, None)
    assert stop.set and stop.exit_code == 143 and stop.first_at == 100.0
    assert capsys.readouterr().err.count(ANNOUNCEMENT) == 1


def test_a_second_request_later_stops_at_once(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(stop_flag.time, "monotonic", clock)
    stop = StopFlag()
    stop(signal.SIGINT, None)
    clock.now += StopFlag.SAME_REQUEST_S + 0.1
    with pytest.raises(KeyboardInterrupt):
        stop(signal.SIGINT, None)
    assert stop.exit_code == 130 and capsys.readouterr().err.count("SIGINT: finishing the current step") == 1
