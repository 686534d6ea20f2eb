"""Column profiles for preflight: what each source column holds against its target type, and sample rejects.

A `TableProfile` is filled chunk by chunk from what cleaning reads anyway (`streaming.clean_stream`'s
`profile`): the fast path's typed Arrow columns, vectorized, and the exact path's other rows as SQLite
stored them (few). Per column: the storage classes seen; integers and amounts their min and max (and how
many fall outside INTEGER); text its longest length (and how many exceed the VARCHAR); timestamps how
many values came in each accepted format. Migrate does not profile: it passes no profile.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core import rules as r
from agent_migration.core.cleaning import SOURCE_ROWID
from agent_migration.core.tables import Col, Table
from agent_migration.postgres.budget import count_reasons

SAMPLES = 3  # sample rejects kept per reason
EPOCH = r"^[+-]?\d+$"
_DATE = r"^\d{4}-\d{2}-\d{2}"
_CLOCK = r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
# The text forms the timestamp rule accepts (`rules.Timestamp`), in the order they are told apart.
TIME_FORMATS = (
    ("YYYY-MM-DD HH:MM:SS", _DATE + r" \d{2}:\d{2}:\d{2}$"),
    ("YYYY-MM-DD HH:MM[:SS.ffffff]", _DATE + " " + _CLOCK + "$"),
    ("ISO 8601 with T", _DATE + "T" + _CLOCK + "$"),
    ("ISO 8601 with Z or offset (to UTC)", _DATE + "[ T]" + _CLOCK + r"(Z|[+-]\d{2}(:?\d{2})?)$"),
)
EPOCH_S, EPOCH_MS, NOT_TIME = "Unix epoch, seconds", "Unix epoch, milliseconds", "no accepted format"


def storage_class(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "null"
    return {int: "integer", float: "real", str: "text", bytes: "blob"}.get(type(value), "text")


class ColumnProfile:
    """What one column held, summed over chunks."""

    def __init__(self, table: Table, col: Col):
        self.col, self.label = col, f"{table.source}.{col.source}"
        self.classes: Counter = Counter()
        self.low: int | float | None = None
        self.high: int | float | None = None
        self.longest = 0
        self.formats: Counter = Counter()
        self.values: Counter = Counter()  # booleans: each spelling

    def _range(self, low, high) -> None:
        if low is not None:
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)

    def typed(self, column: pa.Array) -> None:
        """A fast-path column: one storage class (the rule's), or NULL."""
        nulls = column.null_count
        self.classes.update({"null": nulls, self.col.rule.stored: len(column) - nulls})
        if len(column) == nulls:
            return
        rule = self.col.rule
        if isinstance(rule, (r.Integer, r.Money)):
            lo_hi = pc.min_max(column)
            self._range(lo_hi["min"].as_py(), lo_hi["max"].as_py())
        if isinstance(rule, r.Boolean):
            counted = pc.value_counts(column.drop_null())
            values, counts = counted.field("values").to_pylist(), counted.field("counts").to_pylist()
            self.values.update(dict(zip(values, counts, strict=True)))
        if isinstance(rule, (r.Text, r.Json)):
            self.longest = max(self.longest, pc.max(pc.utf8_length(column)).as_py() or 0)
        if isinstance(rule, r.Timestamp):
            self.formats.update(time_formats(column))

    def exact(self, values: list) -> None:
        """Exact-path values, as SQLite stored them."""
        kinds = [storage_class(v) for v in values]
        self.classes.update(kinds)
        rule = self.col.rule
        if isinstance(rule, (r.Integer, r.Money)):
            numbers = [
                v for v, k in zip(values, kinds, strict=True) if k == "integer" or (k == "real" and v == v)
            ]
            self._range(min(numbers, default=None), max(numbers, default=None))
        if isinstance(rule, r.Boolean):
            self.values.update(v for v, k in zip(values, kinds, strict=True) if k != "null")
        texts = [v for v, k in zip(values, kinds, strict=True) if k == "text"]
        if isinstance(rule, (r.Text, r.Json)) and texts:
            self.longest = max(self.longest, max(len(t) for t in texts))
        if isinstance(rule, r.Timestamp):
            self.formats.update(time_formats(pa.array(texts, pa.large_string())) if texts else {})
            ints = [v for v, k in zip(values, kinds, strict=True) if k == "integer"]
            self.formats.update(EPOCH_S if abs(v) <= r.EPOCH_MS_ABOVE else EPOCH_MS for v in ints)
            self.formats.update({NOT_TIME: sum(k in ("real", "blob") for k in kinds)})

    def result(self) -> dict:
        target = (
            "VARCHAR(255) (users.username)" if isinstance(self.col.rule, r.Username) else self.col.pg_type
        )
        out: dict = {"target": target, "seen": {k: n for k, n in self.classes.most_common() if n}}
        if self.low is not None:
            out |= {"min": self.low, "max": self.high}
            if isinstance(self.col.rule, r.Integer):
                out |= {"fits": self.low >= r.INT32_MIN and self.high <= r.INT32_MAX}
        if isinstance(self.col.rule, (r.Text, r.Json)):
            out |= {"longest": self.longest}
            limit = getattr(self.col.rule, "max_len", None)
            if limit is not None:
                out |= {"fits": self.longest <= limit}
        if self.formats:
            out |= {"formats": {k: n for k, n in self.formats.most_common() if n}}
        if self.values:
            out |= {"values": {str(k): n for k, n in self.values.most_common(10)}}
        return out


def time_formats(text: pa.Array) -> Counter:
    """How many values of a text column came in each accepted timestamp form (`TIME_FORMATS`, epochs)."""
    left = pc.is_valid(text)
    found = Counter()
    for name, pattern in TIME_FORMATS:
        hit = pc.and_(left, pc.match_substring_regex(text, pattern))
        found[name] = pc.sum(hit).as_py() or 0
        left = pc.and_(left, pc.invert(hit))
    digits = pc.and_(left, pc.match_substring_regex(text, EPOCH))
    if pc.any(digits).as_py():
        numbers = pc.cast(pc.filter(text, digits), pa.float64())
        seconds = pc.sum(pc.less_equal(pc.abs(numbers), float(r.EPOCH_MS_ABOVE))).as_py() or 0
        found[EPOCH_S] += seconds
        found[EPOCH_MS] += len(numbers) - seconds
    found[NOT_TIME] = pc.sum(pc.and_(left, pc.invert(digits))).as_py() or 0
    return found


class TableProfile:
    """Every migrated column's profile, the reject counts per reason and a few samples of each."""

    def __init__(self, table: Table):
        self.table = table
        self.columns = {c.source: ColumnProfile(table, c) for c in table.migrated}
        self.reasons: Counter = Counter()
        self.below: Counter = Counter()
        self.samples: dict[str, list[dict]] = {}

    def chunk(self, typed: pa.Table, raw: pd.DataFrame | None, odd: list[int]) -> None:
        """One chunk: its typed rows, and of the rows read as stored (`raw`) those outside the typed ones."""
        for name, profile in self.columns.items():
            profile.typed(typed.column(name).combine_chunks())
        if raw is None or not odd:
            return
        rows = raw[raw[SOURCE_ROWID].isin(np.asarray(odd))]
        for name, profile in self.columns.items():
            column = rows[name]
            values = column.array.to_numpy(na_value=None) if hasattr(column.array, "_pa_array") else column
            profile.exact(list(values))

    def rejects(self, rejects: pa.Table) -> None:
        """One chunk's rejects: counted per reason; the first few of each reason kept as samples."""
        if not rejects.num_rows:
            return
        counted, below = count_reasons(rejects)
        self.reasons.update(counted)
        self.below.update(below)
        kinds = rejects.column("reason_kind").combine_chunks().dictionary_encode()
        for i, joined in enumerate(kinds.dictionary.to_pylist()):
            wanting = [k for k in joined.split("; ") if len(self.samples.get(k, ())) < SAMPLES]
            if not wanting:
                continue
            at = pc.indices_nonzero(pc.equal(kinds.indices, i)).to_pylist()[:SAMPLES]
            picked = rejects.select(["source_key", "reason"]).take(at).to_pylist()
            for kind in wanting:
                self.samples.setdefault(kind, []).extend(picked[: SAMPLES - len(self.samples.get(kind, ()))])

    def result(self) -> dict[str, dict]:
        return {f"{self.table.source}.{name}": p.result() for name, p in self.columns.items()}
