"""Drill 2's checks catch the mistakes a reviewer would: each wrong variant of the solution fails
the check that names its mistake, and only that one."""

import pytest

from hitl_kit.checks import get_drill
from hitl_kit.selfcheck import FAIL, check_notebook

from .conftest import with_cell_replaced

SOLUTION = get_drill("drill2").solution_path

MISTAKES = [
    pytest.param('return tool_name not in READ_ONLY',
                 'return tool_name in {"update_customer", "delete_customer"}',
                 ["data-modifying tools need approval, reads don't, unknown tools do"],
                 "merge_customers", id="fails-open-for-unknown-tools"),
    pytest.param('"args": call["args"],', '',
                 ["a modifying task pauses with the action and its arguments in the payload"],
                 "should include the action", id="payload-without-arguments"),
    pytest.param('return {"decision": decision}',
                 'return {"decision": {"decision": "approved", "approver": "agent"}}',
                 ["reject executes nothing"], "rejected delete_customer ran",
                 id="ignores-the-human"),
    pytest.param('builder.add_edge("review", "execute")\n    builder.add_edge("execute", END)\n'
                 '    return builder.compile(checkpointer=checkpointer)',
                 'builder.add_edge("review", "execute")\n    builder.add_edge("execute", END)\n'
                 '    return builder.compile(checkpointer=checkpointer,\n'
                 '                           interrupt_before=["review"])',
                 ["read-only tasks finish without pausing",
                  "a modifying task pauses with the action and its arguments in the payload"],
                 "a static breakpoint", id="static-breakpoint"),
]


@pytest.mark.parametrize(("old", "new", "failing", "message"), MISTAKES)
def test_each_mistake_fails_the_check_that_names_it(tmp_path, old, new, failing, message):
    report = check_notebook(with_cell_replaced(SOLUTION, tmp_path, old, new))
    failed = [r for r in report.results if r.status == FAIL]
    assert [r.check.name for r in failed] == failing, str(report)
    assert any(message in r.message for r in failed), str(report)


def test_a_side_effect_before_the_pause_is_caught(tmp_path):
    wrong = with_cell_replaced(
        SOLUTION, tmp_path,
        'builder.add_node("review", review)\n'
        '    builder.add_node("execute", make_execute(world))\n'
        '    builder.add_edge(START, "plan")\n    builder.add_edge("plan", "review")\n'
        '    builder.add_edge("review", "execute")\n    builder.add_edge("execute", END)',
        # "ask for forgiveness": the rubber stamp lets execute run, and review asks afterwards
        'builder.add_node("review", review)\n'
        '    builder.add_node("execute", make_execute(world))\n'
        '    builder.add_node("rubber_stamp", rubber_stamp)\n    builder.add_edge(START, "plan")\n'
        '    builder.add_edge("plan", "rubber_stamp")\n'
        '    builder.add_edge("rubber_stamp", "execute")\n'
        '    builder.add_edge("execute", "review")\n    builder.add_edge("review", END)')
    report = check_notebook(wrong)
    failed = {r.check.name: r.message for r in report.results if r.status == FAIL}
    assert "already ran before anyone approved it" in failed[
        "a modifying task pauses with the action and its arguments in the payload"]
