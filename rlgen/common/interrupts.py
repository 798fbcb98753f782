"""Stopping a run without losing it: the checkpoint written on Ctrl-C or SIGTERM must not be cut short by the next
signal (a terminal's Ctrl-C reaches a benchmark's jobs directly, and the benchmark then stops them with SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (in the main thread; elsewhere signals never arrive), then restore
    the handlers. The run is stopping anyway: a further signal only repeats the request."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Interrupted(KeyboardInterrupt):
    """An interrupt that says how to go on where ``--resume`` alone is not the way (e.g. the best of several starts,
    which the same command picks up again)."""

    def __init__(self, how_to_go_on: str):
        super().__init__(how_to_go_on)
        self.how_to_go_on = how_to_go_on
