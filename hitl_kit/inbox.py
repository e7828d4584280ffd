"""The asynchronous pattern: approvals wait in an inbox while the agent gets on with other work.

``ApprovalInbox.submit`` starts a task on its own thread; when the task pauses for a person, the
call returns at once and the agent can start the next one. The inbox lists what the decision
ledger's index says is pending (one query, whatever the number of threads), as ``Pending``
requests, so with a durable checkpointer the inbox is still full after a kernel restart; a
crashed process's half-finished resumes are recovered when an inbox is opened.

A reviewer answers one request or many at once. Each one is resumed on its own with
``agent.resume``, bound to the request as the reviewer saw it (its fingerprint): if it is gone,
decided elsewhere, or changed since it was listed, the answer is refused and nothing runs; one
that fails is reported and the others go ahead. ``on_decided`` callbacks hear about every
thread resumed.

``hitl_kit.inbox_widget.InboxWidget`` is the same inbox in JupyterLab.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hitl_kit.approval import ApprovalAgent, ApprovalError, Outcome
from hitl_kit.audit import canonical_json
from hitl_kit.contract import Decision, NotAllowed, Pending, as_decision, judge
from hitl_kit.vocabulary import Channel, Risk

RISK_ORDER = {Risk.HIGH: 0, Risk.MEDIUM: 1, Risk.LOW: 2}

Clock = Callable[[], datetime]
DeadlineOf = Callable[[Pending], datetime | None]


def stored_deadline(pending: Pending) -> datetime | None:
    """The default ``deadline_of``: the deadline a timer armed, else the request's expiry."""
    if pending.deadline_at is not None:
        return datetime.fromtimestamp(pending.deadline_at, UTC)
    if pending.request.expires_at is not None:
        return datetime.fromisoformat(pending.request.expires_at)
    return None


def describe_duration(span: timedelta) -> str:
    """A short human reading of a duration: '42 s', '5 min', '3 h', '2 d'."""
    seconds = abs(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


@dataclass(frozen=True)
class Resolution:
    """What became of one answer: ``resumed`` True when its thread went on."""

    item: Pending
    resumed: bool
    message: str
    decision: Decision | None = None
    outcome: Outcome | None = None

    def __str__(self) -> str:
        return f"{self.item.thread_id} {self.item.request.tool}: {self.message}"


class ApprovalInbox:
    """Every pending request of an agent, across threads, from its decision ledger's index.

    Opening an inbox first recovers what a crashed process left half-done (``recover=False``
    to skip it); ``recovered`` lists what that did. ``deadline_of(pending)`` says when a
    request's deadline passes (default: ``stored_deadline``).
    """

    def __init__(self, agent: ApprovalAgent, *, clock: Clock | None = None,
                 deadline_of: DeadlineOf = stored_deadline, recover: bool = True):
        self.agent = agent
        self.clock = clock or (lambda: datetime.now(UTC))
        self.deadline_of = deadline_of
        self._callbacks: list[Callable[[Resolution], None]] = []
        self._lock = threading.RLock()  # one resolve at a time from this inbox
        self.recovered = agent.recover() if recover else []

    # -- asking -----------------------------------------------------------------------------------
    def submit(self, task: str, thread_id: str, *, requested_by: str | None = None) -> Outcome:
        """Start a task on a new thread. If it pauses, its requests wait here; either way the
        call returns without waiting for anyone."""
        return self.agent.start(task, thread_id, requested_by=requested_by)

    # -- looking ----------------------------------------------------------------------------------
    def thread_ids(self) -> list[str]:
        """Every thread with a request pending."""
        return sorted({p.thread_id for p in self.agent.ledger.index.listed()})

    def items(self) -> list[Pending]:
        """Every pending request: nearest deadline first, then highest risk, then oldest."""
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(self.agent.ledger.index.listed(), key=lambda p: (
            self.deadline_of(p) or far, RISK_ORDER.get(p.request.risk, 0), p.asked_at))

    def get(self, thread_id: str, interrupt_id: str) -> Pending | None:
        """The request still pending under this key, as it is now, or None."""
        return next((p for p in self.agent.ledger.index.listed(thread_id)
                     if p.interrupt_id == interrupt_id), None)

    def when(self, pending: Pending) -> str:
        """How long it has waited, plus the countdown when it has a deadline."""
        now = self.clock()
        text = f"waiting {describe_duration(now - pending.asked())}"
        deadline = self.deadline_of(pending)
        if deadline is None:
            return text
        left = deadline - now
        if left.total_seconds() <= 0:
            return f"{text}; deadline passed {describe_duration(left)} ago"
        return f"{text}; deadline in {describe_duration(left)}"

    def rows(self) -> list[dict]:
        """``items()`` as flat rows, for a table."""
        now = self.clock()
        rows = []
        for pending in self.items():
            deadline = self.deadline_of(pending)
            request = pending.request
            rows.append({"thread": pending.thread_id, "risk": str(request.risk),
                         "tool": request.tool, "args": canonical_json(request.args),
                         "task": request.task,
                         "age_s": round((now - pending.asked()).total_seconds(), 1),
                         "time_left_s": None if deadline is None
                         else round((deadline - now).total_seconds(), 1)})
        return rows

    # -- answering --------------------------------------------------------------------------------
    def on_decided(self, callback: Callable[[Resolution], None], remove: bool = False) -> None:
        """Call ``callback(resolution)`` each time an answer from this inbox resumes a thread."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def approve(self, items: Iterable[Pending], approver: str, reason: str = "", *,
                channel: str = Channel.INBOX) -> list[Resolution]:
        """Approve every item, each on its own (see ``resolve``)."""
        decision = {"kind": "approve", "approver": approver, "reason": reason}
        return self.resolve([(item, decision) for item in items], channel=channel)

    def reject(self, items: Iterable[Pending], approver: str, reason: str = "", *,
               channel: str = Channel.INBOX) -> list[Resolution]:
        """Reject every item, each on its own; the reason goes to the agent."""
        decision = {"kind": "reject", "approver": approver, "reason": reason}
        return self.resolve([(item, decision) for item in items], channel=channel)

    def resolve(self, answers: Iterable[tuple[Pending, dict | Decision]], *,
                channel: str = Channel.INBOX) -> list[Resolution]:
        """Answer each (request as listed, decision) on its own, in order; one Resolution each.

        Malformed input is refused before anything resumes. After that, a problem with one
        item (decided elsewhere, changed, its resume failed) is reported and the rest go ahead.
        """
        checked = self._check(list(answers))
        with self._lock:
            return [self._resolve_one(item, decision, channel) for item, decision in checked]

    def _check(self, answers: list) -> list[tuple[Pending, Decision]]:
        if not answers:
            raise ApprovalError("no approvals given: select at least one")
        checked, seen = [], set()
        for entry in answers:
            if not (isinstance(entry, tuple) and len(entry) == 2
                    and isinstance(entry[0], Pending)):
                raise ApprovalError(f"answer with (Pending, decision) pairs, not {entry!r}"[:300])
            item, value = entry
            if item.key[:2] in seen:
                raise ApprovalError(f"{item.request.tool} on thread {item.thread_id!r} is "
                                    "listed twice")
            seen.add(item.key[:2])
            # Bound to what the reviewer saw: a changed request is refused, not decided.
            decision = as_decision(value)
            decision = decision.model_copy(
                update={"fingerprint": decision.fingerprint or item.fingerprint})
            # What is wrong with the answer itself refuses the batch; who may give it is judged
            # per item when it is resumed (a refusal there is audited).
            with contextlib.suppress(NotAllowed):
                judge(decision, item.request, tool=self.agent.tools.get(item.request.tool))
            checked.append((item, decision))
        return checked

    def _resolve_one(self, item: Pending, decision: Decision, channel: str) -> Resolution:
        try:
            outcome = self.agent.resume(item.thread_id, {item.interrupt_id: decision},
                                        channel=channel)
        except ApprovalError as exc:
            return Resolution(item, False, f"refused, nothing ran: {exc}", decision)
        except Exception as exc:  # one failing item must not hide the others
            return Resolution(item, False, f"failed: {type(exc).__name__}: {exc}", decision)
        message = f"{decision.kind.past} by {decision.approver}; " + (
            f"{len(outcome.pending)} request(s) now pending on this thread" if outcome.paused
            else "thread finished")
        resolution = Resolution(item, True, message, decision, outcome)
        for callback in list(self._callbacks):
            try:
                callback(resolution)
            except Exception as exc:  # the decision stands either way
                resolution = Resolution(item, True, f"{message} (on_decided callback failed: "
                                        f"{type(exc).__name__}: {exc})", decision, outcome)
        return resolution
