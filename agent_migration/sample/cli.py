"""The command `agent-migration-sample` (also `python -m agent_migration.sample`)."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

from agent_migration.sample.catalogue import COLUMNS, COUNT_OF, MESSY_SHARE, SCALES
from agent_migration.sample.write import write_sample


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-migration-sample", description="Write a deterministic sample db.sqlite with messy rows."
    )
    parser.add_argument(
        "path",
        nargs="?",
        default=os.environ.get("SQLITE_PATH", "db.sqlite"),
        help="the file to create (default $SQLITE_PATH, else ./db.sqlite)",
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="leave an existing file alone and exit 0 (for first runs)"
    )
    parser.add_argument("--scale", choices=SCALES, default="small", help="row counts (default small)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--clean", action="store_true", help="clean rows only, no messy cases or scatter")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument(
        "--messy-share", type=float, default=MESSY_SHARE, help="share of clean rows made messy"
    )
    for name, what in COUNT_OF.items():
        parser.add_argument(f"--{what}", type=_count, help=f"rows of {name} (overrides the scale)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the message naming the option
        return int(exc.code or 0)
    if args.if_missing and Path(args.path).exists():
        print(f"agent-migration-sample: using the existing source {args.path}")
        return 0
    started = time.perf_counter()
    try:
        cases = write_sample(
            args.path,
            scale=args.scale,
            seed=args.seed,
            messy=not args.clean,
            overwrite=args.force,
            messy_share=args.messy_share,
            **{what: getattr(args, what) for what in COUNT_OF.values()},
        )
    except FileExistsError:
        print(
            f"agent-migration-sample: {args.path} already exists (use --force to overwrite)", file=sys.stderr
        )
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"agent-migration-sample: cannot write {args.path}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"agent-migration-sample: {exc}", file=sys.stderr)
        return 2
    with sqlite3.connect(f"file:{Path(args.path).resolve()}?mode=ro", uri=True) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COLUMNS}
    conn.close()
    messy = (
        "clean"
        if args.clean
        else f"{len(cases)} messy cases + {args.messy_share:.0%} of clean rows scattered"
    )
    print(
        f"wrote {args.path} (scale {args.scale}, seed {args.seed}): "
        + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        + f" rows; {messy}; {time.perf_counter() - started:.1f}s"
    )
    return 0
