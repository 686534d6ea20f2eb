"""Bulk load: a DataFrame into a table through COPY (CSV written by Arrow, in chunks).

Every valid value is quoted and NULL is the unquoted empty field, so '' stays '' and NULL stays NULL,
and quoting keeps bare carriage returns and newlines inside a value.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

CHUNK_ROWS = 100_000
_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")


def arrow_type(pg_type: str) -> pa.DataType:
    if pg_type.startswith("DECIMAL("):
        precision, scale = (int(x) for x in pg_type[8:-1].split(","))
        return pa.decimal128(precision, scale)
    return {
        "INTEGER": pa.int64(),
        "BIGINT": pa.int64(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us"),
    }.get(pg_type, pa.string())


def copy_frame(
    cur,
    table: sql.Composable,
    frame: pd.DataFrame,
    types: dict[str, str],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """COPY `frame[types]` into `table`; `types` maps column -> PostgreSQL type. Returns rows copied."""
    columns = list(types)
    schema = pa.schema([(c, arrow_type(types[c])) for c in columns])
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    total = len(frame)
    for start in range(0, total, CHUNK_ROWS):
        part = frame.iloc[start : start + CHUNK_ROWS][columns]
        buffer = io.BytesIO()
        pacsv.write_csv(pa.Table.from_pandas(part, schema=schema, preserve_index=False), buffer, _OPTIONS)
        buffer.seek(0)
        cur.copy_expert(statement, buffer)
        if progress:
            progress(min(start + CHUNK_ROWS, total), total)
    return total
