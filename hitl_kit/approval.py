"""``ApprovalAgent``: the approval graph (``hitl_kit.graph``) plus the guards LangGraph does not
give you, keyed by thread id.

* An unknown thread, a thread with nothing pending, or a thread stopped mid-run is an error that
  says where the thread stands (LangGraph would silently start a fresh run, or return old state).
* One decision path: every channel (card, inbox, terminal, links, web, Slack, timers) ends in
  ``resume`` or ``apply_default``. A decision is judged (``contract.judge``), what its request
  would touch is read again (a change shows the request again and decides nothing), then the
  ledger claims it and takes the thread's turn in one transaction, and the graph resumes with
  exactly the claimed decision, which the gate judges once more.

    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> world = World()
    >>> agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    >>> outcome = agent.start("delete customer 3", "t1")
    >>> request = outcome.pending[0].request
    >>> request.tool, request.target["customer"]["plan"]
    ('delete_customer', 'trial')
    >>> agent.resume("t1", {"kind": "approve", "approver": "ana"}).paused
    False
    >>> [c["id"] for c in world.rows("customers")]
    [1, 2, 4]

Limits: with ``MemorySaver`` (the default) a paused thread lives only as long as the process;
pass ``durable_checkpointer(path)`` to keep it, and run ``recover()`` after a crash.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from hitl_kit import identity, recovery
from hitl_kit.approvers import Approvers
from hitl_kit.audit_chain import audit_row
from hitl_kit.backends import durable_checkpointer, ledger_for
from hitl_kit.contract import (
    ApprovalError,
    ApprovalRequest,
    Decision,
    NotAllowed,
    Pending,
    as_decision,
    judge,
    target_digest,
)
from hitl_kit.graph import Decided, Kit, ModelError, answer_of, build_graph
from hitl_kit.ledger import Claim, DecisionLedger, StaleTurn
from hitl_kit.policy import ActionPolicy
from hitl_kit.vocabulary import Approver, Channel, Event, Kind

__all__ = ["AlreadyDecided", "ApprovalAgent", "ApprovalError", "Approvers", "Decision",
           "ModelError", "NotAllowed", "Outcome", "Pending", "durable_checkpointer"]


class AlreadyDecided(ApprovalError):
    """Another decision won this request first; ``claim`` says whose. ``in_flight``: the winner
    is being applied right now by a live resume (else, if not applied, its process stopped)."""

    def __init__(self, claim: Claim, in_flight: bool = False):
        self.claim = claim
        if claim.applied:
            where = "is not pending any more"
        elif in_flight:
            where = "is being applied right now"
        else:
            where = ("has not reached the graph yet (the process that claimed it stopped before "
                     "resuming; agent.recover() applies it)")
        super().__init__(
            f"already decided by {claim.describe()}: request {claim.interrupt_id} on thread "
            f"{claim.thread_id!r} {where}, and this decision was not applied")


@dataclass
class Outcome:
    """Where a thread stands: paused with pending requests, finished with an answer, or
    ``interrupted`` in the nodes named (its process stopped mid-run: ``recover()``)."""

    thread_id: str
    pending: list[Pending] = field(default_factory=list)
    answer: str | None = None
    decisions: list[Decided] = field(default_factory=list)
    interrupted: tuple[str, ...] = ()

    @property
    def paused(self) -> bool:
        return bool(self.pending)


def _outcome(thread_id: str, values: dict, interrupts, interrupted: tuple = ()) -> Outcome:
    """Where a thread stands, its pending requests in the order the model proposed them."""
    calls = [c["id"] for m in values.get("messages") or [] if isinstance(m, AIMessage)
             for c in (*m.tool_calls, *m.invalid_tool_calls)]
    pending = sorted((Pending(thread_id=thread_id, interrupt_id=i.id,
                              request=(request := ApprovalRequest.model_validate(i.value)),
                              asked_at=request.proposed_at) for i in interrupts),
                     key=lambda p: calls.index(p.request.tool_call_id)
                     if p.request.tool_call_id in calls else len(calls))
    return Outcome(thread_id, pending, None if pending else answer_of(values),
                   [Decided.model_validate(d) for d in values.get("decided") or []],
                   () if pending else interrupted)


class ApprovalAgent:
    """The approval graph plus guards, keyed by thread id.

    ``ledger`` judges which decision wins each request (default: one in the checkpointer's
    database, else in memory). ``on_decided`` holds callables ``(claims, outcome)`` run after
    the graph took decisions; the timers of ``hitl_kit.timeouts`` listen there. ``on_recovered``
    holds callables ``(recovered)`` run after this agent finished a thread a dead process left
    (in ``recover()``, or first thing in a ``resume`` of that thread).
    """

    def __init__(self, model, tools: list, policy: ActionPolicy | None = None, world=None,
                 checkpointer=None, audit=None, ledger: DecisionLedger | None = None,
                 approval_ttl: float | None = None, approvers: Approvers | None = None):
        checkpointer = checkpointer if checkpointer is not None else InMemorySaver()
        ledger = ledger if ledger is not None else ledger_for(checkpointer)
        if approvers is not None:
            approvers.check_names(t.name for t in tools)
        graph = build_graph(model, tools, policy, world, checkpointer, audit, approval_ttl,
                            ledger=ledger, approvers=approvers)
        self._bind(graph, graph.kit)

    @classmethod
    def around(cls, graph, kit: Kit) -> ApprovalAgent:
        """The same decision path for another graph gated by ``graph.decide`` with ``kit`` (a
        ``create_agent`` graph with ``hitl_kit.middleware.ApprovalMiddleware``)."""
        agent = cls.__new__(cls)
        agent._bind(graph, kit)
        return agent

    def _bind(self, graph, kit: Kit) -> None:
        self.graph, self.kit = graph, kit
        self.ledger, self.tools = kit.ledger, kit.tools
        self.approvers, self.audit = kit.approvers, kit.audit
        self.on_decided: list[Callable[[list[Claim], Outcome], None]] = []
        self.on_recovered: list[Callable[[recovery.Recovered], None]] = []
        # A durable checkpointer saves every step before the next starts, so a crash loses no
        # finished step (the run journal and idempotent audit rows make repeating one safe).
        # In memory there is nothing to survive a crash: save once, when the run stops.
        self.durability = "exit" if isinstance(graph.checkpointer, InMemorySaver) else "sync"

    @staticmethod
    def config(thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    # -- starting and looking -------------------------------------------------------------------
    def start(self, task: str, thread_id: str, *, requested_by: str | None = None) -> Outcome:
        """Run a new task on a new thread until it finishes or pauses for a person."""
        if not isinstance(task, str) or not task.strip():
            raise ApprovalError("a task is a non-empty text")
        if not isinstance(thread_id, str) or not thread_id.strip():
            raise ApprovalError(f"a thread id is a non-empty text, not {thread_id!r}")
        if requested_by is not None:  # compared with every approver later: it must be a name
            try:
                requested_by = identity.check_name(requested_by, "requester")
            except identity.NameRefused as exc:
                raise ApprovalError(str(exc)) from None
        self._recover_if_left(thread_id)
        holder = self._take_turn(thread_id)
        try:
            if self.graph.checkpointer.get_tuple(self.config(thread_id)) is not None:
                raise ApprovalError(f"thread {thread_id!r} already exists; start a new task on "
                                    "a new thread id, or resume this one")
        except BaseException:
            self.ledger.finish_turn(thread_id, holder)
            raise
        return self.run(thread_id, holder, {"task": task, "requested_by": requested_by})

    def outcome(self, thread_id: str) -> Outcome:
        """Where the thread stands now, read from the checkpointer."""
        state = self.graph.get_state(self.config(thread_id))
        if state.created_at is None:
            raise ApprovalError(f"there is no thread {thread_id!r}: check the id (LangGraph "
                                "would silently start a brand-new run for it)")
        # Nothing pending and nodes due, or a finished task whose step was never saved (a crash
        # between the two writes): stopped mid-run, not finished.
        interrupted = tuple(state.next) or tuple(t.name for t in state.tasks)
        return _outcome(thread_id, state.values, state.interrupts, interrupted)

    def pending(self, thread_id: str) -> list[Pending]:
        return self.outcome(thread_id).pending

    # -- deciding ---------------------------------------------------------------------------------
    def resume(self, thread_id: str, decisions: dict[str, Any] | Any, *,
               channel: str | None = None) -> Outcome:
        """Answer pending requests: ``{interrupt_id: decision, ...}``, or one decision when
        exactly one request is pending. Every decision is judged before any reaches the graph.

        A decision carrying a ``fingerprint`` must match the pending request's. The first
        decision on a request wins; a later one raises ``AlreadyDecided`` naming the winner.
        ``channel`` says where the decisions came from (a person's channel; recorded).
        """
        return self._decide(thread_id, decisions, channel, by_kit=False)

    def apply_default(self, thread_id: str, interrupt_id: str, kind: str, reason: str,
                      fingerprint: str) -> Outcome:
        """The kit's decision when nobody decided in time: ``kind`` "timeout" (nothing runs) or
        "proceed" (soft gates only). ``hitl_kit.timeouts`` calls this; people use ``resume``."""
        decision = {"kind": kind, "approver": Approver.SYSTEM.value, "reason": reason,
                    "fingerprint": fingerprint}
        return self._decide(thread_id, {interrupt_id: decision}, Channel.TIMER, by_kit=True)

    def _decide(self, thread_id: str, decisions, channel: str | None, by_kit: bool) -> Outcome:
        self._settle_first(thread_id, decisions)  # a lost race costs one query, not a run
        pending = {p.interrupt_id: p for p in self._pending(thread_id)}
        checked = []
        for interrupt_id, value in self._match(thread_id, decisions, pending).items():
            decision = as_decision(_with_channel(value, channel))
            checked.append((pending[interrupt_id], self._judged(thread_id, pending[interrupt_id],
                                                                decision, by_kit)))
        for request, decision in checked:
            if decision.kind in (Kind.APPROVE, Kind.PROCEED):
                self._show_again_if_changed(thread_id, request)
        several = [p for p, d in checked if d.kind == Kind.APPROVE
                   and p.request.approvals_needed > 1]
        if several and len(checked) > 1:
            raise ApprovalError("a request that needs several approvals is answered on its own: "
                                "send its decision alone; nothing was applied")
        holder = uuid.uuid4().hex
        if several:
            claims = self._approve_one_of_several(thread_id, *checked[0], holder)
            if not claims:
                outcome = self.outcome(thread_id)
                self.notify([], outcome)
                return outcome
        else:
            claims = [Claim(*p.key, d) for p, d in checked]
            with self._turn_errors(thread_id):
                earlier = self.ledger.claim_and_take_turn(claims, thread_id, holder)
            if earlier is not None:
                raise self._already(earlier)
        resume = {c.interrupt_id: c.decision.model_dump(mode="json") for c in claims}
        outcome = self.run(thread_id, holder, Command(resume=resume), claims)
        self.notify(claims, outcome)
        return outcome

    def _judged(self, thread_id: str, pending: Pending, decision: Decision,
                by_kit: bool) -> Decision:
        """``judge``; a refusal of who may decide is recorded in the audit trail first."""
        try:
            return judge(decision, pending.request, tool=self.tools.get(pending.request.tool),
                         approvers=self.approvers, by_kit=by_kit)
        except NotAllowed as exc:
            self._refuse(thread_id, pending.request, decision, str(exc))

    def _refuse(self, thread_id: str, request: ApprovalRequest, decision: Decision, why: str):
        if self.audit is not None:
            self.audit.append(audit_row(thread_id, request, Event.REFUSED, decision=decision,
                                        reason=why, key=("refused", uuid.uuid4().hex[:12])))
        raise NotAllowed(f"{why}; nothing was applied")

    def _show_again_if_changed(self, thread_id: str, pending: Pending) -> None:
        """The explicit refresh step: when what the request would touch changed since it was
        shown, the request is shown again with what it touches now (a ``refresh`` answer, which
        runs nothing) and this decision is refused."""
        request = pending.request
        if request.problem is not None:
            return
        now = self.kit.target(request.tool, request.args)
        if target_digest(now) == target_digest(request.target):
            return
        reason = (f"what it would touch changed since it was shown: it was {request.target!r}, "
                  f"it is now {now!r}")
        holder = self._take_turn(thread_id)
        earlier = self.ledger.claims.winner(*pending.key)
        if earlier is not None:
            self.ledger.finish_turn(thread_id, holder)
            raise self._already(earlier)
        refresh = Decision(kind=Kind.REFRESH, approver=Approver.SYSTEM, reason=reason)
        outcome = self.run(thread_id, holder, Command(
            resume={pending.interrupt_id: refresh.model_dump(mode="json")}))
        self.notify([], outcome)
        raise ApprovalError(f"{reason}. The request is shown again with what it touches now; "
                            "look at it and decide again. Nothing was applied")

    def _approve_one_of_several(self, thread_id: str, pending: Pending, decision: Decision,
                                holder: str) -> list[Claim]:
        """An approval of a request that needs several people: recorded; the claim carrying
        them all when this one completes it (the turn is then taken), else nothing."""
        with self._turn_errors(thread_id):
            state, found = self.ledger.approve_with(Claim(*pending.key, decision),
                                                    pending.request.approvals_needed, holder)
        if state == "decided":
            raise self._already(found)
        if state == "again":
            self._refuse(thread_id, pending.request, decision, f"{decision.approver} already "
                         "approved this request; a second, different person must approve it")
        if state == "partial":
            if self.audit is not None:
                self.audit.append(audit_row(
                    thread_id, pending.request, Event.DECIDED, decision=decision,
                    reason=decision.reason or None, key=("decided", str(len(found))),
                    details={"approvals_needed": pending.request.approvals_needed,
                             "approval": len(found)}))
            return []
        return [found]

    def approvals(self, thread_id: str, interrupt_id: str, fingerprint: str) -> list:
        """The approvals recorded so far for a request that needs several (for "1 of 2")."""
        return self.ledger.claims.approvals((thread_id, interrupt_id, fingerprint))

    def _already(self, claim: Claim) -> AlreadyDecided:
        turn = self.ledger.turns.of(claim.thread_id)
        return AlreadyDecided(claim, in_flight=turn is not None and not turn.stale)

    def _settle_first(self, thread_id: str, decisions) -> None:
        """Before the graph is read: recover the thread when a dead process left it mid-resume,
        and raise ``AlreadyDecided`` when the ledger holds the winner of a request the decisions
        name. The turn and the first named request's winner come from one query."""
        named = _named(decisions)
        turn, earlier = self.ledger.standing(thread_id, **(named[0] if named else {}))
        if turn is not None and turn.stale:
            self._recover_if_left(thread_id)
            turn, earlier = self.ledger.standing(thread_id, **(named[0] if named else {}))
        if earlier is not None:
            raise AlreadyDecided(earlier, in_flight=turn is not None and not turn.stale)
        self._raise_if_decided(thread_id, named[1:])

    def _raise_if_decided(self, thread_id: str, named: list[dict]) -> None:
        """``AlreadyDecided`` when the ledger holds the winner of one of these requests (each
        named as ``_named`` names it)."""
        for name in named:
            earlier = self.ledger.claims.winner(thread_id, **name)
            if earlier is not None:
                raise self._already(earlier)

    def _match(self, thread_id: str, decisions, pending: dict[str, Pending]) -> dict:
        """The decisions keyed by interrupt id, each for a request that is pending now."""
        self._raise_if_decided(thread_id, _named(decisions, pending))  # decided, and gone
        if not isinstance(decisions, dict) or "kind" in decisions:
            if len(pending) > 1:
                raise ApprovalError(f"{len(pending)} approvals are pending on {thread_id!r}; "
                                    "answer them by interrupt id: {id: decision, ...}")
            decisions = {next(iter(pending)): decisions} if pending else {}
        elif not decisions:
            raise ApprovalError("give a decision, or a dict {interrupt_id: decision, ...}")
        if not pending:
            raise ApprovalError(self._why_nothing_pending(thread_id))
        unknown = set(decisions) - set(pending)
        if unknown:
            raise ApprovalError(f"not pending on {thread_id!r}: {sorted(unknown)}; pending are "
                                f"{sorted(pending)}")
        return decisions

    def _why_nothing_pending(self, thread_id: str) -> str:
        outcome = self.outcome(thread_id)
        if outcome.interrupted:
            return (f"thread {thread_id!r} has nothing pending: it was interrupted during "
                    f"{', '.join(outcome.interrupted)} (its process stopped before it "
                    "finished); run agent.recover() to finish it")
        last = self.ledger.claims.listed(thread_id)[-1:]
        return (f"thread {thread_id!r} has nothing pending: it has finished; there is nothing "
                "to resume" + "".join(f" (last decided by {c.describe()})" for c in last))

    # -- running the graph ------------------------------------------------------------------------
    def _pending(self, thread_id: str) -> list[Pending]:
        """The thread's pending requests, as the checkpointer has them (the ledger's index,
        for listing, may lag behind a graph resumed without the agent)."""
        return self.outcome(thread_id).pending  # raises for an unknown thread

    def _pending_keys(self, thread_id: str) -> set[tuple[str, str, str]]:
        """The keys of the thread's pending requests: a check of what a claim names, so each
        request is not validated again (``_pending`` validated what was claimed)."""
        state = self.graph.get_state(self.config(thread_id))
        return {(thread_id, i.id, i.value.get("fingerprint")) for i in state.interrupts
                if isinstance(i.value, dict)}

    def _take_turn(self, thread_id: str) -> str:
        with self._turn_errors(thread_id):
            return self.ledger.take_turn(thread_id)

    @contextmanager
    def _turn_errors(self, thread_id: str) -> Iterator[None]:
        """Waiting for the thread's turn as the caller hears it: busy too long, or its holder
        died since we looked (then it is recovered first, and the caller looks again)."""
        try:
            yield
        except TimeoutError as exc:
            raise ApprovalError(str(exc)) from None
        except StaleTurn as exc:
            raise ApprovalError(f"{exc}; it was recovered just now: look at it again and "
                                f"decide ({self._recover_if_left(thread_id)})") from None

    def _recover_if_left(self, thread_id: str) -> str:
        """Recover the thread first when a dead process left it mid-resume: a decision it had
        claimed is applied (and stays the winner) before anything else is looked at."""
        turn = self.ledger.turns.of(thread_id)
        if turn is None or not turn.stale:
            return ""
        return str(self._told(recovery.recover_thread(self, thread_id)))

    def run(self, thread_id: str, holder: str, graph_input, claims: list[Claim] = ()
            ) -> Outcome:
        """Invoke the graph while holding the thread's turn, then give the turn back with the
        index in step. On an error the claims the graph did not take are withdrawn; a thread
        left mid-run keeps a stale turn, so ``recover()`` finds it."""
        gone = [c for c in claims if c.key not in self._pending_keys(thread_id)] if claims \
            else []
        if gone:  # asked again meanwhile by a resume that skipped the agent: nothing applies
            self.ledger.claims.withdraw(claims)
            self.ledger.finish_turn(thread_id, holder, (), self._pending(thread_id))
            raise ApprovalError("the request changed while this decision waited for its turn; "
                                "look at it again. Nothing was applied")
        try:
            result = self.graph.invoke(graph_input, self.config(thread_id),
                                       durability=self.durability)
        except BaseException as exc:
            try:
                outcome = self.outcome(thread_id)
            except ApprovalError:
                self.ledger.finish_turn(thread_id, holder)
                raise exc from None
            still = {p.key for p in outcome.pending}
            untaken = [c for c in claims if c.key in still]
            self.ledger.claims.withdraw(untaken)
            self.ledger.finish_turn(thread_id, holder, [c for c in claims if c not in untaken],
                                    outcome.pending, stopped=bool(outcome.interrupted))
            if outcome.interrupted:
                exc.add_note(f"thread {thread_id!r} stopped during "
                             f"{', '.join(outcome.interrupted)}; agent.recover() finishes it")
            raise
        # A run that returned stopped at its interrupts or at its end: no second read.
        outcome = _outcome(thread_id, result, result.get("__interrupt__", ())) \
            if isinstance(result, dict) else self.outcome(thread_id)
        self.ledger.finish_turn(thread_id, holder, claims, outcome.pending)
        return outcome

    def notify(self, claims: list[Claim], outcome: Outcome) -> None:
        """Tell the ``on_decided`` listeners; a broken listener must not hide the decision."""
        self._tell(self.on_decided, claims, outcome)

    def _told(self, recovered: recovery.Recovered) -> recovery.Recovered:
        self._tell(self.on_recovered, recovered)
        return recovered

    @staticmethod
    def _tell(listeners: list[Callable], *heard) -> None:
        for listener in list(listeners):
            try:
                listener(*heard)
            except Exception as exc:
                warnings.warn(f"listener {listener!r} failed: {exc!r}", stacklevel=4)

    def recover(self) -> list[recovery.Recovered]:
        """Finish every thread a crash left between states (see ``hitl_kit.recovery``)."""
        return [self._told(found) for found in recovery.recover(self)]


def _named(decisions, pending: dict | None = None) -> list[dict]:
    """The requests some decisions name, as ``Claims.winner`` takes them: by interrupt id, or one
    decision by the fingerprint it was made on; with ``pending``, only those not pending now."""
    if not isinstance(decisions, dict) or "kind" in decisions:
        fingerprint = (decisions.get("fingerprint") if isinstance(decisions, dict)
                       else getattr(decisions, "fingerprint", None))
        return [{"fingerprint": fingerprint}] if isinstance(fingerprint, str) and (
            pending is None or fingerprint not in {p.fingerprint for p in pending.values()}
        ) else []
    return [{"interrupt_id": i} for i in decisions
            if isinstance(i, str) and (pending is None or i not in pending)]


def _with_channel(value: Any, channel: str | None) -> Any:
    """The caller's decision with the channel it came through, checked like every field."""
    if channel is None:
        return value
    if isinstance(value, Decision):
        value = value.model_dump(exclude_defaults=True)
    return {**value, "channel": channel} if isinstance(value, dict) else value
