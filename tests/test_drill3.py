"""Drill 3's checks catch the mistakes a reviewer would: each test breaks the solution one way."""

import json

import pytest

from hitl_kit.checks import get_drill
from hitl_kit.checks.d03_audit import every_field_is_a_text_column
from hitl_kit.selfcheck import FAIL, NOT_ATTEMPTED, PASS, NotAttempted, check_notebook

from .conftest import committed_copy, with_cell_replaced

DRILL = get_drill("drill3")
SOLUTION = DRILL.solution_path

INSERT_ONLY = "log_action runs nothing but INSERT"
TRIGGERS = "UPDATE and DELETE on audit_log fail"
TIMESTAMPS = "timestamps are ISO 8601 in UTC with an offset"
MISSING_FIELD = "a missing field raises an error naming it and writes nothing"
NOT_NULL = "required fields are NOT NULL"
ENUMS = "decision, outcome and reversibility_class take only known values"
TEXT_COLUMNS = "audit_log has a text column for every field"

INSERT_LINE = (
    '        conn.execute(f"INSERT INTO audit_log ({columns}) VALUES ({placeholders})", row)')
UPDATE_TRIGGER = """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be updated'); END;"""
DELETE_TRIGGER = """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted'); END;"""
NOW_LINE = 'row["timestamp"] = datetime.now(UTC).isoformat()'
MISSING_CHECK = """    missing = [field for field in ENTRY_FIELDS if field not in entry]
    if missing:
        raise ValueError(f"entry has no {', '.join(missing)}")
"""


def broken_solution(tmp_path, *replacements):
    path = SOLUTION
    for old, new in replacements:
        path = with_cell_replaced(path, tmp_path, old, new)
    return path


def code_cells(path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def failures(path) -> dict[str, str]:
    """Name -> message of each failing check; every other check must pass."""
    report = check_notebook(path)
    assert not report.cell_errors, report.cell_errors
    assert {r.status for r in report.results} <= {PASS, FAIL}, str(report)
    return {r.check.name: r.message for r in report.results if r.status == FAIL}


# -- the four mistakes the issue names ------------------------------------------------------------

def test_an_update_inside_log_action_fails_the_insert_only_check_naming_it(tmp_path):
    path = broken_solution(tmp_path, (INSERT_LINE, INSERT_LINE + "\n        conn.execute("
                                      '"UPDATE audit_log SET timestamp = ? WHERE seq = '
                                      'last_insert_rowid()", (row["timestamp"],))'))
    failed = failures(path)
    assert INSERT_ONLY in failed
    message = failed[INSERT_ONLY]
    assert "UPDATE audit_log SET timestamp" in message and "an UPDATE" in message


def test_a_schema_without_the_update_trigger_fails(tmp_path):
    failed = failures(broken_solution(tmp_path, (UPDATE_TRIGGER, "")))
    assert list(failed) == [TRIGGERS]
    message = failed[TRIGGERS]
    assert "`UPDATE audit_log SET session_id = 'rewritten'` ran without an error" in message
    assert "DELETE" not in message


def test_a_naive_timestamp_fails(tmp_path):
    failed = failures(broken_solution(
        tmp_path, (NOW_LINE, 'row["timestamp"] = datetime.utcnow().isoformat()')))
    assert list(failed) == [TIMESTAMPS]
    assert "timestamp is '" in failed[TIMESTAMPS] and "no offset" in failed[TIMESTAMPS]


def test_a_partial_row_on_a_missing_field_fails(tmp_path):
    failed = failures(broken_solution(
        tmp_path, (MISSING_CHECK, ""),
        ("{field: entry[field] for field", "{field: entry.get(field) for field")))
    assert list(failed) == [MISSING_FIELD]
    # A rejected entry without executed_at looks like one that did not run: the row goes in.
    assert "without executed_at (rejected entry): no error, and 1 row(s) written" in (
        failed[MISSING_FIELD])


# -- more ways to get the schema wrong ------------------------------------------------------------

def test_both_triggers_ignoring_changes_silently_fail(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ("RAISE(ABORT, 'audit_log is append-only: rows cannot be updated')",
                   "RAISE(IGNORE)"),
        ("RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted')", "RAISE(IGNORE)")))
    assert list(failed) == [TRIGGERS]
    assert "UPDATE" in failed[TRIGGERS] and "DELETE FROM audit_log` ran" in failed[TRIGGERS]


def test_a_schema_without_any_triggers_fails_for_update_and_delete(tmp_path):
    failed = failures(broken_solution(tmp_path, (UPDATE_TRIGGER, ""), (DELETE_TRIGGER, "")))
    assert list(failed) == [TRIGGERS]
    assert failed[TRIGGERS].count("ran without an error") == 2


def test_an_outcome_without_a_check_stores_the_seeds_rejected_outcome(tmp_path):
    failed = failures(broken_solution(tmp_path, (
        "outcome             TEXT NOT NULL CHECK (outcome IN\n"
        "        ('success', 'error', 'rollback', 'not_executed')),",
        "outcome             TEXT NOT NULL,")))
    assert list(failed) == [ENUMS]
    stored = failed[ENUMS].split(" were stored")[0]
    assert stored == "rows with outcome 'rejected', outcome 'ok'"


def test_a_nullable_approver_fails_naming_it(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ("approver_id         TEXT NOT NULL,", "approver_id         TEXT,")))
    assert list(failed) == [NOT_NULL]
    assert "NULL in approver_id was stored" in failed[NOT_NULL]


def test_a_datetime_column_type_is_named(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ("proposed_at         TEXT NOT NULL,", "proposed_at         DATETIME NOT NULL,"),
        (") STRICT;", ");")))
    assert list(failed) == [TEXT_COLUMNS]
    assert "proposed_at is declared DATETIME, which SQLite treats as NUMERIC" in (
        failed[TEXT_COLUMNS])


def test_a_missing_column_is_named_by_every_schema_check(tmp_path):
    failed = failures(broken_solution(tmp_path, ("    session_id          TEXT NOT NULL,\n", "")))
    assert {TEXT_COLUMNS, NOT_NULL, ENUMS, TRIGGERS} <= set(failed)
    assert all("no column(s): session_id" in failed[name]
               for name in (TEXT_COLUMNS, NOT_NULL, ENUMS, TRIGGERS))


def test_sql_that_does_not_run_is_reported(tmp_path):
    failed = failures(broken_solution(tmp_path, ("CREATE TABLE audit_log (", "CREATE TABLE (")))
    assert "SCHEMA does not run" in failed[TEXT_COLUMNS]


# -- more ways to get log_action wrong ------------------------------------------------------------

def test_insert_or_replace_counts_as_a_change(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ('f"INSERT INTO audit_log', 'f"INSERT OR REPLACE INTO audit_log')))
    assert list(failed) == [INSERT_ONLY]
    assert "REPLACE deletes the row it replaces" in failed[INSERT_ONLY]


def test_a_log_action_that_guesses_a_missing_timezone_fails(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ("if not isinstance(moment, datetime) or moment.utcoffset() is None:",
                   "if not isinstance(moment, datetime):")))
    assert list(failed) == [TIMESTAMPS]
    assert "accepted proposed_at=2026-11-26T23:30:00 (no timezone)" in failed[TIMESTAMPS]


def test_timestamps_kept_in_local_offset_fail(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ("return moment.astimezone(UTC).isoformat()", "return moment.isoformat()")))
    assert list(failed) == [TIMESTAMPS]
    assert "proposed_at is '2026-11-26T23:30:00+02:00': convert it to UTC" in failed[TIMESTAMPS]


def test_an_error_that_does_not_name_the_field_fails(tmp_path):
    failed = failures(broken_solution(
        tmp_path, ("""raise ValueError(f"entry has no {', '.join(missing)}")""",
                   'raise ValueError("incomplete entry")')))
    assert list(failed) == [MISSING_FIELD]
    assert "without session_id: ValueError: incomplete entry" in failed[MISSING_FIELD]


# -- partly done ----------------------------------------------------------------------------------

def test_schema_done_and_log_action_still_a_stub(tmp_path):
    drill = committed_copy(DRILL.drill_path, tmp_path)
    solved_schema = next(c for c in code_cells(SOLUTION) if c.startswith('SCHEMA = """\nCREATE'))
    stub_schema = next(c for c in code_cells(drill) if c.startswith("SCHEMA = "))
    report = check_notebook(with_cell_replaced(drill, tmp_path, stub_schema, solved_schema))
    statuses = {r.check.name: r.status for r in report.results}
    assert [name for name, status in statuses.items() if status == PASS] == [
        TEXT_COLUMNS, NOT_NULL, ENUMS, TRIGGERS]
    assert [name for name, status in statuses.items() if status == NOT_ATTEMPTED] == [
        INSERT_ONLY, TIMESTAMPS, MISSING_FIELD]


@pytest.mark.parametrize("value", ["", "-- only a comment\n/* and another */"])
def test_a_schema_of_only_comments_is_not_attempted(value):
    with pytest.raises(NotAttempted):
        every_field_is_a_text_column({"SCHEMA": value})
