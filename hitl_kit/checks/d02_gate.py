"""Drill 2: put an interrupt() gate in front of every data-modifying tool.

The learner writes ``needs_approval(tool_name)``, a ``review`` node and
``build_gated_agent(world, checkpointer, model)``. The checks drive the learner's graph with the
offline model and a fresh demo world, and count what really ran.
"""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from hitl_kit.llm import OfflineChatModel
from hitl_kit.selfcheck import Check, Drill
from hitl_kit.world import World

READS = ("find_customers", "read_customer")
WRITES = ("update_customer", "delete_customer")
APPROVE = {"decision": "approved", "approver": "ana"}
REJECT = {"decision": "rejected", "approver": "ana"}


def _start(ns: dict, task: str, thread: str = "check"):
    """A fresh world and the learner's graph, run on ``task`` until it ends or pauses."""
    world = World()
    graph = ns["build_gated_agent"](world, InMemorySaver(), OfflineChatModel())
    config = {"configurable": {"thread_id": thread}}
    result = graph.invoke({"task": task}, config)
    return world, graph, config, result


def _values(payload) -> list:
    if isinstance(payload, dict):
        return [payload, *[v for value in payload.values() for v in _values(value)]]
    return [payload]


def modifying_tools_need_approval(ns: dict) -> None:
    needs_approval = ns["needs_approval"]
    wrong = [f"needs_approval({t!r}) is {needs_approval(t)!r}, should be True" for t in WRITES
             if needs_approval(t) is not True]
    wrong += [f"needs_approval({t!r}) is {needs_approval(t)!r}, should be False" for t in READS
              if needs_approval(t) is not False]
    if needs_approval("merge_customers") is not True:
        wrong.append("needs_approval('merge_customers') should be True: a tool nobody "
                     "classified needs a human (fail closed)")
    assert not wrong, "\n".join(wrong)


def read_only_tasks_do_not_pause(ns: dict) -> None:
    for task in ("read customer 2", 'find customers matching "Grace"'):
        world, graph, config, result = _start(ns, task)
        assert "__interrupt__" not in result, f"{task!r} paused, but it only reads"
        stopped_at = graph.get_state(config).next
        assert not stopped_at, (f"{task!r} stopped before {stopped_at} without an interrupt(): "
                                "a static breakpoint (interrupt_before) stops every task")
        ran = sum(world.calls[t] for t in READS)
        assert ran == 1, f"{task!r} should run its read once; tool runs: {dict(world.calls)}"


def modifying_task_pauses_with_action_and_args(ns: dict) -> None:
    for task, tool, args in (("delete customer 4", "delete_customer", {"customer_id": 4}),
                             ('update customer 2 plan "enterprise"', "update_customer",
                              {"customer_id": 2, "field": "plan", "value": "enterprise"})):
        world, graph, config, result = _start(ns, task)
        stopped_at = graph.get_state(config).next
        assert "__interrupt__" in result, (
            f"{task!r} stopped before {stopped_at} but no interrupt() ran, so no payload reached "
            "the approver (a static breakpoint?)" if stopped_at
            else f"{task!r} ran without pausing for approval")
        payload = result["__interrupt__"][0].value
        values = _values(payload)
        assert tool in values and args in values, (
            f"the payload {payload!r} should include the action ({tool!r}) and its arguments "
            f"({args!r})")
        assert world.calls[tool] == 0, f"{tool} already ran before anyone approved it"


def approve_executes_exactly_once(ns: dict) -> None:
    world, graph, config, _ = _start(ns, "delete customer 4")
    graph.invoke(Command(resume=APPROVE), config)
    assert world.calls["delete_customer"] == 1, (
        f"delete_customer ran {world.calls['delete_customer']} times after one approval "
        "(expected once: is there a side effect before interrupt()? the node re-runs on resume)")
    assert 4 not in [c["id"] for c in world.rows("customers")], "customer 4 was not deleted"


def reject_executes_nothing(ns: dict) -> None:
    world, graph, config, _ = _start(ns, "delete customer 4")
    graph.invoke(Command(resume=REJECT), config)
    assert world.calls["delete_customer"] == 0, "a rejected delete_customer ran anyway"
    assert len(world.rows("customers")) == 4


def resuming_twice_does_not_execute_twice(ns: dict) -> None:
    world, graph, config, _ = _start(ns, "delete customer 4")
    graph.invoke(Command(resume=APPROVE), config)
    graph.invoke(Command(resume=APPROVE), config)
    assert world.calls["delete_customer"] == 1, (
        f"two resumes ran delete_customer {world.calls['delete_customer']} times")


DRILL = Drill(
    key="drill2",
    title="Drill 2: gate the data-modifying tools with interrupt()",
    notebook="02_gate_with_interrupt.ipynb",
    checks=[
        Check("data-modifying tools need approval, reads don't, unknown tools do",
              modifying_tools_need_approval,
              "Look at each tool's metadata['reversibility'], or list the writes; a name you "
              "have never seen should get True."),
        Check("read-only tasks finish without pausing", read_only_tasks_do_not_pause,
              "review should call interrupt() only when needs_approval(...) is True; otherwise "
              "return an auto-approved decision."),
        Check("a modifying task pauses with the action and its arguments in the payload",
              modifying_task_pauses_with_action_and_args,
              "interrupt() takes the payload: put the tool name and the call's args in it, "
              "e.g. {'action': call['name'], 'args': call['args']}."),
        Check("approve executes exactly once", approve_executes_exactly_once,
              "On resume the review node runs again from its first line: do nothing with a side "
              "effect before interrupt(). Return the resume value as the decision."),
        Check("reject executes nothing", reject_executes_nothing,
              "execute runs only an approved or auto-approved call; make sure review returns the "
              "human's decision unchanged."),
        Check("resuming twice does not execute twice", resuming_twice_does_not_execute_twice,
              "After the graph has finished, another resume must not reach execute again: keep "
              "plan -> review -> execute -> END, no loop back."),
    ],
)
