"""A test hook: stop an apply in the middle so a test can SIGKILL it there.

TCPTUNE_TEST_PAUSE_AFTER_WRITES=N makes apply print "tcptune-test: paused after N writes"
to stderr and sleep (TCPTUNE_TEST_PAUSE_SECONDS, default 60) after its N-th sysctl write.
It has no other effect.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "TCPTUNE_TEST_PAUSE_AFTER_WRITES"
PAUSE_SECONDS_ENV = "TCPTUNE_TEST_PAUSE_SECONDS"


def pause_after_writes(writes: int) -> None:
    want = os.environ.get(PAUSE_ENV)
    if want and want.isdigit() and int(want) == writes:
        sys.stderr.write(f"tcptune-test: paused after {writes} writes\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "60")))
