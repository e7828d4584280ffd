"""Drill 4 half done: each part and each method is judged on its own; a stub is "not attempted",
and the asyncio part can be left for later without hiding what part A gets right."""

from hitl_kit.course.checks import check_notebook, get_drill
from hitl_kit.course.selfcheck import INCORRECT, NOT_ATTEMPTED, PASS

from .conftest import copy_of, with_cell_replaced

DRILL = get_drill("drill4")
PART_A = [chk.name for chk in DRILL.checks if not chk.name.startswith("asyncio:")]
PART_B = [chk.name for chk in DRILL.checks if chk.name.startswith("asyncio:")]
QUIET = PART_A[0]
STUB_INIT = "        raise NotImplementedError\n\n    def decide(self, decision: str, approver"
STUB_DECIDE = ("        raise NotImplementedError\n\n    def time_out(self) -> bool:\n"
               '        """What the timer calls')


def test_part_a_half_done_and_part_b_untouched(tmp_path):
    stub = copy_of(DRILL.drill_path, tmp_path)
    half = with_cell_replaced(stub, tmp_path, STUB_INIT, """        self.app = app
        self.config = {"configurable": {"thread_id": thread_id}}
        self.timer = threading.Timer(seconds, self.time_out)
        self.timer.daemon = True
        self.timer.start()

    def decide(self, decision: str, approver""")
    half = with_cell_replaced(half, tmp_path, STUB_DECIDE, """        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True

    def time_out(self) -> bool:
        \"\"\"What the timer calls""")
    # The try-it cells would wait 2 s for a timer whose time_out is still the stub.
    half = with_cell_replaced(half, tmp_path, 'TimedApproval(example.app, "try-1", seconds=0.2)',
                              "None")
    half = with_cell_replaced(half, tmp_path, "example.resolved.wait(timeout=2)", "None")
    report = check_notebook(half)
    statuses = {r.check.name: r.status for r in report.results}
    # time_out is still the stub, and every part-A check needs it
    assert [statuses[name] for name in PART_A] == [NOT_ATTEMPTED] * len(PART_A)
    assert [statuses[name] for name in PART_B] == [NOT_ATTEMPTED] * len(PART_B)
    assert {r.message for r in report.results if r.check.name == QUIET} == {
        "TimedApproval.time_out is still the stub"}
    assert report.status == NOT_ATTEMPTED


def test_part_a_solved_and_part_b_left_for_later_is_incorrect_not_correct(tmp_path):
    solution_a = next(c for c in _code(DRILL.solution_path) if "class TimedApproval" in c)
    stub = copy_of(DRILL.drill_path, tmp_path)
    stub_a = next(c for c in _code(stub) if "class TimedApproval" in c)
    report = check_notebook(with_cell_replaced(stub, tmp_path, stub_a, solution_a))
    statuses = {r.check.name: r.status for r in report.results}
    assert [statuses[name] for name in PART_A] == [PASS] * len(PART_A)
    assert [statuses[name] for name in PART_B] == [NOT_ATTEMPTED] * len(PART_B)
    assert report.status == INCORRECT


def _code(path) -> list[str]:
    import json

    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
