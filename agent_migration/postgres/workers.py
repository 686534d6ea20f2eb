"""Statements run on several PostgreSQL connections at once, each as soon as what it needs is done.

A task commits on its own connection when it ends; the first error stops every worker (a task already
running finishes) and is raised in the caller's thread. Nothing here logs: Dagster's logger belongs to
the step's thread, so timings are returned for the caller to report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable  # (cursor) -> None
    after: tuple[str, ...] = ()
    phase: str = ""  # what the caller sums timings by (e.g. "copy", "indexes")


class _Board:
    """The tasks not started yet, in priority order, and what is done; guarded by one condition."""

    def __init__(self, tasks: list[Task]):
        names = {t.name for t in tasks}
        if missing := {a for t in tasks for a in t.after} - names:
            raise ValueError(f"tasks wait for unknown tasks: {sorted(missing)}")
        self.pending, self.done, self.errors = list(tasks), set(), []
        self.seconds: dict[str, float] = {}
        self.cond = threading.Condition()

    def take(self) -> Task | None:
        """The first task whose prerequisites are done; None when no task is left or one failed."""
        with self.cond:
            while True:
                if self.errors or not self.pending:
                    return None
                for i, task in enumerate(self.pending):
                    if all(a in self.done for a in task.after):
                        return self.pending.pop(i)
                self.cond.wait()

    def finish(self, task: Task, seconds: float, error: BaseException | None) -> None:
        with self.cond:
            if error is not None:
                self.errors.append(error)
            else:
                self.done.add(task.name)
                self.seconds[task.name] = seconds
            self.cond.notify_all()


def _work(board: _Board, connect: Callable[[], AbstractContextManager], setup: Callable) -> None:
    try:
        with connect() as conn:
            with conn.cursor() as cur:
                setup(cur)
            conn.commit()
            while (task := board.take()) is not None:
                started = time.perf_counter()
                try:
                    with conn.cursor() as cur:
                        task.run(cur)
                    conn.commit()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    conn.rollback()
                    board.finish(task, 0.0, exc)
                    return
                board.finish(task, time.perf_counter() - started, None)
    except BaseException as exc:  # noqa: BLE001 - a connection that could not be opened
        with board.cond:
            board.errors.append(exc)
            board.cond.notify_all()


def run_tasks(
    tasks: list[Task], connect: Callable[[], AbstractContextManager], workers: int, setup: Callable = lambda cur: None
) -> dict[str, float]:
    """Run `tasks` on `workers` connections (each opened with `connect`, then `setup(cursor)` once), each
    task after the tasks it names in `after`, earlier tasks first. -> seconds per task."""
    board = _Board(tasks)
    threads = [
        threading.Thread(target=_work, args=(board, connect, setup), name=f"pg-worker-{i}", daemon=True)
        for i in range(max(1, min(workers, len(tasks))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if board.errors:
        raise board.errors[0]
    return board.seconds
