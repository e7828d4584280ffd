"""Drill 2: put an interrupt() gate in front of every data-modifying tool.

The learner writes ``needs_approval(tool_name)``, a ``review`` node and
``build_gated_agent(world, checkpointer, model)``. The checks drive the learner's graph with the
offline model on fresh demo worlds and count what really happened: every table of the world is
compared before and after (not only the tool calls), every plausible answer is tried, several
tasks share a thread and several threads run at once, and one check hands in a durable
SqliteSaver and resumes from a new graph, as after a restart.

What an answer could silently depend on, and how the checks vary it:

* names: every known tool name behind a namespace or separator (``crm.read_customer``,
  ``mcp__crm__read_customer``), besides other capitals, spacing, look-alikes and affixes;
* the decision recorded for calls that need no human: reads and a turn with no call must record
  an auto-approval by 'auto', also on a thread whose last task a person approved;
* who and in which order: an approval and a rejection of each modifying tool, from two
  approvers, with a reason, a ticket and an edit the answer carries along; a rejection first and
  then an approval on one thread, and the reverse; the same approval sent twice;
* lifetime: several tasks on one thread, several threads, and a new graph on the same
  checkpoint file.

When the learner's review makes the drill's given code fail (execute reading a decision that is
not a dict), the message says what review returned.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sqlite3
import tempfile
from pathlib import Path
from types import SimpleNamespace

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt, GraphRecursionError, InvalidUpdateError
from langgraph.types import Command

from hitl_kit.course.checks.names import HINTS, most_common_kind_first, unseen_names
from hitl_kit.course.selfcheck import (
    Check,
    Drill,
    Flaw,
    NotAttempted,
    attempt,
    describe,
    learner_error,
    learner_frame,
    need,
)
from hitl_kit.llm import OfflineChatModel
from hitl_kit.vocabulary import Approver, Verdict
from hitl_kit.world import World

READS = ("find_customers", "read_customer")
WRITES = ("update_customer", "delete_customer")
READ_TASKS = ("read customer 2", 'find customers matching "Grace"')
NO_CALL_TASK = "say hello"  # the offline model proposes no tool call for it
DELETE_4 = ("delete customer 4", "delete_customer", {"customer_id": 4})
UPDATE_2 = ('update customer 2 plan "enterprise"', "update_customer",
            {"customer_id": 2, "field": "plan", "value": "enterprise"})
ODD_NOTES = ("update customer 3 notes \"O'Brien: 50% off, \u00fc \\\\ {}\"", "update_customer",
             {"customer_id": 3, "field": "notes", "value": "O'Brien: 50% off, \u00fc \\\\ {}"})
WRITE_TASKS = (DELETE_4, UPDATE_2, ODD_NOTES)
VIP_1 = ('update customer 1 notes "vip"', "update_customer",
         {"customer_id": 1, "field": "notes", "value": "vip"})
PRO_1 = ('update customer 1 plan "pro"', "update_customer",
         {"customer_id": 1, "field": "plan", "value": "pro"})
AUTO = {"decision": Verdict.AUTO_APPROVED.value, "approver": Approver.AUTO.value}
# The names the drill asks for, and those its notebook gives (a renamed answer is told apart).
NAMES = ("needs_approval", "review", "build_gated_agent", "State", "make_plan", "make_execute",
         "rubber_stamp", "build_ungated_agent", "CUSTOMER_TOOLS", "World", "world",
         "get_chat_model", "ungated", "gated", "config", "paused", "final", "MemorySaver",
         "StateGraph", "START", "END", "Command", "interrupt", "HumanMessage", "TypedDict")
GIVEN_FUNCTIONS = ("make_plan", "make_execute", "plan", "execute", "rubber_stamp",
                   "build_ungated_agent")


def _answer(decision, approver: str = "ana", **more) -> dict:
    return {"decision": decision, "approver": approver, **more}


APPROVE = _answer(Verdict.APPROVED.value)
NOT_APPROVALS = (  # (what it stands for, the resume value): none of these may run the call
    ("a rejection", _answer("rejected")),
    ("a rejection by another approver, with a reason", _answer("rejected", "bo",
                                                              reason="wrong customer")),
    ("'reject', a verb", _answer("reject")),
    ("'APPROVED', not the exact word", _answer("APPROVED")),
    ("'approved ' with a space", _answer("approved ")),
    ("an empty decision", _answer("")),
    ("decision None", _answer(None)),
    ("no 'decision' key", {"approver": "ana"}),
    ("an empty dict", {}),
    ("a timed-out default", _answer("timed-out", "system")),
    ("an edit (the drill runs only 'approved')", _answer("edited", "ana",
                                                         args={"customer_id": 5})),
)


# -- running the learner's graph -------------------------------------------------------------------

def _build(ns: dict, world: World, returned: list, checkpointer=None):
    """The learner's graph; each value its review node returns is appended to ``returned``."""
    build = need(ns, "build_gated_agent", known=NAMES)
    review = need(ns, "review", known=NAMES)
    checkpointer = InMemorySaver() if checkpointer is None else checkpointer
    with _recording(ns, review, returned):
        graph = attempt("build_gated_agent(world, checkpointer, model)", build, world,
                        checkpointer, OfflineChatModel())
    if not (hasattr(graph, "invoke") and hasattr(graph, "get_state")):
        raise Flaw("build_gated_agent does not return a compiled graph",
                   got=f"{type(graph).__name__}", expected="what builder.compile(...) returns",
                   hint="End with return builder.compile(checkpointer=checkpointer).")
    if getattr(graph, "checkpointer", True) is None:
        raise Flaw("your graph has no checkpointer, so a paused run cannot be resumed",
                   tried="build_gated_agent(world, checkpointer, model)",
                   got="a graph compiled without a checkpointer",
                   expected="the graph compiled with the checkpointer it was given",
                   hint="builder.compile(checkpointer=checkpointer).")
    return graph


@contextlib.contextmanager
def _recording(ns: dict, review, returned: list):
    """While the graph is built, ``review`` in the learner's namespace is a stand-in that passes
    every call on and keeps what it returned (so a message can show it)."""
    if not inspect.isfunction(review) or review.__globals__ is not ns:
        yield
        return

    @functools.wraps(review)
    def recorded(*args, **kwargs):
        result = review(*args, **kwargs)
        returned.append(result)
        return result

    ns["review"] = recorded
    try:
        yield
    finally:
        ns["review"] = review


def _config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


def _invoke(graph, value, thread: str, label: str, returned: list | None = None):
    """graph.invoke, with LangGraph's errors and the learner's turned into a flaw in words."""
    try:
        return graph.invoke(value, _config(thread))
    except InvalidUpdateError as exc:
        shown = f"review returned {returned[-1]!r:.160}" if returned else "a node returned it"
        raise Flaw("your review returned something LangGraph cannot use as a state update",
                   tried=label, got=f"{shown}; LangGraph: {describe(exc)}",
                   expected="a dict of updates, e.g. {'decision': decision}",
                   hint="A node returns a dict of state updates: return {'decision': "
                        "interrupt(payload)} (or the auto-approval), not the decision itself."
                   ) from None
    except GraphRecursionError:
        raise Flaw("your graph runs in a loop", tried=label,
                   got="LangGraph stopped it after 25 steps (GraphRecursionError)",
                   expected="plan -> review -> execute -> END, once",
                   hint="Wire it like build_ungated_agent: no edge back to plan or review."
                   ) from None
    except (ValueError, RuntimeError) as exc:
        if "checkpointer" in str(exc).lower():
            raise Flaw("your graph has no checkpointer, so it cannot pause", tried=label,
                       got=f"ValueError: {exc}", expected="a pause, saved in the checkpointer",
                       hint="Compile with the checkpointer you are given: "
                            "builder.compile(checkpointer=checkpointer).") from None
        raise learner_error(exc, label) from None
    except Exception as exc:
        where = learner_frame(exc.__traceback__)
        if where is not None and where.name in GIVEN_FUNCTIONS and returned:
            raise Flaw(f"the given `{where.name}` failed on what your review returned",
                       tried=label, got=f"review returned {returned[-1]!r:.160}; then "
                                        f"`{where.name}` (given) raised {describe(exc)}, line "
                                        f"{where.lineno}: {(where.line or '').strip()}",
                       expected="{'decision': <the dict the human resumed with>}, or the "
                                "auto-approval {'decision': {'decision': 'auto-approved', "
                                "'approver': 'auto'}}",
                       hint="execute reads state['decision'] as a dict (decision.get('decision'))"
                            ": return {'decision': interrupt(payload)}, the human's answer as "
                            "it came, not a part of it.") from None
        raise learner_error(exc, label) from None


@contextlib.contextmanager
def _watching_interrupt(ns: dict):
    """Count the calls to interrupt() and the pauses they raised (they run in this process)."""
    import langgraph.types as types

    real = types.interrupt
    seen = SimpleNamespace(calls=0, paused=0)

    def interrupt(value):
        seen.calls += 1
        try:
            return real(value)
        except GraphInterrupt:
            seen.paused += 1
            raise

    spaces = [ns, *(fn.__globals__ for fn in (ns.get("review"), ns.get("build_gated_agent"))
                    if hasattr(fn, "__globals__"))]
    patched = [space for space in spaces if space.get("interrupt") is real]
    for space in patched:
        space["interrupt"] = interrupt
    types.interrupt = interrupt
    try:
        yield seen
    finally:
        types.interrupt = real
        for space in patched:
            space["interrupt"] = real


def _snapshot(world: World) -> dict[str, list[dict]]:
    return {table: world.rows(table) for table in world.tables()}


def _difference(before: dict, after: dict) -> str:
    changed = []
    for table, rows in after.items():
        old = before.get(table, [])
        if rows != old:
            gone = [r for r in old if r not in rows]
            new = [r for r in rows if r not in old]
            changed.append(f"{table}: {len(gone)} row(s) changed or removed, {len(new)} new")
    return "; ".join(changed) or "nothing"


class _Run:
    """One graph on one world, with what ran and what changed."""

    def __init__(self, ns: dict, checkpointer=None, world: World | None = None):
        self.ns = ns
        self.world = world or World()
        self.returned: list = []  # what the learner's review returned, newest last
        self.graph = _build(ns, self.world, self.returned, checkpointer)

    def start(self, task: str, thread: str):
        return _invoke(self.graph, {"task": task}, thread, f"graph.invoke({{'task': {task!r}}})",
                       self.returned)

    def resume(self, answer, thread: str, label: str):
        return _invoke(self.graph, Command(resume=answer), thread,
                       f"{label}: graph.invoke(Command(resume={answer!r}))", self.returned)

    def pause(self, task: str, tool: str, thread: str) -> dict:
        """Start ``task`` and require a pause before anything changed; return the payload."""
        before, calls = _snapshot(self.world), self.world.calls[tool]
        with _watching_interrupt(self.ns) as seen:
            result = self.start(task, thread)
        if "__interrupt__" not in result:
            raise _did_not_pause(self.next(thread), task, seen, self.world.calls[tool] - calls)
        after = _snapshot(self.world)
        if after != before or self.world.calls[tool] != calls:
            raise Flaw(f"{task!r} changed the world before anyone approved it",
                       tried=f"graph.invoke({{'task': {task!r}}}), which paused",
                       got=f"{tool} ran {self.world.calls[tool] - calls} time(s); changed: "
                           f"{_difference(before, after)}",
                       expected="no change until a human approves",
                       hint="Nothing may run before the pause: execute comes after review, and "
                            "review itself changes nothing.")
        return result["__interrupt__"][0].value

    def next(self, thread: str) -> tuple:
        """The nodes the thread will run next (empty once it finished)."""
        return _state(self.graph, thread).next

    def still_paused(self, thread: str) -> bool:
        return bool(self.next(thread))

    def decision(self, thread: str):
        return _state(self.graph, thread).values.get("decision")


def _state(graph, thread: str):
    try:
        return graph.get_state(_config(thread))
    except ValueError as exc:
        if "checkpointer" not in str(exc).lower():
            raise
        raise Flaw("your graph has no checkpointer, so it cannot pause",
                   tried=f"graph.get_state(...) on thread {thread!r}", got=f"ValueError: {exc}",
                   expected="the thread's saved state",
                   hint="Compile with the checkpointer you are given: "
                        "builder.compile(checkpointer=checkpointer).") from None


def _did_not_pause(stopped_at: tuple, task: str, seen, ran: int) -> Flaw:
    tried = f"graph.invoke({{'task': {task!r}}})"
    if stopped_at:
        return Flaw(f"{task!r} stopped before {stopped_at[0]!r} without calling interrupt(), so "
                    "no payload reached the approver", tried=tried,
                    got=f"no '__interrupt__' in the result; next: {stopped_at}",
                    expected="a pause inside review, with the payload",
                    hint="A static breakpoint (interrupt_before=...) stops every task and shows "
                         "the approver nothing. Drop it; call interrupt(payload) in review.")
    if seen.paused:
        return Flaw("interrupt() was called, but your review caught its pause", tried=tried,
                    got=f"no pause; the task finished (the call ran {ran} time(s))",
                    expected="a pause: the result has '__interrupt__'",
                    hint="interrupt() pauses by raising an exception LangGraph catches. A try/"
                         "except Exception around it swallows the pause: call it outside any "
                         "try, or re-raise.")
    return Flaw(f"{task!r} ran without pausing for approval", tried=tried,
                got=f"no pause; the call ran {ran} time(s) and interrupt() was not called",
                expected="a pause: review calls interrupt(payload) for a call that modifies data",
                hint="In review, call interrupt(...) when needs_approval(call['name']) is True.")


def _values(payload) -> list:
    if isinstance(payload, dict):
        return [payload, *(v for value in payload.values() for v in _values(value))]
    if isinstance(payload, list | tuple):
        return [payload, *(v for value in payload for v in _values(value))]
    return [payload]


# -- the checks ------------------------------------------------------------------------------------

def modifying_tools_need_approval(ns: dict) -> None:
    needs_approval = need(ns, "needs_approval", known=NAMES)
    expected = {**dict.fromkeys(WRITES, True), **dict.fromkeys(READS, False)}
    for name, want in expected.items():
        got = attempt(f"needs_approval({name!r})", needs_approval, name,
                      expected=repr(want))
        if got is not want:
            raise Flaw(f"needs_approval gets {name!r} wrong", tried=f"needs_approval({name!r})",
                       got=repr(got), expected=repr(want),
                       hint="True (the bool) for a tool that changes data, False for a read.")
    failed = []
    probes = unseen_names([*READS, *WRITES])
    for probe in probes:
        try:
            got = needs_approval(probe.name)
        except Exception as exc:
            made = learner_error(exc, f"needs_approval({probe.name!r})")
            if isinstance(made, NotAttempted):
                raise made from None
            failed.append((probe, f"{type(exc).__name__}: {exc}"))
            continue
        if got is not True:
            failed.append((probe, repr(got)))
    if failed:
        probe, got = most_common_kind_first(failed)[0]
        raise Flaw("needs_approval lets a tool nobody classified run without a human",
                   tried=f"needs_approval({probe.name!r})  ({probe.made()})", got=got,
                   expected="True: a tool you don't know needs a human (fail closed)",
                   also=f"{len(failed) - 1} more of the {len(probes)} unseen names" if
                   len(failed) > 1 else None,
                   hint="List the reads and answer False for exactly those names; everything "
                        "else is True. " + HINTS[probe.how])


def read_only_tasks_do_not_pause(ns: dict) -> None:
    run = _Run(ns)
    for number, task in enumerate((*READ_TASKS, NO_CALL_TASK)):
        thread = f"read-{number}"
        before = _snapshot(run.world)
        with _watching_interrupt(ns) as seen:
            result = run.start(task, thread)
        stopped_at = run.next(thread)
        if "__interrupt__" in result or stopped_at:
            how = "it called interrupt()" if seen.paused else f"it stopped before {stopped_at}"
            raise Flaw(f"{task!r} paused, but it only reads", tried=f"graph.invoke({{'task': "
                       f"{task!r}}})", got=f"a pause ({how})", expected="it finishes on its own",
                       hint="A static breakpoint (interrupt_before=...) stops every task. Call "
                            "interrupt() only when needs_approval(...) is True, else return "
                            "{'decision': {'decision': 'auto-approved', 'approver': 'auto'}}."
                       if stopped_at and not seen.paused else
                       "Call interrupt() only when needs_approval(call['name']) is True; "
                       "reads get {'decision': 'auto-approved', 'approver': 'auto'}.")
        if _snapshot(run.world) != before:
            raise Flaw(f"{task!r} changed the world, but it only reads", tried=task,
                       got=_difference(before, _snapshot(run.world)), expected="nothing changed",
                       hint="Only execute runs the proposed call; review changes nothing.")
    ran = sum(run.world.calls[t] for t in READS)
    if ran != len(READ_TASKS):
        raise Flaw("read-only tasks did not each run their read once",
                   tried=", ".join(repr(t) for t in READ_TASKS),
                   got=f"tool runs: {dict(run.world.calls)}", expected="each read ran once",
                   hint="Reads are auto-approved: review returns {'decision': {'decision': "
                        "'auto-approved', 'approver': 'auto'}} and execute runs them.")
    for number, task in enumerate((*READ_TASKS, NO_CALL_TASK)):
        _recorded_auto(run, task, f"read-{number}", "")
    # the same on a thread whose last task a person approved: its own decision, not that one
    with contextlib.suppress(Flaw):  # whether the approval works is judged elsewhere
        run.start(DELETE_4[0], "read-after-approval")
        run.resume(APPROVE, "read-after-approval", "approving the first task")
    run.start(READ_TASKS[0], "read-after-approval")
    _recorded_auto(run, READ_TASKS[0], "read-after-approval",
                   f", on a thread whose last task ({DELETE_4[0]!r}) ana approved")


def _recorded_auto(run: _Run, task: str, thread: str, where: str) -> None:
    """The decision a task that needs no human left in the thread's state: an auto-approval."""
    kept = run.decision(thread)
    if not (isinstance(kept, dict) and kept.get("decision") == AUTO["decision"]
            and kept.get("approver") == AUTO["approver"]):
        raise Flaw(f"the decision recorded for {task!r} is not an auto-approval by 'auto'",
                   tried=f"graph.invoke({{'task': {task!r}}}){where}",
                   got=f"the state's decision: {kept!r}", expected=f"{AUTO!r}",
                   hint="The record must say nobody was asked: for a read, or a turn with no "
                        "call, review returns {'decision': {'decision': 'auto-approved', "
                        "'approver': 'auto'}}, never a person's approval, and never nothing "
                        "(the state would keep the last task's decision).")


def modifying_task_pauses_with_action_and_args(ns: dict) -> None:
    run = _Run(ns)
    for number, (task, tool, args) in enumerate(WRITE_TASKS):
        payload = run.pause(task, tool, f"write-{number}")
        values = _values(payload)
        if tool not in values or args not in values:
            missing = " and ".join(what for what, there in (
                (f"the action {tool!r}", tool in values), (f"its arguments {args!r}",
                                                           args in values)) if not there)
            raise Flaw("the approver's payload does not say what would run",
                       tried=f"graph.invoke({{'task': {task!r}}})", got=f"payload {payload!r}",
                       expected=f"a payload that holds {missing}",
                       hint="interrupt() takes the payload the human sees: put the tool name "
                            "and the args dict in it, e.g. {'action': call['name'], 'args': "
                            "call['args']}.")


def approval_runs_the_call_exactly_once(ns: dict) -> None:
    run = _Run(ns)
    task, tool, args = DELETE_4
    run.pause(task, tool, "approve")
    error = _resume_counting(run, APPROVE, "approve", "one approval")
    _approved_once(run, task, tool, args, error)
    # the other modifying tool, approved by another approver with a reason
    task, tool, args = UPDATE_2
    answer = _answer("approved", "bo", reason="checked the contract")
    run.pause(task, tool, "approve-update")
    before = run.world.calls[tool]
    error = _resume_counting(run, answer, "approve-update", "bo's approval")
    if error is not None:
        raise error
    if run.world.calls[tool] - before != 1:
        raise Flaw(f"an approval of {tool} did not run it exactly once",
                   tried=f"{task!r}, then Command(resume={answer!r})",
                   got=f"{tool} ran {run.world.calls[tool] - before} time(s); the state's "
                       f"decision: {run.decision('approve-update')!r}", expected="exactly 1 run",
                   hint="Every modifying tool is gated the same way: an approval, by whoever "
                        "sends it, runs the call once; pass the answer on as it came.")


def _approved_once(run: _Run, task: str, tool: str, args: dict, error: Flaw | None) -> None:
    ran = run.world.calls[tool]
    tried = f"{task!r}, then Command(resume={APPROVE!r})"
    if ran > 1:
        raise Flaw(f"one approval ran {tool} {ran} times", tried=tried, got=f"{ran} runs",
                   expected="exactly 1 run", also=f"then: {error.flaw}" if error else None,
                   hint="Only execute runs the call. The node that calls interrupt() runs again "
                        "from its first line when resumed, so nothing in it may run the call "
                        "or change anything before interrupt().")
    if error is not None:
        raise error
    if ran == 0 and run.still_paused("approve"):
        raise Flaw("after one approval the graph paused again instead of running the call",
                   tried=tried, got=f"paused again before {run.next('approve')}",
                   expected=f"{tool} runs once",
                   hint="Call interrupt() once per call, and return its value as the decision.")
    if ran == 0 or any(c["id"] == args["customer_id"] for c in run.world.rows("customers")):
        raise Flaw(f"an approval did not run {tool}", tried=tried,
                   got=f"{ran} runs; the state's decision: {run.decision('approve')!r}",
                   expected="exactly 1 run, customer 4 deleted",
                   hint="Return the value interrupt() gives back, unchanged, as the decision: "
                        "{'decision': interrupt(payload)}.")
    _resume_counting(run, APPROVE, "approve", "the same approval sent again (a double click)")
    if run.world.calls[tool] != 1:
        raise Flaw("a second approval of the same request ran the call again",
                   tried="Command(resume=...) twice on one paused thread",
                   got=f"{tool} ran {run.world.calls[tool]} times", expected="once",
                   hint="Once the graph has finished, another resume must not reach execute "
                        "again: keep plan -> review -> execute -> END, no loop back.")


def _resume_counting(run: _Run, answer, thread: str, label: str) -> Flaw | None:
    """Resume; an error is returned, not raised, so the caller can first count what ran."""
    try:
        run.resume(answer, thread, label)
    except Flaw as exc:
        return exc
    return None


def only_an_approval_runs_the_call(ns: dict) -> None:
    run = _Run(ns)
    for number, ((task, tool, _), (what, answer)) in enumerate(
            [(DELETE_4, answer) for answer in NOT_APPROVALS]
            + [(UPDATE_2, answer) for answer in NOT_APPROVALS[:2] + NOT_APPROVALS[-1:]]):
        thread = f"answer-{number}"
        run.pause(task, tool, thread)
        before, calls = _snapshot(run.world), run.world.calls[tool]
        with contextlib.suppress(Flaw):  # stopping with an error runs nothing: that is closed
            run.resume(answer, thread, what)
        if run.world.calls[tool] != calls or _snapshot(run.world) != before:
            decision = run.decision(thread)
            raise Flaw(f"the call ran although the answer was {what}",
                       tried=f"{task!r}, then Command(resume={answer!r})",
                       got=f"{tool} ran; the state's decision became {decision!r}",
                       expected="nothing runs: only a decision of exactly 'approved' does",
                       hint="Return the human's answer unchanged as the decision; execute runs "
                            "only 'approved'. A test like `!= 'rejected'` approves every typo "
                            "and every missing key.")


def the_answer_is_kept_whole(ns: dict) -> None:
    run = _Run(ns)
    for number, ((task, tool, _), answer) in enumerate((
            (UPDATE_2, _answer("approved", "ana", reason='fine by me, "quoted" \u00fc',
                               ticket=42)),
            (ODD_NOTES, _answer("rejected", "bo", reason="not this quarter")),
            (VIP_1, _answer("approved", "O'Brien", reason="known account",
                            args={"customer_id": 1}, edited=False)),
            (PRO_1, _answer("edited", "cy", reason="pro, not enterprise",
                            args={"customer_id": 1, "field": "plan", "value": "enterprise"})),
    )):
        thread = f"whole-{number}"
        run.pause(task, tool, thread)
        run.resume(answer, thread, "an answer with a reason")
        kept = run.decision(thread)
        if kept != answer:
            raise Flaw("the human's answer is not kept as given", tried=f"{task!r}, then "
                       f"Command(resume={answer!r})", got=f"the state's decision: {kept!r}",
                       expected=f"{answer!r}: who decided, and why, belong in the record",
                       hint="Return what interrupt() gave back as it is: {'decision': "
                            "interrupt(payload)}. Rebuilding the dict drops the approver's "
                            "reason and anything else they sent.")


def an_approval_covers_one_call(ns: dict) -> None:
    run = _Run(ns)
    run.pause(DELETE_4[0], DELETE_4[1], "shared")
    _resume_counting(run, APPROVE, "shared", "approving the first task")  # judged elsewhere
    task, tool, _ = ('delete customer 3', "delete_customer", {"customer_id": 3})
    before, calls = _snapshot(run.world), run.world.calls[tool]
    result = run.start(task, "shared")
    if "__interrupt__" not in result:
        raise Flaw("an approval leaks to the next task on the same thread",
                   tried=f"on one thread: {DELETE_4[0]!r}, approved; then {task!r}",
                   got=f"{task!r} did not pause; {tool} ran {run.world.calls[tool] - calls} "
                       f"more time(s); changed: {_difference(before, _snapshot(run.world))}",
                   expected="the second task pauses for its own approval",
                   hint="A thread's state keeps the last decision between tasks. Don't skip "
                        "interrupt() because state already holds a decision: every proposed "
                        "call gets its own.")
    run.resume(_answer("rejected"), "shared", "rejecting the second task")
    if run.world.calls[tool] != calls or _snapshot(run.world) != before:
        raise Flaw("a rejected second task on the same thread ran anyway",
                   tried=f"{task!r} after an approved task on the same thread, then rejected",
                   got=_difference(before, _snapshot(run.world)), expected="nothing changed",
                   hint="Return this call's own answer as the decision, not an earlier one.")
    # the reverse: a rejection first, then the next task on the thread approved
    run.pause(UPDATE_2[0], UPDATE_2[1], "rejected-first")
    with contextlib.suppress(Flaw):  # judged elsewhere
        run.resume(_answer("rejected", "bo"), "rejected-first", "rejecting the first task")
    task, tool, _ = ODD_NOTES
    calls = run.world.calls[tool]
    result = run.start(task, "rejected-first")
    tried = f"on one thread: {UPDATE_2[0]!r}, rejected by bo; then {task!r}"
    if "__interrupt__" not in result:
        raise Flaw("after a rejection, the next task on the same thread does not ask",
                   tried=tried, got=f"{task!r} did not pause; {tool} ran "
                                    f"{run.world.calls[tool] - calls} more time(s)",
                   expected="the second task pauses for its own approval",
                   hint="Every proposed call gets its own interrupt(), whatever the thread's "
                        "last decision was: a rejection is about that call only.")
    run.resume(_answer("approved", "ana"), "rejected-first", "approving the second task")
    if run.world.calls[tool] == calls:  # (more than once is the exactly-once check's to say)
        raise Flaw("after a rejection, an approval of the next task on the thread did not run it",
                   tried=f"{tried}, approved by ana",
                   got=f"{tool} ran {run.world.calls[tool] - calls} time(s); the state's "
                       f"decision: {run.decision('rejected-first')!r}", expected="1 run",
                   hint="Return this call's own answer as the decision, not an earlier one.")


def threads_do_not_share_approvals(ns: dict) -> None:
    run = _Run(ns)
    run.pause(DELETE_4[0], DELETE_4[1], "thread-x")
    run.pause(UPDATE_2[0], UPDATE_2[1], "thread-y")
    run.resume(APPROVE, "thread-y", "approving thread y")
    if run.world.calls["delete_customer"] or not run.still_paused("thread-x"):
        raise Flaw("approving one thread decided another",
                   tried="delete customer 4 paused on thread x, an update paused on thread y; "
                         "approve y only", got=f"thread x still paused: "
                   f"{run.still_paused('thread-x')}; tool runs: {dict(run.world.calls)}",
                   expected="x stays paused and nothing runs there",
                   hint="Keep nothing about a decision outside the graph's state: no module-"
                        "level variables. Each thread has its own checkpoint.")
    before, calls = _snapshot(run.world), run.world.calls[UPDATE_2[1]]
    result = run.start(UPDATE_2[0], "thread-z")
    if "__interrupt__" not in result:
        raise Flaw("an approval given on one thread lets the same call run on another",
                   tried=f"{UPDATE_2[0]!r} approved on thread y, then proposed on thread z",
                   got=f"thread z did not pause; {UPDATE_2[1]} ran "
                       f"{run.world.calls[UPDATE_2[1]] - calls} more time(s)",
                   expected="thread z pauses for its own approval",
                   hint="Don't remember approvals in a module-level dict or set: an approval is "
                        "for one call on one thread, and lives in that thread's state.")
    run.resume(_answer("rejected"), "thread-x", "rejecting thread x")
    if run.world.calls["delete_customer"] or _snapshot(run.world) != before:
        raise Flaw("rejecting one thread ran something", tried="reject thread x",
                   got=f"tool runs: {dict(run.world.calls)}", expected="nothing more ran",
                   hint="Return this thread's own answer as the decision.")


def uses_the_checkpointer_it_is_given(ns: dict) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    task, tool, _ = DELETE_4
    world = World()
    with tempfile.TemporaryDirectory(prefix="hitl-drill2-") as folder:
        path = Path(folder) / "checkpoints.db"
        with contextlib.closing(sqlite3.connect(path, check_same_thread=False)) as first:
            saver = SqliteSaver(first)
            run = _Run(ns, saver, world)
            run.pause(task, tool, "durable")
            saved = list(saver.list(_config("durable")))
        if not saved:
            raise Flaw("your graph keeps its checkpoints somewhere other than the checkpointer "
                       "it was given", tried="build_gated_agent(world, SqliteSaver(...), model),"
                       " then a pause", got="nothing saved in that SqliteSaver",
                       expected="the paused run saved there, so it survives a restart",
                       hint="builder.compile(checkpointer=checkpointer): use the argument, not "
                            "a MemorySaver() of your own.")
        with contextlib.closing(sqlite3.connect(path, check_same_thread=False)) as second:
            restarted = _Run(ns, SqliteSaver(second), world)  # as a new process would
            error = _resume_counting(restarted, APPROVE, "durable",
                                     "resuming from a new graph on the same file")
            if error is not None and not world.calls[tool]:
                raise error
            if not world.calls[tool]:  # (more than once is the exactly-once check's to say)
                raise Flaw("a paused run could not be resumed after a restart",
                           tried="pause with one SqliteSaver; build the graph again on the "
                                 "same file and resume with an approval",
                           got=f"{tool} ran {world.calls[tool]} time(s)", expected="it runs",
                           hint="Compile with the checkpointer you are given; the approval "
                                "must find the paused run wherever it was saved.")


def _warm_up() -> None:
    """The first tool list, plan, compile and pause of a process cost more than the rest."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    world = World()
    model = OfflineChatModel().bind_tools(world.tools([*READS, *WRITES]))
    model.invoke([HumanMessage(DELETE_4[0])])
    builder = StateGraph(dict)
    builder.add_node("ask", lambda state: {"answer": interrupt("?")})
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    with contextlib.closing(sqlite3.connect(":memory:", check_same_thread=False)) as conn:
        for saver in (InMemorySaver(), SqliteSaver(conn)):
            graph = builder.compile(checkpointer=saver)
            graph.invoke({"answer": None}, _config("warm"))
            graph.invoke(Command(resume=APPROVE), _config("warm"))
            graph.get_state(_config("warm"))
            list(saver.list(_config("warm")))


DRILL = Drill(
    key="drill2",
    title="Drill 2: gate the data-modifying tools with interrupt()",
    notebook="02_gate_with_interrupt.ipynb",
    checks=[
        Check("data-modifying tools need approval, reads don't, unknown tools do",
              modifying_tools_need_approval,
              "List the reads and answer False for exactly those names (compared exactly); "
              "every other name, known or not, gets True."),
        Check("read-only tasks and tasks with no call finish without pausing",
              read_only_tasks_do_not_pause,
              "review calls interrupt() only when needs_approval(...) is True; otherwise, or "
              "when there is no call, it returns an auto-approved decision."),
        Check("a modifying task pauses before anything changes, with the action and its "
              "arguments in the payload", modifying_task_pauses_with_action_and_args,
              "interrupt() takes the payload: put the tool name and the call's args in it, "
              "e.g. {'action': call['name'], 'args': call['args']}."),
        Check("an approval runs the call exactly once, even if sent twice",
              approval_runs_the_call_exactly_once,
              "On resume the review node runs again from its first line: do nothing with a side "
              "effect before interrupt(). Return the resume value as the decision."),
        Check("only an exact 'approved' runs the call", only_an_approval_runs_the_call,
              "Return the human's answer unchanged as the decision; execute runs only "
              "'approved'. Rejections, typos and missing keys must run nothing."),
        Check("the human's answer is kept whole (approver, reason)", the_answer_is_kept_whole,
              "Return the value interrupt() gives back as it is, not a dict rebuilt from it."),
        Check("one approval covers one call: the next task on the thread asks again",
              an_approval_covers_one_call,
              "Don't skip interrupt() because the state already has a decision: the state "
              "keeps the last task's decision."),
        Check("threads are independent: approving one decides nothing on another",
              threads_do_not_share_approvals,
              "Keep nothing about decisions in module-level variables; each thread has its own "
              "checkpoint."),
        Check("the graph uses the checkpointer it is given (a SqliteSaver, after a restart)",
              uses_the_checkpointer_it_is_given,
              "builder.compile(checkpointer=checkpointer): the caller decides where paused runs "
              "are kept."),
    ],
    prepare=_warm_up,
)
