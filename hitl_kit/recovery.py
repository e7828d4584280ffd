"""Crash recovery: finish every thread a dead process left between two states.

A process can die at any line. What it leaves behind, and what ``recover`` does with it:

* a **claimed decision that never reached the graph** (killed after the ledger's claim, before
  or during the resume): the claim stays the winner and is applied now, exactly as claimed
  (the ``Decision`` itself is in the ledger, approvals of a two-person rule included);
* a thread **stopped inside a node** (``plan``, ``gate`` or ``execute``: the checkpoint says a
  node is due and nothing is pending): it is continued. ``execute`` does not act twice: each
  call's run is in the journal and each demo-world action commits together with its
  idempotency key, so a repeat returns the recorded result. Before a call that never started
  runs, what it would touch is compared with what was approved, as on any run.

The crashed process is found by its turn in the ledger: a turn whose lease ended or whose
process is gone (same host) is stale. A live process's turn is left alone.

    >>> from hitl_kit.approval import ApprovalAgent
    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> agent = ApprovalAgent(OfflineChatModel(), World().tools())
    >>> recover(agent)  # nothing to do
    []

Limits: a tool that takes no idempotency key and was killed mid-call is not run again; it is
reported as "outcome unknown" for a person to check (at most once, never twice).
"""

from __future__ import annotations

from dataclasses import dataclass

from langgraph.types import Command

from hitl_kit.ledger import Claim

MAX_STEPS = 20  # continuations per thread, so a thread that keeps failing cannot spin forever


@dataclass(frozen=True)
class Recovered:
    """What recovery did for one thread."""

    thread_id: str
    applied: tuple[Claim, ...]  # decisions that had been claimed and are now applied
    continued_from: tuple[str, ...]  # the nodes it was stopped in
    now: str  # where it stands now: "paused", "finished" or "interrupted in ..."
    error: str = ""

    def __str__(self) -> str:
        done = []
        if self.applied:
            done.append("applied " + ", ".join(c.decision.describe() for c in self.applied))
        if self.continued_from:
            done.append(f"continued from {', '.join(self.continued_from)}")
        text = f"{self.thread_id}: {'; '.join(done) or 'nothing to do'}; now {self.now}"
        return text + (f" ({self.error})" if self.error else "")


def recover(agent) -> list[Recovered]:
    """Finish every thread left mid-resume by a crashed process; one ``Recovered`` each."""
    return [recover_thread(agent, turn.thread_id) for turn in agent.ledger.turns.stale()]


def recover_thread(agent, thread_id: str) -> Recovered:
    """Take the thread's (stale) turn, apply its unapplied claims, continue its stopped nodes."""
    holder = agent.ledger.take_turn(thread_id, take_stale=True)
    applied: list[Claim] = []
    continued: list[str] = []
    config = agent.config(thread_id)
    try:
        outcome = agent.outcome(thread_id)
        pending = {p.key for p in outcome.pending}
        claims = [c for c in agent.ledger.claims.listed(thread_id) if not c.applied]
        to_apply = [c for c in claims if c.key in pending]
        if to_apply:
            agent.graph.invoke(Command(resume={c.interrupt_id: c.decision.model_dump(mode="json")
                                               for c in to_apply}), config,
                               durability=agent.durability)
            applied = to_apply
            outcome = agent.outcome(thread_id)
        for _ in range(MAX_STEPS):
            if not outcome.interrupted:
                break
            continued.extend(n for n in outcome.interrupted if n not in continued)
            agent.graph.invoke(None, config, durability=agent.durability)
            outcome = agent.outcome(thread_id)
    except Exception as exc:
        agent.ledger.finish_turn(thread_id, holder, stopped=True)
        return Recovered(thread_id, tuple(applied), tuple(continued), "interrupted",
                         f"{type(exc).__name__}: {exc}")
    # Claims whose request is no longer pending were taken by the graph before the crash.
    agent.ledger.finish_turn(thread_id, holder, claims, outcome.pending,
                             stopped=bool(outcome.interrupted))
    agent.notify(applied, outcome)
    now = ("paused" if outcome.paused else
           f"interrupted in {', '.join(outcome.interrupted)}" if outcome.interrupted
           else "finished")
    return Recovered(thread_id, tuple(applied), tuple(continued), now)
