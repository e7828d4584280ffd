"""The fault suite: a killed process, tampering deep in a long trail, and malformed input of every
shape. Counts are printed at the end of the run (see ``fault_counts``). The killed process and
the tamper matrix run on each backend (SQLite and PostgreSQL)."""

import hashlib
import json
import os
import signal
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitl_kit.approval import ApprovalAgent, ApprovalError
from hitl_kit.audit import COLUMNS, AuditTrail, read_head
from hitl_kit.backends import open_stores
from hitl_kit.contract import as_decision
from hitl_kit.llm import OfflineChatModel
from hitl_kit.policy import ActionPolicy, PolicyTableError
from hitl_kit.postgres import connect
from hitl_kit.world import World

from .conftest import BACKENDS, PostgresBackend, SqliteBackend, forked, rapid_switching, tally
from .test_audit import proposal, resolution

# -- a process killed while an approval is pending -------------------------------------------------

def agent_on(url: str, folder: str) -> tuple[World, ApprovalAgent]:
    world = World(folder + "/world.db")
    stores = open_stores(url, folder=folder)
    return world, ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
                                **stores.for_agent())


def start_and_wait_to_be_killed(url: str, folder: str, tell) -> None:
    _, agent = agent_on(url, folder)
    outcome = agent.start("Delete the test customer record", "killed-1")
    tell(json.dumps({"paused": outcome.paused}).encode())
    time.sleep(600)  # pending; the test kills us here


def resume_in_a_new_process(url: str, folder: str) -> dict:
    world, agent = agent_on(url, folder)
    pending = agent.pending("killed-1")
    outcome = agent.resume("killed-1", {"kind": "approve", "approver": "ana"})
    return {"found": [p.request.tool for p in pending], "paused": outcome.paused,
            "delete_runs": world.calls["delete_customer"]}


def test_sigkill_while_pending_then_resume_exactly_once(backend, tmp_path, fault_counts):
    url, folder = backend.url(tmp_path), str(tmp_path)
    read_end, write_end = os.pipe()
    starter = os.fork()  # a process of its own (forked after imports), killed while pending
    if starter == 0:
        try:
            os.close(read_end)
            start_and_wait_to_be_killed(url, folder, lambda line: os.write(write_end, line))
        finally:
            os._exit(3)
    os.close(write_end)
    try:
        started = json.loads(os.read(read_end, 4096) or b"{}")
    finally:
        os.close(read_end)
        os.kill(starter, signal.SIGKILL)
        _, status = os.waitpid(starter, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    resumed = forked(lambda: resume_in_a_new_process(url, folder)) if killed else {}
    fault_counts[f"SIGKILL while pending [{backend.name}]: executions after resume"] = \
        resumed.get("delete_runs", 0)
    assert started == {"paused": True} and killed, (started, status)
    assert resumed == {"found": ["delete_customer"], "paused": False, "delete_runs": 1}
    world = World(str(tmp_path / "world.db"))
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]

    head = read_head(tmp_path / "audit.head.json")  # (seq, row_hash): what to keep a copy of
    assert backend.verify_outside(tmp_path, head=head).ok
    trail = backend.audit(tmp_path)
    keys = [r["event_key"] for r in trail.rows()]
    assert len(keys) == len(set(keys)) == 4  # find + delete, each proposed and resolved once
    assert [(r["action_type"], r["event"], r["decision"]) for r in trail.rows()] == [
        ("find_customers", "proposed", None), ("find_customers", "resolved", "auto-approved"),
        ("delete_customer", "proposed", None), ("delete_customer", "resolved", "approved")]


# -- the tamper matrix on a 10,000-row trail ------------------------------------------------------

ROWS = 10_000


@pytest.fixture(scope="module")
def long_sqlite_trail(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long-trail")
    trail = AuditTrail(folder / "audit.db", durable=False)
    for n in range(ROWS // 2):
        trail.append(proposal(n))
        trail.append(resolution(n))
    head = trail.head()
    trail.close()
    assert head[0] == ROWS
    return folder, head


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def long_trail(request, long_sqlite_trail, tmp_path_factory):
    """(backend, folder, head): 10,000 rows appended by the SQLite trail; on PostgreSQL the same
    rows, loaded into the trail's table by the administrator (the chain is the same whatever
    stores it)."""
    source, head = long_sqlite_trail
    if request.param == "sqlite":
        yield SqliteBackend(), source, head
        return
    folder = tmp_path_factory.mktemp("long-trail-postgres")
    backend = PostgresBackend(request.getfixturevalue("postgres_server"), folder)
    rows = SqliteBackend().audit_rows(source)
    with connect(backend.admin_url(folder)) as conn, conn.cursor().copy(
            f"COPY audit_log ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(row.values()))
    yield backend, folder, head
    backend.close()


def edit(conn, seq):
    conn.execute("UPDATE audit_log SET session_id = 'someone-else' WHERE seq = ?", (seq,))


def delete(conn, seq):
    conn.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))


def swap(conn, seq):
    conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = ?", (seq,))
    conn.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq, seq + 2))
    conn.execute("UPDATE audit_log SET seq = ? WHERE seq = -1", (seq + 2,))


def forge(conn, seq):
    """Put a made-up row where row ``seq`` was, linked to its predecessor."""
    before = conn.row(seq - 1)
    conn.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    conn.insert({**before, "seq": seq, "event_key": "forged", "prev_hash": before["row_hash"],
                 "row_hash": hashlib.sha256(b"forged").hexdigest()})


def truncate(conn, seq):
    conn.execute("DELETE FROM audit_log WHERE seq >= ?", (seq,))


@pytest.mark.parametrize("tamper", [edit, delete, swap, forge, truncate])
def test_tamper_matrix_on_ten_thousand_rows(long_trail, tmp_path, tamper, fault_counts):
    backend, source, head = long_trail
    target_seq = 7_321
    backend.copy(source, tmp_path)
    try:
        with backend.tamperer(tmp_path) as conn:
            tamper(conn, target_seq)
        result = backend.verify_outside(tmp_path, head=head)
    finally:
        backend.discard(tmp_path)
    detected_here = int(not result.ok and result.first_bad_seq == target_seq)
    fault_counts[f"tamper on {ROWS:,} rows detected at the right row [{backend.name}]: "
                 f"{tamper.__name__}"] = detected_here
    assert not result.ok
    assert result.first_bad_seq == target_seq, result.problem


def test_untouched_long_trail_verifies(long_trail):
    backend, source, head = long_trail
    assert backend.verify_outside(source, head=head).ok


# -- malformed input never executes anything -----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6)


def observe_refusal(call) -> str | None:
    """The refusal's message when ``call`` raised ApprovalError, None when it went through."""
    try:
        call()
    except ApprovalError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def paused():
    """One agent with a delete pending; every malformed decision is thrown at it."""
    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    outcome = agent.start("delete customer 4", "hypothesis")
    return world, agent, outcome.pending[0]


def is_valid_decision(value) -> bool:
    try:
        as_decision(value)
    except ApprovalError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(decision=json_values | st.fixed_dictionaries(
    {"kind": st.sampled_from(["approve", "reject", "edit", "APPROVE", "", "yes"]),
     "approver": st.one_of(st.none(), st.just(""), st.just("   "), st.integers()),
     "args": json_values}))
def test_malformed_decisions_are_refused_and_execute_nothing(paused, decision, fault_counts):
    world, agent, pending = paused
    refusal = observe_refusal(lambda: agent.resume("hypothesis", {pending.interrupt_id: decision}))
    executed = world.calls["delete_customer"]
    still_pending = [p.interrupt_id for p in agent.pending("hypothesis")]
    tally(fault_counts, "malformed decisions", tried=1, refused=refusal is not None,
          **{"executed something": executed > 0})
    assert refusal is not None, f"{decision!r} was taken"
    assert len(refusal) > 15, refusal  # says what is wrong
    assert executed == 0
    assert still_pending == [pending.interrupt_id]


@settings(max_examples=200, deadline=None)
@given(args=st.dictionaries(st.text(max_size=12), json_values, max_size=4))
def test_edits_with_malformed_arguments_are_refused(paused, args, fault_counts):
    world, agent, pending = paused
    if set(args) == {"customer_id"} and type(args["customer_id"]) is int:
        return  # a well-formed edit (strictly an int): not this test's business
    refusal = observe_refusal(lambda: agent.resume("hypothesis", {pending.interrupt_id: {
        "kind": "edit", "approver": "ana", "args": args}}))
    executed = world.calls["delete_customer"]
    tally(fault_counts, "malformed edit arguments", tried=1, refused=refusal is not None,
          **{"executed something": executed > 0})
    assert refusal is not None, f"the edit {args!r} was taken"
    assert "delete_customer" in refusal or "argument" in refusal, refusal
    assert executed == 0


CLASSES = ["fully_reversible", "partially_reversible", "irreversible_low", "irreversible_high"]


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.text(max_size=6), st.sampled_from(CLASSES) | st.text(max_size=6)),
                     max_size=6),
       policies=st.dictionaries(st.sampled_from(CLASSES) | st.text(max_size=6),
                                st.sampled_from(["auto_execute", "auto_with_logging", "soft_gate",
                                                 "hard_gate"]) | st.text(max_size=6),
                                max_size=5))
def test_classification_tables_load_only_when_well_formed(rows, policies, fault_counts):
    names = [name for name, _ in rows]
    well_formed = (all(name.strip() for name in names) and len(set(names)) == len(names)
                   and all(klass in CLASSES for _, klass in rows)
                   and set(policies) == set(CLASSES)
                   and all(p in ("auto_execute", "auto_with_logging", "soft_gate", "hard_gate")
                           for p in policies.values()))
    try:
        table, error = ActionPolicy(rows, policies), None
    except PolicyTableError as exc:
        table, error = None, str(exc)
    tally(fault_counts, "classification tables", tried=1,
          **{"malformed, refused at load": not well_formed and error is not None,
             "malformed, accepted": not well_formed and error is None,
             "well formed, refused": well_formed and error is not None})
    assert (error is None) == well_formed, error or "accepted a malformed table"
    if error is not None:
        assert len(error) > 15
    else:
        assert table.classify("never_listed_" + "x" * 7).policy == "hard_gate"


POLICIES = ["auto_execute", "auto_with_logging", "soft_gate", "hard_gate"]


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=8).filter(str.strip), unique=True, max_size=6),
       data=st.data())
def test_well_formed_tables_load_and_fail_closed(names, data):
    rows = [(name, data.draw(st.sampled_from(CLASSES))) for name in names]
    policies = {klass: data.draw(st.sampled_from(POLICIES)) for klass in CLASSES}
    table = ActionPolicy(rows, policies)
    for name, klass in rows:
        assert table.classify(name).policy == policies[klass]
    assert table.classify("\x00not-in-the-table").policy == "hard_gate"


# -- a click (twice) racing the timeout, 1,000 times -------------------------------------------

RACES = 400  # threads switched every 100 us: the racers interleave inside the code under test


def test_click_double_click_and_timeout_racing_decide_once(tmp_path, fault_counts):
    """Each trial: a timer expires while the approver double-clicks, all three released by one
    barrier; the order the threads start in alternates, since the last to arrive tends to win."""
    import threading

    from hitl_kit.cards import ApprovalCard
    from hitl_kit.timeouts import DECIDED, TIMED_OUT, ApprovalTimer, Deadline

    world = World()
    trail = AuditTrail(tmp_path / "audit.db", durable=False)
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, audit=trail)
    settled = []  # each trial's timer state, as observed
    for trial in range(RACES):
        thread, version = f"race-{trial}", f"7.{trial}"
        pending = agent.start(f"deploy the billing service version {version} to prod",
                              thread).pending[0]
        timer = ApprovalTimer(agent, pending, Deadline(60)).start()
        card = ApprovalCard(agent, thread, pending, approver="ana")
        barrier = threading.Barrier(3)

        def released(action, barrier=barrier):
            barrier.wait()
            action()

        actions = [timer.expire_now, card.approve.click, card.approve.click]
        if trial % 2:
            actions.reverse()
        racers = [threading.Thread(target=released, args=(a,)) for a in actions]
        with rapid_switching():
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(30)
        settled.append(timer.state if timer.wait(60) else "never settled")
    deployed = world.rows("deployments")
    ran = [r for r in trail.rows() if r["event"] == "resolved" and r["outcome"] == "success"]
    versions = [d["version"] for d in deployed]
    counts = {"(with double clicks, 100 us switching): trials run": len(settled),
              "won by the click": settled.count(DECIDED),
              "won by the timeout": settled.count(TIMED_OUT),
              "never settled": settled.count("never settled"),
              "double executions": len(versions) - len(set(versions)),
              "executions": len(deployed), "tool calls": world.calls["deploy_to_prod"],
              "audit rows recording an execution": len(ran),
              "requests resolved in the trail": sum(r["event"] == "resolved"
                                                    for r in trail.rows())}
    for name, count in counts.items():
        fault_counts[f"click-vs-timeout races {name}" if name.startswith("(")
                     else f"click-vs-timeout races: {name}"] = count
    assert counts["never settled"] == 0, "a timer never settled"
    assert counts["double executions"] == 0, "a deploy ran twice"
    assert counts["tool calls"] == counts["executions"] == len(ran) == counts["won by the click"]
    assert counts["requests resolved in the trail"] == len(settled) == RACES
    assert trail.verify().ok
    assert counts["won by the timeout"] > 0 and counts["won by the click"] > 0, counts
