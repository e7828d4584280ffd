"""Deadlines: the default when nobody decides, the timer losing to a person, the race between
them, the soft gate, escalation, the time-to-live, and the card's countdown.

Tests that take ``stored_agent`` keep everything in a ``backend`` (SQLite, then PostgreSQL): the
default applied once, the click-vs-timer race, escalations and deadlines in the ledger."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from hitl_kit.approval import AlreadyDecided
from hitl_kit.audit import AuditTrail
from hitl_kit.cards import ApprovalBoard, ApprovalCard
from hitl_kit.llm import OfflineChatModel
from hitl_kit.render import payload_rows
from hitl_kit.timeouts import (
    DECIDED,
    ESCALATED,
    PROCEEDED,
    TIMED_OUT,
    ApprovalTimer,
    Deadline,
    DeadlineWatcher,
)
from hitl_kit.world import World

from .conftest import agent_of_kind

DEPLOY = "deploy the billing service version {} to prod"
REPLY = 'send a reply to thread 3 saying "see you"'
SETTLE_S = 120  # waits end on an event; only a hang reaches this (a loaded machine never does)
LONG_S = 600  # a deadline that never comes during a test
SHORT = 0.05


@pytest.fixture
def world():
    return World()


@pytest.fixture
def trail(tmp_path):
    return AuditTrail(tmp_path / "audit.db", durable=False)


@pytest.fixture
def agent(world, trail, agent_kind):
    return agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world, audit=trail)


@pytest.fixture
def stored(backend, tmp_path, world, agent_kind):
    """(agent, trail): the checkpoints, the ledger and the trail on each backend."""
    trail = backend.audit(tmp_path)
    return agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world, audit=trail,
                                     checkpointer=backend.checkpointer(tmp_path),
                                     ledger=backend.ledger(tmp_path)), trail


class RecordingTimer(ApprovalTimer):
    """An ApprovalTimer that says whether its deadline ever fired."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fired = threading.Event()

    def expire_now(self):
        self.fired.set()
        super().expire_now()


def resolved_rows(trail, thread_id):
    return [r for r in trail.rows() if r["session_id"] == thread_id and r["event"] == "resolved"]


def test_no_answer_rejects_by_default_as_system(stored, world):
    agent, trail = stored
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    timer = ApprovalTimer(agent, pending, Deadline(SHORT)).start()
    assert timer.wait(SETTLE_S) and timer.state == TIMED_OUT
    assert world.calls["deploy_to_prod"] == 0 and not timer.outcome.paused
    [row] = resolved_rows(trail, "t")
    assert (row["decision"], row["approver_id"], row["outcome"]) == (
        "timed-out", "system", "not_executed")
    assert row["reason"] == "nobody decided within 0.05 s"
    assert agent.outcome("t").decisions[-1].verdict == "timed-out"
    with pytest.raises(AlreadyDecided, match=r"by system \(timed out"):
        agent.resume("t", {pending.interrupt_id: {"kind": "approve", "approver": "ana"}})


def assert_cancelled(timer: RecordingTimer) -> None:
    """The deadline's thread ended without firing: cancelled, not left to run (its deadline is
    far away, so a timer left running would still be waiting after the ceiling)."""
    timer._timer.join(SETTLE_S)
    assert not timer._timer.is_alive() and not timer.fired.is_set()


def test_a_person_deciding_first_cancels_the_timer(agent, world, trail):
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    timer = RecordingTimer(agent, pending, Deadline(600)).start()
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert timer.done.is_set() and timer.state == DECIDED and timer.claim.decision.approver == "ana"
    assert_cancelled(timer)
    assert world.calls["deploy_to_prod"] == 1
    assert [r["approver_id"] for r in resolved_rows(trail, "t")] == ["ana"]


# The click-vs-timeout race at scale (1,000 trials, with double clicks) is in test_faults.py.


def test_real_timers_racing_real_clicks_never_execute_twice(stored, world):
    agent, trail = stored
    for trial in range(30):
        thread, version = f"t{trial}", f"5.{trial}"
        pending = agent.start(DEPLOY.format(version), thread).pending[0]
        timer = ApprovalTimer(agent, pending, Deadline(0.01)).start()
        card = ApprovalCard(agent, thread, pending, approver="ana")
        clicker = threading.Timer(0.01, card.approve.click)
        clicker.start()
        clicker.join(SETTLE_S)
        assert timer.wait(SETTLE_S)
        deployed = [d for d in world.rows("deployments") if d["version"] == version]
        [row] = resolved_rows(trail, thread)
        assert len(deployed) == (timer.state == DECIDED) == (row["approver_id"] == "ana")
    assert world.calls["deploy_to_prod"] == len(world.rows("deployments"))
    assert len(agent.ledger.claims.listed()) == 30


def test_soft_gate_proceeds_when_nobody_rejects(agent, world, trail):
    pending = agent.start(REPLY, "t").pending[0]
    assert pending.request.policy == "soft_gate"
    timer = ApprovalTimer(agent, pending, Deadline(SHORT, "proceed")).start()
    assert timer.wait(SETTLE_S) and timer.state == PROCEEDED
    assert world.count("outbox") == 1
    assert (timer.claim.decision.approver, timer.claim.decision.kind) == ("system", "proceed")
    [row] = resolved_rows(trail, "t")
    assert (row["decision"], row["approver_id"], row["outcome"]) == (
        "auto-approved", "auto", "success")
    assert row["reason"] == "soft gate: nobody rejected it within 0.05 s"


def test_soft_gate_rejected_in_time_never_proceeds(agent, world):
    pending = agent.start(REPLY, "t").pending[0]
    timer = RecordingTimer(agent, pending, Deadline(600, "proceed")).start()
    agent.resume("t", {"kind": "reject", "approver": "ana", "reason": "not that tone"})
    assert timer.state == DECIDED
    assert_cancelled(timer)
    assert world.count("outbox") == 0


def test_only_a_soft_gate_may_proceed_by_default(agent):
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    with pytest.raises(ValueError, match="only a soft gate"):
        ApprovalTimer(agent, pending, Deadline(1, "proceed"))
    with pytest.raises(ValueError, match="never proceeds"):
        DeadlineWatcher(agent, {"hard_gate": Deadline(1, "proceed")})
    with pytest.raises(ValueError, match="keyed by gate policy"):
        DeadlineWatcher(agent, {"auto_execute": Deadline(1)})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seconds": 0}, "positive number"),
    ({"seconds": float("nan")}, "positive number"),
    ({"seconds": True}, "positive number"),
    ({"seconds": 1, "default": "approve"}, "unknown"),
    ({"seconds": 1, "default": "escalate"}, "needs escalate_to"),
    ({"seconds": 1, "escalate_to": "oncall"}, "only 'escalate'"),
    ({"seconds": 1, "then": Deadline(1)}, "only with default 'escalate'"),
])
def test_bad_deadlines_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Deadline(**kwargs)


def test_escalation_hands_it_on_then_rejects(stored, world):
    agent, trail = stored
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    told = []
    deadline = Deadline(SHORT, "escalate", escalate_to="oncall", then=Deadline(SHORT))
    timer = ApprovalTimer(agent, pending, deadline,
                          on_escalate=lambda t, to: told.append((t.state, to))).start()
    assert timer.wait(SETTLE_S) and timer.state == TIMED_OUT
    assert told == [(ESCALATED, "oncall")] and timer.escalated_to == ["oncall"]
    [escalation] = agent.ledger.index.escalations("t")
    assert escalation.escalated_to == "oncall" and escalation.fingerprint == pending.fingerprint
    [row] = resolved_rows(trail, "t")
    assert row["reason"] == ("nobody decided within 0.05 s, so it went to oncall; nobody decided "
                             "within 0.05 s")
    assert world.calls["deploy_to_prod"] == 0


def test_the_escalation_target_can_still_decide(agent, world):
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]

    def oncall_approves(timer, to):
        agent.resume("t", {pending.interrupt_id: {"kind": "approve", "approver": to,
                                                  "fingerprint": pending.fingerprint}})

    deadline = Deadline(SHORT, "escalate", escalate_to="oncall", then=Deadline(LONG_S))
    timer = ApprovalTimer(agent, pending, deadline, on_escalate=oncall_approves).start()
    assert timer.wait(SETTLE_S) and timer.state == DECIDED
    assert timer.claim.decision.approver == "oncall"
    assert world.calls["deploy_to_prod"] == 1


def test_watcher_arms_follow_ups_after_an_edit(stored, world):
    agent, _ = stored
    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(600)})
    first = agent.start("delete customer 3", "t")
    [timer] = watcher.watch(first)
    timer.cancel()  # the first deadline is not what this test is about
    watcher.deadlines["hard_gate"] = Deadline(SHORT)  # the follow-up's
    edited = agent.resume("t", {"kind": "edit", "approver": "ana", "args": {"customer_id": 4}})
    follow_up = watcher.timer_for(edited.pending[0])
    assert follow_up is not timer and len(watcher.timers) == 2
    assert watcher.wait(SETTLE_S) and follow_up.state == TIMED_OUT
    assert world.calls["delete_customer"] == 0 and not agent.pending("t")
    watcher.close()


def test_watcher_leaves_policies_without_a_deadline_alone(agent):
    watcher = DeadlineWatcher(agent, {"soft_gate": Deadline(LONG_S, "proceed")})
    assert watcher.watch(agent.start(DEPLOY.format("2.5"), "t")) == []
    watcher.close()
    assert watcher._on_decided not in agent.on_decided


# -- the time-to-live -----------------------------------------------------------------------------

def ttl_agent(world, trail, seconds, kind):
    return agent_of_kind(kind)(OfflineChatModel(), world.tools(), world=world, audit=trail,
                               approval_ttl=seconds)


def test_an_approval_after_the_ttl_does_not_run(world, trail, agent_kind):
    agent = ttl_agent(world, trail, SHORT, agent_kind)
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    expires_at = datetime.fromisoformat(pending.request.expires_at)
    while datetime.now(UTC) <= expires_at:
        time.sleep(0.01)
    outcome = agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert world.calls["deploy_to_prod"] == 0 and "expired" in outcome.answer
    [row] = resolved_rows(trail, "t")
    assert (row["decision"], row["approver_id"], row["outcome"]) == (
        "approved", "ana", "not_executed")
    assert row["reason"].startswith("not executed: the approval came after the request expired")


def test_an_approval_within_the_ttl_runs(world, trail, agent_kind):
    agent = ttl_agent(world, trail, 60, agent_kind)
    pending = agent.start(DEPLOY.format("2.5"), "t").pending[0]
    assert "request expires" in dict(payload_rows(pending.request))
    agent.resume("t", {"kind": "approve", "approver": "ana"})
    assert world.calls["deploy_to_prod"] == 1
    assert resolved_rows(trail, "t")[0]["outcome"] == "success"


@pytest.mark.parametrize("ttl", [0, -1, "60", float("inf"), True])
def test_a_bad_ttl_is_refused(world, ttl, agent_kind):
    with pytest.raises(ValueError, match="approval_ttl"):
        agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world,
                                  approval_ttl=ttl)


# -- the countdown card ---------------------------------------------------------------------------

def test_card_counts_down_then_shows_the_applied_default(agent, world):
    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(600)})
    board = ApprovalBoard(agent, agent.start(DEPLOY.format("2.5"), "t"), approver="ana",
                          watcher=watcher)
    [card] = board.cards
    assert "s</b> left to decide" in card.countdown.value and "rejected by default" in (
        card.countdown.value)
    card.timer.expire_now()  # the deadline passes (when it does is the timer tests' business)
    card.ticker.join(SETTLE_S)
    assert not card.ticker.is_alive()
    assert all(b.disabled for b in (card.approve, card.reject, card.edit))
    assert "Timed out" in card.status.value and "system" in card.status.value
    assert "deadline passed" in card.countdown.value
    card.approve.click()  # too late: refused, nothing runs, and the timeout stays in view
    assert "Timed out" in card.status.value and "system" in card.status.value
    assert "changed nothing" in card.note.value
    assert world.calls["deploy_to_prod"] == 0


def test_card_clicked_in_time_keeps_its_own_result(agent, world):
    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(LONG_S)})
    board = ApprovalBoard(agent, agent.start(DEPLOY.format("2.5"), "t"), approver="ana",
                          watcher=watcher)
    [card] = board.cards
    card.approve.click()
    card.ticker.join(SETTLE_S)
    assert "Approved by ana" in card.status.value
    assert "decided before the deadline" in card.countdown.value
    assert world.calls["deploy_to_prod"] == 1


def test_card_shows_a_decision_made_elsewhere(agent, world):
    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(LONG_S)})
    board = ApprovalBoard(agent, agent.start(DEPLOY.format("2.5"), "t"), watcher=watcher)
    [card] = board.cards
    agent.resume("t", {"kind": "reject", "approver": "bo", "reason": "freeze week"})
    card.ticker.join(SETTLE_S)
    status = card.status.value
    assert "Already decided</b>: rejected by bo" in status and "freeze week" in status
    assert card.approve.disabled and world.calls["deploy_to_prod"] == 0


def test_soft_gate_card_proceeds_and_shows_it(agent, world):
    watcher = DeadlineWatcher(agent, {"soft_gate": Deadline(SHORT, "proceed")})
    board = ApprovalBoard(agent, agent.start(REPLY, "t"), watcher=watcher)
    card = board.cards[0]
    card.ticker.join(SETTLE_S)
    assert not card.ticker.is_alive(), "the card's countdown never settled"
    assert "Proceeded" in card.status.value and world.count("outbox") == 1, (
        card.status.value, card.countdown.value, card.note.value, watcher.timers)
    assert json.loads(agent.audit.rows()[-1]["parameters"])["thread_id"] == 3
