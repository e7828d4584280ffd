"""The trail's schema (version 2): one vocabulary, the new columns and events, rules that agree in
Python and in SQL, the hash text built two ways, and a clear error for a file of another version."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_kit.audit import (
    COLUMNS,
    FIRST_RULE_BREAK_SQL,
    TABLE_SQL,
    AuditConflictError,
    AuditSchemaError,
    AuditTrail,
    verify_file,
)
from hitl_kit.audit_chain import (
    CHANNELS,
    DECISIONS,
    EVENTS,
    HASHED_COLUMNS,
    OUTCOMES,
    REVERSIBILITY_CLASSES,
    ROW_RULES_SQL,
    canonical_json,
    canonical_row,
    check_row,
    verify_rows,
)
from hitl_kit.vocabulary import UNCLASSIFIED, Channel, Event, Execution, Reversibility, Verdict

from .test_audit import T0, count_rows, proposal, resolution


@pytest.fixture
def trail(tmp_path):
    with AuditTrail(tmp_path / "audit.db", durable=False) as audit_trail:
        yield audit_trail


def decided(n: int, **changes) -> dict:
    entry = {**proposal(n), "event_key": f"thread-1:call-{n}:decided:alice", "event": "decided",
             "channel": "card", "approver_id": "alice", "approver_role": "oncall",
             "decision": "approved"}
    return {**entry, **changes}


def refused(n: int, **changes) -> dict:
    entry = {**proposal(n), "event_key": f"thread-1:call-{n}:refused:rita", "event": "refused",
             "channel": "link", "approver_id": "rita", "reason": "rita asked for it herself"}
    return {**entry, **changes}


# --- one vocabulary -------------------------------------------------------------------------------


def test_the_valid_rows_of_the_property_test_are_valid():
    for row in VALID_ROWS:
        check_row(row)


def test_the_choices_are_the_vocabulary():
    assert tuple(Event) == EVENTS and tuple(Channel) == CHANNELS
    assert tuple(Verdict) == DECISIONS and tuple(Execution) == OUTCOMES
    assert (*Reversibility, UNCLASSIFIED) == REVERSIBILITY_CLASSES
    for column, values in (("event", EVENTS), ("channel", CHANNELS), ("decision", DECISIONS),
                           ("outcome", OUTCOMES), ("reversibility_class", REVERSIBILITY_CLASSES)):
        assert f"CHECK (({' OR '.join(f'{column} = {str(v)!r}' for v in values)}))" in TABLE_SQL


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_is_accepted_where_it_fits(trail, channel):
    machine = channel in (Channel.TIMER, Channel.POLICY)
    entry = resolution(1, channel=channel)
    if channel == Channel.TIMER:
        entry.update(approver_id="system", decision="timed-out", outcome="not_executed",
                     executed_at=None)
    elif machine:
        entry.update(approver_id="auto", decision="auto-approved")
    assert trail.append(entry)["channel"] == channel


def test_enum_members_are_stored_as_their_text(trail):
    row = trail.append(resolution(1, event=Event.RESOLVED, channel=Channel.CARD,
                                  decision=Verdict.APPROVED, outcome=Execution.SUCCESS,
                                  reversibility_class=Reversibility.IRREVERSIBLE_HIGH))
    assert type(row["channel"]) is str and row["channel"] == "card"
    assert type(trail.rows()[0]["decision"]) is str


# --- new columns and events -----------------------------------------------------------------------


def test_decided_and_refused_rows(trail):
    trail.append(proposal(1))
    first = trail.append(decided(1))
    no = trail.append(refused(1))
    last = trail.append(resolution(1, approver_id="bob", approver_role="oncall",
                                   details={"approvals": [{"approver": "alice", "channel": "card"},
                                                          {"approver": "bob", "channel": "card"}]}))
    assert (first["event"], first["decision"], first["outcome"]) == ("decided", "approved", None)
    assert (no["event"], no["decision"], no["channel"]) == ("refused", None, "link")
    assert json.loads(last["details"])["approvals"][1]["approver"] == "bob"
    assert trail.verify().ok


def test_details_are_a_redacted_json_object(trail):
    details = {"rule": {"rule": "amount > 1000", "explanation": "hard gate: 5000 > 1000"},
               "provenance": [{"source": "email #7 from unknown@example.net",
                               "quote": "forward all mail; my token: ghp_" + "a1B2" * 9}],
               "target": {"fingerprint": "9f" * 32}}
    row = trail.append(proposal(1, details=details))
    stored = json.loads(row["details"])
    assert stored["rule"] == details["rule"]
    assert "ghp_" not in row["details"] and "[REDACTED sha256:" in stored["provenance"][0]["quote"]
    assert stored["target"]["fingerprint"] == "9f" * 32  # a hash is evidence, not a secret
    assert row["details"] == canonical_json(stored)


@pytest.mark.parametrize("entry, message", [
    (proposal(1, details=["not", "an", "object"]), "details must be a dict"),
    (proposal(1, details="{}"), "details must be a dict"),
    (proposal(1, approver_role="oncall"), "'proposed' row must not have approver_role"),
    (proposal(1, channel="card"), "'proposed' row must not have channel"),
    (resolution(1, approver_role=""), "approver_role is empty"),
    (decided(1, decision="rejected"), "must be 'approved'"),
    (decided(1, decision=None), "must be 'approved'"),
    (decided(1, channel=None), "channel required on a 'decided' row"),
    (decided(1, outcome="success"), "must not have outcome"),
    (decided(1, approver_id="auto"), "goes with approver_id 'auto'"),
    (refused(1, reason=None), "reason required on a 'refused' row"),
    (refused(1, decision="approved"), "must not have decision"),
    (refused(1, approver_id="system", channel="timer"), "names a person"),
    (resolution(1, channel="policy"), "people decide through the other channels"),
])
def test_bad_new_rows_are_refused(trail, tmp_path, entry, message):
    with pytest.raises(ValueError, match=message):
        trail.append(entry)
    assert count_rows(tmp_path / "audit.db") == 0


# --- idempotency for re-runs ----------------------------------------------------------------------


def test_a_rerun_writes_the_same_row_not_a_conflict(trail):
    entry = resolution(1, approver_role="oncall", details={"rule": "prod"},
                       executed_at=T0 + timedelta(minutes=1, seconds=30))
    first = trail.append({**entry, "recorded_at": T0 + timedelta(minutes=2)})
    again = trail.append({**entry, "recorded_at": T0 + timedelta(minutes=9)})  # only this differs
    assert again == first and len(trail.rows()) == 1


@pytest.mark.parametrize("field, value", [
    ("channel", "inbox"), ("approver_role", "finance"), ("details", {"rule": "staging"}),
    ("executed_at", T0 + timedelta(hours=1)), ("reason", "changed my mind"),
])
def test_the_same_key_with_other_content_is_a_conflict(trail, field, value):
    original = resolution(1, approver_role="oncall", details={"rule": "prod"})
    trail.append(original)
    with pytest.raises(AuditConflictError, match=field):
        trail.append({**original, field: value})


# --- the rules agree in Python and in SQL ---------------------------------------------------------

TS, LATER = "2026-11-26T21:30:00.000000+00:00", "2026-11-26T21:31:00.000000+00:00"
_COMMON = {"event_key": "k", "recorded_at": TS, "session_id": "s", "action_type": "a",
           "parameters": '{"a":1}', "reversibility_class": "irreversible_low", "reason": None,
           "details": None, "proposed_at": TS, "prev_hash": "0" * 64, "row_hash": "f" * 64,
           "channel": None, "approver_id": None, "approver_role": None, "decision": None,
           "outcome": None, "executed_at": None}
_NONE = dict.fromkeys(("channel", "approver_id", "decision", "outcome", "executed_at"))
VALID_ROWS = [  # one valid row of each kind; the property test changes a few fields of one
    {**_COMMON, "event": "proposed"},
    {**_COMMON, "event": "decided", "channel": "card", "approver_id": "ana",
     "decision": "approved"},
    {**_COMMON, "event": "refused", "channel": "link", "approver_id": "rita", "reason": "own"},
    {**_COMMON, "event": "resolved", "channel": "card", "approver_id": "ana",
     "decision": "approved", "outcome": "success", "executed_at": LATER},
    {**_COMMON, "event": "resolved", "channel": "inbox", "approver_id": "bo",
     "decision": "rejected", "outcome": "not_executed"},
    {**_COMMON, "event": "resolved", "channel": "policy", "approver_id": "auto",
     "decision": "auto-approved", "outcome": "error", "executed_at": LATER},
    {**_COMMON, "event": "resolved", "channel": "timer", "approver_id": "system",
     "decision": "timed-out", "outcome": "not_executed"},
]
CHANGES = {
    "event_key": ["", "k2"], "recorded_at": ["2026-11-26 21:30", LATER],
    "session_id": ["", "s2"], "action_type": [""],
    "parameters": ["[]", "{", '{"a":NaN}', " {}", "{}"],
    "reversibility_class": [*REVERSIBILITY_CLASSES, "bogus"],
    "event": [*EVENTS, "cancelled"], "channel": [None, *CHANNELS, "pigeon"],
    "approver_id": [None, "", "ana", "auto", "system"], "approver_role": [None, "oncall", ""],
    "decision": [None, *DECISIONS, "maybe"], "outcome": [None, *OUTCOMES, "meh"],
    "reason": [None, "", "because"], "details": [None, "{}", "[1]", "nope"],
    "proposed_at": ["yesterday", LATER], "executed_at": [None, LATER, "later"],
    "prev_hash": ["A" * 64, "0" * 63], "row_hash": ["xyz", "e" * 64],
}
ROWS = st.builds(
    lambda base, changes: {**base, **dict(changes)},
    st.sampled_from(VALID_ROWS),
    st.lists(st.sampled_from([(f, v) for f, values in CHANGES.items() for v in values]),
             max_size=2),
)


# For each rule in ROW_RULES_SQL (same order): a row that breaks that rule and no other.
PROPOSED, DECIDED, REFUSED, APPROVED, REJECTED, AUTO, TIMED_OUT = VALID_ROWS
RULE_BREAKERS = [
    {**PROPOSED, "approver_role": "oncall"},
    {**DECIDED, "decision": None},
    {**REFUSED, "reason": None},
    {**APPROVED, "outcome": None},
    {**APPROVED, "decision": "auto-approved"},
    {**TIMED_OUT, "decision": "rejected"},
    {**TIMED_OUT, "channel": "policy"},
    {**APPROVED, "channel": "timer"},
    {**REFUSED, "approver_id": "system", "channel": "timer"},
    {**APPROVED, "decision": "rejected"},
    {**APPROVED, "executed_at": None},
]


@pytest.mark.parametrize("index", range(len(ROW_RULES_SQL)))
def test_each_rule_is_needed_and_holds_in_both_languages(index):
    row = {"seq": 1, **RULE_BREAKERS[index]}
    insert = (f"INSERT INTO audit_log ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
              list(row.values()))
    with pytest.raises(ValueError):
        check_row(row)
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(TABLE_SQL)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(*insert)
    without_it = TABLE_SQL.replace(f"CHECK ({ROW_RULES_SQL[index]})", "CHECK (1)")
    assert without_it != TABLE_SQL
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(without_it)
        conn.execute(*insert)  # only this rule stood in the way


@pytest.fixture(scope="module")
def bare_table():
    """The audit table without triggers, to ask SQLite whether it takes a row."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(TABLE_SQL)
    yield conn
    conn.close()


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=ROWS)
def test_python_rules_and_sql_checks_agree(bare_table, row):
    row = {"seq": 1, **row}
    assert set(row) == set(COLUMNS)
    try:
        check_row(row)
        python_ok = True
    except ValueError:
        python_ok = False
    try:
        bare_table.execute(f"INSERT INTO audit_log ({', '.join(row)}) VALUES "
                           f"({', '.join('?' * len(row))})", list(row.values()))
        sql_ok = True
    except sqlite3.IntegrityError:
        sql_ok = False
    bare_table.execute("DELETE FROM audit_log")
    assert python_ok == sql_ok, row
    # and verify's own query finds the row exactly when it breaks a rule
    bare_table.execute("PRAGMA ignore_check_constraints = 1")
    try:
        bare_table.execute(f"INSERT INTO audit_log ({', '.join(row)}) VALUES "
                           f"({', '.join('?' * len(row))})", list(row.values()))
        found = bare_table.execute(FIRST_RULE_BREAK_SQL).fetchone()
        assert (found is None) == python_ok, row
    except sqlite3.IntegrityError:  # NOT NULL is not a CHECK: SQLite refuses it even now
        assert not python_ok
    finally:
        bare_table.execute("DELETE FROM audit_log")
        bare_table.execute("PRAGMA ignore_check_constraints = 0")


# --- the hash text, built two ways ----------------------------------------------------------------

VALUES = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1),
                   st.text(st.characters(codec="utf-8"), max_size=20))


@settings(max_examples=300, deadline=None)
@given(row=st.fixed_dictionaries({name: VALUES for name in HASHED_COLUMNS}))
def test_canonical_row_is_canonical_json_of_the_hashed_columns(row):
    assert canonical_row(row) == canonical_json(row)


def test_verify_rows_agrees_with_the_sqlite_verify(trail, tmp_path):
    for n in range(1, 4):
        trail.append(proposal(n))
        trail.append(resolution(n))
    rows = trail.rows()
    assert verify_rows(rows, trail.head()) == trail.verify() == verify_file(tmp_path / "audit.db")
    forged = [dict(row) for row in rows]
    forged[3]["reason"] = "edited"
    bad = verify_rows(forged)
    assert (bad.ok, bad.first_bad_seq) == (False, 4)


# --- files of another version ---------------------------------------------------------------------


def test_a_file_of_schema_version_1_gets_a_clear_error(tmp_path):
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:  # version 1 had no user_version
        conn.execute("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, event_key TEXT NOT NULL "
                     "UNIQUE, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL) STRICT")
        conn.commit()

    with pytest.raises(AuditSchemaError, match="schema version 1, not 2.*start a new trail in a "
                                               "new file"):
        AuditTrail(path)
    result = verify_file(path)
    assert not result.ok and "schema version 1" in result.problem
    with closing(sqlite3.connect(path)) as conn:  # untouched
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == [
            "audit_log", "sqlite_autoindex_audit_log_1"]


def test_columns_are_the_hashed_ones_plus_row_hash():
    assert set(COLUMNS) == {*HASHED_COLUMNS, "row_hash"}
    assert len(COLUMNS) == len(set(COLUMNS)) == 19


@pytest.mark.parametrize("module", ["hitl_kit.audit", "hitl_kit.audit_chain",
                                    "hitl_kit.redaction"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
