"""What the approver saw is what runs, and whatever a model or a caller sends is refused or
neutralised (issue 11's attacks on the core; the audit trail's and the channels' have their own
files). Each test here failed before the fix it covers."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from hitl_kit.approval import ApprovalAgent, ApprovalError, ModelError
from hitl_kit.audit import AuditTrail
from hitl_kit.contract import as_decision
from hitl_kit.llm import OfflineChatModel, get_chat_model
from hitl_kit.render import payload_rows
from hitl_kit.world import World

from .conftest import tally
from .openai_stub import OpenAIStub

APPROVE = {"kind": "approve", "approver": "ana"}
REJECT = {"kind": "reject", "approver": "ana", "reason": "not like that"}


def tool_messages(agent, thread_id) -> list[ToolMessage]:
    state = agent.graph.get_state({"configurable": {"thread_id": thread_id}})
    return [m for m in state.values["messages"] if isinstance(m, ToolMessage)]


# -- approved is not what ran ---------------------------------------------------------------------

class ScriptedModel(BaseChatModel):
    """A chat model that answers from a script of AIMessages (the last one repeated)."""

    script: list

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        turn = sum(isinstance(m, AIMessage) for m in messages)
        reply = self.script[min(turn, len(self.script) - 1)]
        return ChatResult(generations=[ChatGeneration(message=reply)])


def scripted(*replies: AIMessage, world: World | None = None, **kwargs):
    world = world or World()
    agent = ApprovalAgent(ScriptedModel(script=list(replies)), world.tools(), world=world,
                          **kwargs)
    return world, agent


def call(name: str, args, call_id: str = "call_1") -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


DONE = AIMessage(content="done")
UPGRADE = 'set the plan of customer 3 to "enterprise"'


def test_an_argument_the_tool_does_not_take_is_shown_and_blocks_approval():
    world, agent = scripted(call("delete_customer", {"customer_id": 3, "dry_run": True}), DONE)
    [pending] = agent.start("tidy up", "t").pending
    problem = pending.request.problem
    assert "dry_run" in problem and "no argument" in problem
    assert dict(payload_rows(pending.request))["CANNOT BE APPROVED"] == problem
    with pytest.raises(ApprovalError, match="cannot be approved as it stands"):
        agent.resume("t", APPROVE)
    assert world.calls["delete_customer"] == 0 and len(world.rows("customers")) == 4
    [edited] = agent.resume("t", {"kind": "edit", "approver": "ana",
                                  "args": {"customer_id": 3}}).pending
    assert edited.request.problem is None and edited.request.args == {"customer_id": 3}
    agent.resume("t", APPROVE)
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]


def test_a_tool_that_needs_no_human_does_not_run_with_arguments_it_does_not_take():
    world, agent = scripted(call("read_customer", {"customer_id": 3, "reveal_all": True}), DONE)
    outcome = agent.start("look", "t")
    assert not outcome.paused and world.calls["read_customer"] == 0
    [message] = tool_messages(agent, "t")
    assert message.status == "error" and "reveal_all" in message.content


@pytest.mark.parametrize("decision", [
    {**APPROVE, "args": {"customer_id": 4}},
    {**APPROVE, "tool": "delete_thread"},
    {**APPROVE, "foo": 1},
    {**REJECT, "args": {}},
])
def test_a_decision_with_keys_it_may_not_hold_is_refused(agent, world, decision):
    agent.start("delete customer 3", "t")
    with pytest.raises(ApprovalError, match="no key|only an edit has them"):
        agent.resume("t", decision)
    assert world.calls["delete_customer"] == 0 and agent.ledger.claims.listed() == []


def test_the_record_changing_after_the_card_was_shown_asks_again(agent, world):
    [shown] = agent.start("delete customer 3", "t").pending
    assert shown.request.target["customer"]["plan"] == "trial"
    agent.start(UPGRADE, "upgrade")  # auto, with logging
    assert world.rows("customers")[2]["plan"] == "enterprise"
    with pytest.raises(ApprovalError, match="changed since it was shown"):
        agent.resume("t", {**APPROVE, "fingerprint": shown.fingerprint})
    assert world.calls["delete_customer"] == 0
    [again] = agent.pending("t")
    assert again.fingerprint != shown.fingerprint
    assert again.request.target["customer"]["plan"] == "enterprise"
    assert "changed" in again.request.error
    agent.resume("t", {**APPROVE, "fingerprint": again.fingerprint})  # approved as it is now
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]


def test_a_record_changed_after_approval_but_before_execution_is_not_touched(tmp_path):
    trail = AuditTrail(tmp_path / "audit.db", durable=False)
    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, audit=trail)
    outcome = agent.start("delete customer 3; delete thread 2", "t")
    ids = {p.request.tool: p.interrupt_id for p in outcome.pending}
    agent.resume("t", {ids["delete_customer"]: APPROVE})  # waits for the other approval
    agent.start(UPGRADE, "upgrade")
    outcome = agent.resume("t", {ids["delete_thread"]: APPROVE})  # now the turn runs
    assert world.calls["delete_customer"] == 0 and len(world.rows("customers")) == 4
    assert world.calls["delete_thread"] == 1
    [again] = outcome.pending  # shown again, with what it touches now and why
    assert again.request.tool == "delete_customer" and again.request.revision == 1
    assert again.request.target["customer"]["plan"] == "enterprise"
    assert "changed after the approval" in again.request.error
    [row] = [r for r in trail.rows() if r["event"] == "refused"
             and r["action_type"] == "delete_customer"]
    assert row["approver_id"] == "ana" and "changed after the approval" in row["reason"]
    agent.resume("t", {"kind": "reject", "approver": "ana", "reason": "it is a key account now"})
    assert world.calls["delete_customer"] == 0 and trail.verify().ok


# -- model output ---------------------------------------------------------------------------------

@pytest.fixture
def openai_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.setenv("HITL_KIT_OPENAI_MODEL", "gpt-stub-1")
    monkeypatch.setenv("HITL_KIT_OPENAI_RETRIES", "0")
    monkeypatch.setenv("HITL_KIT_OPENAI_TIMEOUT", "5")

    def agent_on(stub: OpenAIStub, **kwargs):
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        world = World()
        return world, ApprovalAgent(get_chat_model(), world.tools(), world=world, **kwargs)

    return agent_on


MALFORMED = {"name": "delete_customer", "arguments": '{"customer_id": 3', "id": "call_bad"}
NOT_AN_OBJECT = {"name": "delete_customer", "arguments": "[3]", "id": "call_list"}


@pytest.mark.parametrize("bad", [MALFORMED, NOT_AN_OBJECT], ids=["malformed JSON", "[3]"])
def test_a_malformed_call_is_shown_answered_and_never_dropped(openai_env, bad):
    script = [{"tool_calls": [bad]}, {"text": "understood"}]
    with OpenAIStub(script=script) as stub:
        world, agent = openai_env(stub)
        [pending] = agent.start("delete the test customer", "t").pending
        assert "JSON" in pending.request.problem and pending.request.args == bad["arguments"]
        with pytest.raises(ApprovalError, match="cannot be approved"):
            agent.resume("t", APPROVE)
        outcome = agent.resume("t", REJECT)
    assert outcome.answer == "understood" and not outcome.paused
    assert stub.unanswered(stub.requests[-1]["body"]["messages"]) == []  # no HTTP 400
    assert world.calls["delete_customer"] == 0


def test_a_valid_and_a_malformed_call_together_each_get_an_answer(openai_env):
    script = [{"tool_calls": [{"name": "read_customer", "args": {"customer_id": 3},
                               "id": "call_ok"}, MALFORMED]},
              {"text": "read one, the other was malformed"}]
    with OpenAIStub(script=script) as stub:
        world, agent = openai_env(stub)
        outcome = agent.start("look at customer 3, then delete them", "t")
        assert world.calls["read_customer"] == 0  # waits: execute runs when all are decided
        outcome = agent.resume("t", {outcome.pending[0].interrupt_id: REJECT})
    assert world.calls["read_customer"] == 1 and outcome.answer.startswith("read one")
    answered = {m.tool_call_id: m.status for m in tool_messages(agent, "t")}
    assert answered == {"call_ok": "success", "call_bad": "error"}


@pytest.mark.parametrize("reply", [{"status": 500}, {"hang": True}], ids=["HTTP 500", "hang"])
def test_a_failing_model_is_a_clear_error_and_the_task_is_recovered_later(openai_env,
                                                                          monkeypatch, reply):
    monkeypatch.setenv("HITL_KIT_OPENAI_TIMEOUT", "0.5")
    with OpenAIStub(script=[reply]) as stub:
        world, agent = openai_env(stub)
        with pytest.raises(ModelError, match="the chat model failed") as failed:
            agent.start("delete the test customer", "t")
        assert "nothing after the model call ran" in str(failed.value)
        outcome = agent.outcome("t")
        assert outcome.interrupted == ("plan",) and not outcome.paused
        with pytest.raises(ApprovalError, match="interrupted during plan"):
            agent.resume("t", APPROVE)
    with OpenAIStub(script=[{"text": "nothing to do"}]) as healthy:
        monkeypatch.setenv("OPENAI_BASE_URL", healthy.base_url)
        agent.kit.model = get_chat_model().bind_tools(list(agent.tools.values()))
        [done] = agent.recover()
    assert done.now == "finished" and agent.outcome("t").answer == "nothing to do"


def test_tool_call_ids_reused_across_turns_stay_distinct(openai_env, tmp_path):
    script = [{"tool_calls": [{"name": "deploy_to_prod", "id": "call_0",
                               "args": {"service": "billing", "version": "2.5"}}]},
              {"tool_calls": [{"name": "send_reply", "id": "call_0",
                               "args": {"thread_id": 4, "body": "deployed"}}]},
              {"text": "deployed and told ops"}]
    trail = AuditTrail(tmp_path / "audit.db", durable=False)
    with OpenAIStub(script=script) as stub:
        world, agent = openai_env(stub, audit=trail)
        agent.start("deploy billing 2.5 then tell ops", "t")
        agent.resume("t", APPROVE)
        outcome = agent.resume("t", APPROVE)
    assert outcome.answer == "deployed and told ops"
    assert world.calls["deploy_to_prod"] == 1 and world.calls["send_reply"] == 1
    keys = [r["event_key"] for r in trail.rows()]
    assert len(keys) == len(set(keys)) == 4 and trail.verify().ok
    assert stub.unanswered(stub.requests[-1]["body"]["messages"]) == []


# -- hypothesis: whatever the model sends ----------------------------------------------------------

TOOL_NAMES = ["delete_customer", "read_customer", "send_reply", "deploy_to_prod",
              "find_customers", "delete_customer_v2", "Delete_Customer", "delete customer", ""]
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
arg_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=2)
                          | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=4)
valid_calls = st.builds(
    lambda name, args, call_id: {"name": name, "args": args, "id": call_id},
    st.sampled_from(TOOL_NAMES), st.dictionaries(
        st.sampled_from(["customer_id", "thread_id", "body", "service", "version", "dry_run",
                         "x"]), arg_values, max_size=3),
    st.sampled_from(["call_0", "call_1", "", "same"]))
invalid_calls = st.builds(
    lambda name, text, call_id: {"name": name, "args": text, "id": call_id, "error": "bad",
                                 "type": "invalid_tool_call"},
    st.sampled_from(TOOL_NAMES), st.text(max_size=12), st.sampled_from(["call_0", "bad", ""]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(valid_calls, max_size=3), invalid=st.lists(invalid_calls, max_size=2))
def test_whatever_the_model_proposes_nothing_gated_runs_unapproved_and_nothing_sticks(
        calls, invalid, fault_counts):
    first = AIMessage(content="", tool_calls=calls, invalid_tool_calls=invalid)
    world, agent = scripted(first, DONE)
    outcome = agent.start("do it", "h")
    gated = ("delete_customer", "send_reply", "deploy_to_prod")
    unnamed = 0  # requests shown without the call id they answer
    for _ in range(4):  # reject everything a human is asked about
        if not outcome.paused:
            break
        unnamed += sum(not p.request.tool_call_id for p in outcome.pending)
        outcome = agent.resume("h", {p.interrupt_id: REJECT for p in outcome.pending})
    answered = [m.tool_call_id for m in tool_messages(agent, "h")]
    tally(fault_counts, "model outputs (hypothesis)", tried=1, **{
        "a gated tool ran": any(world.calls[name] for name in gated),
        "stuck (paused or interrupted after every rejection)":
            outcome.paused or bool(outcome.interrupted),
        "a tool call left unanswered or answered twice":
            not len(answered) == len(calls) + len(invalid) == len(set(answered))})
    assert unnamed == 0
    assert not outcome.paused and not outcome.interrupted
    assert all(world.calls[name] == 0 for name in gated)
    assert len(world.rows("customers")) == 4
    assert len(answered) == len(calls) + len(invalid) == len(set(answered))


@settings(max_examples=200, deadline=None)
@given(decision=st.dictionaries(
    st.sampled_from(["kind", "approver", "reason", "fingerprint", "args", "tool", "channel",
                     "role", "Kind", ""]),
    st.sampled_from(["approve", "reject", "edit", "timeout", "ana", "system", "SYSTEM",
                     "auto\u200b", "ana\n", "x" * 70, "", None, 3, {}, {"customer_id": 4}]),
    max_size=5))
def test_decision_dicts_either_parse_to_exactly_their_meaning_or_are_refused(decision):
    try:
        parsed = as_decision(decision)
    except ApprovalError as refused:
        assert len(str(refused)) > 15
        return
    assert set(decision) <= {"kind", "approver", "reason", "fingerprint", "args", "channel"}
    assert parsed.kind == decision["kind"] and parsed.approver == decision["approver"].strip()
    assert (parsed.args is not None) == (decision["kind"] == "edit")
    assert json.dumps(parsed.model_dump(mode="json"))
