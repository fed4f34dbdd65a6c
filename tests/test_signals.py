"""Waiting for a stop signal survives the process being stopped and continued (SIGSTOP,
SIGCONT: an operator, a debugger, a frozen cgroup): CPython's sigtimedwait then returns
an unfilled siginfo, which once crashed the main thread of `secondary run` and left the
process running with SIGTERM blocked."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

WAITER = """
import sys
from geo_sync.signals import block_stop_signals, wait_for_stop_signal_while
block_stop_signals()
print("waiting", flush=True)
received = wait_for_stop_signal_while(lambda: True, poll=0.2)
print(received.name if received is not None else "none", flush=True)
"""


@pytest.mark.parametrize("stops", [1, 3])
def test_a_stopped_and_continued_waiter_still_takes_sigterm(stops: int) -> None:
    waiter = subprocess.Popen([sys.executable, "-c", WAITER], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert waiter.stdout is not None
        assert waiter.stdout.readline() == "waiting\n"
        for _ in range(stops):
            waiter.send_signal(signal.SIGSTOP)
            time.sleep(0.5)  # longer than the poll, so that the wait's timeout passes
            waiter.send_signal(signal.SIGCONT)
            time.sleep(0.3)
        assert waiter.poll() is None, waiter.communicate()
        waiter.send_signal(signal.SIGTERM)
        out, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert out == "SIGTERM\n"
