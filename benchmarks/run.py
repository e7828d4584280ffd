"""Benchmarks: each figure is a ratio against a baseline measured in the same process and run
(medians over repeated rounds), or a count. Nothing here asserts; it prints a table.

    .venv/bin/python benchmarks/run.py            # print the table
    .venv/bin/python benchmarks/run.py --write    # also record it in benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from measure import interleaved, load, table  # benchmarks/measure.py, this file's folder

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TASK = 'send a reply to thread 3 saying "hi"'  # one soft-gated call, approved


# -- gated approve cycle ------------------------------------------------------------------------

def bare_graph():
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    class State(TypedDict, total=False):
        decision: str

    def ask(state):
        return {"decision": interrupt("approve?")}

    def act(state):
        return {}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_node("act", act)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    graph = builder.compile(checkpointer=InMemorySaver())

    def cycle(i):
        config = {"configurable": {"thread_id": f"bare-{i}"}}
        graph.invoke({}, config)
        graph.invoke(Command(resume="approved"), config)

    return cycle


def kit_cycle(workdir: Path):
    """ApprovalAgent with a durable audit trail (synchronous=FULL) and its decision ledger."""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.audit import AuditTrail
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    world = World()
    trail = AuditTrail(workdir / "cycle-audit.db")
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, audit=trail)

    def cycle(i):
        thread = f"kit-{i}"
        agent.start(TASK, thread)  # plan, classify, pause
        agent.resume(thread, {"kind": "approve", "approver": "ana"})  # resume, execute, audit

    return cycle


def peer_cycle(interrupt_mode: str = "batched"):
    """What a user would pick instead: LangChain v1's agent with HumanInTheLoopMiddleware, the
    same offline model, tools and task, MemorySaver. ``interrupt_mode="per_call"`` pauses each
    call in the tool node, where the kit's ApprovalMiddleware pauses."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    world = World()
    agent = create_agent(OfflineChatModel(), world.tools(), checkpointer=InMemorySaver(),
                         middleware=[HumanInTheLoopMiddleware(interrupt_on={"send_reply": True},
                                                              interrupt_mode=interrupt_mode)])

    def cycle(i):
        config = {"configurable": {"thread_id": f"peer-{i}"}}
        paused = agent.invoke({"messages": [{"role": "user", "content": TASK}]}, config)
        [pause] = paused["__interrupt__"]
        agent.invoke(Command(resume={"decisions": [{"type": "approve"}]} if interrupt_mode ==
                             "batched" else {pause.id: {"type": "approve"}}), config)

    return cycle


def middleware_cycle(workdir: Path):
    """The peer's own agent (create_agent, the same offline model, tools and task) with the kit's
    ApprovalMiddleware in place of HumanInTheLoopMiddleware, a durable audit trail
    (synchronous=FULL) and the decision ledger; decided in LangChain's format."""
    from hitl_kit.audit import AuditTrail
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.middleware import create_approval_agent
    from hitl_kit.world import World

    world = World()
    trail = AuditTrail(workdir / "middleware-audit.db")
    agent = create_approval_agent(OfflineChatModel(), world.tools(), world=world, audit=trail)

    def cycle(i):
        thread = f"middleware-{i}"
        agent.start(TASK, thread)
        agent.resume(thread, {"decisions": [{"type": "approve"}]}, approver="ana")

    return cycle


def graph_only_cycle():
    """The kit's plan/gate/execute graph driven directly: the decision claimed in the ledger
    (the gate takes no other) and resumed with a Command; no agent guards, turns, index or
    audit."""
    from langgraph.types import Command

    from hitl_kit.contract import Decision
    from hitl_kit.graph import build_graph
    from hitl_kit.ledger import Claim
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    world = World()
    graph = build_graph(OfflineChatModel(), world.tools(), world=world)

    def cycle(i):
        thread = f"graph-{i}"
        config = {"configurable": {"thread_id": thread}}
        asked = graph.invoke({"task": TASK}, config, durability="exit")["__interrupt__"][0]
        decision = Decision(kind="approve", approver="ana",
                            fingerprint=asked.value["fingerprint"])
        graph.kit.ledger.claim([Claim(thread, asked.id, decision.fingerprint, decision)])
        done = graph.invoke(Command(resume={asked.id: decision.model_dump(mode="json")}),
                            config, durability="exit")
        assert "__interrupt__" not in done, "the graph asked again instead of running the call"

    return cycle


def bench_gated_cycle(workdir: Path, rounds: int) -> list[dict]:
    took = interleaved({"peer": peer_cycle(), "kit": kit_cycle(workdir),
                        "middleware": middleware_cycle(workdir),
                        "per call": peer_cycle("per_call"), "graph": graph_only_cycle(),
                        "bare": bare_graph()}, 40, rounds)
    peer, kit, middleware, per_call, graph, bare = (
        took[k] for k in ("peer", "kit", "middleware", "per call", "graph", "bare"))
    return [{"figure": "gated approve cycle with durable audit + ledger (plan, classify, "
                       "pause, resume, execute once, audit)",
             "baseline": f"LangChain HumanInTheLoopMiddleware agent, same model and task: "
                         f"{peer * 1e3:.2f} ms", "measured": f"{kit * 1e3:.2f} ms",
             "value": f"{kit / peer:.2f}x", "target": "<= 0.8x", "met": kit / peer <= 0.8},
            {"figure": "the same create_agent agent with the kit's ApprovalMiddleware instead, "
                       "durable audit + ledger (classify, pause, claim, resume, execute once, "
                       "audit)",
             "baseline": f"the peer: {peer * 1e3:.2f} ms", "measured": f"{middleware * 1e3:.2f} ms",
             "value": f"{middleware / peer:.2f}x", "target": "<= 1.1x",
             "met": middleware / peer <= 1.1},
            {"figure": "(breakdown) the same, against the peer pausing each call in the tool "
                       "node, where ApprovalMiddleware pauses",
             "baseline": "HumanInTheLoopMiddleware(interrupt_mode=\"per_call\"): "
                         f"{per_call * 1e3:.2f} ms", "measured": f"{middleware * 1e3:.2f} ms",
             "value": f"{middleware / per_call:.2f}x", "target": "-", "met": True},
            {"figure": "(breakdown) the peer pausing each call in the tool node "
                       "(interrupt_mode=\"per_call\")",
             "baseline": f"the peer: {peer * 1e3:.2f} ms", "measured": f"{per_call * 1e3:.2f} ms",
             "value": f"{per_call / peer:.2f}x", "target": "-", "met": True},
            {"figure": "(breakdown) the kit's graph alone: the decision claimed in the ledger, "
                       "no agent guards, turns, index or audit",
             "baseline": f"the peer: {peer * 1e3:.2f} ms", "measured": f"{graph * 1e3:.2f} ms",
             "value": f"{graph / peer:.2f}x", "target": "-", "met": True},
            {"figure": "(floor) bare 2-node graph, interrupt + resume, MemorySaver, no model",
             "baseline": f"the peer: {peer * 1e3:.2f} ms", "measured": f"{bare * 1e3:.2f} ms",
             "value": f"{bare / peer:.2f}x", "target": "-", "met": True}]


# -- audit append -------------------------------------------------------------------------------

def audit_entry(i: int) -> dict:
    now = datetime.now(UTC)
    return {"event_key": f"bench:{i}", "session_id": "bench", "action_type": "send_reply",
            "parameters": {"thread_id": 3, "body": "hello"}, "event": "proposed",
            "reversibility_class": "irreversible_low", "proposed_at": now}


def bench_audit_append(workdir: Path, rounds: int) -> list[dict]:
    """One row per commit, synchronous=FULL, against a raw INSERT + commit of the same row:
    without a head (one INSERT) and with the head file (hitl_kit.audit_head: the intent synced
    before the commit, the mark after it); and what the Python side costs per row."""
    from hitl_kit.audit import AuditTrail

    headless = AuditTrail(workdir / "append.db")  # durable: WAL, synchronous=FULL
    headed = AuditTrail(workdir / "append-head.db", head_path=workdir / "append.head.json")
    raw = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, event_key TEXT UNIQUE, body TEXT)")
    row = str(audit_entry(0))

    def raw_insert(i):
        raw.execute("BEGIN")
        raw.execute("INSERT INTO log (event_key, body) VALUES (?, ?)", (f"raw:{i}", row))
        raw.execute("COMMIT")

    offset = [0]

    def appender(trail):
        def append(i):
            offset[0] += 1
            trail.append(audit_entry(offset[0]))
        return append

    took = interleaved({"raw": raw_insert, "kit": appender(headless),
                        "head": appender(headed)}, 200, rounds)
    raw_s = took["raw"]
    rows = [{"figure": f"audit append, one row per commit, hash chain, synchronous=FULL{label}",
             "baseline": f"raw INSERT + commit: {1 / raw_s:,.0f} rows/s",
             "measured": f"{1 / took[key]:,.0f} rows/s",
             "value": f"{raw_s / took[key]:.2f}x the raw rate", "target": ">= 0.9x",
             "met": raw_s / took[key] >= 0.9}
            for key, label in (("kit", ""), ("head", ", with the head file"))]
    parts = python_side_per_row()
    rows.append({"figure": "(breakdown) the Python side of one audit row",
                 "baseline": "-", "measured": ", ".join(f"{name} {us:.0f} us"
                                                          for name, us in parts.items()),
                 "value": f"{sum(parts.values()):.0f} us", "target": "-", "met": True})
    return rows


def python_side_per_row(count: int = 20_000) -> dict[str, float]:
    """Microseconds per row of each step Python takes before the INSERT, on the benchmark's
    entry: checking fields and times, redacting, canonical JSON of the arguments, the hash."""
    from hitl_kit.audit_chain import canonical_json, chain_row, normalize_entry
    from hitl_kit.redaction import clean_text, sanitize

    entry = audit_entry(0)
    stored = normalize_entry(entry)

    def per_row(work) -> float:
        start = time.perf_counter()
        for _ in range(count):
            work()
        return (time.perf_counter() - start) / count * 1e6

    whole = per_row(lambda: normalize_entry(entry))
    redaction = per_row(lambda: ([clean_text(entry[f]) for f in ("event_key", "session_id",
                                                                  "action_type")],
                                 sanitize(entry["parameters"])))
    as_json = per_row(lambda: canonical_json(entry["parameters"]))
    chained = per_row(lambda: chain_row(stored, (1, "0" * 64)))
    return {"validation": whole - redaction - as_json, "redaction": redaction,
            "canonical JSON": as_json, "chain + hash": chained}


# -- verify -------------------------------------------------------------------------------------

def bench_verify(workdir: Path, rounds: int) -> dict:
    from hitl_kit.audit import SELECT_ROWS_SQL, AuditTrail, verify_file

    path = workdir / "verify.db"
    trail = AuditTrail(path, durable=False)
    for i in range(100_000):
        trail.append(audit_entry(i))
    trail.close()

    def plain_select(_):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(SELECT_ROWS_SQL).fetchall()
        assert len(rows) == 100_000

    def verify(_):
        assert verify_file(path).ok

    took = interleaved({"select": plain_select, "verify": verify}, 1, rounds)
    select_s, verify_s = took["select"], took["verify"]
    ratio = verify_s / select_s
    return {"figure": "verify the chain of 100,000 rows",
            "baseline": f"plain SELECT of the rows: {select_s * 1e3:.0f} ms",
            "measured": f"{verify_s * 1e3:.0f} ms", "value": f"{ratio:.2f}x",
            "target": "<= 3x and < 1 s", "met": ratio <= 3 and verify_s < 1}


# -- the inbox ----------------------------------------------------------------------------------

INBOX_SIZE = 1_000


def bench_inbox(rounds: int) -> dict:
    """1,000 approvals submitted, listed and approved through a new inbox, against 1,000 bare
    LangGraph threads paused and resumed. The two take turns in slices (``inbox_round``), so a
    busier moment of the machine falls on both; ``rounds`` such runs, the medians compared."""
    took = [inbox_round(r) for r in range(rounds)]
    bare_s = statistics.median(t["bare"] for t in took)
    kit_s = statistics.median(t["kit"] for t in took)
    return {"figure": f"inbox: {INBOX_SIZE:,} approvals created, listed and resolved",
            "baseline": f"{INBOX_SIZE:,} bare LangGraph pause + resume: {bare_s:.2f} s",
            "measured": f"{kit_s:.2f} s", "value": f"{kit_s / bare_s:.2f}x",
            "target": "<= 1.3x", "met": kit_s / bare_s <= 1.3}


def inbox_round(r: int, slices: int = 10) -> dict[str, float]:
    """Seconds each side spent: the inbox's submissions slice by slice, one listing of all of
    them, its approvals slice by slice; between its slices, the bare graph's cycles (half a
    slice each time, so both sides do ``INBOX_SIZE`` pauses and resumes)."""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.inbox import ApprovalInbox
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    per_slice = INBOX_SIZE // slices
    cycle, world = bare_graph(), World()
    inbox = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world))
    spent = {"bare": 0.0, "kit": 0.0}
    listed: list = []
    bare_done = 0

    def bare_slice() -> None:
        nonlocal bare_done
        for _ in range(per_slice // 2):
            cycle(r * 10 * INBOX_SIZE + bare_done)
            bare_done += 1

    def submit_slice(n: int) -> None:
        for i in range(n * per_slice, (n + 1) * per_slice):
            inbox.submit('send a reply to thread 3 saying "hi"', f"inbox-{i}")

    def approve_slice(n: int) -> None:
        chosen = listed[n * per_slice:(n + 1) * per_slice]
        assert all(done.resumed for done in inbox.approve(chosen, approver="ana"))

    def list_all() -> None:
        listed.extend(inbox.items())

    steps = [[("bare", bare_slice, ()), ("kit", submit_slice, (n,))] for n in range(slices)]
    steps += [[("kit", list_all, ())]]
    steps += [[("bare", bare_slice, ()), ("kit", approve_slice, (n,))] for n in range(slices)]
    for n, pair in enumerate(steps):
        for side, work, args in pair if (n + r) % 2 == 0 else reversed(pair):
            start = time.perf_counter()
            work(*args)
            spent[side] += time.perf_counter() - start
    assert len(listed) == bare_done == INBOX_SIZE and world.calls["send_reply"] == INBOX_SIZE
    return spent


# -- timeout accuracy ---------------------------------------------------------------------------

TIMEOUTS = 200


def bench_timeout_accuracy() -> dict:
    """200 deadlines, staggered 25 ms apart so each default is applied on its own; lateness is
    when the default was applied (the graph resumed, the audit written) minus the deadline."""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.timeouts import TIMED_OUT, ApprovalTimer, Deadline
    from hitl_kit.world import World

    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    pending = [agent.start(f"deploy the billing service version 9.{i} to prod", f"timeout-{i}")
               .pending[0] for i in range(TIMEOUTS)]
    timers, due = [], []
    base = time.monotonic() + 0.5
    for i, request in enumerate(pending):
        seconds = base + i * 0.025 - time.monotonic()
        due.append(time.monotonic() + seconds)
        timers.append(ApprovalTimer(agent, request, Deadline(seconds)).start())
    settled_at = []
    for timer in timers:
        assert timer.wait(60) and timer.state == TIMED_OUT
    for timer, deadline in zip(timers, due, strict=True):
        settled_at.append(timer.settled_at - deadline)
    lateness = sorted(settled_at)
    p99 = lateness[int(0.99 * (len(lateness) - 1))]
    return {"figure": f"timeout accuracy over {TIMEOUTS} deadlines (default applied)",
            "baseline": "the deadline", "measured":
            f"median {statistics.median(lateness) * 1e3:.1f} ms late, max "
            f"{lateness[-1] * 1e3:.1f} ms", "value": f"p99 {p99 * 1e3:.1f} ms late",
            "target": "p99 <= 50 ms", "met": p99 <= 0.050}


REARMED = 50


def bench_rearm_lateness() -> dict:
    """50 deadlines that passed while no process watched them (armed, then the watcher closed):
    a new watcher's ``rearm()`` applies each default; lateness is when each was applied minus
    the moment ``rearm()`` was called. (The crash suite checks each is applied exactly once.)"""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.timeouts import TIMED_OUT, Deadline, DeadlineWatcher
    from hitl_kit.world import World

    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    before = DeadlineWatcher(agent, {"hard_gate": Deadline(0.2)})
    for i in range(REARMED):
        before.watch(agent.start(f"deploy the billing service version 8.{i} to prod",
                                 f"rearm-{i}"))
    before.close()  # the process "dies": the requests stay pending with their stored times
    time.sleep(0.5)
    restarted = time.monotonic()
    timers = DeadlineWatcher(agent, {"hard_gate": Deadline(600)}).rearm()
    for timer in timers:
        assert timer.wait(60) and timer.state == TIMED_OUT
    late = sorted(timer.settled_at - restarted for timer in timers)
    return {"figure": f"deadlines that passed while no process ran: {len(timers)} defaults "
                      "applied by rearm() after a restart", "baseline": "the restart (rearm())",
            "measured": f"median {statistics.median(late) * 1e3:.0f} ms, last "
                        f"{late[-1] * 1e3:.0f} ms after it",
            "value": f"last {late[-1]:.2f} s late", "target": "last <= 1 s",
            "met": late[-1] <= 1.0}


# -- imports and the shell self-check ------------------------------------------------------------

def process_seconds(args: list[str], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=ROOT)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_import(rounds: int) -> list[dict]:
    """Each import in a new interpreter, the imports taking turns round by round. The figure is
    the processor time an import costs (the child's user + system time, start-up subtracted),
    which a loaded machine changes less than the wall clock; the wall clock is shown beside."""
    import resource

    codes = {"start-up": "pass", "langgraph.graph": "import langgraph.graph",
             "hitl_kit": "import hitl_kit", "hitl_kit.approval": "import hitl_kit.approval"}
    cpu: dict[str, list[float]] = {name: [] for name in codes}
    wall: dict[str, list[float]] = {name: [] for name in codes}
    for r in range(max(rounds, 8)):
        order = list(codes.items())
        for name, code in order if r % 2 == 0 else reversed(order):
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                           cwd=ROOT)
            wall[name].append(time.perf_counter() - start)
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime)

    def cost(samples: dict[str, list[float]], name: str) -> float:
        return statistics.median(samples[name]) - statistics.median(samples["start-up"])

    langgraph = cost(cpu, "langgraph.graph")
    rows = []
    for module, target in (("hitl_kit", 1.3), ("hitl_kit.approval", 1.0)):
        took = cost(cpu, module)
        rows.append({"figure": f"import {module} (processor time, interpreter start-up "
                               "subtracted)",
                     "baseline": f"import langgraph.graph: {langgraph * 1e3:.0f} ms (wall "
                                 f"{cost(wall, 'langgraph.graph') * 1e3:.0f} ms)",
                     "measured": f"{took * 1e3:.0f} ms (wall {cost(wall, module) * 1e3:.0f} "
                                 "ms)", "value": f"{took / langgraph:.2f}x",
                     "target": f"<= {target}x", "met": took / langgraph <= target})
    return rows


def bench_selfcheck(rounds: int) -> list[dict]:
    from hitl_kit.course.checks import all_drills

    rows = []
    for drill in all_drills():
        took = process_seconds(["-m", "hitl_kit", "check", str(drill.solution_path)], rounds)
        rows.append({"figure": f"self-check of {drill.key} from the shell (solution, whole "
                               "process)", "baseline": "-", "measured": f"{took:.2f} s",
                     "value": f"{took:.2f} s", "target": "<= 3 s", "met": took <= 3})
    return rows


# -- the table ----------------------------------------------------------------------------------

def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


# Why a target is missed, when it is (the closing notes of issue 15 give the measurements).
WHY_MISSED = {
    "the same create_agent agent": "the peer pauses once per model turn, after the model; the "
    "kit pauses each call in the tool node (one request, decision and deadline per call), a "
    "tool-node run in a thread to pause and another to run, which is what LangChain's own "
    "per-call mode costs too (the breakdown rows below); the rest is the durable audit trail "
    "(two rows, an fsync each), the decision ledger and the agent's checks, as in the row above",
    "gated approve cycle": "in processor time the kit's cycle without its audit trail is at the "
    "peer's (1.01-1.11x in interleaved rounds, its graph alone 0.92-1.00x; the breakdown in "
    "benchmarks/profiles/cycle_sqlite.txt); what the peer does not do is write the audit trail: "
    "two rows per cycle, each committed with synchronous=FULL, an fsync, and on this shared disk "
    "the two fsyncs take longer than the peer's whole cycle",
    "audit append": "per row, the Python side costs what the breakdown row says, the "
    "schema-version check about 10 us, against a raw commit of about 200-300 us; with the head "
    "file, the intent waits for the disk before the commit (an fdatasync, about 100 us here): "
    "a commit the head has not recorded could be cut unseen, so that wait is the guarantee's "
    "price (profile: benchmarks/profiles/audit_append.txt)",
    "inbox": "listing is one query (about 80 ms for 1,000); each request is a whole agent cycle, "
    "the model asked twice and five graph steps checkpointed (plan, gate; gate, execute, plan), "
    "against a bare graph's two steps with no model; the kit's graph alone costs what the "
    "peer's agent costs, 2-3x the bare graph, and LangGraph's own machinery is most of it "
    "(benchmarks/profiles/inbox.txt)",
    "import hitl_kit.approval": "it imports langgraph.graph, so it cannot cost less: what it "
    "adds is the kit's own modules, about 80 ms of own time (-X importtime), of which the "
    "contract's field docstrings take about 40 ms (pydantic reads them from the source, and on "
    "Python 3.11 finds the source by scanning every loaded module once)",
    "redaction": "the worst inputs are dense separators each followed by name-like characters "
    "(every ':' or '=' starts a check of the name before it, a few regex steps each, on the "
    "text reversed); 1 MB of plain prose has few of them",
}


def groups(workdir: Path, rounds: int) -> dict[str, Callable[[], list[dict]]]:
    """The table's rows in named groups (``--only`` picks some), in the table's order."""
    return {
        "cycle": lambda: bench_gated_cycle(workdir, rounds),
        "audit": lambda: bench_audit_append(workdir, rounds),
        "verify": lambda: [bench_verify(workdir, rounds)],
        "inbox": lambda: [bench_inbox(max(1, min(rounds, 3)))],
        "timeouts": lambda: [bench_timeout_accuracy(), bench_rearm_lateness()],
        "import": lambda: bench_import(rounds),
        "selfcheck": lambda: bench_selfcheck(max(1, rounds // 2)),
        "channels": lambda: __import__("channels").bench_channels(),  # the web app under load
        "redaction": lambda: [__import__("redaction").bench_redaction(rounds)],  # 1 MB, hostile
        "identity": lambda: __import__("identity").bench_identity(rounds),  # per comparison
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="repeats; the median is reported")
    parser.add_argument("--only", default="", help="comma-separated groups to run (cycle, "
                        "audit, verify, inbox, timeouts, import, selfcheck, channels, "
                        "redaction, identity, postgres); default all")
    parser.add_argument("--write", action="store_true", help="record the table in RESULTS.md "
                        "(the whole table only)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    chosen = set(filter(None, args.only.split(",")))
    known = {*groups(workdir, args.rounds), "postgres"}
    if chosen - known or (args.write and chosen):
        parser.error(f"--only takes some of {sorted(known)}, and --write records the whole "
                     "table only")
    rows, curve, why_missed = [], "", WHY_MISSED
    for name, rows_of in groups(workdir, args.rounds).items():
        if not chosen or name in chosen:
            rows += rows_of()
    if not chosen or "postgres" in chosen:
        postgres = __import__("postgres")  # benchmarks/postgres.py
        found, curve = postgres.bench_postgres(args.rounds)
        rows += found
        why_missed = {**WHY_MISSED, **postgres.WHY_MISSED}
    report = (f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; medians of "
              f"{args.rounds} rounds, {load()} at the end.\n\n{table(rows, why_missed)}\n")
    if curve:
        report += ("\nPostgreSQL: decisions per second as workers are added, each worker racing "
                   "for every request, beside bare PostgresSaver workers each resuming its own "
                   "share (medians of the rounds; latency: one decision's resume, p99 over every "
                   f"decision of the rounds).\n\n{curve}\n")
    print(report)
    if args.write:
        RESULTS.write_text("# Latest benchmark table\n\nProduced by `.venv/bin/python "
                           "benchmarks/run.py --write`.\n\n" + report)


if __name__ == "__main__":
    main()
