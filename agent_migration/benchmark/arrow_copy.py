"""The Arrow-native copy limit: a plain copy of the source with no validation, Arrow from end to end.

`python arrow_copy.py SOURCE URL PLAN`: a standalone script (the benchmark copies it into its workdir and
runs it there; it imports nothing of agent_migration, so the limit pays only for pyarrow and ADBC).
PLAN is a JSON file the benchmark writes from the table specs: per source table, its columns with the
Arrow type to send (the target's type: int32, int64, decimal(10,2), json, timestamp, bool, string), the
CREATE TABLE statement of those types, and the statements to run after the load (primary keys, the
plan's secondary indexes and the foreign keys the data allows).

Each table is read with `adbc_driver_sqlite` in chunks of `CHUNK` rows (keyset on rowid, one record
batch per chunk, its types inferred from the whole chunk), cast with pyarrow (REAL money rounded to whole
cents, JSON text tagged as `arrow.json` so that it arrives as JSONB) and streamed with
`adbc_driver_postgresql` `adbc_ingest(..., mode="append")` (a binary COPY) into the new table; memory
stays at about one chunk. Tables, load and keys are one transaction.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg
import adbc_driver_sqlite.dbapi as lite
import pyarrow as pa
import pyarrow.compute as pc

CHUNK = 100_000
TYPES = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "json": pa.json_(pa.string()),
}


def arrow_type(name: str) -> pa.DataType:
    if name.startswith("decimal("):  # decimal(10,2)
        precision, scale = map(int, name[len("decimal(") : -1].split(","))
        return pa.decimal128(precision, scale)
    return TYPES[name]


def cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    """One source column (as SQLite's values were inferred: int64, double, string or all-NULL) to `target`."""
    if pa.types.is_decimal(target):  # REAL money: whole cents first (19.990000000000002 -> 19.99)
        return pc.round(column.cast(pa.float64()), target.scale).cast(target)
    if isinstance(target, pa.ExtensionType):  # JSON text: the storage is the text itself
        return pa.ExtensionArray.from_storage(target, column.cast(target.storage_type))
    return column.cast(target)


def chunks(source, table: str, schema: pa.Schema, done: list[int]) -> Iterator[pa.RecordBatch]:
    """The table's rows in rowid order, `CHUNK` at a time, cast to `schema`; adds each chunk's rows to `done`."""
    columns = ", ".join(f'"{name}"' for name in schema.names)
    sql = f'SELECT rowid, {columns} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT {CHUNK}'
    with source.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(CHUNK)})
        last, read = -(2**63), CHUNK
        while read == CHUNK:
            cur.execute(sql, (last,))
            read = 0
            for batch in cur.fetch_record_batch():
                if batch.num_rows:
                    read += batch.num_rows
                    last = batch.column(0)[-1].as_py()
                    arrays = [cast(batch.column(i + 1), field.type) for i, field in enumerate(schema)]
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            done.append(read)


def copy(source_path: str, url: str, plan: dict) -> None:
    with lite.connect(source_path) as source, pg.connect(url) as target, target.cursor() as cur:
        for table in plan["tables"]:
            started, done = time.perf_counter(), []
            schema = pa.schema([(name, arrow_type(kind)) for name, kind in table["columns"]])
            cur.execute(table["create"])
            reader = pa.RecordBatchReader.from_batches(schema, chunks(source, table["name"], schema, done))
            cur.adbc_ingest(table["name"], reader, mode="append")
            print(f"{table['name']}: {sum(done)} rows in {time.perf_counter() - started:.2f} s", flush=True)
        started = time.perf_counter()
        for statement in plan["finish"]:
            cur.execute(statement)
        target.commit()
        print(f"keys and indexes: {time.perf_counter() - started:.2f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python arrow_copy.py SOURCE URL PLAN")
    with open(sys.argv[3]) as f:
        copy(sys.argv[1], sys.argv[2], json.load(f))
