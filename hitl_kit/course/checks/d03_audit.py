"""Drill 3: design the audit table and write ``log_action(conn, entry)`` that only INSERTs.

The learner writes ``SCHEMA`` (SQL: the ``audit_log`` table and its triggers) and
``log_action(conn, entry)``. Every check builds a fresh in-memory database from ``SCHEMA`` and
tries things on it: good rows and bad rows; every way SQL can change or remove a stored row
(UPDATE of each column, DELETE, INSERT OR REPLACE, UPSERT); calls to ``log_action`` on a
connection that records each statement it runs, with values full of quotes and odd characters
that are read back and parsed; a rollback by the caller after the call. No check compares the
SQL with one answer.

What an answer could silently depend on, and how the checks vary it:

* the connection: SCHEMA runs on one connection and every probe (``log_action`` included) goes
  through a second one, as the agent's and a reader's would: a TEMP trigger or table lives only
  on the connection that made it;
* the machine's clock: the timestamps are judged with the local time zone set to the machine's
  own, to UTC+14 and to UTC-10, so local time passed off as UTC fails wherever the machine is;
* time: the stored rows are dated long ago, recently and now, so a trigger that guards rows of
  one age only (a "retention" or "correction window" WHEN) is found;
* every row judged: the valid rows use every allowed class, decision and outcome, every row is
  attacked, and log_action gets an entry with each allowed value, so an answer that recomputes
  or maps a value for some of them is found.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone

from hitl_kit.course.selfcheck import (
    Check,
    Drill,
    Flaw,
    NotAttempted,
    attempt,
    local_time_zone,
    need,
    time_zones,
)
from hitl_kit.vocabulary import Execution, Reversibility, Verdict

TABLE = "audit_log"
# The names the drill asks for, and those its notebook gives (a renamed answer is told apart).
NAMES = ("SCHEMA", "log_action", "ENTRY_FIELDS", "example_entries", "approved", "rejected",
         "datetime", "UTC")
# The keys of the entry log_action receives; each one is also a column.
ENTRY_FIELDS = (
    "session_id", "action_type", "parameters", "reversibility_class", "approver_id",
    "decision", "outcome", "proposed_at", "executed_at",
)  # fmt: skip
COLUMNS = ("timestamp", *ENTRY_FIELDS)  # timestamp: when log_action wrote the row
NULLABLE = ("executed_at",)  # None when the action did not run
TIMESTAMPS = ("timestamp", "proposed_at", "executed_at")
TEXT_FIELDS = ("session_id", "action_type", "reversibility_class", "approver_id", "decision",
               "outcome")  # stored exactly as given
ALLOWED = {
    "reversibility_class": tuple(k.value for k in Reversibility),
    "decision": tuple(v.value for v in Verdict),
    "outcome": tuple(e.value for e in Execution),
}
NOT_ALLOWED = {  # near misses first: a CHECK written loosely lets exactly these in
    "reversibility_class": ("Irreversible_High", "irreversible_high ", "irreversible-high",
                            "kinda_reversible", "irreversible", ""),
    "decision": ("Approved", "APPROVED", " approved", "approved\n", "\u0430pproved", "approve",
                 "timed_out", "auto_approved", "success", "maybe", ""),
    # the seed stores outcome "rejected": a decision, not an outcome
    "outcome": ("Success", "success ", "not executed", "rejected", "ok", ""),
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


def every_value_entries() -> list[dict]:
    """Entries that between them carry every allowed class, decision and outcome (with moments
    in offsets far from UTC), so a log_action that maps or recomputes a value is found."""
    approved, rejected = example_entries()
    far_west = timezone(timedelta(hours=-10))
    return [
        {**approved, "reversibility_class": "fully_reversible", "approver_id": "auto",
         "decision": "auto-approved", "outcome": "error", "session_id": "run-10",
         "proposed_at": datetime(2026, 1, 31, 23, 59, 59, tzinfo=far_west)},
        {**approved, "reversibility_class": "partially_reversible", "outcome": "rollback",
         "approver_id": "cy", "session_id": "run-11",
         "executed_at": datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=14)))},
        {**rejected, "reversibility_class": "irreversible_low", "approver_id": "system",
         "decision": "timed-out", "session_id": "run-12"},
    ]


def hostile_entries() -> list[dict]:
    """Entries whose values a string-built INSERT or a Python repr would garble."""
    approved, rejected = example_entries()
    return [
        {**approved, "session_id": "run-8'); DROP TABLE audit_log; --",
         "action_type": "send_reply", "reversibility_class": "irreversible_low",
         "approver_id": "O'Brien",
         "parameters": {"thread_id": 3, "body": 'He said "hi"\nthen left; 50% off \\ \u00fc\u00df'
                        " \U0001f680", "cc": ["a@example.com", "b'@example.com"],
                        "flags": {"urgent": True, "note": None}}},
        {**rejected, "session_id": "run-9\n\t\u2028", "approver_id": 'x" OR "1"="1',
         "action_type": "update_customer",
         "parameters": {"customer_id": 2, "field": "notes", "value": "{}[]:,'\"", "n": 2.5}},
    ]


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _valid_rows() -> list[dict]:
    """Rows any sensible schema accepts; between them they use every allowed value, and they
    are dated long ago, recently and now (a guard that depends on a row's age must show)."""
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
        {**base, **_dated(datetime(2003, 2, 1, 9, 0, tzinfo=UTC)), "session_id": "run-1"},
        {**base, **_dated(datetime.now(UTC).replace(microsecond=0)), "session_id": "run-99",
         "approver_id": "cy", "decision": "rejected", **not_run},
    ]


def _dated(moment: datetime) -> dict:
    """The three timestamps of a row proposed a minute before ``moment`` and run at it."""
    return {"timestamp": _utc_text(moment), "proposed_at": _utc_text(moment - timedelta(
        minutes=1)), "executed_at": _utc_text(moment)}


# -- building the learner's database ---------------------------------------------------------------

def _has_sql(text: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    return bool(without_comments.strip())


class _Probe(sqlite3.Connection):
    """A second connection to a database whose SCHEMA ran on ``creator``; closing it closes
    both (and the in-memory database with them)."""

    creator: sqlite3.Connection | None = None

    def close(self) -> None:
        super().close()
        if self.creator is not None:
            self.creator.close()


_databases = itertools.count()


def _schema_db(ns: dict) -> _Probe:
    """A fresh in-memory database built from the learner's SCHEMA by one connection, and a
    second connection to it: the one every probe uses, as the agent's own would be."""
    schema = need(ns, "SCHEMA", known=NAMES)
    if not isinstance(schema, str):
        raise Flaw("SCHEMA is not a string of SQL", got=type(schema).__name__,
                   hint='Keep the stub\'s shape: SCHEMA = """CREATE TABLE audit_log (...); ..."""')
    if not _has_sql(schema):
        raise NotAttempted("SCHEMA has no SQL yet, only comments")
    uri = f"file:hitl-drill3-{os.getpid()}-{next(_databases)}?mode=memory&cache=shared"
    creator = sqlite3.connect(uri, uri=True)
    try:
        creator.executescript(schema)
        if creator.in_transaction:  # a BEGIN without COMMIT in SCHEMA
            creator.commit()
    except sqlite3.Error as exc:
        creator.close()
        raise Flaw("SCHEMA does not run", tried="conn.executescript(SCHEMA)",
                   got=f"{type(exc).__name__}: {exc}",
                   hint="Run the SQL in the cell yourself: sqlite3.connect(':memory:')"
                        ".executescript(SCHEMA) shows the same error.") from None
    probe = sqlite3.connect(uri, uri=True, factory=_Probe)
    probe.creator = creator
    if TABLE in _temporary(probe, "table") and not probe.execute(
            f"PRAGMA table_info({TABLE})").fetchall():
        probe.close()
        raise Flaw(f"{TABLE} is a TEMP table: it exists only on the connection that ran SCHEMA",
                   tried="SCHEMA run on one connection, then audit_log used from another",
                   got=f"no table named {TABLE} on the second connection",
                   expected=f"{TABLE} for every connection, and kept after they close",
                   hint="CREATE TABLE, not CREATE TEMP TABLE: a temporary table is private to "
                        "its connection and vanishes with it.")
    return probe


def _temporary(conn: sqlite3.Connection, kind: str) -> list[str]:
    """The TEMP objects of ``kind`` SCHEMA made: they exist only on the connection that ran it."""
    creator = getattr(conn, "creator", None) or conn
    return [row[0] for row in creator.execute(
        "SELECT name FROM sqlite_temp_master WHERE type = ?", (kind,))]


def _declared_types(conn: sqlite3.Connection) -> dict[str, str]:
    found = conn.execute(f"PRAGMA table_info({TABLE})").fetchall()
    if not found:
        raise Flaw(f"SCHEMA creates no table named {TABLE}",
                   hint=f"CREATE TABLE {TABLE} (...): the name the agent and the checks use.")
    return {row[1].lower(): row[2] for row in found}


def _require_columns(conn: sqlite3.Connection) -> dict[str, str]:
    types = _declared_types(conn)
    missing = [column for column in COLUMNS if column not in types]
    if missing:
        raise Flaw(f"{TABLE} has no column(s): {', '.join(missing)}",
                   expected=", ".join(COLUMNS),
                   hint="One column per field in the table above, with the same names.")
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
            raise Flaw("a valid row was refused", tried=f"INSERT of {row}",
                       got=f"{type(exc).__name__}: {exc}", expected="the row stored",
                       hint="Check each CHECK's list against the allowed values above; extra "
                            "columns of your own need a DEFAULT or must allow NULL.") from None
    conn.commit()  # so a trigger's RAISE(ROLLBACK) later cannot take these rows with it


def _refused(conn: sqlite3.Connection, sql: str, params=()) -> bool:
    """Run ``sql``; True if SQLite refuses it. Nothing is kept either way."""
    conn.execute("SAVEPOINT attempt")
    try:
        conn.execute(sql, params)
    except sqlite3.Error:
        return True
    finally:
        if conn.in_transaction:  # RAISE(ROLLBACK) in a trigger has already ended it
            conn.execute("ROLLBACK TO attempt")
            conn.execute("RELEASE attempt")
    return False


def _insert_refused(conn: sqlite3.Connection, row: dict) -> bool:
    columns = ", ".join(row)
    placeholders = ", ".join(f":{name}" for name in row)
    return _refused(conn, f"INSERT INTO {TABLE} ({columns}) VALUES ({placeholders})", row)


# -- schema checks ---------------------------------------------------------------------------------

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
    if wrong:
        raise Flaw("a column that holds text is not a TEXT column", got="\n".join(wrong),
                   expected="TEXT: names, JSON, enum values and ISO 8601 timestamps are text",
                   hint="Declare each of the ten columns TEXT. DATETIME or TIMESTAMP looks right "
                        "but makes SQLite treat the column as a number.")


def required_fields_are_not_null(ns: dict) -> None:
    valid = _valid_rows()[0]
    with closing(_schema_db(ns)) as conn:
        _insert_valid_rows(conn)
        accepted = [column for column in COLUMNS if column not in NULLABLE
                    and not _insert_refused(conn, {**valid, column: None})]
    if accepted:
        raise Flaw("a row without who, what, when or how it ended can be stored",
                   tried=f"a valid row with NULL in {', '.join(accepted)}", got="stored",
                   expected="refused: only executed_at may be NULL (the action did not run)",
                   hint=f"Add NOT NULL to {', '.join(accepted)}. A rejected action still has an "
                        "outcome: 'not_executed'.")


def enum_columns_only_take_known_values(ns: dict) -> None:
    valid = _valid_rows()[0]
    with closing(_schema_db(ns)) as conn:
        _insert_valid_rows(conn)
        stored = [(column, bad) for column, bad_values in NOT_ALLOWED.items()
                  for bad in bad_values if not _insert_refused(conn, {**valid, column: bad})]
    if stored:
        allowed = "\n".join(f"{column}: {', '.join(values)}" for column, values in ALLOWED.items())
        near = [f"{c} {v!r}" for c, v in stored if v.strip().lower().replace("-", "_") in {
            a.replace("-", "_") for a in ALLOWED[c]}]
        raise Flaw("a value outside the allowed list can be stored",
                   tried="valid rows with one value changed",
                   got="stored: " + ", ".join(f"{c} {v!r}" for c, v in stored),
                   expected="refused; only these values belong in the trail:\n" + allowed,
                   hint="Compare exactly: CHECK (decision IN ('approved', ...)), no lower(), "
                        "trim() or LIKE (LIKE ignores case)." if near else
                        "A CHECK (column IN (...)) for each of the three columns. Outcome is what "
                        "happened after the decision, so 'rejected' is not one.")


def _snapshot(conn: sqlite3.Connection, with_rowid: bool) -> list[tuple]:
    select = f"SELECT rowid, * FROM {TABLE} ORDER BY rowid" if with_rowid else (
        f"SELECT * FROM {TABLE}")
    return sorted(conn.execute(select).fetchall(), key=repr)


def _has_rowid(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute(f"SELECT rowid FROM {TABLE} LIMIT 1")
    except sqlite3.OperationalError:  # a WITHOUT ROWID table
        return False
    return True


def _new_values(column: str, value) -> list:
    """Values to write over ``value`` that every CHECK still accepts, for some rows."""
    if column in ALLOWED:
        return [other for other in ALLOWED[column] if other != value]
    if column in TIMESTAMPS:
        return [_utc_text(_EXECUTED + timedelta(days=1))]
    if column == "parameters":
        return ['{"customer_id": 4}']
    return ["mallory", None, 42]


def _changes_that_got_through(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(statement, what it did) for each statement that changed or removed a stored row."""
    with_rowid = _has_rowid(conn)
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")]
    rows = conn.execute(f"SELECT {'rowid, ' if with_rowid else ''}* FROM {TABLE}").fetchall()
    before = _snapshot(conn, with_rowid)
    found: list[tuple[str, str]] = []

    def attempt_sql(sql: str, params=()) -> None:
        refused = _refused_keeping(conn, sql, params)
        after = _snapshot(conn, with_rowid)
        if any(row not in after for row in before):
            found.append((_shown(sql, params), "refused, yet a stored row changed" if refused
                          else "ran and changed or removed a stored row"))
        elif not refused and sql.lstrip().upper().startswith(("UPDATE", "DELETE")):
            found.append((_shown(sql, params), "ran without an error (the change was skipped "
                                               "silently, so the caller thinks it worked)"))
        _restore(conn, before, with_rowid, columns)

    for row in rows:
        rowid, values = (row[0], row[1:]) if with_rowid else (None, row)
        where, key = ("rowid = ?", (rowid,)) if with_rowid else _match_all(columns, values)
        stored = dict(zip(columns, values, strict=True))
        for column in columns:
            for new in _new_values(column, stored[column]):
                attempt_sql(f"UPDATE {TABLE} SET {column} = ? WHERE {where}", (new, *key))
        attempt_sql(f"DELETE FROM {TABLE} WHERE {where}", key)
        changed = {**stored, "approver_id": "mallory"}
        for verb in ("INSERT OR REPLACE", "REPLACE"):
            if with_rowid:
                names = ", ".join(["rowid", *columns])
                marks = ", ".join("?" * (len(columns) + 1))
                attempt_sql(f"{verb} INTO {TABLE} ({names}) VALUES ({marks})",
                            (rowid, *changed.values()))
            attempt_sql(f"{verb} INTO {TABLE} ({', '.join(columns)}) VALUES "
                        f"({', '.join('?' * len(columns))})", tuple(changed.values()))
        if with_rowid:
            attempt_sql(f"INSERT INTO {TABLE} (rowid, {', '.join(columns)}) VALUES "
                        f"({', '.join('?' * (len(columns) + 1))}) ON CONFLICT DO UPDATE SET "
                        "approver_id = 'mallory'", (rowid, *stored.values()))
    attempt_sql(f"DELETE FROM {TABLE}")
    return found


def _match_all(columns: list[str], values: tuple) -> tuple[str, tuple]:
    return " AND ".join(f"{c} IS ?" for c in columns), tuple(values)


def _refused_keeping(conn: sqlite3.Connection, sql: str, params) -> bool:
    """Like _refused, but what the statement did stays until _restore puts the rows back."""
    try:
        conn.execute(sql, params)
    except sqlite3.Error:
        return True
    return False


def _restore(conn: sqlite3.Connection, rows: list[tuple], with_rowid: bool,
             columns: list[str]) -> None:
    """Put the table back as it was, without firing the learner's triggers."""
    if conn.in_transaction:
        conn.rollback()
    if _snapshot(conn, with_rowid) == rows:
        return
    raise AssertionError("a change to audit_log was committed by the check itself")


def _shown(sql: str, params) -> str:
    shown = sql
    for value in params:
        shown = shown.replace("?", repr(value), 1)
    return shown if len(shown) <= 160 else shown[:157] + "..."


def stored_rows_cannot_change(ns: dict) -> None:
    with closing(_schema_db(ns)) as conn:
        _insert_valid_rows(conn)
        got_through = _changes_that_got_through(conn)
        temporary = _temporary(conn, "trigger")
    if got_through and temporary:
        first, *rest = got_through
        raise Flaw("a stored row can be changed or removed from any other connection: the "
                   "triggers are TEMP", tried=f"{first[0]}  (on a second connection)",
                   got=f"{first[1]}; TEMP triggers: {', '.join(temporary)}",
                   expected="an error, and the row as it was, whichever connection asks",
                   hint="CREATE TRIGGER, not CREATE TEMP TRIGGER: a temporary trigger guards "
                        "only the connection that created it; the agent's, a reader's or an "
                        "attacker's connection goes around it.")
    if got_through:
        first, *rest = got_through
        kinds = sorted({sql.split()[0].upper() + (" OR REPLACE" if "OR REPLACE" in sql else "")
                        for sql, _ in got_through})
        raise Flaw("a stored row can be changed or removed",
                   tried=first[0], got=first[1],
                   expected="an error, and the row as it was",
                   also=f"{len(rest)} more statements got through ({', '.join(kinds)}), e.g. "
                        + "; ".join(sql for sql, _ in rest[:2]) if rest else None,
                   hint=_guard_hint(kinds, got_through))


def _guard_hint(kinds: list[str], got_through: list[tuple[str, str]]) -> str:
    if any("silently" in what for _, what in got_through):
        return ("RAISE(IGNORE) skips the change without an error; use RAISE(ABORT, '...') so "
                "the caller learns the change was refused.")
    if any("refused, yet" in what for _, what in got_through):
        return ("RAISE(FAIL) in an AFTER trigger keeps the rows changed before it fired; "
                "RAISE(ABORT, '...') in a BEFORE trigger undoes the whole statement.")
    if kinds and all("REPLACE" in kind or kind == "INSERT" for kind in kinds):
        return ("INSERT OR REPLACE deletes the stored row without firing DELETE triggers. Add a "
                "BEFORE INSERT trigger that aborts when a row with NEW's key already exists, "
                "e.g. WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq).")
    return ("One BEFORE UPDATE trigger on the whole table (not UPDATE OF some columns) and one "
            "BEFORE DELETE, each SELECT RAISE(ABORT, '...'), with no WHEN that lets some rows "
            "through.")


# -- watching what log_action runs -----------------------------------------------------------------

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
                found.append(f"{' '.join(sql.split())}  ({'; '.join(why)})")
        return found


def _log_action(ns: dict):
    log_action = need(ns, "log_action", known=NAMES)
    if not callable(log_action):
        raise Flaw("log_action is not a function", got=repr(log_action)[:80],
                   hint="def log_action(conn, entry): ...")
    return log_action


def _log(log_action, conn, entry: dict, what: str = "an example entry", **kwargs):
    return attempt(f"log_action(conn, {what})", log_action, conn, entry, **kwargs)


def log_action_only_inserts(ns: dict) -> None:
    log_action = _log_action(ns)
    error = None
    with closing(_schema_db(ns)) as conn:
        watch = _StatementWatch(conn)
        try:
            for entry in example_entries():
                _log(log_action, conn, entry, f"{entry['decision']} entry")
        except Flaw as exc:  # report what it ran first; then its error, if nothing else
            error = exc
        finally:
            watch.stop()
        rows = _count(conn)
    changes = watch.changes_to_history()
    if changes:
        raise Flaw("log_action runs statements that change or remove rows",
                   tried="log_action on the two example entries, watching every statement",
                   got="\n".join(changes), expected="INSERT (and reads or COMMIT) only",
                   hint="One INSERT INTO audit_log (...) VALUES (?, ...) with parameters. A "
                        "writer that can UPDATE, DELETE or REPLACE can change history.")
    if error is not None:
        raise error
    if rows != 2:
        raise Flaw("log_action does not write one row per call",
                   tried="log_action on the two example entries",
                   got=f"{rows} rows", expected="2 rows",
                   hint="Exactly one INSERT of one row per call.")


def fields_are_stored_as_given(ns: dict) -> None:
    log_action = _log_action(ns)
    quoting = ("Pass the values as parameters (? or :name placeholders). SQL built with "
               "f-strings or % breaks on a quote, or worse, runs what the value says.")
    with closing(_schema_db(ns)) as conn:
        for entry in example_entries():
            _log(log_action, conn, entry, f"{entry['decision']} entry")
        for entry in (*hostile_entries(), *every_value_entries()):
            shown = f"entry with session_id={entry['session_id']!r}"
            seen = {row[0] for row in conn.execute(f"SELECT rowid FROM {TABLE}")}
            _log(log_action, conn, entry, shown, expected="one row holding these values exactly",
                 hint=quoting)
            new = [row for row in conn.execute(
                f"SELECT rowid, {', '.join(TEXT_FIELDS)}, parameters FROM {TABLE}")
                if row[0] not in seen]
            if len(new) != 1:
                raise Flaw("log_action does not write one row per call", tried=shown,
                           got=f"{len(new)} new rows", expected="1 new row",
                           hint="Exactly one INSERT of one row per call.")
            _compare(shown, entry, dict(zip((*TEXT_FIELDS, "parameters"), new[0][1:],
                                            strict=True)))


def _compare(shown: str, entry: dict, stored: dict) -> None:
    for field in TEXT_FIELDS:
        if stored[field] != entry[field]:
            raise Flaw(f"{field} is not stored as given", tried=shown,
                       got=f"{field} = {stored[field]!r}", expected=repr(entry[field]),
                       hint="Match each value to its column by name (INSERT INTO audit_log "
                            "(col, ...) VALUES (:col, ...)); a positional VALUES in another "
                            "order puts values in the wrong columns, silently.")
    text = stored["parameters"]
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        parsed = None
    if parsed != entry["parameters"]:
        raise Flaw("parameters do not read back as the call's arguments", tried=shown,
                   got=f"parameters = {text!r:.120}",
                   expected=f"JSON text that json.loads turns back into {entry['parameters']!r}",
                   hint="json.dumps(entry['parameters']). str() of a dict is Python, not JSON: "
                        "nothing else can read it.")


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
    for zone in time_zones():
        with local_time_zone(zone), closing(_schema_db(ns)) as conn:
            problems = _timestamp_problems(log_action, conn)
        if problems:
            break
    if problems:
        where = ("" if zone is None else
                 f", with the machine's local time set to UTC{_offset_of(zone)}")
        raise Flaw("a timestamp is not ISO 8601 in UTC with an offset, or is another moment",
                   tried="log_action(conn, approved entry), then the stored timestamps" + where,
                   got="\n".join(problems),
                   expected="e.g. 2026-11-26T21:30:00+00:00, the same moment as given",
                   hint="datetime.now(UTC).isoformat() for timestamp; "
                        "moment.astimezone(UTC).isoformat() for the others. A datetime without "
                        "tzinfo must be refused, not guessed.")


def _offset_of(zone: str) -> str:
    """'+14:00' for the zone the checks use: what local time is, against UTC, right now."""
    with local_time_zone(zone):
        minutes = round(datetime.now().astimezone().utcoffset().total_seconds() / 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"


def _timestamp_problems(log_action, conn: sqlite3.Connection) -> list[str]:
    entry = example_entries()[0]
    written_after = datetime.now(UTC) - timedelta(seconds=2)
    _log(log_action, conn, entry, "approved entry")
    written_before = datetime.now(UTC) + timedelta(seconds=2)
    rows = conn.execute(f"SELECT {', '.join(TIMESTAMPS)} FROM {TABLE}").fetchall()
    if len(rows) != 1:
        return [f"one call to log_action left {len(rows)} rows"]

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
        raise NotAttempted("log_action still raises NotImplementedError") from None
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
    if problems:
        first, *rest = problems.values()
        raise Flaw("an entry with a field missing is not refused clearly", tried=first[0],
                   got=first[1], expected="an error naming the field, and no row written",
                   also="; ".join(f"{tried}: {got}" for tried, got in rest[:3]) or None,
                   hint="Before the INSERT, compare the entry's keys with ENTRY_FIELDS and raise "
                        "ValueError listing the missing ones. entry.get() quietly turns a "
                        "forgotten field into NULL.")


def _missing_field_problems(log_action, conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    problems: dict[str, tuple[str, str]] = {}
    for entry in example_entries():
        # the complete entry must work, or the rest proves nothing
        _log(log_action, conn, entry, f"{entry['decision']} entry")
        for field in ENTRY_FIELDS:
            if field in problems:
                continue
            partial = {key: value for key, value in entry.items() if key != field}
            tried = f"{entry['decision']} entry without {field}"
            rows_before = _count(conn)
            try:
                log_action(conn, partial)
            except NotImplementedError:
                raise NotAttempted("log_action still raises NotImplementedError") from None
            except Exception as exc:
                if _count(conn) != rows_before:
                    problems[field] = (tried, "it raised, but a row was written anyway")
                elif field not in str(exc):
                    problems[field] = (tried, f"{type(exc).__name__}: {exc} (the message "
                                              f"should name {field})")
            else:
                problems[field] = (tried, f"no error, and {_count(conn) - rows_before} row(s) "
                                          "written")
    return problems


def row_survives_the_callers_rollback(ns: dict) -> None:
    log_action = _log_action(ns)
    for opened in (False, True):
        with closing(_schema_db(ns)) as conn:
            tried = ("conn.execute('BEGIN'); log_action(conn, entry); conn.rollback()" if opened
                     else "log_action(conn, entry); then the caller runs conn.rollback()")
            if opened:
                conn.execute("BEGIN")
            _log(log_action, conn, example_entries()[0], "approved entry")
            conn.rollback()  # the caller's own work failed, say, and is undone
            if _count(conn) != 1:
                raise Flaw("the audit row is lost when the caller rolls back", tried=tried,
                           got=f"{_count(conn)} rows after the rollback",
                           expected="1 row: log_action commits its row before returning",
                           hint="End log_action with conn.commit(), or write the INSERT inside "
                                "`with conn:`, so the record of a decision is kept whatever the "
                                "caller does next.")


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
              "A CHECK (decision IN ('approved', ...)) per column, compared exactly. Outcome is "
              "what happened after the decision, so 'rejected' is not one."),
        Check("no statement can change or remove a stored row", stored_rows_cannot_change,
              "BEFORE UPDATE and BEFORE DELETE triggers that SELECT RAISE(ABORT, '...'), and a "
              "BEFORE INSERT trigger that aborts when the new row's key already exists (INSERT "
              "OR REPLACE deletes without firing DELETE triggers)."),
        Check("log_action runs nothing but INSERT", log_action_only_inserts,
              "One INSERT INTO audit_log (...) VALUES (?, ...) with parameters. Reading and "
              "committing are fine; UPDATE, DELETE and INSERT OR REPLACE are not."),
        Check("every field is stored as given and reads back", fields_are_stored_as_given,
              "Values as parameters, never pasted into the SQL; parameters as json.dumps(...), "
              "so json.loads gives the same dict back."),
        Check("timestamps are ISO 8601 in UTC with an offset", timestamps_are_utc_iso,
              "datetime.now(UTC).isoformat() for timestamp; moment.astimezone(UTC).isoformat() "
              "for the others. A datetime without tzinfo must be refused, not guessed."),
        Check("a missing field raises an error naming it and writes nothing",
              missing_field_is_a_clear_error,
              "Before the INSERT, compare the entry's keys with ENTRY_FIELDS and raise "
              "ValueError listing the missing ones. entry.get() quietly turns a forgotten field "
              "into NULL."),
        Check("the row survives the caller's rollback", row_survives_the_callers_rollback,
              "log_action commits its own row (conn.commit() or `with conn:`): the record of a "
              "decision must outlive whatever the caller undoes next."),
    ],
)
