"""Measuring one step: wall time and peak RSS of a command's process tree, polled every 50 ms."""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

MIB = 1024 * 1024


class StepFailed(Exception):
    """A step that the benchmark cannot go on without failed (its message says which and why)."""


@dataclass
class Measurement:
    wall: float
    peak_largest: int  # bytes
    peak_sum: int
    returncode: int
    output_tail: str


def _high_water(proc: psutil.Process) -> int:
    """The process's own peak RSS so far (Linux VmHWM: catches peaks between two polls), else its RSS."""
    with suppress(OSError, ValueError, StopIteration), open(f"/proc/{proc.pid}/status", "rb") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(b"VmHWM:"))
    return proc.memory_info().rss


def _sample(root: psutil.Process) -> tuple[int, int]:
    """(largest peak RSS of one process so far, sum of the current RSS) over `root` and its descendants."""
    largest, total = 0, 0
    with suppress(psutil.Error):
        for proc in [root, *root.children(recursive=True)]:
            with suppress(psutil.Error):
                total += proc.memory_info().rss
                largest = max(largest, _high_water(proc))
    return largest, total


def measure(cmd: list[str], log: Path, poll: float = 0.05, **popen_kw) -> Measurement:
    """Run `cmd` (output to `log`): wall time, peak RSS of its largest process and of its process tree."""
    with open(log, "wb") as out:
        start = next_poll = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **popen_kw)
        root, largest, total = psutil.Process(proc.pid), 0, 0
        while True:
            if time.perf_counter() >= next_poll:
                peak, now = _sample(root)
                largest, total = max(largest, peak), max(total, now)
                next_poll += poll
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.002)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    return Measurement(wall, largest, max(total, largest), proc.returncode, tail)


def combine(parts: list[Measurement]) -> Measurement:
    """Consecutive commands as one step: walls add up, peaks are the highest."""
    return Measurement(
        sum(m.wall for m in parts),
        max(m.peak_largest for m in parts),
        max(m.peak_sum for m in parts),
        next((m.returncode for m in parts if m.returncode), 0),
        "\n".join(m.output_tail for m in parts),
    )
