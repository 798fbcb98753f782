"""Progress for every wait a user sits through: a tqdm bar on a terminal, and in a pipe or a log file (where a bar
is noise) a log line at each quarter of the way, as training logs every ``log_every`` steps."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger("rlgen")
T = TypeVar("T")


def progress(iterable: Iterable[T], total: int, desc: str, unit: str = "it", parts: int = 4) -> Iterator[T]:
    """Yield from ``iterable`` (``total`` items) with a bar on a terminal, else ``parts`` log lines."""
    if sys.stderr.isatty():
        yield from tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        return
    marks = {max(1, round(total * k / parts)) for k in range(1, parts + 1)} if total > 0 else set()
    for done, item in enumerate(iterable, start=1):
        yield item
        if done in marks:
            log.info("%s: %d/%d %s (%d%%)", desc, done, total, unit, round(100 * done / total))
