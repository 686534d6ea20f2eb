"""The run-file contract between the stages: what the extract hands the transform (chunks of the
snapshot), what the transform writes for the load (Arrow files of loadable rows and of rejects, in these
schemas), and the fingerprint of the table specs a published run is trusted under."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core.tables import SOURCE_TABLES, Col, Table

USER_CHANGES = "(users)"  # the plan's entry for the users (not a source table)
VERSION = 1  # bump when the meaning of a published snapshot changes (rules, merge)


def spec_fingerprint() -> str:
    """A digest of every table spec: a baseline published under other specs cannot be trusted."""
    described = [
        [
            t.name,
            t.source,
            t.key,
            [[c.name, c.sql_type, c.source, repr(c.rule), c.references] for c in t.columns],
        ]
        for t in SOURCE_TABLES
    ]
    return hashlib.sha256(json.dumps([VERSION, described]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Chunk:
    """Part of a source table: the rows matching `where` with `params`, `rows` of them."""

    where: str
    params: tuple
    rows: int


REJECT_SCHEMA = pa.schema(
    [
        ("source_key", pa.large_string()),
        ("reason", pa.large_string()),
        ("payload", pa.large_string()),
        ("source_rowid", pa.int64()),
        ("reason_kind", pa.large_string()),
    ]
)


def arrow_type(pg_type: str) -> pa.DataType:
    """The Arrow type a target column's values travel in (the binary COPY encodes it as `pg_type`)."""
    if pg_type.startswith("DECIMAL("):
        precision, scale = (int(x) for x in pg_type[8:-1].split(","))
        return pa.decimal128(precision, scale)
    return {
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us"),
    }.get(pg_type, pa.string())  # a chunk's text stays well under 2 GiB: 32-bit offsets


def arrow_schema(columns: list[Col]) -> pa.Schema:
    return pa.schema([(c.name, arrow_type(c.pg_type)) for c in columns])


def reason_kinds(kinds: pa.Array) -> Counter:
    """Counts per kind of reason; a row rejected for several reasons counts under each."""
    counted = pc.value_counts(pc.list_flatten(pc.split_pattern(kinds, "; ")))
    return Counter(
        dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))
    )


def loaded_path(run_dir: str, table: Table) -> str:
    """The Arrow file of a table's loadable rows in the run's folder."""
    return str(Path(run_dir) / f"{table.name}.arrow")


def rejects_path(run_dir: str, table: Table) -> str:
    """Where a clean step writes a table's rejects (Arrow IPC stream of `REJECT_SCHEMA`)."""
    return str(Path(run_dir) / f"{table.name}.rejects.arrow")
