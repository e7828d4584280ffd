"""An append-only, tamper-evident audit trail for agent actions, kept in SQLite.

Each action gets a ``proposed`` row when the agent asks, and a ``resolved`` row when a person (or
a rule, or a timeout) decides and the action runs or not; under a two-person rule each approval
before the last is a ``decided`` row, and a decision from someone who may not decide is a
``refused`` row. Rows are never changed.

Four layers stop or reveal tampering:

1. The database refuses edits: a STRICT table with CHECKs, and triggers that abort UPDATE,
   DELETE and ``INSERT OR REPLACE`` (which deletes without firing delete triggers) from any
   connection.
2. The writer keeps its connection to itself: ``AuditTrail.connection`` is a separate read-only
   connection with an authorizer it cannot lift (it has no ``set_authorizer``). The writer's own
   connection refuses UPDATE, DELETE, DROP, ALTER, trigger changes and settings PRAGMAs.
3. Before every append the trail checks that the schema did not change since it checked it
   (``PRAGMA schema_version``); ``verify`` compares the whole schema with what it should be:
   every table, trigger, view and index that touches the audit tables, found by what it
   touches however its names are quoted or cased. Each append reads its row back.
4. Every row carries ``row_hash = sha256(prev_hash + canonical_json(row))``. ``verify()`` finds
   the first row that was edited, deleted, swapped or forged, even by someone who bypassed 1-3.
   Deleting the newest rows is only caught against a head kept elsewhere: give ``head_path``
   (the protocol, and why no crash or attack on the database hides a committed row:
   ``hitl_kit.audit_head``) and keep a copy of that file where the agent cannot write.

Readers use ``open_readonly``; ``hitl_kit.audit_queries`` reads the trail into pandas::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with AuditTrail(folder / "audit.db", head_path=folder / "audit.head.json") as trail:
    ...     row = trail.append({"event_key": "t1:call_1:proposed", "session_id": "t1",
    ...                         "action_type": "send_email", "parameters": {"to": "ana@x.org"},
    ...                         "reversibility_class": "irreversible_low", "event": "proposed",
    ...                         "proposed_at": "2026-11-26T21:30:00+00:00"})
    ...     trail.verify().ok
    True

Limits: someone who can write both the file and every copy of the head can rewrite history
undetected; the trail makes that visible only as long as one copy of the head is out of reach.
Code in the agent's own Python process can reach the writer's private connection: layers 3 and
4 are what catch it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import string
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path

from hitl_kit import sqlite as kit_sqlite
from hitl_kit.audit_chain import (  # noqa: F401  (re-exported: the trail's public names)
    CHANNELS,
    COLUMNS,
    DECISIONS,
    EVENTS,
    GENESIS_HASH,
    HASHED_COLUMNS,
    INPUT_FIELDS,
    OUTCOMES,
    REVERSIBILITY_CLASSES,
    ROW_RULES_SQL,
    SCHEMA_VERSION,
    TIMESTAMP_FIELDS,
    AuditConflictError,
    AuditHeadError,
    AuditIntegrityError,
    AuditSchemaError,
    ChainWalk,
    VerifyResult,
    canonical_json,
    chain_row,
    check_row,
    check_rules,
    column_definitions,
    compute_row_hash,
    normalize_entry,
    one_of,
    same_or_conflict,
    to_utc_iso,
    utc_now_iso,
    verify_rows,
)
from hitl_kit.audit_head import (  # noqa: F401  (read_head, HeadRecord: re-exported)
    EndCheck,
    HeadFile,
    HeadRecord,
    HeldHead,
    read_end,
    read_head,
    read_head_record,
    row_in_flight,
)
from hitl_kit.redaction import sanitize  # noqa: F401  (re-exported)

# --- the schema ----------------------------------------------------------------------------------

def _json_object(column: str, nullable: bool) -> str:
    # json_valid(NULL) is 0, not NULL: a nullable column says so itself
    check = f"json_valid({column}) AND substr({column}, 1, 1) = '{{'"
    return f"{column} IS NULL OR ({check})" if nullable else check


_COLUMN_DEFINITIONS = column_definitions(integer="INTEGER", like="LIKE", json_object=_json_object)
assert tuple(name for name, _, _ in _COLUMN_DEFINITIONS) == COLUMNS

TABLE_SQL = "CREATE TABLE audit_log (\n" + ",\n".join(
    [f"    {name:<19} {kind}" + (f" CHECK ({check})" if check else "")
     for name, kind, check in _COLUMN_DEFINITIONS]
    + [f"    CHECK ({rule})" for rule in ROW_RULES_SQL]
) + "\n) STRICT"

META_TABLE_SQL = ("CREATE TABLE audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT")


def _guards(table: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The triggers that make ``table`` append-only. The BEFORE INSERT one runs before conflict
    resolution, so ``INSERT OR REPLACE`` and ``REPLACE`` cannot delete a row either."""
    taken = " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE {key} = NEW.{key})" for key in keys)
    return {
        f"{table}_no_update": f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}\n"
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: rows cannot be updated'); END",
        f"{table}_no_delete": f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}\n"
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: rows cannot be deleted'); END",
        f"{table}_no_replace": f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}\n"
        f"WHEN {taken}\nBEGIN SELECT RAISE(ABORT, '{table} is append-only: a row with this "
        f"{' or '.join(keys)} exists and cannot be replaced'); END",
    }


TRIGGER_SQL = _guards("audit_log", ("seq", "event_key"))
META_TRIGGER_SQL = _guards("audit_meta", ("name",))
SCHEMA_SQL = {"audit_log": TABLE_SQL, **TRIGGER_SQL, "audit_meta": META_TABLE_SQL,
              **META_TRIGGER_SQL}
AUDIT_TABLES = ("audit_log", "audit_meta")

SELECT_ROWS_SQL = f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq"
_NOT_NULL = [name for name, kind, _ in _COLUMN_DEFINITIONS if "NOT NULL" in kind]
# The first row that breaks a CHECK, found by SQLite itself (PRAGMA ignore_check_constraints=1
# lets such rows in, so verify asks again).
FIRST_RULE_BREAK_SQL = "SELECT seq FROM audit_log WHERE " + " OR ".join(
    [f"{name} IS NULL" for name in _NOT_NULL]
    + [f"NOT ({check})" for _, _, check in _COLUMN_DEFINITIONS if check]
    + [f"NOT ({rule})" for rule in ROW_RULES_SQL]
) + " ORDER BY seq LIMIT 1"
# prev_hash + the canonical JSON of the row, written by SQLite while it reads (keys sorted, no
# spaces): verify() only hashes it. compute_row_hash stays the definition: a row whose SQLite
# text does not hash right is checked again with it.
_CHAIN_SQL = ("SELECT seq, prev_hash, row_hash, prev_hash || json_object("
              + ", ".join(f"'{name}', {name}" for name in HASHED_COLUMNS)
              + ") FROM audit_log ORDER BY seq")

_OLD_SCHEMA_ADVICE = (
    "This kit writes schema version {version} (channel, approver_role, details, the 'decided' "
    "and 'refused' events) and will not mix versions in one chain. Keep this file as evidence "
    "and start a new trail in a new file (e.g. audit-v{version}.db); to check the old chain, use "
    "the hitl_kit/audit.py it was written with."
)
_DAMAGED_ADVICE = (
    "Do not append to this file: keep it as evidence, check it with verify_file(path), and "
    "start a new trail in a new file."
)


_NO_TABLE = "there is no audit_log table"


def _unreadable(problems: list[str]) -> bool:
    """Problems that make the rows themselves unverifiable here (no table, another version)."""
    return bool(problems) and (problems[0] == _NO_TABLE or "schema version" in problems[0])


# An SQL text's tokens: comments, quoted names and strings ('', "", ``, []), bare words.
_SQL_TOKEN = re.compile(r"""--[^\n]*|/\*.*?(?:\*/|\Z)|'(?:[^']|'')*'|"(?:[^"]|"")*"|"""
                        r"`(?:[^`]|``)*`|\[[^\]]*\]|[^\W\d]\w*", re.DOTALL)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def sql_name(name: str) -> str:
    """A name as SQLite compares it: quotes removed, ASCII letters in lower case (SQLite ignores
    their case, and only theirs).

    >>> [sql_name(n) for n in ('"AUDIT_Log"', "[audit_log]", "`Audit_Log`", "'audit_LOG'")]
    ['audit_log', 'audit_log', 'audit_log', 'audit_log']
    """
    if name[:1] in ("'", '"', "`") and name[-1:] == name[0] and len(name) > 1:
        name = name[1:-1].replace(name[0] * 2, name[0])
    elif name[:1] == "[" and name[-1:] == "]":
        name = name[1:-1]
    return name.translate(_ASCII_LOWER)


def names_in(sql: str) -> set[str]:
    """Every name and string an SQL text mentions, as ``sql_name`` spells it (comments left
    out). A string counts too: SQLite takes ``'audit_log'`` for a table name where one fits."""
    return {sql_name(token) for token in _SQL_TOKEN.findall(sql)
            if not token.startswith(("--", "/*"))}


def schema_problems(conn: sqlite3.Connection) -> list[str]:
    """What differs between the database's audit tables and triggers and what this module
    creates (missing, changed, extra objects; another schema version). Empty when all is right.

    Objects are found by what they touch, not by how their names are written: every table,
    trigger, view and index that is on an audit table (SQLite's ``tbl_name``, compared as SQLite
    compares names) or whose SQL mentions one, however quoted or cased."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    found = {}
    for kind, name, table, sql in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"):
        if sql_name(table) in AUDIT_TABLES or not names_in(sql).isdisjoint(AUDIT_TABLES):
            found[sql_name(name)] = (kind, name, sql)
    if "audit_log" not in found:
        return [_NO_TABLE]
    if version != SCHEMA_VERSION:
        old = "1" if version == 0 else str(version)
        return [f"the trail has schema version {old}, not {SCHEMA_VERSION}. "
                + _OLD_SCHEMA_ADVICE.format(version=SCHEMA_VERSION)]
    problems = []
    for name, expected in SCHEMA_SQL.items():
        if name not in found:
            problems.append(f"{name} is missing")
        elif " ".join(found[name][2].split()) != " ".join(expected.split()):
            problems.append(f"{name} is not the expected definition (changed, e.g. by ALTER TABLE)")
    extra = sorted(f"{kind} {name}" for key, (kind, name, _) in found.items()
                   if key not in SCHEMA_SQL)
    if extra:
        problems.append(f"unexpected {', '.join(extra)} on the audit tables")
    return problems


# --- the head, kept outside the database (hitl_kit.audit_head) ---------------------------------


def _recorded_head(conn: sqlite3.Connection, db_path: Path) -> Path | None:
    """The head file this trail was anchored to, if any (audit_meta 'head_file')."""
    row = conn.execute("SELECT value FROM audit_meta WHERE name = 'head_file'").fetchone()
    if row is None:
        return None
    recorded = Path(row[0])
    return recorded if recorded.is_absolute() else db_path.resolve().parent / recorded


def _head_for_meta(head_path: Path, db_path: Path) -> str:
    """Relative to the database's folder when inside it (the pair can be moved together)."""
    relative = os.path.relpath(head_path.resolve(), db_path.resolve().parent)
    return str(head_path.resolve()) if relative.startswith("..") else relative


# --- guards on connections -----------------------------------------------------------------------

_WRITER_DENIES = {
    sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH,
    sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
    sqlite3.SQLITE_CREATE_TEMP_VIEW, sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_VIEW,
    sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_INDEX, sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_VIEW, sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_DROP_VTABLE,
}  # fmt: skip
_READER_ALLOWS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                  sqlite3.SQLITE_RECURSIVE}


def _deny_tampering(action, arg1, arg2, db_name, trigger_name):
    """Authorizer of the writer: INSERT and SELECT pass, changes to history do not."""
    if action in _WRITER_DENIES:
        return sqlite3.SQLITE_DENY
    # A PRAGMA with an argument sets something (journal_mode=DELETE, ignore_check_constraints=1)
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _allow_reading(action, arg1, arg2, db_name, trigger_name):
    """Authorizer of the read-only connection: reading and read-only PRAGMAs, nothing else."""
    if action in _READER_ALLOWS or (action == sqlite3.SQLITE_PRAGMA and arg2 is None):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class Rows(list):
    """Rows already fetched, with the cursor methods readers use (no way back to a connection)."""

    def fetchone(self):
        return self[0] if self else None

    def fetchall(self) -> list:
        return list(self)


class ReadOnlyConnection:
    """What ``AuditTrail.connection`` gives out: a read-only connection to the trail's file,
    for reading it and for trying what it refuses. Its guard (``mode=ro`` plus an authorizer
    that lets only reads through) cannot be lifted: there is no ``set_authorizer``, and results
    come back as fetched rows, never as a cursor that leads to the connection."""

    def __init__(self, path: Path):
        self._conn = kit_sqlite.connect(os.fspath(path), readonly=True)
        self._conn.set_authorizer(_allow_reading)
        self._lock = threading.Lock()

    def execute(self, sql: str, parameters=()) -> Rows:
        with self._lock, closing(self._conn.execute(sql, parameters)) as cursor:
            return Rows(cursor.fetchall())

    def set_authorizer(self, *_args, **_kwargs):
        raise PermissionError(
            "the audit trail's connection keeps its guard; to read the trail use "
            "execute('SELECT ...'), to write use AuditTrail.append()"
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# --- the writer ----------------------------------------------------------------------------------


class AuditTrail:
    """Append-only audit trail in a SQLite file, safe to share between threads and processes.

    ``head_path``: file where each append records the row it commits (``hitl_kit.audit_head``).
    The database remembers it: later ``AuditTrail(path)`` uses it without being told, ``verify``
    reports the file missing or out of date, and ``append`` refuses to write past a head that
    does not match (``reanchor()`` starts a new head after you have checked the rows). Opening
    the trail finishes an append a crash interrupted. Keep a copy of the file where the agent
    cannot write: it is what catches rows cut from the end.

    ``durable``: True waits for the disk on every append (``synchronous=FULL``, the head's
    intent synced). False (``synchronous=NORMAL``) is much faster and never corrupts the file,
    but a power cut can lose the last appends: fine for tests and demos.
    """

    def __init__(self, path: str | os.PathLike, *, head_path: str | os.PathLike | None = None,
                 durable: bool = True):
        if sqlite3.sqlite_version_info < (3, 37):
            raise RuntimeError(f"STRICT tables need SQLite 3.37+, found {sqlite3.sqlite_version}")
        if os.fspath(path) in ("", ":memory:"):
            raise ValueError(
                "AuditTrail needs a file path: an in-memory database vanishes with its "
                "connection and read-only readers cannot open it; use e.g. 'audit.db'"
            )
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()  # one transaction at a time on this shared connection
        self._reader: ReadOnlyConnection | None = None
        self._last: tuple[int, str] | None = None  # newest (seq, row_hash) this trail knows of
        self._head: HeadFile | None = None
        self._conn = kit_sqlite.connect(os.fspath(self.path))
        try:
            # The only PRAGMAs with an argument; the authorizer refuses them afterwards.
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            with kit_sqlite.transaction(self._conn, self._lock):
                self._create_schema_if_new()
                problems = schema_problems(self._conn)
                if problems:
                    advice = "" if _unreadable(problems) else f" {_DAMAGED_ADVICE}"
                    raise AuditSchemaError(f"{self.path}: {'; '.join(problems)}.{advice}")
                self.head_path = self._anchor(None if head_path is None else Path(head_path))
                self._schema_version = self._read_schema_version()
            self._conn.set_authorizer(_deny_tampering)
            if self.head_path is not None:
                self._head = HeadFile(self.head_path, durable=durable)
                self._finish_interrupted_append()
        except BaseException:
            self._conn.close()
            raise

    def _create_schema_if_new(self) -> None:
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'").fetchone()
        if not exists and self._conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            for sql in SCHEMA_SQL.values():
                self._conn.execute(sql)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _anchor(self, head_path: Path | None) -> Path | None:
        """The head file to use: the one the database recorded, or ``head_path`` recorded now."""
        recorded = _recorded_head(self._conn, self.path)
        if recorded is not None:
            if head_path is not None and head_path.resolve() != recorded.resolve():
                raise AuditHeadError(
                    f"{self.path} keeps its head in {recorded}, not {head_path}: open it with "
                    "that head_path, or without one (the trail remembers it)"
                )
            return recorded
        if head_path is None:
            return None
        self._conn.execute("INSERT INTO audit_meta (name, value) VALUES ('head_file', ?)",
                           (_head_for_meta(head_path, self.path),))
        with HeadFile(head_path, durable=self.durable).locked(create=True) as held:
            held.write_mark(_last_link(self._conn) or (0, GENESIS_HASH), sync=True)
        return head_path

    def _finish_interrupted_append(self) -> None:
        """A row the head holds in flight goes into the trail (if the head and the rows are
        otherwise as they should be: anything else is left for verify to report)."""
        with self._lock, self._head.locked() as held:
            with kit_sqlite.transaction(self._conn, _HELD_ALREADY):
                try:
                    in_flight = row_in_flight(held, _last_link(self._conn), _HOW_TO_CHECK)
                except AuditHeadError:
                    return
                if in_flight is not None:
                    self._insert(in_flight)
            if in_flight is not None:
                held.write_mark((in_flight["seq"], in_flight["row_hash"]))

    def _read_schema_version(self) -> int:
        return self._conn.execute("PRAGMA schema_version").fetchone()[0]

    @property
    def connection(self) -> ReadOnlyConnection:
        """A read-only connection to the trail, for reading and for trying what it refuses.
        Writing goes through ``append()`` only."""
        with self._lock:
            if self._reader is None:
                self._reader = ReadOnlyConnection(self.path)
            return self._reader

    # -- writing --

    def append(self, entry: Mapping) -> dict:
        """Write one event and return the stored row.

        Idempotent on ``event_key``: the same key with the same content returns the existing row
        (recorded_at excepted); the same key with different content raises AuditConflictError.
        Invalid input raises ValueError and writes nothing. A schema changed behind the trail's
        back raises AuditSchemaError, a head file that does not match AuditHeadError; neither
        writes anything.
        """
        row = normalize_entry(entry, check=False)  # SQLite checks; check_rules explains refusals
        with self._lock:
            if self._head is None:
                if self._last is not None:
                    stored = self._append_in_one_statement(row)
                    if stored is not None:
                        return stored
                return self._append(row, None)
            with self._head.locked() as held:
                return self._append(row, held)

    def _append_in_one_statement(self, row: dict) -> dict | None:
        """The common case without a head: one INSERT, its own transaction, chained to the
        newest row this trail wrote, once the schema version shows nothing changed. (A check
        that cannot be switched off from the connection: an authorizer can be.) If another
        writer appended in between, the row's seq is taken and the guard trigger refuses it; a
        duplicate event_key is refused the same way. None: take the careful path."""
        if self._read_schema_version() != self._schema_version:
            return None
        stored, _ = chain_row(row, self._last)
        try:
            inserted = self._conn.execute(_INSERT_SQL, list(stored.values())).rowcount
        except sqlite3.DatabaseError:
            return None  # taken, refused or busy: look carefully
        if inserted != 1:  # something in the database dropped it
            raise self._row_not_stored(stored)
        self._last = (stored["seq"], stored["row_hash"])
        return stored

    def _append(self, row: dict, held: HeldHead | None) -> dict:
        # IMMEDIATE takes the write lock before we read the last hash, so no other writer can
        # add a row between our read and our insert: the chain stays one line. The head's lock
        # (held) was taken first, by every writer: its intent and mark land in chain order.
        check_rules(row)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._read_schema_version() != self._schema_version:
                self._check_changed_schema(held)
            state = self._conn.execute(_STATE_SQL, (row["event_key"],)).fetchone()
            existing, last = (None, None) if state is None else (state[0], state[1:])
            if existing is not None:
                self._conn.execute("ROLLBACK")
                return same_or_conflict(_row(self._conn, existing), row)
            if held is not None:
                in_flight = row_in_flight(held, last, _HOW_TO_CHECK)
                if in_flight is not None:  # committed on its own first, then this row
                    self._insert(in_flight)
                    self._conn.execute("COMMIT")
                    held.write_mark((in_flight["seq"], in_flight["row_hash"]))
                    return self._append(row, held)
            stored, canonical = chain_row(row, last)
            self._insert(stored)
            if held is not None:
                held.write_intent(stored, canonical)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        if held is not None:
            held.write_mark((stored["seq"], stored["row_hash"]))
        self._last = (stored["seq"], stored["row_hash"])
        return stored

    def _insert(self, stored: dict) -> None:
        """INSERT the row, then read it back: a trigger may have dropped it silently."""
        try:
            self._conn.execute(_INSERT_SQL, [stored[name] for name in COLUMNS])
        except sqlite3.IntegrityError:
            check_rules(stored)  # raises ValueError saying which rule, if it is a rule
            raise
        found = self._conn.execute("SELECT row_hash FROM audit_log WHERE seq = ?",
                                   (stored["seq"],)).fetchone()
        if found is None or found[0] != stored["row_hash"]:
            raise self._row_not_stored(stored)

    def _row_not_stored(self, stored: dict) -> AuditSchemaError:
        problems = schema_problems(self._conn) or ["no problem found in the schema"]
        return AuditSchemaError(
            f"{self.path}: row {stored['seq']} was not stored as written, though SQLite took the "
            f"INSERT (something in the database drops or changes rows): {'; '.join(problems)}. "
            f"Nothing was written. {_DAMAGED_ADVICE}")

    def _check_changed_schema(self, held: HeldHead | None) -> None:
        """The schema changed since this trail checked it: only go on if it is intact and the
        rows still verify (a VACUUM changes the version; a trigger dropped and recreated after
        deleting rows does too)."""
        problems = schema_problems(self._conn)
        if problems:
            raise AuditSchemaError(
                f"{self.path}: the schema changed while this trail had it open: "
                f"{'; '.join(problems)}. Nothing was written. {_DAMAGED_ADVICE}")
        result = self._verify_pinned(None, held)
        if not result.ok:
            raise AuditSchemaError(
                f"{self.path}: the schema changed while this trail had it open, and the trail "
                f"no longer verifies: {result.problem}. Nothing was written. {_DAMAGED_ADVICE}")
        self._schema_version = self._read_schema_version()

    def reanchor(self) -> tuple[int, str]:
        """Write a new head at the trail's newest row, after checking the chain and the schema.
        Only call it once you trust the rows: it is the explicit step ``append`` will not take
        on its own. Returns the new head."""
        if self._head is None:
            raise AuditHeadError(f"{self.path} has no head file to re-anchor")
        with self._lock, self._head.locked(create=True) as held:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._verify_pinned(None, None)
                if not result.ok:
                    raise AuditHeadError(f"{self.path} does not verify, so it gets no new head: "
                                         f"{result.problem}")
                last = _last_link(self._conn) or (0, GENESIS_HASH)
                held.write_mark(last, sync=True)
                self._schema_version = self._read_schema_version()
            finally:
                self._conn.execute("ROLLBACK")
        return last

    # -- reading and checking --

    def verify(self, head: tuple[int, str] | None = None) -> VerifyResult:
        """Check the schema and the whole chain; with a head (default: the head file, if the
        trail has one) also its end."""
        use_file = head is None and self._head is not None
        with self._lock, _pinned(self._conn, self._head if use_file else None) as held:
            return self._verify_pinned(head, held)

    def _verify_pinned(self, head, held: HeldHead | None) -> VerifyResult:
        return _verify_snapshot(self._conn, head, held)

    def head(self) -> tuple[int, str] | None:
        """(seq, row_hash) of the newest row, or None for an empty trail."""
        with self._lock:
            return _last_link(self._conn)

    def rows(self) -> list[dict]:
        """All rows in seq order, as stored (parameters and details are JSON text)."""
        with self._lock:
            return [dict(zip(COLUMNS, row, strict=True))
                    for row in self._conn.execute(SELECT_ROWS_SQL)]

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
            self._conn.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_HOW_TO_CHECK = "verify_file(path, head=...)"
# What an append reads under the write lock: the row holding its event key, if any, and the
# newest row (no row at all: the trail is empty, so no key is taken either).
_STATE_SQL = ("SELECT (SELECT seq FROM audit_log WHERE event_key = ?), seq, row_hash "
              "FROM audit_log ORDER BY seq DESC LIMIT 1")
_HELD_ALREADY = nullcontext()  # for kit_sqlite.transaction when the trail's lock is held
_PLACEHOLDERS = ", ".join("?" * len(COLUMNS))
_INSERT_SQL = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({_PLACEHOLDERS})"


def _last_link(conn: sqlite3.Connection) -> tuple[int, str] | None:
    last = conn.execute("SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return None if last is None else (last[0], last[1])


@contextmanager
def _pinned(conn: sqlite3.Connection, head: HeadFile | None) -> Iterator[HeldHead | None]:
    """A read transaction whose snapshot is taken while the head file is read under its shared
    lock (no append can move either in between), open for the block; the block gets the head
    as read (None: no head)."""
    conn.execute("BEGIN")
    try:
        with head.locked(shared=True) if head is not None else nullcontext() as held:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()  # the snapshot
            if held is not None:
                held.load()
        yield held
    finally:
        conn.execute("COMMIT")


def _verify_snapshot(conn: sqlite3.Connection, head, held: HeldHead | None) -> VerifyResult:
    """The schema and the chain; its end against ``head``, or else against the head file as
    ``held`` read it."""
    problems = schema_problems(conn)
    if _unreadable(problems):
        return VerifyResult(False, 0, None, "; ".join(problems), tuple(problems))
    end = read_end(held, _last_link(conn)) if head is None and held is not None else EndCheck(head)
    result = end.applied_to(_verify_chain(conn, end.end, end.in_flight))
    return result.with_schema_problems(problems)


def _verify_chain(conn: sqlite3.Connection, head: tuple[int, str] | None,
                  in_flight: dict | None = None) -> VerifyResult:
    """verify_rows' checks with SQLite doing the heavy part: it writes each row's canonical
    JSON and finds the first row that breaks a CHECK; Python hashes and follows the links."""
    rule_break = conn.execute(FIRST_RULE_BREAK_SQL).fetchone()
    stop_at = rule_break[0] if rule_break else None
    walk = ChainWalk()
    sha256 = hashlib.sha256
    for seq, prev_hash, row_hash, text in conn.execute(_CHAIN_SQL):
        problem = walk.link_problem(seq, prev_hash)
        if problem is not None:
            return problem
        if sha256(text.encode("utf-8", "surrogatepass")).hexdigest() != row_hash and (
                compute_row_hash(_row(conn, seq)) != row_hash):
            return walk.hash_problem(seq)
        if seq == stop_at:
            try:
                check_row(_row(conn, seq))
            except ValueError as exc:
                return walk.rule_problem(seq, exc)
            return walk.rule_problem(seq, ValueError("SQLite finds it breaks a CHECK"))
        walk.passed(seq, row_hash)
    return walk.finish(head, in_flight)


def _row(conn: sqlite3.Connection, seq: int) -> dict:
    values = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq = ?",
                          (seq,)).fetchone()
    return dict(zip(COLUMNS, values, strict=True))


# --- readers -------------------------------------------------------------------------------------


def open_readonly(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection that can read the trail but not write to it (``mode=ro``)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no audit database at {file}")
    return sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)


def verify_file(path: str | os.PathLike, head: tuple[int, str] | None = None, *,
                use_head: bool = True) -> VerifyResult:
    """Check a trail from a read-only connection: works on a file AuditTrail refuses to open.

    ``head``: the (seq, row_hash) to check the end against, e.g. from a copy of the head file
    you keep elsewhere. Without it, the head file the trail recorded is used (a missing one is
    reported); ``use_head=False`` checks the chain alone.
    """
    file = Path(path)
    with closing(open_readonly(file)) as conn:
        conn.isolation_level = None
        recorded = None
        if head is None and use_head:
            try:
                recorded = _recorded_head(conn, file)
            except sqlite3.OperationalError:  # no audit_meta: schema_problems says so
                recorded = None
        with _pinned(conn, None if recorded is None else HeadFile(recorded)) as held:
            return _verify_snapshot(conn, head, held)
