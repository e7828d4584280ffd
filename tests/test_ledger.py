"""The decision ledger's contract, run on every engine (SQLite and PostgreSQL, through the
``backend`` fixture): each of its four stores (claims, turns, the pending index with deadlines
and escalations, the run journal) and the steps that span them, as one suite."""

import subprocess
import sys
import time

import pytest

from hitl_kit import ledger as ledger_module
from hitl_kit.backends import durable_checkpointer, ledger_for
from hitl_kit.contract import ApprovalRequest, Decision, Pending
from hitl_kit.ledger import Claim, StaleTurn

from .conftest import ROOT
from .test_decisions import race


def claim(key="k", approver="ana", thread="t", fingerprint="f"):
    return Claim(thread, key, fingerprint, Decision(kind="approve", approver=approver))


def pending(thread="t", interrupt="i1", tool="delete_customer", revision=0) -> Pending:
    request = ApprovalRequest(task="tidy", tool=tool, args={"customer_id": 3},
                              tool_call_id=f"c-{interrupt}", revision=revision,
                              proposed_at="2026-12-06T10:00:00+00:00")
    return Pending(thread_id=thread, interrupt_id=interrupt, request=request,
                   asked_at="2026-12-06T10:00:00+00:00")


# -- the ledger -----------------------------------------------------------------------------------

def test_first_claim_wins_and_the_second_learns_who_won(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    assert ledger.claim([claim(approver="ana")]) is None
    earlier = ledger.claim([claim(approver="bo")])
    assert earlier.decision.approver == "ana" and earlier.decision.kind == "approve"
    assert [c.decision.approver for c in ledger.claims.listed()] == ["ana"]


def test_claims_are_all_or_none(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    ledger.claim([claim("a")])
    assert ledger.claim([claim("b", "bo"), claim("a", "bo")]).decision.approver == "ana"
    assert ledger.claims.winner("t", "b") is None  # b was not recorded although it came first
    assert ledger.claim([claim("b", "bo")]) is None


def test_a_new_fingerprint_is_a_new_request(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    ledger.claim([claim(fingerprint="v1")])
    assert ledger.claim([claim(fingerprint="v2", approver="bo")]) is None
    assert ledger.claims.winner("t", fingerprint="v1").decision.approver == "ana"
    assert ledger.claims.winner("t", "k", "v2").decision.approver == "bo"
    with pytest.raises(ValueError, match="name the request"):
        ledger.claims.winner("t")


def test_withdrawn_claims_free_the_request(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    ledger.claim([claim()])
    ledger.claims.withdraw([claim()])
    assert ledger.claims.winner("t", "k") is None and ledger.claim([claim(approver="bo")]) is None


def test_claims_race_across_connections_to_one_file(backend, tmp_path):
    ledgers = [backend.ledger(tmp_path) for _ in range(3)]
    for key in range(40):
        results = race(*[lambda lg=lg, n=n, k=str(key): lg.claim([claim(k, f"approver{n}")])
                         for n, lg in enumerate(ledgers * 2)])
        assert sum(r is None for r in results) == 1, results
    assert len(backend.ledger(tmp_path).claims.listed()) == 40


CLAIM_SCRIPT = """
import sys, time
from pathlib import Path
from hitl_kit.contract import Decision
from hitl_kit.ledger import Claim, DecisionLedger
from hitl_kit.postgres import PostgresEngine
url, me, folder = sys.argv[1:4]
ledger = DecisionLedger(PostgresEngine(url) if url != "sqlite" else folder + "/checkpoints.db")
Path(folder, me).touch()
while len(list(Path(folder).glob("ready-*"))) < 3:
    time.sleep(0.001)
mine = Decision(kind="approve", approver=me)
won = [k for k in range(150) if ledger.claim([Claim("t", str(k), "f", mine)]) is None]
print(len(won))
"""


def test_claims_race_across_processes(backend, tmp_path):
    backend.ledger(tmp_path).close()  # created before the race
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_SCRIPT, backend.url(tmp_path),
                               f"ready-{n}", str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
             for n in range(3)]
    won = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(won) == 150
    winners = backend.ledger(tmp_path).claims.listed()
    assert len(winners) == 150 and len({c.interrupt_id for c in winners}) == 150


def test_one_turn_per_thread_at_a_time(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    inside, most = [], []

    def take(thread_id):
        with ledger.turn(thread_id):
            inside.append(thread_id)
            most.append(inside.count("t"))
            time.sleep(0.005)
            inside.remove(thread_id)

    race(*[lambda: take("t")] * 6)
    assert max(most) == 1
    with ledger.turn("t"), ledger.turn("other"):  # another thread's turn is independent
        pass


def test_a_stale_turn_is_taken_over_and_a_busy_one_times_out(backend, tmp_path, monkeypatch):
    ledger = backend.ledger(tmp_path)
    monkeypatch.setattr(ledger_module, "TURN_LEASE_S", -1.0)  # every lease has already ended
    with ledger.turn("t"), ledger.turn("t"):  # a crashed holder does not block forever
        pass
    monkeypatch.setattr(ledger_module, "TURN_LEASE_S", 60.0)
    monkeypatch.setattr(ledger_module, "TURN_WAIT_S", 0.05)
    with ledger.turn("t"), pytest.raises(TimeoutError, match="busy"), ledger.turn("t"):
        pass


def test_ledger_for_uses_the_checkpointers_file(tmp_path):
    path = tmp_path / "checkpoints.db"
    ledger = ledger_for(durable_checkpointer(str(path)))
    assert ledger.where == str(path)
    assert ledger_for(None).where == ":memory:"


def test_ledger_for_shares_the_checkpointers_database(backend, tmp_path):
    ledger = ledger_for(backend.checkpointer(tmp_path))
    try:
        assert ledger.claim([claim(approver="ana")]) is None
        other = backend.ledger(tmp_path)  # another connection
        assert other.claims.winner("t", "k").decision.approver == "ana"
    finally:
        ledger.close()


# -- the pending index ----------------------------------------------------------------------------

def test_the_index_holds_exactly_what_is_pending_and_its_requests_whole(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    first, second = pending(interrupt="i1"), pending(interrupt="i2", tool="delete_thread")
    ledger.index.sync("t", [first, second])
    ledger.index.sync("u", [pending(thread="u")])
    assert [p.key for p in ledger.index.listed("t")] == [first.key, second.key]
    assert ledger.index.listed("t")[0].request == first.request  # the typed request, whole
    edited = pending(interrupt="i3", revision=1)
    ledger.index.sync("t", [second, edited])  # the first was answered, the edit asks anew
    assert {p.key for p in ledger.index.listed("t")} == {second.key, edited.key}
    assert {p.thread_id for p in backend.ledger(tmp_path).index.listed()} == {"t", "u"}


def test_a_deadline_is_stored_once_and_never_pushed_back(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    waiting = pending()
    ledger.index.sync("t", [waiting])
    assert ledger.index.set_deadline(waiting.key, 100.0, only_if_unset=True) == 100.0
    assert ledger.index.set_deadline(waiting.key, 500.0, only_if_unset=True) == 100.0
    assert ledger.index.set_deadline(waiting.key, 200.0, 1) == 200.0  # an escalation moves it
    [stored] = backend.ledger(tmp_path).index.listed("t")
    assert (stored.deadline_at, stored.deadline_stage) == (200.0, 1)
    ledger.index.sync("t", [])
    assert ledger.index.set_deadline(waiting.key, 300.0) is None  # not pending any more


def test_an_escalation_is_recorded_only_while_undecided(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    assert ledger.index.escalate(("t", "k", "f"), "oncall", "nobody decided")
    assert ledger.index.escalate(("t", "k", "f"), "oncall", "again")  # recorded once
    [escalation] = ledger.index.escalations("t")
    assert (escalation.escalated_to, escalation.reason) == ("oncall", "nobody decided")
    ledger.claim([claim()])
    assert not ledger.index.escalate(("t", "k", "f"), "manager", "too late")
    assert len(ledger.index.escalations()) == 1


# -- two people -----------------------------------------------------------------------------------

def test_two_people_complete_a_request_and_one_person_counts_once(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    key = ("t", "k", "f")
    ana, again, di = claim(approver="ana"), claim(approver="ANA"), claim(approver="di")
    assert ledger.approve_with(ana, 2, "h1")[0] == "partial"
    assert ledger.approve_with(again, 2, "h1")[0] == "again"
    state, complete = ledger.approve_with(di, 2, "h2")
    assert state == "complete"
    assert [a.approver for a in complete.decision.approvals] == ["ana", "di"]
    assert ledger.claims.winner(*key).decision == complete.decision  # the approvals are kept
    assert ledger.turns.of("t").holder == "h2"
    assert ledger.approve_with(claim(approver="cy"), 2, "h3")[0] == "decided"


def test_one_person_counts_once_in_a_spelling_alike_only_in_capitals(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    assert ledger.approve_with(claim(approver="Tom"), 2, "h1")[0] == "partial"
    state, again = ledger.approve_with(claim(approver="\u0422\u041e\u041c"), 2, "h1")  # ТОМ
    assert (state, again.approver) == ("again", "Tom")


# -- the run journal ------------------------------------------------------------------------------

def test_the_journal_records_a_start_then_the_first_end_only(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    assert ledger.journal.record("t", "c1") is None
    ledger.journal.started("t", "c1", "deploy_to_prod")
    started = ledger.journal.record("t", "c1")
    assert (started.tool, started.finished) == ("deploy_to_prod", False)
    ledger.journal.finished("t", "c1", "deploy_to_prod", "done", False, "2026-12-06T10:00:00")
    ledger.journal.finished("t", "c1", "deploy_to_prod", "again", True, "2026-12-06T10:00:01")
    ended = backend.ledger(tmp_path).journal.record("t", "c1")
    assert (ended.finished, ended.result, ended.is_error) == (True, "done", False)
    ledger.journal.finished("t:c", "1", "deploy_to_prod", "other thread", False, None)
    assert ledger.journal.record("t", "c1").result == "done"  # keys are pairs, not "t:c1"


def test_a_file_from_an_earlier_ledger_is_refused_not_mixed(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE hitl_claims (thread_id TEXT, interrupt_id TEXT, "
                     "fingerprint TEXT, kind TEXT, approver TEXT, PRIMARY KEY (thread_id, "
                     "interrupt_id, fingerprint))")
    with pytest.raises(RuntimeError, match="from an earlier hitl-kit"):
        ledger_module.DecisionLedger(str(path))


def test_a_stale_turn_is_recovery_s_to_take(backend, tmp_path):
    ledger = backend.ledger(tmp_path)
    holder = ledger.take_turn("t")
    ledger.turns.give_back("t", holder, stopped=True)
    assert [t.thread_id for t in ledger.turns.stale()] == ["t"]
    with pytest.raises(StaleTurn, match="recover it first"):
        ledger.take_turn("t")
    ledger.take_turn("t", take_stale=True)
    assert ledger.turns.stale() == []
