"""The clock, for use cases that sample twice (doctor's counter rates): one place to read it."""

from __future__ import annotations

import time


def now() -> float:
    """Monotonic seconds: a rate's window must not jump with the wall clock."""
    return time.monotonic()


def wait(seconds: float) -> None:
    time.sleep(seconds)
