"""The audit trail's head, kept outside the database: what stops a cut of the newest rows.

A hash chain shows a row changed or removed in the middle; rows cut from the end leave a shorter
chain that is just as valid. A head ``(seq, row_hash)`` kept where the database's writer and its
administrators cannot rewrite it catches that. The SQLite trail (``hitl_kit.audit``) and the
PostgreSQL trail (``hitl_kit.postgres_audit``) share this protocol.

The protocol
------------
Every append, holding the head file's lock from start to end:

1. reads the head and checks the trail's newest row against it (``check_end``);
2. inserts its row, in a transaction, and reads it back;
3. writes an **intent** to the head: the whole row, durably (``fdatasync`` when ``durable``);
4. commits;
5. writes a **commit mark**: the row's ``(seq, row_hash)``, without waiting for the disk.

A row is *committed* once its mark is in the head. ``check_end`` reads the head and the trail's
newest row (``last``) and accepts exactly three states:

* the head's newest record is ``last`` (a mark, or an intent whose mark was not written yet);
* the head holds an intent for the row after ``last``, chained to it: the row is **in flight**.
  An append was interrupted between steps 3 and 5, or its row was committed and then removed
  (a SIGKILLed writer, its ``-wal`` file deleted). Nobody can tell these apart from the files:
  they are byte for byte the same. So neither is trusted to mean "nothing happened": the head
  holds the row itself, it is checked (hash, link, rules) like any row, reported by ``verify``
  (``VerifyResult.in_flight``) and written back into the trail by the next writer to open it
  or append (roll forward). A row in flight can be delayed, never hidden;
* nothing else. A committed row missing from the trail (the head's mark past ``last``) is
  reported as removed, and ``append`` refuses to write after it.

Why each crash and attack ends well (N = the newest committed row, N+1 the one appended):

============================  ========================  =====================================
the writer stopped            trail, head               what happens
============================  ========================  =====================================
before the intent (1-2)       N, mark N                 nothing to do: the transaction never
                                                        committed
after the intent (3)          N, intent N+1             in flight: N+1 is rolled forward
after the commit (4)          N+1, intent N+1           committed; the next writer goes on
after the mark (5)            N+1, mark N+1             committed
============================  ========================  =====================================

and whatever an attacker does to the database file alone, in any order with a crash: delete a
committed row behind dropped and restored triggers, restore ``PRAGMA schema_version``, delete the
``-wal`` file of a killed writer, ``VACUUM``, swap in an older copy. Each leaves the trail
*shorter* than the head says. If it ends at N and the head holds the intent for N+1, the
removed row is rolled forward (it was in flight, or is treated exactly as if it were); if it
ends anywhere else short of the head, the rows are reported removed. Nothing done to the
database changes what the head holds, and only the head decides what counts as committed.

The mark does not wait for the disk: a power cut that loses it leaves the intent, so the row is
in flight again (written back, not lost). The intent does wait: a commit the head has not
recorded could be cut unseen. An intent always goes to a place in the file that does not
overlap the head's newest record, and each record carries a checksum, so a write torn by a power
cut falls back on the record before it. Writers hold an exclusive ``flock`` on the head file for
the whole append (so marks and intents land in chain order); readers hold a shared one while
they read the head and pin their database snapshot (so they never see the head of one moment
and the rows of another).

The file: one line per record, ``<16 hex of sha256> <JSON>``, records numbered; the highest
valid number wins. ``read_head`` gives the newest ``(seq, row_hash)``; a one-object JSON file of
earlier versions is read as a mark.

Limits: someone who can rewrite the head too can rewrite history; keep a copy of it out of
reach (``read_head`` gives what to copy). With ``durable=False`` neither the trail nor the head
waits for the disk: a power cut (not a process crash) may then lose both ways and be reported.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hitl_kit.audit_chain import (
    COLUMNS,
    GENESIS_HASH,
    AuditHeadError,
    VerifyResult,
    canonical_row,
    check_row,
    compute_row_hash,
)

_CHECK_LENGTH = 16  # hex characters of sha256 before each record
_COLUMN_SET = frozenset(COLUMNS)


@dataclass(frozen=True)
class HeadRecord:
    """One record of a head file: the row ``(seq, row_hash)``; with ``row``, an intent (the
    whole row, about to be committed); ``number`` orders records (the highest is the head)."""

    seq: int
    row_hash: str
    row: dict | None = None
    number: int = 0

    @property
    def link(self) -> tuple[int, str]:
        return self.seq, self.row_hash


@dataclass(frozen=True)
class EndCheck:
    """What ``check_end`` decided: the ``(seq, row_hash)`` the stored chain must end at (None:
    no head to check against), a row the head holds that the trail does not yet (``in_flight``)
    and, when the head cannot be used, why (``problem``)."""

    end: tuple[int, str] | None
    in_flight: dict | None = None
    problem: str | None = None

    def applied_to(self, result: VerifyResult) -> VerifyResult:
        """``result`` of checking the chain against ``end``, failed if the head had a problem."""
        if self.problem and result.ok:
            return VerifyResult(False, result.rows_checked, None, self.problem)
        return result


def check_end(last: tuple[int, str] | None, head: HeadRecord | None, head_path: Path
              ) -> EndCheck:
    """How the trail's newest row ``last`` must relate to the head (see the module docstring)."""
    if head is None:
        return EndCheck(None, problem=f"the head file {head_path} is missing, but this trail "
                                      "keeps its head there: rows may have been cut from its end")
    last = last or (0, GENESIS_HASH)
    row = head.row
    if row is not None and last != head.link and last == (head.seq - 1, row.get("prev_hash")):
        return EndCheck(head.link, in_flight=row)
    return EndCheck(head.link)


def read_end(held: HeldHead, last: tuple[int, str] | None) -> EndCheck:
    """``check_end`` with the head as ``held`` reads it; a head that cannot be read is a
    problem."""
    try:
        return check_end(last, held.read(), held.path)
    except ValueError as exc:
        return EndCheck(None, problem=str(exc))


def row_in_flight(held: HeldHead, last: tuple[int, str] | None, how_to_check: str
                  ) -> dict | None:
    """Before an append after ``last``: the row in flight to write first, if any.
    AuditHeadError if the head says the trail lost rows, or cannot be read; ``how_to_check``
    says how to check the trail against a head you trust."""
    check = read_end(held, last)
    problem = append_problem(last, check, held.path)
    if problem:
        raise AuditHeadError(
            f"{problem}. Nothing was written. Check the trail against a copy of the head you "
            f"trust ({how_to_check}); if the rows are right, call reanchor() to write a new head "
            "at the trail's end.")
    return check.in_flight


class HeadFile:
    """A head file on disk. ``locked()`` gives a ``HeldHead`` to read and write it."""

    def __init__(self, path: str | os.PathLike, *, durable: bool = True):
        self.path, self.durable = Path(path), durable
        # The file's bytes after this object's last read or write, and its newest record:
        # a file still holding exactly those bytes needs no parsing.
        self._known: tuple[bytes, tuple[int, int, HeadRecord] | None] | None = None

    @contextmanager
    def locked(self, *, shared: bool = False, create: bool = False) -> Iterator[HeldHead]:
        """The file locked for this block: exclusively to write, ``shared`` to read. A missing
        file reads as None; only ``create`` makes a new one (an append must never recreate a
        head someone deleted)."""
        flags = os.O_RDONLY if shared else os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            yield HeldHead(self, None)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield HeldHead(self, fd)
        finally:
            os.close(fd)  # releases the lock


class HeldHead:
    """The head file while its lock is held."""

    def __init__(self, head: HeadFile, fd: int | None):
        self._head, self._fd = head, fd
        self._newest: tuple[int, int, HeadRecord] | None = None  # (start, end, record)
        self._loaded = False

    @property
    def path(self) -> Path:
        return self._head.path

    def load(self) -> None:
        """Read the file now, while the lock is held: ``read`` then answers from memory."""
        if self._fd is None or self._loaded:
            return
        data, known = _read_all(self._fd), self._head._known
        self._newest = known[1] if known is not None and known[0] == data else _newest(data)
        self._head._known, self._loaded = (data, self._newest), True

    def read(self) -> HeadRecord | None:
        """The newest valid record; None if there is no file. ValueError if the file holds
        no valid record."""
        if self._fd is None:
            return None
        self.load()
        if self._newest is None:
            raise ValueError(f"{self._head.path} is not a head file (no valid record in it)")
        return self._newest[2]

    def write_intent(self, row: dict, canonical: str | None = None) -> None:
        """Record ``row`` as about to be committed; on disk before this returns (durable).
        ``canonical``: the row's ``canonical_row`` text, if the caller has it already."""
        self._write(HeadRecord(row["seq"], row["row_hash"], row), sync=self._head.durable,
                    canonical=canonical_row(row) if canonical is None else canonical)

    def write_mark(self, link: tuple[int, str], *, sync: bool = False) -> None:
        """Record the row ``link`` as committed. After a commit it need not wait for the disk
        (its intent did); a new anchor (``sync``) must."""
        self._write(HeadRecord(*link), sync=sync and self._head.durable)

    def _write(self, record: HeadRecord, *, sync: bool, canonical: str | None = None) -> None:
        if self._fd is None:
            raise FileNotFoundError(f"the head file {self._head.path} is missing")
        self.load()
        newest = self._newest
        number = newest[2].number + 1 if newest else 1
        line = _line(number, record, canonical)
        # Never over the newest record: a write torn by a power cut leaves that one whole.
        at = 0 if newest is None or len(line) <= newest[0] else newest[1]
        os.pwrite(self._fd, line, at)
        if sync:
            os.fdatasync(self._fd)
        self._newest = (at, at + len(line), HeadRecord(record.seq, record.row_hash, record.row,
                                                       number))
        data = self._head._known[0]
        self._head._known = (data[:at].ljust(at, b"\0") + line + data[at + len(line):],
                             self._newest)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, at = [], 0
    while at < size:
        chunk = os.pread(fd, size - at, at)
        if not chunk:
            break
        chunks.append(chunk)
        at += len(chunk)
    return b"".join(chunks)


def _line(number: int, record: HeadRecord, canonical: str | None) -> bytes:
    """``<check> {"n":..,"row":..,"row_hash":..,"seq":..}`` and a line break. The row is its
    canonical text (``canonical_row``: every column but row_hash, keys sorted), so the record
    is the canonical JSON of its fields and costs no second encoding."""
    row = "" if canonical is None else f'"row":{canonical},'
    body = (f'{{"n":{number},{row}"row_hash":{json.dumps(record.row_hash)},'
            f'"seq":{record.seq}}}').encode("utf-8", "surrogatepass")
    return hashlib.sha256(body).hexdigest()[:_CHECK_LENGTH].encode() + b" " + body + b"\n"


_NUMBER = re.compile(rb'[0-9a-f]{16} \{"n":([0-9]{1,18}),')


def _newest(data: bytes) -> tuple[int, int, HeadRecord] | None:
    """(start, end, record) of the valid record with the highest number in ``data``. Only the
    lines are checked that could be it, newest first. A line that is one JSON object is a head
    of earlier versions: a mark numbered 0."""
    lines, at = [], 0
    for raw in data.split(b"\n"):
        found = _NUMBER.match(raw)
        number = int(found[1]) if found else 0 if raw.startswith(b"{") else -1
        if number >= 0:
            lines.append((number, at, raw))
        at += len(raw) + 1
    for _, start, raw in sorted(lines, key=lambda line: line[0], reverse=True):
        record = _legacy(raw) if raw.startswith(b"{") else _record(raw)
        if record is not None:
            return start, min(start + len(raw) + 1, len(data)), record
    return None


def _record(raw: bytes) -> HeadRecord | None:
    check, _, body = raw.partition(b" ")
    if hashlib.sha256(body).hexdigest()[:_CHECK_LENGTH].encode() != check:
        return None
    try:
        saved = json.loads(body.decode("utf-8", "surrogatepass"))
        row = saved.get("row")
        if isinstance(row, dict):
            row = {**row, "row_hash": saved["row_hash"]}
        record = HeadRecord(saved["seq"], saved["row_hash"], row, saved["n"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return record if _well_formed(record) else None


def _well_formed(record: HeadRecord) -> bool:
    if type(record.seq) is not int or type(record.number) is not int:
        return False
    if not (isinstance(record.row_hash, str) and len(record.row_hash) == 64):
        return False
    row = record.row
    return row is None or (isinstance(row, dict) and set(row) == _COLUMN_SET
                           and row["seq"] == record.seq)


def _legacy(data: bytes) -> HeadRecord | None:
    try:
        saved = json.loads(data)
        record = HeadRecord(saved["seq"], saved["row_hash"])
    except (ValueError, TypeError, KeyError):
        return None
    return record if _well_formed(record) else None


def read_head_record(head_path: str | os.PathLike) -> HeadRecord | None:
    """The newest record of a head file (read under its shared lock), or None if there is no
    file. ValueError if it holds no valid record."""
    with HeadFile(head_path).locked(shared=True) as held:
        return held.read()


def read_head(head_path: str | os.PathLike) -> tuple[int, str] | None:
    """The newest ``(seq, row_hash)`` in a head file (what to keep a copy of), or None if there
    is no file. ValueError if the file is not a head."""
    record = read_head_record(head_path)
    return None if record is None else record.link


def append_problem(last: tuple[int, str] | None, check: EndCheck, head_path: Path) -> str | None:
    """Why an append must not go on after ``last`` (the trail's newest row) with this head, or
    None. A row in flight must be one the trail can take: its own hash, the rules."""
    if check.problem is not None:
        return check.problem
    row = check.in_flight
    if row is not None:
        if compute_row_hash(row) != row["row_hash"]:
            return (f"row {row['seq']}, in flight in the head file {head_path}, does not match "
                    "its row_hash: the head file was edited")
        try:
            check_row(row)
        except ValueError as exc:
            return f"row {row['seq']}, in flight in the head file {head_path}, breaks a rule: {exc}"
        return None
    expected = last or (0, GENESIS_HASH)
    if check.end is None or check.end == expected:
        return None
    seq = check.end[0]
    if seq > expected[0]:
        return (f"the head file {head_path} says row {seq}, the trail ends at row {expected[0]}: "
                f"rows {expected[0] + 1}..{seq} were removed")
    if seq < expected[0]:
        return (f"the head file {head_path} says row {seq}, the trail ends at row {expected[0]}: "
                "rows after the head were not written by the trail, or the head is an old copy")
    return f"the head file {head_path} has another hash for row {seq}"
