"""Drill 4's self-check catches the usual mistakes, each with a message that names it."""

import pytest

from hitl_kit.checks import get_drill
from hitl_kit.selfcheck import FAIL, INCORRECT, NOT_ATTEMPTED, PASS, check_notebook

from .conftest import committed_copy
from .test_selfcheck import with_cell_replaced

DRILL = get_drill("drill4")
SOLUTION = DRILL.solution_path
GUARDED_RESUME = """        with self._lock:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
            self.timer.cancel()  # harmless when the timer itself is the caller
            answer = {"decision": decision, "approver": approver, "reason": reason}
            self.app.invoke(Command(resume=answer), self.config)
            return True"""
# The common mistake: a flag, but set only after the resume, with no lock around them.
FLAG_AFTER_RESUME = """        if self.decided_by is not None:
            return False
        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        self.decided_by = approver
        return True"""


def failures(path):
    report = check_notebook(path)
    assert report.status == INCORRECT, str(report)
    return {r.check.name: r.message for r in report.results if r.status == FAIL}


def test_an_unguarded_resume_fails_the_race_check(tmp_path):
    wrong = with_cell_replaced(SOLUTION, tmp_path, GUARDED_RESUME, FLAG_AFTER_RESUME)
    failed = failures(wrong)
    assert list(failed) == [DRILL.checks[2].name]
    assert "resumed the graph 2 times" in failed[DRILL.checks[2].name]


def test_a_timer_left_running_is_caught(tmp_path):
    wrong = with_cell_replaced(SOLUTION, tmp_path, "self.timer.cancel()  # harmless", "pass  #")
    failed = failures(wrong)
    assert list(failed) == [DRILL.checks[1].name]
    assert "cancel it in decide()" in failed[DRILL.checks[1].name]


@pytest.mark.parametrize(("default", "message"), [
    ('self.decide("rejected", "timer"', "approver 'system'"),
    ('self.decide("approved", "system"', "ran although nobody approved"),
])
def test_a_wrong_default_is_named(tmp_path, default, message):
    wrong = with_cell_replaced(SOLUTION, tmp_path, 'self.decide("rejected", "system"', default)
    failed = failures(wrong)
    assert DRILL.checks[0].name in failed and message in failed[DRILL.checks[0].name]


def test_a_default_applied_at_once_is_too_early(tmp_path):
    wrong = with_cell_replaced(SOLUTION, tmp_path, "threading.Timer(seconds, self.time_out)",
                               "threading.Timer(0, self.time_out)")
    failed = failures(wrong)
    assert "before the 0.1 s deadline" in failed[DRILL.checks[0].name]


STUB_INIT = "        raise NotImplementedError\n\n    def decide"
STUB_DECIDE = "        raise NotImplementedError\n\n    def time_out"


def test_half_done_is_incorrect_not_not_attempted(tmp_path):
    stub = committed_copy(DRILL.drill_path, tmp_path)
    half = with_cell_replaced(stub, tmp_path, STUB_INIT, """        self.app = app
        self.config = {"configurable": {"thread_id": thread_id}}
        self.timer = threading.Timer(seconds, self.time_out)
        self.timer.daemon = True
        self.timer.start()

    def decide""")
    half = with_cell_replaced(half, tmp_path, STUB_DECIDE, """        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True

    def time_out""")
    # Skip the try-it cell that waits for a timeout: time_out is still the stub.
    half = with_cell_replaced(half, tmp_path, 'TimedApproval(example.app, "try-1", seconds=0.5)',
                              "None")
    half = with_cell_replaced(half, tmp_path, "example.resolved.wait(timeout=5)", "None")
    report = check_notebook(half)
    statuses = {r.check.name: r.status for r in report.results}
    assert statuses[DRILL.checks[0].name] == NOT_ATTEMPTED  # time_out is still the stub
    assert statuses[DRILL.checks[1].name] == PASS
    assert statuses[DRILL.checks[2].name] == NOT_ATTEMPTED
    assert report.status == INCORRECT
