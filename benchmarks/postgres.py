"""PostgreSQL rows for benchmarks/run.py, each a ratio against a baseline measured in the same run
on the same server: the same operation with a bare PostgresSaver graph or plain psycopg.

    .venv/bin/python benchmarks/postgres.py            # these rows alone
    .venv/bin/python benchmarks/run.py                 # the whole table, these rows included

The server is a private one (``hitl_kit.postgres.local_server``) with its data on disk and fsync
on, so a commit waits for the disk as it would in production.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from run import median_seconds, table  # benchmarks/run.py, this file's folder

TASK = 'send a reply to thread 3 saying "hi"'  # one soft-gated call, approved (as in run.py)
VERIFY_ROWS = 100_000
REQUESTS = 64  # decided by the eight workers
WORKERS = 8


def row(figure: str, baseline: str, measured: str, value: str) -> dict:
    """A row in run.py's format. No target was set for PostgreSQL: the ratio is the figure."""
    return {"figure": figure, "baseline": baseline, "measured": measured, "value": value,
            "target": "-", "met": True}


# -- the gated cycle ------------------------------------------------------------------------------

def bare_postgres_graph(pool):
    """A two-node graph that pauses with interrupt() and resumes: LangGraph and PostgresSaver
    alone, saving every step as the kit does (durability "sync")."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    from hitl_kit.postgres import postgres_checkpointer

    class State(TypedDict, total=False):
        decision: str

    builder = StateGraph(State)
    builder.add_node("ask", lambda state: {"decision": interrupt("approve?")})
    builder.add_node("act", lambda state: {})
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=postgres_checkpointer(pool))


def bench_cycle(url: str, rounds: int) -> dict:
    from langgraph.types import Command

    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.backends import open_stores
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    stores = open_stores(url)  # no folder: no head file, as run.py's SQLite cycle
    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, **stores.for_agent())
    graph = bare_postgres_graph(stores.checkpointer.conn)

    def kit(i):
        agent.start(TASK, f"kit-{i}")
        agent.resume(f"kit-{i}", {"kind": "approve", "approver": "ana"})

    def bare(i):
        config = {"configurable": {"thread_id": f"bare-{i}"}}
        graph.invoke({}, config, durability="sync")
        graph.invoke(Command(resume="approved"), config, durability="sync")

    bare_s = median_seconds(bare, 20, rounds)
    kit_s = median_seconds(kit, 20, rounds)
    stores.close()
    return row("PostgreSQL: gated approve cycle (plan, classify, pause, resume, execute once, "
               "audit), ledger and trail in the same database",
               f"bare 2-node graph, PostgresSaver, interrupt + resume: {bare_s * 1e3:.1f} ms",
               f"{kit_s * 1e3:.1f} ms", f"{kit_s / bare_s:.2f}x")


# -- the audit trail ------------------------------------------------------------------------------

def audit_entry(i: int) -> dict:
    from datetime import UTC, datetime

    return {"event_key": f"bench:{i}", "session_id": "bench", "action_type": "send_reply",
            "parameters": {"thread_id": 3, "body": "hello"}, "event": "proposed",
            "reversibility_class": "irreversible_low", "proposed_at": datetime.now(UTC)}


def bench_append(server, database: str, rounds: int) -> dict:
    """The kit's append against a plain INSERT + commit of the same row into a table of the
    same shape (columns, CHECKs, indexes): what the kit adds is the normalising, the hash chain
    and the guard's check."""
    import psycopg

    from hitl_kit.audit_chain import COLUMNS, normalize_entry
    from hitl_kit.postgres import AGENT, connect
    from hitl_kit.postgres_audit import PostgresAuditTrail

    url = server.url(AGENT, database)
    with connect(server.url("postgres", database)) as admin:
        admin.execute("CREATE TABLE public.raw_log (LIKE hitl.audit_log INCLUDING ALL)")
    raw = connect(server.url("postgres", database))
    trail = PostgresAuditTrail(url)
    stored = trail.append(audit_entry(-2))  # a stored row: the raw inserts copy it
    insert = (f"INSERT INTO public.raw_log ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join(['%s'] * len(COLUMNS))})")
    normalize_entry(audit_entry(0))

    def raw_insert(i):
        values = {**stored, "seq": i + 10, "event_key": f"r{i}"}
        psycopg.ClientCursor(raw).execute(insert, [values[c] for c in COLUMNS])

    def kit_append(i):
        trail.append(audit_entry(i))

    raw_s = median_seconds(raw_insert, 200, rounds)
    kit_s = median_seconds(kit_append, 200, rounds)
    trail.close()
    raw.close()
    return row("PostgreSQL: audit append, one row per commit, hash chain, as the INSERT-only role",
               "plain psycopg INSERT + commit of the same row into a table of the same shape: "
               f"{1 / raw_s:,.0f} rows/s", f"{1 / kit_s:,.0f} rows/s",
               f"{raw_s / kit_s:.2f}x the raw rate")


def bench_verify(server, rounds: int) -> dict:
    """100,000 rows chained by the kit's own code and loaded with COPY (appending them one by
    one would take minutes); then the auditor's verify against a plain SELECT of them."""
    from hitl_kit.audit_chain import COLUMNS, GENESIS_HASH, compute_row_hash, normalize_entry
    from hitl_kit.postgres import AUDITOR, connect
    from hitl_kit.postgres_audit import SELECT_ROWS_SQL, verify_database

    server.create_database("verify_bench", template=server.database)
    prev_hash, rows = GENESIS_HASH, []
    template = normalize_entry({**audit_entry(0), "recorded_at": audit_entry(0)["proposed_at"]})
    for seq in range(1, VERIFY_ROWS + 1):
        stored = {**template, "event_key": f"bench:{seq}", "seq": seq, "prev_hash": prev_hash}
        stored["row_hash"] = prev_hash = compute_row_hash(stored)
        rows.append(tuple(stored[name] for name in COLUMNS))
    with connect(server.url("postgres", "verify_bench")) as admin, admin.cursor().copy(
            f"COPY hitl.audit_log ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for values in rows:
            copy.write_row(values)
    auditor = server.url(AUDITOR, "verify_bench")

    def plain_select(_):
        with connect(auditor) as conn:
            assert len(conn.execute(SELECT_ROWS_SQL).fetchall()) == VERIFY_ROWS

    def verify(_):
        assert verify_database(auditor).ok

    select_s = median_seconds(plain_select, 1, rounds)
    verify_s = median_seconds(verify, 1, rounds)
    server.drop_database("verify_bench")
    return row(f"PostgreSQL: verify the chain of {VERIFY_ROWS:,} rows from the read-only role "
               "(the server hashes them)",
               f"plain SELECT of the rows with psycopg: {select_s * 1e3:.0f} ms",
               f"{verify_s * 1e3:.0f} ms", f"{verify_s / select_s:.2f}x")


# -- eight workers --------------------------------------------------------------------------------

def bench_workers(url: str, folder: Path) -> dict:
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.backends import open_stores
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.postgres import open_pool
    from hitl_kit.workers import decide_in_workers
    from hitl_kit.world import World

    threads = [f"w{n}" for n in range(REQUESTS)]
    with open_stores(url, folder=folder, durable=False) as stores:
        world = World(str(folder / "world.db"))
        agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
                              **stores.for_agent())
        for thread_id in threads:
            agent.start(TASK, thread_id)
        world.close()
    _, kit_s = decide_in_workers(url, folder, threads, workers=WORKERS,
                                 answer=lambda n, p: {"kind": "approve", "approver": f"w{n}"})

    from psycopg.rows import dict_row

    pool = open_pool(url, name="bench", prepare_threshold=0, row_factory=dict_row)
    graph = bare_postgres_graph(pool)
    bare_threads = [f"bare-w{n}" for n in range(REQUESTS)]
    for thread_id in bare_threads:
        graph.invoke({}, {"configurable": {"thread_id": thread_id}}, durability="sync")
    pool.close()
    bare_s = _bare_workers(url, bare_threads)
    return row(f"PostgreSQL: {REQUESTS} approvals decided by {WORKERS} worker processes at once, "
               "each racing for every request",
               f"{WORKERS} processes resuming bare PostgresSaver graphs, each its own share: "
               f"{REQUESTS / bare_s:,.0f} decisions/s", f"{REQUESTS / kit_s:,.0f} decisions/s",
               f"{bare_s / kit_s:.2f}x the bare rate")


def _bare_workers(url: str, threads: list[str]) -> float:
    """Seconds for ``WORKERS`` forked processes, each with its own pool, to resume their share of
    the paused bare graphs (timed from the start signal)."""
    import gc

    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pids = []
    for n in range(WORKERS):
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                from langgraph.types import Command
                from psycopg.rows import dict_row

                from hitl_kit.postgres import open_pool

                signal.alarm(300)
                pool = open_pool(url, name="bench", prepare_threshold=0, row_factory=dict_row)
                graph = bare_postgres_graph(pool)
                os.write(ready_write, b"r")
                os.read(go_read, 1)
                for thread_id in threads[n::WORKERS]:
                    graph.invoke(Command(resume="approved"),
                                 {"configurable": {"thread_id": thread_id}}, durability="sync")
                pool.close()
            except BaseException:
                code = 3
            os._exit(code)
        gc.unfreeze()
        pids.append(pid)
    for _ in range(WORKERS):
        os.read(ready_read, 1)
    start = time.perf_counter()
    os.write(go_write, b"g" * WORKERS)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    took = time.perf_counter() - start
    for fd in (go_read, go_write, ready_read, ready_write):
        os.close(fd)
    assert codes == [0] * WORKERS, f"a bare worker failed: {codes}"
    return took


def bench_postgres(rounds: int = 5) -> list[dict]:
    """The PostgreSQL rows for run.py, on a private server started and stopped here."""
    from hitl_kit.postgres import AGENT, local_server

    folder = Path(tempfile.mkdtemp(prefix="hitl-bench-pg-"))  # on disk: fsync means something
    server = local_server(folder / "server")
    try:
        def fresh(name: str) -> str:  # each figure on a database of its own
            return server.create_database(name, template=server.database)

        return [bench_cycle(server.url(AGENT, fresh("cycle")), rounds),
                bench_append(server, fresh("append"), rounds),
                bench_verify(server, rounds),
                bench_workers(server.url(AGENT, fresh("workers")), folder)]
    finally:
        server.stop()


if __name__ == "__main__":
    print(table(bench_postgres(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
