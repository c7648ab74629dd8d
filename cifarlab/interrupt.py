"""Ctrl-C and SIGTERM during training: finish the current step, then stop cleanly.

While training runs, SIGINT and SIGTERM only set a flag that the loop checks after each step; a
second Ctrl-C stops at once. The previous handlers come back when training ends.
"""

from __future__ import annotations

import signal
import sys
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequests:
    """`graceful_sigterm=False` leaves SIGTERM alone: under torchrun it is how the launcher ends the
    other processes when one fails, and they must then stop at once rather than wait for a step."""

    def __init__(self, graceful_sigterm: bool = True):
        self.signal: int | None = None
        self._previous: dict = {}
        self.signals = tuple(EXIT_CODES) if graceful_sigterm else (signal.SIGINT,)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @property
    def requested(self) -> bool:
        return self.signal is not None
