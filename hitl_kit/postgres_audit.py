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
kept outside the database catches that: give ``head_path`` (the same protocol as the SQLite
trail's, ``hitl_kit.audit_head``), and in production copy the head to storage the database's
administrators cannot rewrite (WORM, object lock). The head file is per host: with writers on
several hosts, anchor the head elsewhere.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

from hitl_kit.audit_chain import (
    COLUMNS,
    GENESIS_HASH,
    HASHED_COLUMNS,
    ROW_RULES_SQL,
    AuditHeadError,
    AuditIntegrityError,
    AuditSchemaError,
    ChainWalk,
    VerifyResult,
    chain_row,
    column_definitions,
    normalize_entry,
    one_of,
    same_or_conflict,
    verify_rows,
)
from hitl_kit.audit_head import EndCheck, HeadFile, HeldHead, read_end, read_head, row_in_flight
from hitl_kit.postgres import (
    AGENT,
    AUDIT_LOCKS,
    OWNER,
    SCHEMA,
    connect,
    missing_tables,
    not_provisioned,
    open_pool,
    shown,
)

AUDIT_TABLES = ("audit_log", "audit_meta")
LOG = f"{SCHEMA}.audit_log"
META = f"{SCHEMA}.audit_meta"

def _json_object(column: str, nullable: bool) -> str:  # IS JSON of NULL is NULL: it passes
    return f"{column} IS JSON OBJECT AND left({column}, 1) = '{{'"


# The SQLite trail's columns and checks, in PostgreSQL's words (ILIKE: SQLite's LIKE ignores
# the case of the "T").
_COLUMN_DEFINITIONS = column_definitions(integer="BIGINT", like="ILIKE", json_object=_json_object)
assert tuple(name for name, _, _ in _COLUMN_DEFINITIONS) == COLUMNS
_CHECKS = {f"audit_log_{name}_check": check for name, _, check in _COLUMN_DEFINITIONS if check}
_CHECKS.update({f"audit_log_rule_{n}": rule for n, rule in enumerate(ROW_RULES_SQL, 1)})
EXPECTED_CONSTRAINTS = frozenset({"audit_log_pkey", "audit_log_event_key_key", *_CHECKS})
EXPECTED_INDEXES = frozenset({"audit_log_pkey", "audit_log_event_key_key", "audit_meta_pkey"})
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
        has_any_column_privilege(c.oid, 'UPDATE'),
        (SELECT count(*) FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid),
        (SELECT count(*) FROM pg_catalog.pg_depend d WHERE d.refobjid = c.oid
         AND d.classid = 'pg_catalog.pg_rewrite'::regclass)), ';' ORDER BY c.relname)
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
_INSERT_RETURNING_SQL = (f"INSERT INTO {LOG} ({_COLUMN_LIST}) VALUES ({_PLACEHOLDERS}) "
                         f"RETURNING {_COLUMN_LIST}")
# The common case in one statement: the next seq after the row this trail wrote last, inserted
# only if the guard did not move. Another writer in between takes that seq first (the primary
# key): nothing is inserted and the careful path runs. (Rows an administrator cut or rewrote
# under it leave a gap or a broken link that verify finds.)
_INSERT_IF_GUARDED_SQL = (
    f"INSERT INTO {LOG} ({_COLUMN_LIST}) SELECT {_PLACEHOLDERS} WHERE {_STAMP_SQL} = %s "
    "ON CONFLICT DO NOTHING")
# Privileges that let a role change or remove rows, or hook into writes.
_REWRITING_PRIVILEGES = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
_HOW_TO_CHECK = "verify(head=...)"
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
    ARRAY(SELECT i.relname::text FROM pg_catalog.pg_index x
          JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
          JOIN pg_catalog.pg_class c ON c.oid = x.indrelid WHERE {_IN_SCHEMA} ORDER BY 1),
    ARRAY(SELECT DISTINCT v.relkind::text || ' ' || v.relname FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
          JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
          JOIN pg_catalog.pg_class c ON c.oid = d.refobjid
          WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND {_IN_SCHEMA}
          AND v.oid <> c.oid ORDER BY 1),
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
    (grants, secured, owners, triggers, rules, columns, constraints, unchecked, indexes, views,
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
    extra_indexes = sorted(set(indexes) - EXPECTED_INDEXES)
    if extra_indexes:
        problems.append(f"unexpected index(es) {', '.join(extra_indexes)} on the audit tables "
                        "(a unique one can refuse rows)")
    if views:
        kinds = {"v": "view", "m": "materialized view"}
        problems.append("unexpected " + ", ".join(f"{kinds.get(v[0], 'relation')} {v[2:]}"
                                                  for v in views) + " on the audit tables")
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
        self._head: HeadFile | None = None
        try:
            with self._pool.connection() as conn:
                if missing_tables(conn, AUDIT_TABLES):
                    raise not_provisioned(self.path, "audit trail",
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
                if self.head_path is not None:
                    self._head = HeadFile(self.head_path, durable=durable)
                    self._finish_interrupted_append(conn)
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
                    with HeadFile(head_path, durable=self.durable).locked(create=True) as held:
                        held.write_mark(_last_link(conn) or (0, GENESIS_HASH), sync=True)
        return head_path

    def _locked(self, conn):
        """This object's lock, the writers' advisory lock, then the head file's (a session
        lock: it outlasts the commit, so each head record is written in chain order)."""
        return _WriterLocks(self, conn)

    def _finish_interrupted_append(self, conn) -> None:
        """A row the head holds in flight goes into the trail (if the head and the rows are
        otherwise as they should be: anything else is left for verify to report)."""
        with self._locked(conn) as held:
            with conn.transaction():
                try:
                    in_flight = row_in_flight(held, _last_link(conn), _HOW_TO_CHECK)
                except AuditHeadError:
                    return
                if in_flight is not None:
                    _insert(conn, in_flight, self.path)
            if in_flight is not None:
                held.write_mark((in_flight["seq"], in_flight["row_hash"]))

    # -- writing --

    def append(self, entry: Mapping) -> dict:
        """Write one event and return the stored row; idempotent on ``event_key`` (the same
        content returns the stored row, other content raises AuditConflictError). Invalid input
        raises ValueError and writes nothing; a head that does not match raises
        AuditHeadError."""
        row = normalize_entry(entry)
        with self._pool.connection() as conn:
            if self.head_path is None and self._last is not None:
                with self._lock:
                    stored = self._append_if_guarded(conn, row)
                if stored is not None:
                    return stored
            with self._locked(conn) as held:
                return self._append(conn, row, held)

    def _append_if_guarded(self, conn, row: dict) -> dict | None:
        import psycopg

        stored, _ = chain_row(row, self._last)
        cursor = psycopg.ClientCursor(conn)
        cursor.execute(_INSERT_IF_GUARDED_SQL, [*stored.values(), self._stamp])
        if cursor.rowcount != 1:
            return None  # a key already there, another writer in between, the guard moved
        self._last = (stored["seq"], stored["row_hash"])
        return stored

    def _append(self, conn, row: dict, held: HeldHead | None) -> dict:
        in_flight = stored = None
        with conn.transaction():
            stamp, newest_seq, newest_hash, mine, *same = _query(conn, _STATE_SQL, (
                self._last[0] if self._last else None, row["event_key"])).fetchone()
            last = None if newest_seq is None else (newest_seq, newest_hash)
            if stamp != self._stamp:
                self._check_guard(conn, stamp)
            if same[0] is not None:
                return same_or_conflict(dict(zip(COLUMNS, same, strict=True)), row)
            self._check_last(last, mine)
            if held is not None:
                in_flight = row_in_flight(held, last, _HOW_TO_CHECK)
            if in_flight is not None:  # committed on its own first, then this row
                _insert(conn, in_flight, self.path)
            else:
                stored, canonical = chain_row(row, last)
                _insert(conn, stored, self.path)
                if held is not None:
                    held.write_intent(stored, canonical)
        if in_flight is not None:
            held.write_mark((in_flight["seq"], in_flight["row_hash"]))
            self._last = (in_flight["seq"], in_flight["row_hash"])
            return self._append(conn, row, held)
        if held is not None:
            held.write_mark((stored["seq"], stored["row_hash"]))
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

    def reanchor(self) -> tuple[int, str]:
        """Write a new head at the trail's newest row, after checking the chain. Only once you
        trust the rows. Returns the new head."""
        if self.head_path is None:
            raise AuditHeadError(f"{self.path} has no head file to re-anchor")
        with self._pool.connection() as conn, _WriterLocks(self, conn, create=True) as held:
            result = _verify(conn, None)
            if not result.ok:
                raise AuditHeadError(f"{self.path} does not verify, so it gets no new head: "
                                     f"{result.problem}")
            last = _last_link(conn) or (0, GENESIS_HASH)
            held.write_mark(last, sync=True)
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


class _WriterLocks:
    """A trail's writer locks, in the one order every writer takes them: the object's thread
    lock, the advisory lock of all writers, the head file's lock (if the trail has a head)."""

    def __init__(self, trail: PostgresAuditTrail, conn, *, create: bool = False):
        self._trail, self._conn, self._create = trail, conn, create
        self._head_lock = None

    def __enter__(self) -> HeldHead | None:
        self._trail._lock.acquire()
        try:
            _query(self._conn, f"SELECT pg_advisory_lock({AUDIT_LOCKS}, 0)")
            head = self._trail._head
            if head is None and self._create:
                head = HeadFile(self._trail.head_path, durable=self._trail.durable)
            self._head_lock = nullcontext() if head is None else head.locked(create=self._create)
            return self._head_lock.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info) -> None:
        try:
            if self._head_lock is not None:
                self._head_lock.__exit__(*exc_info)
            if not self._conn.closed:
                _query(self._conn, f"SELECT pg_advisory_unlock({AUDIT_LOCKS}, 0)")
        finally:
            self._trail._lock.release()


def _insert(conn, stored: dict, where: str) -> None:
    """INSERT the row and see it stored as written (a trigger or rule could drop or change it)."""
    import psycopg
    from psycopg.rows import tuple_row

    values = [stored[name] for name in COLUMNS]
    cursor = psycopg.ClientCursor(conn, row_factory=tuple_row)
    back = cursor.execute(_INSERT_RETURNING_SQL, values).fetchall()
    if [list(found) for found in back] != [values]:
        problems = guard_problems(conn) or ["no problem found in the guard"]
        raise AuditSchemaError(
            f"{where}: row {stored['seq']} was not stored as written, though the server took "
            f"the INSERT (something drops or changes rows): {'; '.join(problems)}. Nothing "
            f"was written. {_DAMAGED_ADVICE}")


def _verify(conn, head, head_path: Path | None = None) -> VerifyResult:
    """One snapshot, taken while the head file is read (under its shared lock): the guard,
    then the chain, then its end against the head."""
    use_file = head is None and head_path is not None
    with conn.transaction():
        _query(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with HeadFile(head_path).locked(shared=True) if use_file else nullcontext() as held:
            _query(conn, "SELECT 1")  # the transaction's snapshot, taken now
            if held is not None:
                held.load()
        problems = guard_problems(conn)
        if problems and "missing" in problems[0]:
            return VerifyResult(False, 0, None, "; ".join(problems), tuple(problems))
        end = read_end(held, _last_link(conn)) if held is not None else EndCheck(head)
        result = end.applied_to(_verify_chain(conn, end.end, end.in_flight))
    return result.with_schema_problems(problems)


def _verify_chain(conn, head, in_flight: dict | None = None) -> VerifyResult:
    """The chain checked by the server (links, hashes, rules); the rows are checked again in
    Python (``verify_rows``, the definition) only when the server finds a problem."""
    if (_query(conn, _BROKEN_LINK_SQL).fetchone()[0] is None
            and _query(conn, _BAD_ROWS_SQL).fetchone() is None):
        walk = ChainWalk()
        last = _last_link(conn)
        if last is not None:
            walk.passed(*last)
        return walk.finish(head, in_flight)
    rows = [dict(zip(COLUMNS, row, strict=True))
            for row in _query(conn, SELECT_ROWS_SQL).fetchall()]
    return verify_rows(rows, head, in_flight)


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

