"""Drill 3: design the audit table and write ``log_action(conn, entry)`` that only INSERTs.

The learner writes ``SCHEMA`` (SQL: the ``audit_log`` table and its triggers) and
``log_action(conn, entry)``. Every check builds a fresh in-memory database from ``SCHEMA`` and
tries things on it: good rows and bad rows, an UPDATE and a DELETE, and calls to ``log_action``
on a connection that records each statement it runs. No check compares the SQL with one answer.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone

from hitl_kit.audit import DECISIONS
from hitl_kit.policy import Reversibility
from hitl_kit.selfcheck import Check, Drill, NotAttempted

TABLE = "audit_log"
# The keys of the entry log_action receives; each one is also a column.
ENTRY_FIELDS = (
    "session_id", "action_type", "parameters", "reversibility_class", "approver_id",
    "decision", "outcome", "proposed_at", "executed_at",
)  # fmt: skip
COLUMNS = ("timestamp", *ENTRY_FIELDS)  # timestamp: when log_action wrote the row
NULLABLE = ("executed_at",)  # None when the action did not run
TIMESTAMPS = ("timestamp", "proposed_at", "executed_at")
ALLOWED = {
    "reversibility_class": tuple(k.value for k in Reversibility),
    "decision": DECISIONS,
    "outcome": ("success", "error", "rollback", "not_executed"),
}
NOT_ALLOWED = {
    "reversibility_class": ("kinda_reversible", "irreversible"),
    "decision": ("maybe", "approve", "Approved"),
    "outcome": ("rejected", "ok"),  # the seed stores outcome "rejected": a decision, not an outcome
}

_PLUS_TWO = timezone(timedelta(hours=2))
_PROPOSED = datetime(2026, 11, 26, 23, 30, tzinfo=_PLUS_TWO)  # 21:30 UTC, given in UTC+2
_EXECUTED = datetime(2026, 11, 26, 21, 31, 10, tzinfo=UTC)


def example_entries() -> list[dict]:
    """Two entries as the agent would pass them to log_action: one approved, one rejected."""
    approved = {
        "session_id": "run-7",
        "action_type": "delete_customer",
        "parameters": {"customer_id": 3},
        "reversibility_class": "irreversible_high",
        "approver_id": "ana",
        "decision": "approved",
        "outcome": "success",
        "proposed_at": _PROPOSED,
        "executed_at": _EXECUTED,
    }
    rejected = {**approved, "parameters": {"customer_id": 1}, "approver_id": "bo",
                "decision": "rejected", "outcome": "not_executed", "executed_at": None}
    return [approved, rejected]


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _valid_rows() -> list[dict]:
    """Rows any sensible schema accepts; between them they use every allowed value."""
    base = {
        "timestamp": _utc_text(_EXECUTED + timedelta(seconds=1)),
        "session_id": "run-7",
        "action_type": "delete_customer",
        "parameters": '{"customer_id": 3}',
        "reversibility_class": "irreversible_high",
        "approver_id": "ana",
        "decision": "approved",
        "outcome": "success",
        "proposed_at": _utc_text(_PROPOSED),
        "executed_at": _utc_text(_EXECUTED),
    }
    not_run = {"outcome": "not_executed", "executed_at": None}
    return [
        base,
        {**base, "reversibility_class": "irreversible_low", "outcome": "error"},
        {**base, "reversibility_class": "partially_reversible", "outcome": "rollback"},
        {**base, "reversibility_class": "fully_reversible", "approver_id": "auto",
         "decision": "auto-approved"},
        {**base, "approver_id": "bo", "decision": "rejected", **not_run},
        {**base, "approver_id": "system", "decision": "timed-out", **not_run},
    ]


# -- building the learner's database --------------------------------------------------------------

def _has_sql(text: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    return bool(without_comments.strip())


def _schema_db(ns: dict) -> sqlite3.Connection:
    """A fresh in-memory database built from the learner's SCHEMA."""
    schema = ns.get("SCHEMA")
    if schema is None:
        raise NotAttempted("SCHEMA is not defined yet")
    if not isinstance(schema, str):
        raise AssertionError(f"SCHEMA must be a string of SQL, not {type(schema).__name__}")
    if not _has_sql(schema):
        raise NotAttempted("SCHEMA has no SQL yet, only comments")
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(schema)
    except sqlite3.Error as exc:
        conn.close()
        raise AssertionError(f"SCHEMA does not run: {exc}") from None
    return conn


def _declared_types(conn: sqlite3.Connection) -> dict[str, str]:
    found = conn.execute(f"PRAGMA table_info({TABLE})").fetchall()
    assert found, f"SCHEMA creates no table named {TABLE}"
    return {row[1].lower(): row[2] for row in found}


def _require_columns(conn: sqlite3.Connection) -> dict[str, str]:
    types = _declared_types(conn)
    missing = [column for column in COLUMNS if column not in types]
    assert not missing, f"{TABLE} has no column(s): {', '.join(missing)}"
    return types


def _insert(conn: sqlite3.Connection, row: dict) -> None:
    columns = ", ".join(row)
    placeholders = ", ".join(f":{name}" for name in row)
    conn.execute(f"INSERT INTO {TABLE} ({columns}) VALUES ({placeholders})", row)


def _count(conn: sqlite3.Connection) -> int:
    return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


def _insert_valid_rows(conn: sqlite3.Connection) -> None:
    _require_columns(conn)
    for row in _valid_rows():
        try:
            _insert(conn, row)
        except sqlite3.Error as exc:
            raise AssertionError(
                f"a valid row was refused ({exc}):\n  {row}\n"
                "Extra columns of your own need a DEFAULT or must allow NULL."
            ) from None
    conn.commit()  # so a trigger's RAISE(ROLLBACK) later cannot take these rows with it


def _refused(conn: sqlite3.Connection, row: dict) -> bool:
    """Try to insert ``row``; True if SQLite refuses it. Nothing is kept either way."""
    conn.execute("SAVEPOINT attempt")
    try:
        _insert(conn, row)
    except sqlite3.Error:
        return True
    finally:
        if conn.in_transaction:  # RAISE(ROLLBACK) in a trigger has already ended it
            conn.execute("ROLLBACK TO attempt")
            conn.execute("RELEASE attempt")
    return False


# -- schema checks --------------------------------------------------------------------------------

def _affinity(declared: str) -> str:
    """The affinity SQLite gives a declared type (sqlite.org/datatype3.html, section 3.1)."""
    declared = declared.upper()
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def every_field_is_a_text_column(ns: dict) -> None:
    with closing(_schema_db(ns)) as conn:
        types = _require_columns(conn)
    wrong = [f"{column} is declared {types[column] or 'without a type'}, which SQLite treats "
             f"as {_affinity(types[column])}" for column in COLUMNS
             if _affinity(types[column]) != "TEXT"]
    assert not wrong, "\n".join(wrong) + (
        "\nEvery field here is text: names, JSON, enum values, ISO 8601 timestamps.")


def required_fields_are_not_null(ns: dict) -> None:
    valid = _valid_rows()[0]
    with closing(_schema_db(ns)) as conn:
        _insert_valid_rows(conn)
        accepted = [column for column in COLUMNS
                    if column not in NULLABLE and not _refused(conn, {**valid, column: None})]
    assert not accepted, (
        f"a row with NULL in {', '.join(accepted)} was stored. Only executed_at may be NULL "
        "(the action did not run); a row without who, what, when or how it ended is no evidence."
    )


def enum_columns_only_take_known_values(ns: dict) -> None:
    valid = _valid_rows()[0]
    with closing(_schema_db(ns)) as conn:
        _insert_valid_rows(conn)
        stored = [f"{column} {bad!r}" for column, bad_values in NOT_ALLOWED.items()
                  for bad in bad_values if not _refused(conn, {**valid, column: bad})]
    allowed = "\n".join(f"  {column}: {', '.join(values)}" for column, values in ALLOWED.items())
    assert not stored, (
        f"rows with {', '.join(stored)} were stored. Only these values belong in the trail:\n"
        f"{allowed}"
    )


def update_and_delete_fail(ns: dict) -> None:
    problems = []
    with closing(_schema_db(ns)) as conn:
        _insert_valid_rows(conn)
        before = conn.execute(f"SELECT * FROM {TABLE}").fetchall()
        for sql in (f"UPDATE {TABLE} SET session_id = 'rewritten'", f"DELETE FROM {TABLE}"):
            try:
                conn.execute(sql)
            except sqlite3.Error:
                continue
            problems.append(f"`{sql}` ran without an error")
        unchanged = conn.execute(f"SELECT * FROM {TABLE}").fetchall() == before
    assert not problems, "\n".join(problems)
    assert unchanged, "UPDATE or DELETE raised an error, yet the rows changed"


# -- watching what log_action runs ----------------------------------------------------------------

_CHANGES = {
    sqlite3.SQLITE_UPDATE: "an UPDATE",
    sqlite3.SQLITE_DELETE: "a DELETE",
    sqlite3.SQLITE_ALTER_TABLE: "an ALTER TABLE",
    **{getattr(sqlite3, name): "a schema change" for name in dir(sqlite3)
       if name.startswith(("SQLITE_CREATE_", "SQLITE_DROP_"))},
}
_READS_AND_WRITES = ("INSERT", "SELECT", "WITH", "VALUES")
_TRANSACTIONS = ("BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE")
_REPLACE = re.compile(r"(INSERT\s+OR\s+)?REPLACE\b", re.I)


class _StatementWatch:
    """Records each statement a connection runs, with any change SQLite was asked to allow for it.

    The authorizer sees a statement while it is prepared, the trace callback when it starts to
    run, so the changes the authorizer saw belong to the next statement traced.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.statements: list[tuple[str, set[str]]] = []
        self._seen: set[str] = set()
        conn.set_authorizer(self._authorize)
        conn.set_trace_callback(self._trace)

    def _authorize(self, action, arg1, arg2, db_name, trigger_name) -> int:
        if action in _CHANGES:
            self._seen.add(_CHANGES[action])
        elif action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
            self._seen.add(f"PRAGMA {arg1} set")
        return sqlite3.SQLITE_OK

    def _trace(self, sql: str) -> None:
        if not self.statements or self.statements[-1][0] != sql:  # triggers repeat the text
            self.statements.append((sql, self._seen))
        self._seen = set()

    def stop(self) -> None:
        self.conn.set_authorizer(None)
        self.conn.set_trace_callback(None)

    def changes_to_history(self) -> list[str]:
        """Statements that did more than insert, read or manage a transaction, and why."""
        found = []
        for sql, seen in self.statements:
            verb = (sql.split() or [""])[0].upper()
            why = sorted(seen)
            if _REPLACE.match(sql.lstrip()):
                why.append("REPLACE deletes the row it replaces")
            elif not why and verb not in _READS_AND_WRITES + _TRANSACTIONS:
                why.append(f"{verb} is neither an INSERT nor a read")
            if why:
                found.append(f"  {sql.strip()}  ({'; '.join(why)})")
        return found


def _log_action(ns: dict):
    log_action = ns.get("log_action")
    if log_action is None:
        raise NotAttempted("log_action is not defined yet")
    if not callable(log_action):
        raise AssertionError("log_action must be a function: def log_action(conn, entry): ...")
    return log_action


def log_action_only_inserts(ns: dict) -> None:
    log_action = _log_action(ns)
    error = None
    with closing(_schema_db(ns)) as conn:
        watch = _StatementWatch(conn)
        try:
            for entry in example_entries():
                log_action(conn, entry)
        except NotImplementedError:
            raise
        except Exception as exc:  # report what it ran first; then its error, if nothing else
            error = exc
        finally:
            watch.stop()
        rows = _count(conn)
    changes = watch.changes_to_history()
    assert not changes, (
        "log_action ran statements that change or remove rows:\n" + "\n".join(changes))
    if error is not None:
        raise error
    assert rows == 2, f"two calls to log_action left {rows} rows, not 2"


def _as_utc(column: str, value) -> tuple[datetime | None, str]:
    """The stored value as an aware datetime, or None and what is wrong with it."""
    if not isinstance(value, str):
        return None, f"{column} is stored as {type(value).__name__} {value!r}, not ISO 8601 text"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, f"{column} is {value!r}, which is not ISO 8601"
    if moment.utcoffset() is None:
        return None, (f"{column} is {value!r}: no offset, so nobody can tell which clock it "
                      "was read from (datetime.utcnow() and datetime.now() both do this)")
    if moment.utcoffset() != timedelta(0):
        return None, f"{column} is {value!r}: convert it to UTC, offset +00:00"
    return moment, ""


def timestamps_are_utc_iso(ns: dict) -> None:
    log_action = _log_action(ns)
    with closing(_schema_db(ns)) as conn:
        problems = _timestamp_problems(log_action, conn)
    assert not problems, "\n".join(problems)


def _timestamp_problems(log_action, conn: sqlite3.Connection) -> list[str]:
    entry = example_entries()[0]
    written_after = datetime.now(UTC) - timedelta(seconds=2)
    log_action(conn, entry)
    written_before = datetime.now(UTC) + timedelta(seconds=2)
    rows = conn.execute(f"SELECT {', '.join(TIMESTAMPS)} FROM {TABLE}").fetchall()
    assert len(rows) == 1, f"one call to log_action left {len(rows)} rows"

    problems = []
    stored = dict(zip(TIMESTAMPS, rows[0], strict=True))
    for column in TIMESTAMPS:
        moment, problem = _as_utc(column, stored[column])
        if problem:
            problems.append(problem)
        elif column == "timestamp" and not written_after <= moment <= written_before:
            problems.append(f"timestamp is {stored[column]}, but the row was written at about "
                            f"{written_before:%Y-%m-%d %H:%M} UTC: it is when log_action runs")
        elif column != "timestamp" and moment != entry[column]:
            problems.append(f"{column} was {entry[column].isoformat()} but {stored[column]} "
                            "was stored: that is another moment")

    naive = {**entry, "proposed_at": entry["proposed_at"].replace(tzinfo=None)}
    try:
        log_action(conn, naive)
    except NotImplementedError:
        raise
    except Exception:
        if _count(conn) != 1:
            problems.append("a proposed_at without a timezone raised an error, but a row was "
                            "written anyway")
    else:
        problems.append(f"log_action accepted proposed_at={naive['proposed_at'].isoformat()} "
                        "(no timezone) and wrote a row: refuse it, its offset could only be "
                        "guessed")
    return problems


def missing_field_is_a_clear_error(ns: dict) -> None:
    log_action = _log_action(ns)
    with closing(_schema_db(ns)) as conn:
        problems = _missing_field_problems(log_action, conn)
    assert not problems, "\n".join(problems.values())


def _missing_field_problems(log_action, conn: sqlite3.Connection) -> dict[str, str]:
    problems: dict[str, str] = {}
    for entry in example_entries():
        log_action(conn, entry)  # the complete entry must work, or the rest proves nothing
        for field in ENTRY_FIELDS:
            if field in problems:
                continue
            partial = {key: value for key, value in entry.items() if key != field}
            rows_before = _count(conn)
            try:
                log_action(conn, partial)
            except NotImplementedError:
                raise
            except Exception as exc:
                if _count(conn) != rows_before:
                    problems[field] = f"without {field}: it raised, but a row was written anyway"
                elif field not in str(exc):
                    problems[field] = (f"without {field}: {type(exc).__name__}: {exc} "
                                       f"(the message should name {field})")
            else:
                problems[field] = (f"without {field} ({entry['decision']} entry): no error, and "
                                   f"{_count(conn) - rows_before} row(s) written")
    return problems


DRILL = Drill(
    key="drill3",
    title="Drill 3: an append-only audit table",
    notebook="03_audit_schema.ipynb",
    checks=[
        Check("audit_log has a text column for every field", every_field_is_a_text_column,
              "Name the table audit_log and give it the ten columns in the table above, each "
              "TEXT. DATETIME or TIMESTAMP looks right but makes SQLite treat the column as a "
              "number."),
        Check("required fields are NOT NULL", required_fields_are_not_null,
              "Add NOT NULL to every column but executed_at. A rejected action still has an "
              "outcome: 'not_executed'."),
        Check("decision, outcome and reversibility_class take only known values",
              enum_columns_only_take_known_values,
              "A CHECK (decision IN ('approved', ...)) per column. Outcome is what happened "
              "after the decision, so 'rejected' is not one."),
        Check("UPDATE and DELETE on audit_log fail", update_and_delete_fail,
              "CREATE TRIGGER ... BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, '...'); "
              "END; and the same for DELETE. RAISE(IGNORE) would skip the change silently."),
        Check("log_action runs nothing but INSERT", log_action_only_inserts,
              "One INSERT INTO audit_log (...) VALUES (?, ...) with parameters. Reading and "
              "committing are fine; UPDATE, DELETE and INSERT OR REPLACE are not."),
        Check("timestamps are ISO 8601 in UTC with an offset", timestamps_are_utc_iso,
              "datetime.now(UTC).isoformat() for timestamp; moment.astimezone(UTC).isoformat() "
              "for the others. A datetime without tzinfo must be refused, not guessed."),
        Check("a missing field raises an error naming it and writes nothing",
              missing_field_is_a_clear_error,
              "Before the INSERT, compare the entry's keys with ENTRY_FIELDS and raise "
              "ValueError listing the missing ones. entry.get() quietly turns a forgotten field "
              "into NULL."),
    ],
)
