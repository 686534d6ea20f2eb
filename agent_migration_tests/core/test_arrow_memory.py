"""`core/arrow_memory.py`: the code location makes jemalloc Arrow's pool, unless pyarrow's own variable
names another."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW_POOL = "import agent_migration.definitions, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def pool_after_load(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", SHOW_POOL], env=clean | env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize(("named", "expected"), [(None, "jemalloc"), ("system", "system"), ("mimalloc", "mimalloc")])
def test_the_code_location_picks_jemalloc_unless_the_environment_names_a_pool(named, expected):
    assert pool_after_load(**({"ARROW_DEFAULT_MEMORY_POOL": named} if named else {})) == expected
