"""SQLite access written once: the connection settings and the write transaction every durable
part of the kit uses (ledger, audit trail, deadlines, link claims, the demo world's run records).

    >>> import threading
    >>> conn = connect(":memory:")
    >>> lock = threading.Lock()
    >>> with transaction(conn, lock):
    ...     _ = conn.execute("CREATE TABLE t (x)")

Limits: one ``lock`` per connection, held for the whole transaction (a ``sqlite3.Connection`` is
not safe to use from two threads at once); ``transaction`` is not re-entrant.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_TIMEOUT_S = 30.0  # how long a write waits for another connection's lock before failing


def connect(path: str, *, wal: bool = True, readonly: bool = False) -> sqlite3.Connection:
    """A connection shared by the threads of one process: autocommit mode (transactions are
    opened explicitly with ``transaction``), the busy timeout, and WAL for files so readers
    never block the writer."""
    if readonly:
        from pathlib import Path

        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        return conn
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    try:
        if wal and path not in ("", ":memory:"):
            _switch_to_wal(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, waiting like any write. Several connections opening a new
    file at once can get "database is locked" at once here, where SQLite does not call its busy
    handler (measured: 3 of 300 runs of four trails opened together): try again."""
    give_up = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.005)


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.Lock | threading.RLock
                ) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error) under ``lock``.

    IMMEDIATE takes the database's write lock before the first read, so a check-then-insert is
    atomic across connections and processes: two claims of one request cannot both see it free.
    """
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SqliteEngine:
    """A store's engine on one SQLite file (or in memory): one connection shared by the
    process's threads, one lock, ``BEGIN IMMEDIATE`` for writes (which locks the whole file:
    every writer in every process waits its turn)."""

    TYPES = {"text": "TEXT", "int": "INTEGER", "real": "REAL"}
    TABLE_SUFFIX = " STRICT"

    def __init__(self, path: str):
        self.where = path
        self._lock = threading.RLock()
        self._conn = connect(path)

    def create(self, statements: list[str], columns: dict[str, list[str]]) -> None:
        """Create the tables; refuse a file holding tables of these names laid out otherwise."""
        try:
            with self.transaction() as conn:
                for statement in statements:
                    conn.execute(statement)
                for table, expected in columns.items():
                    found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
                    if found != expected:
                        raise RuntimeError(
                            f"{self.where} holds a table {table} from an earlier hitl-kit "
                            f"(columns {found}); start with a new file, or drop that table")
        except BaseException:
            self.close()
            raise

    def transaction(self, thread_id: str | None = None):
        return transaction(self._conn, self._lock)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def database_file(conn: sqlite3.Connection) -> str | None:
    """The file behind a connection's main database, or None when it is in memory."""
    files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
    return files[0] if files and files[0] else None
