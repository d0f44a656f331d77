"""Progress reporting: tqdm bars for people, one JSON object per line for machines (the Slicer module).

The CLI picks the mode once (``configure``); library code only calls ``progress(...)``.
JSON lines look like ``{"progress": 0.4, "stage": "convert", "message": "frame 12/30"}``; the
last line of a job is ``{"progress": 1.0, "stage": "done", "outputs": [...]}`` (see cli.py).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_MODE = "bar"  # "bar" | "json" | "quiet"


def configure(mode: str) -> None:
    global _MODE
    if mode not in ("bar", "json", "quiet"):
        raise ValueError(f"unknown progress mode {mode!r}")
    _MODE = mode


def mode() -> str:
    return _MODE


def emit(obj: dict) -> None:
    """Print one JSON line on stdout (json mode only)."""
    if _MODE == "json":
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class _Reporter:
    def __init__(self, total: int, stage: str, unit: str = "frame"):
        self.total = max(int(total), 1)
        self.stage = stage
        self.done = 0
        # delay: only jobs longer than a second get a bar
        self._bar = tqdm(total=total, desc=stage, unit=unit, leave=False, file=sys.stderr,
                         disable=_MODE != "bar", mininterval=0.5, delay=1.0)
        self._last = -1.0

    def update(self, n: int = 1, message: str | None = None) -> None:
        self.done += n
        self._bar.update(n)
        frac = min(self.done / self.total, 1.0)
        if _MODE == "json" and (frac - self._last >= 0.01 or frac >= 1.0):
            self._last = frac
            obj = {"progress": round(frac, 4), "stage": self.stage}
            if message:
                obj["message"] = message
            emit(obj)

    def close(self) -> None:
        self._bar.close()


@contextmanager
def progress(total: int, stage: str, unit: str = "frame") -> Iterator[_Reporter]:
    """Context manager yielding a reporter with ``update(n)``."""
    rep = _Reporter(total, stage, unit)
    try:
        yield rep
    finally:
        rep.close()


def track(items: Iterable[T], total: int, stage: str, unit: str = "item") -> Iterator[T]:
    """Iterate ``items`` while reporting progress."""
    with progress(total, stage, unit) as rep:
        for item in items:
            yield item
            rep.update(1)
