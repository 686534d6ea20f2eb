"""Bulk load: Arrow batches into a table through binary COPY (encoded by pgpq, in a thread).

Binary COPY carries every value in PostgreSQL's own binary form: no text to quote or parse, NULL is NULL,
and each column's wire type is the target's (text for jsonb columns is sent as jsonb).
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pgpq
import pyarrow as pa
from pgpq import encoders
from pgpq import schema as pg_schema
from psycopg2 import sql

_BATCH_ROWS = 100_000
_ENCODE_ROWS = 16_384  # rows encoded at a time: a few MB of COPY data in flight, not a whole batch


def encoder(schema: pa.Schema, types: dict[str, str]) -> pgpq.ArrowToPostgresBinaryEncoder:
    """A binary COPY encoder for `schema`; text bound for a JSONB column is sent as jsonb."""
    builders = {f.name: pgpq.ArrowToPostgresBinaryEncoder.infer_encoder(f) for f in schema}
    for f in schema:
        if types[f.name] == "JSONB":
            text = (
                encoders.LargeStringEncoderBuilder
                if pa.types.is_large_string(f.type)
                else encoders.StringEncoderBuilder
            )
            builders[f.name] = text.new_with_output(f, pg_schema.Jsonb())
    return pgpq.ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)


def copy_batches(
    cur,
    table: sql.Composable,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch | pa.Table],
    types: dict[str, str],
    progress: Callable[[int], None] | None = None,
    freeze: bool = False,
) -> int:
    """Binary COPY of Arrow batches of `schema` (the target's Arrow types, see `contract.arrow_type`)
    into `table`; `types` maps column -> PostgreSQL type. Returns rows copied. `freeze`: rows written
    frozen (the table must be new or truncated in this transaction).

    One COPY statement: a thread encodes batches while this one sends them, so the server inserts one
    batch while the next is being encoded. Binary COPY costs the server less than CSV: nothing to parse.
    """
    columns = list(types)
    schema = pa.schema([schema.field(c) for c in columns])
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary{})").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", FREEZE" if freeze else "")
    )
    done = [0]

    def chunks():
        enc = encoder(schema, types)
        yield memoryview(enc.write_header()), 0
        for batch in batches:
            part = batch.select(columns)
            pieces = part.to_batches(max_chunksize=_ENCODE_ROWS) if isinstance(part, pa.Table) else [part]
            for piece in (
                p.slice(i, _ENCODE_ROWS) for p in pieces for i in range(0, p.num_rows, _ENCODE_ROWS)
            ):
                done[0] += piece.num_rows
                yield memoryview(enc.write_batch(piece.cast(schema))), done[0]
        yield memoryview(enc.finish()), done[0]

    def report(n: int) -> None:  # called in this thread: Dagster's logger stays in the step's thread
        if progress:
            progress(n)

    with _Pipe(chunks(), report) as pipe:
        cur.copy_expert(statement, pipe, size=1 << 20)
    return done[0]


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


@dataclass(frozen=True)
class Rows:
    """Rows to copy, one batch at a time: an Arrow IPC stream file, or a small table in memory; with
    `constants`, columns of one value added to every batch (e.g. the run id)."""

    schema: pa.Schema
    count: int
    path: str | None = None
    table: pa.Table | None = None
    constants: tuple[tuple[str, str], ...] = ()

    @property
    def full_schema(self) -> pa.Schema:
        return pa.schema([*self.schema, *((name, pa.large_string()) for name, _ in self.constants)])

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self._raw():
            if self.constants:
                extra = [pa.array([v] * batch.num_rows, pa.large_string()) for _, v in self.constants]
                batch = pa.record_batch([*batch.columns, *extra], schema=self.full_schema)
            yield batch

    def _raw(self) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.to_batches(max_chunksize=_BATCH_ROWS)
            return
        # Read, not memory-mapped: a mapped file's touched pages would count as this process's memory.
        with pa.OSFile(self.path, "rb") as source:
            yield from pa.ipc.open_stream(source)
