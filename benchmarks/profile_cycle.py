"""Where the time of a decision goes (issue 24): cProfile summaries written to
benchmarks/profiles/, small text files, plus a breakdown of the gated cycle with each part of the
kit switched off in turn (the same run, interleaved rounds).

    .venv/bin/python benchmarks/profile_cycle.py            # SQLite: cycle and inbox
    .venv/bin/python benchmarks/profile_cycle.py postgres   # also PostgreSQL: cycle, statements

What each file holds:

* ``cycle_sqlite.txt``: the breakdown, then 200 gated approve cycles (in-memory ledger, durable
  audit trail) by cumulative and by own time.
* ``inbox.txt``: 300 requests submitted, listed and approved through the inbox.
* ``cycle_postgres.txt``: 100 cycles on PostgreSQL, and the statements one start and one
  resume send (from the server's statement log), beside the bare graph's.
"""

from __future__ import annotations

import cProfile
import glob
import io
import pstats
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from measure import interleaved, load  # this file's folder

OUT = Path(__file__).resolve().parent / "profiles"
TASK = 'send a reply to thread 3 saying "hi"'


def profiled(work, count: int, title: str, lines: int = 45) -> str:
    """``work(i)`` run ``count`` times under cProfile: by cumulative time, then by own time."""
    for i in range(3):
        work(-1000 - i)  # warm up
    profile = cProfile.Profile()
    profile.enable()
    for i in range(count):
        work(1_000_000 + i)
    profile.disable()
    text = io.StringIO()
    text.write(f"{title}: {count} runs, {load()}\n")
    for order in ("cumulative", "tottime"):
        pstats.Stats(profile, stream=text).strip_dirs().sort_stats(order).print_stats(lines)
    return text.getvalue()


def agent_cycle(audit, name: str):
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, audit=audit)

    def cycle(i):
        thread = f"{name}-{i}"
        agent.start(TASK, thread)
        agent.resume(thread, {"kind": "approve", "approver": "ana"})

    return cycle


def sqlite_profiles(rounds: int = 5) -> None:
    from run import bare_graph, graph_only_cycle, peer_cycle

    from hitl_kit.audit import AuditTrail

    folder = Path(tempfile.mkdtemp(prefix="hitl-profile-"))
    durable = AuditTrail(folder / "durable.db")
    works = {"peer": peer_cycle(), "kit, durable audit": agent_cycle(durable, "durable"),
             "kit, audit without fsync": agent_cycle(
                 AuditTrail(folder / "fast.db", durable=False), "fast"),
             "kit, no audit": agent_cycle(None, "none"), "graph alone": graph_only_cycle(),
             "bare graph": bare_graph()}
    took = interleaved(works, 30, rounds)
    peer = took["peer"]
    breakdown = "\n".join(f"  {name:28} {s * 1e3:6.2f} ms  {s / peer:5.2f}x the peer"
                          for name, s in took.items())
    text = (f"The gated approve cycle, medians of {rounds} interleaved rounds of 30 "
            f"({load()}):\n{breakdown}\n\n")
    text += profiled(agent_cycle(durable, "profiled"), 200,
                     "gated approve cycle, in-memory ledger, durable audit")
    (OUT / "cycle_sqlite.txt").write_text(text)

    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.inbox import ApprovalInbox
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    def inbox_run(i):
        if i < 0:
            return
        world = World()
        inbox = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world))
        for n in range(300):
            inbox.submit(TASK, f"inbox-{n}")
        inbox.approve(inbox.items(), approver="ana")

    (OUT / "inbox.txt").write_text(profiled(inbox_run, 1, "300 requests through the inbox"))


def postgres_profiles() -> None:
    from postgres import bare_postgres_graph, cycles

    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.backends import local_server, open_stores
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.postgres import AGENT
    from hitl_kit.world import World

    server = local_server()
    try:
        stores = open_stores(server.url(AGENT), folder=tempfile.mkdtemp(), durable=False)
        world = World()
        agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
                              **stores.for_agent())
        graph = bare_postgres_graph(stores.checkpointer.conn)
        cycle = cycles(agent, graph)

        def decide_listed(i):
            """What a worker of hitl_kit.workers does for each request it lists."""
            if i < 0:
                return
            for n in range(64):
                agent.start(TASK, f"w{i}-{n}")
            for request in agent.ledger.index.listed():
                agent.ledger.turns.of(request.thread_id)
                agent.resume(request.thread_id, {request.interrupt_id: {
                    "kind": "approve", "approver": "ana", "fingerprint": request.fingerprint}})

        worker = profiled(decide_listed, 1, "PostgreSQL: 64 requests started, then listed and "
                          "decided as a worker does")
        took = interleaved(cycle, 20, 3)
        text = (f"PostgreSQL gated cycle: kit {took['kit'] * 1e3:.1f} ms, bare graph "
                f"{took['bare'] * 1e3:.1f} ms ({took['kit'] / took['bare']:.2f}x)\n\n")
        text += statements(server, agent, graph) + "\n"
        text += profiled(cycle["kit"], 100, "PostgreSQL gated approve cycle", 40) + "\n" + worker
        (OUT / "cycle_postgres.txt").write_text(text)
        stores.close()
    finally:
        server.stop()


def statements(server, agent, graph) -> str:
    """The statements of 10 starts, 10 resumes, 10 bare pauses and 10 bare resumes, from the
    server's log (log_statement = all), per operation."""
    from langgraph.types import Command

    from hitl_kit.postgres import connect

    count = 10
    with connect(server.url("postgres")) as admin:
        admin.execute("ALTER SYSTEM SET log_statement = 'all'")
        admin.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        ids: dict[str, str] = {}
        steps = {
            "kit start": lambda i: agent.start(TASK, f"s{i}"),
            "(the ids, not counted)": lambda i: ids.update(
                {f"s{i}": agent.pending(f"s{i}")[0].interrupt_id}),
            "kit resume, keyed as a worker sends it": lambda i: agent.resume(f"s{i}", {
                ids[f"s{i}"]: {"kind": "approve", "approver": "ana"}}),
            "bare start": lambda i: graph.invoke({}, {"configurable": {"thread_id": f"t{i}"}},
                                                 durability="sync"),
            "bare resume": lambda i: graph.invoke(Command(resume="ok"), {"configurable": {
                "thread_id": f"t{i}"}}, durability="sync")}
        for n, work in enumerate(steps.values()):
            admin.execute(f"SELECT 'mark-{n}'")
            for i in range(count):
                work(i)
        admin.execute(f"SELECT 'mark-{len(steps)}'")
        admin.execute("ALTER SYSTEM RESET log_statement")
        admin.execute("SELECT pg_reload_conf()")
    log = "".join(Path(f).read_text(errors="replace")
                  for f in sorted(glob.glob(str(server.folder / "**" / "log*"), recursive=True))
                  if Path(f).is_file())
    parts = re.split(r"mark-\d+", log)[1:len(steps) + 1]
    text = ["Statements per operation (server log), by their first 60 characters:"]
    for name, part in zip(steps, parts, strict=True):
        if name.startswith("("):
            continue
        found = [" ".join(m.split()) for m in re.findall(
            r"LOG:  (?:statement|execute [^:]*): (.*?)(?=\n\d{4}-\d\d-\d\d |\Z)", part, re.S)]
        found = [f for f in found if not f.startswith("SELECT 'mark")]
        shapes = Counter(re.sub(r"'[^']*'", "'..'", f)[:60] for f in found)
        text.append(f"\n{name}: {len(found) / count:.1f} statements, "
                    f"{sum(f.startswith('BEGIN') for f in found) / count:.1f} BEGIN")
        text += [f"  {n / count:5.1f}  {shape}" for shape, n in shapes.most_common(25)]
    return "\n".join(text)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    sys.setrecursionlimit(10_000)
    sqlite_profiles()
    if "postgres" in sys.argv[1:]:
        postgres_profiles()
    print(f"written to {OUT}")
