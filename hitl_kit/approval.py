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
"""

from __future__ import annotations

import json
import operator
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt
from pydantic import ValidationError

from hitl_kit.policy import ActionPolicy

DECISION_KINDS = ("approve", "reject", "edit")
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


# -- decisions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """A human's answer to one pending approval."""

    kind: str  # approve | reject | edit
    approver: str
    reason: str = ""
    args: dict | None = None  # the edited arguments, for kind == "edit"

    def as_resume_value(self) -> dict:
        return {"kind": self.kind, "approver": self.approver, "reason": self.reason,
                "args": self.args}


def parse_decision(value: Any, tool=None) -> Decision:
    """A ``Decision`` from a dict (or a Decision), or ``ApprovalError`` saying what is wrong.

    With ``tool`` given, edited arguments are validated against the tool's schema.
    """
    if isinstance(value, Decision):
        value = value.as_resume_value()
    if not isinstance(value, dict):
        raise ApprovalError(
            f"a decision is a dict like {{'kind': 'approve', 'approver': 'ana'}}, not {value!r}")
    kind = value.get("kind")
    if kind not in DECISION_KINDS:
        raise ApprovalError(f"decision kind {kind!r} is unknown; use one of {DECISION_KINDS}")
    approver = value.get("approver")
    if not isinstance(approver, str) or not approver.strip():
        raise ApprovalError("a decision must name its approver (a non-empty 'approver')")
    reason = value.get("reason") or ""
    if not isinstance(reason, str):
        raise ApprovalError("'reason' must be text")
    args = value.get("args")
    if kind == "edit":
        if not isinstance(args, dict):
            raise ApprovalError("an 'edit' decision needs 'args': the tool's new arguments")
        if tool is not None:
            args = validate_args(tool, args)
    else:
        args = None
    return Decision(kind, approver.strip(), reason, args)


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
                checkpointer=None, audit=None):
    """Compile the plan -> gate -> execute -> report graph.

    ``model`` is a chat model (see ``hitl_kit.llm``); ``world`` (optional) lets the gate show the
    current contents of the record a call would touch; ``audit`` (an ``AuditTrail``, optional)
    gets a row when each call is proposed and another when it is resolved.
    """
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
        return [Send("gate", {"task": state["task"], "call": c}) for c in last.tool_calls]

    def gate(item: dict) -> dict:
        call, edited_by = dict(item["call"]), None
        while True:  # an edit is classified again and, if still gated, shown again
            ruling = policy.classify(call["name"])
            if not ruling.needs_human:
                return {"decisions": [_record(call, ruling, "auto-approved", "auto")]}
            payload = approval_payload(item["task"], call, ruling, by_name.get(call["name"]),
                                       world)
            answer = interrupt(payload)
            try:
                decision = parse_decision(answer, by_name.get(call["name"]))
            except ApprovalError as exc:
                # Normally refused before resuming; if it got here anyway, ask again rather than
                # raise (a raise would repeat on every retry, since the answer is stored).
                payload["error"] = str(exc)
                continue
            if decision.kind == "edit":
                call, edited_by = {**call, "args": decision.args}, decision.approver
                continue
            verdict = "approved" if decision.kind == "approve" else "rejected"
            record = _record(call, ruling, verdict, decision.approver, decision.reason)
            return {"decisions": [{**record, "edited_by": edited_by}]}

    def execute(state: AgentState, config) -> dict:
        last = next(m for m in reversed(state["messages"]) if isinstance(m, AIMessage))
        ids = {c["id"] for c in last.tool_calls}
        results = []
        for record in state["decisions"]:
            if record["tool_call_id"] not in ids:
                continue
            message = _run(record, by_name)
            results.append(message)
            if audit is not None:
                audit.append(_resolution_entry(config, record, message,
                                               state["proposed_at"][record["tool_call_id"]]))
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


def _resolution_entry(config: dict, record: dict, message: ToolMessage, proposed_at: str) -> dict:
    thread_id = config["configurable"]["thread_id"]
    if record["decision"] == "rejected":
        outcome, executed_at = "not_executed", None
    else:
        outcome, executed_at = ("error" if message.status == "error" else "success"), _now()
    reason = record["reason"] or None
    if record.get("edited_by"):
        reason = f"arguments edited by {record['edited_by']}" + (f"; {reason}" if reason else "")
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
    """The approval graph plus guards, keyed by thread id."""

    def __init__(self, model, tools: list, policy: ActionPolicy | None = None, world=None,
                 checkpointer=None, audit=None):
        self.tools = {t.name: t for t in tools}
        self.audit = audit
        self.graph = build_graph(model, tools, policy, world, checkpointer, audit)

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
        """
        pending = {p.interrupt_id: p for p in self.pending(thread_id)}
        if not pending:
            raise ApprovalError(f"thread {thread_id!r} has nothing pending: it has finished or "
                                "was already answered; there is nothing to resume")
        single = not isinstance(decisions, dict) or "kind" in decisions
        if single:
            if len(pending) != 1:
                raise ApprovalError(f"{len(pending)} approvals are pending on {thread_id!r}; "
                                    "answer them by interrupt id: {id: decision, ...}")
            decisions = {next(iter(pending)): decisions}
        if not isinstance(decisions, dict) or not decisions:
            raise ApprovalError("give a decision, or a dict {interrupt_id: decision, ...}")
        unknown = set(decisions) - set(pending)
        if unknown:
            raise ApprovalError(f"not pending on {thread_id!r}: {sorted(unknown)}; pending are "
                                f"{sorted(pending)}")
        checked = {}
        for interrupt_id, value in decisions.items():
            tool = self.tools.get(pending[interrupt_id].payload["tool"])
            checked[interrupt_id] = parse_decision(value, tool).as_resume_value()
        self.graph.invoke(Command(resume=checked), self._config(thread_id))
        return self.outcome(thread_id)


def durable_checkpointer(path: str):
    """A SqliteSaver on ``path`` whose paused threads survive the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))


def payload_rows(payload: dict) -> list[tuple[str, str]]:
    """The payload as (label, text) rows, in the order an approver should read them."""
    def text(value) -> str:
        return value if isinstance(value, str) else json.dumps(value, default=str)

    rows = [
        ("risk", f"{payload['risk'].upper()} ({payload['reversibility']}, {payload['policy']})"),
        ("the agent was asked", payload["task"]),
        ("it wants to run", f"{payload['tool']}: {payload['description']}"),
        ("with arguments", text(payload["args"])),
        ("it would touch", text(payload["target"]) if payload.get("target") else "no record"),
        ("if you approve", payload["on_approve"]),
        ("if you reject", payload["on_reject"]),
        ("why you are asked", payload["why_gated"]),
    ]
    if payload.get("error"):
        rows.insert(0, ("previous answer refused", payload["error"]))
    return rows
