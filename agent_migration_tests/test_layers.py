"""The package's layers: the import-linter contracts hold, and no module imports itself back round a circle.

`lint-imports` (run by .ci/run) checks the layers of pyproject.toml; this test runs it too, and looks for
circles with grimp, the graph import-linter builds (imports inside functions included), since a layers
contract does not forbid a circle among the modules of one package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("source", "transform", "postgres")


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("agent_migration", include_external_packages=True)


def _circles(graph: grimp.ImportGraph) -> list[set[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    mods = [m for m in graph.modules if m.startswith("agent_migration")]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[set[str]] = []
    for root in mods:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c.startswith("agent_migration")), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(group)
    return found


def test_no_module_imports_itself_back_round_a_circle():
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_planted_circle():
    graph = _graph()
    graph.add_import(importer="agent_migration.core.tables", imported="agent_migration.core.rules")
    graph.add_import(importer="agent_migration.core.rules", imported="agent_migration.core.tables")
    assert {"agent_migration.core.tables", "agent_migration.core.rules"} in _circles(graph)


def test_the_stages_meet_only_in_core_and_only_the_dagster_layer_imports_dagster():
    graph = _graph()
    for stage in STAGES:
        for other in STAGES:
            if other != stage:
                assert not graph.chain_exists(f"agent_migration.{stage}", f"agent_migration.{other}", as_packages=True)
    for below in (*STAGES, "core", "preflight", "rollback", "validation"):
        assert not graph.chain_exists(f"agent_migration.{below}", "dagster", as_packages=True), below


def test_the_import_contracts_of_pyproject_hold():
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout
