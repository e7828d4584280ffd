"""Issue 11's attacks on the audit trail, each as a test.

Every test here failed on the trail as it was before this milestone (155d955), except where a
comment says it guards something that already held. New names are read from the module inside
the tests, so the file also runs against the old code to show that. The head tests take
``stored`` and run on each backend (SQLite and PostgreSQL).
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

import pytest

import hitl_kit.audit as audit
from hitl_kit.audit import AuditSchemaError, AuditTrail, compute_row_hash, verify_file

from .test_audit import count_rows, insert_row, proposal, raw_connection


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "audit.db"


@pytest.fixture
def head_path(tmp_path):
    return tmp_path / "audit.head.json"


@pytest.fixture
def trail(db_path, head_path):
    with AuditTrail(db_path, head_path=head_path, durable=False) as audit_trail:
        for n in range(1, 6):
            audit_trail.append(proposal(n))
        yield audit_trail


@pytest.fixture
def stored(backend, tmp_path):
    """The same five rows and head file, on each backend."""
    with closing(backend.audit(tmp_path)) as audit_trail:
        for n in range(1, 6):
            audit_trail.append(proposal(n))
        yield audit_trail


def plain(path) -> sqlite3.Connection:
    """sqlite3.connect() as anyone would open the file: no recursive_triggers, no guards."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def rows_of(path) -> list[dict]:
    with closing(plain(path)) as conn:
        return [dict(row) for row in conn.execute("SELECT * FROM audit_log ORDER BY seq")]


# --- INSERT OR REPLACE from a plain connection ----------------------------------------------------


@pytest.mark.parametrize("verb", ["INSERT OR REPLACE", "REPLACE"])
@pytest.mark.parametrize("collision", ["another row's event_key", "another row's seq", "both"])
def test_replace_from_a_plain_connection_deletes_nothing(trail, db_path, verb, collision):
    before = rows_of(db_path)
    third, fourth = before[2], before[3]
    forged = {
        "another row's event_key": {**third, "seq": 99, "event_key": fourth["event_key"]},
        "another row's seq": {**third, "event_key": "forged", "reason": "replaced"},
        "both": {**third, "event_key": fourth["event_key"], "reason": "replaced"},  # rows 3 and 4
    }[collision]

    with closing(plain(db_path)) as conn, pytest.raises(sqlite3.IntegrityError, match="append"):
        insert_row(conn, forged, verb=verb)

    assert rows_of(db_path) == before
    assert trail.verify().ok


def test_rewriting_history_with_replace_and_a_new_head_is_refused(trail, db_path, head_path):
    """The attack in full: REPLACE rows 3..5 with edited, re-chained copies and rewrite the head
    file to match. Before, every statement ran and verify passed."""
    before = rows_of(db_path)
    refused = 0
    with closing(plain(db_path)) as conn:
        prev_hash = before[1]["row_hash"]
        for row in before[2:]:
            row = {**row, "reason": "nothing happened here", "prev_hash": prev_hash}
            row["row_hash"] = prev_hash = compute_row_hash(row)
            try:
                insert_row(conn, row, verb="INSERT OR REPLACE")
            except sqlite3.IntegrityError:
                refused += 1
    head_path.write_text(f'{{"seq": 5, "row_hash": "{prev_hash}"}}\n')

    assert refused == 3
    assert rows_of(db_path) == before
    # the head file alone was rewritten: that is reported, not accepted
    assert not trail.verify().ok
    assert verify_file(db_path, head=(5, before[-1]["row_hash"])).ok


@pytest.mark.parametrize("upsert", [
    "ON CONFLICT(event_key) DO UPDATE SET reason = 'changed'",
    "ON CONFLICT(seq) DO UPDATE SET reason = 'changed'",
    "ON CONFLICT DO NOTHING",
])
def test_upsert_changes_nothing(trail, db_path, upsert):
    """DO UPDATE already hit the update trigger before; DO NOTHING is now refused too."""
    before = rows_of(db_path)
    row = before[2]
    with closing(plain(db_path)) as conn, pytest.raises(sqlite3.IntegrityError, match="append"):
        conn.execute(f"INSERT INTO audit_log ({', '.join(row)}) VALUES "
                     f"({', '.join('?' * len(row))}) {upsert}", list(row.values()))
    assert rows_of(db_path) == before


# --- the writer lifting its own guards ------------------------------------------------------------


def test_the_trail_connection_cannot_lift_its_guard(trail, db_path):
    conn = trail.connection
    with pytest.raises((PermissionError, AttributeError)):
        conn.set_authorizer(None)
    for sql in ("DROP TRIGGER audit_log_no_delete", "DELETE FROM audit_log WHERE seq = 3",
                "UPDATE audit_log SET reason = 'edited'"):
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(sql)
    # what it returns are rows, not a cursor that leads back to a connection
    assert not hasattr(conn.execute("SELECT seq FROM audit_log"), "connection")
    assert count_rows(db_path) == 5
    assert trail.verify().ok


def drop_delete_through_the_writers_private_connection(trail, db_path):
    trail._conn.set_authorizer(None)  # Python can reach it; the trail must still notice
    trail._conn.execute("DROP TRIGGER audit_log_no_delete")
    trail._conn.execute("DELETE FROM audit_log WHERE seq = 3")


def drop_a_trigger_from_a_plain_connection(trail, db_path):
    with closing(plain(db_path)) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")


def delete_behind_the_trigger(db_path, seq: int) -> None:
    """Drop the delete trigger, delete a row, put the trigger back exactly as it was."""
    with closing(plain(db_path)) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_log_no_delete'"
                           ).fetchone()[0]
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
        conn.execute(sql)


def cut_the_last_row_and_put_the_trigger_back(trail, db_path):
    delete_behind_the_trigger(db_path, 5)


def delete_a_middle_row_and_put_the_trigger_back(trail, db_path):
    delete_behind_the_trigger(db_path, 2)


GUARD_ATTACKS = [  # (which trail, tamper): "trail" has a head (careful path), "headless" not
    (which, tamper)  # (one-INSERT path); without a head a cut *last* row leaves no trace at all
    for which in ("trail", "headless")
    for tamper in (drop_delete_through_the_writers_private_connection,
                   drop_a_trigger_from_a_plain_connection,
                   cut_the_last_row_and_put_the_trigger_back,
                   delete_a_middle_row_and_put_the_trigger_back)
    if not (which == "headless" and tamper is cut_the_last_row_and_put_the_trigger_back)
]


@pytest.mark.parametrize("which, tamper", GUARD_ATTACKS,
                         ids=[f"{w}-{t.__name__}" for w, t in GUARD_ATTACKS])
def test_a_guard_removed_behind_the_trails_back_stops_the_next_append(request, db_path, which,
                                                                      tamper):
    trail = request.getfixturevalue(which)
    tamper(trail, db_path)
    rows_before = count_rows(db_path)

    with pytest.raises(AuditSchemaError, match="Nothing was written"):
        trail.append(proposal(6))

    assert count_rows(db_path) == rows_before
    assert not trail.verify().ok, "verify must report it too"


# --- the head -------------------------------------------------------------------------------------


def test_a_deleted_head_file_is_reported_and_append_refuses(stored, backend, tmp_path):
    stored.head_path.unlink()

    result = stored.verify()
    assert not result.ok
    assert "head file" in result.problem and "missing" in result.problem
    with pytest.raises(audit.AuditHeadError, match="reanchor"):
        stored.append(proposal(6))
    assert len(backend.audit_rows(tmp_path)) == 5


def test_cutting_rows_and_deleting_the_head_is_reported(trail, db_path, head_path):
    """The attack as the issue found it: before, verify said ok and the next append re-anchored
    at the cut."""
    cut_the_last_row_and_put_the_trigger_back(trail, db_path)
    head_path.unlink()
    trail.close()

    reopened = AuditTrail(db_path, durable=False)  # no head_path: the trail remembers its head
    try:
        assert not reopened.verify().ok
        assert not verify_file(db_path).ok
        with pytest.raises(audit.AuditHeadError):
            reopened.append(proposal(6))
        assert count_rows(db_path) == 4
    finally:
        reopened.close()


def test_a_rolled_back_head_is_reported_and_append_refuses(backend, tmp_path):
    with closing(backend.audit(tmp_path)) as trail:
        head_path = trail.head_path
        for n in range(1, 4):
            trail.append(proposal(n))
        shutil.copy(head_path, tmp_path / "old.head.json")
        trail.append(proposal(4))
        trail.append(proposal(5))
        shutil.copy(tmp_path / "old.head.json", head_path)  # the head put back to row 3

        assert not trail.verify().ok  # (this much was reported before)
        with pytest.raises(audit.AuditHeadError, match="says row 3, the trail ends at row 5"):
            trail.append(proposal(6))
        assert len(backend.audit_rows(tmp_path)) == 5


def test_reanchor_is_the_explicit_way_back(stored, backend, tmp_path):
    stored.head_path.unlink()
    assert not stored.verify().ok

    assert stored.reanchor() == stored.head()
    assert stored.verify().ok
    stored.append(proposal(6))
    assert stored.verify().ok and len(backend.audit_rows(tmp_path)) == 6


def test_reanchor_refuses_a_trail_that_does_not_verify(stored, backend, tmp_path):
    with backend.tamperer(tmp_path) as conn:  # a middle row deleted, the guard put back
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    stored.head_path.unlink()
    with pytest.raises(audit.AuditHeadError, match="does not verify"):
        stored.reanchor()


# --- schema drift ---------------------------------------------------------------------------------


@pytest.mark.parametrize("change, problem", [
    ("ALTER TABLE audit_log ADD COLUMN note TEXT", "audit_log is not the expected definition"),
    ("CREATE INDEX audit_by_session ON audit_log (session_id)", "unexpected index"),
    ("CREATE TRIGGER sneaky AFTER INSERT ON audit_log BEGIN SELECT 1; END", "unexpected trigger"),
])
def test_schema_drift_is_reported(trail, db_path, change, problem):
    with closing(plain(db_path)) as conn:
        conn.execute(change)

    for result in (verify_file(db_path), trail.verify()):
        assert not result.ok
        assert problem in result.problem
    with pytest.raises(AuditSchemaError, match=problem):
        trail.append(proposal(6))


# Another spelling of the table's name: SQLite keeps it as written and compares names without
# regard to the case of ASCII letters.
SPELLINGS = ['"AUDIT_LOG"', "[Audit_Log]", "`audit_LOG`", "'Audit_log'", "main.AUDIT_LOG",
             'main."Audit_Log"', "AUDIT_LOG"]


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("which", ["trail", "headless"])
def test_a_trigger_that_drops_rows_is_found_however_the_table_is_spelled(request, db_path,
                                                                         which, spelling):
    """Before, the schema check compared names as written: the trigger went unseen, append
    returned a row that was not there, and the head's allowance absorbed the gap."""
    trail = request.getfixturevalue(which)
    with closing(plain(db_path)) as conn:
        conn.execute(f"CREATE TRIGGER drop_rows BEFORE INSERT ON {spelling} "
                     "WHEN NEW.session_id = 'thread-1' BEGIN SELECT RAISE(IGNORE); END")

    for result in (verify_file(db_path), trail.verify()):
        assert not result.ok and "unexpected trigger drop_rows" in result.problem
    with pytest.raises(AuditSchemaError, match="drop_rows"):
        trail.append(proposal(6))
    assert count_rows(db_path) == 5


@pytest.mark.parametrize("change, found", [
    ("CREATE VIEW recent AS SELECT * FROM Audit_Log", "unexpected view recent"),
    ("CREATE INDEX by_session ON [AUDIT_LOG] (session_id)", "unexpected index by_session"),
    ("CREATE TABLE notes (n TEXT); CREATE TRIGGER meddle AFTER INSERT ON notes "
     "BEGIN INSERT INTO \"AUDIT_META\" VALUES ('x', 'y'); END", "unexpected trigger meddle"),
    ("CREATE TRIGGER Audit_Log_No_Delete_2 BEFORE INSERT ON audit_meta /* audit_log */ "
     "BEGIN SELECT 1; END", "unexpected trigger Audit_Log_No_Delete_2"),
])
def test_every_object_that_touches_the_audit_tables_is_compared(trail, db_path, change, found):
    with closing(plain(db_path)) as conn:
        conn.executescript(change)
    for result in (verify_file(db_path), trail.verify()):
        assert not result.ok and found in result.problem
    with pytest.raises(AuditSchemaError, match=found):
        trail.append(proposal(6))


def test_objects_that_do_not_touch_the_trail_are_left_alone(trail, db_path):
    with closing(plain(db_path)) as conn:
        conn.executescript("CREATE TABLE notes (text TEXT); CREATE INDEX by_text ON notes (text);"
                           "CREATE VIEW audit_notes AS SELECT 'audit log' AS what FROM notes")
    assert verify_file(db_path).ok and trail.verify().ok
    trail.append(proposal(6))


def run_as_the_owner(backend, folder, *statements: str) -> None:
    """Statements run by someone who gets round the writer's guard (a plain connection to the
    file, the server's superuser)."""
    if backend.name == "sqlite":
        with closing(plain(folder / "audit.db")) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    from hitl_kit.postgres import connect

    with connect(backend.admin_url(folder)) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.mark.parametrize("change, found", [
    ("CREATE INDEX by_session ON {log} (session_id)", "by_session"),
    ("CREATE VIEW recent AS SELECT seq FROM {log}", "view recent"),
])
def test_an_index_or_a_view_on_the_trail_is_reported_and_refused(stored, backend, tmp_path,
                                                                 change, found):
    log = "audit_log" if backend.name == "sqlite" else "hitl.audit_log"
    run_as_the_owner(backend, tmp_path, change.format(log=log).replace(
        "VIEW recent", "VIEW recent" if backend.name == "sqlite" else "VIEW hitl.recent"))
    result = stored.verify()
    assert not result.ok and found in result.problem
    with pytest.raises(AuditSchemaError, match=found):
        stored.append(proposal(6))
    assert len(backend.audit_rows(tmp_path)) == 5


def drop_every_insert(backend, folder) -> None:
    """A trigger that makes every INSERT into the trail do nothing, without an error."""
    if backend.name == "sqlite":
        run_as_the_owner(backend, folder, "CREATE TRIGGER drop_rows BEFORE INSERT ON audit_log "
                                          "BEGIN SELECT RAISE(IGNORE); END")
        return
    run_as_the_owner(backend, folder,
                     "CREATE FUNCTION hitl.drop_row() RETURNS trigger LANGUAGE plpgsql "
                     "AS $$ BEGIN RETURN NULL; END $$",
                     "CREATE TRIGGER drop_rows BEFORE INSERT ON hitl.audit_log "
                     "FOR EACH ROW EXECUTE FUNCTION hitl.drop_row()")


def blind_schema_checks(monkeypatch) -> None:
    """The checks of the schema made to miss everything, as a check with a gap would."""
    import hitl_kit.postgres_audit as postgres_audit

    monkeypatch.setattr(audit, "schema_problems", lambda conn: [])
    monkeypatch.setattr(postgres_audit, "guard_problems", lambda conn: [])


def test_an_append_sees_its_row_stored_even_when_the_schema_check_misses(stored, backend,
                                                                          tmp_path, monkeypatch):
    """The last line of defence: a check of the schema that missed the trigger (made blind
    here on purpose) still leaves the append reading its row back."""
    drop_every_insert(backend, tmp_path)
    blind_schema_checks(monkeypatch)
    with pytest.raises(AuditSchemaError, match="row 6 was not stored as written"):
        stored.append(proposal(6))
    assert len(backend.audit_rows(tmp_path)) == 5


def test_the_one_statement_append_sees_its_row_stored(headless, db_path, monkeypatch):
    from .conftest import SqliteBackend

    drop_every_insert(SqliteBackend(), db_path.parent)
    blind_schema_checks(monkeypatch)
    with pytest.raises(AuditSchemaError, match="row 6 was not stored as written"):
        headless.append(proposal(6))
    assert count_rows(db_path) == 5


# --- secrets and limits ---------------------------------------------------------------------------


def test_the_reason_is_redacted_like_the_arguments(trail):
    row = trail.append(proposal(6, reason="ok, the db password: hunter2 is rotated tomorrow"))
    assert "hunter2" not in row["reason"]
    assert row["reason"].startswith("ok, the db password: [REDACTED sha256:")


def test_a_5000_deep_dict_is_refused_with_a_value_error(trail, db_path):
    deep = {}
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(ValueError, match="levels deep"):
        trail.append(proposal(6, parameters={"payload": deep}))
    assert count_rows(db_path) == 5


def test_a_dict_that_contains_itself_is_refused_with_a_value_error(trail):
    loop = {}
    loop["again"] = loop
    with pytest.raises(ValueError, match="contains itself"):
        trail.append(proposal(6, parameters={"loop": loop}))


def test_tampered_trail_copy_with_dropped_triggers_keeps_the_first_bad_row(trail, db_path):
    """Schema drift and a bad row together: both are reported, the row by its number."""
    with closing(raw_connection(db_path, drop_triggers=True)) as conn:
        conn.execute("UPDATE audit_log SET session_id = 'someone-else' WHERE seq = 4")
    result = verify_file(db_path)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "missing" in result.problem


# --- the same guards on the one-statement append path (a trail without a head file) ----------


@pytest.fixture
def headless(db_path):
    with AuditTrail(db_path, durable=False) as audit_trail:
        for n in range(1, 6):
            audit_trail.append(proposal(n))
        yield audit_trail


def test_a_trail_without_head_appends_with_one_insert(headless):
    statements = []
    headless._conn.set_trace_callback(statements.append)
    headless.append(proposal(6))
    statements = [sql for sql in statements if not sql.startswith("--")]  # trigger bodies
    assert statements[0] == "PRAGMA schema_version"  # checked first: see the tests below
    # then one INSERT (SQLite traces it again for its trigger): no BEGIN, SELECT or COMMIT
    (insert,) = set(statements[1:])
    assert insert.startswith("INSERT INTO audit_log")
    assert headless.verify().ok


def test_another_writer_in_between_keeps_one_chain(headless, db_path):
    """(Held before too; here it guards the one-INSERT path's cached newest row.)"""
    with AuditTrail(db_path, durable=False) as other:
        for n in range(6, 12):
            (headless if n % 2 else other).append(proposal(n))
    result = headless.verify()
    assert result.ok and result.rows_checked == 11


def test_the_writer_cannot_edit_the_schema_table(headless):
    """(Held before too: kept so that no authorizer change lets it through.)"""
    for sql in ("UPDATE sqlite_master SET sql = 'CREATE TABLE x (y)' WHERE name = 'audit_log'",
                "PRAGMA writable_schema = 1"):
        with pytest.raises(sqlite3.DatabaseError):
            headless._conn.execute(sql)
    assert headless.verify().ok


# --- the newest row cut (the head protocol's own tests: tests/test_audit_head.py) ---------


def test_a_cut_last_row_is_still_found(trail, db_path, head_path):
    """The newest row cut behind a dropped and restored trigger: the head marks it committed."""
    cut_the_last_row_and_put_the_trigger_back(trail, db_path)
    result = verify_file(db_path)
    assert not result.ok and "rows 5..5 were removed" in result.problem
    with pytest.raises(audit.AuditIntegrityError):
        trail.append(proposal(6))
