"""Drill 3 half done: the schema is checked while log_action is still the stub; a schema of
only comments is not attempted. The mistakes themselves are in tests/mutants/drill3.py."""

import json

import pytest

from hitl_kit.course.checks import check_notebook, get_drill
from hitl_kit.course.checks.d03_audit import every_field_is_a_text_column
from hitl_kit.course.selfcheck import NOT_ATTEMPTED, PASS, NotAttempted

from .conftest import copy_of, with_cell_replaced

DRILL = get_drill("drill3")
SCHEMA_CHECKS = [chk.name for chk in DRILL.checks[:4]]
LOG_ACTION_CHECKS = [chk.name for chk in DRILL.checks[4:]]


def code_cells(path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_schema_done_and_log_action_still_a_stub(tmp_path):
    drill = copy_of(DRILL.drill_path, tmp_path)
    solved_schema = next(c for c in code_cells(DRILL.solution_path)
                         if c.startswith('SCHEMA = """\nCREATE'))
    stub_schema = next(c for c in code_cells(drill) if c.startswith("SCHEMA = "))
    report = check_notebook(with_cell_replaced(drill, tmp_path, stub_schema, solved_schema))
    statuses = {r.check.name: r.status for r in report.results}
    assert [name for name, status in statuses.items() if status == PASS] == SCHEMA_CHECKS
    assert [name for name, status in statuses.items() if status == NOT_ATTEMPTED] == (
        LOG_ACTION_CHECKS), str(report)


@pytest.mark.parametrize("value", ["", "-- only a comment\n/* and another */"])
def test_a_schema_of_only_comments_is_not_attempted(value):
    with pytest.raises(NotAttempted):
        every_field_is_a_text_column({"SCHEMA": value})
