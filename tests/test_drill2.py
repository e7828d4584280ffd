"""Drill 2 half done: what is written is checked, what is still the stub reads "not attempted",
and a review node that never returns ends the check with a message naming it."""

from hitl_kit.course.checks import check_notebook, get_drill
from hitl_kit.course.selfcheck import FAIL, INCORRECT, NOT_ATTEMPTED, PASS, code_of_cells, run_cells

from .conftest import copy_of, with_cell_replaced
from .mutants import solution_cells

DRILL = get_drill("drill2")
NEEDS = DRILL.checks[0].name
STUB_NEEDS = "False for reads.\n    raise NotImplementedError"


def test_needs_approval_written_and_review_still_a_stub(tmp_path):
    written = 'False for reads.\n    return tool_name not in {"find_customers", "read_customer"}'
    half = with_cell_replaced(copy_of(DRILL.drill_path, tmp_path), tmp_path, STUB_NEEDS,
                              written)
    report = check_notebook(half)
    statuses = {r.check.name: r.status for r in report.results}
    assert statuses.pop(NEEDS) == PASS
    assert set(statuses.values()) == {NOT_ATTEMPTED}, str(report)
    assert report.status == INCORRECT
    stubs = {r.message for r in report.results if r.status == NOT_ATTEMPTED}
    assert stubs <= {"build_gated_agent still raises NotImplementedError",
                     "`build_gated_agent` still raises NotImplementedError",
                     "`review` still raises NotImplementedError"}, stubs


def test_a_review_node_that_never_returns_is_named():
    # It hangs without burning a core: the checks that must still pass run beside the hung
    # ones, and spinning children would starve them on a busy machine.
    cells = [(n, src.replace("    call = state.get(\"call\")",
                             "    while True:\n        __import__('time').sleep(1)\n"
                             "    call = state.get(\"call\")"))
             for n, src in solution_cells("drill2")]
    namespace = {"__name__": "__drill__"}
    assert run_cells(code_of_cells(cells, "hanging-review"), namespace) == []
    report = DRILL.run(namespace, timeout=5.0)
    hung = [r for r in report.results if r.status == FAIL]
    assert hung and all(r.message.startswith("your code did not finish within 5 s (in `review`")
                        for r in hung), str(report)
    assert {r.check.name for r in report.results if r.status == PASS} == {NEEDS}
