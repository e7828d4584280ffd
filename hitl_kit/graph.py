"""The approval graph, node by node: plan, gate, execute.

    plan ──(one Send per proposed call)──> gate ──> execute ──> plan ... ──> END

* ``plan`` asks the chat model for tool calls and gives every call an id that is unique in the
  thread, whatever the model sent.
* ``gate`` classifies one call. Calls that need no human pass; the others pause the graph with
  ``interrupt(payload)``. It only reads before ``interrupt()`` (its one write, the "proposed"
  audit row, is idempotent), because on resume the node runs again from its first line.
* ``execute`` carries out the decided calls, each effectively once: it is the only node with side
  effects, it never pauses, and a call that already ran (the process died before the checkpoint)
  returns its recorded result instead of running again.

Every node is a plain function of the state and a ``Kit`` (the model, tools, policy, audit trail
and run journal), bound with ``functools.partial`` by ``build_graph``::

    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> world = World()
    >>> graph = build_graph(OfflineChatModel(), world.tools(), world=world)
    >>> state = graph.invoke({"task": "delete customer 3"}, {"configurable": {"thread_id": "t"}})
    >>> [i.value["tool"] for i in state["__interrupt__"]]
    ['delete_customer']

Limits: the graph alone does not stop two resumes of one request from both running, nor a
resume on a thread that is not paused; ``hitl_kit.approval.ApprovalAgent`` adds those guards.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send, interrupt

from hitl_kit.decisions import DecisionLedger
from hitl_kit.policy import ORDER as CLASS_ORDER
from hitl_kit.policy import ActionPolicy, Ruling
from hitl_kit.provenance import provenance
from hitl_kit.requests import (
    REFRESH,
    ApprovalError,
    Decision,
    approval_payload,
    parse_decision,
    target_digest,
    validate_args,
)
from hitl_kit.vocabulary import (
    IDEMPOTENCY_KEY,
    UNCLASSIFIED,
    Approver,
    Channel,
    Event,
    Execution,
    Kind,
    Policy,
    Reversibility,
    Verdict,
)

MAX_TURNS = 8
AGENT_KEYS = ("channel", "role", "approvals")  # what the agent adds to a caller's decision


def _merge(old: dict, new: dict) -> dict:
    return {**old, **new}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class AgentState(TypedDict, total=False):
    task: str
    requested_by: str | None  # who asked for the task (they may not approve its actions)
    messages: Annotated[list[AnyMessage], add_messages]
    decisions: Annotated[list[dict], operator.add]  # one record per call, all turns
    turns: int
    proposed_at: Annotated[dict[str, str], _merge]  # tool_call_id -> when the model proposed it


@dataclass
class Kit:
    """What the nodes work with. ``target_of(tool, args)`` reads, without side effects, what a
    call would touch (the demo world's ``target_of``); ``journal`` records each execution."""

    model: Any  # the chat model with the tools bound
    tools: dict[str, Any]
    policy: ActionPolicy
    journal: DecisionLedger
    world: Any = None
    audit: Any = None
    approvers: Any = None  # hitl_kit.approvers.Approvers: who may decide what
    approval_ttl: float | None = None
    proposals: dict = field(default_factory=dict)  # proposal rows this process wrote

    @property
    def reads_targets(self) -> bool:
        return self.world is not None and hasattr(self.world, "target_of")

    def target(self, call: dict) -> Any:
        """What the call would touch now (the world's ``target_of``), or None."""
        if not self.reads_targets or not isinstance(call["args"], dict):
            return None
        try:
            return self.world.target_of(call["name"], call["args"])
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
    reply = _with_unique_ids(reply, messages)
    new = [reply] if state.get("messages") else [messages[0], reply]
    at = now_iso()
    proposed_at = {call["id"]: at for call in (*reply.tool_calls, *reply.invalid_tool_calls)}
    return {"messages": new, "turns": state.get("turns", 0) + 1, "proposed_at": proposed_at}


MAX_ARG_DEPTH = 32
INT_RANGE = (-(2**63), 2**64 - 1)  # what the checkpointer (msgpack) can store


def _unstorable(value, depth: int = 0) -> str | None:
    """Why these arguments cannot be kept in a checkpoint, or None."""
    if depth > MAX_ARG_DEPTH:
        return f"the arguments are nested deeper than {MAX_ARG_DEPTH} levels"
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return None
    if isinstance(value, int):
        low, high = INT_RANGE
        return None if low <= value <= high else f"the number {value} is out of range"
    items = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list | tuple):
        return next((why for why in (_unstorable(v, depth + 1) for v in items) if why), None)
    return f"a value of type {type(value).__name__} is not JSON"


def _with_unique_ids(reply: AIMessage, history: list) -> AIMessage:
    """The reply with a fresh id for any call whose id is missing or was used before in this
    thread (some servers number calls ``call_0`` every turn): the audit trail, the ledger and
    the run journal all key on it. A call whose arguments could not be stored in a checkpoint
    becomes an invalid call (the model and the approver are told why), not a crash."""
    seen = {c["id"] for m in history if isinstance(m, AIMessage)
            for c in (*m.tool_calls, *m.invalid_tool_calls)}
    changed = False
    storable, unstorable = [], []
    for call in reply.tool_calls:
        why = _unstorable(call["args"])
        if why is None:
            storable.append(call)
        else:
            unstorable.append({"name": call["name"], "id": call.get("id"), "error": why,
                               "args": json.dumps(call["args"], default=str)[:2000],
                               "type": "invalid_tool_call"})
    if unstorable:
        reply = reply.model_copy(update={"tool_calls": storable, "invalid_tool_calls": [
            *reply.invalid_tool_calls, *unstorable]})
        changed = True

    def unique(call: dict) -> dict:
        nonlocal changed
        call_id, n = call.get("id") or "call", 1
        while call_id in seen:
            call_id, n, changed = f"{call.get('id') or 'call'}~{n}", n + 1, True
        if call_id != call.get("id"):
            changed = True
        seen.add(call_id)
        return {**call, "id": call_id}

    calls = [unique(c) for c in reply.tool_calls]
    invalid = [unique(c) for c in reply.invalid_tool_calls]
    if not changed:
        return reply
    kwargs = {k: v for k, v in reply.additional_kwargs.items() if k != "tool_calls"}
    return reply.model_copy(update={"tool_calls": calls, "invalid_tool_calls": invalid,
                                    "additional_kwargs": kwargs})


def route_after_plan(state: AgentState, *, kit: Kit):
    """One gate task per proposed call, malformed ones included; END when the model answered.

    Each call is checked and classified here, once: what it would touch is read, the impact
    rules are applied, and the sources it came after are listed. The gate task keeps that as its
    input, so a gate that runs again on resume (even after a restart, with the world changed
    since) starts from the same ruling: a call that was gated stays gated.
    """
    last = state["messages"][-1]
    calls = [*last.tool_calls, *last.invalid_tool_calls]
    if not calls or state.get("turns", 0) > MAX_TURNS:
        return END
    sources = provenance(state["messages"][:-1] + [last])
    sends = []
    for call in last.tool_calls:
        args, problem = _checked_args(call, kit.tools.get(call["name"]))
        sends.append(_gate_task(kit, state, {**call, "args": args}, problem, sources))
    for bad in last.invalid_tool_calls:
        call = {"name": bad.get("name") or "", "args": bad.get("args") or "", "id": bad["id"]}
        problem = ("the model's arguments cannot be used: "
                   f"{bad.get('error') or 'they are not valid JSON'}")
        sends.append(_gate_task(kit, state, call, problem, sources))
    return sends


def _gate_task(kit: Kit, state: AgentState, call: dict, problem: str | None,
               sources: list[dict]) -> Send:
    target = kit.target(call) if problem is None else None
    ruling = kit.policy.classify(call["name"], call["args"] if problem is None else None, target)
    return Send("gate", {"task": state["task"], "call": {k: call[k] for k in ("name", "args",
                                                                             "id")},
                         "proposed_at": state["proposed_at"][call["id"]], "problem": problem,
                         "ruling": _ruling_dict(ruling), "provenance": sources,
                         "requested_by": state.get("requested_by")})


def _ruling_dict(ruling: Ruling) -> dict:
    """The ruling as plain data, as the checkpoint keeps it."""
    def text(value):
        return None if value is None else str(value)

    return {"action": ruling.action, "reversibility": text(ruling.reversibility),
            "policy": str(ruling.policy), "reason": ruling.reason, "base": text(ruling.base),
            "raised_by": list(ruling.raised_by)}


def _ruling_of(saved: dict) -> Ruling:
    return Ruling(saved["action"],
                  None if saved["reversibility"] is None else Reversibility(
                      saved["reversibility"]),
                  Policy(saved["policy"]), saved["reason"],
                  None if saved["base"] is None else Reversibility(saved["base"]),
                  tuple(saved["raised_by"]))


def _at_least(ruling: Ruling, floor: Ruling) -> Ruling:
    """The more severe of two rulings: a call shown again never drops below how it was gated."""
    def rank(r: Ruling) -> int:
        return len(CLASS_ORDER) if r.reversibility is None else CLASS_ORDER.index(r.reversibility)
    return ruling if rank(ruling) >= rank(floor) else floor


# -- gate -----------------------------------------------------------------------------------------

def gate(item: dict, config, *, kit: Kit) -> dict:
    """Pause for a human when the call's ruling says so; return the decision."""
    call, problem = dict(item["call"]), item.get("problem")
    ruling = _ruling_of(item["ruling"])
    _audit_proposal(kit, config, call, ruling, item)
    tool = kit.tools.get(call["name"])
    if not ruling.needs_human:
        return {"decisions": [_record(call, ruling, Verdict.AUTO_APPROVED, Approver.AUTO,
                                      Channel.POLICY, problem=problem)]}
    expires_at = _expiry(kit, item["proposed_at"])
    revision, refused, edited_by, first = 0, None, None, ruling
    while True:  # an edit or a changed record is classified again and shown again
        target = kit.target(call) if problem is None else None
        if revision:
            ruling = _at_least(kit.policy.classify(
                call["name"], call["args"] if problem is None else None, target), first)
        payload = approval_payload(item["task"], call, ruling, tool, target, revision=revision,
                                   problem=problem)
        payload.update(proposed_at=item["proposed_at"], provenance=item.get("provenance", []),
                       requested_by=item.get("requested_by"), raised_by=list(ruling.raised_by))
        if kit.approvers is not None:
            payload.update(kit.approvers.describe_for(payload))
        if expires_at is not None:
            payload["expires_at"] = expires_at
        if refused is not None:
            payload["error"] = refused
        answer = interrupt(payload)
        revision += 1
        if isinstance(answer, dict) and answer.get("kind") == REFRESH:
            refused = answer.get("reason") or "what this call would touch changed; look again"
            continue
        try:
            decision = _decision_from(answer, tool)
        except ApprovalError as exc:
            # Normally refused before resuming; if it got here anyway, ask again rather than
            # raise (a raise would repeat on every retry, since the answer is stored).
            refused = str(exc)
            continue
        refused = None
        if decision.kind == Kind.EDIT:
            call, edited_by, problem = {**call, "args": decision.args}, decision.approver, None
            continue
        if decision.kind == Kind.APPROVE and problem is not None:
            refused = f"it cannot be approved as it stands ({problem}); edit or reject it"
            continue
        approver = Approver.AUTO if decision.kind == Kind.PROCEED else decision.approver
        record = _record(call, ruling, decision.kind.verdict, approver, decision.channel,
                         decision.reason, role=decision.role, problem=problem)
        record.update(edited_by=edited_by, expires_at=expires_at, target=target,
                      approvals=decision.approvals, raised_by=list(ruling.raised_by))
        return {"decisions": [record]}


def _checked_args(call: dict, tool) -> tuple[Any, str | None]:
    """The call's arguments as they will run and None, or as the model sent them and why the
    call cannot run as proposed."""
    if tool is None:
        return call["args"], f"there is no tool {call['name']!r}"
    try:
        return validate_args(tool, call["args"]), None
    except ApprovalError as exc:
        return call["args"], str(exc)


def _decision_from(answer: Any, tool) -> Decision:
    """The resume value as a Decision. The agent sends channel and role along; a raw
    ``Command(resume=...)`` that skipped the agent is checked like any caller's decision."""
    if not isinstance(answer, dict):
        return parse_decision(answer, tool)
    extra = {k: answer.get(k) for k in AGENT_KEYS}
    system = answer.get("kind") in (Kind.TIMEOUT, Kind.PROCEED)
    plain = {k: v for k, v in answer.items() if k not in AGENT_KEYS and v is not None}
    decision = parse_decision(plain, tool, system=system)
    default = Channel.TIMER if system else Channel.API  # a raw timeout came from a timer
    channel = extra["channel"] if extra["channel"] in set(Channel) else default
    approvals = tuple(extra["approvals"] or ()) if isinstance(extra["approvals"], list) else ()
    return Decision(decision.kind, decision.approver, decision.reason, decision.args,
                    decision.fingerprint, channel, extra["role"], approvals)


def _expiry(kit: Kit, proposed_at: str) -> str | None:
    if kit.approval_ttl is None:
        return None
    return (datetime.fromisoformat(proposed_at) + timedelta(seconds=kit.approval_ttl)).isoformat()


def _record(call: dict, ruling, verdict: Verdict, approver: str, channel: str, reason: str = "",
            *, role: str | None = None, problem: str | None = None) -> dict:
    return {"tool_call_id": call["id"], "tool": call["name"], "args": call["args"],
            "reversibility": ruling.reversibility.value if ruling.reversibility else UNCLASSIFIED,
            "policy": str(ruling.policy), "decision": str(verdict), "approver": str(approver),
            "reason": reason, "channel": str(channel), "role": role, "problem": problem}


# -- execute --------------------------------------------------------------------------------------

def execute(state: AgentState, config, *, kit: Kit) -> dict:
    """Carry out this turn's decided calls, each effectively once, and audit each result."""
    last = next(m for m in reversed(state["messages"]) if isinstance(m, AIMessage))
    ids = {c["id"] for c in (*last.tool_calls, *last.invalid_tool_calls)}
    thread_id = config["configurable"]["thread_id"]
    results = []
    for record in state["decisions"]:
        if record["tool_call_id"] not in ids:
            continue
        message, executed_at, why_not = carry_out(kit, thread_id, record)
        results.append(message)
        if kit.audit is not None:
            kit.audit.append(_resolution_entry(thread_id, record, message, executed_at, why_not,
                                               state["proposed_at"][record["tool_call_id"]]))
    return {"messages": results}


def carry_out(kit: Kit, thread_id: str, record: dict) -> tuple[ToolMessage, str | None, str]:
    """Run one decided call at most once per (thread, call id), or say why it did not run.

    Returns the tool's message, when it ran (None if it did not) and why not. A call whose run
    was recorded returns the recorded result. A call that started but whose end was never
    recorded (the process died inside it) runs again only if its tool takes an idempotency key
    (the tool then recognises the repeat); otherwise it is reported as unknown, never re-run.
    """
    call_id = record["tool_call_id"]
    key = f"{thread_id}:{call_id}"
    verdict = Verdict(record["decision"])
    if not verdict.runs:
        why = (f"Rejected by {record['approver']}: {record['reason'] or 'no reason given'}"
               if verdict == Verdict.REJECTED else f"Not run, timed out: {record['reason']}")
        return ToolMessage(why, tool_call_id=call_id, status="error"), None, why
    previous = kit.journal.run_record(key)
    if previous is not None and previous.finished:
        return previous.message(call_id), previous.finished_at, previous.why_not
    tool = kit.tools.get(record["tool"])
    takes_key = tool is not None and IDEMPOTENCY_KEY in (tool.args_schema.model_fields
                                                         if hasattr(tool.args_schema,
                                                                    "model_fields") else {})
    if previous is not None and not takes_key:
        why = ("Outcome unknown: the process stopped while this call was running and its tool "
               "cannot tell whether it ran (it takes no idempotency key), so it was not run "
               "again. Check by hand before proposing it again.")
        return _finish(kit, key, record, ToolMessage(why, tool_call_id=call_id, status="error"),
                       now_iso(), why)
    # Checked once, before the run is recorded as started: a run that started before a crash
    # was checked then, and what it would touch now may be its own effect.
    why_not = _why_not_now(kit, record) if previous is None else None
    if why_not is not None:
        return _finish(kit, key, record, ToolMessage(why_not[0].upper() + why_not[1:],
                                                     tool_call_id=call_id, status="error"),
                       None, why_not)
    if previous is None:
        kit.journal.run_started(key, record["tool"])
    args = dict(record["args"])
    if takes_key:
        args[IDEMPOTENCY_KEY] = key
    try:
        result = tool.invoke(args)
        text = json.dumps(result, default=str)
        if record.get("edited_by"):
            text = (f"Edited by {record['edited_by']} to {json.dumps(record['args'])}; "
                    f"result: {text}")
        message = ToolMessage(text, tool_call_id=call_id)
    except Exception as exc:  # the world refused (no such record...): tell the model
        message = ToolMessage(f"Error: {exc}", tool_call_id=call_id, status="error")
    return _finish(kit, key, record, message, now_iso(), "")


def _finish(kit, key, record, message, executed_at, why_not):
    kit.journal.run_finished(key, record["tool"], message.content, message.status == "error",
                             executed_at, why_not)
    return message, executed_at, why_not


def _why_not_now(kit: Kit, record: dict) -> str | None:
    """Checked once, just before running: the problem, the expiry, the record changed."""
    if record.get("problem"):
        return f"not executed: {record['problem']}"
    expires_at = record.get("expires_at")
    if expires_at is not None and datetime.now(UTC) > datetime.fromisoformat(expires_at):
        return (f"not executed: the approval came after the request expired at {expires_at}; "
                "propose it again if it is still wanted")
    if "target" in record and record["target"] is not None:
        now = kit.target({"name": record["tool"], "args": record["args"]})
        if target_digest(now) != target_digest(record["target"]):
            return ("not executed: what it would touch changed after the approval (approved: "
                    f"{json.dumps(record['target'], default=str)}; now: "
                    f"{json.dumps(now, default=str)}); propose it again to ask anew")
    return None


# -- audit rows -----------------------------------------------------------------------------------

def _audit_proposal(kit: Kit, config, call: dict, ruling: Ruling, item: dict) -> None:
    if kit.audit is None:
        return
    thread_id = config["configurable"]["thread_id"]
    event_key = f"{thread_id}:{call['id']}:proposed"
    if event_key in kit.proposals:  # the gate runs again on every resume: written already
        return
    details = {"raised_by": list(ruling.raised_by)} if ruling.raised_by else {}
    shown = [p for p in item.get("provenance") or [] if p.get("suspicious")]
    if shown:
        details["provenance"] = shown
    if item.get("problem"):
        details["problem"] = item["problem"]
    kit.audit.append({
        "event_key": event_key,
        "session_id": thread_id,
        "action_type": call["name"] or "(no name)",
        "parameters": call["args"] if isinstance(call["args"], dict) else {"raw": call["args"]},
        "reversibility_class": ruling.reversibility.value if ruling.reversibility
        else UNCLASSIFIED,
        "event": str(Event.PROPOSED),
        "proposed_at": item["proposed_at"],
        "details": details or None,
    })
    if len(kit.proposals) > 10_000:  # a cache, not a record: the trail itself is idempotent
        kit.proposals.clear()
    kit.proposals[event_key] = True


def _resolution_entry(thread_id: str, record: dict, message: ToolMessage,
                      executed_at: str | None, why_not: str, proposed_at: str) -> dict:
    if executed_at is None:
        outcome = Execution.NOT_EXECUTED
    else:
        outcome = Execution.ERROR if message.status == "error" else Execution.SUCCESS
    reasons = [record["reason"]] if record["reason"] else []
    if record.get("edited_by"):
        reasons.insert(0, f"arguments edited by {record['edited_by']}")
    if why_not and Verdict(record["decision"]).runs:
        reasons.insert(0, why_not)
    entry = {
        "event_key": f"{thread_id}:{record['tool_call_id']}:resolved",
        "session_id": thread_id,
        "action_type": record["tool"] or "(no name)",
        "parameters": record["args"] if isinstance(record["args"], dict)
        else {"raw": record["args"]},
        "reversibility_class": record["reversibility"],
        "event": str(Event.RESOLVED),
        "channel": record["channel"],
        "approver_id": record["approver"],
        "approver_role": record.get("role"),
        "decision": record["decision"],
        "outcome": str(outcome),
        "reason": "; ".join(reasons) or None,
        "proposed_at": proposed_at,
        "executed_at": executed_at,
    }
    details = {k: record[k] for k in ("raised_by", "approvals") if record.get(k)}
    if details:
        entry["details"] = details
    return entry


# -- the graph ------------------------------------------------------------------------------------

def build_graph(model, tools: list, policy: ActionPolicy | None = None, world=None,
                checkpointer=None, audit=None, approval_ttl: float | None = None,
                journal: DecisionLedger | None = None):
    """Compile plan -> gate -> execute (-> plan ...) with the given parts.

    ``world`` (optional) lets the gate show, and execute re-check, what a call would touch;
    ``audit`` (an ``AuditTrail``, optional) gets a row when each call is proposed and another
    when it is resolved; ``approval_ttl`` (seconds, optional): an approval that reaches execution
    later than this after the proposal does not run. ``journal`` records each execution (a
    ``DecisionLedger``; default: one in memory).
    """
    if approval_ttl is not None and (isinstance(approval_ttl, bool)
                                     or not isinstance(approval_ttl, int | float)
                                     or not 0 < approval_ttl < float("inf")):
        raise ValueError(f"approval_ttl is a positive number of seconds, not {approval_ttl!r}")
    kit = Kit(model=model.bind_tools(tools), tools={t.name: t for t in tools},
              policy=policy or ActionPolicy.from_tools(tools),
              journal=journal if journal is not None else DecisionLedger(),
              world=world, audit=audit,
              approval_ttl=approval_ttl)
    graph = StateGraph(AgentState)
    graph.add_node("plan", partial(plan, kit=kit))
    graph.add_node("gate", partial(gate, kit=kit))
    graph.add_node("execute", partial(execute, kit=kit))
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", partial(route_after_plan, kit=kit), ["gate", END])
    graph.add_edge("gate", "execute")
    graph.add_edge("execute", "plan")
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
