"""Shutdown signals, taken synchronously.

A Python signal handler runs in the main thread between bytecodes, possibly
inside the code it interrupts. A handler that sets a threading.Event can
interrupt that very Event's set() (a second SIGTERM, say, from both `kill -TERM
-PGID` and a parent forwarding it) and deadlock on its non-reentrant lock.
So no handlers: the stop signals are blocked in every thread and the main
thread waits for them with sigwait, in ordinary code.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def block_stop_signals() -> None:
    """Block SIGTERM and SIGINT; call before starting threads, which inherit the mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def wait_for_stop_signal() -> signal.Signals:
    """Sleep until SIGTERM or SIGINT arrives; return which."""
    return signal.Signals(signal.sigwait(STOP_SIGNALS))


def wait_for_stop_signal_while(alive: Callable[[], bool], poll: float = 0.5
                               ) -> signal.Signals | None:
    """Like ``wait_for_stop_signal``, but return None as soon as ``alive()`` turns false
    (the work the process exists for has stopped: it must exit, non-zero)."""
    while alive():
        received = signal.sigtimedwait(STOP_SIGNALS, poll)
        # When the wait is interrupted (EINTR: the process was stopped and continued,
        # SIGSTOP/SIGCONT, a debugger, a frozen cgroup) after its timeout has passed,
        # CPython returns a siginfo the kernel never filled: its si_signo is garbage.
        # Only a signal we wait for is one.
        if received is not None and received.si_signo in STOP_SIGNALS:
            return signal.Signals(received.si_signo)
    return None
