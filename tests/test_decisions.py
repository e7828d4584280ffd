"""Exactly one decision per pending approval, through the agent: the binding, the races, and
two processes sharing one saver. The ledger's own contract is tests/test_ledger.py."""

import json
import subprocess
import sys
import threading
import warnings

import pytest
from langgraph.types import Command

from hitl_kit.approval import AlreadyDecided, ApprovalError
from hitl_kit.contract import Decision
from hitl_kit.ledger import Claim
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World

from .conftest import ROOT, agent_of_kind

DEPLOY = "deploy the billing service version {} to prod"
REJECT = {"kind": "reject", "approver": "bo"}


def approve(approver="ana", **extra):
    return {"kind": "approve", "approver": approver, **extra}


def claim(key="k", approver="ana", thread="t", fingerprint="f"):
    return Claim(thread, key, fingerprint, Decision(kind="approve", approver=approver))


def race(*actions):
    """Run the actions in threads released at the same instant; return what each returned or
    raised."""
    barrier = threading.Barrier(len(actions))
    results = [None] * len(actions)

    def run(i, action):
        barrier.wait()
        try:
            results[i] = action()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# -- the agent: one decision wins -----------------------------------------------------------------

@pytest.fixture
def agent(world, agent_kind):
    """The agent of each kind on the world, with the offline model and MemorySaver."""
    return agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world)


def test_pending_exposes_a_stable_fingerprint(agent):
    first = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    again = agent.pending("t")[0]
    assert first.fingerprint == again.fingerprint == first.request.fingerprint
    assert len(first.fingerprint) == 24


def test_double_click_executes_once_and_names_the_winner(agent, world):
    interrupt_id = agent.start(DEPLOY.format("2.5"), "t").pending[0].interrupt_id
    agent.resume("t", {interrupt_id: approve("ana")})
    with pytest.raises(AlreadyDecided, match=r"already decided by ana \(approved\)") as exc:
        agent.resume("t", {interrupt_id: {"kind": "reject", "approver": "bo"}})
    assert exc.value.claim.decision.approver == "ana" and "not pending" in str(exc.value)
    assert world.calls["deploy_to_prod"] == 1


def test_concurrent_resumes_execute_once(agent, world):
    for trial in range(25):
        thread = f"t{trial}"
        interrupt_id = agent.start(DEPLOY.format(f"2.{trial}"), thread).pending[0].interrupt_id
        results = race(lambda t=thread, i=interrupt_id: agent.resume(t, {i: approve("ana")}),
                       lambda t=thread, i=interrupt_id: agent.resume(
                           t, {i: {"kind": "reject", "approver": "bo"}}))
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(losers) == 1 and isinstance(losers[0], AlreadyDecided), results
        winner = agent.outcome(thread).decisions[-1]
        assert winner.decision.approver == losers[0].claim.decision.approver
        deployed = [d for d in world.rows("deployments") if d["version"] == f"2.{trial}"]
        assert len(deployed) == (winner.verdict == "approved")
    assert world.calls["deploy_to_prod"] == len(world.rows("deployments"))


def test_two_approvals_of_one_thread_decided_at_once_are_both_applied(agent, world):
    for trial in range(10):
        thread = f"t{trial}"
        outcome = agent.start('delete thread 2; send a reply to thread 3 saying "ok"', thread)
        ids = {p.request.tool: p.interrupt_id for p in outcome.pending}
        race(lambda t=thread, i=ids["send_reply"]: agent.resume(t, {i: approve()}),
             lambda t=thread, i=ids["delete_thread"]: agent.resume(t, {i: REJECT}))
        decided = {d.request.tool: d.verdict for d in agent.outcome(thread).decisions}
        assert decided == {"send_reply": "approved", "delete_thread": "rejected"}
    assert world.count("outbox") == 10 and world.count("threads") == 4


def test_a_decision_on_an_old_fingerprint_is_refused(agent, world):
    shown = agent.start("delete customer 3", "t").pending[0]
    edited = agent.resume("t", {"kind": "edit", "approver": "ana", "args": {"customer_id": 4},
                                "fingerprint": shown.fingerprint}).pending[0]
    assert edited.fingerprint != shown.fingerprint
    with pytest.raises(AlreadyDecided, match="ana .edited the arguments"):
        agent.resume("t", approve("bo", fingerprint=shown.fingerprint))
    with pytest.raises(AlreadyDecided):
        agent.resume("t", {shown.interrupt_id: approve("bo")})
    with pytest.raises(ApprovalError, match="another version of the request"):
        agent.resume("t", {edited.interrupt_id: approve("bo", fingerprint="0123456789abcdef")})
    assert world.calls["delete_customer"] == 0
    agent.resume("t", {edited.interrupt_id: approve("bo", fingerprint=edited.fingerprint)})
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]


@pytest.mark.parametrize(("decision", "message"), [
    ({"kind": "timeout", "approver": "ana"}, "the kit's own"),
    ({"kind": "proceed", "approver": "system"}, "the kit's own"),
    ({"kind": "refresh", "approver": "system"}, "the kit's own"),
    ({"kind": "approve", "approver": "system"}, "reserved"),
    ({"kind": "approve", "approver": "auto"}, "reserved"),
    ({"kind": "approve", "approver": "ana", "channel": "timer"}, "channel 'timer' is the kit's"),
    ({"kind": "approve", "approver": "ana", "channel": "policy"}, "channel 'policy' is the kit's"),
    ({"kind": "approve", "approver": "ana", "fingerprint": 7}, "fingerprint: Input should be"),
])
def test_people_cannot_pass_for_the_system(agent, world, decision, message):
    agent.start(DEPLOY.format("2.5"), "t")
    with pytest.raises(ApprovalError, match=message):
        agent.resume("t", decision)
    assert agent.ledger.claims.listed() == [] and world.calls["deploy_to_prod"] == 0


def test_a_hard_gate_never_proceeds_by_default(agent, world):
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    with pytest.raises(ApprovalError, match="only a soft gate proceeds"):
        agent.apply_default("t", pending.interrupt_id, "proceed", "window passed",
                            pending.fingerprint)
    with pytest.raises(ApprovalError, match="made as 'system'"):
        agent._decide("t", {"kind": "timeout", "approver": "ana"}, "timer", by_kit=True)
    assert world.calls["deploy_to_prod"] == 0 and agent.pending("t")


def test_a_resume_that_fails_before_the_graph_takes_it_withdraws_the_claim(agent, world):
    agent.start(DEPLOY.format("2.5"), "t")
    real_invoke = agent.graph.invoke

    def broken(*args, **kwargs):
        raise OSError("disk full")

    agent.graph.invoke = broken
    with pytest.raises(OSError):
        agent.resume("t", approve("ana"))
    agent.graph.invoke = real_invoke
    assert agent.ledger.claims.listed() == []
    agent.resume("t", approve("bo"))  # not "already decided by ana": ana's answer never landed
    assert world.calls["deploy_to_prod"] == 1


def test_a_claim_for_a_request_asked_again_while_it_waited_is_withdrawn_not_applied(agent,
                                                                                     world):
    """Between reading what is pending and taking the thread's turn, a raw Command shows the
    request again: the claim names a request that is gone, so nothing is applied, the claim is
    withdrawn and the turn given back."""
    shown = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    claim_and_take_turn = agent.ledger.claim_and_take_turn

    def asked_again_first(*args, **kwargs):
        refresh = Decision(kind="refresh", approver="system", reason="shown again meanwhile")
        agent.graph.invoke(Command(resume={shown.interrupt_id: refresh.model_dump(mode="json")}),
                           agent.config("t"))
        return claim_and_take_turn(*args, **kwargs)

    agent.ledger.claim_and_take_turn = asked_again_first
    with pytest.raises(ApprovalError, match="changed while this decision waited"):
        agent.resume("t", {shown.interrupt_id: approve("ana")})
    agent.ledger.claim_and_take_turn = claim_and_take_turn
    again = agent.pending("t")
    assert agent.ledger.claims.listed() == [] and agent.ledger.turns.of("t") is None
    assert [p.request.revision for p in again] == [1] and world.calls["deploy_to_prod"] == 0
    agent.resume("t", {again[0].interrupt_id: approve("ana")})
    assert world.calls["deploy_to_prod"] == 1


def test_a_second_answer_while_the_first_is_being_applied_is_told_so(agent, world):
    """The loser learns the winner and that it is being applied now, from the claim and the
    thread's turn read together (not that the winner's process stopped)."""
    shown = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    invoke, told = agent.graph.invoke, []

    def second_answer_meanwhile(graph_input, *args, **kwargs):
        if isinstance(graph_input, Command) and not told:
            with pytest.raises(AlreadyDecided) as refused:
                agent.resume("t", {shown.interrupt_id: approve("bo")})
            told.append(str(refused.value))
        return invoke(graph_input, *args, **kwargs)

    agent.graph.invoke = second_answer_meanwhile
    agent.resume("t", {shown.interrupt_id: approve("ana")})
    assert "already decided by ana" in told[0] and "is being applied right now" in told[0]
    assert world.calls["deploy_to_prod"] == 1


def test_listeners_hear_each_decision_and_a_failing_one_does_not_undo_it(agent, world):
    heard = []
    agent.on_decided.append(lambda claims, outcome: heard.append((claims, outcome.paused)))
    agent.on_decided.append(lambda claims, outcome: 1 / 0)
    agent.start(DEPLOY.format("2.5"), "t")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = agent.resume("t", approve("ana"))
    assert not outcome.paused and world.calls["deploy_to_prod"] == 1
    assert [(c.decision.approver, c.decision.kind) for c in heard[0][0]] == [("ana", "approve")]
    assert any("ZeroDivisionError" in str(w.message) for w in caught)


RESUME_SCRIPT = """
import json, sys, time
from pathlib import Path
from hitl_kit.approval import AlreadyDecided, ApprovalAgent
from hitl_kit.backends import open_stores
from hitl_kit.middleware import create_approval_agent
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World


def approve_all(agent, me, threads):
    won = []
    for n in range(threads):
        for pending in agent.pending(f"t{n}"):  # empty once the other side finished it
            decision = {"kind": "approve", "approver": me, "fingerprint": pending.fingerprint}
            try:
                agent.resume(f"t{n}", {pending.interrupt_id: decision})
                won.append(n)
            except AlreadyDecided:
                pass
    return won


def when_both_ready(folder, me):
    Path(folder, "ready-" + me).touch()
    while len(list(Path(folder).glob("ready-*"))) < 2:
        time.sleep(0.001)


if __name__ == "__main__":
    folder, me, threads, url, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:6]
    world = World(folder + "/world.db")
    stores = open_stores(url, folder=folder, durable=False)
    make = create_approval_agent if kind == "middleware" else ApprovalAgent
    agent = make(OfflineChatModel(), world.tools(), world=world,
                 checkpointer=stores.checkpointer, ledger=stores.ledger)
    when_both_ready(folder, me)
    print(json.dumps(approve_all(agent, me, threads)))
"""


def test_two_processes_sharing_a_durable_saver_decide_each_approval_once(backend, tmp_path,
                                                                       agent_kind):
    world = World(str(tmp_path / "world.db"))
    agent = agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world,
                          checkpointer=backend.checkpointer(tmp_path),
                          ledger=backend.ledger(tmp_path))
    threads = 30
    for n in range(threads):  # one service each: a deploy whose live version changed since it
        # was shown is shown again instead (tests/test_hardening.py), which is not this test
        assert agent.start(f"deploy the svc{n} service version 4.{n} to prod", f"t{n}").paused
    other = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, str(tmp_path), "bo",
                              str(threads), backend.url(tmp_path), agent_kind],
                             stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    here: dict = {}
    exec(RESUME_SCRIPT, here)  # the same code, in this process, as "ana"
    here["when_both_ready"](str(tmp_path), "ana")
    won_here = here["approve_all"](agent, "ana", threads)
    won_there = json.loads(other.communicate(timeout=120)[0])
    assert sorted(won_here + won_there) == list(range(threads))
    assert len(World(str(tmp_path / "world.db")).rows("deployments")) == threads
    assert len(agent.ledger.claims.listed()) == threads
