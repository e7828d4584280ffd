"""The decision ledger: for each pending approval exactly one decision wins, and it is applied.

LangGraph does not serialise resumes. Two ``Command(resume=...)`` sent to one paused thread at
the same moment both run the next node, so a click racing a timeout executes the action twice;
two resumes of *different* approvals on one thread at the same moment lose both answers. The
ledger is the one judge of who decided, kept in SQLite (shared by processes) or in memory:

* **requests**: an index of what is pending (payload, when it was asked, its deadline), kept in
  step with the checkpointer by the agent, so the inbox lists 1,000 requests with one query and a
  deadline survives a restart.
* **claims**: one row per decided request, keyed by (thread, interrupt id, fingerprint of what
  was shown), inserted inside ``BEGIN IMMEDIATE`` (the first claim wins) together with the
  thread's **turn** (one resume per thread at a time). A claim stays ``applied = 0`` until the
  graph has taken it: after a crash, ``hitl_kit.recovery`` applies it, so it is neither lost nor
  replaced.
* **runs**: the execution journal: a call's run is recorded as started, then finished with its
  result, so a re-run of ``execute`` after a crash returns the result instead of acting again.

    >>> ledger = DecisionLedger()
    >>> ledger.claim([Claim("t1", "i1", "f1", "approve", "ana")]) is None  # won
    True
    >>> ledger.claim([Claim("t1", "i1", "f1", "reject", "bo")]).approver  # told who won
    'ana'

Limits: a turn is a lease (``TURN_LEASE_S``), taken over when it ends or when its holder's
process is gone (same host); a resume that runs longer than the lease is not renewed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hitl_kit.sqlite import connect, database_file, transaction
from hitl_kit.vocabulary import Kind

TURN_LEASE_S = 60.0  # a turn held longer than this (a crashed process) may be taken over
TURN_WAIT_S = 75.0  # how long a resume waits for its turn before giving up
TURN_POLL_S = 0.002
_BUSY = object()  # an attempt found the thread's turn held by a live resume: wait, try again
HOST = socket.gethostname()

SCHEMA_SQL = (
    """CREATE TABLE IF NOT EXISTS hitl_requests (
        thread_id TEXT NOT NULL, interrupt_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        payload TEXT NOT NULL, asked_at TEXT NOT NULL,
        deadline_at REAL, deadline_stage INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (thread_id, interrupt_id, fingerprint)) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_claims (
        thread_id TEXT NOT NULL, interrupt_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL, approver TEXT NOT NULL, reason TEXT NOT NULL,
        decided_at TEXT NOT NULL, channel TEXT NOT NULL DEFAULT 'api', role TEXT,
        args TEXT, applied INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (thread_id, interrupt_id, fingerprint)) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_approvals (
        thread_id TEXT NOT NULL, interrupt_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        approver_key TEXT NOT NULL, approver TEXT NOT NULL, role TEXT, channel TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        PRIMARY KEY (thread_id, interrupt_id, fingerprint, approver_key)) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_escalations (
        thread_id TEXT NOT NULL, interrupt_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        escalated_to TEXT NOT NULL, reason TEXT NOT NULL, escalated_at TEXT NOT NULL,
        PRIMARY KEY (thread_id, interrupt_id, fingerprint, escalated_to)) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_turns (
        thread_id TEXT PRIMARY KEY, holder TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, lease_ends REAL NOT NULL) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_runs (
        run_key TEXT PRIMARY KEY, tool TEXT NOT NULL, finished INTEGER NOT NULL DEFAULT 0,
        result TEXT, is_error INTEGER NOT NULL DEFAULT 0, finished_at TEXT,
        why_not TEXT NOT NULL DEFAULT '') STRICT""",
)
CLAIM_COLUMNS = "thread_id, interrupt_id, fingerprint, kind, approver, reason, decided_at, " \
                "channel, role, args, applied"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Claim:
    """One decision on one shown request, as the ledger keeps it."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    kind: str
    approver: str
    reason: str = ""
    decided_at: str = field(default_factory=_now_iso)
    channel: str = "api"
    role: str | None = None
    args: str | None = None  # an edit's arguments, as JSON text
    applied: bool = False  # the graph has taken this decision

    def describe(self) -> str:
        """Who decided, how, and when, in one line."""
        try:
            how = Kind(self.kind).past
        except ValueError:
            how = self.kind
        because = f": {self.reason}" if self.reason else ""
        return f"{self.approver} ({how}{because}) at {self.decided_at}"

    @property
    def key(self) -> tuple[str, str, str]:
        return self.thread_id, self.interrupt_id, self.fingerprint


@dataclass(frozen=True)
class Escalation:
    """A pending approval handed to another approver because nobody decided in time."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    escalated_to: str
    reason: str
    escalated_at: str


@dataclass(frozen=True)
class Approval:
    """One person's approval of a request that needs several (the two-person rule)."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    approver: str
    role: str | None
    channel: str
    approved_at: str

    def as_dict(self) -> dict:
        return {"approver": self.approver, "role": self.role, "channel": self.channel,
                "approved_at": self.approved_at}


@dataclass(frozen=True)
class Request:
    """One pending approval as the index keeps it."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    payload: dict
    asked_at: str
    deadline_at: float | None = None  # epoch seconds
    deadline_stage: int = 0  # 0: the first deadline; n: after n escalations

    @property
    def key(self) -> tuple[str, str, str]:
        return self.thread_id, self.interrupt_id, self.fingerprint


@dataclass(frozen=True)
class RunRecord:
    """What the journal knows of one call's execution."""

    run_key: str
    tool: str
    finished: bool
    result: str | None
    is_error: bool
    finished_at: str | None
    why_not: str

    def message(self, tool_call_id: str):
        from langchain_core.messages import ToolMessage

        return ToolMessage(self.result or "", tool_call_id=tool_call_id,
                           status="error" if self.is_error else "success")


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
    """The thread's turn is held by a process that is gone: it was left mid-resume, and must be
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


class DecisionLedger:
    """Who decided each pending approval, claimed atomically; thread-safe.

    ``path``: a SQLite file shared by every process that may decide (it can be the checkpointer's
    own file), or ``":memory:"`` for one process.
    """

    def __init__(self, path: str = ":memory:"):
        self.path = path
        self._lock = threading.RLock()  # one statement or transaction at a time on the connection
        self._conn = connect(path)
        try:
            with self._transaction() as conn:
                old = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'hitl_decisions'")
                if old.fetchone() is not None:
                    raise RuntimeError(
                        f"{path} holds a decision ledger from an earlier hitl-kit (table "
                        "hitl_decisions); start with a new file, or delete that table")
                for sql in SCHEMA_SQL:
                    conn.execute(sql)
        except BaseException:
            self._conn.close()
            raise

    # The two ways in: everything else is SQL that SQLite and PostgreSQL both speak (``?``
    # placeholders, ON CONFLICT), so a PostgreSQL ledger overrides only these and the schema.
    @contextmanager
    def _transaction(self, thread_id: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction. SQLite's BEGIN IMMEDIATE serialises every writer; a server
        backend may lock only ``thread_id``."""
        with transaction(self._conn, self._lock) as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    # -- claims: the one judge ----------------------------------------------------------------
    def claim(self, claims: list[Claim]) -> Claim | None:
        """Record these decisions, all or none. Returns None when they won, or the claim that
        was there first (and records nothing)."""
        with self._transaction(claims[0].thread_id if claims else None) as conn:
            return self._claim(conn, claims)

    def _claim(self, conn, claims: list[Claim]) -> Claim | None:
        for claim in claims:  # all checked before any is written: all or none
            earlier = self._winner(conn, *claim.key)
            if earlier is not None:
                return earlier
        conn.executemany(
            f"INSERT INTO hitl_claims ({CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            [(c.thread_id, c.interrupt_id, c.fingerprint, str(c.kind), c.approver, c.reason,
              c.decided_at, str(c.channel), c.role, c.args) for c in claims])
        return None

    def claim_and_take_turn(self, claims: list[Claim], thread_id: str, holder: str,
                            wait_s: float | None = None) -> Claim | None:
        """One transaction: the claims (all or none) and the thread's turn. Returns the earlier
        claim when one was there first (nothing recorded). Waits while another resume of the
        thread holds the turn; TimeoutError after ``wait_s`` (default ``TURN_WAIT_S``);
        ``StaleTurn`` when a dead process holds it."""
        def attempt(conn):
            for claim in claims:
                earlier = self._winner(conn, *claim.key)
                if earlier is not None:
                    return earlier
            if not self._take_turn(conn, thread_id, holder, take_stale=False):
                return _BUSY
            self._claim(conn, claims)
            return None

        return self._until_not_busy(thread_id, attempt, wait_s)

    def _until_not_busy(self, thread_id: str, attempt, wait_s: float | None):
        """Run ``attempt(conn)`` in a write transaction until it returns something other than
        ``_BUSY`` (the thread's turn is held by a live resume); TimeoutError after ``wait_s``
        (default ``TURN_WAIT_S``)."""
        give_up = time.monotonic() + (TURN_WAIT_S if wait_s is None else wait_s)
        while True:
            with self._transaction(thread_id) as conn:
                result = attempt(conn)
            if result is not _BUSY:
                return result
            if time.monotonic() > give_up:
                raise TimeoutError(_busy(thread_id))
            time.sleep(TURN_POLL_S)

    def finish_turn(self, thread_id: str, holder: str, applied: Iterable[Claim] = (),
                    pending: Iterable[Request] | None = None, *, stopped: bool = False) -> None:
        """One transaction: mark claims applied, bring the thread's pending requests in step
        with the graph (``pending``: every request pending now; None leaves them), and give the
        turn back. ``stopped``: the thread was left mid-run (an error inside a node), so its turn
        is left behind as stale, for ``hitl_kit.recovery`` to find and finish."""
        with self._transaction(thread_id) as conn:
            conn.executemany("UPDATE hitl_claims SET applied = 1 WHERE thread_id = ? AND "
                             "interrupt_id = ? AND fingerprint = ?", [c.key for c in applied])
            if pending is not None:
                self._sync(conn, thread_id, list(pending))
            if stopped:
                conn.execute("UPDATE hitl_turns SET lease_ends = 0 WHERE thread_id = ? AND "
                             "holder = ?", (thread_id, holder))
            else:
                conn.execute("DELETE FROM hitl_turns WHERE thread_id = ? AND holder = ?",
                             (thread_id, holder))

    def approve_with(self, claim: Claim, needed: int, holder: str,
                     wait_s: float | None = None) -> tuple[str, object]:
        """One approval of a request that needs ``needed`` different people, judged in one
        transaction. Returns ``("decided", winner)`` when a decision already won,
        ``("again", approval)`` when this person approved it before, ``("partial", approvals)``
        when more are needed (recorded; nothing resumes), or ``("complete", approvals)`` when
        this one completes it: then the claim is recorded and the thread's turn taken, as in
        ``claim_and_take_turn``."""
        from hitl_kit.requests import normalise_name

        person = normalise_name(claim.approver)

        def attempt(conn):
            winner = self._winner(conn, *claim.key)
            if winner is not None:
                return "decided", winner
            approvals = self._approvals(conn, claim.key)
            mine = next((a for a in approvals if normalise_name(a.approver) == person), None)
            if mine is not None:
                return "again", mine
            new = Approval(*claim.key, claim.approver, claim.role, str(claim.channel),
                           claim.decided_at)
            if len(approvals) + 1 < needed:
                self._insert_approval(conn, new, person)
                return "partial", [*approvals, new]
            if not self._take_turn(conn, claim.thread_id, holder, take_stale=False):
                return _BUSY
            self._insert_approval(conn, new, person)
            self._claim(conn, [claim])
            return "complete", [*approvals, new]

        return self._until_not_busy(claim.thread_id, attempt, wait_s)

    @staticmethod
    def _insert_approval(conn, approval: Approval, person: str) -> None:
        conn.execute("INSERT INTO hitl_approvals (thread_id, interrupt_id, fingerprint, "
                     "approver_key, approver, role, channel, approved_at) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?)",
                     (approval.thread_id, approval.interrupt_id, approval.fingerprint, person,
                      approval.approver, approval.role, approval.channel,
                      approval.approved_at))

    @staticmethod
    def _approvals(conn, key: tuple[str, str, str]) -> list[Approval]:
        rows = conn.execute(
            "SELECT thread_id, interrupt_id, fingerprint, approver, role, channel, approved_at "
            "FROM hitl_approvals WHERE thread_id = ? AND interrupt_id = ? AND fingerprint = ? "
            "ORDER BY approved_at, approver_key", key).fetchall()
        return [Approval(*row) for row in rows]

    def approvals(self, key: tuple[str, str, str]) -> list[Approval]:
        """The approvals recorded so far for one request (thread, interrupt id, fingerprint)."""
        with self._reading() as conn:
            return self._approvals(conn, key)

    def withdraw(self, claims: list[Claim]) -> None:
        """Forget claims whose decision never reached the graph (the resume failed)."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM hitl_claims WHERE thread_id = ? AND interrupt_id = ? "
                             "AND fingerprint = ?", [c.key for c in claims])

    def winner(self, thread_id: str, interrupt_id: str | None = None,
               fingerprint: str | None = None) -> Claim | None:
        """The claim that decided a request, or None if it is undecided. Give the interrupt id,
        the fingerprint, or both."""
        if interrupt_id is None and fingerprint is None:
            raise ValueError("name the request: an interrupt id, a fingerprint, or both")
        with self._reading() as conn:
            return self._winner(conn, thread_id, interrupt_id, fingerprint)

    @staticmethod
    def _winner(conn, thread_id, interrupt_id, fingerprint) -> Claim | None:
        row = conn.execute(
            f"SELECT {CLAIM_COLUMNS} FROM hitl_claims WHERE thread_id = ? "
            "AND (? IS NULL OR interrupt_id = ?) AND (? IS NULL OR fingerprint = ?) "
            "ORDER BY decided_at DESC LIMIT 1",
            (thread_id, interrupt_id, interrupt_id, fingerprint, fingerprint)).fetchone()
        return None if row is None else _claim_of(row)

    def claims(self, thread_id: str | None = None) -> list[Claim]:
        """Every decision recorded (for one thread), oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {CLAIM_COLUMNS} FROM hitl_claims WHERE ? IS NULL OR thread_id = ? "
                "ORDER BY decided_at, thread_id, interrupt_id", (thread_id, thread_id)).fetchall()
        return [_claim_of(row) for row in rows]

    def unapplied(self) -> list[Claim]:
        """Claims that won but were never marked applied: a process died after the claim."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {CLAIM_COLUMNS} FROM hitl_claims WHERE applied = 0 "
                "ORDER BY decided_at, thread_id, interrupt_id").fetchall()
        return [_claim_of(row) for row in rows]

    # -- turns: one resume per thread at a time ------------------------------------------------
    @contextmanager
    def turn(self, thread_id: str) -> Iterator[str]:
        """Hold the thread's turn: no other resume of this thread runs meanwhile, in any process
        sharing the ledger. Not re-entrant. Raises TimeoutError after ``TURN_WAIT_S``. A turn
        left by a dead process is taken over."""
        holder = self.take_turn(thread_id, take_stale=True)
        try:
            yield holder
        finally:
            self.finish_turn(thread_id, holder)

    def take_turn(self, thread_id: str, wait_s: float | None = None, *,
                  take_stale: bool = False) -> str:
        """Wait for the thread's turn and take it; returns the holder id to give it back.
        A turn left by a dead process raises ``StaleTurn``, unless ``take_stale`` (recovery)."""
        holder = uuid.uuid4().hex
        return self._until_not_busy(
            thread_id, lambda conn: holder if self._take_turn(
                conn, thread_id, holder, take_stale=take_stale) else _BUSY, wait_s)

    @staticmethod
    def _take_turn(conn, thread_id: str, holder: str, *, take_stale: bool) -> bool:
        row = conn.execute("SELECT thread_id, holder, host, pid, lease_ends FROM hitl_turns "
                           "WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is not None:
            turn = Turn(*row)
            if not turn.stale:
                return False
            if not take_stale:
                raise StaleTurn(turn)
        conn.execute("INSERT INTO hitl_turns VALUES (?, ?, ?, ?, ?) ON CONFLICT (thread_id) DO "
                     "UPDATE SET holder = excluded.holder, host = excluded.host, "
                     "pid = excluded.pid, lease_ends = excluded.lease_ends",
                     (thread_id, holder, HOST, os.getpid(), time.time() + TURN_LEASE_S))
        return True

    def turn_of(self, thread_id: str) -> Turn | None:
        """Who holds the thread's turn, or None."""
        with self._reading() as conn:
            row = conn.execute("SELECT thread_id, holder, host, pid, lease_ends FROM hitl_turns "
                               "WHERE thread_id = ?", (thread_id,)).fetchone()
        return None if row is None else Turn(*row)

    def stale_turns(self) -> list[Turn]:
        """Turns whose holder is gone: each thread was left mid-resume by a crash."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT thread_id, holder, host, pid, lease_ends FROM hitl_turns").fetchall()
        return [t for t in (Turn(*r) for r in rows) if t.stale]

    # -- the index of pending requests ----------------------------------------------------------
    def sync(self, thread_id: str, pending: Iterable[Request]) -> None:
        """Make the index hold exactly these pending requests for the thread."""
        with self._transaction(thread_id) as conn:
            self._sync(conn, thread_id, list(pending))

    @staticmethod
    def _sync(conn, thread_id: str, pending: list[Request]) -> None:
        keep = {(r.interrupt_id, r.fingerprint) for r in pending}
        have = set(conn.execute("SELECT interrupt_id, fingerprint FROM hitl_requests "
                                "WHERE thread_id = ?", (thread_id,)).fetchall())
        conn.executemany("DELETE FROM hitl_requests WHERE thread_id = ? AND interrupt_id = ? "
                         "AND fingerprint = ?", [(thread_id, *k) for k in have - keep])
        conn.executemany(
            "INSERT INTO hitl_requests (thread_id, interrupt_id, fingerprint, payload, asked_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r.thread_id, r.interrupt_id, r.fingerprint, json.dumps(r.payload, default=str),
              r.asked_at) for r in pending if (r.interrupt_id, r.fingerprint) not in have])

    def requests(self, thread_id: str | None = None) -> list[Request]:
        """The pending requests (of one thread), oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT thread_id, interrupt_id, fingerprint, payload, asked_at, deadline_at, "
                "deadline_stage FROM hitl_requests WHERE ? IS NULL OR thread_id = ? "
                "ORDER BY asked_at, thread_id, interrupt_id", (thread_id, thread_id)).fetchall()
        return [Request(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows]

    def indexed_threads(self) -> set[str]:
        with self._reading() as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM hitl_requests")}

    def set_deadline(self, key: tuple[str, str, str], deadline_at: float, stage: int = 0,
                     *, only_if_unset: bool = False) -> float | None:
        """Store a request's deadline (epoch seconds). ``only_if_unset``: keep a stored one (a
        restart must not push a deadline back). Returns the deadline in force, or None when
        the request is not pending any more."""
        with self._transaction(key[0]) as conn:
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

    # -- escalations ----------------------------------------------------------------------------
    def escalate(self, thread_id: str, interrupt_id: str, fingerprint: str, escalated_to: str,
                 reason: str) -> bool:
        """Record that an undecided request was handed to ``escalated_to``. False (and nothing
        recorded) when it was decided meanwhile."""
        with self._transaction(thread_id) as conn:
            if self._winner(conn, thread_id, interrupt_id, fingerprint) is not None:
                return False
            conn.execute("INSERT INTO hitl_escalations VALUES (?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT DO NOTHING",
                         (thread_id, interrupt_id, fingerprint, escalated_to, reason,
                          _now_iso()))
        return True

    def escalations(self, thread_id: str | None = None) -> list[Escalation]:
        """Every escalation recorded (for one thread), oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT thread_id, interrupt_id, fingerprint, escalated_to, reason, escalated_at "
                "FROM hitl_escalations WHERE ? IS NULL OR thread_id = ? "
                "ORDER BY escalated_at, thread_id, interrupt_id", (thread_id, thread_id)).fetchall()
        return [Escalation(*row) for row in rows]

    # -- the execution journal ------------------------------------------------------------------
    def run_record(self, run_key: str) -> RunRecord | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT run_key, tool, finished, result, is_error, finished_at, why_not "
                "FROM hitl_runs WHERE run_key = ?", (run_key,)).fetchone()
        return None if row is None else RunRecord(row[0], row[1], bool(row[2]), row[3],
                                                  bool(row[4]), row[5], row[6])

    def run_started(self, run_key: str, tool: str) -> None:
        """Record that a call is about to run (before its side effect)."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO hitl_runs (run_key, tool) VALUES (?, ?) "
                         "ON CONFLICT DO NOTHING",
                         (run_key, tool))

    def run_finished(self, run_key: str, tool: str, result: str, is_error: bool,
                     finished_at: str | None, why_not: str = "") -> None:
        """Record how a call ended; the first record stands (a re-run after a crash finds it)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO hitl_runs VALUES (?, ?, 1, ?, ?, ?, ?) ON CONFLICT (run_key) DO "
                "UPDATE SET finished = 1, result = excluded.result, is_error = excluded.is_error,"
                " finished_at = excluded.finished_at, why_not = excluded.why_not "
                "WHERE hitl_runs.finished = 0",
                (run_key, tool, result, int(is_error), finished_at, why_not))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _claim_of(row) -> Claim:
    return Claim(*row[:-1], applied=bool(row[-1]))


def _busy(thread_id: str) -> str:
    return (f"thread {thread_id!r} is busy: another resume has held it for over "
            f"{TURN_WAIT_S:g} s; nothing was applied, try again")


def ledger_for(checkpointer) -> DecisionLedger:
    """A ledger in the checkpointer's own database when it has one (its SQLite file, or its
    PostgreSQL database), so every process resuming its threads shares it; else in memory."""
    conn = getattr(checkpointer, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        path = database_file(conn)
        if path:
            return DecisionLedger(path)
    if type(checkpointer).__module__.startswith("langgraph.checkpoint.postgres"):
        from hitl_kit.postgres import ledger_beside

        return ledger_beside(checkpointer)
    return DecisionLedger()
