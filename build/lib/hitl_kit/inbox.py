"""The asynchronous pattern: approvals wait in an inbox while the agent gets on with other work.

``ApprovalInbox.submit`` starts a task on its own thread; when the task pauses for a human, the
call returns at once and the agent can start the next one. The inbox lists what the decision
ledger's index says is pending (one query, whatever the number of threads), so with a durable
checkpointer the inbox is still full after a kernel restart; a crashed process's half-finished
resumes are recovered when an inbox is opened.

A reviewer answers one approval or many at once. Each one is resumed on its own with
``agent.resume``; one that fails is reported and the others go ahead. An answer is bound to what
the reviewer saw: if the approval is gone, or its tool, arguments or target changed since it was
listed, the answer is refused and nothing runs. ``on_decided`` callbacks hear about every thread
resumed.

``hitl_kit.inbox_widget.InboxWidget`` is the same inbox in JupyterLab.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hitl_kit.approval import (
    ApprovalAgent,
    ApprovalError,
    Outcome,
    Pending,
    parse_decision,
)
from hitl_kit.audit import canonical_json
from hitl_kit.vocabulary import Channel, Kind, Risk

RISK_ORDER = {Risk.HIGH: 0, Risk.MEDIUM: 1, Risk.LOW: 2}

Clock = Callable[[], datetime]
DeadlineOf = Callable[[str, Pending], datetime | None]


def payload_deadline(thread_id: str, pending: Pending) -> datetime | None:
    """The default ``deadline_of``: the payload's ``deadline``, else its ``expires_at`` (a
    datetime, ISO 8601 text or epoch seconds), when it has one that can be read."""
    value = pending.payload.get("deadline", pending.payload.get("expires_at"))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):  # NaN, or far outside the calendar
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def describe_duration(span: timedelta) -> str:
    """A short human reading of a duration: '42 s', '5 min', '3 h', '2 d'."""
    seconds = abs(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


@dataclass(frozen=True)
class InboxItem:
    """One pending approval as a reviewer saw it when the inbox was listed."""

    thread_id: str
    interrupt_id: str
    payload: dict
    asked_at: datetime
    listed_at: datetime
    deadline: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.thread_id, self.interrupt_id)

    @property
    def fingerprint(self) -> str:
        """The request's fingerprint (``hitl_kit.requests.request_fingerprint``)."""
        return self.payload["fingerprint"]

    @property
    def tool(self) -> str:
        return self.payload["tool"]

    @property
    def risk(self) -> str:
        return self.payload.get("risk", "high")

    @property
    def age(self) -> timedelta:
        return self.listed_at - self.asked_at

    @property
    def time_left(self) -> timedelta | None:
        return None if self.deadline is None else self.deadline - self.listed_at

    def when(self) -> str:
        """Age, plus the countdown when there is a deadline."""
        text = f"waiting {describe_duration(self.age)}"
        left = self.time_left
        if left is None:
            return text
        if left.total_seconds() <= 0:
            return f"{text}; deadline passed {describe_duration(left)} ago"
        return f"{text}; deadline in {describe_duration(left)}"

    def summary(self) -> dict:
        """One flat row for a table (``pandas.DataFrame(inbox.rows())``)."""
        left = self.time_left
        return {
            "thread": self.thread_id, "risk": self.risk, "tool": self.tool,
            "args": canonical_json(self.payload["args"]), "task": self.payload.get("task", ""),
            "age_s": round(self.age.total_seconds(), 1),
            "time_left_s": None if left is None else round(left.total_seconds(), 1),
        }


@dataclass(frozen=True)
class Resolution:
    """What became of one answer: ``resumed`` True when its thread went on."""

    item: InboxItem
    resumed: bool
    message: str
    decision: dict | None = None
    outcome: Outcome | None = None

    def __str__(self) -> str:
        return f"{self.item.thread_id} {self.item.tool}: {self.message}"


class ApprovalInbox:
    """Every pending approval of an agent, across threads, from its decision ledger's index.

    Opening an inbox first recovers what a crashed process left half-done (``recover=False``
    to skip it); ``recovered`` lists what that did.
    """

    def __init__(self, agent: ApprovalAgent, *, clock: Clock | None = None,
                 deadline_of: DeadlineOf = payload_deadline, recover: bool = True):
        self.agent = agent
        self.clock = clock or (lambda: datetime.now(UTC))
        self.deadline_of = deadline_of
        self._callbacks: list[Callable[[Resolution], None]] = []
        self._lock = threading.RLock()  # one resolve at a time from this inbox
        self.recovered = agent.recover() if recover else []

    # -- asking -----------------------------------------------------------------------------------
    def submit(self, task: str, thread_id: str, *, requested_by: str | None = None) -> Outcome:
        """Start a task on a new thread. If it pauses, its approvals wait here; either way the
        call returns without waiting for anyone."""
        return self.agent.start(task, thread_id, requested_by=requested_by)

    # -- looking ----------------------------------------------------------------------------------
    def thread_ids(self) -> list[str]:
        """Every thread with an approval pending."""
        return sorted(self.agent.ledger.indexed_threads())

    def items(self) -> list[InboxItem]:
        """Every pending approval: nearest deadline first, then highest risk, then oldest."""
        now = self.clock()
        found = [self._item(r, now) for r in self.agent.ledger.requests()]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda i: (i.deadline or far, RISK_ORDER.get(i.risk, 0),
                                            i.asked_at))

    def get(self, thread_id: str, interrupt_id: str) -> InboxItem | None:
        """The approval still pending under this key, as it is now, or None."""
        now = self.clock()
        return next((self._item(r, now) for r in self.agent.ledger.requests(thread_id)
                     if r.interrupt_id == interrupt_id), None)

    def rows(self) -> list[dict]:
        """``items()`` as flat rows, for a table."""
        return [item.summary() for item in self.items()]

    def _item(self, request, now: datetime) -> InboxItem:
        pending = Pending(request.interrupt_id, request.payload)
        deadline = self.deadline_of(request.thread_id, pending)
        if deadline is None and request.deadline_at is not None:
            deadline = datetime.fromtimestamp(request.deadline_at, UTC)
        return InboxItem(request.thread_id, request.interrupt_id, request.payload,
                         datetime.fromisoformat(request.asked_at), now, deadline)

    # -- answering --------------------------------------------------------------------------------
    def on_decided(self, callback: Callable[[Resolution], None], remove: bool = False) -> None:
        """Call ``callback(resolution)`` each time an answer from this inbox resumes a thread."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def approve(self, items: Iterable[InboxItem], approver: str, reason: str = "", *,
                channel: str = Channel.INBOX) -> list[Resolution]:
        """Approve every item, each on its own (see ``resolve``)."""
        decision = {"kind": "approve", "approver": approver, "reason": reason}
        return self.resolve([(item, decision) for item in items], channel=channel)

    def reject(self, items: Iterable[InboxItem], approver: str, reason: str = "", *,
               channel: str = Channel.INBOX) -> list[Resolution]:
        """Reject every item, each on its own; the reason goes to the agent."""
        decision = {"kind": "reject", "approver": approver, "reason": reason}
        return self.resolve([(item, decision) for item in items], channel=channel)

    def resolve(self, answers: Iterable[tuple[InboxItem, dict]], *,
                channel: str = Channel.INBOX) -> list[Resolution]:
        """Answer each (item, decision) on its own, in order; one Resolution per answer.

        Malformed input is refused before anything resumes. After that, a problem with one item
        (decided elsewhere, changed, its resume failed) is reported and the rest go ahead.
        """
        checked = self._check(list(answers))
        with self._lock:
            return [self._resolve_one(item, decision, channel) for item, decision in checked]

    def _check(self, answers: list) -> list[tuple[InboxItem, dict]]:
        if not answers:
            raise ApprovalError("no approvals given: select at least one")
        checked, seen = [], set()
        for entry in answers:
            if not (isinstance(entry, tuple) and len(entry) == 2
                    and isinstance(entry[0], InboxItem)):
                raise ApprovalError(f"answer with (InboxItem, decision) pairs, not {entry!r}")
            item, value = entry
            if item.key in seen:
                raise ApprovalError(f"{item.tool} on thread {item.thread_id!r} is listed twice")
            seen.add(item.key)
            tool = self.agent.tools.get(item.tool)
            checked.append((item, parse_decision(value, tool).as_dict()))
        return checked

    def _resolve_one(self, item: InboxItem, decision: dict, channel: str) -> Resolution:
        current = self.get(item.thread_id, item.interrupt_id)
        if current is not None and (current.fingerprint, canonical_json(current.payload["args"])
                                    ) != (item.fingerprint, canonical_json(item.payload["args"])):
            return Resolution(item, False, "refused, nothing ran: its tool or arguments changed "
                              "since you saw it; list the inbox again and look", decision)
        # The agent checks the binding to what was shown again, atomically, with the claim.
        decision = {**decision, "fingerprint": item.fingerprint}
        try:
            # Gone from the inbox or not, the agent has the last word: it says who decided.
            outcome = self.agent.resume(item.thread_id, {item.interrupt_id: decision},
                                        channel=channel)
        except ApprovalError as exc:
            return Resolution(item, False, f"refused, nothing ran: {exc}", decision)
        except Exception as exc:  # one failing item must not hide the others
            return Resolution(item, False, f"failed: {type(exc).__name__}: {exc}", decision)
        message = f"{Kind(decision['kind']).past} by {decision['approver']}; " + (
            f"{len(outcome.pending)} approval(s) now pending on this thread" if outcome.paused
            else "thread finished")
        resolution = Resolution(item, True, message, decision, outcome)
        for callback in list(self._callbacks):
            try:
                callback(resolution)
            except Exception as exc:  # the decision stands either way
                resolution = Resolution(item, True, f"{message} (on_decided callback failed: "
                                        f"{type(exc).__name__}: {exc})", decision, outcome)
        return resolution
