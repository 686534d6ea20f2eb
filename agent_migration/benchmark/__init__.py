"""The migration benchmark: the whole `migrate` job against pgloader, the CSV + COPY and Arrow-native limits.

Run it: `python -m agent_migration.benchmark --scale medium,large` (medium = 100,000 agents, 20,000
balances, 50,000 payments, 1,000,000 chat messages of 20-400 characters; `small` = 1/100 of that for a
quick look, `large` = 4x medium, `tiny` for tests; default `small`). For each scale, in order, it writes a
clean sample source (`write_sample(..., seed=0, messy=False)`) and its reject-heavy copy
(`write_reject_heavy`), both timed but in no ratio, and runs, in one go, each step as a subprocess into
the same server: the embedded PostgreSQL started in the workdir (Unix socket), or `--database-url`.

1. `migrate`: `dagster job execute -m agent_migration -j migrate`, exactly as a user runs it headless
   (Dagster start-up, snapshot, validation, user remap, COPY + merge, index build and every check).
2. `resync_nochange`: the same command again, nothing changed in the source.
3. `resync_1pct`: the same command after changing about 1 % of the source rows in place (outside the
   timing): 0.5 % of each table updated, 0.25 % deleted (with the deleted agents' chat messages, as the
   app's ON DELETE CASCADE would) and 0.25 % inserted as copies under new keys (new chat messages point
   at existing agents, new balances at new usernames).
3b. `validate`: `dagster job execute -m agent_migration -j validate`: every row of the target compared,
   value by value, with the snapshot the 1 % re-sync published; it records its ledger.
3c. `cutover`: `dagster job execute -m agent_migration -j cutover` after changing about 1 % more of the
   source (the same way, outside the timing): the final re-sync, every check, the proof of every row
   (in full only the rows changed since validate) and the cutover record, as the runbook does it.
4. `pgloader` (if installed: Debian package `pgloader`; else skipped with a line saying so) on the same
   source into a second database, with `LOAD_FILE`. It reaches the embedded server (Unix socket only)
   with pgloader's socket URL form `postgresql://postgres@unix:/socket/dir:5432/bench_pgloader`. CAST
   rules: `datetime` -> `timestamp` (zero dates to NULL); `real` -> `numeric` through `float-to-string`
   (pgloader would otherwise write `19.99d0`); `agents.traits` and `agents.rareTrait` -> `jsonb` (the
   target's type); the rest are pgloader's defaults (INTEGER -> bigint, TEXT -> text, BOOLEAN ->
   boolean). pgloader builds only the source's own indexes (the primary keys) and exits 0 even when it
   rejects rows, so the benchmark also reads the error count of its summary.
5. `copy_limit`, the physical limit: the `sqlite3` CLI exports each table to CSV (a short Python script
   when the CLI is missing), then `psql`, in one transaction, creates plain tables of the source's
   columns with the target's types (usernames stay text), loads them with a server-side
   `COPY ... FROM 'file'` (client-side `\\copy` with `--database-url`: that server may not see the
   files) and builds the primary keys and the plan's indexes afterwards. Export and load are one step.
6. `arrow_limit`, the Arrow-native limit: `arrow_copy.py` (copied into the workdir and run there, one
   process) reads each table with `adbc_driver_sqlite` in record batches of 100,000 rows (keyset on
   rowid), casts them with pyarrow to the target's types and streams them with `adbc_driver_postgresql`
   `adbc_ingest` (binary COPY) into the same plain tables as the COPY limit (usernames stay text, JSON
   arrives as JSONB), then builds the primary keys, the plan's indexes and the foreign key
   chat_messages.agent_id -> agents(id); one transaction, no validation, memory of about one batch.
   Skipped with a line saying so when the ADBC drivers are not installed.
7. `migrate_rejects`: the full job on the reject-heavy source (every agent's `gene` above PostgreSQL's
   INTEGER, so every agent is rejected and, in turn, every chat message), in its own folder and
   database, with `MIGRATION_MAX_REJECT_SHARE=1`. Compared with the clean full migrate of the same
   scale: the `× migrate` column and the line `reject-heavy / clean migrate = ...` (wall and peaks).

For each step: wall seconds, rows/s (rows of the 4 source tables / wall) and peak RSS of the step's
process tree, polled every 50 ms: the largest single process (its kernel high-water mark, VmHWM, so
peaks between polls count) and the sum over the tree of the RSS at one poll (shared pages count once per
process; the PostgreSQL server is not in the tree). Times are also given as ratios, all taken within the
run: to the full migrate (`× migrate`: validate, the re-syncs and the reject-heavy run), to pgloader, to the COPY
limit and to the Arrow limit, the only figures that compare across runs: all times roughly double on a
busy machine. `--repeat N` runs each scale's sequence N times on fresh databases and reports each step's
median. One Markdown table per scale goes to stdout (as each scale finishes), headed by the line
`target: embedded PostgreSQL (Unix socket)` or `target: PostgreSQL at host:port (TCP)` (never a user or
password); the same data as JSON to `--json` (default WORKDIR/benchmark.json): every scale's report under
`"scales"`, and with a single scale that report is also the top level (`steps`, `target`, ...).

Options: `--workdir DIR` (everything is kept there: sources, logs, load files, server data; default: a
new temp folder whose bulky files are deleted at the end, leaving benchmark.json, the scripts and
logs/), `--database-url URL` (any database on a server to use instead of the embedded one: the databases
of `DATABASES` are dropped and created on it), `--keep-server` (leave the embedded server running, e.g.
to inspect bench_migrate; its URL is printed), `--skip pgloader,copy_limit,arrow_limit,migrate_rejects`
(any of them), `--skip-pgloader`. With several scales, the databases and files left are the last
scale's. Exit status 0; 1 when a step fails: the migrate job, a re-sync or a limit stop the benchmark
(the scales already done are still reported), a failed reject-heavy run is reported and the rest runs;
a failed pgloader is only reported. When running as root, the embedded server runs as the user
`pgserver`, so the workdir and its parents must be readable by other users.

Modules: `measure` (wall time and peak RSS of a command), `databases` (server, databases, source
changes), `limits` (pgloader and the two limits; `arrow_copy.py` is the Arrow script), `steps` (one run
of every step), `report` (JSON and Markdown), `cli` (the command).
"""

from agent_migration.benchmark.cli import main, parse_args, prepare_workdir, remove_bulky
from agent_migration.benchmark.databases import (
    UPDATES,
    change_one_percent,
    count_rows,
    database_url,
    describe_target,
    pgloader_url,
    recreate,
    server_version,
)
from agent_migration.benchmark.limits import (
    EXPORT_PY,
    LOAD_FILE,
    arrow_plan,
    copy_script,
    psql_binary,
    run_arrow_limit,
    run_copy_limit,
    run_pgloader,
)
from agent_migration.benchmark.measure import MIB, Measurement, StepFailed, combine, measure
from agent_migration.benchmark.report import HEADER, RATIOS, markdown, summarize
from agent_migration.benchmark.steps import DATABASES, PROJECT, STEPS, Bench, run_once

__all__ = [
    "DATABASES",
    "EXPORT_PY",
    "HEADER",
    "LOAD_FILE",
    "MIB",
    "PROJECT",
    "RATIOS",
    "STEPS",
    "UPDATES",
    "Bench",
    "Measurement",
    "StepFailed",
    "arrow_plan",
    "change_one_percent",
    "combine",
    "copy_script",
    "count_rows",
    "database_url",
    "describe_target",
    "main",
    "markdown",
    "measure",
    "parse_args",
    "pgloader_url",
    "prepare_workdir",
    "psql_binary",
    "recreate",
    "remove_bulky",
    "run_arrow_limit",
    "run_copy_limit",
    "run_once",
    "run_pgloader",
    "server_version",
    "summarize",
]
