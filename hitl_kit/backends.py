"""Where the kit keeps what must outlive a process, chosen with one switch.

SQLite files in a folder are the default. Set ``HITL_KIT_DATABASE_URL=postgresql://...`` (or pass
``url=``) and the checkpointer (``PostgresSaver``), the decision ledger (claims, turns, the
pending-request index and its deadlines, the run journal) and the audit trail are on PostgreSQL
instead, with the same API and guarantees, shared by every worker that connects::

    >>> import tempfile
    >>> from hitl_kit.approval import ApprovalAgent
    >>> from hitl_kit.llm import OfflineChatModel
    >>> from hitl_kit.world import World
    >>> world = World()
    >>> with open_stores(folder=tempfile.mkdtemp(), url="sqlite") as stores:
    ...     agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
    ...                           **stores.for_agent())
    ...     print(stores.kind, agent.start("delete customer 3", "t1").paused)
    sqlite True

With ``url="postgresql://hitl_agent@db.example/hitl"`` (a database provisioned once by
``provision``) the same lines run on PostgreSQL; ``local_server()`` starts a private server,
provisioned, to try it.

Limits: the demo world (``hitl_kit.world``) stays a SQLite file: it stands for your own systems.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from hitl_kit.ledger import TABLES, DecisionLedger, table_sql
from hitl_kit.sqlite import database_file

DATABASE_URL_VARIABLE = "HITL_KIT_DATABASE_URL"
SQLITE = "sqlite"
POSTGRES = "postgres"


def database_url(url: str | None = None) -> str:
    """The backend asked for: ``url`` if given, else ``$HITL_KIT_DATABASE_URL``, else
    ``"sqlite"``. Raises ValueError for anything that is neither SQLite nor a PostgreSQL URL."""
    chosen = url if url is not None else os.environ.get(DATABASE_URL_VARIABLE, "")
    chosen = chosen.strip() or SQLITE
    if chosen == SQLITE or chosen.startswith(("postgresql://", "postgres://")):
        return chosen
    where = "url" if url is not None else f"${DATABASE_URL_VARIABLE}"
    raise ValueError(f"{where} is {chosen!r}: use 'sqlite' (the default: files in a folder) or a "
                     "PostgreSQL URL such as 'postgresql://hitl_agent@localhost/hitl'")


@dataclass
class Stores:
    """The three durable stores of one process, on one backend. ``for_agent()`` gives them as
    ``ApprovalAgent`` keyword arguments; ``close()`` closes what was opened."""

    kind: str
    checkpointer: object
    ledger: object
    audit: object
    where: str
    _closers: list = field(default_factory=list, repr=False)

    def for_agent(self) -> dict:
        return {"checkpointer": self.checkpointer, "ledger": self.ledger, "audit": self.audit}

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_stores(url: str | None = None, *, folder: str | os.PathLike | None = None,
                head_path: str | os.PathLike | None = None, durable: bool = True) -> Stores:
    """Open the checkpointer, ledger and audit trail on the backend ``database_url(url)`` picks.

    SQLite needs ``folder`` (``checkpoints.db`` holds the checkpoints and the ledger,
    ``audit.db`` the trail). PostgreSQL opens one connection pool for this process, shared by
    the three. The audit head goes to ``head_path``, by default ``audit.head.json`` in
    ``folder`` (no head file when PostgreSQL is given no folder). ``durable=False``: faster
    audit appends that a power cut may lose (tests, demos).
    """
    chosen = database_url(url)
    folder = None if folder is None else Path(folder)
    if head_path is None and folder is not None:
        head_path = folder / "audit.head.json"
    if chosen == SQLITE:
        return _sqlite_stores(folder, head_path, durable)
    return _postgres_stores(chosen, head_path, durable)


def _sqlite_stores(folder: Path | None, head_path, durable: bool) -> Stores:
    from hitl_kit.audit import AuditTrail

    if folder is None:
        raise ValueError("the SQLite backend keeps its files in a folder: give folder=..., or "
                         f"set ${DATABASE_URL_VARIABLE} to a PostgreSQL URL")
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = str(folder / "checkpoints.db")
    stores = Stores(SQLITE, durable_checkpointer(checkpoints), None, None, str(folder))
    stores._closers.append(stores.checkpointer.conn.close)
    try:
        stores.ledger = DecisionLedger(checkpoints)
        stores._closers.append(stores.ledger.close)
        stores.audit = AuditTrail(folder / "audit.db", head_path=head_path, durable=durable)
        stores._closers.append(stores.audit.close)
    except BaseException:
        stores.close()
        raise
    return stores


def _postgres_stores(url: str, head_path, durable: bool) -> Stores:
    from psycopg.rows import dict_row

    from hitl_kit.postgres import PostgresEngine, open_pool, postgres_checkpointer, shown
    from hitl_kit.postgres_audit import PostgresAuditTrail

    # dict rows and prepare_threshold=0 are what PostgresSaver asks of its connections; the
    # ledger and the trail ask for tuple rows on each cursor.
    pool = open_pool(url, name="hitl-stores", max_size=6, prepare_threshold=0,
                     row_factory=dict_row)
    stores = Stores(POSTGRES, None, None, None, shown(url), [pool.close])
    try:
        stores.checkpointer = postgres_checkpointer(pool)
        stores.ledger = DecisionLedger(PostgresEngine(pool))
        stores.audit = PostgresAuditTrail(pool, head_path=head_path, durable=durable)
    except BaseException:
        stores.close()
        raise
    return stores


def durable_checkpointer(path: str):
    """A SqliteSaver on ``path`` whose paused threads survive the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))


def ledger_for(checkpointer) -> DecisionLedger:
    """A ledger in the checkpointer's own database when it has one (its SQLite file, or its
    PostgreSQL database), so every process resuming its threads shares it; else in memory."""
    conn = getattr(checkpointer, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        path = database_file(conn)
        if path:
            return DecisionLedger(path)
    if type(checkpointer).__module__.startswith("langgraph.checkpoint.postgres"):
        from hitl_kit.postgres import PostgresEngine, url_beside

        return DecisionLedger(PostgresEngine(url_beside(checkpointer)))
    return DecisionLedger()


# -- PostgreSQL: every table the kit needs, made once by an administrator -------------------------

def provision(admin_url: str, *, passwords: dict[str, str] | None = None) -> None:
    """Create (or complete) the roles, the schema ``hitl`` and every table the kit uses, in the
    database of ``admin_url``; run it once, as a role that may create roles (a superuser, or
    ``CREATEROLE`` and ``CREATE`` on the database). Idempotent.

    The tables belong to ``hitl_owner``; ``hitl_agent`` gets SELECT, INSERT, UPDATE, DELETE on
    the checkpoints and the ledger, and only INSERT, SELECT on the audit trail; ``hitl_auditor``
    only SELECT on the audit trail. ``passwords``: ``{"hitl_agent": ..., "hitl_auditor": ...}``
    for a server that asks for them (the local server trusts its socket).
    """
    from langgraph.checkpoint.postgres import PostgresSaver

    from hitl_kit import postgres_audit
    from hitl_kit.postgres import (
        AGENT,
        AUDITOR,
        CHECKPOINT_TABLES,
        OWNER,
        SCHEMA,
        PostgresEngine,
        connect,
        provision_roles,
    )

    with connect(admin_url) as conn:
        provision_roles(conn, passwords or {})
        conn.execute(f"SET ROLE {OWNER}")
        conn.execute(f"SET search_path = {SCHEMA}")
        for table in TABLES:
            conn.execute(table_sql(table, PostgresEngine.TYPES, PostgresEngine.TABLE_SUFFIX))
        for ddl in postgres_audit.SCHEMA_SQL:
            conn.execute(ddl)
        PostgresSaver(conn).setup()
        tables = ", ".join((*(t[0] for t in TABLES), *CHECKPOINT_TABLES))
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {AGENT}")
        for table in postgres_audit.AUDIT_TABLES:
            conn.execute(f"REVOKE ALL ON {table} FROM PUBLIC, {AGENT}, {AUDITOR}")
            conn.execute(f"GRANT INSERT, SELECT ON {table} TO {AGENT}")
            conn.execute(f"GRANT SELECT ON {table} TO {AUDITOR}")
        conn.execute("RESET ROLE")


def local_server(folder: str | os.PathLike | None = None, *, database: str = "hitl",
                 fast: bool = False):
    """A private PostgreSQL with ``database`` provisioned (``hitl_kit.postgres.start_server``;
    ``fast``: no fsync, for tests). ``server.url(role)`` logs in as a kit role."""
    from hitl_kit.postgres import start_server

    return start_server(folder, database=database, fast=fast, then=provision)
