"""An append-only, tamper-evident audit trail for agent actions, kept in SQLite.

Each action is written twice: a ``proposed`` row when the agent asks, and a ``resolved`` row when
a person (or a rule, or a timeout) decides and the action runs or not. Rows are never changed.

Three layers stop or reveal tampering:

1. The database refuses edits: a STRICT table with CHECKs, and triggers that abort UPDATE and
   DELETE from any connection.
2. The writer's own connection refuses UPDATE, DELETE, DROP, ALTER, trigger changes and
   schema-changing PRAGMAs (``set_authorizer``), so agent code holding it cannot undo layer 1.
3. Every row carries ``row_hash = sha256(prev_hash + canonical_json(row))``. ``verify()`` finds
   the first row that was edited, deleted, swapped or forged, even by someone who bypassed 1 and 2.
   Deleting the newest rows is only caught against a head ``(seq, row_hash)`` kept elsewhere.

Readers use ``open_readonly``; ``hitl_kit.audit_queries`` reads the trail into pandas. Usage::

    with AuditTrail("audit.db", head_path="audit.head.json") as trail:
        trail.append({"event_key": "t1:call_1:proposed", "session_id": "t1",
                      "action_type": "send_email", "parameters": {"to": "ana@example.com"},
                      "reversibility_class": "irreversible_low", "event": "proposed",
                      "proposed_at": datetime.now(timezone.utc)})
        assert trail.verify().ok
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REVERSIBILITY_CLASSES = (
    "fully_reversible",
    "partially_reversible",
    "irreversible_low",
    "irreversible_high",
    "unclassified",
)
EVENTS = ("proposed", "resolved")
DECISIONS = ("approved", "rejected", "timed-out", "auto-approved")
OUTCOMES = ("success", "error", "rollback", "not_executed")

GENESIS_HASH = "0" * 64  # prev_hash of the first row
BUSY_TIMEOUT_S = 30  # how long a writer waits for another writer's lock

# Column order of the table; the hash covers every column except row_hash.
COLUMNS = (
    "seq", "event_key", "recorded_at", "session_id", "action_type", "parameters",
    "reversibility_class", "event", "approver_id", "decision", "outcome", "reason",
    "proposed_at", "executed_at", "prev_hash", "row_hash",
)  # fmt: skip
SELECT_ROWS_SQL = f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq"
TIMESTAMP_FIELDS = ("recorded_at", "proposed_at", "executed_at")
TEXT_FIELDS = (
    "event_key", "session_id", "action_type", "reversibility_class", "event",
    "approver_id", "decision", "outcome", "reason",
)  # fmt: skip
REQUIRED_FIELDS = (
    "event_key", "session_id", "action_type", "reversibility_class", "event", "proposed_at",
)  # fmt: skip
INPUT_FIELDS = (*TEXT_FIELDS, *TIMESTAMP_FIELDS, "parameters")
RESOLUTION_FIELDS = ("approver_id", "decision", "outcome", "executed_at")


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# Same shape as datetime.isoformat(timespec="microseconds") in UTC: fixed width, so text order
# is time order.
_UTC_ISO_LIKE = "____-__-__T__:__:__.______+00:00"
_UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")

TABLE_SQL = f"""
CREATE TABLE audit_log (
    seq                 INTEGER PRIMARY KEY,
    event_key           TEXT NOT NULL UNIQUE,
    recorded_at         TEXT NOT NULL CHECK (recorded_at LIKE '{_UTC_ISO_LIKE}'),
    session_id          TEXT NOT NULL,
    action_type         TEXT NOT NULL,
    parameters          TEXT NOT NULL CHECK (json_valid(parameters)),
    reversibility_class TEXT NOT NULL CHECK (reversibility_class IN {_sql_list(REVERSIBILITY_CLASSES)}),
    event               TEXT NOT NULL CHECK (event IN {_sql_list(EVENTS)}),
    approver_id         TEXT,
    decision            TEXT CHECK (decision IN {_sql_list(DECISIONS)}),
    outcome             TEXT CHECK (outcome IN {_sql_list(OUTCOMES)}),
    reason              TEXT,
    proposed_at         TEXT NOT NULL CHECK (proposed_at LIKE '{_UTC_ISO_LIKE}'),
    executed_at         TEXT CHECK (executed_at LIKE '{_UTC_ISO_LIKE}'),
    prev_hash           TEXT NOT NULL CHECK (length(prev_hash) = 64),
    row_hash            TEXT NOT NULL CHECK (length(row_hash) = 64),
    CHECK (event = 'resolved' OR (approver_id IS NULL AND decision IS NULL
                                  AND outcome IS NULL AND executed_at IS NULL)),
    CHECK (event = 'proposed' OR (approver_id IS NOT NULL AND decision IS NOT NULL
                                  AND outcome IS NOT NULL)),
    CHECK ((decision = 'auto-approved') = (approver_id = 'auto')),
    CHECK ((decision = 'timed-out') = (approver_id = 'system')),
    CHECK (decision NOT IN ('rejected', 'timed-out') OR outcome = 'not_executed'),
    CHECK ((outcome = 'not_executed') = (executed_at IS NULL))
) STRICT
""".strip()  # noqa: E501

TRIGGER_SQL = {
    "audit_log_no_update": "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log\n"
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be updated'); END",
    "audit_log_no_delete": "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log\n"
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted'); END",
}
SCHEMA_SQL = {"audit_log": TABLE_SQL, **TRIGGER_SQL}


class AuditSchemaError(RuntimeError):
    """The database's audit table or its guards are not what this module created."""


class AuditConflictError(ValueError):
    """An event_key is already in the trail with different content."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``rows_checked`` counts rows found good before the first problem."""

    ok: bool
    rows_checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    def __bool__(self) -> bool:
        return self.ok


# --- hashing -------------------------------------------------------------------------------------


# Built once: json.dumps() with options builds a new encoder per call, which verify() would pay
# for on every row.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value) -> str:
    """One fixed JSON text per value: sorted keys, no spaces, real UTF-8 characters."""
    return _CANONICAL.encode(value)


def compute_row_hash(row: Mapping) -> str:
    """sha256 of prev_hash + canonical JSON of every column except row_hash."""
    content = {name: row[name] for name in COLUMNS if name != "row_hash"}
    text = row["prev_hash"] + canonical_json(content)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The same canonical JSON, written by SQLite while it reads the rows (keys in sorted order, no
# spaces): verify() hashes 100,000 rows in a fraction of the time. compute_row_hash stays the
# definition: a row whose SQLite text does not hash right is checked again with it.
_CANONICAL_SQL = "json_object(" + ", ".join(
    f"'{name}', {name}" for name in sorted(COLUMNS) if name != "row_hash") + ")"
VERIFY_ROWS_SQL = (f"SELECT {', '.join(COLUMNS)}, {_CANONICAL_SQL} AS canonical "
                   "FROM audit_log ORDER BY seq")


# --- cleaning input: secrets and control characters ----------------------------------------------

# Key names are lower-cased and stripped of "_", "-", " " before matching, so "X-Api-Key",
# "api_key" and "apiKey" all become "xapikey"/"apikey". Errs on the side of redacting.
_SECRET_KEY_PARTS = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "authorization",
    "credential", "privatekey", "cookie", "dsn", "connectionstring", "connstr", "databaseurl",
)  # fmt: skip
_SECRET_KEYS = ("pwd", "pass", "auth")
_SECRET_VALUE = re.compile(
    r"[a-z][a-z0-9+.\-]*://[^\s/:@]*:[^\s/@]+@"  # URL with user:password@
    r"|\b(password|pwd)\s*="  # key=value connection strings
    r"|^\s*(bearer|basic)\s+\S",  # Authorization header values
    re.IGNORECASE,
)
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_controls(text: str) -> str:
    """Make CR, LF and other control characters visible, so a value can't fake a new log line."""
    return _CONTROL_CHARS.sub(
        lambda match: _NAMED_ESCAPES.get(match.group(), f"\\u{ord(match.group()):04x}"), text
    )


def _is_secret_key(key) -> bool:
    if not isinstance(key, str):
        return False
    squashed = re.sub(r"[^a-z0-9]", "", key.lower())
    return squashed in _SECRET_KEYS or any(part in squashed for part in _SECRET_KEY_PARTS)


def _redacted(value) -> str:
    # The short hash lets an auditor see "same secret as before" without storing it. It is
    # unsalted, so a weak password could still be guessed from it: it is evidence, not a vault.
    raw = value if isinstance(value, str) else canonical_json(value)
    return f"[REDACTED sha256:{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:12]}]"


def sanitize(value):
    """Copy of tool arguments with secrets redacted and control characters escaped.

    Values under secret-looking keys (password, token, api_key, Authorization, dsn...) and
    strings that look like credentials (``postgres://user:pass@host``) become
    ``"[REDACTED sha256:<12 hex>]"``, at any depth of dicts and lists.
    """
    if isinstance(value, Mapping):
        return {
            (_escape_controls(key) if isinstance(key, str) else key): (
                _redacted(item) if _is_secret_key(key) else sanitize(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [sanitize(item) for item in value]
    if isinstance(value, str):
        return _redacted(value) if _SECRET_VALUE.search(value) else _escape_controls(value)
    return value


# --- validating input ----------------------------------------------------------------------------


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_utc_iso(field: str, value) -> str | None:
    """Tz-aware datetime or ISO 8601 string with offset -> fixed-width UTC ISO text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{field}: {value!r} is not an ISO 8601 timestamp; "
                "use e.g. '2026-11-26T21:30:00+00:00'"
            ) from None
    if not isinstance(value, datetime):
        raise ValueError(
            f"{field} must be a timezone-aware datetime or an ISO 8601 string, "
            f"not {type(value).__name__}"
        )
    if value.utcoffset() is None:
        raise ValueError(
            f"{field} has no timezone ({value.isoformat()}); "
            "use datetime.now(timezone.utc) or add an offset such as +00:00"
        )
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _check_choice(row: Mapping, field: str, allowed: tuple[str, ...]) -> None:
    if row[field] not in allowed:
        raise ValueError(f"{field} is {row[field]!r}; use one of {', '.join(allowed)}")


def _check_rules(row: Mapping, parameters_checked: bool = False) -> None:
    """Raise ValueError if a row breaks a rule. Mirrors the table's CHECKs: verify() re-runs it
    on stored rows because ``PRAGMA ignore_check_constraints=1`` lets bad rows past SQLite.
    ``parameters_checked``: the caller already knows parameters is valid JSON."""
    _check_choice(row, "reversibility_class", REVERSIBILITY_CLASSES)
    _check_choice(row, "event", EVENTS)
    for field in TIMESTAMP_FIELDS:
        if row[field] is not None and not _UTC_ISO.fullmatch(row[field]):
            raise ValueError(f"{field} is {row[field]!r}, not UTC ISO 8601 text")
    if not parameters_checked:
        try:
            json.loads(row["parameters"])
        except (TypeError, ValueError):
            raise ValueError("parameters is not valid JSON text") from None
    if row["event"] == "proposed":
        filled = [field for field in RESOLUTION_FIELDS if row[field] is not None]
        if filled:
            raise ValueError(
                f"a 'proposed' row must not have {', '.join(filled)}; "
                "write the decision in a separate 'resolved' row"
            )
        return
    _check_choice(row, "decision", DECISIONS)
    _check_choice(row, "outcome", OUTCOMES)
    if row["approver_id"] is None:
        raise ValueError(
            "approver_id is required on a 'resolved' row: the user's id, "
            "'auto' for an automatic approval or 'system' for a timeout"
        )
    if (row["decision"] == "auto-approved") != (row["approver_id"] == "auto"):
        raise ValueError("decision 'auto-approved' goes with approver_id 'auto', and only it")
    if (row["decision"] == "timed-out") != (row["approver_id"] == "system"):
        raise ValueError("decision 'timed-out' goes with approver_id 'system', and only it")
    if row["decision"] in ("rejected", "timed-out") and row["outcome"] != "not_executed":
        raise ValueError(f"a {row['decision']} action was not run: outcome must be 'not_executed'")
    if (row["outcome"] == "not_executed") != (row["executed_at"] is None):
        raise ValueError("executed_at is required when the action ran, and must be None if not")


def _parameters_json(parameters) -> str:
    if not isinstance(parameters, Mapping):
        raise ValueError(
            f"parameters must be a dict of tool arguments, not {type(parameters).__name__}"
        )
    try:
        return canonical_json(sanitize(parameters))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"parameters are not JSON-serialisable ({exc}); convert such values to "
            "str, int, float, bool, None, list or dict before appending"
        ) from None


def _normalize(entry: Mapping) -> dict:
    """Validate a caller's entry and turn it into the stored form (without seq and hashes)."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"entry must be a dict, not {type(entry).__name__}")
    unknown = sorted(set(entry) - set(INPUT_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(INPUT_FIELDS)} "
            "(seq, prev_hash and row_hash are set by the trail)"
        )
    missing = [field for field in REQUIRED_FIELDS if entry.get(field) in (None, "")]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    row = {}
    for field in TEXT_FIELDS:
        value = entry.get(field)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{field} must be a string, not {type(value).__name__}")
        row[field] = None if value is None else _escape_controls(value)
    for field in TIMESTAMP_FIELDS:
        row[field] = to_utc_iso(field, entry.get(field))
    row["parameters"] = _parameters_json(entry.get("parameters", {}))  # valid JSON by making
    _check_rules({**row, "recorded_at": row["recorded_at"] or _utc_now_iso()},
                 parameters_checked=True)
    return row


# --- the writer ----------------------------------------------------------------------------------

_DENIED_ACTIONS = {
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_CREATE_TRIGGER,
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
    sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_TRIGGER,
    sqlite3.SQLITE_DROP_TEMP_VIEW,
    sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_VIEW,
    sqlite3.SQLITE_DROP_VTABLE,
}
_DENIED_PRAGMAS = {"writable_schema", "ignore_check_constraints"}


def _deny_tampering(action, arg1, arg2, db_name, trigger_name):
    """sqlite3 authorizer for the writer: INSERT and SELECT pass, changes to history do not."""
    if action in _DENIED_ACTIONS:
        return sqlite3.SQLITE_DENY
    # A PRAGMA with an argument sets something (journal_mode=DELETE, foreign_keys=0...).
    if action == sqlite3.SQLITE_PRAGMA and (arg2 is not None or arg1.lower() in _DENIED_PRAGMAS):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _squash(sql: str) -> str:
    return " ".join(sql.split())


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    found = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master "
            "WHERE tbl_name = 'audit_log' AND type IN ('table', 'trigger')"
        ).fetchall()
    )
    advice = (
        "Do not append to this file: keep it as evidence, check it with "
        "verify_file(path), and start a new trail in a new file."
    )
    for name, expected in SCHEMA_SQL.items():
        if name not in found:
            raise AuditSchemaError(
                f"{path}: {name} is missing, so rows may have been edited or deleted. {advice}"
            )
        if _squash(found[name]) != _squash(expected):
            raise AuditSchemaError(f"{path}: {name} is not the expected definition. {advice}")
    extra = sorted(set(found) - set(SCHEMA_SQL))
    if extra:
        raise AuditSchemaError(f"{path}: unexpected trigger(s) {', '.join(extra)}. {advice}")


def _write_head(head_path: Path, seq: int, row_hash: str, *, durable: bool) -> None:
    """Replace the head file atomically: readers see the old head or the new one, never half."""
    fd, temp_name = tempfile.mkstemp(dir=head_path.parent, prefix=head_path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(json.dumps({"seq": seq, "row_hash": row_hash}) + "\n")
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp_name, head_path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def read_head(head_path: str | os.PathLike) -> tuple[int, str] | None:
    """The (seq, row_hash) saved in a head file, or None if there is no file."""
    try:
        saved = json.loads(Path(head_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return saved["seq"], saved["row_hash"]


class AuditTrail:
    """Append-only audit trail in a SQLite file, safe to share between threads and processes.

    ``head_path``: optional file where each append records the newest (seq, row_hash); keep a
    copy where the agent cannot write, and ``verify`` will notice rows cut from the end.
    All writers of one database should use the same head_path.

    ``durable``: True waits for the disk on every append (``synchronous=FULL``, fsync of the
    head file), a few ms each. False (``synchronous=NORMAL``) is many times faster and never
    corrupts the file, but a power cut can lose the last appends: fine for tests and demos.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        head_path: str | os.PathLike | None = None,
        durable: bool = True,
    ):
        if sqlite3.sqlite_version_info < (3, 37):
            raise RuntimeError(f"STRICT tables need SQLite 3.37+, found {sqlite3.sqlite_version}")
        if os.fspath(path) in ("", ":memory:"):
            raise ValueError(
                "AuditTrail needs a file path: an in-memory database vanishes with its "
                "connection and read-only readers cannot open it; use e.g. 'audit.db'"
            )
        self.path = Path(path)
        self.head_path = None if head_path is None else Path(head_path)
        self.durable = durable
        self._lock = threading.Lock()  # one transaction at a time on this shared connection
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. timeout = SQLite busy timeout.
        self._conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.row_factory = sqlite3.Row
            # The only PRAGMAs that take an argument; the authorizer refuses them afterwards.
            self._conn.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            # Without this, INSERT OR REPLACE deletes the old row without firing the delete trigger.
            self._conn.execute("PRAGMA recursive_triggers=ON")
            self._create_schema_if_new()
            _check_schema(self._conn, self.path)
            self._conn.set_authorizer(_deny_tampering)
        except BaseException:
            self._conn.close()
            raise

    def _create_schema_if_new(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")  # two trails opening a new file: one creates
        try:
            exists = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'"
            ).fetchone()
            if not exists:
                for sql in SCHEMA_SQL.values():
                    self._conn.execute(sql)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The guarded writer connection, for trying what it refuses. Use append() to write."""
        return self._conn

    def append(self, entry: Mapping) -> dict:
        """Write one event and return the stored row.

        Idempotent on ``event_key``: the same key with the same content returns the existing row
        (recorded_at excepted); the same key with different content raises AuditConflictError.
        Invalid input raises ValueError and writes nothing.
        """
        row = _normalize(entry)
        with self._lock:
            # IMMEDIATE takes the write lock before we read the last hash, so no other writer can
            # add a row between our read and our insert: the chain stays one line.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                existing = self._conn.execute(
                    "SELECT * FROM audit_log WHERE event_key = ?", (row["event_key"],)
                ).fetchone()
                if existing is not None:
                    self._conn.execute("ROLLBACK")
                    return _same_or_conflict(dict(existing), row)
                last = _last_link(self._conn)
                seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
                row.update(seq=seq, prev_hash=prev_hash)
                row["recorded_at"] = row["recorded_at"] or _utc_now_iso()
                row["row_hash"] = compute_row_hash(row)
                self._conn.execute(
                    f"INSERT INTO audit_log ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                    [row[name] for name in COLUMNS],
                )
                # Written while we hold the lock so several writers update it in chain order.
                # If COMMIT then fails, the head is one row ahead and verify() says so: a false
                # alarm is better than a silent gap.
                if self.head_path is not None:
                    _write_head(self.head_path, seq, row["row_hash"], durable=self.durable)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return {name: row[name] for name in COLUMNS}

    def verify(self, head: tuple[int, str] | None = None) -> VerifyResult:
        """Check the whole chain; with a head (default: the head file, if any) also its end."""
        with self._lock:
            # A write transaction so no append lands between reading the rows and the head file.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if head is None and self.head_path is not None:
                    head = read_head(self.head_path)
                return _verify(self._conn, head)
            finally:
                self._conn.execute("COMMIT")

    def head(self) -> tuple[int, str] | None:
        """(seq, row_hash) of the newest row, or None for an empty trail."""
        with self._lock:
            return _last_link(self._conn)

    def rows(self) -> list[dict]:
        """All rows in seq order, as stored (parameters is JSON text)."""
        with self._lock:
            return [dict(row) for row in _select_rows(self._conn)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _same_or_conflict(existing: dict, row: dict) -> dict:
    differing = [
        name for name in INPUT_FIELDS if name != "recorded_at" and existing[name] != row[name]
    ]
    if differing:
        raise AuditConflictError(
            f"event_key {row['event_key']!r} is already row {existing['seq']} with different "
            f"{', '.join(differing)}. One key names one event: record a new event under a "
            "new key (e.g. '...:resolved'), never a changed copy of an old one."
        )
    return existing


def _select_rows(conn: sqlite3.Connection) -> list:
    return conn.execute(SELECT_ROWS_SQL).fetchall()


def _verify(conn: sqlite3.Connection, head: tuple[int, str] | None) -> VerifyResult:
    return _verify_rows(conn.execute(VERIFY_ROWS_SQL).fetchall(), head, _rows_with_bad_json(conn))


def _rows_with_bad_json(conn: sqlite3.Connection) -> set[int]:
    """Rows whose parameters are not JSON (SQLite checks them far faster than json.loads)."""
    return {seq for (seq,) in conn.execute(
        "SELECT seq FROM audit_log WHERE NOT json_valid(parameters)")}


def _last_link(conn: sqlite3.Connection) -> tuple[int, str] | None:
    last = conn.execute("SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return None if last is None else (last[0], last[1])


def _verify_rows(rows, head: tuple[int, str] | None, bad_json: set[int]) -> VerifyResult:
    def broken(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(ok=False, rows_checked=checked, first_bad_seq=seq, problem=problem)

    checked, expected_seq, expected_prev = 0, 1, GENESIS_HASH
    for row in rows:
        seq = row["seq"]
        if seq > expected_seq:
            return broken(expected_seq, f"row {expected_seq} is missing (next row is {seq})")
        if seq < expected_seq:
            return broken(seq, f"unexpected row number {seq} (expected {expected_seq})")
        if row["prev_hash"] != expected_prev:
            return broken(
                seq,
                f"row {seq} does not link to row {seq - 1}: rows were edited, swapped, "
                "removed or inserted here",
            )
        fast = hashlib.sha256((row["prev_hash"] + row["canonical"]).encode("utf-8")).hexdigest()
        if fast != row["row_hash"] and compute_row_hash(row) != row["row_hash"]:
            return broken(seq, f"row {seq} does not match its row_hash: it was edited or forged")
        try:
            _check_rules(row, parameters_checked=seq not in bad_json)
        except ValueError as exc:
            return broken(seq, f"row {seq} breaks a rule: {exc}")
        checked, expected_seq, expected_prev = checked + 1, seq + 1, row["row_hash"]

    last_seq = expected_seq - 1
    if head is None:
        return VerifyResult(ok=True, rows_checked=checked)
    head_seq, head_hash = head
    if last_seq < head_seq:
        return broken(
            last_seq + 1,
            f"the trail ends at row {last_seq} but the head says {head_seq}: "
            f"rows {last_seq + 1}..{head_seq} were removed",
        )
    if last_seq > head_seq:
        return broken(
            head_seq + 1,
            f"rows {head_seq + 1}..{last_seq} come after the head (row {head_seq}): "
            "they were not written by the trail",
        )
    if expected_prev != head_hash:
        return broken(
            head_seq, f"row {head_seq} differs from the head: the chain was rewritten up to here"
        )
    return VerifyResult(ok=True, rows_checked=checked)


# --- readers -------------------------------------------------------------------------------------


def open_readonly(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection that can read the trail but not write to it (``mode=ro``)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no audit database at {file}")
    return sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)


def verify_file(path: str | os.PathLike, head: tuple[int, str] | None = None) -> VerifyResult:
    """verify() on a read-only connection: works on a file AuditTrail refuses to open."""
    with closing(open_readonly(path)) as conn:
        conn.row_factory = sqlite3.Row
        return _verify(conn, head)
