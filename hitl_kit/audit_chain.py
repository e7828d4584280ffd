"""What an audit row is, whatever stores it: fields, rules, hash chain, verification.

``hitl_kit.audit`` keeps rows in SQLite; a PostgreSQL store (privileges instead of triggers) can
reuse everything here: ``normalize_entry`` turns a caller's entry into a stored row (validated,
secrets redacted), ``compute_row_hash`` links it to the previous one, ``verify_rows`` checks a
chain read back in ``seq`` order, and ``ROW_RULES_SQL`` are the rules as portable SQL ``CHECK``s::

    >>> row = normalize_entry({"event_key": "t1:c1:proposed", "session_id": "t1",
    ...     "action_type": "send_email", "parameters": {"to": "ana@example.com"},
    ...     "reversibility_class": "irreversible_low", "event": "proposed",
    ...     "proposed_at": "2026-11-26T21:30:00+00:00",
    ...     "recorded_at": "2026-11-26T21:30:01+00:00"})
    >>> row.update(seq=1, prev_hash=GENESIS_HASH)
    >>> row["row_hash"] = compute_row_hash(row)
    >>> verify_rows([row]).ok
    True

Limits: verification proves that rows were not changed *after* they were chained; rows cut
from the end are only noticed against a head ``(seq, row_hash)`` kept somewhere else.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring

from hitl_kit.contract import ApprovalRequest, Decision, key_text
from hitl_kit.redaction import clean_text, sanitize
from hitl_kit.vocabulary import (
    UNCLASSIFIED,
    Approver,
    Channel,
    Event,
    Execution,
    Kind,
    Reversibility,
    Verdict,
)

SCHEMA_VERSION = 2  # bumped when the columns, the rules or the hash change

REVERSIBILITY_CLASSES = (*(member.value for member in Reversibility), UNCLASSIFIED)
EVENTS = tuple(member.value for member in Event)
CHANNELS = tuple(member.value for member in Channel)
DECISIONS = tuple(member.value for member in Verdict)
OUTCOMES = tuple(member.value for member in Execution)
MACHINE_APPROVERS = (Approver.AUTO.value, Approver.SYSTEM.value)
MACHINE_CHANNELS = (Channel.TIMER.value, Channel.POLICY.value)
CHOICES = {
    "reversibility_class": REVERSIBILITY_CLASSES, "event": EVENTS, "channel": CHANNELS,
    "decision": DECISIONS, "outcome": OUTCOMES,
}  # fmt: skip

GENESIS_HASH = "0" * 64  # prev_hash of the first row

# Column order of the table; the hash covers every column except row_hash.
COLUMNS = (
    "seq", "event_key", "recorded_at", "session_id", "action_type", "parameters",
    "reversibility_class", "event", "channel", "approver_id", "approver_role", "decision",
    "outcome", "reason", "details", "proposed_at", "executed_at", "prev_hash", "row_hash",
)  # fmt: skip
TIMESTAMP_FIELDS = ("recorded_at", "proposed_at", "executed_at")
FREE_TEXT_FIELDS = ("event_key", "session_id", "action_type", "approver_id", "approver_role",
                    "reason")  # redacted and escaped like parameters
JSON_FIELDS = ("parameters", "details")  # dicts in, canonical JSON text stored
REQUIRED_FIELDS = ("event_key", "session_id", "action_type", "reversibility_class", "event",
                   "proposed_at")
INPUT_FIELDS = (*FREE_TEXT_FIELDS, *CHOICES, *TIMESTAMP_FIELDS, *JSON_FIELDS)
_INPUT_SET = frozenset(INPUT_FIELDS)


class AuditIntegrityError(RuntimeError):
    """The trail cannot be trusted as it is; nothing was written."""


class AuditSchemaError(AuditIntegrityError):
    """The database's audit tables or their guards are not what this module created."""


class AuditHeadError(AuditIntegrityError):
    """The head kept outside the database does not match the trail's newest row."""


class AuditConflictError(ValueError):
    """An event_key is already in the trail with different content."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verification. ``rows_checked`` counts rows found good before the first bad
    one (``first_bad_seq``); ``schema_problems`` lists guards missing or changed; ``problem``
    says everything that is wrong in words. ``in_flight``: the seq of a row the head holds and
    the database does not yet (an append under way, or one its writer did not finish: checked
    like the others, and written into the trail by the next writer; ``hitl_kit.audit_head``)."""

    ok: bool
    rows_checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    schema_problems: tuple[str, ...] = ()
    in_flight: int | None = None

    def __bool__(self) -> bool:
        return self.ok

    def with_schema_problems(self, problems) -> VerifyResult:
        if not problems:
            return self
        text = "; ".join(problems)
        return VerifyResult(False, self.rows_checked, self.first_bad_seq,
                            f"{self.problem}; {text}" if self.problem else text, tuple(problems),
                            self.in_flight)


# --- canonical JSON and the hash -----------------------------------------------------------------

# Built once: json.dumps() with options builds a new encoder per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value) -> str:
    """One fixed JSON text per value: sorted keys, no spaces, real UTF-8 characters."""
    return _CANONICAL.encode(value)


HASHED_COLUMNS = tuple(sorted(name for name in COLUMNS if name != "row_hash"))
_KEY_PREFIXES = tuple(encode_basestring(name) + ":" for name in HASHED_COLUMNS)


def canonical_row(row) -> str:
    """``canonical_json`` of the hashed columns, built directly (no dict): the same text,
    several times faster. ``row`` maps column names to str, int or None."""
    parts = []
    for prefix, name in zip(_KEY_PREFIXES, HASHED_COLUMNS, strict=True):
        value = row[name]
        if value is None:
            parts.append(prefix + "null")
        elif type(value) is str:
            parts.append(prefix + encode_basestring(value))
        elif type(value) is int:
            parts.append(prefix + int.__repr__(value))
        else:  # anything else (a tampered row): the general encoder decides
            parts.append(prefix + canonical_json(value))
    return "{" + ",".join(parts) + "}"


def compute_row_hash(row) -> str:
    """sha256 of prev_hash + canonical JSON of every column except row_hash."""
    return _hash_of(row["prev_hash"], canonical_row(row))


def _hash_of(prev_hash, canonical: str) -> str:
    text = (prev_hash if isinstance(prev_hash, str) else "") + canonical
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def chain_row(row: Mapping, last: tuple[int, str] | None) -> tuple[dict, str]:
    """``row`` (as ``normalize_entry`` made it) as the next row after ``last``, the trail's
    newest ``(seq, row_hash)``: numbered, linked, stamped (``recorded_at``, if it has none) and
    hashed, with its columns in ``COLUMNS`` order; and its ``canonical_row`` text."""
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    chained = {**row, "seq": seq, "prev_hash": prev_hash,
               "recorded_at": row["recorded_at"] or utc_now_iso()}
    canonical = canonical_row(chained)
    chained["row_hash"] = _hash_of(prev_hash, canonical)
    return {name: chained[name] for name in COLUMNS}, canonical


# --- rules ---------------------------------------------------------------------------------------

def one_of(column: str, values) -> str:
    """SQL for "column is one of values", written as ``(c = 'a' OR c = 'b' ...)``: SQLite builds
    a temporary index for an ``IN`` list of more than two constants on every row it inserts,
    which cost about 2 us a list. NULL gives NULL either way (a CHECK passes it)."""
    return "(" + " OR ".join(f"{column} = '{value}'" for value in values) + ")"

# The rules that tie fields together, as SQL that SQLite and PostgreSQL both run; a NULL result
# passes, as in a CHECK. check_rules() is the same list in Python, in the same order (a test
# compares them on generated rows).
ROW_RULES_SQL = (
    "event <> 'proposed' OR (channel IS NULL AND approver_id IS NULL AND approver_role IS NULL"
    " AND decision IS NULL AND outcome IS NULL AND executed_at IS NULL)",
    "event <> 'decided' OR (channel IS NOT NULL AND approver_id IS NOT NULL"
    " AND decision IS NOT NULL AND decision = 'approved' AND outcome IS NULL"
    " AND executed_at IS NULL)",
    "event <> 'refused' OR (channel IS NOT NULL AND approver_id IS NOT NULL AND reason IS NOT NULL"
    " AND decision IS NULL AND outcome IS NULL AND executed_at IS NULL)",
    "event <> 'resolved' OR (channel IS NOT NULL AND approver_id IS NOT NULL"
    " AND decision IS NOT NULL AND outcome IS NOT NULL)",
    "(decision = 'auto-approved') = (approver_id = 'auto')",
    "(decision = 'timed-out') = (approver_id = 'system')",
    "decision <> 'timed-out' OR channel = 'timer'",
    f"{one_of('channel', MACHINE_CHANNELS)} = {one_of('approver_id', MACHINE_APPROVERS)}",
    f"NOT {one_of('event', ('decided', 'refused'))}"
    f" OR NOT {one_of('approver_id', MACHINE_APPROVERS)}",
    f"NOT {one_of('decision', ('rejected', 'timed-out'))} OR outcome = 'not_executed'",
    "event <> 'resolved' OR ((outcome = 'not_executed') = (executed_at IS NULL))",
)


# The shape of datetime.isoformat(timespec="microseconds") in UTC: fixed width, so text order is
# time order. (LIKE checks the shape; a GLOB of digits costs three times as much on every insert,
# and append writes only what to_utc_iso made.)
UTC_LIKE = "____-__-__T__:__:__.______+00:00"


def column_definitions(*, integer: str, like: str, json_object) -> tuple[tuple, ...]:
    """The trail's columns, once for every engine: (name, type, CHECK on the column alone or
    None), in the engine's words: ``integer`` the type of ``seq``, ``like`` the operator that
    checks a timestamp's shape, ``json_object(column, nullable)`` the check of a JSON object."""
    def stamp(column: str) -> str:
        return f"{column} {like} '{UTC_LIKE}'"

    def digest(column: str) -> str:  # a GLOB for hex digits costs ~3 us a row: verify rehashes
        return f"length({column}) = 64"

    return (
        ("seq", f"{integer} PRIMARY KEY", None),
        ("event_key", "TEXT NOT NULL UNIQUE", "event_key <> ''"),
        ("recorded_at", "TEXT NOT NULL", stamp("recorded_at")),
        ("session_id", "TEXT NOT NULL", "session_id <> ''"),
        ("action_type", "TEXT NOT NULL", "action_type <> ''"),
        ("parameters", "TEXT NOT NULL", json_object("parameters", False)),
        ("reversibility_class", "TEXT NOT NULL",
         one_of("reversibility_class", REVERSIBILITY_CLASSES)),
        ("event", "TEXT NOT NULL", one_of("event", EVENTS)),
        ("channel", "TEXT", one_of("channel", CHANNELS)),
        ("approver_id", "TEXT", "approver_id <> ''"),
        ("approver_role", "TEXT", "approver_role <> ''"),
        ("decision", "TEXT", one_of("decision", DECISIONS)),
        ("outcome", "TEXT", one_of("outcome", OUTCOMES)),
        ("reason", "TEXT", None),
        ("details", "TEXT", json_object("details", True)),
        ("proposed_at", "TEXT NOT NULL", stamp("proposed_at")),
        ("executed_at", "TEXT", stamp("executed_at")),
        ("prev_hash", "TEXT NOT NULL", digest("prev_hash")),
        ("row_hash", "TEXT NOT NULL", digest("row_hash")),
    )

# What the table's CHECKs accept, the same in Python: the shape of UTC ISO text (SQL LIKE: "_" is
# any character, letters match either case) and hashes of 64 characters.
_UTC_LIKE = re.compile(r".{4}-.{2}-.{2}[Tt].{2}:.{2}:.{2}\..{6}\+00:00", re.DOTALL)
_NOT_NULL = ("event_key", "recorded_at", "session_id", "action_type", "parameters",
             "reversibility_class", "event", "proposed_at", "prev_hash", "row_hash")


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _is_json_object(text) -> bool:
    if not isinstance(text, str) or not text.startswith("{"):
        return False
    try:
        return isinstance(json.loads(text, parse_constant=_reject_constant), dict)
    except (ValueError, RecursionError):
        return False


def _filled(row: Mapping, fields) -> list[str]:
    return [field for field in fields if row[field] is not None]


def check_columns(row: Mapping) -> None:
    """Raise ValueError if one column holds a value it may not (types, choices, formats)."""
    for field in _NOT_NULL:
        if row[field] is None:
            raise ValueError(f"{field} is required")
    for field in ("event_key", "session_id", "action_type", "approver_id", "approver_role",
                  "reason"):
        value = row[field]
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{field} must be text, not {type(value).__name__}")
        if value == "" and field != "reason":
            raise ValueError(f"{field} is empty; omit it or give a value")
    for field, allowed in CHOICES.items():
        if row[field] is not None and row[field] not in allowed:
            raise ValueError(f"{field} is {row[field]!r}; use one of {', '.join(allowed)}")
    for field in TIMESTAMP_FIELDS:
        value = row[field]
        if value is not None and not (isinstance(value, str) and _UTC_LIKE.fullmatch(value)):
            raise ValueError(f"{field} is {value!r}, not UTC ISO 8601 text "
                             "('2026-11-26T21:30:00.000000+00:00')")
    if not _is_json_object(row["parameters"]):
        raise ValueError("parameters is not the JSON text of an object")
    if row["details"] is not None and not _is_json_object(row["details"]):
        raise ValueError("details is not the JSON text of an object")
    for field in ("prev_hash", "row_hash"):
        if not (isinstance(row[field], str) and len(row[field]) == 64):
            raise ValueError(f"{field} is not 64 characters long (a sha256 in hex)")


def check_rules(row: Mapping) -> None:
    """Raise ValueError if a row breaks a rule that ties its fields together (ROW_RULES_SQL)."""
    event, decision, approver = row["event"], row["decision"], row["approver_id"]
    channel = row["channel"]
    if event == Event.PROPOSED:
        filled = _filled(row, ("channel", "approver_id", "approver_role", "decision", "outcome",
                               "executed_at"))
        if filled:
            raise ValueError(f"a 'proposed' row must not have {', '.join(filled)}; write the "
                             "decision in a separate 'decided', 'refused' or 'resolved' row")
    elif event == Event.DECIDED:
        missing = [f for f in ("channel", "approver_id") if row[f] is None]
        if missing:
            raise ValueError(f"{' and '.join(missing)} required on a 'decided' row: who approved, "
                             f"and where from ({', '.join(CHANNELS)})")
        if decision != Verdict.APPROVED:
            raise ValueError("a 'decided' row records one approval of several: decision must be "
                             "'approved' (a rejection ends the request: write it as 'resolved')")
        if _filled(row, ("outcome", "executed_at")):
            raise ValueError("a 'decided' row must not have outcome or executed_at: nothing ran "
                             "yet")
    elif event == Event.REFUSED:
        missing = [f for f in ("channel", "approver_id", "reason") if row[f] is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} required on a 'refused' row: who tried to "
                             "decide, where from, and why they may not")
        filled = _filled(row, ("decision", "outcome", "executed_at"))
        if filled:
            raise ValueError(f"a 'refused' row must not have {', '.join(filled)}: the refused "
                             "decision did not count")
    elif event == Event.RESOLVED:
        if approver is None:
            raise ValueError("approver_id is required on a 'resolved' row: the user's id, "
                             "'auto' for an automatic approval or 'system' for a timeout")
        if channel is None:
            raise ValueError("channel is required on a 'resolved' row: where the decision came "
                             f"from, one of {', '.join(CHANNELS)}")
        missing = [f for f in ("decision", "outcome") if row[f] is None]
        if missing:
            raise ValueError(f"{' and '.join(missing)} required on a 'resolved' row")
    if decision is not None and approver is not None and (
            (decision == Verdict.AUTO_APPROVED) != (approver == Approver.AUTO)):
        raise ValueError("decision 'auto-approved' goes with approver_id 'auto', and only it")
    if decision is not None and approver is not None and (
            (decision == Verdict.TIMED_OUT) != (approver == Approver.SYSTEM)):
        raise ValueError("decision 'timed-out' goes with approver_id 'system', and only it")
    if decision == Verdict.TIMED_OUT and channel is not None and channel != Channel.TIMER:
        raise ValueError("a 'timed-out' decision comes from channel 'timer'")
    if channel is not None and approver is not None and (
            (channel in MACHINE_CHANNELS) != (approver in MACHINE_APPROVERS)):
        raise ValueError("channels 'timer' and 'policy' go with approvers 'auto' and 'system', "
                         "and people decide through the other channels")
    if event in (Event.DECIDED, Event.REFUSED) and approver in MACHINE_APPROVERS:
        raise ValueError(f"a '{event}' row names a person, not {approver!r}")
    if decision in (Verdict.REJECTED, Verdict.TIMED_OUT) and row["outcome"] is not None and (
            row["outcome"] != Execution.NOT_EXECUTED):
        raise ValueError(f"a {decision} action was not run: outcome must be 'not_executed'")
    if event == Event.RESOLVED and row["outcome"] is not None and (
            (row["outcome"] == Execution.NOT_EXECUTED) != (row["executed_at"] is None)):
        raise ValueError("executed_at is required when the action ran, and must be None if not")


def check_row(row: Mapping) -> None:
    """check_columns then check_rules: everything a stored row must satisfy."""
    check_columns(row)
    check_rules(row)


# --- turning a caller's entry into a row ---------------------------------------------------------


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_utc_iso(field: str, value) -> str | None:
    """Tz-aware datetime or ISO 8601 string with offset -> fixed-width UTC ISO text."""
    if value is None:
        return None
    if type(value) is datetime and value.tzinfo is UTC:  # the common case, made cheap
        return value.isoformat(timespec="microseconds")
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


_JSON_FIELD_HINT = {"parameters": "a dict of tool arguments",
                    "details": "a dict (a JSON object) of structured extras"}


def _json_text(field: str, value) -> str:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise ValueError(f"{field} must be {_JSON_FIELD_HINT[field]}, not {type(value).__name__}")
    try:
        cleaned = sanitize(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    try:
        return canonical_json(cleaned)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{field} are not JSON-serialisable ({exc}); convert such values to "
            "str, int, float, bool, None, list or dict before appending"
        ) from None


def normalize_entry(entry: Mapping, *, check: bool = True) -> dict:
    """Validate a caller's entry and return the stored form (without seq and hashes).

    Free text is redacted and escaped (``hitl_kit.redaction``), ``parameters`` and ``details``
    become canonical JSON, timestamps UTC ISO text, and (``check``) the row must pass
    ``check_rules``. Raises ValueError saying what is wrong. A store whose own constraints run
    the same rules may pass ``check=False`` and call ``check_rules`` when it refuses a row.
    """
    if type(entry) is not dict and not isinstance(entry, Mapping):
        raise ValueError(f"entry must be a dict, not {type(entry).__name__}")
    unknown = [field for field in entry if field not in _INPUT_SET]
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(sorted(map(str, unknown)))}; allowed: "
            f"{', '.join(INPUT_FIELDS)} (seq, prev_hash and row_hash are set by the trail)"
        )
    missing = [field for field in REQUIRED_FIELDS if entry.get(field) in (None, "")]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    row = {}
    for field in FREE_TEXT_FIELDS:
        value = entry.get(field)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{field} must be a string, not {type(value).__name__}")
            if value == "" and field != "reason":
                raise ValueError(f"{field} is empty; omit it or give a value")
            value = clean_text(str(value))
        row[field] = value
    for field, allowed in CHOICES.items():
        value = entry.get(field)
        if value is not None:
            if value not in allowed:
                raise ValueError(f"{field} is {value!r}; use one of {', '.join(allowed)}")
            value = str(value)
        row[field] = value
    row["recorded_at"] = to_utc_iso("recorded_at", entry.get("recorded_at"))
    row["proposed_at"] = to_utc_iso("proposed_at", entry.get("proposed_at"))
    row["executed_at"] = to_utc_iso("executed_at", entry.get("executed_at"))
    row["parameters"] = _json_text("parameters", entry.get("parameters", {}))
    details = entry.get("details")
    row["details"] = None if details is None else _json_text("details", details)
    if check:
        check_rules(row)
    return row


def same_or_conflict(existing: Mapping, row: Mapping) -> dict:
    """The stored row when ``row`` (normalised) is the same event; AuditConflictError if the key
    is taken by different content. Only ``recorded_at`` may differ."""
    differing = [
        name for name in INPUT_FIELDS if name != "recorded_at" and existing[name] != row[name]
    ]
    if differing:
        raise AuditConflictError(
            f"event_key {row['event_key']!r} is already row {existing['seq']} with different "
            f"{', '.join(differing)}. One key names one event: record a new event under a "
            "new key (e.g. '...:resolved'), never a changed copy of an old one."
        )
    return dict(existing)


# --- verifying a chain ---------------------------------------------------------------------------


class ChainWalk:
    """Shared bookkeeping of a verification: the next seq and prev_hash expected."""

    def __init__(self):
        self.checked, self.expected_seq, self.expected_prev = 0, 1, GENESIS_HASH

    def broken(self, seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, self.checked, seq, problem)

    def link_problem(self, seq, prev_hash) -> VerifyResult | None:
        if not isinstance(seq, int) or seq < self.expected_seq:
            return self.broken(seq, f"unexpected row number {seq!r} (expected {self.expected_seq})")
        if seq > self.expected_seq:
            return self.broken(self.expected_seq,
                               f"row {self.expected_seq} is missing (next row is {seq})")
        if prev_hash != self.expected_prev:
            return self.broken(seq, f"row {seq} does not link to row {seq - 1}: rows were edited, "
                                    "swapped, removed or inserted here")
        return None

    def hash_problem(self, seq) -> VerifyResult:
        return self.broken(seq, f"row {seq} does not match its row_hash: it was edited or forged")

    def rule_problem(self, seq, exc: ValueError) -> VerifyResult:
        return self.broken(seq, f"row {seq} breaks a rule: {exc}")

    def passed(self, seq: int, row_hash: str) -> None:
        self.checked, self.expected_seq, self.expected_prev = seq, seq + 1, row_hash

    def finish(self, head: tuple[int, str] | None, in_flight: Mapping | None = None
               ) -> VerifyResult:
        """The end of the walk: the chain must end at ``head``, after ``in_flight`` (a row the
        head holds that the database does not yet) if there is one."""
        if in_flight is not None:
            seq = in_flight["seq"]
            problem = self.link_problem(seq, in_flight["prev_hash"])
            if problem is not None:
                return problem
            if compute_row_hash(in_flight) != in_flight["row_hash"]:
                return self.broken(seq, f"row {seq}, in flight in the head file, does not match "
                                        "its row_hash: the head file was edited")
            try:
                check_row(in_flight)
            except ValueError as exc:
                return self.rule_problem(seq, exc)
            self.passed(seq, in_flight["row_hash"])
        last_seq = self.expected_seq - 1
        if head is None:
            return VerifyResult(True, self.checked)
        head_seq, head_hash = head
        if last_seq < head_seq:
            return self.broken(last_seq + 1,
                               f"the trail ends at row {last_seq} but the head says {head_seq}: "
                               f"rows {last_seq + 1}..{head_seq} were removed")
        if last_seq > head_seq:
            return self.broken(head_seq + 1,
                               f"rows {head_seq + 1}..{last_seq} come after the head (row "
                               f"{head_seq}): they were not written by the trail, or the head "
                               "file is an old copy")
        if self.expected_prev != head_hash:
            return self.broken(head_seq, f"row {head_seq} differs from the head: the chain was "
                                         "rewritten up to here")
        return VerifyResult(True, self.checked,
                            in_flight=None if in_flight is None else in_flight["seq"])


def verify_rows(rows: Iterable[Mapping], head: tuple[int, str] | None = None,
                in_flight: Mapping | None = None) -> VerifyResult:
    """Check rows read back in ``seq`` order: numbering, links, hashes, rules; with a head
    ``(seq, row_hash)`` also that nothing was cut from the end or added after it (after the row
    ``in_flight``, when the head holds one the rows do not)."""
    walk = ChainWalk()
    for row in rows:
        seq = row["seq"]
        problem = walk.link_problem(seq, row["prev_hash"])
        if problem is not None:
            return problem
        if compute_row_hash(row) != row["row_hash"]:
            return walk.hash_problem(seq)
        try:
            check_row(row)
        except ValueError as exc:
            return walk.rule_problem(seq, exc)
        walk.passed(seq, row["row_hash"])
    return walk.finish(head, in_flight)


# -- the rows the kit writes about a request ----------------------------------------------------

def audit_row(thread_id: str, request: ApprovalRequest, event: Event, *, key: tuple,
              decision: Decision | None = None, reason: str | None = None,
              message=None, executed_at: str | None = None,
              why_not: str = "", details: dict | None = None) -> dict:
    """The audit trail's row for one event of one request: proposed, refused, decided (one of
    several approvals) or resolved (``message``: the tool's result, a ``ToolMessage``). Its
    key is (thread, call, ``key``...) as one JSON text, so writing it again after a crash
    writes nothing new."""
    row = {"event_key": key_text(thread_id, request.tool_call_id, *key),
           "session_id": thread_id, "action_type": request.tool or "(no name)",
           "parameters": request.args if isinstance(request.args, dict)
           else {"raw": request.args},
           "reversibility_class": request.reversibility, "event": str(event),
           "proposed_at": request.proposed_at}
    details = dict(details or {})
    if request.raised_by:
        details["raised_by"] = list(request.raised_by)
    if event == Event.PROPOSED:
        shown = [p for p in request.provenance if p.get("suspicious")]
        if shown:
            details["provenance"] = shown
        if request.problem:
            details["problem"] = request.problem
    if decision is not None:
        # The trail records every run without a person (policy or a soft gate's deadline) as
        # approver "auto"; the channel says which.
        row.update(channel=str(decision.channel), approver_role=decision.role,
                   approver_id=Approver.AUTO if decision.kind == Kind.PROCEED
                   else decision.approver)
        if decision.approvals:
            details["approvals"] = [a.model_dump(mode="json") for a in decision.approvals]
    if event == Event.RESOLVED:
        reasons = [decision.reason] if decision.reason else []
        if request.edited_by:
            reasons.insert(0, f"arguments edited by {request.edited_by}")
        verdict = decision.kind.verdict
        if why_not and verdict.runs:
            reasons.insert(0, why_not)
        outcome = Execution.NOT_EXECUTED if executed_at is None else (
            Execution.ERROR if message.status == "error" else Execution.SUCCESS)
        row.update(decision=str(verdict), outcome=str(outcome), executed_at=executed_at)
        reason = "; ".join(reasons) or None
    elif event == Event.DECIDED:
        row["decision"] = str(Verdict.APPROVED)
    row["reason"] = reason
    row["details"] = details or None
    return row
