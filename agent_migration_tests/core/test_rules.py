"""The row rules, called directly: examples for each rule and hypothesis properties over arbitrary values."""

import datetime as dt
import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_migration.core import cleaning, values
from agent_migration.core import rules as r
from agent_migration.core.tables import SOURCE_TABLES, TARGET_TABLES

# Any value SQLite can hand us: NULL, integers of any size, floats incl. NaN/inf, text incl. NUL and
# undecodable bytes (surrogate-escaped, as extraction decodes them), and BLOBs.
undecodable = st.binary(min_size=1, max_size=8).map(
    lambda b: (b"\xff" + b).decode("utf-8", "surrogateescape")
)
sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=300),
    undecodable,
    st.binary(max_size=16),
    st.sampled_from(
        ["", " ", "0", "1", "true", "F", "50.0", "2024-02-30 10:00:00", "2024-01-01T00:00:00Z", "{}"]
    ),
)
RULED = [(t, c) for t in TARGET_TABLES for c in t.columns if c.rule is not None]


def run(rule: r.Rule, values: list, label: str = "t.c") -> pd.DataFrame:
    checked = rule.apply(pd.Series(values, dtype=object), label)
    return pd.DataFrame(
        {"raw": pd.Series(values, dtype=object), "value": checked.values, "why": checked.reasons}
    )


def loaded(frame: pd.DataFrame) -> list:
    return [None if pd.isna(v) else v for v in frame["value"]]


def reasons(frame: pd.DataFrame) -> list:
    return [None if pd.isna(v) else v for v in frame["why"]]


# ---------------------------------------------------------------- examples, rule by rule


def test_integer_accepts_whole_numbers_and_rejects_the_rest():
    f = run(
        r.Integer(0, 100),
        [None, 5, 50.0, "7", 50.5, "abc", 150, -1, 2**40, b"x", "a\x00", "\udcff"],
        "agents.energy",
    )
    assert loaded(f)[:4] == [None, 5, 50, 7]
    assert reasons(f)[:4] == [None] * 4
    why = reasons(f)[4:]
    assert "not a whole number" in why[0] and "not a whole number" in why[1]
    assert "breaks CHECK (energy >= 0 AND energy <= 100)" in why[2] and "(got 150)" in why[2]
    assert "CHECK" in why[3]
    assert "overflows a PostgreSQL INTEGER" in why[4]
    assert "BLOB" in why[5] and "NUL" in why[6] and "UTF-8" in why[7]
    assert all(w.startswith("agents.energy: ") for w in why)


def test_integer_check_names_the_target_column():
    checked = r.Integer(0, None).apply(pd.Series([-3], dtype=object), "agents.price", "price")
    assert checked.reasons[0] == "agents.price: breaks CHECK (price >= 0) (got -3)"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-01 12:34:56", dt.datetime(2024, 3, 1, 12, 34, 56)),
        ("2024-03-01 12:34:56.123456", dt.datetime(2024, 3, 1, 12, 34, 56, 123456)),
        ("2024-03-01T12:34:56Z", dt.datetime(2024, 3, 1, 12, 34, 56)),
        ("2024-03-01T14:34:56+02:00", dt.datetime(2024, 3, 1, 12, 34, 56)),
        ("2024-03-01T07:34:56-0500", dt.datetime(2024, 3, 1, 12, 34, 56)),
        (1709296496, dt.datetime(2024, 3, 1, 12, 34, 56)),
        (1709296496789, dt.datetime(2024, 3, 1, 12, 34, 56, 789000)),
        ("1709296496", dt.datetime(2024, 3, 1, 12, 34, 56)),
    ],
)
def test_timestamps_become_utc_wall_clock(raw, expected):
    f = run(r.Timestamp(), [raw])
    assert reasons(f) == [None]
    assert loaded(f)[0].to_pydatetime() == expected


@pytest.mark.parametrize(
    "raw", ["yesterday", "12:34:56", "2024-02-30 10:00:00", "2024-03-01", 1.5, "2024-13-01 00:00:00", 10**20]
)
def test_anything_else_is_not_a_timestamp(raw):
    f = run(r.Timestamp(), [raw], "agents.created_at")
    assert loaded(f) == [None]
    assert reasons(f)[0].startswith("agents.created_at: ")


def test_booleans():
    f = run(r.Boolean(), [1, 0, "1", "0", "true", "FALSE", "t", "F", "True", None, "yes", 2, "", -1])
    assert loaded(f)[:10] == [True, False, True, False, True, False, True, False, True, None]
    assert reasons(f)[:10] == [None] * 10
    assert all("not a boolean" in w for w in reasons(f)[10:])


def test_json():
    traits = run(r.Json(empty="{}"), [None, "", '{"a": 1}', "[1, 2]", "{bad", "NaN", '{"a": "\\u0000"}', 5])
    assert loaded(traits)[:4] == ["{}", "{}", '{"a": 1}', "[1, 2]"]
    assert reasons(traits)[:4] == [None] * 4
    assert "not valid JSON" in reasons(traits)[4] and "not valid JSON" in reasons(traits)[5]
    assert "JSONB cannot store" in reasons(traits)[6]
    assert "not JSON text" in reasons(traits)[7]
    rare = run(r.Json(empty=None), [None, "", '{"x": true}'])
    assert loaded(rare) == [None, None, '{"x": true}']


def test_money_rounds_float_noise_and_rejects_sub_cent_precision():
    f = run(
        r.Money(),
        [19.990000000000002, 0, 4.99, 99999999.99, 4.999, -5.0, None, 123456789.0, float("nan"), "abc"],
    )
    assert loaded(f)[:4] == [Decimal("19.99"), Decimal("0.00"), Decimal("4.99"), Decimal("99999999.99")]
    why = reasons(f)[4:]
    assert "not a whole cent" in why[0]
    assert "CHECK (c >= 0)" in why[1]
    assert "NOT NULL" in why[2]
    assert "does not fit DECIMAL(10,2)" in why[3]
    assert "not a finite number" in why[4] or "NOT NULL" in why[4]  # SQLite itself stores NaN as NULL
    assert "not a number" in why[5]


def test_text_length_and_storage_classes():
    f = run(r.Text(10), ["USD", "x" * 10, "DOLLARS-US-X", 840, 1.5, b"\x00"], "payments.currency")
    assert loaded(f)[:4] == ["USD", "x" * 10, None, "840"]
    assert "12 characters, longer than VARCHAR(10)" in reasons(f)[2]
    assert "REAL" in reasons(f)[4] and "BLOB" in reasons(f)[5]


def test_usernames_keep_exact_text_and_blank_means_no_user():
    f = run(r.Username(), [None, "", "   ", "  spaced  ", "Alice", "alice", "x" * 255, "x" * 256])
    assert loaded(f)[:7] == [None, None, None, "  spaced  ", "Alice", "alice", "x" * 255]
    assert reasons(f)[:7] == [None] * 7
    assert "256 characters, longer than VARCHAR(255)" in reasons(f)[7]
    keyed = run(r.Username(required=True), [None, "  ", "bob"])
    assert "names no user" in reasons(keyed)[0] and "names no user" in reasons(keyed)[1]
    assert loaded(keyed)[2] == "bob"


def test_role_must_be_exact():
    f = run(r.OneOf(("user", "assistant", "system"), 50), ["user", "system", "User", "moderator", None])
    assert loaded(f)[:2] == ["user", "system"]
    assert all(w is not None for w in reasons(f)[2:])


def test_json_safe_escapes_what_jsonb_cannot_hold_without_losing_it():
    bad = b"Nova\xff".decode("utf-8", "surrogateescape")
    for value, raw_bytes in [(bad, b"Nova\xff"), ("a\x00b", b"a\x00b"), (b"\x00\x01", b"\x00\x01")]:
        safe = values.json_safe(value)
        assert bytes.fromhex(safe["hex"]) == raw_bytes
        text = json.dumps(safe, ensure_ascii=False)
        assert "\x00" not in text and "\\u0000" not in text
        text.encode("utf-8")  # valid UTF-8 for JSONB
    for real in (float("inf"), float("-inf"), -0.0, 1e300, 1.5e-7):  # JSONB's numeric would change them
        safe = values.json_safe(real)
        assert values.from_json_safe(json.loads(json.dumps(safe))) == (real, False)
        assert repr(values.from_json_safe(safe)[0]) == repr(real)
    assert values.json_safe(1.5) == 1.5 and values.from_json_safe(1.5) == (1.5, False)
    assert values.json_safe(5) == 5 and values.json_safe("ok") == "ok"


# ---------------------------------------------------------------- properties


def within_target(col, value) -> bool:
    """A loaded value satisfies the target column's type and CHECKs."""
    rule = col.rule
    value = value.item() if hasattr(value, "item") and not isinstance(value, pd.Timestamp) else value
    if isinstance(rule, r.Integer):
        lo = rule.lo if rule.lo is not None else r.INT32_MIN
        hi = rule.hi if rule.hi is not None else r.INT32_MAX
        return isinstance(value, int) and lo <= value <= hi
    if isinstance(rule, r.Text):
        ok = (
            isinstance(value, str)
            and "\x00" not in value
            and (rule.max_len is None or len(value) <= rule.max_len)
        )
        value.encode("utf-8")  # raises on surrogates
        return ok and (not isinstance(rule, r.OneOf) or value in rule.choices)
    if isinstance(rule, r.Json):
        return isinstance(value, str) and r.json_problem(value) is None
    if isinstance(rule, r.Boolean):
        return isinstance(value, bool)
    if isinstance(rule, r.Timestamp):
        return isinstance(value, pd.Timestamp) and dt.datetime(
            1, 1, 1
        ) <= value.to_pydatetime() <= dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    if isinstance(rule, r.Money):
        return (
            isinstance(value, Decimal)
            and Decimal(0) <= value < Decimal(10**8)
            and value == value.quantize(Decimal("0.01"))
        )
    raise AssertionError(rule)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_value_is_loaded_within_the_target_or_rejected_with_a_reason(data):
    table, col = data.draw(st.sampled_from(RULED))
    values = data.draw(st.lists(sqlite_values, min_size=1, max_size=8))
    checked = col.rule.apply(pd.Series(values, dtype=object), f"{table.name}.{col.source}", col.name)
    assert len(checked.values) == len(checked.reasons) == len(values)
    for raw, value, why in zip(values, checked.values, checked.reasons, strict=True):
        if isinstance(why, str):
            assert why.startswith(f"{table.name}.{col.source}: ")
            assert pd.isna(value)
        elif (
            raw is None
            or raw != raw
            or (isinstance(raw, str) and isinstance(col.rule, r.Username) and not raw.strip())
        ):
            # NULL (SQLite stores NaN as NULL too), or a blank username: no value, no reason
            empty = col.rule.empty if isinstance(col.rule, r.Json) else None
            assert (pd.isna(value) and empty is None) or value == empty
            assert not col.rule.required
        elif isinstance(col.rule, r.Json) and raw == "":
            assert value == col.rule.empty or (pd.isna(value) and col.rule.empty is None)
        else:
            assert within_target(col, value), (raw, value)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=r.INT32_MIN, max_value=r.INT32_MAX))
def test_integers_load_exactly(n):
    f = run(r.Integer(), [n, float(n), str(n)])
    assert loaded(f) == [n, n, n]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**10 - 1))
def test_every_whole_cent_amount_loads_exactly(cents):
    f = run(r.Money(), [cents / 100])
    assert loaded(f) == [Decimal(cents).scaleb(-2)]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_timestamps_round_trip_through_every_text_form(moment, offset_minutes):
    offset = dt.timezone(dt.timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=dt.UTC).astimezone(offset)
    forms = [moment.isoformat(sep=" "), moment.isoformat() + "Z", local.isoformat()]
    f = run(r.Timestamp(), forms)
    assert reasons(f) == [None] * 3
    assert [v.to_pydatetime() for v in loaded(f)] == [moment] * 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(sqlite_values, sqlite_values, sqlite_values), min_size=1, max_size=10))
def test_clean_table_accounts_for_every_row(rows):
    table = next(t for t in SOURCE_TABLES if t.name == "user_balance")
    raw = pd.DataFrame(rows, columns=table.source_columns, dtype=object)
    raw.insert(0, "_rowid", range(1, len(raw) + 1))
    out = cleaning.clean_table(table, raw)
    assert len(out) == len(raw)
    for i, row in out.iterrows():
        if isinstance(row[cleaning.REJECT], str):
            payload = json.loads(row[cleaning.PAYLOAD])
            assert list(payload) == table.source_columns
            for name in table.source_columns:
                original = raw.at[i, name]
                value, as_text = values.from_json_safe(payload[name])
                if isinstance(original, str) and as_text:  # NUL or undecodable bytes: kept as the bytes
                    assert value == original.encode("utf-8", "surrogateescape")
                elif isinstance(original, float) and original != original:  # NaN: SQLite stores NULL
                    assert value is None or value != value
                else:
                    assert type(value) is type(original) and repr(value) == repr(original)
        else:
            assert pd.isna(row[cleaning.PAYLOAD])
            assert row["user_id"] == raw.at[i, "user_id"] or str(raw.at[i, "user_id"]) == row["user_id"]


def test_derive_users_keeps_existing_ids_and_numbers_new_ones_after_the_sequence():
    existing = pd.DataFrame({"id": [3, 7], "username": ["bob", "alice"]})
    refs = [pd.Series(["alice", "carol", "bob"], dtype=object), pd.Series(["  dave", "carol"], dtype=object)]
    users = cleaning.derive_users(refs, existing, sequence=9)
    assert dict(zip(users["username"], users["id"], strict=True)) == {
        "bob": 3,
        "alice": 7,
        "  dave": 10,
        "carol": 11,
    }
    fresh = cleaning.derive_users(refs, existing.iloc[0:0])
    assert list(fresh["id"]) == [1, 2, 3, 4]


# Free text reaches the rules as Arrow text when a batch holds only valid text (see extract.read_table);
# a rule must judge it exactly as it judges the same values in Python objects.
texts = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.sampled_from(
        ["", " ", "user", "assistant", "2024-01-02 03:04:05", "2024-01-02T03:04:05+02:00", "7", "a\x00b"]
    ),
)
ARROW_RULES = sorted(
    {(f"{t.name}.{c.name}", c.rule) for t in SOURCE_TABLES for c in t.migrated if c.rule.arrow_text},
    key=lambda x: x[0],
)


def test_text_columns_come_as_arrow():
    assert ("chat_messages.message", r.Text(None, required=True)) in ARROW_RULES


@settings(max_examples=150, deadline=None)
@given(values=st.lists(texts, max_size=30), which=st.sampled_from(range(len(ARROW_RULES))))
def test_arrow_text_is_judged_as_python_text(values, which):
    label, rule = ARROW_RULES[which]
    python = rule.apply(pd.Series(values, dtype=object), label)
    arrow = rule.apply(pd.Series(values, dtype=pd.ArrowDtype(pa.large_string())), label)
    assert list(arrow.reasons) == list(python.reasons)
    assert [None if pd.isna(v) else v for v in arrow.values] == [
        None if pd.isna(v) else v for v in python.values
    ]


def test_arrow_text_is_judged_as_python_text_when_checked_by_distinct_values():
    pool = ["user", "assistant", "", " ", None, "2024-01-02 03:04:05", "bob", "x" * 300, "a\x00b"]
    values = [pool[i % len(pool)] for i in range(3 * r.FACTORIZE_MIN_ROWS)]
    for label, rule in ARROW_RULES:
        python = rule.apply(pd.Series(values, dtype=object), label)
        arrow = rule.apply(pd.Series(values, dtype=pd.ArrowDtype(pa.large_string())), label)
        assert list(arrow.reasons) == list(python.reasons), label
        assert [None if pd.isna(v) else v for v in arrow.values] == [
            None if pd.isna(v) else v for v in python.values
        ], label


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.sampled_from(["alice", "bob", "", " ", None, "a\x00b"]), max_size=12))
def test_a_table_with_arrow_text_is_cleaned_as_with_python_text(keys):
    table = next(t for t in SOURCE_TABLES if t.name == "user_balance")
    rows = {"_rowid": list(range(1, len(keys) + 1)), "user_id": keys}
    rows |= {c: [7] * len(keys) for c in table.source_columns if c != "user_id"}
    python = cleaning.clean_table(table, pd.DataFrame(rows, dtype=object))
    rows["user_id"] = pd.Series(keys, dtype=pd.ArrowDtype(pa.large_string()))
    arrow = cleaning.clean_table(
        table, pd.DataFrame({k: pd.Series(v, dtype=object) if k != "user_id" else v for k, v in rows.items()})
    )
    for col in (cleaning.REJECT, cleaning.SOURCE_KEY, cleaning.PAYLOAD):
        assert list(arrow[col]) == list(python[col]), col
