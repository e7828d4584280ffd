"""Tests for hitl_kit.audit: guards, hash chain, tampering, concurrency, redaction.

Tests taking ``trail`` or ``five_rows`` run on each backend (``backend``: SQLite and
PostgreSQL): appends, idempotency, tampering found by verify, the head, concurrency. The five
rows are appended directly, then written by an agent of each kind (the kit's graph, and
``create_agent`` with ``ApprovalMiddleware``). Tests of SQLite's own guards (triggers, the
authorizer, PRAGMAs) take ``sqlite_trail``."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from hitl_kit.audit import (
    COLUMNS,
    GENESIS_HASH,
    TRIGGER_SQL,
    AuditConflictError,
    AuditSchemaError,
    AuditTrail,
    canonical_json,
    compute_row_hash,
    open_readonly,
    read_head,
    verify_file,
)
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World

from .conftest import AGENT_KINDS, agent_of_kind

T0 = datetime(2026, 11, 26, 21, 30, tzinfo=UTC)


def proposal(n: int, **changes) -> dict:
    entry = {
        "event_key": f"thread-1:call-{n}:proposed",
        "session_id": "thread-1",
        "action_type": "send_email",
        "parameters": {"to": "ana@example.com", "n": n},
        "reversibility_class": "irreversible_low",
        "event": "proposed",
        "proposed_at": T0 + timedelta(minutes=n),
    }
    return {**entry, **changes}


def resolution(n: int, **changes) -> dict:
    entry = {
        **proposal(n),
        "event_key": f"thread-1:call-{n}:resolved",
        "event": "resolved",
        "channel": "api",
        "approver_id": "alice",
        "decision": "approved",
        "outcome": "success",
        "executed_at": T0 + timedelta(minutes=n, seconds=30),
    }
    return {**entry, **changes}


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "audit.db"


@pytest.fixture
def trail(backend, tmp_path):
    """A trail with a head file, on each backend; durable=False skips an fsync per append
    (test_durable_by_default_fast_on_request tests it)."""
    with closing(backend.audit(tmp_path)) as audit_trail:
        yield audit_trail


@pytest.fixture(params=["appended", *AGENT_KINDS])
def five_rows(trail, request):
    """Five rows: appended directly, or written by an agent of each kind (two calls proposed
    and resolved, a third proposed and pending)."""
    if request.param == "appended":
        for n in range(1, 6):
            trail.append(proposal(n))
        return trail
    world = World()
    agent = agent_of_kind(request.param)(OfflineChatModel(), world.tools(), world=world,
                                         audit=trail)
    agent.start("delete customer 3", "a")
    agent.resume("a", {"kind": "approve", "approver": "ana"})
    agent.start("read customer 2", "b")
    agent.start("delete customer 4", "c")
    assert trail.head()[0] == 5
    return trail


@pytest.fixture
def sqlite_trail(db_path, tmp_path):
    with AuditTrail(db_path, head_path=tmp_path / "audit.head.json", durable=False) as audit_trail:
        yield audit_trail


@pytest.fixture
def sqlite_five_rows(sqlite_trail):
    for n in range(1, 6):
        sqlite_trail.append(proposal(n))
    return sqlite_trail


def raw_connection(path, *, drop_triggers=False) -> sqlite3.Connection:
    """A plain connection without the trail's guards, as a tamperer would use."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    if drop_triggers:
        for name in TRIGGER_SQL:
            conn.execute(f"DROP TRIGGER {name}")
    return conn


def insert_row(conn: sqlite3.Connection, row: dict, verb: str = "INSERT") -> None:
    conn.execute(
        f"{verb} INTO audit_log ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )


def count_rows(path) -> int:
    with closing(open_readonly(path)) as conn:
        return conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]


# --- writing -------------------------------------------------------------------------------------


def test_append_links_rows_into_a_chain(trail):
    first = trail.append(proposal(1))
    second = trail.append(resolution(1))

    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev_hash"] == GENESIS_HASH
    assert second["prev_hash"] == first["row_hash"]
    assert first["row_hash"] == compute_row_hash(first)
    assert first["parameters"] == '{"n":1,"to":"ana@example.com"}'
    assert first["decision"] is None and first["approver_id"] is None
    assert second["proposed_at"] == first["proposed_at"] == "2026-11-26T21:31:00.000000+00:00"
    assert trail.rows() == [first, second]
    assert trail.head() == (2, second["row_hash"])
    assert read_head(trail.head_path) == trail.head()


@pytest.mark.parametrize(
    "proposed_at",
    [
        datetime(2026, 11, 26, 23, 30, tzinfo=timezone(timedelta(hours=2))),
        "2026-11-26T23:30:00+02:00",
        "2026-11-26T21:30:00Z",
    ],
)
def test_timestamps_are_stored_as_utc(trail, proposed_at):
    row = trail.append(proposal(1, proposed_at=proposed_at))

    assert row["proposed_at"] == "2026-11-26T21:30:00.000000+00:00"
    recorded = datetime.fromisoformat(row["recorded_at"])
    assert recorded.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - recorded) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({k: v for k, v in proposal(1).items() if k != "event_key"}, "event_key"),
        ({k: v for k, v in proposal(1).items() if k != "proposed_at"}, "proposed_at"),
        (proposal(1, reversibility_class="kinda_reversible"), "reversibility_class"),
        (proposal(1, event="cancelled"), "event"),
        (proposal(1, proposed_at=datetime(2026, 11, 26, 21, 30)), "no timezone"),
        (proposal(1, proposed_at="2026-11-26 21:30"), "no timezone"),
        (proposal(1, parameters={"when": {1, 2}}), "JSON-serialisable"),
        (proposal(1, parameters=["to", "ana"]), "dict of tool arguments"),
        (proposal(1, aprover_id="alice"), "unknown field"),
        (proposal(1, decision="approved"), "'proposed' row must not have"),
        (resolution(1, approver_id=None), "approver_id is required"),
        (resolution(1, decision="maybe"), "decision"),
        (resolution(1, decision="rejected"), "outcome must be 'not_executed'"),
        (resolution(1, decision="timed-out", outcome="not_executed", channel="timer"), "'system'"),
        (resolution(1, approver_id="auto", channel="policy"), "'auto'"),
        (resolution(1, channel=None), "channel is required"),
        (resolution(1, channel="carrier-pigeon"), "channel"),
        (resolution(1, approver_id="system", decision="timed-out", outcome="not_executed",
                    executed_at=None, channel="card"), "'timer'"),
        (resolution(1, executed_at=None), "executed_at"),
    ],
)
def test_bad_input_raises_and_writes_nothing(five_rows, backend, tmp_path, entry, message):
    head_before = five_rows.head()

    with pytest.raises(ValueError, match=message):
        five_rows.append(entry)

    assert len(backend.audit_rows(tmp_path)) == 5
    assert five_rows.head() == head_before
    assert five_rows.verify().ok


def writer_setting(trail: AuditTrail, pragma: str):
    """A setting of the trail's own (private) writer connection."""
    return trail._conn.execute(f"PRAGMA {pragma}").fetchone()[0]


def test_durable_by_default_fast_on_request(db_path, tmp_path):
    with AuditTrail(db_path, head_path=tmp_path / "head.json") as trail:
        row = trail.append(proposal(1))
        assert writer_setting(trail, "synchronous") == 2  # FULL
        assert trail.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert read_head(tmp_path / "head.json") == (1, row["row_hash"])
    with AuditTrail(db_path, durable=False) as trail:
        assert writer_setting(trail, "synchronous") == 1  # NORMAL


def test_memory_database_is_refused():
    with pytest.raises(ValueError, match="file path"):
        AuditTrail(":memory:")


# --- idempotency ---------------------------------------------------------------------------------


def test_same_event_key_twice_writes_one_row(trail, backend, tmp_path):
    first = trail.append(proposal(1))
    again = trail.append(proposal(1))

    assert again == first
    assert len(backend.audit_rows(tmp_path)) == 1


def test_same_event_key_from_many_threads_writes_one_row(trail, backend, tmp_path):
    returned = []
    threads = [
        threading.Thread(target=lambda: returned.append(trail.append(proposal(1))))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(backend.audit_rows(tmp_path)) == 1
    assert len(returned) == 8 and all(row == returned[0] for row in returned)


def test_same_event_key_with_different_content_raises(trail, backend, tmp_path):
    trail.append(proposal(1))

    with pytest.raises(AuditConflictError, match="different parameters"):
        trail.append(proposal(1, parameters={"to": "eve@example.com"}))
    assert len(backend.audit_rows(tmp_path)) == 1


# --- guards: CHECKs, triggers, authorizer, schema check, read-only readers ------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"reversibility_class": "bogus"},
        {"event": "cancelled"},
        {"decision": "approved"},  # a proposed row with a decision
        {"event": "resolved"},  # a resolved row without decision, outcome, approver
        {"proposed_at": "2026-11-26 21:30"},  # not UTC ISO text
        {"parameters": "not json"},
    ],
)
def test_check_constraints_reject_bad_rows(sqlite_five_rows, db_path, changes):
    row = {**sqlite_five_rows.rows()[-1], "seq": 6, "event_key": "forged", **changes}
    with (
        closing(raw_connection(db_path)) as conn,
        pytest.raises(sqlite3.IntegrityError, match="CHECK"),
    ):
        insert_row(conn, row)
    assert count_rows(db_path) == 5


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO audit_log (seq) VALUES (99)",
        "UPDATE audit_log SET reason = 'edited'",
        "DELETE FROM audit_log WHERE seq = 3",
        "DROP TRIGGER audit_log_no_update",
        "DROP TABLE audit_log",
        "ALTER TABLE audit_log ADD COLUMN note TEXT",
        "CREATE TRIGGER sneaky AFTER INSERT ON audit_log BEGIN SELECT 1; END",
        "PRAGMA writable_schema = 1",
        "PRAGMA ignore_check_constraints = 1",
        "PRAGMA journal_mode = DELETE",
    ],
)
def test_trail_connection_refuses_changes_to_history(sqlite_five_rows, db_path, sql):
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        sqlite_five_rows.connection.execute(sql)

    assert sqlite_five_rows.connection.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 5
    assert sqlite_five_rows.verify().ok


def test_insert_or_replace_on_trail_connection_is_refused(sqlite_five_rows):
    replacement = {**sqlite_five_rows.rows()[2], "reason": "replaced"}
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        insert_row(sqlite_five_rows.connection, replacement, verb="INSERT OR REPLACE")
    assert sqlite_five_rows.verify().ok


@pytest.mark.parametrize(
    "sql, message",
    [
        ("UPDATE audit_log SET reason = 'edited' WHERE seq = 2", "rows cannot be updated"),
        ("DELETE FROM audit_log WHERE seq = 2", "rows cannot be deleted"),
    ],
)
def test_triggers_refuse_changes_from_any_connection(sqlite_five_rows, db_path, sql, message):
    with (
        closing(raw_connection(db_path)) as conn,
        pytest.raises(sqlite3.IntegrityError, match=message),
    ):
        conn.execute(sql)
    assert sqlite_five_rows.verify().ok


def test_opening_a_database_with_a_dropped_trigger_raises(sqlite_five_rows, db_path):
    sqlite_five_rows.close()
    with closing(raw_connection(db_path)) as conn:
        conn.execute("DROP TRIGGER audit_log_no_delete")

    with pytest.raises(AuditSchemaError, match="audit_log_no_delete is missing"):
        AuditTrail(db_path)
    result = verify_file(db_path)  # the rows themselves can still be checked
    assert (result.ok, result.rows_checked, result.first_bad_seq) == (False, 5, None)
    assert result.schema_problems == ("audit_log_no_delete is missing",)


def test_opening_a_database_with_another_audit_table_raises(db_path):
    with closing(raw_connection(db_path)) as conn:
        conn.execute("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, what TEXT)")

    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 2")  # claims to be this version: the text still differs
    conn.commit()
    conn.close()
    with pytest.raises(AuditSchemaError, match="audit_log is not the expected definition"):
        AuditTrail(db_path)


def test_opening_a_database_with_an_extra_trigger_raises(sqlite_five_rows, db_path):
    sqlite_five_rows.close()
    with closing(raw_connection(db_path)) as conn:
        conn.execute("CREATE TRIGGER sneaky AFTER INSERT ON audit_log BEGIN SELECT 1; END")

    with pytest.raises(AuditSchemaError, match="unexpected trigger.*sneaky"):
        AuditTrail(db_path)


def test_readonly_connection_reads_but_cannot_write(sqlite_five_rows, db_path):
    with closing(open_readonly(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 5
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO audit_log (seq) VALUES (99)")


def test_importing_the_module_does_not_import_pandas():
    code = "import sys, hitl_kit.audit; print('pandas' in sys.modules)"
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert result.stdout.strip() == "False", result.stderr


# --- tamper detection ----------------------------------------------------------------------------


def edit_row_3(conn):
    conn.execute('UPDATE audit_log SET parameters = \'{"to":"eve@example.com"}\' WHERE seq = 3')


def edit_row_3_and_rehash_it(conn):
    row = conn.row(3)
    row["reason"] = "nothing to see"
    conn.execute(
        "UPDATE audit_log SET reason = ?, row_hash = ? WHERE seq = 3",
        (row["reason"], compute_row_hash(row)),
    )


def delete_row_3(conn):
    conn.execute("DELETE FROM audit_log WHERE seq = 3")


def swap_rows_2_and_4(conn):
    conn.execute("UPDATE audit_log SET seq = -2 WHERE seq = 2")
    conn.execute("UPDATE audit_log SET seq = 2 WHERE seq = 4")
    conn.execute("UPDATE audit_log SET seq = 4 WHERE seq = -2")


def forge_row_6_with_a_made_up_hash(conn):
    last = conn.row(5)
    fake_hash = hashlib.sha256(b"looks legit").hexdigest()
    conn.insert({**last, "seq": 6, "event_key": "forged", "prev_hash": last["row_hash"],
                 "row_hash": fake_hash})  # fmt: skip


def replace_row_3(conn):
    # With the triggers gone, INSERT OR REPLACE deletes row 3 and writes another in its place.
    conn.replace({**conn.row(3), "reason": "replaced"})


def sneak_in_a_bad_decision_with_checks_off(conn):
    conn.checks_off()
    last = conn.row(5)
    row = {**last, "seq": 6, "event_key": "sneaky", "event": "resolved", "approver_id": "mallory",
           "decision": "maybe", "outcome": "success", "prev_hash": last["row_hash"]}  # fmt: skip
    conn.insert({**row, "row_hash": compute_row_hash(row)})


def sneak_in_parameters_that_are_not_json(conn):
    conn.checks_off()
    last = conn.row(5)
    row = {**last, "seq": 6, "event_key": "not-json", "parameters": "{to: eve",
           "prev_hash": last["row_hash"]}  # fmt: skip
    conn.insert({**row, "row_hash": compute_row_hash(row)})


@pytest.mark.parametrize(
    "tamper, first_bad_seq",
    [
        (edit_row_3, 3),
        (edit_row_3_and_rehash_it, 4),  # a rehashed edit breaks the next link
        (delete_row_3, 3),
        (swap_rows_2_and_4, 2),
        (forge_row_6_with_a_made_up_hash, 6),
        (replace_row_3, 3),
        (sneak_in_a_bad_decision_with_checks_off, 6),
        (sneak_in_parameters_that_are_not_json, 6),
    ],
)
def test_verify_finds_the_first_tampered_row(five_rows, backend, tmp_path, tamper,
                                             first_bad_seq):
    assert five_rows.verify().ok
    with backend.tamperer(tmp_path) as conn:  # the schema looks untouched afterwards
        tamper(conn)

    result = five_rows.verify()
    assert not result.ok
    assert result.first_bad_seq == first_bad_seq, result.problem
    assert result.rows_checked == first_bad_seq - 1
    assert f"row {first_bad_seq}" in result.problem
    assert result.schema_problems == ()
    # no head needed for these
    assert backend.verify_outside(tmp_path, use_head=False).first_bad_seq == first_bad_seq


def test_truncated_tail_is_found_only_against_the_head(five_rows, backend, tmp_path):
    saved_head = five_rows.head()
    with backend.tamperer(tmp_path) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq >= 4")

    assert backend.verify_outside(tmp_path, use_head=False).ok  # the chain alone looks fine
    # against a copy of the head, the head file the trail recorded, and from the open trail
    for result in (backend.verify_outside(tmp_path, head=saved_head),
                   backend.verify_outside(tmp_path), five_rows.verify()):
        assert not result.ok
        assert result.first_bad_seq == 4
        assert "rows 4..5 were removed" in result.problem


def test_row_forged_with_a_correct_hash_is_found_only_against_the_head(five_rows, backend,
                                                                       tmp_path):
    saved_head = five_rows.head()
    with backend.tamperer(tmp_path) as conn:
        last = conn.row(5)
        row = {**last, "seq": 6, "event_key": "forged", "prev_hash": last["row_hash"]}
        conn.insert({**row, "row_hash": compute_row_hash(row)})

    assert backend.verify_outside(tmp_path, use_head=False).ok
    for result in (backend.verify_outside(tmp_path, head=saved_head),
                   backend.verify_outside(tmp_path)):
        assert (result.ok, result.first_bad_seq) == (False, 6)
        assert "come after the head" in result.problem


def test_rewritten_chain_is_found_against_the_head(five_rows, backend, tmp_path):
    saved_head = five_rows.head()
    with backend.tamperer(tmp_path) as conn:
        prev_hash = GENESIS_HASH
        for row in conn.rows():
            row.update(reason="rewritten", prev_hash=prev_hash)
            row["row_hash"] = prev_hash = compute_row_hash(row)
            conn.execute(
                "UPDATE audit_log SET reason = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
                (row["reason"], row["prev_hash"], row["row_hash"], row["seq"]),
            )

    assert backend.verify_outside(tmp_path, use_head=False).ok
    result = backend.verify_outside(tmp_path, head=saved_head)
    assert (result.ok, result.first_bad_seq) == (False, 5)


# --- concurrency ---------------------------------------------------------------------------------


def append_from_threads(trails: list[AuditTrail], threads: int, per_thread: int) -> list:
    errors = []
    start = threading.Barrier(threads)

    def work(worker: int):
        trail = trails[worker % len(trails)]
        start.wait()
        try:
            for i in range(per_thread):
                trail.append(proposal(i, event_key=f"worker-{worker}:call-{i}:proposed"))
        except Exception as exc:  # collected so the main thread can fail the test
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_threads_on_one_trail_keep_one_chain(trail):
    assert append_from_threads([trail], threads=8, per_thread=50) == []

    rows = trail.rows()
    assert [row["seq"] for row in rows] == list(range(1, 401))
    assert len({row["event_key"] for row in rows}) == 400
    assert trail.verify() == trail.verify(head=trail.head())
    assert trail.verify().ok and trail.verify().rows_checked == 400


def test_several_trails_on_one_file_keep_one_chain(backend, tmp_path):
    head_path = tmp_path / "audit.head.json"
    backend.url(tmp_path)  # the database made first (SQLite: the file is made by the trails)
    with ThreadPoolExecutor(4) as pool:  # opened at once: exactly one of them creates the schema
        trails = list(pool.map(lambda _: backend.audit(tmp_path), range(4)))
    try:
        assert append_from_threads(trails, threads=8, per_thread=50) == []
        result = trails[0].verify()
        assert result.ok, result.problem
        assert result.rows_checked == 400
        assert [row["seq"] for row in trails[1].rows()] == list(range(1, 401))
        assert read_head(head_path) == trails[2].head()
    finally:
        for trail in trails:
            trail.close()


# --- secrets and control characters --------------------------------------------------------------


def short_hash(secret: str) -> str:
    return f"[REDACTED sha256:{hashlib.sha256(secret.encode()).hexdigest()[:12]}]"


def test_secrets_are_redacted_with_a_matching_hash(sqlite_trail, db_path):
    parameters = {
        "password": "hunter2",
        "api_key": "sk-live-123",
        "Authorization": "Bearer abc.def",
        "dsn": "host=db user=app",
        "X-Api-Token": "tok-999",
        "database": "postgres://app:s3cr3t@db.internal/prod",
        "nested": {"headers": [{"client_secret": "shh"}], "page": 2},
        "to": "ana@example.com",
    }
    row = sqlite_trail.append(proposal(1, parameters=parameters))

    stored = json.loads(row["parameters"])
    assert stored["password"] == short_hash("hunter2")
    assert stored["api_key"] == short_hash("sk-live-123")
    assert stored["Authorization"] == short_hash("Bearer abc.def")
    assert stored["dsn"] == short_hash("host=db user=app")
    assert stored["X-Api-Token"] == short_hash("tok-999")
    # in a string only the secret part goes: the rest of the URL stays readable
    assert stored["database"] == f"postgres://app:{short_hash('s3cr3t')}@db.internal/prod"
    assert stored["nested"] == {"headers": [{"client_secret": short_hash("shh")}], "page": 2}
    assert stored["to"] == "ana@example.com"
    sqlite_trail.close()  # checkpoint the WAL so every byte is in the file we read
    on_disk = db_path.read_bytes()
    for secret in (b"hunter2", b"sk-live-123", b"abc.def", b"tok-999", b"s3cr3t", b"shh"):
        assert secret not in on_disk


def test_control_characters_cannot_forge_log_lines(trail):
    row = trail.append(
        resolution(
            1,
            reason="fine\nseq=99 decision=approved approver=admin\r",
            approver_id="alice\n",
            session_id="thread-1\x1b[2K",
            parameters={"body": "line 1\nline 2", "sub\nject": "hi"},
        )
    )

    assert row["reason"] == "fine\\nseq=99 decision=approved approver=admin\\r"
    assert row["approver_id"] == "alice\\n"
    assert row["session_id"] == "thread-1\\u001b[2K"
    assert json.loads(row["parameters"]) == {"body": "line 1\\nline 2", "sub\\nject": "hi"}
    printed = "\n".join(" ".join(str(value) for value in r.values()) for r in trail.rows())
    assert len(printed.splitlines()) == 1


@pytest.mark.parametrize("text", ["plain", "ünïcödé ✓", 'quote " and \\\\ backslash', "tab\\t",
                                  "\\u2028 line sep", "emoji 🙂", ""])
def test_row_hash_is_sha256_of_prev_hash_and_canonical_json(text):
    row = {name: None for name in COLUMNS}
    row.update(seq=7, event_key=text, recorded_at=text, session_id="s", action_type=text,
               parameters='{"a":1}', reversibility_class="fully_reversible", event="proposed",
               proposed_at=text, prev_hash="0" * 64)
    content = {name: row[name] for name in COLUMNS if name != "row_hash"}
    expected = hashlib.sha256((row["prev_hash"] + canonical_json(content)).encode()).hexdigest()
    assert compute_row_hash(row) == expected
