"""The drills' self-checks: solutions pass, pristine stubs don't (as rustlings proves its
exercises), and the messages name what is wrong."""

import json
from types import SimpleNamespace

import pytest

from hitl_kit.__main__ import main
from hitl_kit.checks import all_drills, get_drill
from hitl_kit.selfcheck import (
    CORRECT,
    FAIL,
    INCORRECT,
    NOT_ATTEMPTED,
    PASS,
    check_notebook,
    drill_key_of,
    run_notebook_cells,
)

from .conftest import committed_copy, run_cli, with_cell_replaced

DRILLS = all_drills()
SOLUTION_1 = get_drill("drill1").solution_path


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_every_solution_passes_every_check(drill):
    report = check_notebook(drill.solution_path)
    assert report.status == CORRECT, str(report)


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_every_pristine_drill_is_not_attempted(drill, tmp_path):
    report = check_notebook(committed_copy(drill.drill_path, tmp_path))
    assert report.status == NOT_ATTEMPTED, str(report)
    assert all(r.status == NOT_ATTEMPTED for r in report.results), str(report)


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_drill_and_solution_notebooks_name_their_drill(drill):
    assert drill_key_of(drill.drill_path) == drill_key_of(drill.solution_path) == drill.key


DRILL1_MISTAKES = [
    pytest.param('"send_reply": ("irreversible_low", "soft_gate")',
                 '"send_reply": ("fully_reversible", "auto_execute")',
                 "sending and permanent deletion wait for a human", "send_reply: auto_execute",
                 id="a-send-left-ungated"),
    pytest.param('"read_inbox": ("fully_reversible", "auto_execute")',
                 '"read_inbox": ("irreversible_high", "hard_gate")',
                 "reads, searches, drafts and archiving run without a human",
                 "read_inbox: hard_gate", id="over-gating-a-read"),
    pytest.param('"set_rule": ("partially_reversible", "auto_with_logging")',
                 '"set_rule": ("partially_reversible", "hard_gate")',
                 "each policy follows from its class",
                 "set_rule: class partially_reversible calls for auto_with_logging",
                 id="policy-contradicts-class"),
    pytest.param('(None, "hard_gate")', '(None, "auto_execute")',
                 "policy_for fails closed for an unknown action", "fail closed",
                 id="lookup-fails-open"),
    pytest.param('EMAIL_TABLE.get(action, (None, "hard_gate"))', "EMAIL_TABLE[action]",
                 "policy_for fails closed for an unknown action", "KeyError",
                 id="lookup-raises-for-unknown"),
]


@pytest.mark.parametrize(("old", "new", "failing_check", "message"), DRILL1_MISTAKES)
def test_one_wrong_row_fails_the_check_that_names_it(tmp_path, old, new, failing_check, message):
    report = check_notebook(with_cell_replaced(SOLUTION_1, tmp_path, old, new))
    assert report.status == INCORRECT
    failed = [r for r in report.results if r.status == FAIL]
    assert [r.check.name for r in failed] == [failing_check]
    assert message in failed[0].message
    assert message in str(report) and "hint:" in str(report)


def test_a_missing_action_and_a_misspelt_class_are_named(tmp_path):
    wrong = with_cell_replaced(SOLUTION_1, tmp_path,
                               '"search_mail": ("fully_reversible", "auto_execute"),', "")
    wrong = with_cell_replaced(wrong, tmp_path, '"add_contact": ("partially_reversible"',
                               '"add_contact": ("partly_reversible"')
    message = next(r.message for r in check_notebook(wrong).results if r.status == FAIL)
    assert "search_mail: missing" in message and "add_contact: class 'partly_reversible'" in message


def test_half_done_is_incorrect_not_not_attempted(tmp_path):
    drill = get_drill("drill1")
    half = with_cell_replaced(committed_copy(drill.drill_path, tmp_path), tmp_path,
                              '"read_inbox": (TODO, TODO)',
                              '"read_inbox": ("fully_reversible", "auto_execute")')
    report = check_notebook(half)
    assert report.status == INCORRECT
    assert {r.status for r in report.results} >= {FAIL, NOT_ATTEMPTED}


def test_a_cell_error_is_reported_with_its_cell(tmp_path):
    broken = with_cell_replaced(SOLUTION_1, tmp_path, "def policy_for(action: str) -> str:",
                                "def policy_for(action: str) -> str\n")
    report = check_notebook(broken)
    assert report.status == INCORRECT
    assert any("SyntaxError" in e and "cell" in e for e in report.cell_errors)


def test_check_in_a_notebook_reads_the_callers_globals():
    namespace, errors = run_notebook_cells(SOLUTION_1)
    assert errors == []
    assert get_drill("drill1").check(namespace).status == CORRECT
    exec("from hitl_kit.checks import drill1\nreport = drill1.check()", namespace)
    assert namespace["report"].status == CORRECT


def test_hint_lists_only_what_still_fails(tmp_path, capsys):
    drill = get_drill("drill1")
    namespace, _ = run_notebook_cells(SOLUTION_1)
    namespace["policy_for"] = lambda action: "auto_execute"
    drill.hint(namespace)
    out = capsys.readouterr().out
    assert out.count("\n- ") == 0 and out.startswith("- policy_for fails closed")


# -- the same checks from the shell ---------------------------------------------------------------
# Two tests run the real command in a process of its own (exit codes included); the rest call the
# command line's main() in this process, which is the same code and much faster.


@pytest.fixture
def cli(capsys):
    def run(*args):
        code = main(list(args))
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return run


def test_cli_check_solution_exits_zero():
    result = run_cli("check", str(SOLUTION_1))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CORRECT (5/5 checks pass)" in result.stdout


def test_cli_check_pristine_drill_exits_nonzero_not_attempted(tmp_path):
    result = run_cli("check", str(committed_copy(get_drill("drill1").drill_path, tmp_path)))
    assert result.returncode == 1
    assert "NOT ATTEMPTED" in result.stdout


def test_cli_check_wrong_row_exits_nonzero_naming_it(cli, tmp_path):
    wrong = with_cell_replaced(SOLUTION_1, tmp_path,
                               '"delete_thread": ("irreversible_high", "hard_gate")',
                               '"delete_thread": ("partially_reversible", "auto_with_logging")')
    result = cli("check", str(wrong))
    assert result.returncode == 1
    assert "INCORRECT" in result.stdout and "delete_thread: auto_with_logging" in result.stdout


def test_cli_messages_match_the_notebook_report(cli):
    result = cli("check", str(SOLUTION_1))
    assert result.stdout.strip() == str(check_notebook(SOLUTION_1))


def test_cli_progress_table_lists_every_drill(cli):
    result = cli("check")
    for drill in DRILLS:
        assert drill.title in result.stdout and f"drills/{drill.notebook}" in result.stdout
    statuses = [check_notebook(d.drill_path).status for d in DRILLS]
    assert result.returncode == (0 if set(statuses) == {CORRECT} else 1)


def test_cli_bad_path_is_a_clear_error(cli, tmp_path):
    result = cli("check", str(tmp_path / "nope.ipynb"))
    assert result.returncode == 2 and "no notebook at" in result.stderr
    not_a_drill = tmp_path / "plain.ipynb"
    not_a_drill.write_text(json.dumps({"cells": [], "metadata": {}}))
    result = cli("check", str(not_a_drill))
    assert result.returncode == 2 and "not a drill notebook" in result.stderr


def test_cli_solution_and_hint(cli):
    solution = cli("solution", "drill1")
    assert solution.returncode == 0 and "EMAIL_TABLE = {" in solution.stdout
    hint = cli("hint", str(SOLUTION_1))
    assert hint.returncode == 0 and "dict.get" in hint.stdout
    unknown = cli("hint", "drill99")
    assert unknown.returncode == 2 and "no drill 'drill99'" in unknown.stderr


def test_report_passes_count_matches_results():
    report = check_notebook(SOLUTION_1)
    assert report.passed == sum(r.status == PASS for r in report.results) == len(report.results)
