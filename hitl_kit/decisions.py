"""The decision ledger: for each pending approval, exactly one decision wins.

LangGraph does not serialise resumes. Two ``Command(resume=...)`` sent to one paused thread at
the same moment both run the next node, so a click racing a timeout executes the action twice.
And two resumes of *different* approvals on one thread at the same moment lose both answers (the
thread ends with neither executed). The ledger prevents both:

* ``claim``: one row per request shown to an approver, keyed by (thread id, interrupt id,
  fingerprint of the action and arguments shown). The row is INSERTed inside ``BEGIN IMMEDIATE``,
  so of all the processes and threads sharing the database, the first claim wins and every later
  one is told who won.
* ``turn``: one resume at a time per thread, with a lease row. A lease, not a held transaction,
  so the ledger can live in the same SQLite file as a ``SqliteSaver`` without blocking its writes.

The ledger lives in a SQLite file (shared by processes) or in memory (one process).
``ledger_for(checkpointer)`` picks the checkpointer's own file when it has one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

BUSY_TIMEOUT_S = 30  # how long a write waits for another connection's lock
TURN_LEASE_S = 60.0  # a turn held longer than this (a crashed process) may be taken over
TURN_WAIT_S = 75.0  # how long a resume waits for its turn before giving up
TURN_POLL_S = 0.002

SCHEMA_SQL = (
    """CREATE TABLE IF NOT EXISTS hitl_decisions (
        thread_id TEXT NOT NULL, interrupt_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL, approver TEXT NOT NULL, reason TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        PRIMARY KEY (thread_id, interrupt_id, fingerprint)) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_escalations (
        thread_id TEXT NOT NULL, interrupt_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        escalated_to TEXT NOT NULL, reason TEXT NOT NULL, escalated_at TEXT NOT NULL,
        PRIMARY KEY (thread_id, interrupt_id, fingerprint, escalated_to)) STRICT""",
    """CREATE TABLE IF NOT EXISTS hitl_turns (
        thread_id TEXT PRIMARY KEY, holder TEXT NOT NULL, lease_ends REAL NOT NULL) STRICT""",
)

HOW = {
    "approve": "approved",
    "reject": "rejected",
    "edit": "edited the arguments",
    "timeout": "timed out",
    "proceed": "proceeded without a human",
}


@dataclass(frozen=True)
class Claim:
    """One decision on one shown request, as the ledger keeps it."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    kind: str
    approver: str
    reason: str = ""
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="milliseconds"))

    def describe(self) -> str:
        """Who decided, how, and when, in one line."""
        how = HOW.get(self.kind, self.kind)
        because = f": {self.reason}" if self.reason else ""
        return f"{self.approver} ({how}{because}) at {self.decided_at}"


@dataclass(frozen=True)
class Escalation:
    """A pending approval handed to another approver because nobody decided in time."""

    thread_id: str
    interrupt_id: str
    fingerprint: str
    escalated_to: str
    reason: str
    escalated_at: str


class DecisionLedger:
    """Who decided each pending approval, claimed atomically; thread-safe.

    ``path``: a SQLite file shared by every process that may decide (it can be the checkpointer's
    own file), or ``":memory:"`` for one process.
    """

    def __init__(self, path: str = ":memory:"):
        self.path = path
        self._lock = threading.Lock()  # one statement or transaction at a time on the connection
        self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
        try:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            with self._transaction():
                for sql in SCHEMA_SQL:
                    self._conn.execute(sql)
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock before the first read, so a check-then-insert is atomic
        # across connections and processes.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def claim(self, claims: list[Claim]) -> Claim | None:
        """Record these decisions, all or none. Returns None when they won, or the claim that
        was there first (and records nothing)."""
        with self._transaction() as conn:
            for claim in claims:  # all checked before any is written: all or none
                earlier = self._winner(conn, claim.thread_id, claim.interrupt_id,
                                       claim.fingerprint)
                if earlier is not None:
                    return earlier
            conn.executemany(
                "INSERT INTO hitl_decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(c.thread_id, c.interrupt_id, c.fingerprint, c.kind, c.approver, c.reason,
                  c.decided_at) for c in claims])
        return None

    def withdraw(self, claims: list[Claim]) -> None:
        """Forget claims whose decision never reached the graph (the resume failed)."""
        with self._transaction() as conn:
            for claim in claims:
                conn.execute("DELETE FROM hitl_decisions WHERE thread_id = ? AND interrupt_id = ? "
                             "AND fingerprint = ?",
                             (claim.thread_id, claim.interrupt_id, claim.fingerprint))

    def winner(self, thread_id: str, interrupt_id: str | None = None,
               fingerprint: str | None = None) -> Claim | None:
        """The claim that decided a request, or None if it is undecided. Give the interrupt id,
        the fingerprint, or both."""
        if interrupt_id is None and fingerprint is None:
            raise ValueError("name the request: an interrupt id, a fingerprint, or both")
        with self._lock:
            return self._winner(self._conn, thread_id, interrupt_id, fingerprint)

    @staticmethod
    def _winner(conn, thread_id, interrupt_id, fingerprint) -> Claim | None:
        row = conn.execute(
            "SELECT * FROM hitl_decisions WHERE thread_id = ? "
            "AND (? IS NULL OR interrupt_id = ?) AND (? IS NULL OR fingerprint = ?) "
            "ORDER BY decided_at DESC LIMIT 1",
            (thread_id, interrupt_id, interrupt_id, fingerprint, fingerprint)).fetchone()
        return None if row is None else Claim(*row)

    def claims(self, thread_id: str | None = None) -> list[Claim]:
        """Every decision recorded (for one thread), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM hitl_decisions WHERE ? IS NULL OR thread_id = ? "
                "ORDER BY decided_at, rowid", (thread_id, thread_id)).fetchall()
        return [Claim(*row) for row in rows]

    def escalate(self, thread_id: str, interrupt_id: str, fingerprint: str, escalated_to: str,
                 reason: str) -> bool:
        """Record that an undecided request was handed to ``escalated_to``. False (and nothing
        recorded) when it was decided meanwhile."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._transaction() as conn:
            if self._winner(conn, thread_id, interrupt_id, fingerprint) is not None:
                return False
            conn.execute("INSERT OR IGNORE INTO hitl_escalations VALUES (?, ?, ?, ?, ?, ?)",
                         (thread_id, interrupt_id, fingerprint, escalated_to, reason, at))
        return True

    def escalations(self, thread_id: str | None = None) -> list[Escalation]:
        """Every escalation recorded (for one thread), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM hitl_escalations WHERE ? IS NULL OR thread_id = ? "
                "ORDER BY escalated_at, rowid", (thread_id, thread_id)).fetchall()
        return [Escalation(*row) for row in rows]

    @contextmanager
    def turn(self, thread_id: str) -> Iterator[None]:
        """Hold the thread's turn: no other resume of this thread runs meanwhile, in any process
        sharing the ledger. Not re-entrant. Raises TimeoutError after ``TURN_WAIT_S``."""
        holder = uuid.uuid4().hex
        give_up = time.monotonic() + TURN_WAIT_S
        while not self._take_turn(thread_id, holder):
            if time.monotonic() > give_up:
                raise TimeoutError(
                    f"thread {thread_id!r} is busy: another resume has held it for over "
                    f"{TURN_WAIT_S:g} s; nothing was applied, try again")
            time.sleep(TURN_POLL_S)
        try:
            yield
        finally:
            with self._transaction() as conn:
                conn.execute("DELETE FROM hitl_turns WHERE thread_id = ? AND holder = ?",
                             (thread_id, holder))

    def _take_turn(self, thread_id: str, holder: str) -> bool:
        now = time.time()  # wall clock: leases are compared across processes
        with self._transaction() as conn:
            held = conn.execute("SELECT lease_ends FROM hitl_turns WHERE thread_id = ?",
                                (thread_id,)).fetchone()
            if held is not None and held[0] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO hitl_turns VALUES (?, ?, ?)",
                         (thread_id, holder, now + TURN_LEASE_S))
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def ledger_for(checkpointer) -> DecisionLedger:
    """A ledger in the checkpointer's own SQLite file when it has one (so every process resuming
    its threads shares it), else in memory."""
    conn = getattr(checkpointer, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
        if files and files[0]:
            return DecisionLedger(files[0])
    return DecisionLedger()
