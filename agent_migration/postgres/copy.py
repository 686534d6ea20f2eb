"""Bulk load: a DataFrame into a table through COPY (CSV written by Arrow, in chunks).

Every valid value is quoted and NULL is the unquoted empty field, so '' stays '' and NULL stays NULL,
and quoting keeps bare carriage returns and newlines inside a value.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator

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
    """COPY `frame[types]` into `table`; `types` maps column -> PostgreSQL type. Returns rows copied.

    One COPY statement: a thread writes CSV chunks while this one sends them, so the server parses and
    inserts one chunk while the next is being written (the send waits outside the GIL).
    """
    columns = list(types)
    schema = pa.schema([(c, arrow_type(types[c])) for c in columns])
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    total = len(frame)

    def chunks():
        for start in range(0, total, CHUNK_ROWS):
            part = frame.iloc[start : start + CHUNK_ROWS][columns]
            buffer = io.BytesIO()
            pacsv.write_csv(pa.Table.from_pandas(part, schema=schema, preserve_index=False), buffer, _OPTIONS)
            yield buffer.getbuffer(), min(start + CHUNK_ROWS, total)

    def report(done: int) -> None:  # called in this thread: Dagster's logger stays in the step's thread
        if progress:
            progress(done, total)

    with _Pipe(chunks(), report) as pipe:
        cur.copy_expert(statement, pipe, size=1 << 20)
    return total


class _Pipe(io.RawIOBase):
    """A readable file of the chunks a producer thread makes (at most `ahead` waiting); `taken(done)`
    is called, in the reading thread, as each chunk starts being read."""

    def __init__(
        self, chunks: Iterator[tuple[memoryview, int]], taken: Callable[[int], None], ahead: int = 2
    ):
        super().__init__()
        self._taken, self._done = taken, None
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._current, self._offset = memoryview(b""), 0
        self._thread = threading.Thread(target=self._produce, args=(chunks,), daemon=True)
        self._thread.start()

    def _produce(self, chunks: Iterator[tuple[memoryview, int]]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(None)
        except BaseException as exc:  # handed to the reader, which raises it in the COPY's thread
            self._put(exc)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._offset >= len(self._current):
            if self._done is not None:
                self._taken(self._done)
                self._done = None
            item = self._queue.get()
            if item is None:
                self._queue.put(None)  # stay at the end for any further read
                return b""
            if isinstance(item, BaseException):
                raise item
            (self._current, self._done), self._offset = item, 0
        end = len(self._current) if size is None or size < 0 else self._offset + size
        out = self._current[self._offset : end].tobytes()
        self._offset += len(out)
        return out

    def __exit__(self, *exc) -> None:
        self._stop.set()  # a failed COPY stops the producer instead of leaving it blocked
        self._thread.join()
        super().__exit__(*exc)
