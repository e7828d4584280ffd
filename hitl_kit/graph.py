"""The approval graph, node by node: plan, gate, execute.

    plan ──(one Send per proposed call)──> gate ──> execute ──> plan ... ──> END
                                            │  ↑                  │
                                            └──┘ shown again      └──> gate: changed after
                                             (an edit, a refusal,       its approval, shown
                                              a change)                 again

* ``plan`` asks the chat model for tool calls and gives every call an id unique in the thread.
* ``route_after_plan`` checks and classifies each call once and builds its ``ApprovalRequest``
  (``make_request``): what it would touch is read here, the impact rules and what the agent had
  read decide its gate. The gate task keeps the request as its input, so a gate that runs again
  on resume shows and judges exactly what was shown.
* ``gate`` passes calls that need no human and pauses the others with ``interrupt(request)``.
  On resume it takes only the decision the ledger holds for that request (a raw
  ``Command(resume=...)`` that skipped the ledger is refused), judges it with
  ``contract.judge`` and, for an edit or a refusal, asks again with a new request (a new task,
  never a second ``interrupt()`` in one node, so nothing is replayed).
* ``execute`` runs each decided call effectively once: it is the only node with side effects
  and never pauses. Just before a call runs, what it would touch is read again and compared
  with what was approved; a change runs nothing and asks again.

``requests_for``, ``decide`` and ``run_decided`` are the work for one call; ``hitl_kit.middleware``
runs them at ``create_agent``'s hooks. Every node is a plain function of the state and a ``Kit``
(model, tools, policy, ledger, audit trail), bound with ``functools.partial`` by ``build_graph``::

    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> world = World()
    >>> graph = build_graph(OfflineChatModel(), world.tools(), world=world)
    >>> state = graph.invoke({"task": "delete customer 3"}, {"configurable": {"thread_id": "t"}})
    >>> [i.value["tool"] for i in state["__interrupt__"]]
    ['delete_customer']

Limits: the graph alone decides nothing; ``hitl_kit.approval.ApprovalAgent`` claims decisions
in the ledger and resumes the graph with them.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt
from pydantic import BaseModel, ConfigDict

from hitl_kit.audit_chain import audit_row
from hitl_kit.contract import (
    ApprovalError,
    ApprovalRequest,
    Decision,
    DecisionForm,
    judge,
    key_text,
    target_digest,
    validate_args,
)
from hitl_kit.ledger import DecisionLedger
from hitl_kit.policy import ActionPolicy
from hitl_kit.provenance import provenance as what_was_read
from hitl_kit.vocabulary import (
    IDEMPOTENCY_KEY,
    UNCLASSIFIED,
    Approver,
    Channel,
    Event,
    Kind,
    Verdict,
)

MAX_TURNS = 8


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class AgentState(TypedDict, total=False):
    task: str
    requested_by: str | None  # who asked for the task (they may not approve its actions)
    messages: Annotated[list[AnyMessage], add_messages]
    decided: Annotated[list[dict], operator.add]  # a Decided per answer that ends a showing
    turns: int


class Decided(BaseModel):
    """A decision and the request it decided, exactly as shown: what ``execute`` runs and the
    audit trail records. Kept in the state as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ApprovalRequest
    decision: Decision

    @property
    def verdict(self) -> Verdict:
        return self.decision.kind.verdict


@dataclass
class Kit:
    """What the nodes work with. ``world.target_of(tool, args)`` reads, without side effects,
    what a call would touch; ``ledger`` holds the decisions and the run journal."""

    model: Any  # the chat model with the tools bound
    tools: dict[str, Any]
    policy: ActionPolicy
    ledger: DecisionLedger
    world: Any = None
    audit: Any = None
    approvers: Any = None  # hitl_kit.approvers.Approvers: who may decide what
    approval_ttl: float | None = None

    def target(self, tool: str, args: Any) -> Any:
        """What the call would touch now (the world's ``target_of``), or None."""
        if self.world is None or not hasattr(self.world, "target_of") \
                or not isinstance(args, dict):
            return None
        try:
            return self.world.target_of(tool, args)
        except Exception as exc:  # shown to the approver; a gate must not fail on a lookup
            return {"error": f"could not read what it would touch: {type(exc).__name__}: {exc}"}


# -- plan -----------------------------------------------------------------------------------------

class ModelError(RuntimeError):
    """The chat model could not be asked (unreachable, timed out, an HTTP error, a reply that
    could not be read). Nothing after the model call ran; the thread stays stopped in ``plan``
    and ``recover()`` asks again."""


def plan(state: AgentState, *, kit: Kit) -> dict:
    """Ask the model what to do next; every call it proposes gets a thread-unique id."""
    messages = state.get("messages") or [HumanMessage(state["task"])]
    try:
        reply = kit.model.invoke(messages)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300] or "no details"
        raise ModelError(f"the chat model failed ({type(exc).__name__}: {detail}); nothing "
                         "after the model call ran, and agent.recover() asks it again") from exc
    from hitl_kit.llm import storable_reply  # here: llm pulls in LangChain's chat models

    reply = storable_reply(reply, messages)
    new = [reply] if state.get("messages") else [messages[0], reply]
    return {"messages": new, "turns": state.get("turns", 0) + 1}


def route_after_plan(state: AgentState, *, kit: Kit):
    """One gate task per proposed call, malformed ones included; END when the model answered."""
    last = state["messages"][-1]
    if not [*last.tool_calls, *last.invalid_tool_calls] or state.get("turns", 0) > MAX_TURNS:
        return END
    return [_gate(r) for r in requests_for(kit, last, state["messages"], state["task"],
                                           state.get("requested_by"))]


def requests_for(kit: Kit, reply: AIMessage, messages: list, task: str,
                 requested_by: str | None) -> list[ApprovalRequest]:
    """The request for each call of the model's ``reply`` (malformed ones included, with their
    problem), gated by what the agent had read in ``messages`` before it."""
    base = {"task": task, "proposed_at": now_iso(),
            "provenance": tuple(what_was_read(messages)), "requested_by": requested_by}
    requests = [make_request(kit, call["name"], call["args"], call["id"], **base)
                for call in reply.tool_calls]
    for bad in reply.invalid_tool_calls:
        problem = ("the model's arguments cannot be used: "
                   f"{bad.get('error') or 'they are not valid JSON'}")
        requests.append(make_request(kit, bad.get("name") or "", bad.get("args") or "",
                                     bad["id"], problem=problem, **base))
    return requests


def _gate(request: ApprovalRequest) -> Send:
    return Send("gate", {"request": request.as_json()})


def make_request(kit: Kit, tool_name: str, args: Any, call_id: str, *, task: str,
                 proposed_at: str, provenance: tuple = (), requested_by: str | None = None,
                 problem: str | None = None, revision: int = 0,
                 floor: ApprovalRequest | None = None, error: str | None = None,
                 edited_by: str | None = None) -> ApprovalRequest:
    """The request for one call: its arguments checked against the tool, what it would touch
    read now, its class from the policy (never below ``floor``, how it was gated before)."""
    tool = kit.tools.get(tool_name)
    if problem is None:
        if tool is None:
            problem = f"there is no tool {tool_name!r}"
        else:
            try:
                args = validate_args(tool, args)
            except ApprovalError as exc:
                problem = str(exc)
    target = kit.target(tool_name, args) if problem is None else None
    ruling = kit.policy.classify(tool_name, args if problem is None else None, target,
                                 provenance=provenance)
    if floor is not None:
        ruling = kit.policy.at_least(ruling, floor)
    request = ApprovalRequest(
        task=task, tool=tool_name, args=args, tool_call_id=call_id,
        description=getattr(tool, "description", "no such tool: it cannot run"),
        target=target,
        reversibility=ruling.reversibility.value if ruling.reversibility else UNCLASSIFIED,
        policy=ruling.policy, why_gated=ruling.reason, raised_by=ruling.raised_by,
        revision=revision, proposed_at=proposed_at, expires_at=_expiry(kit, proposed_at),
        provenance=provenance, requested_by=requested_by, problem=problem, error=error,
        edited_by=edited_by)
    if kit.approvers is not None and ruling.needs_human:
        request = request.changed(**kit.approvers.describe_for(request))
    return request


def _expiry(kit: Kit, proposed_at: str) -> str | None:
    if kit.approval_ttl is None:
        return None
    return (datetime.fromisoformat(proposed_at) + timedelta(seconds=kit.approval_ttl)).isoformat()


def show_again(kit: Kit, request: ApprovalRequest, why: str, *, args: Any = None,
               edited_by: str | None = None) -> ApprovalRequest:
    """The call's next showing: arguments edited or not, what it touches read again, never
    gated lower than before, ``why`` shown to the approver."""
    return make_request(
        kit, request.tool, request.args if args is None else args, request.tool_call_id,
        task=request.task, proposed_at=request.proposed_at, provenance=request.provenance,
        requested_by=request.requested_by, revision=request.revision + 1, floor=request, error=why,
        edited_by=edited_by or request.edited_by)


# -- gate -----------------------------------------------------------------------------------------

def gate(item: dict, config, *, kit: Kit) -> Command:
    """Pause for a person when the call's request needs one; pass on the decision, or show the
    call again as a new gate task."""
    decided = decide(kit, config["configurable"]["thread_id"],
                     ApprovalRequest.model_validate(item["request"]))
    if isinstance(decided, ApprovalRequest):
        return Command(goto=[_gate(decided)])
    return Command(update={"decided": [decided.model_dump(mode="json")]}, goto="execute")


def decide(kit: Kit, thread_id: str, request: ApprovalRequest) -> Decided | ApprovalRequest:
    """The decision on one shown request, pausing for a person when it needs one; or the
    request to show next (an edit, a refused answer, a change)."""
    if not request.policy.needs_human:
        _audit_proposal(kit, thread_id, request)
        decision = Decision(kind=Kind.PROCEED, approver=Approver.AUTO, channel=Channel.POLICY,
                            fingerprint=request.fingerprint)
        return Decided(request=request, decision=decision)
    try:
        answer = interrupt(request.as_json(), response_schema=DecisionForm)
    except GraphInterrupt:  # asked now: recorded before the pause is saved, once (not on resume)
        _audit_proposal(kit, thread_id, request)
        raise
    if answer.kind == Kind.REFRESH:  # harmless whoever sends it: nothing runs, it is shown anew
        return show_again(kit, request, answer.reason or "it changed")
    try:
        decision = accepted(kit, thread_id, request, answer)
    except ApprovalError as exc:
        return show_again(kit, request, str(exc))
    if decision.kind == Kind.EDIT:
        return show_again(kit, request, f"arguments edited by {decision.approver}",
                          args=decision.args, edited_by=decision.approver)
    return Decided(request=request, decision=decision)


def accepted(kit: Kit, thread_id: str, request: ApprovalRequest, answer: Decision) -> Decision:
    """The decision the ledger holds for this request, if ``answer`` is it, judged again here
    (the request is exactly the one shown); else ``ApprovalError``."""
    claim = kit.ledger.claims.winner(thread_id, fingerprint=request.fingerprint)
    if claim is None or claim.decision != answer:
        raise ApprovalError("this answer did not come through the decision ledger (use "
                            "ApprovalAgent.resume, not a raw Command(resume=...)), so it was "
                            "not applied")
    return judge(claim.decision, request, tool=kit.tools.get(request.tool),
                 approvers=kit.approvers, by_kit=claim.decision.kind.by_system)


# -- execute --------------------------------------------------------------------------------------

def execute(state: AgentState, config, *, kit: Kit) -> Command:
    """Carry out the decided calls of the last reply that have no result yet, each effectively
    once, and audit each; back to ``plan`` once every call has its result."""
    last = next(m for m in reversed(state["messages"]) if isinstance(m, AIMessage))
    ids = {c["id"] for c in (*last.tool_calls, *last.invalid_tool_calls)}
    done = {m.tool_call_id for m in state["messages"] if isinstance(m, ToolMessage)} & ids
    latest = {}
    for raw in state.get("decided") or []:
        if raw["request"]["tool_call_id"] in ids:
            latest[raw["request"]["tool_call_id"]] = raw  # a later showing replaces an earlier
    thread_id = config["configurable"]["thread_id"]
    results, again = [], []
    for call_id, raw in latest.items():
        if call_id in done:
            continue
        result = run_decided(kit, thread_id, Decided.model_validate(raw))
        if isinstance(result, ApprovalRequest):
            again.append(_gate(result))
        else:
            results.append(result)
    finished = done | {m.tool_call_id for m in results} >= ids
    return Command(update={"messages": results},
                   goto=again or (["plan"] if finished else []))


def run_decided(kit: Kit, thread_id: str, decided: Decided, invoke=None
                ) -> ToolMessage | ApprovalRequest:
    """Carry out one decided call and audit how it ended; or, when what it would touch changed
    since the approval, run nothing, audit why and return the request to show again."""
    changed = _changed_since_approval(kit, thread_id, decided)
    if changed is not None:
        _audit(kit, audit_row(thread_id, decided.request, Event.REFUSED,
                              decision=decided.decision, reason=changed,
                              key=("changed", decided.request.fingerprint)))
        return show_again(kit, decided.request, changed)
    message, executed_at, why_not = carry_out(kit, thread_id, decided, invoke)
    _audit(kit, audit_row(thread_id, decided.request, Event.RESOLVED, decision=decided.decision,
                          message=message, executed_at=executed_at, why_not=why_not,
                          key=("resolved",)))
    return message


def _changed_since_approval(kit: Kit, thread_id: str, decided: Decided) -> str | None:
    """Why a call approved to run must be shown again (what it touches is not what the approver
    saw), or None. Only before its run started: after a crash inside the run, what it touches
    may be its own effect."""
    request = decided.request
    if not decided.verdict.runs or request.target is None:
        return None
    now = kit.target(request.tool, request.args)
    if target_digest(now) == target_digest(request.target) \
            or kit.ledger.journal.record(thread_id, request.tool_call_id) is not None:
        return None  # the journal is read only when it matters (carry_out reads it anyway)
    return ("not run: what it would touch changed after the approval (approved: "
            f"{json.dumps(request.target, default=str)}; now: {json.dumps(now, default=str)}); "
            "it is shown again, look at it and decide anew")


def carry_out(kit: Kit, thread_id: str, decided: Decided, invoke=None
              ) -> tuple[ToolMessage, str | None, str]:
    """Run one decided call at most once per (thread, call id), or say why it did not run.
    ``invoke(args)`` calls the tool (default: ``tool.invoke``); it may return a ToolMessage.

    Returns the tool's message, when it ran (None if it did not) and why not. A call whose run
    was recorded returns the recorded result. A call that started but whose end was never
    recorded (the process died inside it) runs again only if its tool takes an idempotency key
    (the tool then recognises the repeat); otherwise it is reported as unknown, never re-run.
    """
    request, decision = decided.request, decided.decision
    call_id = request.tool_call_id
    if not decided.verdict.runs:
        why = (f"Rejected by {decision.approver}: {decision.reason or 'no reason given'}"
               if decided.verdict == Verdict.REJECTED else f"Not run: {decision.reason}")
        return ToolMessage(why, tool_call_id=call_id, status="error"), None, why
    previous = kit.ledger.journal.record(thread_id, call_id)
    if previous is not None and previous.finished:
        return (ToolMessage(previous.result or "", tool_call_id=call_id,
                            status="error" if previous.is_error else "success"),
                previous.finished_at, previous.why_not)
    tool = kit.tools.get(request.tool)
    takes_key = tool is not None and IDEMPOTENCY_KEY in getattr(
        getattr(tool, "args_schema", None), "model_fields", {})
    if previous is not None and not takes_key:
        why = ("Outcome unknown: the process stopped while this call was running and its tool "
               "cannot tell whether it ran (it takes no idempotency key), so it was not run "
               "again. Check by hand before proposing it again.")
        return _finish(kit, thread_id, request, ToolMessage(why, tool_call_id=call_id,
                                                            status="error"), now_iso(), why)
    why_not = _why_not_now(request) if previous is None else None
    if why_not is not None:
        return _finish(kit, thread_id, request, ToolMessage(
            why_not[0].upper() + why_not[1:], tool_call_id=call_id, status="error"), None,
            why_not)
    if previous is None:
        kit.ledger.journal.started(thread_id, call_id, request.tool)
    args = dict(request.args)
    if takes_key:
        args[IDEMPOTENCY_KEY] = key_text(thread_id, call_id)
    try:
        result = (invoke or tool.invoke)(args)
        if isinstance(result, ToolMessage) and result.status == "error":
            raise RuntimeError(result.text)
        text = result.text if isinstance(result, ToolMessage) else json.dumps(result, default=str)
        if request.edited_by:
            text = f"Edited by {request.edited_by} to {json.dumps(request.args)}; result: {text}"
        message = ToolMessage(text, tool_call_id=call_id)
    except Exception as exc:  # the world refused (no such record...): tell the model
        message = ToolMessage(f"Error: {exc}", tool_call_id=call_id, status="error")
    return _finish(kit, thread_id, request, message, now_iso(), "")


def _finish(kit, thread_id, request, message, executed_at, why_not):
    kit.ledger.journal.finished(thread_id, request.tool_call_id, request.tool, message.content,
                            message.status == "error", executed_at, why_not)
    return message, executed_at, why_not


def _why_not_now(request: ApprovalRequest) -> str | None:
    """Checked once, just before running: a call that cannot run, or an expired request."""
    if request.problem:
        return f"not executed: {request.problem}"
    if request.expires_at is not None and datetime.now(UTC) > datetime.fromisoformat(
            request.expires_at):
        return (f"not executed: the approval came after the request expired at "
                f"{request.expires_at}; propose it again if it is still wanted")
    return None


# -- audit rows -----------------------------------------------------------------------------------

def _audit_proposal(kit: Kit, thread_id: str, request: ApprovalRequest) -> None:
    """The "proposed" row, when the call is first shown: before its pause is saved, so a
    pending request always has its row. The gate runs again on resume, but writes it only when
    it pauses (or passes); a repeat after a crash writes nothing new (the row's key)."""
    if kit.audit is None or request.revision:
        return
    kit.audit.append(audit_row(thread_id, request, Event.PROPOSED, key=("proposed",)))


def _audit(kit: Kit, row: dict) -> None:
    if kit.audit is not None:
        kit.audit.append(row)


# -- the graph ------------------------------------------------------------------------------------

def kit_for(tools: list, model=None, policy: ActionPolicy | None = None, world=None, audit=None,
            approval_ttl: float | None = None, ledger: DecisionLedger | None = None,
            approvers=None) -> Kit:
    """The ``Kit``, checked (default policy: the tools' own classes; ledger: in memory)."""
    if approval_ttl is not None and (isinstance(approval_ttl, bool)
                                     or not isinstance(approval_ttl, int | float)
                                     or not 0 < approval_ttl < float("inf")):
        raise ValueError(f"approval_ttl is a positive number of seconds, not {approval_ttl!r}")
    return Kit(model=model, tools={t.name: t for t in tools},
               policy=policy or ActionPolicy.from_tools(tools),
               ledger=ledger if ledger is not None else DecisionLedger(),
               world=world, audit=audit, approvers=approvers, approval_ttl=approval_ttl)


def build_graph(model, tools: list, policy: ActionPolicy | None = None, world=None,
                checkpointer=None, audit=None, approval_ttl: float | None = None,
                ledger: DecisionLedger | None = None, approvers=None):
    """Compile plan -> gate -> execute (-> plan ...) with the given parts.

    ``world`` (optional) lets a request show, and execute re-check, what a call would touch;
    ``audit`` (an ``AuditTrail``, optional) gets a row when each call is proposed and another
    when it is resolved; ``approval_ttl`` (seconds, optional): an approval that reaches
    execution later than this after the proposal does not run. ``ledger`` holds the decisions
    and the run journal (default: one in memory).
    """
    kit = kit_for(tools, model.bind_tools(tools), policy, world, audit, approval_ttl, ledger,
                  approvers)
    graph = StateGraph(AgentState)
    graph.add_node("plan", partial(plan, kit=kit))
    graph.add_node("gate", partial(gate, kit=kit), destinations=("gate", "execute"))
    graph.add_node("execute", partial(execute, kit=kit), destinations=("gate", "plan"))
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", partial(route_after_plan, kit=kit), ["gate", END])
    compiled = graph.compile(checkpointer=checkpointer if checkpointer is not None
                             else InMemorySaver())
    compiled.kit = kit  # the agent reads tools, policy and the target reader from here
    return compiled


def answer_of(values: dict) -> str | None:
    """The model's final answer: the last message, when it is a reply with no tool calls."""
    messages = values.get("messages") or []
    last = messages[-1] if messages else None
    if isinstance(last, AIMessage) and not last.tool_calls and not last.invalid_tool_calls:
        return last.content if isinstance(last.content, str) else str(last.content)
    return None
