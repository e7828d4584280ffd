"""One contract for every decision: the typed request and decision, one judge on every path, what
was approved is what runs, keys nobody can forge. Each attack here is one that got through
before the contract was redesigned (issue 20)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langgraph.types import Command
from pydantic import ValidationError

from hitl_kit.approval import ApprovalAgent, ApprovalError
from hitl_kit.approvers import Approvers
from hitl_kit.audit import AuditTrail
from hitl_kit.channels import decide
from hitl_kit.contract import ApprovalRequest, Decision, NotAllowed, judge
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.ledger import Claim
from hitl_kit.llm import OfflineChatModel
from hitl_kit.vocabulary import PERSON_CHANNELS, Channel, Kind
from hitl_kit.world import World

DELETE = "delete customer 3"
REPLY = 'send a reply to thread 3 saying "see you"'
DEPLOY = "deploy the billing service version {} to prod"


def make(tmp_path, **kwargs):
    world = World()
    trail = AuditTrail(tmp_path / "audit.db", durable=False)
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, audit=trail, **kwargs)
    return world, agent, trail


def resolved(trail, thread_id):
    return [r for r in trail.rows() if r["event"] == "resolved" and r["session_id"] == thread_id]


# -- the request --------------------------------------------------------------------------------

REQUEST = ApprovalRequest(task="tidy up", tool="delete_customer", args={"customer_id": 3},
                          tool_call_id="c1", target={"customer": {"plan": "trial"}},
                          reversibility="irreversible_high", policy="hard_gate",
                          why_gated="irreversible", proposed_at="2026-12-06T10:00:00+00:00")
OTHER_VALUES = {
    "task": "tidy up more", "tool": "delete_thread", "args": {"customer_id": 4},
    "tool_call_id": "c2", "description": "another", "target": {"customer": {"plan": "pro"}},
    "reversibility": "irreversible_low", "policy": "soft_gate", "risk": "low",
    "why_gated": "why not", "raised_by": ("a rule",), "on_approve": "x runs", "on_reject": "no",
    "revision": 1, "proposed_at": "2026-12-06T10:00:01+00:00",
    "expires_at": "2026-12-06T11:00:00+00:00", "provenance": ({"source": "s"},),
    "requested_by": "rita", "may_decide": ("finance",), "approvals_needed": 2,
    "problem": "cannot", "edited_by": "ana"}


def test_every_field_but_the_fingerprint_and_the_refusal_is_in_the_fingerprint():
    fields = set(ApprovalRequest.model_fields) - {"fingerprint", "error"}
    assert fields == set(OTHER_VALUES), "each field needs a changed value here"
    for name, value in OTHER_VALUES.items():
        changed = REQUEST.changed(**{name: value})
        assert getattr(changed, name) == value
        assert changed.fingerprint != REQUEST.fingerprint, f"{name} is not in the fingerprint"
    assert REQUEST.changed(error="look again").fingerprint == REQUEST.fingerprint


def test_a_request_altered_after_it_was_made_is_refused():
    stored = REQUEST.as_json()
    assert ApprovalRequest.model_validate(stored) == REQUEST
    for name, value in (("args", {"customer_id": 1}), ("policy", "auto_execute"),
                        ("target", None), ("requested_by", "mallory")):
        with pytest.raises(ValidationError, match="fingerprint does not match"):
            ApprovalRequest.model_validate({**stored, name: value})


# -- the judge ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("decision", "by_kit", "says"), [
    ({"kind": "proceed", "approver": "system", "channel": "timer"}, True, "only a soft gate"),
    ({"kind": "proceed", "approver": "system"}, False, "the kit's own"),
    ({"kind": "timeout", "approver": "system", "channel": "timer"}, False, "the kit's own"),
    ({"kind": "approve", "approver": "ana", "channel": "timer"}, False, "'timer' is the kit's"),
    ({"kind": "approve", "approver": "ana", "channel": "policy"}, False, "'policy' is the kit's"),
    ({"kind": "approve", "approver": "ana"}, True, "timers answer timeout or proceed"),
    ({"kind": "timeout", "approver": "system", "channel": "card"}, True, "decide through"),
    ({"kind": "approve", "approver": "ana", "fingerprint": "0" * 24}, False, "another version"),
    ({"kind": "approve", "approver": "system"}, False, "reserved"),
])
def test_the_judge_refuses(decision, by_kit, says):
    with pytest.raises(ApprovalError, match=says):
        judge(decision, REQUEST, by_kit=by_kit)


def test_the_judge_binds_fills_in_and_decides_nothing_else():
    judged = judge({"kind": "approve", "approver": " ana "}, REQUEST)
    assert (judged.approver, judged.fingerprint, judged.channel) == (
        "ana", REQUEST.fingerprint, Channel.API)
    refused = REQUEST.changed(problem="there is no tool 'x'")
    with pytest.raises(ApprovalError, match="cannot be approved as it stands"):
        judge({"kind": "approve", "approver": "ana"}, refused)
    asked = REQUEST.changed(requested_by="rita")
    for who in ("rita", "RITA", "ＲＩＴＡ"):
        with pytest.raises(NotAllowed, match="asked for this task"):
            judge({"kind": "approve", "approver": who}, asked)
    assert judge({"kind": "reject", "approver": "rita"}, asked).kind == Kind.REJECT


def test_approvals_of_a_two_person_request_are_judged_one_by_one():
    needs_two = REQUEST.changed(approvals_needed=2, requested_by="rita")

    def with_approvals(*names):
        approvals = tuple({"approver": n, "approved_at": f"2026-12-06T10:00:0{i}+00:00"}
                          for i, n in enumerate(names))
        return Decision(kind="approve", approver=names[-1], approvals=approvals)

    assert judge(with_approvals("ana", "di"), needs_two).approvals[-1].approver == "di"
    for names, says in ((("di",), "needs 2 approvals"), (("ana", "ANA"), "same person"),
                        (("rita", "di"), "asked for this task"),
                        (("di", "ana", "di"), "same person"),
                        (("Tom", "\u0422\u041e\u041c"), "same person")):  # ТОМ in Cyrillic
        with pytest.raises(NotAllowed, match=says):
            judge(with_approvals(*names), needs_two)


# -- every path -----------------------------------------------------------------------------------

def test_a_person_may_not_claim_the_timer_or_the_policy_on_any_path(tmp_path):
    world, agent, trail = make(tmp_path)
    inbox = ApprovalInbox(agent)
    [pending] = inbox.submit(DELETE, "t").pending
    for channel in (Channel.TIMER, Channel.POLICY):
        with pytest.raises(ApprovalError, match="is the kit's own"):
            agent.resume("t", {"kind": "approve", "approver": "ana"}, channel=channel)
        [refused] = inbox.approve([pending], "ana", channel=channel)
        assert not refused.resumed and "is the kit's own" in refused.message
        [answer] = decide(inbox, [pending.key], "approve", "ana", "ok", channel)
        assert not answer.ok and "is the kit's own" in answer.message
    assert world.calls["delete_customer"] == 0 and agent.ledger.claims.listed() == []
    assert agent.recover() == [] and trail.verify().ok  # no thread left stuck
    agent.resume("t", {"kind": "approve", "approver": "ana"}, channel=Channel.CARD)
    [row] = resolved(trail, "t")
    assert (row["channel"], row["outcome"]) == ("card", "success")


def test_proceed_never_runs_a_hard_gate_on_any_path(tmp_path):
    world, agent, _ = make(tmp_path)
    [pending] = agent.start(DELETE, "t").pending
    proceed = {"kind": "proceed", "approver": "system", "channel": "timer"}
    with pytest.raises(ApprovalError, match="the kit's own"):
        agent.resume("t", proceed)
    with pytest.raises(ApprovalError, match="only a soft gate proceeds"):
        agent.apply_default("t", pending.interrupt_id, "proceed", "window passed",
                            pending.fingerprint)
    agent.graph.invoke(Command(resume={pending.interrupt_id: proceed}), agent.config("t"))
    with pytest.raises(ApprovalError, match="the kit's own"):
        ApprovalInbox(agent).resolve([(agent.pending("t")[0], proceed)])
    assert world.calls["delete_customer"] == 0 and agent.pending("t")


def test_recovery_applies_a_two_person_decision_with_its_approvals(tmp_path):
    approvers = Approvers(people={"ana": ["oncall"], "di": ["oncall"]},
                          two_person=["deploy_to_prod"])
    world, agent, trail = make(tmp_path, approvers=approvers)
    [pending] = agent.start(DEPLOY.format("2.5"), "t").pending
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    # di's approval completes it and the claim is made; the process dies before the resume.
    di = judge({"kind": "approve", "approver": "di"}, pending.request, approvers=approvers)
    state, complete = agent.ledger.approve_with(Claim(*pending.key, di), 2, "dead-holder")
    assert state == "complete"
    agent.ledger.turns.give_back("t", "dead-holder", stopped=True)
    [recovered] = agent.recover()
    assert recovered.now == "finished" and world.calls["deploy_to_prod"] == 1
    [row] = resolved(trail, "t")
    assert [a["approver"] for a in json.loads(row["details"])["approvals"]] == ["ana", "di"]
    assert row["approver_id"] == "di" and trail.verify().ok


def test_a_record_changed_while_a_claimed_approval_waited_is_not_touched(tmp_path):
    world, agent, trail = make(tmp_path)
    [pending] = agent.start(DELETE, "t").pending
    assert pending.request.target["customer"]["plan"] == "trial"
    approve = judge({"kind": "approve", "approver": "ana"}, pending.request)
    agent.ledger.claim_and_take_turn([Claim(*pending.key, approve)], "t", "dead-holder")
    agent.ledger.turns.give_back("t", "dead-holder", stopped=True)  # the process died
    world.update_customer(3, "plan", "enterprise")  # meanwhile, the trial became a customer
    [recovered] = agent.recover()
    assert recovered.now == "paused" and world.calls["delete_customer"] == 0
    [again] = agent.pending("t")
    assert again.request.target["customer"]["plan"] == "enterprise"
    assert "changed after the approval" in again.request.error
    [refused] = [r for r in trail.rows() if r["event"] == "refused"]
    assert refused["approver_id"] == "ana" and "changed after the approval" in refused["reason"]


class SeparatorModel(OfflineChatModel):
    """The offline model, but every tool call id it gives holds the separator of a joined key."""

    def _generate(self, messages, *args, **kwargs):
        result = super()._generate(messages, *args, **kwargs)
        message = result.generations[0].message
        if message.tool_calls:
            thread = next(m for m in messages if m.type == "human").content.split("|")[0]
            ids = {"a": "b:c", "a:b": "c"}[thread]
            calls = [{**c, "id": ids} for c in message.tool_calls]
            result.generations[0].message = AIMessage("", tool_calls=calls)
        return result


def test_call_ids_holding_a_separator_keep_two_threads_apart(tmp_path):
    world = World()
    agent = ApprovalAgent(SeparatorModel(), world.tools(), world=world)
    for thread, service in (("a", "billing"), ("a:b", "search")):
        agent.start(f"{thread}|deploy the {service} service version 2.0 to prod", thread)
    for thread in ("a", "a:b"):
        agent.resume(thread, {"kind": "approve", "approver": "ana"})
    assert sorted(d["service"] for d in world.rows("deployments")) == ["billing", "search"]
    assert agent.ledger.journal.record("a", "b:c").result != agent.ledger.journal.record(
        "a:b", "c").result


# -- a property over every path -------------------------------------------------------------------

PATHS = ["resume", "raw command", "inbox", "channel", "timer"]
KINDS = ["approve", "reject", "proceed", "timeout", "refresh", "edit", "maybe"]
NAMES = ["ana", "rita", "system", "auto", "Sуstem", "bo\u200b"]
CHANNELS = [None, "api", "card", "slack", "timer", "policy"]


def attempt(agent, inbox, thread, path, kind, approver, channel):
    pending = agent.pending(thread)
    if not pending:
        return
    [item] = pending
    value = {"kind": kind, "approver": approver}
    if kind == "edit":
        value["args"] = dict(item.request.args)
    if channel is not None and path == "raw command":
        value["channel"] = channel
    if path == "resume":
        agent.resume(thread, value, channel=channel)
    elif path == "raw command":
        agent.graph.invoke(Command(resume={item.interrupt_id: value}), agent.config(thread))
    elif path == "inbox":
        inbox.resolve([(item, value)], channel=channel or Channel.INBOX)
    elif path == "channel":
        decide(inbox, [item.key], kind, approver, "", channel or Channel.SLACK)
    else:
        agent.apply_default(thread, item.interrupt_id, kind, "deadline", item.fingerprint)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["hard", "soft"]), st.sampled_from(PATHS),
                          st.sampled_from(KINDS), st.sampled_from(NAMES),
                          st.sampled_from(CHANNELS)), min_size=1, max_size=5))
def test_nothing_gated_runs_without_a_persons_valid_decision(tmp_path_factory, attempts):
    world, agent, trail = make(tmp_path_factory.mktemp("p"))
    inbox = ApprovalInbox(agent, recover=False)
    agent.start(DELETE, "hard", requested_by="rita")
    agent.start(REPLY, "soft", requested_by="rita")
    for gate, path, kind, approver, channel in attempts:
        with contextlib.suppress(ApprovalError, ValidationError):
            attempt(agent, inbox, gate, path, kind, approver, channel)
    for thread, tool in (("hard", "delete_customer"), ("soft", "send_reply")):
        claims = [c.decision for c in agent.ledger.claims.listed(thread)]
        by_person = [d for d in claims if d.kind == Kind.APPROVE and d.channel in PERSON_CHANNELS
                     and d.approver in ("ana",)]
        by_deadline = [d for d in claims if d.kind == Kind.PROCEED and d.channel == Channel.TIMER
                       and thread == "soft"]
        ran = world.calls[tool]
        assert ran <= 1, f"{tool} ran {ran} times"
        if ran:
            assert by_person or by_deadline, f"{tool} ran on {claims}"
            [row] = [r for r in resolved(trail, thread) if r["action_type"] == tool]
            assert row["outcome"] == "success"
    assert trail.verify().ok


# -- who is who, on every path (the identity module decides; issue 20's attacks) -------------------

LOOKALIKES_OF_RITA = ["rit\u0430", "ri\u200bta", "r\u026ata", "RITA", "\uff52\uff49\uff54\uff41",
                      "\u0280ita"]


@pytest.mark.parametrize("spelling", LOOKALIKES_OF_RITA)
def test_the_requester_approves_her_own_request_on_no_path_in_any_spelling(tmp_path, spelling):
    from hitl_kit.cards import ApprovalCard
    from hitl_kit.terminal import approve_in_terminal

    world, agent, _ = make(tmp_path)
    inbox = ApprovalInbox(agent, recover=False)
    outcome = agent.start(DELETE, "t", requested_by="rita")
    with pytest.raises(ApprovalError):
        agent.resume("t", {"kind": "approve", "approver": spelling})
    with contextlib.suppress(ApprovalError):  # a name that cannot be compared refuses the batch
        assert not any(r.resumed for r in inbox.approve(inbox.items(), spelling))
    card = ApprovalCard(agent, "t", outcome.pending[0], approver=spelling)
    card.approve.click()
    assert not card.decided and "refused" in card.note.value
    answers = ["a"]

    def ask(prompt):  # approve once, then close the terminal
        if not answers:
            raise EOFError
        return answers.pop()

    said = []
    approve_in_terminal(agent, outcome, spelling, ask=ask, say=said.append)
    assert any("refused" in line for line in said)
    assert world.calls["delete_customer"] == 0 and agent.ledger.claims.listed() == []


@pytest.mark.parametrize("spelling", ["\u0430n\u0430", "ANA", "an\u200ba", "\u0430na"])
def test_two_spellings_of_one_person_are_one_approval_without_a_people_table(tmp_path, spelling):
    approvers = Approvers(two_person=["deploy_to_prod"])
    world, agent, _ = make(tmp_path, approvers=approvers)
    agent.start(DEPLOY.format("2.5"), "t")
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    with pytest.raises(ApprovalError):
        agent.resume("t", {"kind": "approve", "approver": spelling})
    assert world.calls["deploy_to_prod"] == 0


@pytest.mark.parametrize("name", ["\u0455\u0443\u0455t\u0435m", "S\u0443stem", "\u0430uto",
                                  "SYSTEM", "sys\u200btem", "\uff41\uff55\uff54\uff4f"])
def test_no_lookalike_of_a_reserved_name_decides(tmp_path, name):
    world, agent, _ = make(tmp_path)
    agent.start(DELETE, "t")
    with pytest.raises(ApprovalError):
        agent.resume("t", {"kind": "approve", "approver": name})
    assert world.calls["delete_customer"] == 0
