"""Deadlines for pending approvals: when nobody decides in time, a safe default is applied.

LangGraph has no approval deadline (a paused thread waits forever), so the deadline lives outside
the graph, in a ``threading.Timer`` per pending request::

    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(300),
                                      "soft_gate": Deadline(60, default="proceed")})
    watcher.watch(agent.start(task, "t1"))

What a deadline's ``default`` does when it passes:

* ``reject`` (the default): the system answers; nothing runs, and the audit trail records the
  decision "timed-out" by approver "system".
* ``escalate``: the request stays pending and goes to ``escalate_to`` (recorded in the decision
  ledger, and ``on_escalate`` is called to notify them), with a fresh deadline: ``then``, or the
  same time again followed by a rejection.
* ``proceed``: soft gates only, the mirror image of reject: the call runs unless somebody
  rejected it within the window.

The default goes through ``ApprovalAgent.apply_default``, so it must win the request's claim in
the ledger like any click: a click and the timer at the same instant give exactly one decision.
A person deciding first cancels the timer.

Deadlines survive a restart: each is stored in the decision ledger as an absolute time with its
request when the timer is first armed (a later arming keeps the stored time, so a restart never
pushes a deadline back). ``DeadlineWatcher.rearm()`` in a new process arms a timer for every
pending request from the stored times, and applies the default at once where it has passed.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hitl_kit.approval import AlreadyDecided, ApprovalAgent, Outcome
from hitl_kit.contract import Pending, may_proceed
from hitl_kit.ledger import Claim
from hitl_kit.vocabulary import Kind, Policy

DEFAULTS = ("reject", "escalate", "proceed")
GATES = tuple(p.value for p in Policy if p.needs_human)

# ApprovalTimer.state: the first two while it runs, the others once it is settled.
WAITING, ESCALATED = "waiting", "escalated"
DECIDED, TIMED_OUT, PROCEEDED = "decided", "timed-out", "proceeded"
CANCELLED, FAILED = "cancelled", "failed"
STATE_OF_SYSTEM_KIND = {"timeout": TIMED_OUT, "proceed": PROCEEDED}


@dataclass(frozen=True)
class Deadline:
    """How long a pending approval waits for a person, and what happens when nobody decides.

        >>> Deadline(300).describe()
        'rejected by default, nothing runs'
        >>> Deadline(60, "escalate", escalate_to="oncall").after_escalation
        Deadline(seconds=60, default='reject', escalate_to=None, then=None)
        >>> Deadline(60, "proceed").describe()  # soft gates only: see ApprovalTimer
        'it proceeds (soft gate)'
    """

    seconds: float
    default: str = "reject"  # reject | escalate | proceed (soft gates only)
    escalate_to: str | None = None  # who gets the request, for default == "escalate"
    then: Deadline | None = None  # their deadline (default: the same time, then reject)

    def __post_init__(self):
        if (isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float)
                or not 0 < self.seconds < math.inf):
            raise ValueError(f"a deadline is a positive number of seconds, not {self.seconds!r}")
        if self.default not in DEFAULTS:
            raise ValueError(f"default {self.default!r} is unknown; use one of {DEFAULTS}")
        escalates = self.default == "escalate"
        if escalates != (isinstance(self.escalate_to, str) and bool(self.escalate_to.strip())):
            raise ValueError("default 'escalate' needs escalate_to (who gets the request), and "
                             "only 'escalate' takes one")
        if self.then is not None and not escalates:
            raise ValueError("'then' is the deadline after an escalation; give it only with "
                             "default 'escalate'")

    @property
    def after_escalation(self) -> Deadline:
        return self.then if self.then is not None else Deadline(self.seconds)

    def describe(self) -> str:
        """What happens when this deadline passes, for people."""
        return {"reject": "rejected by default, nothing runs",
                "escalate": f"handed to {self.escalate_to}",
                "proceed": "it proceeds (soft gate)"}[self.default]


class ApprovalTimer:
    """The deadline of one pending request: the default is applied unless someone decides first.

    ``state`` is waiting or escalated while it runs, then decided (a person was first),
    timed-out, proceeded, cancelled or failed. ``claim`` is the decision that won, ``outcome``
    where the thread stood after it (when this process applied it), ``done`` is set once settled.
    """

    def __init__(self, agent: ApprovalAgent, pending: Pending, deadline: Deadline,
                 on_escalate: Callable[[ApprovalTimer, str], None] | None = None):
        if deadline.default == "proceed" and pending.request.policy != Policy.SOFT_GATE:
            raise ValueError(f"only a soft gate proceeds by default; this request is a "
                             f"{pending.request.policy}: use reject or escalate")
        self.agent, self.thread_id, self.pending = agent, pending.thread_id, pending
        self.deadline = deadline  # the one running now; an escalation replaces it
        self.on_escalate = on_escalate
        self.state = WAITING
        self.claim: Claim | None = None
        self.outcome: Outcome | None = None
        self.error = ""
        self.escalated_to: list[str] = []
        self.done = threading.Event()
        self.settled_at: float | None = None  # time.monotonic() when it settled
        self._history: list[str] = []  # the waits that passed, for the final reason
        self._stage = 0  # how many escalations happened before this deadline
        self._ends_at = math.inf  # wall-clock (epoch) seconds
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.pending.key

    def start(self) -> ApprovalTimer:
        """Arm the timer at the deadline stored with the request (stored now if it has none:
        after a restart the stored time stands, so the deadline is never pushed back)."""
        self.agent.on_decided.append(self._on_decided)
        stage, deadline = self._stored_stage()
        self._stage, self.deadline = stage, deadline
        self._arm(deadline, keep_stored=True)
        return self

    def _stored_stage(self) -> tuple[int, Deadline]:
        """The deadline in force after the escalations already recorded (0 without any)."""
        request = next((r for r in self.agent.ledger.index.listed(self.thread_id)
                        if r.key == self.key), None)
        stage = request.deadline_stage if request is not None else 0
        deadline = self.deadline
        earlier = [e for e in self.agent.ledger.index.escalations(self.thread_id)
                   if (e.thread_id, e.interrupt_id, e.fingerprint) == self.key]
        for escalation in earlier[:stage]:
            self.escalated_to.append(escalation.escalated_to)
            self._history.append(escalation.reason)
            deadline = deadline.after_escalation
        return stage, deadline

    def _arm(self, deadline: Deadline, *, keep_stored: bool = False) -> None:
        with self._lock:
            if self.done.is_set():
                return
            self.deadline = deadline
            wanted = time.time() + deadline.seconds
            stored = self.agent.ledger.index.set_deadline(self.key, wanted, self._stage,
                                                    only_if_unset=keep_stored)
            self._ends_at = wanted if stored is None else stored
            self._timer = threading.Timer(max(0.0, self._ends_at - time.time()),
                                          self.expire_now)
            self._timer.daemon = True  # a forgotten timer must not keep the process alive
            self._timer.start()

    def remaining(self) -> float:
        """Seconds until the current deadline (0 once it passed or the timer is settled)."""
        return 0.0 if self.done.is_set() else max(0.0, self._ends_at - time.time())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until settled; False if still running after ``timeout`` seconds."""
        return self.done.wait(timeout)

    def cancel(self) -> None:
        """Stop the timer without deciding anything: the request stays pending."""
        self._settle(CANCELLED)

    def expire_now(self) -> None:
        """What the timer does when the deadline passes. Tests call it to race a click."""
        if self.done.is_set():
            return
        deadline = self.deadline
        if deadline.default == "escalate":
            self._escalate(deadline)
            return
        if deadline.default == "proceed" and may_proceed(self.pending.request):
            waited = [*self._history, f"nobody rejected it within {deadline.seconds:g} s"]
            kind, reason = Kind.PROCEED, "soft gate: " + "; ".join(waited)
        else:
            waited = [*self._history, f"nobody decided within {deadline.seconds:g} s"]
            if deadline.default == "proceed":  # fail closed: it needs more than a deadline
                waited.append("it may not proceed on its own (it needs "
                              f"{self.pending.request.approvals_needed} approvals or cannot "
                              "run as it stands)")
            kind, reason = Kind.TIMEOUT, "; ".join(waited)
        try:
            # On success the agent calls _on_decided, which settles this timer.
            self.agent.apply_default(self.thread_id, self.pending.interrupt_id, kind, reason,
                                     self.pending.fingerprint)
        except AlreadyDecided as exc:
            self._settle(DECIDED, exc.claim)
        except Exception as exc:  # fail closed: nothing was applied, say why
            self._settle(FAILED, error=f"the default could not be applied: {exc}")

    def _escalate(self, deadline: Deadline) -> None:
        to = deadline.escalate_to
        reason = f"nobody decided within {deadline.seconds:g} s, so it went to {to}"
        try:
            handed = self.agent.ledger.index.escalate(self.key, to, reason)
        except Exception as exc:
            self._settle(FAILED, error=f"the escalation could not be recorded: {exc}")
            return
        if not handed:  # someone decided meanwhile
            self._settle(DECIDED, self.agent.ledger.claims.winner(*self.key))
            return
        with self._lock:
            self.state = ESCALATED
            self.escalated_to.append(to)
            self._history.append(reason)
            self._stage += 1
        if self.on_escalate is not None:
            try:
                self.on_escalate(self, to)
            except Exception as exc:  # the escalation is recorded; a failed notice must not stop
                warnings.warn(f"on_escalate failed for {to}: {exc!r}", stacklevel=2)
        self._arm(deadline.after_escalation)

    def _on_decided(self, claims: list[Claim], outcome: Outcome) -> None:
        for claim in claims:
            if claim.key == self.key:
                self._settle(STATE_OF_SYSTEM_KIND.get(claim.decision.kind, DECIDED), claim,
                             outcome)

    def _settle(self, state: str, claim: Claim | None = None, outcome: Outcome | None = None,
                error: str = "") -> None:
        with self._lock:
            if self.done.is_set():
                return
            if self._timer is not None:
                self._timer.cancel()
            self.state, self.claim, self.outcome, self.error = state, claim, outcome, error
            self.settled_at = time.monotonic()
            self.done.set()
        with contextlib.suppress(ValueError):  # never started
            self.agent.on_decided.remove(self._on_decided)


class DeadlineWatcher:
    """A deadline on every pending approval of the threads it watches, chosen by gate policy:
    ``{"hard_gate": Deadline(300), "soft_gate": Deadline(60, default="proceed")}``.

    Requests that appear later on a watched thread (after an edit, or in the agent's next turn)
    get their deadline as soon as the graph pauses on them.
    """

    def __init__(self, agent: ApprovalAgent, deadlines: Mapping[str, Deadline],
                 on_escalate: Callable[[ApprovalTimer, str], None] | None = None):
        unknown = sorted(set(deadlines) - set(GATES))
        if unknown:
            raise ValueError(f"deadlines are keyed by gate policy {GATES}, not {unknown}")
        for policy, deadline in deadlines.items():
            if not isinstance(deadline, Deadline):
                raise ValueError(f"the deadline for {policy} must be a Deadline, not {deadline!r}")
            if deadline.default == "proceed" and policy != Policy.SOFT_GATE:
                raise ValueError(f"a {policy} never proceeds on its own: use reject or escalate")
        self.agent, self.deadlines, self.on_escalate = agent, dict(deadlines), on_escalate
        self.timers: dict[tuple[str, str, str], ApprovalTimer] = {}
        self._threads: set[str] = set()
        self._lock = threading.Lock()
        agent.on_decided.append(self._on_decided)

    def watch(self, outcome: Outcome) -> list[ApprovalTimer]:
        """Arm a timer for each pending approval of this outcome that has none yet; keep
        watching its thread."""
        with self._lock:
            self._threads.add(outcome.thread_id)
        timers = (self.timer_for(p) for p in outcome.pending)
        return [t for t in timers if t is not None]

    def timer_for(self, pending: Pending) -> ApprovalTimer | None:
        """The request's timer, armed now if it had none; None when its policy has no deadline."""
        deadline = self.deadlines.get(pending.request.policy)
        if deadline is None:
            return None
        with self._lock:
            timer = self.timers.get(pending.key)
            if timer is not None:
                return timer
            timer = self.timers[pending.key] = ApprovalTimer(self.agent, pending, deadline,
                                                             self.on_escalate)
        return timer.start()

    def _on_decided(self, claims: list[Claim], outcome: Outcome) -> None:
        if outcome.thread_id in self._threads:
            self.watch(outcome)

    def rearm(self) -> list[ApprovalTimer]:
        """After a restart: a timer for every pending request whose policy has a deadline, at
        its stored time (the default is applied at once where that passed); their threads are
        watched from now on."""
        timers = []
        for request in self.agent.ledger.index.listed():
            with self._lock:
                self._threads.add(request.thread_id)
            timer = self.timer_for(request)
            if timer is not None:
                timers.append(timer)
        return timers

    def wait(self, timeout: float) -> bool:
        """Wait until every timer is settled, those armed meanwhile included; False if some still
        run after ``timeout`` seconds."""
        give_up = time.monotonic() + timeout
        while True:
            running = [t for t in list(self.timers.values()) if not t.done.is_set()]
            if not running:
                return True
            if not running[0].wait(max(0.0, give_up - time.monotonic())):
                return False

    def close(self) -> None:
        """Cancel every running timer (their requests stay pending) and stop watching."""
        with contextlib.suppress(ValueError):
            self.agent.on_decided.remove(self._on_decided)
        for timer in list(self.timers.values()):
            timer.cancel()
