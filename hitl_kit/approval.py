"""The approval gate: a LangGraph agent that pauses before the actions a human must decide.

    plan ──(one Send per proposed tool call)──> gate ──> execute ──> plan ... ──> report

* **plan** asks the chat model for tool calls.
* **gate** classifies one call with the policy table. Auto-executable calls pass; gated calls
  pause the graph with ``interrupt(payload)``. The payload carries context, not just the action.
  The node only reads before ``interrupt()``, because on resume it runs again from its first line.
* **execute** runs the approved calls (the only node with side effects, and it never pauses), and
  turns a rejection into the tool's result so the model hears the reason.
* **report** keeps the model's final answer.

``ApprovalAgent`` wraps the compiled graph with the guards LangGraph does not give you: an
unknown thread or a thread with nothing pending is an error (LangGraph would silently start a
fresh run or return stale state), and a malformed decision is refused before it reaches the graph
(LangGraph stores a resume value; a node that raises on it raises again on every retry).

Each pending request carries a ``fingerprint`` of the action and arguments shown. A decision is
bound to one request (its interrupt id, and its fingerprint when the decision carries one) and
must win the request's claim in the decision ledger (``hitl_kit.decisions``) before the graph
resumes: a double click, a second approver or a timer that comes second is told who decided.
With ``approval_ttl`` an approval is re-checked just before execution and does not run if the
request has expired by then.
"""

from __future__ import annotations

import hashlib
import json
import operator
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt
from pydantic import ValidationError

from hitl_kit.decisions import Claim, DecisionLedger, ledger_for
from hitl_kit.policy import ActionPolicy, Policy

DECISION_KINDS = ("approve", "reject", "edit")  # what a person may answer
SYSTEM_KINDS = ("timeout", "proceed")  # what only the kit's timers answer (hitl_kit.timeouts)
SYSTEM, AUTO = "system", "auto"  # approver names no person may use
VERDICTS = {"approve": "approved", "reject": "rejected", "timeout": "timed-out",
            "proceed": "auto-approved"}
RISK_BY_CLASS = {
    "fully_reversible": "low",
    "partially_reversible": "low",
    "irreversible_low": "medium",
    "irreversible_high": "high",
    None: "high",  # unclassified: fail closed
}
MAX_TURNS = 8


class ApprovalError(ValueError):
    """A resume the kit refuses: unknown thread, nothing pending, or a malformed decision."""


class AlreadyDecided(ApprovalError):
    """Another decision won this approval first; ``claim`` says whose."""

    def __init__(self, claim: Claim):
        self.claim = claim
        super().__init__(
            f"already decided by {claim.describe()}: approval {claim.interrupt_id} on thread "
            f"{claim.thread_id!r} is not pending any more, and this decision was not applied")


# -- decisions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """An answer to one pending approval: a person's, or the system's when time ran out."""

    kind: str  # approve | reject | edit; the system's: timeout | proceed
    approver: str
    reason: str = ""
    args: dict | None = None  # the edited arguments, for kind == "edit"
    fingerprint: str | None = None  # of the request this decision was made on, when known

    def as_resume_value(self) -> dict:
        return {"kind": self.kind, "approver": self.approver, "reason": self.reason,
                "args": self.args, "fingerprint": self.fingerprint}


def parse_decision(value: Any, tool=None, *, system: bool = False) -> Decision:
    """A ``Decision`` from a dict (or a Decision), or ``ApprovalError`` saying what is wrong.

    With ``tool`` given, edited arguments are validated against the tool's schema. A person
    answers with ``DECISION_KINDS`` under their own name; ``system=True`` is for the kit's
    timers, which answer with ``SYSTEM_KINDS`` as approver "system".
    """
    if isinstance(value, Decision):
        value = value.as_resume_value()
    if not isinstance(value, dict):
        raise ApprovalError(
            f"a decision is a dict like {{'kind': 'approve', 'approver': 'ana'}}, not {value!r}")
    kind = value.get("kind")
    kinds = SYSTEM_KINDS if system else DECISION_KINDS
    if kind not in kinds:
        if kind in SYSTEM_KINDS:
            raise ApprovalError(f"decision kind {kind!r} is the system's own, for timeouts; a "
                                f"person answers with one of {DECISION_KINDS}")
        raise ApprovalError(f"decision kind {kind!r} is unknown; use one of {kinds}")
    approver = value.get("approver")
    if not isinstance(approver, str) or not approver.strip():
        raise ApprovalError("a decision must name its approver (a non-empty 'approver')")
    approver = approver.strip()
    if system and approver != SYSTEM:
        raise ApprovalError(f"the system's decisions are made as {SYSTEM!r}, not {approver!r}")
    if not system and approver in (SYSTEM, AUTO):
        raise ApprovalError(f"approver {approver!r} is reserved ('system' applies timeouts, "
                            "'auto' runs what needs no human); name the person deciding")
    reason = value.get("reason") or ""
    if not isinstance(reason, str):
        raise ApprovalError("'reason' must be text")
    fingerprint = value.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
        raise ApprovalError("'fingerprint' must be the text of a pending request's fingerprint")
    args = value.get("args")
    if kind == "edit":
        if not isinstance(args, dict):
            raise ApprovalError("an 'edit' decision needs 'args': the tool's new arguments")
        if tool is not None:
            args = validate_args(tool, args)
    else:
        args = None
    return Decision(kind, approver, reason, args, fingerprint)


def validate_args(tool, args: dict) -> dict:
    """The arguments checked against the tool's schema, or ``ApprovalError``."""
    schema = tool.args_schema
    try:
        checked = schema.model_validate(args) if hasattr(schema, "model_validate") else args
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApprovalError(f"edited arguments for {tool.name} are invalid: {problems}") from None
    unknown = set(args) - set(tool.args)
    if unknown:
        raise ApprovalError(f"{tool.name} has no argument(s) {sorted(unknown)}")
    return checked.model_dump() if hasattr(checked, "model_dump") else dict(checked)


# -- the graph ------------------------------------------------------------------------------------

def _merge(old: dict, new: dict) -> dict:
    return {**old, **new}


def _now() -> str:
    return datetime.now(UTC).isoformat()


class AgentState(TypedDict, total=False):
    task: str
    messages: Annotated[list[AnyMessage], add_messages]
    decisions: Annotated[list[dict], operator.add]  # one per gated or auto call, all turns
    turns: int
    answer: str
    proposed_at: Annotated[dict[str, str], _merge]  # tool_call_id -> when the model proposed it


def build_graph(model, tools: list, policy: ActionPolicy | None = None, world=None,
                checkpointer=None, audit=None, approval_ttl: float | None = None):
    """Compile the plan -> gate -> execute -> report graph.

    ``model`` is a chat model (see ``hitl_kit.llm``); ``world`` (optional) lets the gate show the
    current contents of the record a call would touch; ``audit`` (an ``AuditTrail``, optional)
    gets a row when each call is proposed and another when it is resolved. ``approval_ttl``
    (seconds, optional): a gated request expires this long after it was proposed, and an approval
    that reaches execution later does not run.
    """
    if approval_ttl is not None and (isinstance(approval_ttl, bool)
                                     or not isinstance(approval_ttl, int | float)
                                     or not 0 < approval_ttl < float("inf")):
        raise ValueError(f"approval_ttl is a positive number of seconds, not {approval_ttl!r}")
    policy = policy or ActionPolicy.from_tools(tools)
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools(tools)

    def plan(state: AgentState, config) -> dict:
        messages = state.get("messages") or [HumanMessage(state["task"])]
        reply = bound.invoke(messages)
        new = [reply] if state.get("messages") else [messages[0], reply]
        proposed_at = {call["id"]: _now() for call in reply.tool_calls}
        if audit is not None:
            for call in reply.tool_calls:
                audit.append(_audit_entry(config, call, policy.classify(call["name"]),
                                          proposed_at[call["id"]]))
        return {"messages": new, "turns": state.get("turns", 0) + 1, "proposed_at": proposed_at}

    def route_after_plan(state: AgentState):
        last = state["messages"][-1]
        if not last.tool_calls or state.get("turns", 0) > MAX_TURNS:
            return "report"
        return [Send("gate", {"task": state["task"], "call": c,
                              "proposed_at": state["proposed_at"][c["id"]]})
                for c in last.tool_calls]

    def gate(item: dict) -> dict:
        call, edited_by, revision, refused = dict(item["call"]), None, 0, None
        expires_at = None
        if approval_ttl is not None:
            proposed = datetime.fromisoformat(item["proposed_at"])
            expires_at = (proposed + timedelta(seconds=approval_ttl)).isoformat()
        while True:  # an edit is classified again and, if still gated, shown again
            ruling = policy.classify(call["name"])
            if not ruling.needs_human:
                return {"decisions": [_record(call, ruling, "auto-approved", AUTO)]}
            payload = approval_payload(item["task"], call, ruling, by_name.get(call["name"]),
                                       world)
            payload.update(proposed_at=item["proposed_at"], revision=revision,
                           fingerprint=request_fingerprint(call, revision))
            if expires_at is not None:
                payload["expires_at"] = expires_at
            if refused is not None:
                payload["error"] = refused
            answer = interrupt(payload)
            revision += 1
            try:
                decision = parse_decision(answer, by_name.get(call["name"]),
                                          system=_from_system(answer))
            except ApprovalError as exc:
                # Normally refused before resuming; if it got here anyway, ask again rather than
                # raise (a raise would repeat on every retry, since the answer is stored).
                refused = str(exc)
                continue
            refused = None
            if decision.kind == "edit":
                call, edited_by = {**call, "args": decision.args}, decision.approver
                continue
            # A soft gate that proceeds is recorded as what it is: it ran without a human.
            approver = AUTO if decision.kind == "proceed" else decision.approver
            record = _record(call, ruling, VERDICTS[decision.kind], approver, decision.reason)
            return {"decisions": [{**record, "edited_by": edited_by, "expires_at": expires_at}]}

    def execute(state: AgentState, config) -> dict:
        last = next(m for m in reversed(state["messages"]) if isinstance(m, AIMessage))
        ids = {c["id"] for c in last.tool_calls}
        results = []
        for record in state["decisions"]:
            if record["tool_call_id"] not in ids:
                continue
            expired = _expired(record)  # checked once, just before running
            message = _expired_message(record) if expired else _run(record, by_name)
            results.append(message)
            if audit is not None:
                audit.append(_resolution_entry(config, record, message,
                                               state["proposed_at"][record["tool_call_id"]],
                                               expired))
        return {"messages": results}

    def report(state: AgentState) -> dict:
        return {"answer": state["messages"][-1].content}

    graph = StateGraph(AgentState)
    graph.add_node("plan", plan)
    graph.add_node("gate", gate)
    graph.add_node("execute", execute)
    graph.add_node("report", report)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route_after_plan, ["gate", "report"])
    graph.add_edge("gate", "execute")
    graph.add_edge("execute", "plan")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=checkpointer if checkpointer is not None
                         else InMemorySaver())


def approval_payload(task: str, call: dict, ruling, tool, world) -> dict:
    """What an approver needs: the goal, the action, what it touches, what each answer does."""
    klass = ruling.reversibility.value if ruling.reversibility else "unclassified"
    args_text = ", ".join(f"{k}={v!r}" for k, v in call["args"].items())
    return {
        "task": task,
        "tool": call["name"],
        "args": call["args"],
        "tool_call_id": call["id"],
        "description": getattr(tool, "description", "no such tool: it will fail if approved"),
        "target": world.target_of(call["name"], call["args"]) if world is not None else None,
        "reversibility": klass,
        "policy": ruling.policy.value,
        "risk": RISK_BY_CLASS[ruling.reversibility.value if ruling.reversibility else None],
        "why_gated": ruling.reason,
        "on_approve": f"{call['name']}({args_text}) runs now.",
        "on_reject": "Nothing runs. The agent is told your reason and may propose something else.",
    }


def request_fingerprint(call: dict, revision: int) -> str:
    """A short hash of what an approver is shown: the tool, its arguments, the call, and how many
    answers the call has had before (so an edited call never shares its old fingerprint)."""
    shown = {"tool": call["name"], "args": call["args"], "call": call["id"], "revision": revision}
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _from_system(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("kind") in SYSTEM_KINDS


def _expired(record: dict) -> bool:
    """True when an approved call's request expired before it could run."""
    return (record["decision"] in ("approved", "auto-approved")
            and record.get("expires_at") is not None
            and datetime.now(UTC) > datetime.fromisoformat(record["expires_at"]))


def _expired_message(record: dict) -> ToolMessage:
    return ToolMessage(f"Not run: the approval came after the request expired at "
                       f"{record['expires_at']}; propose it again if it is still wanted",
                       tool_call_id=record["tool_call_id"], status="error")


def _record(call: dict, ruling, decision: str, approver: str, reason: str = "") -> dict:
    return {"tool_call_id": call["id"], "tool": call["name"], "args": call["args"],
            "reversibility": ruling.reversibility.value if ruling.reversibility else "unclassified",
            "policy": ruling.policy.value, "decision": decision, "approver": approver,
            "reason": reason}


def _audit_entry(config: dict, call: dict, ruling, proposed_at: str) -> dict:
    thread_id = config["configurable"]["thread_id"]
    return {
        "event_key": f"{thread_id}:{call['id']}:proposed",
        "session_id": thread_id,
        "action_type": call["name"],
        "parameters": call["args"],
        "reversibility_class": ruling.reversibility.value if ruling.reversibility
        else "unclassified",
        "event": "proposed",
        "proposed_at": proposed_at,
    }


def _resolution_entry(config: dict, record: dict, message: ToolMessage, proposed_at: str,
                      expired: bool = False) -> dict:
    thread_id = config["configurable"]["thread_id"]
    if record["decision"] in ("rejected", "timed-out") or expired:
        outcome, executed_at = "not_executed", None
    else:
        outcome, executed_at = ("error" if message.status == "error" else "success"), _now()
    reason = record["reason"] or None
    if record.get("edited_by"):
        reason = f"arguments edited by {record['edited_by']}" + (f"; {reason}" if reason else "")
    if expired:
        reason = (f"not executed: the approval came after the request expired at "
                  f"{record['expires_at']}" + (f"; {reason}" if reason else ""))
    return {
        "event_key": f"{thread_id}:{record['tool_call_id']}:resolved",
        "session_id": thread_id,
        "action_type": record["tool"],
        "parameters": record["args"],
        "reversibility_class": record["reversibility"],
        "event": "resolved",
        "approver_id": record["approver"],
        "decision": record["decision"],
        "outcome": outcome,
        "reason": reason,
        "proposed_at": proposed_at,
        "executed_at": executed_at,
    }


def _run(record: dict, by_name: dict) -> ToolMessage:
    """Execute one decided call; its result (or the rejection) becomes the tool's message."""
    call_id = record["tool_call_id"]
    if record["decision"] == "rejected":
        reason = record["reason"] or "no reason given"
        return ToolMessage(f"Rejected by {record['approver']}: {reason}", tool_call_id=call_id,
                           status="error")
    if record["decision"] == "timed-out":
        return ToolMessage(f"Not run, timed out: {record['reason']}", tool_call_id=call_id,
                           status="error")
    tool = by_name.get(record["tool"])
    if tool is None:
        return ToolMessage(f"Error: there is no tool {record['tool']!r}", tool_call_id=call_id,
                           status="error")
    try:
        result = tool.invoke(record["args"])
    except Exception as exc:  # the world refused (no such record...): tell the model
        return ToolMessage(f"Error: {exc}", tool_call_id=call_id, status="error")
    text = json.dumps(result, default=str)
    if record.get("edited_by"):
        text = f"Edited by {record['edited_by']} to {json.dumps(record['args'])}; result: {text}"
    return ToolMessage(text, tool_call_id=call_id)


# -- the guarded wrapper --------------------------------------------------------------------------

@dataclass
class Pending:
    """One approval waiting for a human."""

    interrupt_id: str
    payload: dict

    @property
    def fingerprint(self) -> str:
        """The hash of the action and arguments shown; a decision may carry it."""
        return self.payload["fingerprint"]


@dataclass
class Outcome:
    """Where a thread stands after a call: paused with pending approvals, or done."""

    thread_id: str
    pending: list[Pending] = field(default_factory=list)
    answer: str | None = None
    decisions: list[dict] = field(default_factory=list)

    @property
    def paused(self) -> bool:
        return bool(self.pending)


class ApprovalAgent:
    """The approval graph plus guards, keyed by thread id.

    ``ledger`` decides which decision wins each request (default: one in the checkpointer's
    SQLite file, else in memory). ``on_decided`` holds callables ``(claims, outcome)`` run after
    the graph took decisions; the timers of ``hitl_kit.timeouts`` listen there.
    """

    def __init__(self, model, tools: list, policy: ActionPolicy | None = None, world=None,
                 checkpointer=None, audit=None, ledger: DecisionLedger | None = None,
                 approval_ttl: float | None = None):
        self.tools = {t.name: t for t in tools}
        self.audit = audit
        self.graph = build_graph(model, tools, policy, world, checkpointer, audit, approval_ttl)
        self.ledger = ledger if ledger is not None else ledger_for(self.graph.checkpointer)
        self.on_decided: list[Callable[[list[Claim], Outcome], None]] = []

    def _config(self, thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    def start(self, task: str, thread_id: str) -> Outcome:
        """Run a new task on a new thread until it finishes or pauses for a human."""
        if not isinstance(task, str) or not task.strip():
            raise ApprovalError("a task is a non-empty text")
        if self._exists(thread_id):
            raise ApprovalError(f"thread {thread_id!r} already exists; start a new task on a "
                                "new thread id, or resume this one")
        self.graph.invoke({"task": task}, self._config(thread_id))
        return self.outcome(thread_id)

    def _exists(self, thread_id: str) -> bool:
        return self.graph.get_state(self._config(thread_id)).created_at is not None

    def outcome(self, thread_id: str) -> Outcome:
        state = self.graph.get_state(self._config(thread_id))
        if state.created_at is None:
            raise ApprovalError(f"there is no thread {thread_id!r}: check the id (LangGraph "
                                "would silently start a brand-new run for it)")
        pending = [Pending(i.id, i.value) for i in state.interrupts]
        return Outcome(thread_id, pending, state.values.get("answer"),
                       list(state.values.get("decisions", [])))

    def pending(self, thread_id: str) -> list[Pending]:
        return self.outcome(thread_id).pending

    def resume(self, thread_id: str, decisions: dict[str, Any] | Any) -> Outcome:
        """Answer pending approvals: ``{interrupt_id: decision, ...}``, or one decision when
        exactly one approval is pending. Every decision is checked before any reaches the graph.

        A decision carrying a ``fingerprint`` must match the pending request's. The first
        decision on a request wins; a later one raises ``AlreadyDecided`` naming the winner.
        """
        return self._resume(thread_id, decisions, system=False)

    def apply_default(self, thread_id: str, interrupt_id: str, kind: str, reason: str,
                      fingerprint: str) -> Outcome:
        """The system's decision when nobody decided in time: ``kind`` "timeout" (not run) or
        "proceed" (soft gates only). ``hitl_kit.timeouts`` calls this; people use ``resume``."""
        decision = {"kind": kind, "approver": SYSTEM, "reason": reason, "fingerprint": fingerprint}
        return self._resume(thread_id, {interrupt_id: decision}, system=True)

    def _resume(self, thread_id: str, decisions: dict[str, Any] | Any, system: bool) -> Outcome:
        pending = {p.interrupt_id: p for p in self.pending(thread_id)}
        decisions = self._match(thread_id, decisions, pending)
        checked, claims = {}, []
        for interrupt_id, value in decisions.items():
            request = pending[interrupt_id]
            decision = parse_decision(value, self.tools.get(request.payload["tool"]),
                                      system=system)
            self._check_binding(thread_id, decision, request)
            checked[interrupt_id] = decision.as_resume_value()
            claims.append(Claim(thread_id, interrupt_id, request.fingerprint, decision.kind,
                                decision.approver, decision.reason))
        earlier = self.ledger.claim(claims)
        if earlier is not None:
            raise AlreadyDecided(earlier)
        try:
            with self.ledger.turn(thread_id):
                self._apply(thread_id, checked, claims)
                outcome = self.outcome(thread_id)
        except TimeoutError as exc:
            self.ledger.withdraw(claims)
            raise ApprovalError(str(exc)) from None
        for listener in list(self.on_decided):
            try:
                listener(claims, outcome)
            except Exception as exc:  # the decision stands; a broken listener must not hide it
                warnings.warn(f"on_decided listener {listener!r} failed: {exc!r}", stacklevel=2)
        return outcome

    def _match(self, thread_id: str, decisions, pending: dict[str, Pending]) -> dict:
        """The decisions keyed by interrupt id, each for a request that is pending now."""
        if not isinstance(decisions, dict) or "kind" in decisions:
            fingerprint = decisions.get("fingerprint") if isinstance(decisions, dict) else None
            if fingerprint and fingerprint not in {p.fingerprint for p in pending.values()}:
                earlier = self.ledger.winner(thread_id, fingerprint=fingerprint)
                if earlier is not None:
                    raise AlreadyDecided(earlier)
            if len(pending) > 1:
                raise ApprovalError(f"{len(pending)} approvals are pending on {thread_id!r}; "
                                    "answer them by interrupt id: {id: decision, ...}")
            decisions = {next(iter(pending)): decisions} if pending else {}
        elif not decisions:
            raise ApprovalError("give a decision, or a dict {interrupt_id: decision, ...}")
        for interrupt_id in decisions.keys() - pending.keys():
            earlier = self.ledger.winner(thread_id, interrupt_id)
            if earlier is not None:
                raise AlreadyDecided(earlier)
        if not pending:
            last = self.ledger.claims(thread_id)[-1:]
            raise ApprovalError(f"thread {thread_id!r} has nothing pending: it has finished or "
                                "was already answered; there is nothing to resume"
                                + "".join(f" (last decided by {c.describe()})" for c in last))
        unknown = set(decisions) - set(pending)
        if unknown:
            raise ApprovalError(f"not pending on {thread_id!r}: {sorted(unknown)}; pending are "
                                f"{sorted(pending)}")
        return decisions

    def _check_binding(self, thread_id: str, decision: Decision, request: Pending) -> None:
        """Refuse a decision made on another version of the request, and a default the
        request's gate does not allow."""
        if decision.fingerprint is not None and decision.fingerprint != request.fingerprint:
            earlier = self.ledger.winner(thread_id, fingerprint=decision.fingerprint)
            if earlier is not None:
                raise AlreadyDecided(earlier)
            raise ApprovalError(
                f"this decision was made on request {decision.fingerprint}, but the request "
                f"pending now is {request.fingerprint}: the action or its arguments changed. "
                "Look at it again and decide on what is pending; nothing was applied")
        if decision.kind == "proceed" and request.payload["policy"] != Policy.SOFT_GATE:
            raise ApprovalError(f"only a soft gate proceeds without a human; this is a "
                                f"{request.payload['policy']}, which waits for an approval")

    def _apply(self, thread_id: str, resume: dict, claims: list[Claim]) -> None:
        """Resume the graph with claimed decisions; withdraw the claims it did not take."""
        try:
            self.graph.invoke(Command(resume=resume), self._config(thread_id))
        except BaseException:
            still = {(p.interrupt_id, p.fingerprint) for p in self.pending(thread_id)}
            self.ledger.withdraw([c for c in claims if (c.interrupt_id, c.fingerprint) in still])
            raise


def durable_checkpointer(path: str):
    """A SqliteSaver on ``path`` whose paused threads survive the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))
