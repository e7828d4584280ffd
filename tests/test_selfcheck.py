"""The drills' self-checks: solutions pass, pristine stubs read "not attempted" (as rustlings
proves its exercises), a hang ends with a message, and the command line says what is wrong with
a path in one line. The checks' own probes and messages are tested by tests/mutants/."""

import json
import re
import threading
import time
from types import SimpleNamespace

import pytest

from hitl_kit.__main__ import main
from hitl_kit.course.checks import all_drills, check_notebook, get_drill
from hitl_kit.course.selfcheck import (
    CORRECT,
    FAIL,
    INCORRECT,
    NOT_ATTEMPTED,
    PASS,
    Check,
    CheckError,
    Drill,
    Flaw,
    attempt,
    code_of_cells,
    drill_key_of,
    run_cells,
    run_notebook_cells,
)

from .conftest import ROOT, copy_of, run_cli, with_cell_replaced

DRILLS = all_drills()
SOLUTION_1 = get_drill("drill1").solution_path


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_every_solution_passes_every_check(drill):
    report = check_notebook(drill.solution_path)
    assert report.status == CORRECT, str(report)


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_every_pristine_drill_is_not_attempted(drill, tmp_path):
    report = check_notebook(copy_of(drill.drill_path, tmp_path))
    assert report.status == NOT_ATTEMPTED, str(report)
    assert all(r.status == NOT_ATTEMPTED for r in report.results), str(report)
    assert not report.cell_errors


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_the_check_cell_alone_in_a_fresh_kernel_is_not_attempted(drill):
    """Run before any other cell: nothing is defined, so nothing was attempted (no KeyError)."""
    namespace = {"__name__": "__main__"}
    exec(f"from hitl_kit.course.checks import {drill.key}\nreport = {drill.key}.check()", namespace)
    report = namespace["report"]
    assert report.status == NOT_ATTEMPTED, str(report)
    assert "Error" not in str(report)


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_drill_and_solution_notebooks_name_their_drill(drill):
    assert drill_key_of(drill.drill_path) == drill_key_of(drill.solution_path) == drill.key


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_each_drill_says_save_then_check(drill):
    text = drill.drill_path.read_text(encoding="utf-8")
    assert "save, then check" in text
    assert f".venv/bin/python -m hitl_kit check {drill.key}`" in text and "my-work/drills/" in text


def test_half_done_is_incorrect_not_not_attempted(tmp_path):
    drill = get_drill("drill1")
    half = with_cell_replaced(copy_of(drill.drill_path, tmp_path), tmp_path,
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
    exec("from hitl_kit.course.checks import drill1\nreport = drill1.check()", namespace)
    assert namespace["report"].status == CORRECT


def test_checks_do_not_change_the_learners_objects():
    namespace, _ = run_notebook_cells(SOLUTION_1)
    calls = []
    namespace["policy_for"] = lambda action: calls.append(action) or "hard_gate"
    get_drill("drill1").run(namespace)
    assert calls == []  # the probes ran in child processes; this process saw none of them


def test_hint_lists_only_what_still_fails(capsys):
    drill = get_drill("drill1")
    namespace, _ = run_notebook_cells(SOLUTION_1)
    namespace["policy_for"] = lambda action: "auto_execute"
    drill.hint(namespace)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "- policy_for returns the table's policy for every action in it",
        "- policy_for fails closed for every action not in the table"]


def test_hint_on_a_solved_drill_says_it_passes(capsys):
    namespace, _ = run_notebook_cells(SOLUTION_1)
    get_drill("drill1").hint(namespace)
    out = capsys.readouterr().out
    assert "CORRECT" in out and "No hints needed" in out and "- " not in out


# -- a check never hangs ---------------------------------------------------------------------------

# The loop can be ended from outside (STOP), so that a watchdog-thread run does not leave a thread
# spinning in this test process for the rest of the suite (a thread blocked on a lock costs
# nothing).
HANGS = {
    "a loop that never ends": ("STOP = []\n\ndef policy_for(action):\n    while not STOP:\n"
                               "        pass\n"),
    "a lock taken twice": ("import threading\nSTOP = []\n_lock = threading.Lock()\n\n"
                           "def policy_for(action):\n    with _lock:\n        with _lock:\n"
                           "            return 'hard_gate'\n"),
}


# A forked check's deadline here: long enough for the checks that do finish (forked beside the
# spinning ones, on a busy machine) to finish, so only the hung ones run out of it. In threads
# (one after the other) a spinning check may starve the next anyway: 1 s keeps that test short.
HUNG_CHECK_S = {True: 4, False: 1}


@pytest.mark.parametrize("fork", [True, False], ids=["forked-child", "watchdog-thread"])
@pytest.mark.parametrize("hang", list(HANGS))
def test_a_hanging_answer_ends_with_a_message_naming_where(tmp_path, hang, fork):
    namespace, _ = run_notebook_cells(SOLUTION_1)
    run_cells(code_of_cells([(3, HANGS[hang])], "hang.ipynb"), namespace)
    deadline = HUNG_CHECK_S[fork]
    box = []  # the run ends by itself; a ceiling only a hang reaches keeps the suite going
    runner = threading.Thread(target=lambda: box.append(
        get_drill("drill1").run(namespace, timeout=deadline, fork=fork)), daemon=True)
    runner.start()
    runner.join(300)
    namespace["STOP"].append(True)
    assert box, f"the checks did not end although each has a {deadline} s deadline"
    [report] = box
    failed = {r.check.name: r.message for r in report.results if r.status == FAIL}
    hung = {name for name in failed if name.startswith("policy_for ")}
    assert len(hung) == 2, str(report)  # the two checks that call policy_for
    for name in hung:
        assert failed[name].startswith(f"your code did not finish within {deadline} s (in "
                                       "`policy_for`, line "), failed[name]
    others = set(failed) - hung
    if fork:
        assert not others, str(report)
    else:  # a thread cannot be stopped: the spinning ones may starve a later check, which
        # then runs out of time too; it never reports a wrong verdict
        assert all(failed[n].startswith("your code did not finish") for n in others), report


def test_a_hanging_cell_in_a_saved_notebook_is_reported_and_the_rest_still_runs(tmp_path):
    hanging = with_cell_replaced(SOLUTION_1, tmp_path, "def policy_for(action: str) -> str:",
                                 "while True:\n    pass\n\n\ndef policy_for(action: str) -> str:")
    namespace, errors = run_notebook_cells(hanging, timeout=0.5)
    assert len(errors) == 1
    number = cell_number(hanging, "while True:")
    assert errors[0].startswith(f"cell {number} did not finish within 0.5 s (in `<module>`, line ")
    assert "policy_for" not in namespace  # defined after the loop, in the same cell
    assert "EMAIL_TABLE" in namespace


def test_an_error_in_the_learners_code_is_a_flaw_not_a_traceback():
    def policy_for(action):
        return {}[action]

    with pytest.raises(Flaw) as caught:
        attempt("policy_for('x')", policy_for, "x", expected="'hard_gate'")
    message = caught.value.message()
    assert message.splitlines()[0] == "policy_for('x') raised KeyError: 'x'"
    assert "Traceback" not in message and "expected: 'hard_gate'" in message


def test_a_check_that_ends_python_is_reported():
    drill = Drill("crash", "Crash", "none.ipynb",
                  [Check("exits", lambda ns: __import__("os")._exit(3), "do not")])
    report = drill.run({})
    assert report.results[0].status == FAIL
    assert "ended without a result" in report.results[0].message


# -- the same checks from the shell ----------------------------------------------------------------
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
    checks = len(get_drill("drill1").checks)
    assert f"CORRECT ({checks}/{checks} checks pass)" in result.stdout


def test_cli_check_pristine_drill_exits_nonzero_not_attempted(tmp_path):
    result = run_cli("check", str(copy_of(get_drill("drill1").drill_path, tmp_path)))
    assert result.returncode == 1
    assert "NOT ATTEMPTED" in result.stdout and "Traceback" not in result.stderr


def test_cli_check_wrong_row_exits_nonzero_naming_it(cli, tmp_path):
    wrong = with_cell_replaced(SOLUTION_1, tmp_path,
                               '"delete_thread": ("irreversible_high", "hard_gate")',
                               '"delete_thread": ("partially_reversible", "auto_with_logging")')
    result = cli("check", str(wrong))
    assert result.returncode == 1
    assert "INCORRECT" in result.stdout and "delete_thread: auto_with_logging" in result.stdout


def test_cli_report_shows_when_the_file_was_saved(cli, tmp_path):
    copy = copy_of(get_drill("drill1").drill_path, tmp_path)
    result = cli("check", str(copy))
    line = result.stdout.splitlines()[1]
    assert line.strip().startswith("checked ") and "as saved " in line
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(copy.stat().st_mtime)) in line
    assert "save, then check" in line


def test_cli_messages_match_the_notebook_report(cli):
    result = cli("check", str(SOLUTION_1))
    ago = re.compile(r"\(\d+ (s|min|h) ago\)")  # the one part that moves with the clock
    assert ago.sub("", result.stdout.strip()) == ago.sub("", str(check_notebook(SOLUTION_1)))


def test_cli_progress_table_lists_every_drill(cli):
    result = cli("check")
    for drill in DRILLS:
        assert drill.title in result.stdout and f"drills/{drill.notebook}" in result.stdout
    statuses = [check_notebook(d.drill_path).status for d in DRILLS]
    assert result.returncode == (0 if set(statuses) == {CORRECT} else 1)


NOT_NOTEBOOKS = {
    "missing": (None, "no notebook at"),
    "a folder": ("folder", "is a folder: give one notebook"),
    "a JSON list": ("[1, 2]", "is JSON but not a Jupyter notebook"),
    "JSON without cells": ('{"metadata": {}}', "is JSON but not a Jupyter notebook"),
    "cells that are not cells": ('{"cells": [1]}', "is JSON but not a Jupyter notebook"),
    "not JSON": ("{nope", "bad JSON"),
    "not text": (b"\xff\xfe\x00", "not UTF-8 text"),
    "a notebook of no drill": ('{"cells": [], "metadata": {}}', "is not a drill notebook"),
    "metadata that is a list": ('{"cells": [], "metadata": []}', "is not a drill notebook"),
}


@pytest.mark.parametrize("case", list(NOT_NOTEBOOKS))
def test_cli_check_of_something_that_is_not_a_drill_notebook_is_one_clear_line(cli, tmp_path,
                                                                               case):
    content, message = NOT_NOTEBOOKS[case]
    path = tmp_path / "thing.ipynb"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    for command in ("check", "hint"):
        result = cli(command, str(path))
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert '"' not in result.stderr.split(":")[0]  # no KeyError-style quoting


def test_cli_check_of_the_drills_folder_is_one_clear_line(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = cli("check", "drills")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: drills is a folder: give one notebook, e.g. "
                                     "drills/NAME.ipynb, or no path to check every drill")


def test_cli_solution_and_hint(cli):
    solution = cli("solution", "drill1")
    assert solution.returncode == 0 and "EMAIL_TABLE = {" in solution.stdout
    hint = cli("hint", str(SOLUTION_1))
    assert hint.returncode == 0 and "No hints needed" in hint.stdout
    unknown = cli("hint", "drill99")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no drill 'drill99'; drills are: drill1, drill2, " \
                                     "drill3, drill4"


def test_check_error_reads_as_one_line_without_quotes():
    assert str(CheckError("no drill 'x'")) == "no drill 'x'"


def test_report_passes_count_matches_results():
    report = check_notebook(SOLUTION_1)
    assert report.passed == sum(r.status == PASS for r in report.results) == len(report.results)


def test_the_drills_as_committed_pass_the_linter(tmp_path):
    """drills/ is left out of `ruff check .` (the learner's answers are theirs); the committed
    stubs are linted here, with the project's rules. A drill imports names the learner will need
    before the learner uses them, so unused imports are allowed."""
    import subprocess
    import sys

    copies = [str(copy_of(drill.drill_path, tmp_path)) for drill in DRILLS]
    linted = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                             str(ROOT / "pyproject.toml"), "--ignore", "F401", *copies],
                            capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_in_a_real_kernel_a_lone_check_cell_is_not_attempted_and_a_hang_is_named():
    """The notebook side, in an IPython kernel (the checks fork from it): drill 2's check cell
    run first in a fresh kernel, then a drill 1 answer that never returns."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        def run(code: str) -> str:
            out: list[str] = []

            def keep(message):
                content = message["content"]
                out.append(content.get("text") or content.get("evalue") or "")

            client.execute_interactive(code, timeout=60, output_hook=keep)
            return "".join(out)

        lone = run("from hitl_kit.course.checks import drill2\nprint(drill2.check())")
        assert "NOT ATTEMPTED (0/9 checks pass)" in lone and "Error" not in lone, lone
        hang = run("EMAIL_TABLE = {'read_inbox': ('fully_reversible', 'auto_execute')}\n"
                   "def policy_for(action):\n    while True:\n        pass\n\n"
                   "from hitl_kit.course.checks import drill1\n"
                   "report = drill1.check(timeout=1.0)\n"
                   "print([r.message for r in report.results if r.status == 'fail'])")
        assert "your code did not finish within 1 s (in `policy_for`, line " in hang, hang
        assert run("print(sum(1 for _ in range(3)))").strip() == "3"  # the kernel is not stuck
        # A cell that checks saved notebooks (as 00 and 09 do) runs their cells off the loop.
        solved = run("from hitl_kit.course.checks import check_notebook, get_drill\n"
                     "print(check_notebook(get_drill('drill4').solution_path).status)")
        assert solved.strip() == "correct", solved
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_without_fork_the_same_checks_run_in_watchdog_threads(drill):
    """Where os.fork is missing (Windows) every check runs in a thread of its own."""
    from .mutants import mutants_of, namespace_of

    namespace, errors = namespace_of(drill.key, None)
    assert not errors and drill.run(namespace, fork=False).status == CORRECT
    mutant = next(m for m in mutants_of(drill.key) if m.subtle and len(m.fails) == 1)
    namespace, _ = namespace_of(drill.key, mutant)
    failed = {r.check.name for r in drill.run(namespace, fork=False).results if r.status == FAIL}
    assert failed == set(mutant.fails)


@pytest.mark.parametrize("module", ["hitl_kit.course.selfcheck", "hitl_kit.course.checks.names"])
def test_the_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted and not result.failed


def test_check_notebook_from_inside_a_running_event_loop(tmp_path):
    """A kernel's cell (notebooks 00 and 09 show progress_table()) and Playwright's sync API
    both run inside an event loop: the cells then run on a thread of their own."""
    import asyncio
    import threading

    hanging = with_cell_replaced(SOLUTION_1, tmp_path, "def policy_for(action: str) -> str:",
                                 "STOP = []\nwhile not STOP:\n    pass\n\n\n"
                                 "def policy_for(action: str) -> str:")

    async def inside_a_loop():
        solved = check_notebook(SOLUTION_1).status
        pristine = check_notebook(copy_of(get_drill("drill4").drill_path, tmp_path))
        namespace, errors = run_notebook_cells(hanging, timeout=0.5)
        namespace["STOP"].append(True)  # lets the abandoned cell thread end
        return solved, pristine.status, errors

    box = []  # a thread of its own: this one may already run a loop (Playwright's, in the suite)
    worker = threading.Thread(target=lambda: box.append(asyncio.run(inside_a_loop())))
    worker.start()
    worker.join()
    solved, pristine, errors = box[0]
    assert (solved, pristine) == (CORRECT, NOT_ATTEMPTED)
    assert errors == [f"cell {cell_number(hanging, 'while not STOP')} did not finish within 0.5 s "
                      "(in `<module>`, line 2: while not STOP:); the cells after it were not run"]


def cell_number(path, text: str) -> int:
    """Where the cell holding ``text`` is, counted as a learner counts cells in JupyterLab: from
    the top, markdown cells included."""
    cells = json.loads(path.read_text())["cells"]
    [number] = [n for n, c in enumerate(cells, start=1) if text in "".join(c["source"])]
    return number


def test_a_cell_is_named_by_its_place_among_all_cells_not_among_code_cells(tmp_path):
    broken = with_cell_replaced(SOLUTION_1, tmp_path, "def policy_for(action: str) -> str:",
                                "raise KeyError('x')\n\n\ndef policy_for(action: str) -> str:")
    _, errors = run_notebook_cells(broken)
    number = cell_number(broken, "raise KeyError")
    code_cells_before = sum(c["cell_type"] == "code"
                            for c in json.loads(broken.read_text())["cells"][:number])
    assert number != code_cells_before  # markdown cells come before it: the two counts differ
    assert errors == [f"cell {number} raised KeyError: 'x' in `<module>`, line 1: "
                      "raise KeyError('x')"], errors


# -- a renamed entry point is named, a given name never is -----------------------------------------

@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.key)
def test_every_name_a_pristine_drill_defines_is_known_to_its_checks(drill, tmp_path):
    """The checks tell a renamed answer from the drill's own names by a list (NAMES); a name the
    notebook defines that the list lacks could be taken for the learner's renamed function."""
    import importlib

    from hitl_kit.course.checks import DRILL_MODULES

    namespace, errors = run_notebook_cells(copy_of(drill.drill_path, tmp_path))
    defined = {name for name in namespace if not name.startswith("_")}
    known = set(importlib.import_module(DRILL_MODULES[drill.key]).NAMES)
    modules = {name for name in defined if type(namespace[name]).__name__ == "module"}
    assert defined - modules - known == set()


def test_a_stub_left_beside_its_renamed_version_is_named():
    from .mutants import namespace_of

    namespace, _ = namespace_of("drill2", None)
    namespace["make_review"] = namespace["review"]
    run_cells(code_of_cells([(9, "def review(state):\n    raise NotImplementedError\n")],
                            "renamed.ipynb"), namespace)
    report = get_drill("drill2").run(namespace)
    failed = [r for r in report.results if r.status == FAIL]
    assert failed and all(r.message.splitlines()[0] == (
        "your notebook defines `make_review`, but `review`, the one the check calls, is still "
        "the stub") for r in failed), str(report)
    assert report.status == INCORRECT
