"""The command: `python -m agent_migration.benchmark [--scale S[,S...]] ...` (see the package's docstring)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from agent_migration.benchmark.databases import count_rows, database_url, describe_target, server_version
from agent_migration.benchmark.limits import arrow_missing
from agent_migration.benchmark.measure import StepFailed
from agent_migration.benchmark.report import markdown, summarize
from agent_migration.benchmark.steps import DATABASES, OPTIONAL, Bench, run_once
from agent_migration.postgres import embedded
from agent_migration.sample import SCALES, write_reject_heavy, write_sample

BULKY = ("pristine.sqlite", "db.sqlite", "rejects.sqlite", "csv", "pgdata", ".migration", "dagster_home")
BULKY += ("rejects",)


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
    for name in BULKY:
        path = workdir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _names(choices):
    """An argparse type: a comma-separated list of `choices` (order kept, duplicates dropped)."""

    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
        if not names or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (got {text!r})")
        return names

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent_migration.benchmark",
        description="The migration benchmark: the whole `migrate` job against pgloader, the CSV + COPY and "
        "Arrow-native limits (the steps: the package's docstring).",
    )
    parser.add_argument(
        "--scale",
        type=_names(SCALES),
        default=["small"],
        metavar="SCALE[,SCALE...]",
        help=f"one or more of {', '.join(SCALES)}, e.g. medium,large (default small)",
    )
    parser.add_argument("--workdir", help="folder for the source, logs and embedded server (kept as is)")
    parser.add_argument("--json", help="where to write the JSON report (default WORKDIR/benchmark.json)")
    parser.add_argument("--database-url", help="any database of a server to use instead of an embedded one")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole sequence (medians reported)")
    parser.add_argument(
        "--skip",
        type=_names(OPTIONAL),
        default=[],
        metavar="STEP[,STEP...]",
        help=f"steps not to run: {', '.join(OPTIONAL)}",
    )
    parser.add_argument(
        "--skip-pgloader", action="store_true", help="do not run pgloader (= --skip pgloader)"
    )
    parser.add_argument("--keep-server", action="store_true", help="leave the embedded server running")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.argv = argv
    return args


def skipped_steps(args: argparse.Namespace) -> dict[str, str]:
    """Step -> why it does not run: asked for, or a tool missing (said once on stderr)."""
    skipped = {step: "skipped (--skip)" for step in args.skip}
    if args.skip_pgloader:
        skipped["pgloader"] = "skipped (--skip-pgloader)"
    missing = {"pgloader": None if shutil.which("pgloader") else "not installed (apt-get install pgloader)"}
    missing["arrow_limit"] = arrow_missing()
    for step, why in missing.items():
        if why and step not in skipped:
            skipped[step] = why
            print(f"{step}: {why}", file=sys.stderr)
    return skipped


def context(args: argparse.Namespace, admin_url: str) -> dict:
    """What every scale's report shares: the command, date, machine and target."""
    memory = psutil.virtual_memory().total / 2**30
    return {
        "command": shlex.join(["python", "-m", "agent_migration.benchmark", *args.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "memory_gib": round(memory, 1)},
        "target": describe_target(admin_url, args.database_url is None),
        "server_version": server_version(admin_url),
    }


def run_scale(scale: str, args, workdir: Path, admin_url: str, shared: dict, skipped: dict) -> dict:
    """Write the scale's sources (timed, in no ratio), run every step `--repeat` times, summarize."""
    bench = Bench(scale, workdir, admin_url, args.database_url is None, dict(skipped))
    start = time.perf_counter()
    write_sample(bench.pristine, scale=scale, seed=0, messy=False, overwrite=True)
    source = {"rows": count_rows(bench.pristine), "generate_s": round(time.perf_counter() - start, 2)}
    if "migrate_rejects" not in bench.skipped:
        start = time.perf_counter()
        write_reject_heavy(bench.pristine, bench.rejects, overwrite=True)
        source["reject_heavy_s"] = round(time.perf_counter() - start, 2)
    done = [run_once(bench, rep) for rep in range(1, args.repeat + 1)]
    return summarize(bench, [r for r, _ in done], source, shared, [p for _, p in done])


def write_json(path: Path, shared: dict, reports: dict[str, dict]) -> None:
    """Every scale under "scales"; with a single scale, its report is also the top level (as before)."""
    top = dict(next(iter(reports.values()))) if len(reports) == 1 else dict(shared)
    path.write_text(json.dumps({**top, "scales": reports}, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = prepare_workdir(args.workdir)
    json_path = Path(args.json or workdir / "benchmark.json").resolve()
    pgdata, reports, status, skipped = workdir / "pgdata", {}, 0, skipped_steps(args)
    try:
        admin_url = args.database_url or embedded.ensure_database(pgdata, "postgres")
        shared = context(args, admin_url)
        for scale in args.scale:
            reports[scale] = report = run_scale(scale, args, workdir, admin_url, shared, skipped)
            write_json(json_path, shared, reports)
            print(markdown(report) + "\n", flush=True)
            if report["steps"]["migrate_rejects"]["status"].startswith("failed"):
                status = 1  # reported in the table; every other step ran
    except StepFailed as exc:
        print(f"benchmark: {exc}\nlogs: {workdir / 'logs'}", file=sys.stderr)
        status = 1
    finally:
        if args.database_url is None and not args.keep_server:
            embedded.stop(pgdata)
        if args.workdir is None and not args.keep_server:
            remove_bulky(workdir)
    if reports:
        print(f"JSON: {json_path}")
    if args.keep_server and args.database_url is None:
        print(f"server kept running: {database_url(admin_url, DATABASES['migrate'])}")
    return status
