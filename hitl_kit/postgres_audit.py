"""The audit trail on PostgreSQL: privileges instead of triggers.

The same rows, rules and hash chain as the SQLite trail (``hitl_kit.audit_chain``), kept where
the writer cannot change them: the table belongs to ``hitl_owner``, and the agent's role
``hitl_agent`` holds only INSERT and SELECT on it. An UPDATE, DELETE, TRUNCATE or DROP from the
agent fails with ``InsufficientPrivilege``, and unlike a SQLite trigger, the agent cannot remove
the guard: only the owner (or a superuser) can grant, alter or drop. The trail refuses to open
for a role that could rewrite history, and ``verify`` reports any role, trigger, rule or row
security policy that could.

Appends from any number of processes and hosts keep one linear chain: each takes an advisory
lock, reads the newest row and inserts the next (``seq`` is the primary key, so even a writer
that skipped the lock could not fork the chain, only fail). ``verify_database`` checks the chain
from the read-only ``hitl_auditor`` role; the server hashes the rows, so nothing but the first
bad row crosses the wire.

    >>> from hitl_kit.postgres import AGENT, AUDITOR
    >>> server = local_server()  # doctest: +SKIP
    >>> trail = PostgresAuditTrail(server.url(AGENT))
    >>> trail.append({"event_key": "t1:call_1:proposed", "session_id": "t1",
    ...     "action_type": "send_email", "parameters": {"to": "ana@x.org"},
    ...     "reversibility_class": "irreversible_low", "event": "proposed",
    ...     "proposed_at": "2026-11-26T21:30:00+00:00"})["seq"]
    1
    >>> verify_database(server.url(AUDITOR)).ok
    True
    >>> trail.close()

(``tests/test_postgres.py`` runs this example on the test session's server.)

Limits: a superuser (or the owner) can still rewrite the table and its hashes. Only a head
``(seq, row_hash)`` kept outside the database catches that: give ``head_path``, and in
production copy the head to storage the database's administrators cannot rewrite (WORM, object
lock). The head file is per host: with writers on several hosts, anchor the head elsewhere.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from hitl_kit.audit import HeadRecord, read_head
from hitl_kit.audit import _write_head as write_head_file
from hitl_kit.audit_chain import (
    CHANNELS,
    COLUMNS,
    DECISIONS,
    EVENTS,
    GENESIS_HASH,
    HASHED_COLUMNS,
    OUTCOMES,
    REVERSIBILITY_CLASSES,
    ROW_RULES_SQL,
    AuditHeadError,
    AuditIntegrityError,
    AuditSchemaError,
    VerifyResult,
    _Walk,
    compute_row_hash,
    normalize_entry,
    one_of,
    same_or_conflict,
    utc_now_iso,
    verify_rows,
)
from hitl_kit.postgres import (
    AGENT,
    AUDIT_LOCKS,
    OWNER,
    SCHEMA,
    _not_provisioned,
    connect,
    missing_tables,
    open_pool,
    shown,
)

AUDIT_TABLES = ("audit_log", "audit_meta")
LOG = f"{SCHEMA}.audit_log"
META = f"{SCHEMA}.audit_meta"

# The same shapes the SQLite trail checks, which Python's check_columns mirrors: timestamps by
# the shape of UTC ISO text (ILIKE: SQLite's LIKE ignores the case of the "T"), hashes by length.
_UTC_LIKE = "____-__-__T__:__:__.______+00:00"


def _json_object(column: str) -> str:
    return f"{column} IS JSON OBJECT AND left({column}, 1) = '{{'"


def _hash(column: str) -> str:
    return f"length({column}) = 64"


# name, type, CHECK on the column alone (None: no check): the SQLite trail's, in PostgreSQL
_COLUMN_DEFINITIONS = (
    ("seq", "BIGINT PRIMARY KEY", None),
    ("event_key", "TEXT NOT NULL UNIQUE", "event_key <> ''"),
    ("recorded_at", "TEXT NOT NULL", f"recorded_at ILIKE '{_UTC_LIKE}'"),
    ("session_id", "TEXT NOT NULL", "session_id <> ''"),
    ("action_type", "TEXT NOT NULL", "action_type <> ''"),
    ("parameters", "TEXT NOT NULL", _json_object("parameters")),
    ("reversibility_class", "TEXT NOT NULL",
     one_of("reversibility_class", REVERSIBILITY_CLASSES)),
    ("event", "TEXT NOT NULL", one_of("event", EVENTS)),
    ("channel", "TEXT", one_of("channel", CHANNELS)),
    ("approver_id", "TEXT", "approver_id <> ''"),
    ("approver_role", "TEXT", "approver_role <> ''"),
    ("decision", "TEXT", one_of("decision", DECISIONS)),
    ("outcome", "TEXT", one_of("outcome", OUTCOMES)),
    ("reason", "TEXT", None),
    ("details", "TEXT", _json_object("details")),
    ("proposed_at", "TEXT NOT NULL", f"proposed_at ILIKE '{_UTC_LIKE}'"),
    ("executed_at", "TEXT", f"executed_at ILIKE '{_UTC_LIKE}'"),
    ("prev_hash", "TEXT NOT NULL", _hash("prev_hash")),
    ("row_hash", "TEXT NOT NULL", _hash("row_hash")),
)
assert tuple(name for name, _, _ in _COLUMN_DEFINITIONS) == COLUMNS
_CHECKS = {f"audit_log_{name}_check": check for name, _, check in _COLUMN_DEFINITIONS if check}
_CHECKS.update({f"audit_log_rule_{n}": rule for n, rule in enumerate(ROW_RULES_SQL, 1)})
EXPECTED_CONSTRAINTS = frozenset({"audit_log_pkey", "audit_log_event_key_key", *_CHECKS})
_NOT_NULL = [name for name, kind, _ in _COLUMN_DEFINITIONS if "NOT NULL" in kind or name == "seq"]
EXPECTED_COLUMNS = tuple((name, "bigint" if name == "seq" else "text", name in _NOT_NULL)
                         for name in COLUMNS)

SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS audit_log (\n" + ",\n".join(
        [f"    {name:<19} {kind}" for name, kind, _ in _COLUMN_DEFINITIONS]
        + [f"    CONSTRAINT {name} CHECK ({check})" for name, check in _CHECKS.items()]) + ")",
    "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

SELECT_ROWS_SQL = f"SELECT {', '.join(COLUMNS)} FROM {LOG} ORDER BY seq"
_BREAKS_A_RULE = " OR ".join([f"{name} IS NULL" for name in _NOT_NULL]
                             + [f"({check}) IS FALSE" for check in _CHECKS.values()])
# The canonical JSON of a row, written by the server: to_json escapes text exactly as Python's
# json does with ensure_ascii=False, so the server can hash each row itself.
_CANONICAL_SQL = "'{' || " + " || ',' || ".join(
    f"'\"{name}\":' || " + ("seq::text" if name == "seq" else
                            f"coalesce(to_json({name})::text, 'null')")
    for name in HASHED_COLUMNS) + " || '}'"
# The first row out of place in the chain: numbered wrong or not linked to the row before. A
# window over two narrow columns.
_BROKEN_LINK_SQL = f"""
SELECT min(seq) FROM (
    SELECT seq, prev_hash, lag(seq) OVER w AS seq_before, lag(row_hash) OVER w AS hash_before
    FROM {LOG} WINDOW w AS (ORDER BY seq)) chain
WHERE seq IS DISTINCT FROM coalesce(seq_before, 0) + 1
   OR prev_hash IS DISTINCT FROM coalesce(hash_before, '{GENESIS_HASH}')"""
# The rows that do not match their hash or break a rule: each row on its own, so the server may
# scan the table with parallel workers.
_BAD_ROWS_SQL = f"""
SELECT seq FROM {LOG}
WHERE encode(pg_catalog.sha256(convert_to(prev_hash || {_CANONICAL_SQL}, 'UTF8')), 'hex')
      IS DISTINCT FROM row_hash OR ({_BREAKS_A_RULE})"""
_TABLES = "ARRAY['audit_log', 'audit_meta']"
_IN_SCHEMA = f"c.relnamespace = '{SCHEMA}'::regnamespace AND c.relname = ANY({_TABLES})"
_LAST_SQL = f"SELECT seq, row_hash FROM {LOG} ORDER BY seq DESC LIMIT 1"
# What any change to the guard moves (owner, grants, row security, triggers, rules, columns,
# CHECKs, the writer's own role), read from the catalog in microseconds: the PostgreSQL
# counterpart of SQLite's schema_version. Each append compares it with what was checked; a
# change means a full check.
_STAMP_SQL = f"""((SELECT string_agg(concat_ws('|', c.relname, c.relowner, c.relacl,
        c.relrowsecurity, c.relforcerowsecurity, c.relhastriggers, c.relhasrules, c.relnatts,
        c.relchecks, pg_has_role(c.relowner, 'MEMBER'),
        has_table_privilege(c.oid, 'UPDATE, DELETE, TRUNCATE, TRIGGER'),
        has_any_column_privilege(c.oid, 'UPDATE')), ';' ORDER BY c.relname)
    FROM pg_catalog.pg_class c WHERE {_IN_SCHEMA}) || current_setting('is_superuser'))"""
_COLUMN_LIST = ", ".join(COLUMNS)
# What an append needs to know, in one round trip (under the lock): the guard's stamp, the
# newest row, the row this trail wrote last, and a row already holding the event key.
_STATE_SQL = f"""WITH newest AS (SELECT seq, row_hash FROM {LOG} ORDER BY seq DESC LIMIT 1)
SELECT {_STAMP_SQL}, (SELECT seq FROM newest), (SELECT row_hash FROM newest),
       (SELECT row_hash FROM {LOG} WHERE seq = %s), same.*
FROM (VALUES (1)) one
LEFT JOIN LATERAL (SELECT {_COLUMN_LIST} FROM {LOG} WHERE event_key = %s) same ON true"""
_PLACEHOLDERS = ", ".join(["%s"] * len(COLUMNS))
_INSERT_SQL = f"INSERT INTO {LOG} ({_COLUMN_LIST}) VALUES ({_PLACEHOLDERS})"
# The common case in one statement: the next seq after the row this trail wrote last, inserted
# only if the guard did not move. Another writer in between takes that seq first (the primary
# key): nothing is inserted and the careful path runs. (Rows an administrator cut or rewrote
# under it leave a gap or a broken link that verify finds.)
_INSERT_IF_GUARDED_SQL = (
    f"INSERT INTO {LOG} ({_COLUMN_LIST}) SELECT {_PLACEHOLDERS} WHERE {_STAMP_SQL} = %s "
    "ON CONFLICT DO NOTHING")
# Privileges that let a role change or remove rows, or hook into writes.
_REWRITING_PRIVILEGES = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
_DAMAGED_ADVICE = ("Do not append to this trail: keep it as evidence, check it with "
                   "verify_database(auditor_url, head=...), and start a new one.")


# --- what guards the trail -----------------------------------------------------------------------

_ACL_ROW = ("SELECT c.relname || {column} || ' held by ' || coalesce(r.rolname, 'PUBLIC')"
            " || ': ' || a.privilege_type FROM pg_catalog.pg_class c {join}"
            " CROSS JOIN LATERAL aclexplode({acl}) a"
            " LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee WHERE " + _IN_SCHEMA +
            " AND a.grantee <> c.relowner AND "
            + one_of("a.privilege_type", _REWRITING_PRIVILEGES))
# Everything guard_problems looks at, in one round trip.
_GUARD_SQL = f"""SELECT
    ARRAY({_ACL_ROW.format(column="''", acl="coalesce(c.relacl, acldefault('r', c.relowner))",
                           join="")}
          UNION ALL {_ACL_ROW.format(column="'.' || att.attname", acl="att.attacl",
                                     join="JOIN pg_catalog.pg_attribute att "
                                          "ON att.attrelid = c.oid")} ORDER BY 1),
    ARRAY(SELECT c.relname FROM pg_catalog.pg_class c WHERE {_IN_SCHEMA}
          AND (c.relrowsecurity OR c.relforcerowsecurity) ORDER BY 1),
    ARRAY(SELECT c.relname || ' (' || pg_get_userbyid(c.relowner) || ')'
          FROM pg_catalog.pg_class c WHERE {_IN_SCHEMA}
          AND pg_get_userbyid(c.relowner) <> '{OWNER}' ORDER BY 1),
    ARRAY(SELECT c.relname || ': ' || t.tgname FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE {_IN_SCHEMA}
          AND NOT t.tgisinternal ORDER BY 1),
    ARRAY(SELECT tablename || ': ' || rulename FROM pg_catalog.pg_rules
          WHERE schemaname = '{SCHEMA}' AND tablename = ANY({_TABLES}) ORDER BY 1),
    ARRAY(SELECT row(attname::text, format_type(atttypid, atttypmod), attnotnull)::text
          FROM pg_catalog.pg_attribute WHERE attrelid = '{LOG}'::regclass AND attnum > 0
          AND NOT attisdropped ORDER BY attnum),
    ARRAY(SELECT conname::text FROM pg_catalog.pg_constraint
          WHERE conrelid = '{LOG}'::regclass AND contype <> 'n'),  -- 18 lists NOT NULL there
    ARRAY(SELECT conname::text FROM pg_catalog.pg_constraint
          WHERE conrelid = '{LOG}'::regclass AND NOT convalidated ORDER BY 1),
    (SELECT rolsuper OR pg_has_role(oid, '{OWNER}', 'MEMBER') FROM pg_catalog.pg_roles
     WHERE rolname = '{AGENT}')"""
_EXPECTED_COLUMN_ROWS = [f"({name},{kind},{'t' if not_null else 'f'})"
                         for name, kind, not_null in EXPECTED_COLUMNS]
# What the connected role could do to the trail, in one round trip.
_WRITER_SQL = f"""SELECT current_user, (SELECT rolsuper FROM pg_catalog.pg_roles
                                        WHERE rolname = current_user),
    ARRAY(SELECT c.relname FROM pg_catalog.pg_class c WHERE {_IN_SCHEMA}
          AND pg_has_role(current_user, c.relowner, 'MEMBER') ORDER BY 1),
    ARRAY(SELECT c.relname || ': ' || p FROM pg_catalog.pg_class c,
          unnest(ARRAY['DELETE', 'TRUNCATE', 'TRIGGER']) p
          WHERE {_IN_SCHEMA} AND has_table_privilege(c.oid, p)
          UNION ALL SELECT c.relname || ': UPDATE' FROM pg_catalog.pg_class c
          WHERE {_IN_SCHEMA} AND has_any_column_privilege(c.oid, 'UPDATE') ORDER BY 1)"""


def guard_problems(conn) -> list[str]:
    """What could let someone other than the owner change the trail unseen: missing tables,
    roles granted more than INSERT and SELECT, triggers, rules, row security, constraints or
    columns not as provisioned. Empty when the guard is whole."""
    missing = missing_tables(conn, AUDIT_TABLES)
    if missing:
        return [f"{', '.join(missing)} missing in schema {SCHEMA!r}"]
    (grants, secured, owners, triggers, rules, columns, constraints, unchecked,
     agent_can) = _query(conn, _GUARD_SQL).fetchone()
    problems = [f"{grant} (it may change or remove rows)" for grant in grants]
    problems += [f"row level security is on for {table}: a policy can hide rows from the "
                 "auditor" for table in secured]
    problems += [f"{table} does not belong to {OWNER}" for table in owners]
    if triggers:
        problems.append(f"trigger(s) {', '.join(triggers)}: a trigger can change or drop rows "
                        "as they are written")
    if rules:
        problems.append(f"rule(s) {', '.join(rules)}: a rule can rewrite or drop inserts")
    if list(columns) != _EXPECTED_COLUMN_ROWS:
        problems.append("audit_log's columns are not the expected ones (changed by ALTER TABLE)")
    if set(constraints) != EXPECTED_CONSTRAINTS:
        changed = sorted(EXPECTED_CONSTRAINTS ^ set(constraints))
        problems.append(f"audit_log's constraints changed: {', '.join(changed)}")
    if unchecked:
        problems.append(f"constraint(s) {', '.join(unchecked)} added NOT VALID: the rows "
                        "before them were never checked")
    if agent_can:
        problems.append(f"the agent's role {AGENT} is a superuser or may act as {OWNER}")
    return problems


def writer_problems(conn) -> list[str]:
    """Why the connected role must not write the trail: it could rewrite what it wrote."""
    role, superuser, owns, held = _query(conn, _WRITER_SQL).fetchone()
    if superuser:
        return [f"{role} is a superuser"]
    if owns:
        return [f"{role} owns {', '.join(owns)} (or may act as its owner)"]
    return [f"{role} holds {', '.join(held)}"] if held else []


# --- the head, kept outside the database ---------------------------------------------------------

def _write_head(head_path: Path, seq: int, row_hash: str, *, durable: bool) -> None:
    """Replace a head file atomically, as the SQLite trail does (``read_head`` reads it)."""
    write_head_file(head_path, HeadRecord(seq, row_hash), durable=durable)


def _pending_path(head_path: Path) -> Path:
    return head_path.with_name(head_path.name + ".pending")


def expected_head(head_path: Path, last: tuple[int, str] | None
                  ) -> tuple[tuple[int, str] | None, str | None, bool]:
    """(head, problem, settled_pending) for a trail whose newest row is ``last``.

    An append writes the row it is about to commit to ``<head>.pending`` first and moves it into
    the head after the commit. A crash in between leaves a pending head: it counts if that row
    is the trail's newest (the commit happened), and is dropped if the trail still ends at the
    head (it did not). Anything else is a problem."""
    last = last or (0, GENESIS_HASH)
    try:
        head = read_head(head_path)
        pending = read_head(_pending_path(head_path))
    except ValueError as exc:
        return None, str(exc), False
    if head is None:
        return None, (f"the head file {head_path} is missing, but this trail keeps its head "
                      "there: rows may have been cut from its end"), False
    if pending is not None and pending == last:
        return pending, None, True
    return head, None, pending is not None


# --- the writer ----------------------------------------------------------------------------------

class PostgresAuditTrail:
    """Append-only audit trail in PostgreSQL, for any number of processes and hosts; the same
    ``append`` / ``rows`` / ``verify`` / ``head`` as ``hitl_kit.audit.AuditTrail``.

    ``url``: the agent's connection string (a role with only INSERT, SELECT on the trail) or a
    psycopg ``ConnectionPool`` of such connections (shared, left open). Raises
    ``AuditSchemaError`` when the role could rewrite history (owner, superuser, UPDATE or
    DELETE...) or the guard is not whole.

    ``head_path``: a file where each append records the newest (seq, row_hash); append refuses
    to write past a head that does not match and verify checks the end against it. Once a trail
    has a head it must always be opened with one. ``durable``: fsync the head file.
    """

    def __init__(self, url, *, head_path: str | os.PathLike | None = None, durable: bool = True):
        self._own_pool = isinstance(url, str)
        self.path = shown(url) if self._own_pool else "a shared pool"
        self._pool = open_pool(url, name="hitl-audit", max_size=2) if self._own_pool else url
        self.durable = durable
        self._lock = threading.Lock()  # one append at a time from this object
        self._last: tuple[int, str] | None = None
        try:
            with self._pool.connection() as conn:
                if missing_tables(conn, AUDIT_TABLES):
                    raise _not_provisioned(self.path, "audit trail",
                                           missing_tables(conn, AUDIT_TABLES))
                problems = writer_problems(conn) + guard_problems(conn)
                if problems:
                    raise AuditSchemaError(
                        f"the audit trail at {self.path} is not guarded from this writer: "
                        f"{'; '.join(problems)}. The agent must log in as a role granted only "
                        f"INSERT and SELECT on it ({AGENT}, made by hitl_kit.postgres."
                        "provision); nothing was written")
                self._stamp = _query(conn, f"SELECT {_STAMP_SQL}").fetchone()[0]
                self.head_path = self._anchor(conn, head_path)
        except BaseException:
            self.close()
            raise

    def _anchor(self, conn, head_path) -> Path | None:
        anchored = _query(conn, f"SELECT value FROM {META} WHERE name = 'head'").fetchone()
        if head_path is None:
            if anchored:
                raise AuditHeadError(
                    f"the audit trail at {self.path} keeps its head outside the database: open "
                    "it with head_path=... (a copy of the head file you trust)")
            return None
        head_path = Path(head_path)
        if not anchored:
            with conn.transaction():
                _query(conn, f"SELECT pg_advisory_xact_lock({AUDIT_LOCKS}, 0)")
                _query(conn, f"INSERT INTO {META} VALUES ('head', 'external') "
                             "ON CONFLICT DO NOTHING")
                if read_head(head_path) is None:
                    _write_head(head_path, *(_last_link(conn) or (0, GENESIS_HASH)),
                                durable=self.durable)
        return head_path

    # -- writing --

    def append(self, entry: Mapping) -> dict:
        """Write one event and return the stored row; idempotent on ``event_key`` (the same
        content returns the stored row, other content raises AuditConflictError). Invalid input
        raises ValueError and writes nothing; a head that does not match raises
        AuditHeadError."""
        row = normalize_entry(entry)
        with self._lock, self._pool.connection() as conn:
            if self.head_path is None and self._last is not None:
                stored = self._append_if_guarded(conn, row)
                if stored is not None:
                    return stored
            return self._append(conn, row)

    def _chain(self, row: dict, last: tuple[int, str] | None) -> dict:
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        row = {**row, "seq": seq, "prev_hash": prev_hash,
               "recorded_at": row["recorded_at"] or utc_now_iso()}
        row["row_hash"] = compute_row_hash(row)
        return {name: row[name] for name in COLUMNS}

    def _append_if_guarded(self, conn, row: dict) -> dict | None:
        import psycopg

        stored = self._chain(row, self._last)
        cursor = psycopg.ClientCursor(conn)
        cursor.execute(_INSERT_IF_GUARDED_SQL, [*stored.values(), self._stamp])
        if cursor.rowcount != 1:
            return None  # a key already there, another writer in between, the guard moved
        self._last = (stored["seq"], stored["row_hash"])
        return stored

    def _append(self, conn, row: dict) -> dict:
        import psycopg

        # A session lock, held until the head file is written after the commit, so several
        # writers move the head in chain order.
        _query(conn, f"SELECT pg_advisory_lock({AUDIT_LOCKS}, 0)")
        try:
            with conn.transaction():
                stamp, newest_seq, newest_hash, mine, *same = _query(conn, _STATE_SQL, (
                    self._last[0] if self._last else None, row["event_key"])).fetchone()
                last = None if newest_seq is None else (newest_seq, newest_hash)
                if stamp != self._stamp:
                    self._check_guard(conn, stamp)
                if same[0] is not None:
                    return same_or_conflict(dict(zip(COLUMNS, same, strict=True)), row)
                self._check_last(last, mine)
                if self.head_path is not None:
                    self._check_head(last)
                stored = self._chain(row, last)
                psycopg.ClientCursor(conn).execute(_INSERT_SQL, list(stored.values()))
                if self.head_path is not None:
                    _write_head(_pending_path(self.head_path), stored["seq"],
                                stored["row_hash"], durable=self.durable)
            if self.head_path is not None:
                self._move_head(stored["seq"], stored["row_hash"])
        finally:
            _query(conn, f"SELECT pg_advisory_unlock({AUDIT_LOCKS}, 0)")
        self._last = (stored["seq"], stored["row_hash"])
        return stored

    def _check_guard(self, conn, stamp: str) -> None:
        """The guard moved since this trail checked it: go on only if it is still whole and the
        rows still verify (granting and revoking a privilege moves it too)."""
        problems = writer_problems(conn) + guard_problems(conn)
        if problems:
            raise AuditSchemaError(f"{self.path}: the guard changed while this trail had it "
                                   f"open: {'; '.join(problems)}. Nothing was written. "
                                   f"{_DAMAGED_ADVICE}")
        result = _verify_chain(conn, None)
        if not result.ok:
            raise AuditSchemaError(f"{self.path}: the guard changed while this trail had it "
                                   f"open, and the trail no longer verifies: {result.problem}. "
                                   f"Nothing was written. {_DAMAGED_ADVICE}")
        self._stamp = stamp

    def _check_last(self, last: tuple[int, str] | None, mine: str | None) -> None:
        """The row this trail wrote last (``mine``: its hash now) must still be there: only a
        superuser or the owner could have removed or changed it."""
        if self._last is not None and mine != self._last[1]:
            raise AuditIntegrityError(
                f"{self.path}: row {self._last[0]}, which this trail wrote, is "
                f"{'gone' if mine is None else 'changed'} (the trail ends at row "
                f"{last[0] if last else 0}). Nothing was written. {_DAMAGED_ADVICE}")

    def _move_head(self, seq: int, row_hash: str) -> None:
        _write_head(self.head_path, seq, row_hash, durable=self.durable)
        _pending_path(self.head_path).unlink(missing_ok=True)

    def _check_head(self, last: tuple[int, str] | None) -> None:
        head, problem, settle = expected_head(self.head_path, last)
        expected = last or (0, GENESIS_HASH)
        if problem is None and head != expected:
            problem = (f"the head file {self.head_path} says row {head[0]}, the trail ends at "
                       f"row {expected[0]}" if head[0] != expected[0] else
                       f"the head file {self.head_path} has another hash for row {head[0]}")
        if problem:
            raise AuditHeadError(
                f"{problem}. Nothing was written. Check the trail against a copy of the head you "
                "trust (verify(head=...)); if the rows are right, call reanchor() to write a new "
                "head at the trail's end.")
        if settle:
            self._move_head(*head)

    def reanchor(self) -> tuple[int, str]:
        """Write a new head at the trail's newest row, after checking the chain. Only once you
        trust the rows. Returns the new head."""
        if self.head_path is None:
            raise AuditHeadError(f"{self.path} has no head file to re-anchor")
        with self._lock, self._pool.connection() as conn:
            _query(conn, f"SELECT pg_advisory_lock({AUDIT_LOCKS}, 0)")
            try:
                result = _verify(conn, None)
                if not result.ok:
                    raise AuditHeadError(f"{self.path} does not verify, so it gets no new head: "
                                         f"{result.problem}")
                last = _last_link(conn) or (0, GENESIS_HASH)
                self._move_head(*last)
            finally:
                _query(conn, f"SELECT pg_advisory_unlock({AUDIT_LOCKS}, 0)")
        return last

    # -- reading and checking --

    def verify(self, head: tuple[int, str] | None = None) -> VerifyResult:
        """Check the guard and the whole chain; with a head (default: the head file, if the
        trail has one) also its end."""
        with self._pool.connection() as conn:
            return _verify(conn, head, self.head_path)

    def head(self) -> tuple[int, str] | None:
        """(seq, row_hash) of the newest row, or None for an empty trail."""
        with self._pool.connection() as conn:
            return _last_link(conn)

    def rows(self) -> list[dict]:
        """All rows in seq order, as stored."""
        with self._pool.connection() as conn:
            return [dict(zip(COLUMNS, row, strict=True))
                    for row in _query(conn, SELECT_ROWS_SQL).fetchall()]

    def close(self) -> None:
        if self._own_pool and getattr(self, "_pool", None) is not None:
            self._pool.close()

    def __enter__(self) -> PostgresAuditTrail:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _query(conn, sql: str, params=None):
    """A cursor with tuple rows (a shared pool may hand out dict-row connections)."""
    from psycopg.rows import tuple_row

    return conn.cursor(row_factory=tuple_row).execute(sql, params)


def _last_link(conn) -> tuple[int, str] | None:
    last = _query(conn, _LAST_SQL).fetchone()
    return None if last is None else (last[0], last[1])


def _verify(conn, head, head_path: Path | None = None) -> VerifyResult:
    """One snapshot: the guard, then the chain, then its end against the head."""
    with conn.transaction():
        _query(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        problems = guard_problems(conn)
        if problems and "missing" in problems[0]:
            return VerifyResult(False, 0, None, "; ".join(problems), tuple(problems))
        head_problem = None
        if head is None and head_path is not None:
            head, head_problem, _ = expected_head(head_path, _last_link(conn))
        result = _verify_chain(conn, head)
    if head_problem and result.ok:
        result = VerifyResult(False, result.rows_checked, None, head_problem)
    return result.with_schema_problems(problems)


def _verify_chain(conn, head) -> VerifyResult:
    """The chain checked by the server (links, hashes, rules); the rows are checked again in
    Python (``verify_rows``, the definition) only when the server finds a problem."""
    if (_query(conn, _BROKEN_LINK_SQL).fetchone()[0] is None
            and _query(conn, _BAD_ROWS_SQL).fetchone() is None):
        walk = _Walk()
        last = _last_link(conn)
        if last is not None:
            walk.passed(*last)
        return walk.finish(head)
    rows = [dict(zip(COLUMNS, row, strict=True))
            for row in _query(conn, SELECT_ROWS_SQL).fetchall()]
    return verify_rows(rows, head)


def verify_database(url: str, head: tuple[int, str] | None = None, *,
                    head_path: str | os.PathLike | None = None) -> VerifyResult:
    """Check a trail from any role that may read it (``hitl_auditor``: SELECT only): the guard
    and the chain; with ``head`` (or ``head_path``, a head file) also its end."""
    with connect(url) as conn:
        return _verify(conn, head, None if head_path is None else Path(head_path))


def read_rows(url: str) -> list[tuple]:
    """Every row in seq order (``COLUMNS``), read in one read-only transaction."""
    with connect(url) as conn, conn.transaction():
        _query(conn, "SET TRANSACTION READ ONLY")
        return _query(conn, SELECT_ROWS_SQL).fetchall()

