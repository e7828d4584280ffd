"""The approval graph: what pauses, what runs, how often, and what is refused."""

import json
import subprocess
import sys
from collections import Counter

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool

from hitl_kit import graph
from hitl_kit.approval import ApprovalError, Decision, durable_checkpointer
from hitl_kit.llm import OfflineChatModel

from .conftest import agent_of_kind

APPROVE = {"kind": "approve", "approver": "ana"}


@pytest.fixture
def agent(world, agent_kind):
    """The agent of each kind on the world, with the offline model and MemorySaver."""
    return agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world)


def tool_messages(agent, thread_id):
    state = agent.graph.get_state({"configurable": {"thread_id": thread_id}})
    return [m for m in state.values["messages"] if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("task", ["read the inbox", 'search mail for "invoice"',
                                  "find customers named Grace", "read customer 2",
                                  'draft a reply to thread 3 saying "yes"'])
def test_read_only_tasks_finish_without_pausing(agent, task):
    outcome = agent.start(task, "t")
    assert not outcome.paused and outcome.answer
    assert all(d.verdict == "auto-approved" and d.decision.approver == "auto"
               for d in outcome.decisions)


def test_a_delete_pauses_with_context_not_just_the_action(agent, world):
    outcome = agent.start("Delete the test customer record", "t")
    assert outcome.paused and len(outcome.pending) == 1
    request = outcome.pending[0].request
    assert request.task == "Delete the test customer record"
    assert (request.tool, request.args) == ("delete_customer", {"customer_id": 3})
    assert request.target["customer"]["name"] == "Test Customer"
    assert request.reversibility == "irreversible_high" and request.risk == "high"
    assert request.policy == "hard_gate"
    assert "delete_customer(customer_id=3) runs" in request.on_approve
    assert "Nothing runs" in request.on_reject
    assert world.calls["delete_customer"] == 0
    assert world.calls["find_customers"] == 1  # the lookup ran: it is read-only


def test_approve_executes_exactly_once_though_the_gate_reruns(agent, world, monkeypatch):
    gate_runs = Counter()
    original = graph.interrupt  # only the gate asks

    def counting_interrupt(*args, **kwargs):
        gate_runs["gate"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(graph, "interrupt", counting_interrupt)
    outcome = agent.start("Delete the test customer record", "t")
    outcome = agent.resume("t", APPROVE)
    assert not outcome.paused
    assert gate_runs["gate"] == 2  # the gate node ran again from its first line on resume
    assert world.calls["delete_customer"] == 1
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]
    last = outcome.decisions[-1]
    assert (last.request.tool, last.verdict, last.decision.approver) == (
        "delete_customer", "approved", "ana")


def test_reject_executes_nothing_and_the_reason_reaches_the_model(agent, world):
    agent.start("Delete the test customer record", "t")
    outcome = agent.resume("t", {"kind": "reject", "approver": "bo", "reason": "QA still uses it"})
    assert world.calls["delete_customer"] == 0
    assert len(world.rows("customers")) == 4
    rejection = tool_messages(agent, "t")[-1]
    assert rejection.content == "Rejected by bo: QA still uses it" and rejection.status == "error"
    assert "QA still uses it" in outcome.answer


def test_resuming_twice_does_not_execute_twice(agent, world):
    agent.start("Delete the test customer record", "t")
    agent.resume("t", APPROVE)
    with pytest.raises(ApprovalError, match="nothing pending"):
        agent.resume("t", APPROVE)
    assert world.calls["delete_customer"] == 1


def test_unknown_thread_is_an_error_not_a_fresh_run(agent, world):
    with pytest.raises(ApprovalError, match="no thread 'typo'"):
        agent.resume("typo", APPROVE)
    assert sum(world.calls.values()) == 0


def test_starting_an_existing_thread_is_refused(agent):
    agent.start("read the inbox", "t")
    with pytest.raises(ApprovalError, match="already exists"):
        agent.start("read the inbox", "t")


@pytest.mark.parametrize(("decision", "message"), [
    ({"kind": "maybe", "approver": "ana"}, "kind 'maybe' is unknown"),
    ({"kind": "approve"}, "'approver' is missing"),
    ({"kind": "approve", "approver": "  "}, "must name its approver"),
    ("approved", "a decision is a dict"),
    ({"kind": "edit", "approver": "ana"}, "needs 'args'"),
    ({"kind": "edit", "approver": "ana", "args": {"customer_id": "three"}}, "invalid"),
    ({"kind": "edit", "approver": "ana", "args": {"customer_id": 3, "cascade": True}},
     "no argument"),
    ({"kind": "reject", "approver": "ana", "reason": 42}, "reason: Input should be a valid"),
    ({"kind": "approve", "approver": "ana", "role": "admin"}, "the kit fills"),
    ({"kind": "approve", "approver": "ana", "approvals": []}, "the kit fills"),
])
def test_malformed_decisions_are_refused_and_nothing_runs(agent, world, decision, message):
    first = agent.start("Delete the test customer record", "t")
    with pytest.raises(ApprovalError, match=message):
        agent.resume("t", decision)
    assert world.calls["delete_customer"] == 0
    still = agent.pending("t")
    assert [p.interrupt_id for p in still] == [p.interrupt_id for p in first.pending]
    agent.resume("t", APPROVE)  # the thread is not poisoned: a good answer still works
    assert world.calls["delete_customer"] == 1


def test_edit_is_shown_again_then_runs_with_the_new_arguments(agent, world):
    agent.start("Delete the test customer record", "t")
    outcome = agent.resume("t", {"kind": "edit", "approver": "ana", "args": {"customer_id": 4}})
    assert outcome.paused and world.calls["delete_customer"] == 0
    request = outcome.pending[0].request
    assert request.args == {"customer_id": 4} and request.edited_by == "ana"
    assert request.target["customer"]["name"] == "Alan Turing"
    agent.resume("t", Decision(kind="approve", approver="ana"))
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]
    assert tool_messages(agent, "t")[-1].content.startswith("Edited by ana")


def test_several_calls_in_one_turn_are_pending_and_resolved_independently(agent, world):
    outcome = agent.start('archive thread 1; delete thread 2; send a reply to thread 3 saying "ok"',
                          "t")
    assert world.calls["archive_thread"] == 0  # nothing in the turn runs while any is pending
    by_tool = {p.request.tool: p.interrupt_id for p in outcome.pending}
    assert set(by_tool) == {"delete_thread", "send_reply"}
    assert agent.pending("t")[0].request.policy in ("hard_gate", "soft_gate")
    with pytest.raises(ApprovalError, match="2 approvals are pending"):
        agent.resume("t", APPROVE)
    outcome = agent.resume("t", {by_tool["send_reply"]: APPROVE})
    assert [p.request.tool for p in outcome.pending] == ["delete_thread"]
    assert world.calls["send_reply"] == 0  # the turn runs when all of its approvals are in
    with pytest.raises(ApprovalError, match="not pending"):
        agent.resume("t", {by_tool["send_reply"]: APPROVE})
    outcome = agent.resume("t", {by_tool["delete_thread"]: {"kind": "reject", "approver": "ana"}})
    assert not outcome.paused
    assert (world.calls["archive_thread"], world.calls["send_reply"],
            world.calls["delete_thread"]) == (1, 1, 0)


def test_an_unclassified_tool_is_hard_gated(world, agent_kind):
    launched = []

    def launch_rocket(target: str) -> str:
        """Launch a rocket at a target."""
        launched.append(target)
        return f"launched at {target}"

    launch = StructuredTool.from_function(launch_rocket)
    agent = agent_of_kind(agent_kind)(OfflineChatModel(), [*world.tools(), launch], world=world)
    outcome = agent.start('launch the rocket at "the moon"', "t")
    assert outcome.paused and launched == []
    request = outcome.pending[0].request
    assert request.reversibility == "unclassified" and request.policy == "hard_gate"
    assert "unclassified" in request.why_gated and request.risk == "high"


def test_soft_gate_pauses_with_its_policy(agent):
    outcome = agent.start('send a reply to thread 3 saying "see you"', "t")
    assert outcome.pending[0].request.policy == "soft_gate"
    assert outcome.pending[0].request.risk == "medium"


def test_world_errors_reach_the_model_as_tool_errors(agent, world):
    agent.start("delete customer 99", "t")
    outcome = agent.resume("t", APPROVE)
    assert "no customer with id 99" in outcome.answer
    assert tool_messages(agent, "t")[-1].status == "error"


DURABLE_SCRIPT = """
import json, sys
from hitl_kit.approval import ApprovalAgent, durable_checkpointer
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World
step, checkpoints, world_db = sys.argv[1:4]
world = World(world_db)
agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
                      checkpointer=durable_checkpointer(checkpoints))
if step == "start":
    outcome = agent.start("Delete the test customer record", "durable-1")
else:
    outcome = agent.resume("durable-1", {"kind": "approve", "approver": "ana"})
print(json.dumps({"paused": outcome.paused, "ids": [c["id"] for c in world.rows("customers")]}))
"""


def test_sqlite_saver_resumes_a_paused_thread_in_another_process(tmp_path):
    def run(step):
        out = subprocess.run([sys.executable, "-c", DURABLE_SCRIPT, step,
                              str(tmp_path / "checkpoints.db"), str(tmp_path / "world.db")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run("start") == {"paused": True, "ids": [1, 2, 3, 4]}
    assert run("resume") == {"paused": False, "ids": [1, 2, 4]}


def test_durable_checkpointer_works_in_process(tmp_path, world, agent_kind):
    agent = agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world,
                                      checkpointer=durable_checkpointer(str(tmp_path / "c.db")))
    assert agent.start("delete customer 4", "t").paused
    assert not agent.resume("t", APPROVE).paused
    assert world.calls["delete_customer"] == 1


def test_every_proposed_action_is_audited_at_proposal_and_resolution(tmp_path, world,
                                                                      agent_kind):
    from hitl_kit.audit import AuditTrail

    trail = AuditTrail(tmp_path / "audit.db", durable=False)
    agent = agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world,
                                      audit=trail)
    agent.start("Delete the test customer record", "t")
    rows = trail.rows()
    assert [(r["action_type"], r["event"]) for r in rows] == [
        ("find_customers", "proposed"), ("find_customers", "resolved"),
        ("delete_customer", "proposed")]
    assert rows[1]["decision"] == "auto-approved" and rows[1]["approver_id"] == "auto"
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    agent.start("delete customer 1", "t2")
    agent.resume("t2", {"kind": "reject", "approver": "bo", "reason": "key account"})
    rows = trail.rows()
    resolved = [r for r in rows if r["event"] == "resolved"]
    summary = [(r["action_type"], r["decision"], r["approver_id"], r["outcome"]) for r in resolved]
    assert summary == [
        ("find_customers", "auto-approved", "auto", "success"),
        ("delete_customer", "approved", "ana", "success"),
        ("delete_customer", "rejected", "bo", "not_executed")]
    assert resolved[2]["reason"] == "key account" and resolved[2]["executed_at"] is None
    delete = [r for r in rows if r["action_type"] == "delete_customer"]
    assert delete[0]["proposed_at"] == delete[1]["proposed_at"] < delete[1]["executed_at"]
    assert json.loads(delete[1]["parameters"]) == {"customer_id": 3}
    assert trail.verify().ok and len(rows) == 6  # no duplicates though the gate re-ran


def test_a_malformed_raw_resume_is_refused_by_the_interrupt_and_stays_pending(agent, world):
    from langgraph.types import Command
    from pydantic import ValidationError

    outcome = agent.start("delete customer 4", "t")
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(ValidationError):
        agent.graph.invoke(Command(resume={outcome.pending[0].interrupt_id: {"kind": "yes"}}),
                           config)
    assert [p.key for p in agent.pending("t")] == [p.key for p in outcome.pending]
    assert world.calls["delete_customer"] == 0
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert world.calls["delete_customer"] == 1


@pytest.mark.parametrize("raw", [
    {"kind": "approve", "approver": "ana"},
    {"kind": "proceed", "approver": "system", "channel": "timer"},
    {"kind": "timeout", "approver": "system", "channel": "timer"},
])
def test_a_raw_command_that_skipped_the_ledger_runs_nothing_and_is_asked_again(agent, world, raw):
    from langgraph.types import Command

    outcome = agent.start("delete customer 4", "t")
    config = {"configurable": {"thread_id": "t"}}
    agent.graph.invoke(Command(resume={outcome.pending[0].interrupt_id: raw}), config)
    again = agent.pending("t")
    assert len(again) == 1 and "did not come through the decision ledger" in again[0].request.error
    assert world.calls["delete_customer"] == 0
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert world.calls["delete_customer"] == 1
