"""The kit's guarantees inside LangChain's ``create_agent``: add ``ApprovalMiddleware``.

The middleware runs the kit's own steps at LangChain's hooks, nothing of its own:

* ``after_model``: every call the model proposed (malformed ones included) gets its
  ``ApprovalRequest`` from ``graph.requests_for``: arguments checked, what it would touch read,
  classified by the policy and by what the agent had read; unlisted tools fail closed.
* ``wrap_tool_call``: ``graph.decide`` pauses for a person with ``interrupt(request)`` and
  takes only the decision the ledger holds for it; ``graph.run_decided`` compares what the call
  touches with what was approved, runs it effectively once (the run journal and the tool's
  idempotency key) through LangChain's own tool handler, and writes the audit rows. An edit, a
  refused answer or a change shows the call again (a new tool task with a new request).
* ``agent(graph)``: the kit's decision path (``ApprovalAgent``: the ledger's claim, one turn per
  thread, recovery) on the ``create_agent`` graph, so the inbox, deadlines, channels, cards and
  ``recover()`` work on its threads. It also takes LangChain's decision format.

    >>> from langchain.agents import create_agent
    >>> from langgraph.checkpoint.memory import InMemorySaver
    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> world = World()
    >>> gate = ApprovalMiddleware(world.tools(), world=world)
    >>> graph = create_agent(OfflineChatModel(), world.tools(), middleware=[gate],
    ...                      checkpointer=InMemorySaver())
    >>> agent = gate.agent(graph)
    >>> agent.start("delete customer 3", "t1").pending[0].request.why_gated
    "'delete_customer' is irreversible_high: policy hard_gate"
    >>> agent.resume("t1", {"decisions": [{"type": "approve"}]}, approver="ana").paused
    False
    >>> [c["id"] for c in world.rows("customers")]
    [1, 2, 4]

Limits: synchronous runs only (``invoke``, not ``ainvoke``). List ``ApprovalMiddleware`` first,
so its ``after_model`` sees the calls as they will run and its tool hook wraps the others'.
Decide through ``agent(graph)``: a raw ``Command(resume=...)`` sent to the graph skipped the
ledger, runs nothing and is asked again.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired

from langchain.agents import create_agent
from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ModelResponse,
    OmitFromInput,
    PrivateStateAttr,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from hitl_kit.approval import ApprovalAgent, Outcome
from hitl_kit.backends import ledger_for
from hitl_kit.contract import ApprovalError, ApprovalRequest, Pending
from hitl_kit.graph import (
    Decided,
    decide,
    kit_for,
    requests_for,
    run_decided,
)
from hitl_kit.llm import storable_reply
from hitl_kit.vocabulary import IDEMPOTENCY_KEY

SHOWN = "hitl_shown"  # call id -> the request as shown now (its latest showing)
CLASSIFIED = "hitl_classified"  # the id of the model reply whose calls have their requests
LANGCHAIN_TYPES = ("approve", "edit", "reject")


def _latest(shown: dict | None, update: dict | None) -> dict:
    return {**(shown or {}), **(update or {})}


class ApprovalState(AgentState):
    """``create_agent``'s state plus what the kit keeps: who asked (``requested_by``, may not
    approve), the requests as shown, and each decision with the request it decided."""

    task: NotRequired[str]
    requested_by: NotRequired[str | None]
    hitl_shown: NotRequired[Annotated[dict[str, dict], PrivateStateAttr, _latest]]
    hitl_classified: NotRequired[Annotated[str, PrivateStateAttr]]
    decided: NotRequired[Annotated[list[dict], OmitFromInput, operator.add]]


class ApprovalMiddleware(AgentMiddleware):
    """The kit's gate for ``create_agent(model, tools, middleware=[ApprovalMiddleware(tools,
    ...)])``. The arguments are ``ApprovalAgent``'s: ``policy`` (default: the tools' own
    classes), ``world`` (reads what a call would touch), ``audit``, ``approvers``,
    ``approval_ttl`` and ``ledger`` (default: the checkpointer's database, once ``agent(graph)``
    binds it; in memory until then)."""

    state_schema = ApprovalState

    def __init__(self, tools: list, policy=None, *, world=None, audit=None, ledger=None,
                 approvers=None, approval_ttl: float | None = None):
        super().__init__()
        if approvers is not None:
            approvers.check_names(t.name for t in tools)
        self.kit = kit_for(tools, None, policy, world, audit, approval_ttl, ledger, approvers)
        self._ledger_open = ledger is None  # chosen when bound to a graph's checkpointer

    def agent(self, graph) -> MiddlewareAgent:
        """The kit's decision path on ``graph`` (a ``create_agent`` graph with this middleware
        and a checkpointer): start, resume, apply_default, outcome, recover."""
        if f"{self.name}.after_model" not in getattr(graph, "nodes", {}):
            raise ValueError("this graph does not gate with ApprovalMiddleware: build it with "
                             "create_agent(..., middleware=[this middleware, ...])")
        if graph.checkpointer is None:
            raise ValueError("the graph has no checkpointer, so it cannot pause for a person: "
                             "create_agent(..., checkpointer=InMemorySaver()) or a durable one")
        if self._ledger_open:
            self.kit.ledger, self._ledger_open = ledger_for(graph.checkpointer), False
        return MiddlewareAgent.around(graph, self.kit)

    # -- the hooks -------------------------------------------------------------------------
    def before_agent(self, state, runtime) -> dict | None:
        """A task started as ``{"task": ...}`` (``ApprovalAgent.start``) is the first message."""
        if state.get("task") and not state.get("messages"):
            return {"messages": [HumanMessage(state["task"])]}
        return None

    def after_model(self, state, runtime) -> dict | None:
        """The request for each call of the model's new reply, each call with an id unique in
        the thread; malformed calls become calls too, so each is shown and answered."""
        messages = state["messages"]
        reply = messages[-1] if messages else None
        if not isinstance(reply, AIMessage) or reply.id == state.get(CLASSIFIED) or not (
                reply.tool_calls or reply.invalid_tool_calls):
            return None
        reply = storable_reply(reply, messages[:-1])
        requests = requests_for(self.kit, reply, messages, _task_of(messages),
                                state.get("requested_by"))
        malformed = [{"name": bad.get("name") or "", "args": {}, "id": bad["id"],
                      "type": "tool_call"} for bad in reply.invalid_tool_calls]
        reply = reply.model_copy(update={"tool_calls": [*reply.tool_calls, *malformed],
                                         "invalid_tool_calls": []})
        return {"messages": [reply], CLASSIFIED: reply.id,
                SHOWN: {r.tool_call_id: r.as_json() for r in requests}}

    def wrap_model_call(self, request, handler):
        """While a call of the last reply is shown again, the model is not asked: the reply
        stands, and ``create_agent`` sends its unanswered calls to the tools again."""
        last = next((m for m in reversed(request.messages) if isinstance(m, AIMessage)), None)
        answered = {m.tool_call_id for m in request.messages if isinstance(m, ToolMessage)}
        if last is not None and any(c["id"] not in answered for c in last.tool_calls):
            return ModelResponse(result=[last])
        return handler(request)

    def wrap_tool_call(self, request, handler):
        """Decide the call's request (pausing for a person), then run it once, or show it
        again. As in the kit's graph, no call of a reply runs while another of it waits for its
        first decision: a call decided then runs when the tools are called next."""
        call, state = request.tool_call, request.state
        thread_id = request.runtime.config["configurable"]["thread_id"]
        shown = (state.get(SHOWN) or {}).get(call["id"])
        if shown is None:  # a call the model's reply did not hold when it was classified
            return _show(requests_for(self.kit, AIMessage("", tool_calls=[call]),
                                      state["messages"], _task_of(state["messages"]),
                                      state.get("requested_by"))[0])
        shown = ApprovalRequest.model_validate(shown)
        decided, update = _decided_on(state, shown), {}
        if decided is None:
            decided = decide(self.kit, thread_id, shown)
            if isinstance(decided, ApprovalRequest):
                return _show(decided)
            update["decided"] = [decided.model_dump(mode="json")]
            if _others_unanswered(state["messages"], call["id"]):
                return Command(update=update)

        def through_langchain(args: dict):
            """The tool as ``create_agent`` runs it (its injected arguments, the hooks of the
            middleware listed after this one), with its idempotency key: LangChain's tool node
            strips injected arguments that come with a call, so the key is added after it."""
            key = args.pop(IDEMPOTENCY_KEY, None)
            tool = request.tool if key is None else _Keyed(request.tool, key)
            return handler(request.override(tool_call={**call, "args": args}, tool=tool))

        result = run_decided(self.kit, thread_id, decided, invoke=through_langchain)
        if isinstance(result, ApprovalRequest):
            return Command(update={**update, SHOWN: {call["id"]: result.as_json()}})
        message = result.model_copy(update={"name": decided.request.tool or None})
        return Command(update={**update, "messages": [message]})


class _Keyed:
    """A tool that is given its idempotency key whenever it is invoked."""

    def __init__(self, tool, key: str):
        self._tool, self._key = tool, key

    def __getattr__(self, name: str):
        return getattr(self._tool, name)

    def invoke(self, call: dict, config=None, **kwargs):
        return self._tool.invoke({**call, "args": {**call["args"], IDEMPOTENCY_KEY: self._key}},
                                 config, **kwargs)


def _decided_on(state: dict, shown: ApprovalRequest) -> Decided | None:
    """The decision already taken on this showing of the call, if any."""
    found = [d for d in state.get("decided") or []
             if d["request"]["fingerprint"] == shown.fingerprint
             and d["request"]["tool_call_id"] == shown.tool_call_id]
    return Decided.model_validate(found[-1]) if found else None


def _others_unanswered(messages: list, call_id: str) -> bool:
    """Whether another call of the last reply has no result yet."""
    reply = next(m for m in reversed(messages) if isinstance(m, AIMessage))
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return any(c["id"] not in answered and c["id"] != call_id for c in reply.tool_calls)


def _show(request: ApprovalRequest) -> Command:
    """The call's next showing, kept in the state: no result yet, so ``create_agent`` sends the
    call to the tools again, where it pauses with this request."""
    return Command(update={SHOWN: {request.tool_call_id: request.as_json()}})


def _task_of(messages: list) -> str:
    """The goal the agent was given: the person's latest message."""
    said = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    return "" if said is None else said.text


# -- the decision path --------------------------------------------------------------------------

class MiddlewareAgent(ApprovalAgent):
    """``ApprovalAgent``'s decision path on a ``create_agent`` graph. ``resume`` also takes
    LangChain's decision format, converted by ``from_langchain``."""

    def resume(self, thread_id: str, decisions: Any, *, channel: str | None = None,
               approver: str | None = None) -> Outcome:
        """As ``ApprovalAgent.resume``; LangChain's ``{"decisions": [...]}`` (one per pending
        call, in the order the model proposed them), ``{"type": ...}`` or ``{interrupt_id:
        {"type": ...}}`` too, decided by ``approver`` (LangChain's format names no one)."""
        if speaks_langchain(decisions):
            decisions = from_langchain(decisions, self.pending(thread_id), approver)
        elif approver is not None:
            raise ApprovalError("approver= is for LangChain's decision format; the kit's "
                                "decisions name their approver")
        return super().resume(thread_id, decisions, channel=channel)


def speaks_langchain(decisions: Any) -> bool:
    """Whether these decisions are in ``HumanInTheLoopMiddleware``'s format."""
    if not isinstance(decisions, dict):
        return False
    if "decisions" in decisions or "type" in decisions:
        return True
    return bool(decisions) and all(isinstance(v, dict) and "type" in v
                                   for v in decisions.values())


def from_langchain(decisions: dict, pending: list[Pending], approver: str | None) -> dict:
    """LangChain's decisions as the kit's, keyed by interrupt id, or ``ApprovalError``: the one
    place the two formats meet. ``pending`` is in the order the model proposed the calls (as
    ``ApprovalAgent.pending`` lists it). One decision when nothing is pending any more (decided
    elsewhere meanwhile) comes back bare, so that ``resume`` says who decided."""
    if "decisions" in decisions:
        listed = decisions["decisions"]
        if set(decisions) != {"decisions"} or not isinstance(listed, list):
            raise ApprovalError("LangChain's format is {'decisions': [decision, ...]}, one per "
                                "pending call")
        if pending and len(listed) != len(pending):
            raise ApprovalError(f"{len(listed)} decision(s) for {len(pending)} pending call(s); "
                                "give one per call, in the order the model proposed them")
        keyed = dict(zip([p.interrupt_id for p in pending] or [None], listed, strict=False))
    elif "type" in decisions:
        if len(pending) > 1:
            raise ApprovalError(f"{len(pending)} calls are pending: answer them with "
                                "{'decisions': [...]} or by interrupt id")
        keyed = {pending[0].interrupt_id if pending else None: decisions}
    else:
        keyed = decisions
    requests = {p.interrupt_id: p.request for p in pending}
    kits = {interrupt_id: _kit_decision(decision, requests.get(interrupt_id), approver)
            for interrupt_id, decision in keyed.items()}
    return kits.get(None, kits)


def _kit_decision(decision: Any, request: ApprovalRequest | None, approver: str | None) -> dict:
    if not isinstance(decision, dict):
        raise ApprovalError(f"a LangChain decision is a dict like {{'type': 'approve'}}, not "
                            f"{decision!r}"[:300])
    kind = decision.get("type")
    if kind == "respond":
        raise ApprovalError("'respond' answers in the tool's place without running it; the kit "
                            "does not take it: approve, edit or reject (a reason goes to the "
                            "model)")
    if kind not in LANGCHAIN_TYPES:
        raise ApprovalError(f"LangChain decision type {kind!r} is unknown; use one of "
                            f"{', '.join(LANGCHAIN_TYPES)}")
    allowed = {"type", "approver"} | {"reject": {"message"}, "edit": {"edited_action"}}.get(
        kind, set())
    if set(decision) - allowed:
        raise ApprovalError(f"a LangChain {kind!r} decision has no key(s) "
                            f"{sorted(set(decision) - allowed)}")
    who = decision.get("approver", approver)
    if who is None:
        raise ApprovalError("LangChain's decision names no approver: pass approver='...' (the "
                            "kit records the person behind every decision)")
    kit = {"kind": kind, "approver": who}
    if decision.get("message"):
        kit["reason"] = decision["message"]
    if kind == "edit":
        action = decision.get("edited_action")
        if not isinstance(action, dict) or set(action) != {"name", "args"}:
            raise ApprovalError("an edit's edited_action is {'name': tool, 'args': {...}}")
        if request is not None and action["name"] != request.tool:
            raise ApprovalError(f"an edit keeps the tool ({request.tool}); to run "
                                f"{action['name']!r} instead, reject this call")
        kit["args"] = action["args"]
    return kit


def create_approval_agent(model, tools: list, policy=None, world=None, checkpointer=None,
                          audit=None, ledger=None, approval_ttl: float | None = None,
                          approvers=None, *, middleware: tuple = (), **create_agent_kwargs
                          ) -> MiddlewareAgent:
    """``create_agent`` with ``ApprovalMiddleware`` first, and the kit's decision path on it:
    ``ApprovalAgent``'s arguments, ``ApprovalAgent``'s API (checkpointer default: in memory)."""
    gate = ApprovalMiddleware(tools, policy, world=world, audit=audit, ledger=ledger,
                              approvers=approvers, approval_ttl=approval_ttl)
    graph = create_agent(model, tools, middleware=[gate, *middleware],
                         checkpointer=checkpointer if checkpointer is not None
                         else InMemorySaver(), **create_agent_kwargs)
    return gate.agent(graph)
