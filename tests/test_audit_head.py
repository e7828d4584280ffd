"""The audit head protocol (hitl_kit.audit_head): a writer SIGKILLed at each point of an append,
then each attack on the database file, in each order; on each backend.

A trial forks this (already imported) process. The child opens the trail and appends row 6 with
a hook at the crash point, where the parent kills it. The parent then attacks the database or
not, looks from outside (``verify_outside``: a read-only connection, or the auditor's role),
opens the trail as the next writer would, and checks: a committed row is never hidden. Either
the trail reports rows removed, or every row that was ever committed is in the trail.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import hitl_kit.audit_head as audit_head
from hitl_kit.audit import AuditHeadError, AuditIntegrityError, AuditTrail, verify_file
from hitl_kit.audit_head import HeadFile, HeldHead, read_head, read_head_record

from .test_audit import proposal
from .test_crash import _after, _before, run_child

# Where the child dies, in the order an append reaches them.
POINTS = {
    "before the intent": lambda reached: _before(HeldHead, "write_intent", reached),
    "after the intent, before the commit": lambda reached: _after(HeldHead, "write_intent",
                                                                  reached),
    "after the commit, before the mark": lambda reached: _before(HeldHead, "write_mark", reached),
    "after the mark": lambda reached: _after(HeldHead, "write_mark", reached),
}
COMMITTED = {"before the intent": False, "after the intent, before the commit": False,
             "after the commit, before the mark": True, "after the mark": True}


@pytest.fixture
def five(backend, tmp_path) -> Path:
    """A folder whose trail holds five rows and a head (its connections closed)."""
    folder = tmp_path / "trail"
    folder.mkdir()
    with closing(backend.audit(folder)) as trail:
        for n in range(1, 6):
            trail.append(proposal(n))
    return folder


def killed_appending(backend, folder: Path, point: str) -> None:
    """A child process opens the trail, appends row 6 and is SIGKILLed at ``point``."""
    def work():
        with closing(backend.audit(folder)) as trail:
            trail.append(proposal(6))

    _, reached = run_child(work, block=True, hooks=POINTS[point])
    assert reached, f"the append never reached {point!r}"


def rows_after_reopening(backend, folder: Path) -> tuple[list[int], object]:
    """Open the trail as the next writer does, then (seqs, verify()) as it sees them."""
    with closing(backend.audit(folder)) as trail:
        return [row["seq"] for row in trail.rows()], trail.verify()


# --- each crash point, no attack ---------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_a_writer_killed_at_each_point_leaves_a_trail_that_verifies(backend, five, point):
    killed_appending(backend, five, point)

    outside = backend.verify_outside(five)
    assert outside.ok, outside.problem
    stored = [row["seq"] for row in backend.audit_rows(five)]
    assert stored == list(range(1, 6 + COMMITTED[point]))
    # the row written to the head before its commit is in flight until the next writer
    assert outside.in_flight == (6 if point == "after the intent, before the commit" else None)

    seqs, result = rows_after_reopening(backend, five)
    assert result.ok and result.in_flight is None
    finished = COMMITTED[point] or point == "after the intent, before the commit"
    assert seqs == list(range(1, 6 + finished))
    with closing(backend.audit(five)) as trail:  # the caller's recovery appends it again
        assert trail.append(proposal(6))["seq"] == 6
        assert trail.verify().ok and len(trail.rows()) == 6


# --- each crash point, then the newest row cut -------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_a_cut_after_each_crash_point_is_reported_or_undone(backend, five, point):
    """The newest row deleted after the crash, the schema left as it was (SQLite: the trigger
    dropped and put back, PRAGMA schema_version restored). Row 5 was committed long before;
    row 6 only at the later points. Whatever was committed is reported missing or restored."""
    killed_appending(backend, five, point)
    backend.cut_newest_row(five)

    outside = backend.verify_outside(five)
    if point == "after the commit, before the mark":
        # the cut row 6 looks exactly like an append interrupted before its commit: it is in
        # flight in the head, and the next writer puts it back
        assert outside.ok and outside.in_flight == 6, outside.problem
        seqs, result = rows_after_reopening(backend, five)
        assert seqs == [1, 2, 3, 4, 5, 6] and result.ok
        return
    assert not outside.ok
    removed = {"before the intent": "rows 5..5 were removed",
               "after the intent, before the commit": "rows 5..6 were removed",
               "after the mark": "rows 6..6 were removed"}[point]
    assert removed in outside.problem
    with closing(backend.audit(five)) as trail:
        assert not trail.verify().ok
        with pytest.raises(AuditHeadError, match="were removed"):
            trail.append(proposal(7))


def test_a_row_cut_while_its_writer_is_between_commit_and_mark_is_reported(backend, five,
                                                                          monkeypatch):
    """The attack in the window itself, the writer alive: it writes its mark after the cut,
    so the head says row 6 was committed and the trail lacks it."""
    real_mark = HeldHead.write_mark

    def cut_then_mark(self, link, **kwargs):
        if link[0] == 6:
            backend.cut_newest_row(five)
        return real_mark(self, link, **kwargs)

    with closing(backend.audit(five)) as trail:
        monkeypatch.setattr(HeldHead, "write_mark", cut_then_mark)
        trail.append(proposal(6))
        monkeypatch.undo()
        result = trail.verify()
        assert not result.ok and "rows 6..6 were removed" in result.problem
        with pytest.raises(AuditIntegrityError, match="were removed|is gone"):
            trail.append(proposal(7))
    assert "rows 6..6 were removed" in backend.verify_outside(five).problem


def test_the_newest_committed_row_cut_without_a_crash_is_reported(backend, five):
    """The issue's attack: delete the last row behind the guard and leave the schema exactly
    as it was. Before, the head's allowance for an interrupted append took it for one."""
    backend.cut_newest_row(five)
    assert "rows 5..5 were removed" in backend.verify_outside(five).problem
    with closing(backend.audit(five)) as trail:
        result = trail.verify()
        assert not result.ok and "rows 5..5 were removed" in result.problem
        with pytest.raises(AuditHeadError):
            trail.append(proposal(6))
    assert len(backend.audit_rows(five)) == 4


# --- SQLite: what can be done to the files -------------------------------------------------------


def delete_wal(folder: Path) -> None:
    """What a killed writer committed since the last checkpoint is only in the -wal file."""
    for suffix in ("-wal", "-shm"):
        Path(f"{folder / 'audit.db'}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def sqlite_five(tmp_path) -> Path:
    from .conftest import SqliteBackend

    folder = tmp_path / "trail"
    folder.mkdir()
    with closing(SqliteBackend().audit(folder)) as trail:
        for n in range(1, 6):
            trail.append(proposal(n))
    return folder


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_writers_wal_deleted_hides_nothing(sqlite_five, point):
    from .conftest import SqliteBackend

    sqlite = SqliteBackend()
    killed_appending(sqlite, sqlite_five, point)
    delete_wal(sqlite_five)

    outside = verify_file(sqlite_five / "audit.db")
    if point == "after the mark":  # row 6 was committed and marked: it is missing
        assert not outside.ok and "rows 6..6 were removed" in outside.problem
        return
    assert outside.ok, outside.problem
    seqs, result = rows_after_reopening(sqlite, sqlite_five)
    assert result.ok
    # in flight at both middle points: rolled forward from the head
    assert seqs == list(range(1, 6 + (point != "before the intent")))


def test_a_writer_killed_after_its_append_returned_then_its_wal_deleted_is_reported(sqlite_five):
    """The issue's attack as it was found: before, the head written before the commit (one row
    ahead, the trail's end before it, the schema version) took the lost row for an append that
    never committed."""
    from .conftest import SqliteBackend

    def work():
        with closing(SqliteBackend().audit(sqlite_five)) as trail:
            trail.append(proposal(6))

    _, reached = run_child(work, block=True, hooks=lambda reached: _after(
        AuditTrail, "append", reached))
    assert reached
    delete_wal(sqlite_five)
    result = verify_file(sqlite_five / "audit.db")
    assert not result.ok and "rows 6..6 were removed" in result.problem
    with AuditTrail(sqlite_five / "audit.db", durable=False) as trail:
        assert not trail.verify().ok
        with pytest.raises(AuditHeadError):
            trail.append(proposal(7))


def test_vacuum_and_a_changed_schema_version_hide_nothing(sqlite_five):
    with closing(sqlite3.connect(sqlite_five / "audit.db", isolation_level=None)) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA schema_version = 1")
    assert verify_file(sqlite_five / "audit.db").ok
    with AuditTrail(sqlite_five / "audit.db", durable=False) as trail:
        trail.append(proposal(6))
        assert trail.verify().ok
    from .conftest import SqliteBackend

    SqliteBackend().cut_newest_row(sqlite_five)
    assert "rows 6..6 were removed" in verify_file(sqlite_five / "audit.db").problem


def test_an_older_copy_of_the_database_is_reported(sqlite_five, tmp_path):
    """A file swapped for a copy made one append earlier (before, not reported)."""
    db = sqlite_five / "audit.db"
    shutil.copy(db, tmp_path / "old.db")
    with AuditTrail(db, durable=False) as trail:
        trail.append(proposal(6))
    shutil.copy(tmp_path / "old.db", db)
    assert "rows 6..6 were removed" in verify_file(db).problem


# --- readers never see the head of one moment and the rows of another --------------------------


def test_verify_while_another_process_appends_never_reports_a_false_cut(backend, five):
    """Readers take the head file's shared lock while they pin their snapshot. Without it a
    reader could read the rows, then a head moved on by an append in between: rows removed."""
    pid = os.fork()
    if pid == 0:  # the child appends 200 rows and exits
        code = 1
        try:
            with closing(backend.audit(five)) as trail:
                for n in range(6, 206):
                    trail.append(proposal(n))
            code = 0
        finally:
            os._exit(code)
    results = []
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        results.append(backend.verify_outside(five))
    assert len(backend.audit_rows(five)) == 205, "the child failed"
    problems = [result.problem for result in results if not result.ok]
    assert results and problems == []


# --- the head file itself ------------------------------------------------------------------------


def test_a_write_torn_by_a_power_cut_falls_back_on_the_record_before(tmp_path):
    """Record 3 cut off after each of its bytes, the rest of the file as it was before: the
    head is record 2."""
    path = tmp_path / "h"
    head = HeadFile(path, durable=False)
    with head.locked(create=True) as held:
        held.write_mark((1, "a" * 64))
        held.write_mark((2, "b" * 64))
    before = path.read_bytes()
    with head.locked() as held:
        held.write_mark((3, "c" * 64))
    after = path.read_bytes()
    old = before.ljust(len(after), b"\0")
    changed = [i for i in range(len(after)) if after[i] != old[i]]  # what the write changed
    for cut in range(changed[0], changed[-1] + 1):  # new bytes up to `cut`, old ones after
        path.write_bytes(after[:cut] + old[cut:])
        assert read_head(path) == (2, "b" * 64), cut
    path.write_bytes(after)
    assert read_head(path) == (3, "c" * 64)


def test_each_write_leaves_the_newest_record_whole(tmp_path):
    """Records of every length, one after another: the newest before each write is still in
    the file, byte for byte, after it."""
    head = HeadFile(tmp_path / "h", durable=False)
    with head.locked(create=True) as held:
        held.write_mark((0, "0" * 64))
    for n in range(1, 60):
        before = (tmp_path / "h").read_bytes()
        newest = [line for line in before.split(b"\n") if f'"n":{n},'.encode() in line]
        with head.locked() as held:
            row = {name: None for name in audit_head.COLUMNS}
            row.update(seq=n, row_hash=f"{n:064d}", reason="x" * (n * 37 % 500))
            held.write_intent(row)
        assert newest and newest[0] in (tmp_path / "h").read_bytes()
        assert read_head_record(tmp_path / "h").seq == n


def test_a_head_file_of_the_earlier_format_is_read_as_a_mark(tmp_path):
    (tmp_path / "h").write_text('{"seq": 5, "row_hash": "' + "e" * 64 + '", "previous": '
                                '[4, "' + "d" * 64 + '"], "schema_version": 9}\n')
    assert read_head(tmp_path / "h") == (5, "e" * 64)
    with HeadFile(tmp_path / "h").locked() as held:
        held.write_mark((6, "f" * 64))
    assert read_head(tmp_path / "h") == (6, "f" * 64)


def test_a_head_file_with_no_valid_record_is_refused(sqlite_five):
    head = sqlite_five / "audit.head.json"
    head.write_text("not a head\n")
    assert "not a head file" in verify_file(sqlite_five / "audit.db").problem
    with AuditTrail(sqlite_five / "audit.db", durable=False) as trail, pytest.raises(
            AuditHeadError, match="not a head file"):
        trail.append(proposal(6))


def test_an_edited_row_in_flight_is_not_rolled_forward(sqlite_five):
    """A row in flight is checked like any other before it goes into the trail."""
    from hitl_kit.audit import COLUMNS, open_readonly

    with closing(open_readonly(sqlite_five / "audit.db")) as conn:
        fifth = dict(zip(COLUMNS, conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq = 5").fetchone(), strict=True))
    forged = {**fifth, "seq": 6, "prev_hash": fifth["row_hash"], "reason": "forged",
              "event_key": "thread-1:call-6:proposed"}  # row_hash: row 5's, not its own
    with HeadFile(sqlite_five / "audit.head.json").locked() as held:
        held.write_intent(forged)

    result = verify_file(sqlite_five / "audit.db")
    assert not result.ok and "does not match its row_hash" in result.problem
    with AuditTrail(sqlite_five / "audit.db", durable=False) as trail:
        assert len(trail.rows()) == 5  # not rolled forward
        with pytest.raises(AuditHeadError, match="does not match its row_hash"):
            trail.append(proposal(6))
