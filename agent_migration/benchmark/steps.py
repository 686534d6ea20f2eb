"""One run of every step of one scale, each as a measured subprocess on fresh databases."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent_migration.benchmark.databases import change_one_percent, count_rows, recreate
from agent_migration.benchmark.limits import run_arrow_limit, run_copy_limit, run_pgloader
from agent_migration.benchmark.measure import Measurement, StepFailed, measure
from agent_migration.benchmark.phases import phases_of

PROJECT = Path(__file__).resolve().parents[2]  # the job runs this copy of agent_migration
DATABASES = {
    "migrate": "bench_migrate",
    "pgloader": "bench_pgloader",
    "copy": "bench_copy",
    "arrow": "bench_arrow",
    "rejects": "bench_rejects",
}
STEPS = {
    "migrate": "migrate (full job)",
    "validate": "validate (full job)",
    "resync_nochange": "re-sync, no change",
    "resync_1pct": "re-sync, 1 % changed",
    "cutover": "cutover, 1 % changed since validate",
    "pgloader": "pgloader",
    "copy_limit": "CSV + COPY limit",
    "arrow_limit": "Arrow-native copy limit",
    "migrate_rejects": "migrate, every agent rejected",
}
OPTIONAL = ("pgloader", "copy_limit", "arrow_limit", "migrate_rejects")  # what --skip may leave out
NOT_FATAL = ("pgloader", "migrate_rejects")  # a failure is reported; the other steps still run
REJECTS_ENV = {"MIGRATION_MAX_REJECT_SHARE": "1"}  # the reject-heavy run: no share of rejects stops it

Results = dict[str, tuple[Measurement, int]]  # step -> (measurement, source rows)
JOBS = ("migrate", "resync_nochange", "resync_1pct", "cutover", "migrate_rejects")  # Dagster runs: phases from their records


@dataclass
class Bench:
    """One scale's benchmark: its folder, the server, and what happened beyond the measurements."""

    scale: str
    workdir: Path
    admin_url: str
    server_side: bool  # COPY reads the CSV files itself
    skipped: dict[str, str]  # step -> why it does not run
    failed: dict[str, str] = field(default_factory=dict)  # step (not fatal) -> "failed (exit N; see LOG)"
    changed: int = 0  # source rows changed before the 1 % re-sync
    changed_before_cutover: int = 0  # source rows changed between validate and cutover

    @property
    def pristine(self) -> Path:
        return self.workdir / "pristine.sqlite"

    @property
    def rejects(self) -> Path:
        """The reject-heavy source (`write_reject_heavy` of the pristine one)."""
        return self.workdir / "rejects.sqlite"

    def status(self, step: str) -> str:
        return self.skipped.get(step) or self.failed.get(step) or "ok"

    def log(self, rep: int, step: str) -> Path:
        return self.workdir / "logs" / f"{self.scale}-{rep}-{step}.log"


def dagster_job(job: str = "migrate") -> list[str]:
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    return [dagster, "job", "execute", "-m", "agent_migration", "-j", job]


def job_env(home: Path, source: Path, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The job's environment: its source and target, a Dagster home in `home`, this copy of the project."""
    env = {**os.environ, "SQLITE_PATH": str(source), "DATABASE_URL": url, **(extra or {})}
    env["DAGSTER_HOME"] = str(home / "dagster_home")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    return env


def fresh_state(home: Path) -> None:
    """No state of an earlier run in `home` (the job keeps its snapshots in .migration under its cwd)."""
    for previous in (".migration", "dagster_home"):
        shutil.rmtree(home / previous, ignore_errors=True)
    (home / "dagster_home").mkdir(parents=True)


class Run:
    """The steps of one repetition: each measured, reported on stderr, failures handled."""

    def __init__(self, bench: Bench, rep: int):
        self.bench, self.rep, self.results, self.phases = bench, rep, {}, {}

    def step(self, name: str, run: Callable[[Path], Measurement], rows: int, home: Path | None = None) -> None:
        if name in self.bench.skipped:
            return
        log = self.bench.log(self.rep, name)
        m = run(log)
        self.results[name] = (m, rows)
        if home is not None and m.returncode == 0:
            self.phases[name] = phases_of(home / "dagster_home", m.wall)
        outcome = "ok" if m.returncode == 0 else f"FAILED (exit {m.returncode})"
        print(
            f"[{self.bench.scale} run {self.rep}] {name}: {m.wall:.2f} s, {outcome}",
            file=sys.stderr,
            flush=True,
        )
        if m.returncode and name not in NOT_FATAL:
            raise StepFailed(f"{name} failed (exit {m.returncode}); last lines:\n{m.output_tail}")
        if m.returncode:
            self.bench.failed[name] = f"failed (exit {m.returncode}; see {log})"
            print(f"{name}: {self.bench.failed[name]}", file=sys.stderr)


def migrate_rejects(bench: Bench, url: str, log: Path) -> Measurement:
    """The full job on the reject-heavy source, in its own folder (own snapshots, own Dagster home)."""
    home = bench.workdir / "rejects"
    fresh_state(home)
    env = job_env(home, bench.rejects, url, REJECTS_ENV)
    return measure(dagster_job(), log, cwd=home, env=env)


def run_once(bench: Bench, rep: int) -> Results:
    """Every step on a fresh copy of the source and fresh databases."""
    workdir, source = bench.workdir, bench.workdir / "db.sqlite"
    shutil.copyfile(bench.pristine, source)
    fresh_state(workdir)
    urls = {key: recreate(bench.admin_url, name) for key, name in DATABASES.items()}
    env, job = job_env(workdir, source, urls["migrate"]), dagster_job()
    run = Run(bench, rep)

    def migrate(log: Path) -> Measurement:
        return measure(job, log, cwd=workdir, env=env)

    rows = sum(count_rows(source).values())
    run.step("migrate", migrate, rows, workdir)
    run.step("resync_nochange", migrate, rows, workdir)
    bench.changed = change_one_percent(source)
    rows = sum(count_rows(source).values())
    run.step("resync_1pct", migrate, rows, workdir)
    # The runbook: validate while the app writes (every row proven; its ledger recorded), ~1 % more changes,
    # then the cutover: the final re-sync, and the proof of the rows changed since validate.
    run.step("validate", lambda log: measure(dagster_job("validate"), log, cwd=workdir, env=env), rows)
    bench.changed_before_cutover = change_one_percent(source, tag="cut_")
    rows = sum(count_rows(source).values())
    run.step("cutover", lambda log: measure(dagster_job("cutover"), log, cwd=workdir, env=env), rows, workdir)
    run.step("pgloader", lambda log: run_pgloader(workdir, source, urls["pgloader"], log), rows)
    copy, server_side = urls["copy"], bench.server_side
    run.step("copy_limit", lambda log: run_copy_limit(workdir, source, copy, server_side, log), rows)
    run.step("arrow_limit", lambda log: run_arrow_limit(workdir, source, urls["arrow"], log), rows)
    if "migrate_rejects" not in bench.skipped:
        rows = sum(count_rows(bench.rejects).values())
        run.step("migrate_rejects", lambda log: migrate_rejects(bench, urls["rejects"], log), rows, workdir / "rejects")
    return run.results, run.phases
