"""A test-only switch that kills the run at a named point of the publish, as a crash or `kill -9` would.

`MIGRATION_FAULT_AT=stage|copy|index|swap|swapped|ledger`, armed only by `MIGRATION_FAULT_TESTING=1` beside it (which
only the tests set: the point alone, say a variable left in a shell, does nothing): the kill tests use it to prove that
a run killed in each phase leaves the previous state and that the next run succeeds. The process kills
itself when the point is reached: `stage` once a first load's early copy (while cleaning) sent its
first rows, `copy` once the first rows of a COPY were sent (the COPY is cut off
mid-flight), `index` as a build starts (others may be done or running), `swap` before the swap,
`swapped` after it and before the commit; `ledger` once a validate's ledger is written, before its commit.
"""

from __future__ import annotations

import os
import signal

ENV = "MIGRATION_FAULT_AT"
ARMED = "MIGRATION_FAULT_TESTING"  # the test-only flag: without it `ENV` is ignored


def armed(point: str) -> bool:
    return os.environ.get(ARMED) == "1" and os.environ.get(ENV) == point


def here(point: str) -> None:
    if armed(point):
        os.kill(os.getpid(), signal.SIGKILL)
