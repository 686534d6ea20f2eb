"""The sample generator: deterministic, the right counts, every catalogued messy row really planted, CLI."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration import sample

TABLES = tuple(sample.COLUMNS)
COUNT_OF = sample.COUNT_OF  # table -> the count's name ("agents", "balances", ...)


def dump(path: Path) -> dict[str, list]:
    """Every row of every table, in key order, values as stored (text as bytes)."""
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        return {
            t: conn.execute(
                f"SELECT *, typeof({sample.KEYS[t]}) FROM {t} ORDER BY {sample.KEYS[t]}"
            ).fetchall()
            for t in TABLES
        }
    finally:
        conn.close()


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        found = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    conn.close()
    return found


def fetch(conn: sqlite3.Connection, case: sample.MessyCase, what: str) -> list[tuple]:
    """`what` of the row(s) at the case's key (text keys compared as their exact bytes)."""
    key = sample.KEYS[case.table]
    sql = f"SELECT {what} FROM {case.table} WHERE {key}"
    if case.key is None:
        return conn.execute(f"{sql} IS NULL").fetchall()
    if isinstance(case.key, str):
        return conn.execute(
            f"{sql} = CAST(? AS TEXT)", (case.key.encode("utf-8", "surrogateescape"),)
        ).fetchall()
    return conn.execute(f"{sql} = ?", (case.key,)).fetchall()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, list[sample.MessyCase]]:
    path = tmp_path_factory.mktemp("sample") / "db.sqlite"
    return path, sample.write_sample(path, scale="small", seed=3)


@pytest.fixture(scope="module")
def small_clean(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "db.sqlite"
    assert sample.write_sample(path, scale="small", seed=3, messy=False) == []
    return path


# ---------------------------------------------------------------- determinism and counts


def test_same_seed_gives_identical_contents_and_another_seed_does_not(tmp_path):
    a, b, c = (tmp_path / f"{n}.sqlite" for n in "abc")
    cases_a = sample.write_sample(a, scale="tiny", seed=7)
    cases_b = sample.write_sample(b, scale="tiny", seed=7)
    sample.write_sample(c, scale="tiny", seed=8)
    assert dump(a) == dump(b)
    assert cases_a == cases_b
    other = dump(c)
    assert all(dump(a)[t] != other[t] for t in TABLES)


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_clean_row_counts_match_the_scale(tmp_path, scale):
    path = tmp_path / "db.sqlite"
    sample.write_sample(path, scale=scale, messy=False)
    assert counts(path) == {t: sample.SCALES[scale][COUNT_OF[t]] for t in TABLES}


def test_scales():
    medium = sample.SCALES["medium"]
    assert medium == {"agents": 100_000, "balances": 20_000, "payments": 50_000, "messages": 1_000_000}
    assert sample.SCALES["large"] == {k: 4 * v for k, v in medium.items()}
    assert sample.SCALES["xlarge"] == {k: 10 * v for k, v in medium.items()}
    assert sample.SCALES["small"] == {k: v // 100 for k, v in medium.items()}
    assert sample.SCALES["tiny"] == {"agents": 50, "balances": 20, "payments": 30, "messages": 200}


def test_explicit_counts_override_the_scale(tmp_path):
    path = tmp_path / "db.sqlite"
    sample.write_sample(path, scale="medium", messy=False, agents=7, balances=0, payments=3, messages=11)
    assert counts(path) == {"agents": 7, "user_balance": 0, "payments": 3, "chat_messages": 11}


def test_messy_adds_exactly_the_catalogue_rows(small, small_clean):
    path, cases = small
    per_table = {t: sum(c.table == t for c in cases) for t in TABLES}
    assert counts(path) == {t: counts(small_clean)[t] + per_table[t] for t in TABLES}
    assert len(cases) == len(sample.CASES)
    assert all(per_table.values())


def test_scatter_changes_about_the_share_of_clean_rows_and_adds_none(small, small_clean):
    messy, clean = dump(small[0]), dump(small_clean)
    for table in TABLES:
        n = len(clean[table])
        rows = {r[0]: r for r in messy[table]}
        changed = sum(rows[r[0]] != r for r in clean[table])  # every clean key is still there
        planned = round(n * sample.MESSY_SHARE)
        # A scattered value can equal the clean one (forSale 1 on a row already for sale, ...).
        assert planned // 2 <= changed <= planned, table


def test_clean_data_when_messy_is_false_keeps_the_shapes(small_clean):
    conn = sqlite3.connect(small_clean)
    try:
        q = conn.execute
        assert q("SELECT min(id), max(id), count(*) FROM agents").fetchone() == (1, 1000, 1000)
        assert q(
            "SELECT count(*) FROM agents WHERE energy NOT BETWEEN 0 AND 100 OR price < 0"
        ).fetchone() == (0,)
        assert q("SELECT DISTINCT typeof(created_at) FROM agents").fetchall() == [("text",)]
        assert q("SELECT count(*) FROM agents WHERE json_valid(traits) = 0").fetchone() == (0,)
        assert {r for (r,) in q("SELECT DISTINCT rarity FROM agents")} == {
            "common",
            "rare",
            "epic",
            "legendary",
        }
        share = q("SELECT avg(forSale) FROM agents").fetchone()[0]
        assert 0.1 < share < 0.3
        assert q("SELECT DISTINCT typeof(amount) FROM payments").fetchall() == [("real",)]
        assert {r for (r,) in q("SELECT DISTINCT role FROM chat_messages")} == {"user", "assistant", "system"}
        lengths = q("SELECT min(length(message)), max(length(message)) FROM chat_messages").fetchone()
        assert lengths[0] >= 20 and lengths[1] <= 400
        assert q("SELECT count(*) FROM chat_messages WHERE instr(message, char(0)) > 0").fetchone() == (0,)
    finally:
        conn.close()


def test_every_clean_chat_message_names_an_existing_agent(small_clean):
    conn = sqlite3.connect(small_clean)
    orphans = conn.execute(
        "SELECT count(*) FROM chat_messages c LEFT JOIN agents a ON a.id = c.agent_id WHERE a.id IS NULL"
    ).fetchone()
    conn.close()
    assert orphans == (0,)


def users_of(path: Path) -> dict[str, set]:
    conn = sqlite3.connect(path)
    conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")  # the planted bad UTF-8
    try:
        sql = {
            "owners": "SELECT owner FROM agents",
            "balances": "SELECT user_id FROM user_balance",
            "payments": "SELECT user_id FROM payments",
            "chat": "SELECT user_id FROM chat_messages",
        }
        return {name: {u for (u,) in conn.execute(q)} - {None} for name, q in sql.items()}
    finally:
        conn.close()


@pytest.mark.parametrize("fixture", ["small_clean", "small"])
def test_some_users_appear_only_in_payments_only_in_chat_and_only_in_balances(request, fixture):
    path = request.getfixturevalue(fixture)
    users = users_of(path if isinstance(path, Path) else path[0])
    for name in ("balances", "payments", "chat"):
        elsewhere = set().union(*(u for other, u in users.items() if other != name))
        assert users[name] - elsewhere, f"no user appears only in {name}"
    assert {"Alice", "alice"} <= set().union(*users.values())


def test_balance_user_ids_are_unique_and_usernames_look_real(small_clean):
    conn = sqlite3.connect(small_clean)
    ids = [u for (u,) in conn.execute("SELECT user_id FROM user_balance")]
    conn.close()
    assert len(ids) == len(set(ids)) == 200
    users = set().union(*users_of(small_clean).values())
    assert sum(u.startswith("user_") for u in users) >= 10
    assert len(users) >= 1000 // 4


# ---------------------------------------------------------------- the catalogue


def test_every_case_is_planted_at_its_key_with_the_intended_storage_class(small):
    path, cases = small
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        for plant, case in zip(sample.CASES, cases, strict=True):
            assert (case.table, case.column, case.outcome) == (plant.table, plant.column, plant.outcome)
            rows = fetch(conn, case, f'typeof("{case.column}"), "{case.column}"')
            assert len(rows) == 1, case
            (stored, value) = rows[0]
            assert stored == plant.stored.encode(), case
            if isinstance(plant.value, sample.BadText):
                assert value == bytes(plant.value)
                with pytest.raises(UnicodeDecodeError):
                    value.decode("utf-8")
            elif isinstance(plant.value, bytes):
                assert value == plant.value
            elif plant.stored == "text":
                assert value == plant.value.encode()
            elif plant.stored in ("integer", "real") and not isinstance(plant.value, sample.AgentRef):
                assert value == float(plant.value), case  # '1' in a BOOLEAN column is stored as 1
            else:
                assert value is None or isinstance(plant.value, sample.AgentRef), case
    finally:
        conn.close()


def test_catalogue_keys_come_after_the_clean_rows(small):
    path, cases = small
    clean = sample.SCALES["small"]
    keys: dict[str, list] = {}
    for case in cases:
        keys.setdefault(case.table, []).append(case.key)
    for table, found in keys.items():
        assert len(found) == len(set(found)), table
        if table != "user_balance":
            n = clean[COUNT_OF[table]]
            assert found == list(range(n + 1, n + 1 + len(found))), table
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    clean_users = {u for (u,) in conn.execute("SELECT user_id FROM user_balance WHERE rowid <= 200")}
    conn.close()
    planted = {k.encode("utf-8", "surrogateescape") for k in keys["user_balance"] if k is not None}
    assert not planted & clean_users


def test_catalogue_covers_the_required_cases(small):
    _, cases = small
    got = {(c.table, c.column, c.outcome) for c in cases}
    assert {c.outcome for c in cases} == {"load", "reject"}
    for table, nullable in sample._NULLABLE.items():
        for column in nullable:
            assert any(
                c.table == table and c.column == column and c.outcome == "load" and c.expected is None
                for c in cases
            ), (table, column)
    must = {
        ("agents", "traits", "reject"),
        ("agents", "forSale", "reject"),
        ("agents", "created_at", "reject"),
        ("agents", "name", "reject"),
        ("agents", "owner", "reject"),
        ("user_balance", "user_id", "reject"),
        ("payments", "amount", "reject"),
        ("payments", "transaction_id", "reject"),
        ("chat_messages", "role", "reject"),
        ("chat_messages", "agent_id", "reject"),
        ("chat_messages", "message", "reject"),
    }
    assert must <= got
    by_expected = {(c.table, c.column, repr(c.expected)) for c in cases if c.outcome == "load"}
    assert ("payments", "amount", "Decimal('19.99')") in by_expected
    assert ("agents", "created_at", "datetime.datetime(2024, 3, 1, 12, 34, 56, 789000)") in by_expected
    assert ("agents", "traits", "{}") in by_expected
    assert ("agents", "owner", "'  spaced  '") in by_expected
    assert all(c.expected is None for c in cases if c.outcome == "reject")
    assert sum(1 for c in cases if c.table == "user_balance" and c.key is None) == 1


def test_the_rejected_agent_chat_case_names_a_planted_rejected_agent(small):
    path, cases = small
    rejected = {c.key for c in cases if c.table == "agents" and c.outcome == "reject"}
    loaded = {c.key for c in cases if c.table == "agents" and c.outcome == "load"}
    conn = sqlite3.connect(path)
    try:
        for case in cases:
            if case.table != "chat_messages":
                continue
            [(agent,)] = fetch(conn, case, "agent_id")
            if case.column == "agent_id" and case.outcome == "reject":
                assert agent == 99_999_999 or agent in rejected, case
            elif case.column != "agent_id":
                assert agent in loaded, case  # so only the planted fault decides the outcome
    finally:
        conn.close()
    assert any(c.column == "agent_id" and "rejected" in c.description for c in cases)


def test_messy_false_plants_nothing(small_clean):
    conn = sqlite3.connect(small_clean)
    conn.text_factory = bytes
    try:
        assert conn.execute("SELECT count(*) FROM agents WHERE name IS NULL OR energy > 100").fetchone() == (
            0,
        )
        assert conn.execute(
            "SELECT count(*) FROM payments WHERE typeof(transaction_id) = 'blob'"
        ).fetchone() == (0,)
    finally:
        conn.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.fixed_dictionaries(
        {k: st.integers(0, 60) for k in ("balances", "payments")}
        | {"agents": st.integers(1, 60), "messages": st.integers(0, 60)}
    ),
    seed=st.integers(0, 2**32),
    messy=st.booleans(),
)
def test_any_counts_give_those_rows_plus_the_catalogue(tmp_path, n, seed, messy):
    path = tmp_path / f"db-{seed}-{messy}-{'-'.join(map(str, n.values()))}.sqlite"
    cases = sample.write_sample(path, seed=seed, messy=messy, overwrite=True, **n)
    planted = {t: sum(c.table == t for c in cases) for t in TABLES}
    assert counts(path) == {t: n[COUNT_OF[t]] + planted[t] for t in TABLES}
    users = users_of(path)
    for name, count in (("balances", "balances"), ("payments", "payments"), ("chat", "messages")):
        if n[count]:
            elsewhere = set().union(*(u for other, u in users.items() if other != name))
            assert users[name] - elsewhere, name
    if not messy:
        conn = sqlite3.connect(path)
        (biggest,) = conn.execute("SELECT coalesce(max(agent_id), 0) FROM chat_messages").fetchone()
        assert biggest <= n["agents"]
        conn.close()
    path.unlink()


# ---------------------------------------------------------------- write_sample errors


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "db.sqlite"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="db.sqlite"):
        sample.write_sample(path, scale="tiny")
    assert path.read_text() == "keep me"
    sample.write_sample(path, scale="tiny", overwrite=True)
    assert counts(path)["agents"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.sqlite"]  # no temporary file left


def test_bad_arguments_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        sample.write_sample(tmp_path / "a.sqlite", scale="nope")
    with pytest.raises(ValueError, match="agents"):
        sample.write_sample(tmp_path / "a.sqlite", agents=-1)
    with pytest.raises(ValueError, match="agent"):
        sample.write_sample(tmp_path / "a.sqlite", agents=0, messages=5)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- CLI


def test_cli_writes_a_file_and_prints_a_summary(tmp_path, capsys):
    path = tmp_path / "db.sqlite"
    assert sample.main([str(path), "--scale", "tiny", "--seed", "5"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert str(path) in out and f"{len(sample.CASES)} messy cases" in out
    assert "agents 50" not in out and f"agents {50 + sum(p.table == 'agents' for p in sample.CASES)}" in out
    tiny = tmp_path / "clean.sqlite"
    assert (
        sample.main(
            [str(tiny), "--clean", "--agents", "5", "--balances", "2", "--payments", "3", "--messages", "4"]
        )
        == 0
    )
    assert counts(tiny) == {"agents": 5, "user_balance": 2, "payments": 3, "chat_messages": 4}


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "db.sqlite"
    assert sample.main([str(path), "--scale", "tiny"]) == 0
    before = dump(path)
    capsys.readouterr()
    assert sample.main([str(path), "--scale", "tiny", "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "--force" in err and "Traceback" not in err
    assert dump(path) == before
    assert sample.main([str(path), "--scale", "tiny", "--seed", "9", "--force"]) == 0
    assert dump(path) != before


def test_cli_rejects_a_bad_scale_naming_the_option(tmp_path, capsys):
    assert sample.main([str(tmp_path / "db.sqlite"), "--scale", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--scale" in err and "nope" in err
    assert not (tmp_path / "db.sqlite").exists()


def test_cli_reports_an_unwritable_folder(tmp_path, capsys):
    path = tmp_path / "missing" / "db.sqlite"
    assert sample.main([str(path), "--scale", "tiny"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err and "Traceback" not in err


def test_cli_rejects_a_negative_count(tmp_path, capsys):
    assert sample.main([str(tmp_path / "db.sqlite"), "--agents", "-3"]) == 2
    assert "--agents" in capsys.readouterr().err


def test_cli_as_a_process_exits_2_without_traceback(tmp_path):
    path = tmp_path / "db.sqlite"
    path.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "agent_migration.sample", str(path), "--scale", "tiny"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert str(path) in done.stderr and "Traceback" not in done.stderr


def test_cli_if_missing_creates_once_then_leaves_the_file_alone(tmp_path, capsys):
    path = tmp_path / "db.sqlite"
    assert sample.main([str(path), "--scale", "tiny", "--if-missing"]) == 0
    first = path.read_bytes()
    assert sample.main([str(path), "--scale", "tiny", "--seed", "9", "--if-missing"]) == 0
    assert path.read_bytes() == first
    assert "using the existing source" in capsys.readouterr().out


# ---------------------------------------------------------------- the reject-heavy variant


@pytest.mark.parametrize("messy", [False, True])
def test_reject_heavy_copy_moves_every_gene_out_of_integer_range_and_changes_nothing_else(tmp_path, messy):
    src, dst = tmp_path / "src.sqlite", tmp_path / "rejects.sqlite"
    sample.write_sample(src, scale="tiny", seed=5, messy=messy)
    before = dump(src)

    assert sample.write_reject_heavy(src, dst) == counts(src)["agents"]
    assert dump(src) == before  # the source is only read
    after = dump(dst)
    assert {t: after[t] for t in TABLES if t != "agents"} == {t: before[t] for t in TABLES if t != "agents"}
    gene = sample.COLUMNS["agents"].index("gene")
    assert len(after["agents"]) == len(before["agents"])
    for old, new in zip(before["agents"], after["agents"], strict=True):
        assert new[:gene] + new[gene + 1 :] == old[:gene] + old[gene + 1 :]
        assert isinstance(new[gene], int) and new[gene] > 2**31 - 1  # NULL and junk genes too
    assert not list(tmp_path.glob(".*.tmp"))


def test_reject_heavy_copy_refuses_to_overwrite_and_needs_a_source(tmp_path):
    src, dst = tmp_path / "src.sqlite", tmp_path / "rejects.sqlite"
    with pytest.raises(FileNotFoundError):
        sample.write_reject_heavy(src, dst)
    assert not dst.exists()
    sample.write_sample(src, scale="tiny", messy=False)
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        sample.write_reject_heavy(src, dst)
    assert dst.read_bytes() == b"keep me"
    assert sample.write_reject_heavy(src, dst, overwrite=True) == sample.SCALES["tiny"]["agents"]
