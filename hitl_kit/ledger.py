"""The decision ledger: for each pending request exactly one decision wins, and it is applied.

LangGraph does not serialise resumes: two ``Command(resume=...)`` sent to one paused thread at
the same moment both run the next node, so a click racing a timeout executes the action twice.
The ledger is the one judge of who decided. It is four small stores, each a few SQL statements
that SQLite and PostgreSQL both speak, composed in one transaction where a step needs two:

* ``Claims``: one row per decided request, keyed by (thread, interrupt id, fingerprint of what
  was shown), holding the ``Decision`` itself; the first claim wins. A claim stays unapplied
  until the graph has taken it, so after a crash ``hitl_kit.recovery`` applies it: neither lost
  nor replaced. Partial approvals of a two-person request wait here too.
* ``Turns``: one resume per thread at a time, as a lease, taken over when its holder is gone.
* ``PendingIndex``: what is pending, with deadlines and escalations, kept in step with the
  checkpointer by the agent, so an inbox lists 1,000 requests with one query and a deadline
  survives a restart.
* ``RunJournal``: each call's run recorded as started, then finished with its result, so a
  re-run of ``execute`` after a crash returns the result instead of acting again.

An ``Engine`` is what differs between databases: how to connect, what a write transaction
locks (SQLite: the file, ``BEGIN IMMEDIATE``; PostgreSQL: the thread, an advisory lock), the
column types. ``hitl_kit.sqlite.SqliteEngine`` and ``hitl_kit.postgres.PostgresEngine``; one
contract test suite (``tests/test_ledger.py``) runs every store on both.

    >>> from hitl_kit.contract import Decision
    >>> ledger = DecisionLedger()
    >>> ana = Decision(kind="approve", approver="ana")
    >>> ledger.claim([Claim("t1", "i1", "f1", ana)]) is None  # won
    True
    >>> ledger.claim([Claim("t1", "i1", "f1", ana.model_copy(update={"approver": "bo"}))]
    ...              ).decision.approver  # told who won
    'ana'
    >>> [c.decision.describe() for c in ledger.claims.listed("t1")]
    ['ana (approved)']

Limits: a turn is a lease (``TURN_LEASE_S``), taken over when it ends or when its holder's
process is gone (same host); a resume that runs longer than the lease is not renewed.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from hitl_kit import identity
from hitl_kit.contract import Approval, ApprovalRequest, Decision, Pending
from hitl_kit.sqlite import SqliteEngine

TURN_LEASE_S = 60.0  # a turn held longer than this (a crashed process) may be taken over
TURN_WAIT_S = 75.0  # how long a resume waits for its turn before giving up
TURN_POLL_S = 0.002
HOST = socket.gethostname()
_BUSY = object()  # an attempt found the thread's turn held by a live resume: wait, try again

Key = tuple[str, str, str]  # (thread, interrupt id, fingerprint): a request exactly as shown

# The tables, once for both engines: (name, columns with portable types, primary key).
TABLES: tuple[tuple[str, str, str], ...] = (
    ("hitl_requests", "thread_id text, interrupt_id text, fingerprint text, request text, "
     "asked_at text, deadline_at real NULL, deadline_stage int DEFAULT 0",
     "thread_id, interrupt_id, fingerprint"),
    ("hitl_claims", "thread_id text, interrupt_id text, fingerprint text, decision text, "
     "decided_at text, applied int DEFAULT 0", "thread_id, interrupt_id, fingerprint"),
    ("hitl_approvals", "thread_id text, interrupt_id text, fingerprint text, person text, "
     "approval text", "thread_id, interrupt_id, fingerprint, person"),
    ("hitl_escalations", "thread_id text, interrupt_id text, fingerprint text, "
     "escalated_to text, reason text, escalated_at text",
     "thread_id, interrupt_id, fingerprint, escalated_to"),
    ("hitl_turns", "thread_id text, holder text, host text, pid int, lease_ends real",
     "thread_id"),
    ("hitl_runs", "thread_id text, call_id text, tool text, finished int DEFAULT 0, "
     "result text NULL, is_error int DEFAULT 0, finished_at text NULL, why_not text DEFAULT ''",
     "thread_id, call_id"),
)


def table_sql(table: tuple[str, str, str], types: dict[str, str], suffix: str = "") -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one of ``TABLES`` in an engine's own types: each
    column NOT NULL unless marked NULL."""
    name, columns, key = table
    rendered = []
    for column in columns.split(", "):
        column_name, kind, *rest = column.split()
        null = "" if rest[:1] == ["NULL"] else " NOT NULL"
        default = " " + " ".join(rest) if rest and rest[0] == "DEFAULT" else ""
        rendered.append(f"{column_name} {types[kind]}{null}{default}")
    return (f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(rendered)}, "
            f"PRIMARY KEY ({key})){suffix}")


def column_names(table: tuple[str, str, str]) -> list[str]:
    return [column.split()[0] for column in table[1].split(", ")]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Engine(Protocol):
    """One database as the stores use it: ``?`` placeholders, rows as tuples."""

    where: str  # the file or server, for messages
    TYPES: dict[str, str]  # the portable column types of ``TABLES`` in this database's words
    TABLE_SUFFIX: str

    def create(self, statements: list[str], columns: dict[str, list[str]]) -> None:
        """Make sure the tables exist, laid out as ``columns`` says."""

    def transaction(self, thread_id: str | None = None) -> AbstractContextManager[Any]:
        """A write transaction; serialises at least every writer of ``thread_id``."""

    def reading(self) -> AbstractContextManager[Any]:
        """A connection outside any transaction: to read, or to write with one statement (which
        commits by itself)."""

    def close(self) -> None: ...


# -- records --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One decision on one shown request, as the ledger keeps it."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    decision: Decision
    decided_at: str = field(default_factory=now_iso)
    applied: bool = False  # the graph has taken this decision

    @property
    def key(self) -> Key:
        return self.thread_id, self.interrupt_id, self.fingerprint

    def describe(self) -> str:
        """'ana (approved: fine) via slack at 2026-12-06 10:00:00 UTC'."""
        when = datetime.fromisoformat(self.decided_at).astimezone(UTC)
        return (f"{self.decision.describe()} via {self.decision.channel} at "
                f"{when:%Y-%m-%d %H:%M:%S} UTC")


@dataclass(frozen=True)
class Escalation:
    """A pending request handed to another approver because nobody decided in time."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    escalated_to: str
    reason: str
    escalated_at: str


@dataclass(frozen=True)
class RunRecord:
    """What the journal knows of one call's execution."""

    thread_id: str
    call_id: str
    tool: str
    finished: bool
    result: str | None
    is_error: bool
    finished_at: str | None
    why_not: str


@dataclass(frozen=True)
class Turn:
    """Who holds a thread's turn; ``stale`` when the lease ended or its process is gone."""

    thread_id: str
    holder: str
    host: str
    pid: int
    lease_ends: float

    @property
    def stale(self) -> bool:
        return self.lease_ends <= time.time() or (self.host == HOST and not _alive(self.pid))


class StaleTurn(RuntimeError):
    """The thread's turn is held by a process that is gone: it was left mid-resume and must be
    recovered (``hitl_kit.recovery``) before anything else resumes it."""

    def __init__(self, turn: Turn):
        self.turn = turn
        super().__init__(f"thread {turn.thread_id!r} was left mid-resume by process {turn.pid} "
                         f"on {turn.host}, which is gone; recover it first")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the four stores ------------------------------------------------------------------------------

class Store:
    """One of the ledger's stores on an engine. Every method runs inside ``conn`` when it is given
    (a step of a larger transaction), else in a transaction of its own, or, to read or to write
    one statement, on a connection outside any transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def _in(self, conn, write_for: str | None = None, *, write: bool = False) -> Iterator[Any]:
        if conn is not None:
            yield conn
        elif write or write_for is not None:
            with self.engine.transaction(write_for) as conn:
                yield conn
        else:
            with self.engine.reading() as conn:
                yield conn


class Claims(Store):
    """Who decided each request (the first claim wins), and partial approvals."""

    def winner(self, thread_id: str, interrupt_id: str | None = None,
               fingerprint: str | None = None, conn=None) -> Claim | None:
        """The claim that decided a request, or None. Name it by interrupt id, fingerprint or
        both."""
        if interrupt_id is None and fingerprint is None:
            raise ValueError("name the request: an interrupt id, a fingerprint, or both")
        with self._in(conn) as conn:
            row = conn.execute(_WINNER_SQL, (thread_id, interrupt_id, interrupt_id, fingerprint,
                                             fingerprint)).fetchone()
        return None if row is None else _claim(row)

    def listed(self, thread_id: str | None = None, conn=None) -> list[Claim]:
        """Every decision recorded (for one thread), oldest first."""
        with self._in(conn) as conn:
            rows = conn.execute(
                "SELECT thread_id, interrupt_id, fingerprint, decision, decided_at, applied "
                "FROM hitl_claims WHERE CAST(? AS TEXT) IS NULL OR thread_id = ? "
                "ORDER BY decided_at, thread_id, interrupt_id", (thread_id, thread_id)).fetchall()
        return [_claim(row) for row in rows]

    def insert(self, claims: list[Claim], conn=None) -> None:
        with self._in(conn, write=True) as conn:
            conn.executemany(
                "INSERT INTO hitl_claims (thread_id, interrupt_id, fingerprint, decision, "
                "decided_at, applied) VALUES (?, ?, ?, ?, ?, 0)",
                [(*c.key, c.decision.model_dump_json(), c.decided_at) for c in claims])

    def mark_applied(self, keys: list[Key], conn=None) -> None:
        with self._in(conn, write=True) as conn:
            conn.executemany("UPDATE hitl_claims SET applied = 1 WHERE thread_id = ? AND "
                             "interrupt_id = ? AND fingerprint = ?", keys)

    def withdraw(self, claims: list[Claim], conn=None) -> None:
        """Forget claims whose decision never reached the graph (the resume failed)."""
        with self._in(conn, write=True) as conn:
            conn.executemany("DELETE FROM hitl_claims WHERE thread_id = ? AND interrupt_id = ? "
                             "AND fingerprint = ?", [c.key for c in claims])

    def approvals(self, key: Key, conn=None) -> list[Approval]:
        """The approvals recorded so far for a request that needs several, oldest first."""
        with self._in(conn) as conn:
            rows = conn.execute("SELECT approval FROM hitl_approvals WHERE thread_id = ? AND "
                                "interrupt_id = ? AND fingerprint = ?", key).fetchall()
        return sorted((Approval.model_validate_json(r[0]) for r in rows),
                      key=lambda a: a.approved_at)

    def add_approval(self, key: Key, approval: Approval, conn=None) -> None:
        with self._in(conn, key[0]) as conn:
            conn.execute("INSERT INTO hitl_approvals VALUES (?, ?, ?, ?, ?)",
                         (*key, identity.person_key(approval.approver),
                          approval.model_dump_json()))


# The claim that decided a request named by interrupt id, fingerprint or both: the newest.
_WINNER_SQL = ("SELECT thread_id, interrupt_id, fingerprint, decision, decided_at, applied "
               "FROM hitl_claims WHERE thread_id = ? "
               "AND (CAST(? AS TEXT) IS NULL OR interrupt_id = ?) "
               "AND (CAST(? AS TEXT) IS NULL OR fingerprint = ?) "
               "ORDER BY decided_at DESC LIMIT 1")


def _claim(row) -> Claim:
    return Claim(row[0], row[1], row[2], Decision.model_validate_json(row[3]), row[4],
                 bool(row[5]))


class Turns(Store):
    """One resume per thread at a time: a lease in the database, shared by every process."""

    def of(self, thread_id: str, conn=None) -> Turn | None:
        """Who holds the thread's turn, or None."""
        with self._in(conn) as conn:
            row = conn.execute("SELECT thread_id, holder, host, pid, lease_ends FROM hitl_turns "
                               "WHERE thread_id = ?", (thread_id,)).fetchone()
        return None if row is None else Turn(*row)

    def take(self, thread_id: str, holder: str, *, take_stale: bool, conn=None) -> bool:
        """True when taken; False when a live resume holds it; ``StaleTurn`` when a dead one
        does, unless ``take_stale`` (recovery)."""
        with self._in(conn, thread_id) as conn:
            turn = self.of(thread_id, conn)
            if turn is not None:
                if not turn.stale:
                    return False
                if not take_stale:
                    raise StaleTurn(turn)
            conn.execute("INSERT INTO hitl_turns VALUES (?, ?, ?, ?, ?) ON CONFLICT (thread_id) "
                         "DO UPDATE SET holder = excluded.holder, host = excluded.host, "
                         "pid = excluded.pid, lease_ends = excluded.lease_ends",
                         (thread_id, holder, HOST, os.getpid(), time.time() + TURN_LEASE_S))
        return True

    def give_back(self, thread_id: str, holder: str, *, stopped: bool, conn=None) -> None:
        """Give the turn back; ``stopped`` leaves it behind as stale, for recovery to find."""
        with self._in(conn, thread_id) as conn:
            if stopped:
                conn.execute("UPDATE hitl_turns SET lease_ends = 0 WHERE thread_id = ? AND "
                             "holder = ?", (thread_id, holder))
            else:
                conn.execute("DELETE FROM hitl_turns WHERE thread_id = ? AND holder = ?",
                             (thread_id, holder))

    def stale(self, conn=None) -> list[Turn]:
        """Turns whose holder is gone: each thread was left mid-resume by a crash."""
        with self._in(conn) as conn:
            rows = conn.execute("SELECT thread_id, holder, host, pid, lease_ends FROM hitl_turns")
            return [t for t in (Turn(*r) for r in rows.fetchall()) if t.stale]


class PendingIndex(Store):
    """What is pending, with deadlines and escalations, in step with the checkpointer."""

    def sync(self, thread_id: str, pending: Iterable[Pending], conn=None) -> None:
        """Make the index hold exactly these pending requests for the thread."""
        pending = list(pending)
        keep = {p.key[1:] for p in pending}
        with self._in(conn, thread_id) as conn:
            if not pending:  # the usual end of a resume: one statement, nothing to read
                conn.execute("DELETE FROM hitl_requests WHERE thread_id = ?", (thread_id,))
                return
            have = set(map(tuple, conn.execute("SELECT interrupt_id, fingerprint FROM "
                                               "hitl_requests WHERE thread_id = ?",
                                               (thread_id,)).fetchall()))
            conn.executemany("DELETE FROM hitl_requests WHERE thread_id = ? AND interrupt_id = ?"
                             " AND fingerprint = ?", [(thread_id, *k) for k in have - keep])
            conn.executemany(
                "INSERT INTO hitl_requests (thread_id, interrupt_id, fingerprint, request, "
                "asked_at) VALUES (?, ?, ?, ?, ?)",
                [(*p.key, p.request.model_dump_json(), p.asked_at) for p in pending
                 if p.key[1:] not in have])

    def listed(self, thread_id: str | None = None, conn=None) -> list[Pending]:
        """The pending requests (of one thread), oldest first."""
        with self._in(conn) as conn:
            rows = conn.execute(
                "SELECT thread_id, interrupt_id, request, asked_at, deadline_at, deadline_stage "
                "FROM hitl_requests WHERE CAST(? AS TEXT) IS NULL OR thread_id = ? "
                "ORDER BY asked_at, thread_id, interrupt_id", (thread_id, thread_id)).fetchall()
        return [Pending(thread_id=r[0], interrupt_id=r[1],
                        request=ApprovalRequest.model_validate_json(r[2]), asked_at=r[3],
                        deadline_at=r[4], deadline_stage=r[5]) for r in rows]

    def set_deadline(self, key: Key, deadline_at: float, stage: int = 0, *,
                     only_if_unset: bool = False, conn=None) -> float | None:
        """Store a request's deadline (epoch seconds). ``only_if_unset``: keep a stored one (a
        restart must not push a deadline back). Returns the deadline in force, or None when the
        request is not pending any more."""
        with self._in(conn, key[0]) as conn:
            row = conn.execute("SELECT deadline_at FROM hitl_requests WHERE thread_id = ? AND "
                               "interrupt_id = ? AND fingerprint = ?", key).fetchone()
            if row is None:
                return None
            if only_if_unset and row[0] is not None:
                return row[0]
            conn.execute("UPDATE hitl_requests SET deadline_at = ?, deadline_stage = ? WHERE "
                         "thread_id = ? AND interrupt_id = ? AND fingerprint = ?",
                         (deadline_at, stage, *key))
        return deadline_at

    def escalate(self, key: Key, escalated_to: str, reason: str, conn=None) -> bool:
        """Record that an undecided request went to ``escalated_to``; False (nothing recorded)
        when it was decided meanwhile."""
        with self._in(conn, key[0]) as conn:
            if Claims(self.engine).winner(*key, conn=conn) is not None:
                return False
            conn.execute("INSERT INTO hitl_escalations VALUES (?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (*key, escalated_to, reason, now_iso()))
        return True

    def escalations(self, thread_id: str | None = None, conn=None) -> list[Escalation]:
        """Every escalation recorded (for one thread), oldest first."""
        with self._in(conn) as conn:
            rows = conn.execute(
                "SELECT thread_id, interrupt_id, fingerprint, escalated_to, reason, escalated_at"
                " FROM hitl_escalations WHERE CAST(? AS TEXT) IS NULL OR thread_id = ? "
                "ORDER BY escalated_at, thread_id, interrupt_id", (thread_id, thread_id))
            return [Escalation(*row) for row in rows.fetchall()]


class RunJournal(Store):
    """Each call's execution: started, then finished with its result (the first end stands)."""

    def record(self, thread_id: str, call_id: str, conn=None) -> RunRecord | None:
        with self._in(conn) as conn:
            row = conn.execute(
                "SELECT thread_id, call_id, tool, finished, result, is_error, finished_at, "
                "why_not FROM hitl_runs WHERE thread_id = ? AND call_id = ?",
                (thread_id, call_id)).fetchone()
        return None if row is None else RunRecord(row[0], row[1], row[2], bool(row[3]),
                                                  row[4], bool(row[5]), row[6], row[7])

    def started(self, thread_id: str, call_id: str, tool: str, conn=None) -> None:
        """Record that a call is about to run (before its side effect)."""
        with self._in(conn) as conn:  # one statement, atomic by itself: no transaction
            conn.execute("INSERT INTO hitl_runs (thread_id, call_id, tool) VALUES (?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (thread_id, call_id, tool))

    def finished(self, thread_id: str, call_id: str, tool: str, result: str, is_error: bool,
                 finished_at: str | None, why_not: str = "", conn=None) -> None:
        """Record how a call ended; the first record stands (a re-run after a crash finds it)."""
        with self._in(conn) as conn:  # one statement, atomic by itself: no transaction
            conn.execute(
                "INSERT INTO hitl_runs VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (thread_id, "
                "call_id) DO UPDATE SET finished = 1, result = excluded.result, is_error = "
                "excluded.is_error, finished_at = excluded.finished_at, why_not = "
                "excluded.why_not WHERE hitl_runs.finished = 0",
                (thread_id, call_id, tool, result, int(is_error), finished_at, why_not))


# -- the ledger -----------------------------------------------------------------------------------

class DecisionLedger:
    """The four stores on one engine (``claims``, ``turns``, ``index``, ``journal``), and the
    steps that must be one transaction across them.

    ``engine``: a ``SqliteEngine`` (default: in memory, for one process) or a ``PostgresEngine``;
    a path gives a SQLite file shared by every process that may decide.
    """

    def __init__(self, engine: Engine | str = ":memory:"):
        if isinstance(engine, str):
            engine = SqliteEngine(engine)
        engine.create([table_sql(t, engine.TYPES, engine.TABLE_SUFFIX) for t in TABLES],
                      {t[0]: column_names(t) for t in TABLES})
        self.engine = engine
        self.claims, self.turns = Claims(engine), Turns(engine)
        self.index, self.journal = PendingIndex(engine), RunJournal(engine)

    @property
    def where(self) -> str:
        return self.engine.where

    def standing(self, thread_id: str, interrupt_id: str | None = None,
                 fingerprint: str | None = None) -> tuple[Turn | None, Claim | None]:
        """Who holds the thread's turn and, for a request named by interrupt id or fingerprint,
        the claim that decided it: one query, so the winner's turn is read with its claim."""
        if interrupt_id is None and fingerprint is None:
            return self.turns.of(thread_id), None
        with self.engine.reading() as conn:
            row = conn.execute(
                "SELECT t.thread_id, t.holder, t.host, t.pid, t.lease_ends, c.* FROM "
                "(SELECT CAST(? AS TEXT) AS thread_id) AS k "
                "LEFT JOIN hitl_turns AS t ON t.thread_id = k.thread_id "
                f"LEFT JOIN ({_WINNER_SQL}) AS c ON 1 = 1",
                (thread_id, thread_id, interrupt_id, interrupt_id, fingerprint, fingerprint)
            ).fetchone()
        return (None if row[0] is None else Turn(*row[:5]),
                None if row[5] is None else _claim(row[5:]))

    def claim(self, claims: list[Claim]) -> Claim | None:
        """Record these decisions, all or none. None when they won, else the claim that was
        there first (and nothing is recorded)."""
        with self.engine.transaction(claims[0].thread_id if claims else None) as conn:
            return self._claim(conn, claims)

    def _claim(self, conn, claims: list[Claim]) -> Claim | None:
        for claim in claims:  # all checked before any is written: all or none
            earlier = self.claims.winner(*claim.key, conn=conn)
            if earlier is not None:
                return earlier
        self.claims.insert(claims, conn)
        return None

    def claim_and_take_turn(self, claims: list[Claim], thread_id: str, holder: str,
                            wait_s: float | None = None) -> Claim | None:
        """One transaction: the claims (all or none) and the thread's turn. Returns the earlier
        claim when one was there first (nothing recorded). Waits while another resume of the
        thread holds the turn (``TimeoutError`` after ``wait_s``); ``StaleTurn`` when a dead
        process holds it."""
        def attempt(conn):
            for claim in claims:
                earlier = self.claims.winner(*claim.key, conn=conn)
                if earlier is not None:
                    return earlier
            if not self.turns.take(thread_id, holder, take_stale=False, conn=conn):
                return _BUSY
            self.claims.insert(claims, conn)
            return None

        return self._until_not_busy(thread_id, attempt, wait_s)

    def approve_with(self, claim: Claim, needed: int, holder: str,
                     wait_s: float | None = None) -> tuple[str, Any]:
        """One approval of a request that needs ``needed`` different people, judged in one
        transaction: ``("decided", winner)`` when a decision already won, ``("again", approval)``
        when this person approved it before, ``("partial", approvals)`` when more are needed
        (recorded; nothing resumes), or ``("complete", claim)``: this one completes it, and the
        claim (carrying every approval) is recorded with the thread's turn taken."""
        decision = claim.decision
        mine = Approval(approver=decision.approver, role=decision.role,
                        channel=decision.channel, approved_at=claim.decided_at)

        def attempt(conn):
            winner = self.claims.winner(*claim.key, conn=conn)
            if winner is not None:
                return "decided", winner
            approvals = self.claims.approvals(claim.key, conn)
            again = next((a for a in approvals
                          if identity.same_person(a.approver, decision.approver)), None)
            if again is not None:
                return "again", again
            approvals = [*approvals, mine]
            if len(approvals) < needed:
                self.claims.add_approval(claim.key, mine, conn)
                return "partial", approvals
            if not self.turns.take(claim.thread_id, holder, take_stale=False, conn=conn):
                return _BUSY
            self.claims.add_approval(claim.key, mine, conn)
            complete = Claim(*claim.key, decision.model_copy(update={
                "approvals": tuple(approvals)}), claim.decided_at)
            self.claims.insert([complete], conn)
            return "complete", complete

        return self._until_not_busy(claim.thread_id, attempt, wait_s)

    def finish_turn(self, thread_id: str, holder: str, applied: Iterable[Claim] = (),
                    pending: Iterable[Pending] | None = None, *, stopped: bool = False) -> None:
        """One transaction: mark claims applied, bring the thread's pending requests in step
        with the graph (``pending``: every request pending now; None leaves them), and give the
        turn back (``stopped``: left behind as stale, the thread stopped mid-run)."""
        with self.engine.transaction(thread_id) as conn:
            self.claims.mark_applied([c.key for c in applied], conn)
            if pending is not None:
                self.index.sync(thread_id, pending, conn)
            self.turns.give_back(thread_id, holder, stopped=stopped, conn=conn)

    def take_turn(self, thread_id: str, wait_s: float | None = None, *,
                  take_stale: bool = False) -> str:
        """Wait for the thread's turn and take it; returns the holder id to give it back."""
        holder = uuid.uuid4().hex
        return self._until_not_busy(
            thread_id, lambda conn: holder if self.turns.take(
                thread_id, holder, take_stale=take_stale, conn=conn) else _BUSY, wait_s)

    @contextmanager
    def turn(self, thread_id: str) -> Iterator[str]:
        """Hold the thread's turn (a dead holder's is taken over); not re-entrant."""
        holder = self.take_turn(thread_id, take_stale=True)
        try:
            yield holder
        finally:
            self.finish_turn(thread_id, holder)

    def _until_not_busy(self, thread_id: str, attempt, wait_s: float | None):
        """``attempt(conn)`` in a write transaction until it is not ``_BUSY`` (the thread's turn
        is held by a live resume); TimeoutError after ``wait_s`` (default ``TURN_WAIT_S``)."""
        give_up = time.monotonic() + (TURN_WAIT_S if wait_s is None else wait_s)
        while True:
            with self.engine.transaction(thread_id) as conn:
                result = attempt(conn)
            if result is not _BUSY:
                return result
            if time.monotonic() > give_up:
                raise TimeoutError(f"thread {thread_id!r} is busy: another resume has held it "
                                   f"for over {TURN_WAIT_S:g} s; nothing was applied, try again")
            time.sleep(TURN_POLL_S)

    def close(self) -> None:
        self.engine.close()
