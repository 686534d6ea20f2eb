"""Dagster servers the tests start as real processes: ports, GraphQL over HTTP, start-up and shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, text: str, **variables) -> dict:
    body = json.dumps({"query": text, "variables": variables}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def start(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """`cmd` in a process group of its own, so that `stop` reaches every process it spawns."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until_up(base: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:2]} exited with {proc.returncode}:\n{log.read_text()[-5000:]}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{proc.args[:2]} did not answer within {timeout:.0f} s:\n{log.read_text()[-5000:]}")


def stop(proc: subprocess.Popen) -> None:
    """The whole process group: the server, its code servers and run workers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # Dagster's servers shut their children down on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        os.killpg(proc.pid, signal.SIGKILL)  # whatever outlived it (or ignored SIGTERM)
    proc.wait()
