"""The fault suite: a killed process, tampering deep in a long trail, and malformed input of every
shape. Counts are printed at the end of the run (see ``fault_counts``). The killed process and
the tamper matrix run on each backend (SQLite and PostgreSQL)."""

import hashlib
import json
import os
import signal
import sys
import time
from contextlib import contextmanager

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

from .conftest import BACKENDS, PostgresBackend, SqliteBackend, forked
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
        assert json.loads(os.read(read_end, 4096)) == {"paused": True}
    finally:
        os.close(read_end)
        os.kill(starter, signal.SIGKILL)
        _, status = os.waitpid(starter, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    resumed = forked(lambda: resume_in_a_new_process(url, folder))
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
    fault_counts[f"SIGKILL while pending [{backend.name}]: executions after resume"] = \
        resumed["delete_runs"]


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
    with pytest.raises(ApprovalError) as refused:
        agent.resume("hypothesis", {pending.interrupt_id: decision})
    assert len(str(refused.value)) > 15  # says what is wrong
    assert world.calls["delete_customer"] == 0
    assert [p.interrupt_id for p in agent.pending("hypothesis")] == [pending.interrupt_id]
    fault_counts["malformed decisions refused, nothing executed"] = \
        fault_counts.get("malformed decisions refused, nothing executed", 0) + 1


@settings(max_examples=200, deadline=None)
@given(args=st.dictionaries(st.text(max_size=12), json_values, max_size=4))
def test_edits_with_malformed_arguments_are_refused(paused, args, fault_counts):
    world, agent, pending = paused
    if set(args) == {"customer_id"} and type(args["customer_id"]) is int:
        return  # a well-formed edit (strictly an int): not this test's business
    with pytest.raises(ApprovalError, match="delete_customer|argument"):
        agent.resume("hypothesis", {pending.interrupt_id: {"kind": "edit", "approver": "ana",
                                                          "args": args}})
    assert world.calls["delete_customer"] == 0
    fault_counts["malformed edit arguments refused"] = \
        fault_counts.get("malformed edit arguments refused", 0) + 1


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
        table = ActionPolicy(rows, policies)
    except PolicyTableError as error:
        assert not well_formed, f"refused a good table: {error}"
        assert len(str(error)) > 15
        fault_counts["malformed classification tables refused at load"] = \
            fault_counts.get("malformed classification tables refused at load", 0) + 1
        return
    assert well_formed, "accepted a malformed table"
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


@contextmanager
def rapid_switching():
    """Make CPython switch threads every 100 microseconds (default: 5 ms), so the racers
    interleave inside the code under test instead of running one after the other."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def test_click_double_click_and_timeout_racing_decide_once(tmp_path, fault_counts):
    """Each trial: a timer expires while the approver double-clicks, all three released by one
    barrier; the order the threads start in alternates, since the last to arrive tends to win."""
    import threading

    from hitl_kit.cards import ApprovalCard
    from hitl_kit.timeouts import DECIDED, TIMED_OUT, ApprovalTimer, Deadline

    world = World()
    trail = AuditTrail(tmp_path / "audit.db", durable=False)
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, audit=trail)
    outcomes = {TIMED_OUT: 0, DECIDED: 0}
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
        assert timer.wait(30), f"trial {trial}: the timer never settled"
        outcomes[timer.state] += 1
    deployed = world.rows("deployments")
    ran = [r for r in trail.rows() if r["event"] == "resolved" and r["outcome"] == "success"]
    versions = [d["version"] for d in deployed]
    assert len(versions) == len(set(versions)), "a deploy ran twice"
    assert world.calls["deploy_to_prod"] == len(deployed) == len(ran) == outcomes[DECIDED]
    assert sum(r["event"] == "resolved" for r in trail.rows()) == RACES
    assert trail.verify().ok
    assert outcomes[TIMED_OUT] > 0 and outcomes[DECIDED] > 0, outcomes  # both sides won some
    fault_counts["click-vs-timeout races (with double clicks, 100 us switching)"] = RACES
    fault_counts["click-vs-timeout races: won by the click"] = outcomes[DECIDED]
    fault_counts["click-vs-timeout races: won by the timeout"] = outcomes[TIMED_OUT]
    fault_counts["click-vs-timeout races: double executions"] = len(versions) - len(set(versions))
    fault_counts["click-vs-timeout races: executions"] = len(deployed)
    fault_counts["click-vs-timeout races: audit rows recording an execution"] = len(ran)
