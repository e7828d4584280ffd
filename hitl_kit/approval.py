"""``ApprovalAgent``: the approval graph (``hitl_kit.graph``) plus the guards LangGraph does not
give you, keyed by thread id.

* An unknown thread, a thread with nothing pending, or a thread stopped mid-run is an error that
  says where the thread stands (LangGraph would silently start a fresh run, or return old state).
* A malformed decision is refused before it reaches the graph (LangGraph stores a resume value,
  and a node that raises on it raises again on every retry).
* One decision path: every channel (card, inbox, terminal, links, web, timers) ends in
  ``resume`` / ``apply_default``. Shape checks first, then the decision ledger judges, in one
  transaction, who decided first and takes the thread's turn; then the graph resumes.

    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> world = World()
    >>> agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    >>> outcome = agent.start("delete customer 3", "t1")
    >>> outcome.pending[0].payload["tool"], outcome.pending[0].payload["target"]["customer"]["plan"]
    ('delete_customer', 'trial')
    >>> agent.resume("t1", {"kind": "approve", "approver": "ana"}).paused
    False
    >>> [c["id"] for c in world.rows("customers")]
    [1, 2, 4]

Limits: with ``MemorySaver`` (the default) a paused thread lives only as long as the process;
pass ``durable_checkpointer(path)`` to keep it, and run ``recover()`` after a crash.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from hitl_kit.approvers import Approvers, NotAllowed
from hitl_kit.decisions import Claim, DecisionLedger, Request, StaleTurn, ledger_for
from hitl_kit.graph import ModelError, answer_of, build_graph
from hitl_kit.policy import ActionPolicy
from hitl_kit.requests import (
    REFRESH,
    ApprovalError,
    Decision,
    approval_payload,
    parse_decision,
    request_fingerprint,
    same_person,
    target_digest,
    validate_args,
)
from hitl_kit.vocabulary import Approver, Channel, Event, Kind, Policy, Verdict

__all__ = ["AlreadyDecided", "ApprovalAgent", "ApprovalError", "Approvers", "Decision",
           "ModelError", "NotAllowed", "Outcome", "Pending", "approval_payload", "build_graph",
           "durable_checkpointer", "parse_decision", "request_fingerprint", "validate_args"]


class AlreadyDecided(ApprovalError):
    """Another decision won this approval first; ``claim`` says whose. ``in_flight``: the
    winner is being applied right now by a live resume (else, if not applied, its process
    stopped)."""

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
            f"already decided by {claim.describe()}: approval {claim.interrupt_id} on thread "
            f"{claim.thread_id!r} {where}, and this decision was not applied")


@dataclass
class Pending:
    """One approval waiting for a human."""

    interrupt_id: str
    payload: dict

    @property
    def fingerprint(self) -> str:
        """The hash of what decides what runs; a decision may carry it to bind itself."""
        return self.payload["fingerprint"]


@dataclass
class Outcome:
    """Where a thread stands: paused with pending approvals, finished with an answer, or
    ``interrupted`` in the nodes named (its process stopped mid-run: ``recover()``)."""

    thread_id: str
    pending: list[Pending] = field(default_factory=list)
    answer: str | None = None
    decisions: list[dict] = field(default_factory=list)
    interrupted: tuple[str, ...] = ()

    @property
    def paused(self) -> bool:
        return bool(self.pending)


class ApprovalAgent:
    """The approval graph plus guards, keyed by thread id.

    ``ledger`` judges which decision wins each request (default: one in the checkpointer's
    SQLite file, else in memory). ``on_decided`` holds callables ``(claims, outcome)`` run after
    the graph took decisions; the timers of ``hitl_kit.timeouts`` listen there.
    """

    def __init__(self, model, tools: list, policy: ActionPolicy | None = None, world=None,
                 checkpointer=None, audit=None, ledger: DecisionLedger | None = None,
                 approval_ttl: float | None = None, approvers: Approvers | None = None):
        checkpointer = checkpointer if checkpointer is not None else InMemorySaver()
        self.ledger = ledger if ledger is not None else ledger_for(checkpointer)
        if approvers is not None:
            approvers.check_names(t.name for t in tools)
        self.approvers = approvers
        self.graph = build_graph(model, tools, policy, world, checkpointer, audit, approval_ttl,
                                 journal=self.ledger)
        self.kit = self.graph.kit
        self.kit.approvers = approvers
        self.tools = self.kit.tools
        self.audit = audit
        self.on_decided: list[Callable[[list[Claim], Outcome], None]] = []
        # A durable checkpointer saves every step before the next starts, so a crash loses no
        # finished step (the run journal and idempotent audit rows make repeating one safe).
        # In memory there is nothing to survive a crash: save once, when the run stops.
        self.durability = "exit" if isinstance(checkpointer, InMemorySaver) else "sync"

    @staticmethod
    def _config(thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    # -- starting and looking -------------------------------------------------------------------
    def start(self, task: str, thread_id: str, *, requested_by: str | None = None) -> Outcome:
        """Run a new task on a new thread until it finishes or pauses for a human."""
        if not isinstance(task, str) or not task.strip():
            raise ApprovalError("a task is a non-empty text")
        if not isinstance(thread_id, str) or not thread_id.strip():
            raise ApprovalError(f"a thread id is a non-empty text, not {thread_id!r}")
        self._recover_if_left(thread_id)
        holder = self._take_turn(thread_id)
        try:
            if self.graph.checkpointer.get_tuple(self._config(thread_id)) is not None:
                raise ApprovalError(f"thread {thread_id!r} already exists; start a new task on "
                                    "a new thread id, or resume this one")
        except BaseException:
            self.ledger.finish_turn(thread_id, holder)
            raise
        return self._run(thread_id, holder, {"task": task, "requested_by": requested_by})

    def outcome(self, thread_id: str) -> Outcome:
        """Where the thread stands now, read from the checkpointer."""
        state = self.graph.get_state(self._config(thread_id))
        if state.created_at is None:
            raise ApprovalError(f"there is no thread {thread_id!r}: check the id (LangGraph "
                                "would silently start a brand-new run for it)")
        pending = [Pending(i.id, i.value) for i in state.interrupts]
        # Nothing pending and nodes due, or a finished task whose step was never saved (a
        # crash between the two writes): stopped mid-run, not finished.
        interrupted = () if pending else tuple(state.next) or tuple(t.name for t in state.tasks)
        return Outcome(thread_id, pending, answer_of(state.values),
                       list(state.values.get("decisions", [])), interrupted)

    def pending(self, thread_id: str) -> list[Pending]:
        return self.outcome(thread_id).pending

    # -- deciding ---------------------------------------------------------------------------------
    def resume(self, thread_id: str, decisions: dict[str, Any] | Any, *,
               channel: str = Channel.API) -> Outcome:
        """Answer pending approvals: ``{interrupt_id: decision, ...}``, or one decision when
        exactly one approval is pending. Every decision is checked before any reaches the graph.

        A decision carrying a ``fingerprint`` must match the pending request's. The first
        decision on a request wins; a later one raises ``AlreadyDecided`` naming the winner.
        ``channel`` says where the decision came from (recorded with it).
        """
        return self._resume(thread_id, decisions, system=False, channel=channel)

    def apply_default(self, thread_id: str, interrupt_id: str, kind: str, reason: str,
                      fingerprint: str) -> Outcome:
        """The system's decision when nobody decided in time: ``kind`` "timeout" (not run) or
        "proceed" (soft gates only). ``hitl_kit.timeouts`` calls this; people use ``resume``."""
        decision = {"kind": kind, "approver": Approver.SYSTEM.value, "reason": reason,
                    "fingerprint": fingerprint}
        return self._resume(thread_id, {interrupt_id: decision}, system=True,
                            channel=Channel.TIMER)

    def _resume(self, thread_id: str, decisions: dict[str, Any] | Any, system: bool,
                channel: str = Channel.API) -> Outcome:
        if channel not in set(Channel):
            raise ApprovalError(f"channel {channel!r} is unknown; use one of "
                                f"{[str(c) for c in Channel]}")
        self._recover_if_left(thread_id)
        requests = {r.interrupt_id: r for r in self._requests(thread_id)}
        chosen = self._match(thread_id, decisions, requests)
        checked = []
        for interrupt_id, value in chosen.items():
            request = requests[interrupt_id]
            decision = parse_decision(value, self.tools.get(request.payload["tool"]),
                                      system=system)
            checked.append((request, self._bind(thread_id, decision, request, channel)))
        several = [r for r, d in checked if d.kind == Kind.APPROVE and self._needed(r) > 1]
        if several and len(checked) > 1:
            raise ApprovalError("a request that needs two approvals is answered on its own: "
                                "send its decision alone; nothing was applied")
        holder = uuid.uuid4().hex
        if several:
            request, decision = checked[0]
            return self._approve_one_of_several(thread_id, request, decision, holder)
        claims = [_claim_of(thread_id, r, d) for r, d in checked]
        with self._turn_errors(thread_id):
            earlier = self.ledger.claim_and_take_turn(claims, thread_id, holder)
        if earlier is not None:
            raise self._already(earlier)
        resume = {r.interrupt_id: d.as_resume_value() for r, d in checked}
        outcome = self._run(thread_id, holder, Command(resume=resume), claims)
        self._tell(claims, outcome)
        return outcome

    def _needed(self, request: Request) -> int:
        return 1 if self.approvers is None else self.approvers.needed(request.payload)

    def _approve_one_of_several(self, thread_id: str, request: Request, decision: Decision,
                                holder: str) -> Outcome:
        """An approval of a request that needs several people: recorded, and the graph resumes
        only with the last one needed, carrying them all."""
        claim = _claim_of(thread_id, request, decision)
        with self._turn_errors(thread_id):
            state, found = self.ledger.approve_with(claim, self._needed(request), holder)
        if state == "decided":
            raise self._already(found)
        if state == "again":
            self._refuse(thread_id, request, decision, f"{decision.approver} already approved "
                         "this request; a second, different person must approve it")
        if state == "partial":
            self._audit_decided(thread_id, request, decision, len(found))
            outcome = self.outcome(thread_id)
            self._tell([], outcome)
            return outcome
        decision = replace(decision, approvals=tuple(a.as_dict() for a in found))
        resume = {request.interrupt_id: decision.as_resume_value()}
        outcome = self._run(thread_id, holder, Command(resume=resume), [claim])
        self._tell([claim], outcome)
        return outcome

    def approvals(self, thread_id: str, interrupt_id: str, fingerprint: str) -> list:
        """The approvals recorded so far for a request that needs several (for "1 of 2")."""
        return self.ledger.approvals((thread_id, interrupt_id, fingerprint))

    def _already(self, claim: Claim) -> AlreadyDecided:
        turn = self.ledger.turn_of(claim.thread_id)
        return AlreadyDecided(claim, in_flight=turn is not None and not turn.stale)

    def _check_person(self, thread_id: str, decision: Decision, request: Request) -> Decision:
        """Who may decide: the approver's role for this request (``Approvers``), and never the
        person who asked for the task approving (or editing) its own action. A refusal is
        recorded in the audit trail before it is raised."""
        payload = request.payload
        if decision.kind in (Kind.APPROVE, Kind.EDIT) and same_person(
                decision.approver, payload.get("requested_by")):
            self._refuse(thread_id, request, decision, f"{decision.approver} asked for this "
                         "task and may not approve its actions: another person must")
        if self.approvers is None:
            return decision
        try:
            role = self.approvers.role_for(decision.approver, payload)
        except NotAllowed as exc:
            self._refuse(thread_id, request, decision, str(exc))
        return replace(decision, role=role)

    def _refuse(self, thread_id: str, request: Request, decision: Decision, why: str):
        if self.audit is not None:
            self.audit.append(_audit_row(thread_id, request, decision, Event.REFUSED,
                                         reason=why, key=f"refused:{uuid.uuid4().hex[:12]}"))
        raise NotAllowed(f"{why}; nothing was applied")

    def _audit_decided(self, thread_id: str, request: Request, decision: Decision,
                       count: int) -> None:
        if self.audit is not None:
            self.audit.append(_audit_row(
                thread_id, request, decision, Event.DECIDED, reason=decision.reason or None,
                key=f"decided:{count}", verdict=Verdict.APPROVED,
                details={"approvals_needed": self._needed(request), "approval": count}))

    def _bind(self, thread_id: str, decision: Decision, request: Request,
              channel: str) -> Decision:
        """The decision bound to this request, or ApprovalError: it was made on another version
        of the request, it approves what cannot run, a default the gate does not allow, what
        the call would touch changed since it was shown, or its approver may not decide it."""
        payload = request.payload
        if decision.fingerprint is not None and decision.fingerprint != request.fingerprint:
            earlier = self.ledger.winner(thread_id, fingerprint=decision.fingerprint)
            if earlier is not None:
                raise self._already(earlier)
            raise ApprovalError(
                f"this decision was made on request {decision.fingerprint}, but the request "
                f"pending now is {request.fingerprint}: the action or its arguments changed. "
                "Look at it again and decide on what is pending; nothing was applied")
        if decision.kind == Kind.PROCEED and payload["policy"] != Policy.SOFT_GATE:
            raise ApprovalError(f"only a soft gate proceeds without a human; this is a "
                                f"{payload['policy']}, which waits for an approval")
        if payload.get("problem"):
            if decision.kind == Kind.APPROVE:
                raise ApprovalError(f"this request cannot be approved as it stands: "
                                    f"{payload['problem']}. Edit its arguments or reject it; "
                                    "nothing was applied")
            if decision.kind == Kind.PROCEED:  # fail closed: a call that cannot run times out
                decision = replace(decision, kind=Kind.TIMEOUT, reason=decision.reason +
                                   f"; it did not proceed: {payload['problem']}")
        if decision.kind == Kind.PROCEED and self._needed(request) > 1:
            decision = replace(decision, kind=Kind.TIMEOUT, reason=decision.reason +
                               "; it did not proceed: it needs two approvals")
        decision = replace(decision, fingerprint=request.fingerprint, channel=str(channel))
        if not decision.kind.by_system:
            decision = self._check_person(thread_id, decision, request)
        if decision.kind in (Kind.APPROVE, Kind.PROCEED):
            self._check_target(thread_id, request)
        return decision

    def _check_target(self, thread_id: str, request: Request) -> None:
        payload = request.payload
        if not self.kit.reads_targets or "target" not in payload:
            return
        now = self.kit.target({"name": payload["tool"], "args": payload["args"]})
        if target_digest(now) == target_digest(payload["target"]):
            return
        reason = (f"what it would touch changed since it was shown: it was "
                  f"{json.dumps(payload['target'], default=str)}, it is now "
                  f"{json.dumps(now, default=str)}")
        self._refresh(thread_id, request, reason)
        raise ApprovalError(f"{reason}. The request is shown again with what it touches now; "
                            "look at it and decide again. Nothing was applied")

    def _refresh(self, thread_id: str, request: Request, reason: str) -> None:
        """Ask the gate to show a request again (its record changed), unless it was decided."""
        holder = self._take_turn(thread_id)
        earlier = self.ledger.winner(thread_id, request.interrupt_id, request.fingerprint)
        if earlier is not None:
            self.ledger.finish_turn(thread_id, holder)
            raise self._already(earlier)
        refresh = {request.interrupt_id: {"kind": REFRESH, "reason": reason}}
        outcome = self._run(thread_id, holder, Command(resume=refresh))
        self._tell([], outcome)

    def _match(self, thread_id: str, decisions, requests: dict[str, Request]) -> dict:
        """The decisions keyed by interrupt id, each for a request that is pending now."""
        if not isinstance(decisions, dict) or "kind" in decisions:
            fingerprint = decisions.get("fingerprint") if isinstance(decisions, dict) else None
            if fingerprint and fingerprint not in {r.fingerprint for r in requests.values()}:
                earlier = self.ledger.winner(thread_id, fingerprint=fingerprint)
                if earlier is not None:
                    raise self._already(earlier)
            if len(requests) > 1:
                raise ApprovalError(f"{len(requests)} approvals are pending on {thread_id!r}; "
                                    "answer them by interrupt id: {id: decision, ...}")
            decisions = {next(iter(requests)): decisions} if requests else {}
        elif not decisions:
            raise ApprovalError("give a decision, or a dict {interrupt_id: decision, ...}")
        for interrupt_id in decisions.keys() - requests.keys():
            earlier = self.ledger.winner(thread_id, interrupt_id)
            if earlier is not None:
                raise self._already(earlier)
        if not requests:
            raise ApprovalError(self._why_nothing_pending(thread_id))
        unknown = set(decisions) - set(requests)
        if unknown:
            raise ApprovalError(f"not pending on {thread_id!r}: {sorted(unknown)}; pending are "
                                f"{sorted(requests)}")
        return decisions

    def _why_nothing_pending(self, thread_id: str) -> str:
        outcome = self.outcome(thread_id)
        if outcome.interrupted:
            return (f"thread {thread_id!r} has nothing pending: it was interrupted during "
                    f"{', '.join(outcome.interrupted)} (its process stopped before it "
                    "finished); run agent.recover() to finish it")
        last = self.ledger.claims(thread_id)[-1:]
        return (f"thread {thread_id!r} has nothing pending: it has finished; there is nothing "
                "to resume" + "".join(f" (last decided by {c.describe()})" for c in last))

    # -- running the graph ------------------------------------------------------------------------
    def _requests(self, thread_id: str) -> list[Request]:
        """The thread's pending requests, from the ledger's index; from the graph (and put in
        the index) when the index has none, e.g. for a thread paused before a crash."""
        found = self.ledger.requests(thread_id)
        if found:
            return found
        outcome = self.outcome(thread_id)  # raises for an unknown thread
        found = requests_of(outcome)
        if found:
            self.ledger.sync(thread_id, found)
        return found

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
        turn = self.ledger.turn_of(thread_id)
        if turn is None or not turn.stale:
            return ""
        from hitl_kit.recovery import recover_thread

        return str(recover_thread(self, thread_id))

    def _run(self, thread_id: str, holder: str, graph_input, claims: list[Claim] = ()
             ) -> Outcome:
        """Invoke the graph while holding the thread's turn, then give the turn back with the
        index in step. On an error the claims the graph did not take are withdrawn; a thread
        left mid-run keeps a stale turn, so ``recover()`` finds it."""
        try:
            result = self.graph.invoke(graph_input, self._config(thread_id),
                                       durability=self.durability)
        except BaseException as exc:
            try:
                outcome = self.outcome(thread_id)
            except ApprovalError:
                self.ledger.finish_turn(thread_id, holder)
                raise exc from None
            still = {(p.interrupt_id, p.fingerprint) for p in outcome.pending}
            untaken = [c for c in claims if (c.interrupt_id, c.fingerprint) in still]
            self.ledger.withdraw(untaken)
            taken = [c for c in claims if c not in untaken]
            self.ledger.finish_turn(thread_id, holder, taken, requests_of(outcome),
                                    stopped=bool(outcome.interrupted))
            if outcome.interrupted:
                exc.add_note(f"thread {thread_id!r} stopped during "
                             f"{', '.join(outcome.interrupted)}; agent.recover() finishes it")
            raise
        outcome = _outcome_of(thread_id, result) if isinstance(result, dict) \
            else self.outcome(thread_id)
        self.ledger.finish_turn(thread_id, holder, claims, requests_of(outcome))
        return outcome

    def _tell(self, claims: list[Claim], outcome: Outcome) -> None:
        for listener in list(self.on_decided):
            try:
                listener(claims, outcome)
            except Exception as exc:  # the decision stands; a broken listener must not hide it
                warnings.warn(f"on_decided listener {listener!r} failed: {exc!r}", stacklevel=3)

    def recover(self) -> list:
        """Finish every thread a crash left between states (see ``hitl_kit.recovery``)."""
        from hitl_kit.recovery import recover

        return recover(self)


def _outcome_of(thread_id: str, result: dict) -> Outcome:
    """Where a thread stands, from what ``invoke`` returned (a run that returned stopped at
    its interrupts or at the end): no second read of the checkpoint."""
    pending = [Pending(i.id, i.value) for i in result.get("__interrupt__", ())]
    return Outcome(thread_id, pending, None if pending else answer_of(result),
                   list(result.get("decisions", [])))


def _claim_of(thread_id: str, request: Request, decision: Decision) -> Claim:
    return Claim(thread_id, request.interrupt_id, request.fingerprint, decision.kind,
                 decision.approver, decision.reason, channel=decision.channel,
                 role=decision.role,
                 args=None if decision.args is None else json.dumps(decision.args))


def _audit_row(thread_id: str, request: Request, decision: Decision, event: Event, *,
               reason: str | None, key: str, verdict: Verdict | None = None,
               details: dict | None = None) -> dict:
    """An audit row about a person's decision on a request (refused, or one of several)."""
    payload = request.payload
    args = payload["args"] if isinstance(payload["args"], dict) else {"raw": payload["args"]}
    return {"event_key": f"{thread_id}:{payload['tool_call_id']}:{key}",
            "session_id": thread_id, "action_type": payload["tool"] or "(no name)",
            "parameters": args, "reversibility_class": payload["reversibility"],
            "event": str(event), "channel": decision.channel, "approver_id": decision.approver,
            "approver_role": decision.role, "decision": None if verdict is None else str(verdict),
            "reason": reason, "proposed_at": payload.get("proposed_at") or request.asked_at,
            "details": details}


def requests_of(outcome: Outcome) -> list[Request]:
    """The outcome's pending approvals as index rows."""
    now = datetime.now(UTC).isoformat()
    return [Request(outcome.thread_id, p.interrupt_id, p.fingerprint, p.payload,
                    p.payload.get("proposed_at") or now) for p in outcome.pending]


def durable_checkpointer(path: str):
    """A SqliteSaver on ``path`` whose paused threads survive the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))
