"""What only the middleware has: LangChain's decision format, LangChain's tool node and the
other middleware around the tool, and an agent started the LangChain way. Everything the two
kinds of agent share (races, crashes, deadlines, roles, two people, the audit trail, the
channels) is tested once for both: see ``agent_kind`` in ``conftest.py``."""

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain.tools import ToolRuntime
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from hitl_kit.approval import ApprovalError, durable_checkpointer
from hitl_kit.llm import OfflineChatModel
from hitl_kit.middleware import ApprovalMiddleware, create_approval_agent

TWO = 'delete thread 2; send a reply to thread 3 saying "ok"'


@pytest.fixture
def agent(world):
    return create_approval_agent(OfflineChatModel(), world.tools(), world=world)


def answers(agent, thread_id) -> dict[str, str]:
    messages = agent.graph.get_state(agent.config(thread_id)).values["messages"]
    return {m.name: m.content for m in messages if isinstance(m, ToolMessage)}


def test_langchains_decisions_are_matched_to_the_calls_in_the_order_proposed(agent, world):
    outcome = agent.start(TWO, "t")
    assert [p.request.tool for p in outcome.pending] == ["delete_thread", "send_reply"]
    agent.resume("t", {"decisions": [{"type": "reject", "message": "keep it"},
                                     {"type": "approve"}]}, approver="ana")
    assert world.count("threads") == 4 and world.count("outbox") == 1
    assert answers(agent, "t")["delete_thread"] == "Rejected by ana: keep it"


def test_langchains_decision_keyed_by_interrupt_id(agent, world):
    pending = {p.request.tool: p for p in agent.start(TWO, "t").pending}
    agent.resume("t", {pending["send_reply"].interrupt_id: {"type": "approve"}}, approver="ana")
    assert [p.request.tool for p in agent.pending("t")] == ["delete_thread"]
    assert world.count("outbox") == 0  # no call of a turn runs while another waits
    agent.resume("t", {pending["delete_thread"].interrupt_id: {"type": "reject"}}, approver="bo")
    assert world.count("outbox") == 1 and world.count("threads") == 4


@pytest.mark.parametrize("late", [{"decisions": [{"type": "reject"}]}, {"type": "reject"}])
def test_a_langchain_decision_that_comes_too_late_is_told_who_decided(agent, world, late):
    agent.start("delete customer 3", "t")
    agent.resume("t", {"decisions": [{"type": "approve"}]}, approver="ana")
    with pytest.raises(ApprovalError, match=r"nothing pending.*decided by ana \(approved\)"):
        agent.resume("t", late, approver="bo")
    assert world.calls["delete_customer"] == 1


def test_a_langchain_edit_is_shown_again_before_it_runs(agent, world):
    agent.start("delete customer 3", "t")
    [again] = agent.resume("t", {"type": "edit", "edited_action": {
        "name": "delete_customer", "args": {"customer_id": 4}}}, approver="ana").pending
    assert again.request.args == {"customer_id": 4} and again.request.edited_by == "ana"
    assert world.calls["delete_customer"] == 0
    agent.resume("t", {"type": "approve"}, approver="bo")
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]


@pytest.mark.parametrize(("decisions", "approver", "message"), [
    ({"decisions": [{"type": "approve"}]}, "ana", "1 decision.s. for 2 pending"),
    ({"decisions": [{"type": "approve"}, {"type": "approve"}]}, None, "names no approver"),
    ({"decisions": [{"type": "respond", "message": "done"}, {"type": "approve"}]}, "ana",
     "'respond' answers in the tool's place"),
    ({"decisions": [{"type": "maybe"}, {"type": "approve"}]}, "ana", "type 'maybe' is unknown"),
    ({"decisions": [{"type": "approve", "message": "sure"}, {"type": "approve"}]}, "ana",
     "has no key"),
    ({"decisions": [{"type": "edit", "edited_action": {"name": "archive_thread",
                                                       "args": {"thread_id": 2}}},
                    {"type": "approve"}]}, "ana", "an edit keeps the tool"),
    ({"decisions": [{"type": "edit", "edited_action": {"args": {}}}, {"type": "approve"}]},
     "ana", "edited_action is"),
    ({"decisions": "approve"}, "ana", "one per pending call"),
    ({"type": "approve"}, "ana", "2 calls are pending"),
    ({"kind": "approve", "approver": "ana"}, "ana", "approver= is for LangChain's"),
])
def test_bad_langchain_decisions_are_refused_and_nothing_runs(agent, world, decisions,
                                                              approver, message):
    agent.start(TWO, "t")
    with pytest.raises(ApprovalError, match=message):
        agent.resume("t", decisions, approver=approver)
    assert world.count("threads") == 4 and world.count("outbox") == 0
    assert agent.ledger.claims.listed() == [] and len(agent.pending("t")) == 2


def test_the_tool_runs_through_langchains_tool_node_and_the_middleware_after(world):
    seen = []

    @tool
    def note(text: str, runtime: ToolRuntime) -> str:
        """Note a text down."""
        return f"noted {text} in call {runtime.tool_call_id}"

    class Watch(AgentMiddleware):
        def wrap_tool_call(self, request, handler):
            seen.append(request.tool_call["name"])
            return handler(request)

    tools = [*world.tools(), note]
    agent = create_approval_agent(OfflineChatModel(), tools, world=world, middleware=(Watch(),))
    [pending] = agent.start('note the text "hello"', "t").pending
    assert pending.request.policy == "hard_gate"  # nobody classified it: fail closed
    assert seen == []  # nothing inside the gate ran before the decision
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert seen == ["note"]
    assert answers(agent, "t")["note"] == f"noted hello in call {pending.request.tool_call_id}"


def test_an_agent_invoked_the_langchain_way_is_decided_through_the_kit(world, tmp_path):
    checkpointer = durable_checkpointer(str(tmp_path / "checkpoints.db"))
    gate = ApprovalMiddleware(world.tools(), world=world)
    graph = create_agent(OfflineChatModel(), world.tools(), middleware=[gate],
                         checkpointer=checkpointer)
    agent = gate.agent(graph)
    assert agent.ledger.where.endswith("checkpoints.db")  # the ledger beside the checkpoints
    graph.invoke({"messages": [{"role": "user", "content": "delete customer 3"}],
                  "requested_by": "rita"}, agent.config("t"))
    [pending] = agent.pending("t")
    assert (pending.request.task, pending.request.requested_by) == ("delete customer 3", "rita")
    with pytest.raises(ApprovalError, match="asked for this task"):
        agent.resume("t", {"kind": "approve", "approver": "Rita"})
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]


def test_binding_a_graph_that_cannot_gate_is_refused(world):
    gate = ApprovalMiddleware(world.tools(), world=world)
    ungated = create_agent(OfflineChatModel(), world.tools(), checkpointer=InMemorySaver())
    with pytest.raises(ValueError, match="does not gate with ApprovalMiddleware"):
        gate.agent(ungated)
    forgetful = create_agent(OfflineChatModel(), world.tools(), middleware=[gate])
    with pytest.raises(ValueError, match="no checkpointer"):
        gate.agent(forgetful)
