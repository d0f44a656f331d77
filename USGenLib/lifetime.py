"""A job's processes end together, and cleanly when they can.

- SIGTERM and SIGHUP (Slicer's Cancel, a closed terminal, a batch system's stop) raise
  ``JobInterrupted`` in the main thread, as Ctrl-C raises KeyboardInterrupt, so every ``finally``
  block runs: temporaries are removed, helper processes stopped.
- Helper processes (dataset workers, ffmpeg) ask the kernel to kill them when the process that
  started them dies, even by SIGKILL, which no handler sees (Linux ``PR_SET_PDEATHSIG``; elsewhere
  workers watch their parent, and ffmpeg stops when its input pipe closes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1
# Loaded now, not in a freshly forked child, where loading a library could deadlock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if _LINUX else None
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


class JobInterrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which (the CLI exits with 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    for sig in STOP_SIGNALS:  # a second signal must not cut the cleanup short; SIGKILL still can
        signal.signal(sig, signal.SIG_IGN)
    raise JobInterrupted(signum)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise JobInterrupted in the main thread; the handlers
    before are restored after (``usgen`` also runs inside other programs' processes: tests,
    Slicer's Python console). Outside the main thread, where handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def die_with_parent() -> None:
    """In a child process: have the kernel SIGKILL it when its parent dies (Linux; a no-op
    elsewhere). Safe as a ``subprocess.Popen`` ``preexec_fn``."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def exit_with_parent(parent_pid: int) -> None:
    """In a worker process: end when ``parent_pid`` ends. Also leaves stop signals to their
    default and Ctrl-C to the parent, which stops the workers itself."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _prctl is not None:
        die_with_parent()
        if os.getppid() != parent_pid:  # the parent died before the request was made
            os._exit(1)
        return

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="usgen-parent-watch", daemon=True).start()
