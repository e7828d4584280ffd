"""Drill 4: when nobody answers within N seconds, reject by default, exactly once.

Part A: ``TimedApproval(app, thread_id, seconds)`` with ``decide(decision, approver, reason)``
and ``time_out()``, its deadline a ``threading.Timer``. Part B: ``AsyncTimedApproval``, the same
in asyncio (``await decide(...)``, a deadline task). Both wrap the drill's paused-approval graph
(``make_example()``), which the checks hand over behind a stand-in that records what the
learner's code resumed with and can make one thread's resume slow (``interleave.AppStandIn``).

What an answer could silently depend on, and how the checks vary it:

* the machine: every deadline is tried with the local time zone set to the machine's own, to
  UTC+14 and to UTC-10, so a deadline read from local time where UTC was meant fails;
* who and in which order: both decisions; two approvers; the same approver clicking twice; a
  rejection first, then an approval (and the reverse); the timeout first, then a click;
* time: deadlines of 0.1 s, already due (0 s, and -1 s), and long (30 s: its timer must not fire
  during the check); a 0 s timer made to fire the instant it starts, before ``__init__`` goes on
  (a timer started before the object is ready);
* concurrency: two callers at once, explored, not left to luck: the two threads run one at a
  time under a scheduler that preempts the first at each switch point of the learner's code
  (line, store, call, lock acquire and release), both orders (``interleave.Interleaver``); two
  coroutines, the second started after each step of the first (``interleave.stepped``); a
  decision while another approval's resume is slow; a blocking call inside a coroutine, whatever
  it is (``interleave.LoopWatch``), and the graph's blocking ``invoke`` called from one;
* lifetime: several approvals alive at once; a thread paused again after its first decision,
  with a new approval (the old one's late calls must not decide it); state kept on the class or
  in the module shows in all of these.

A wait that can never end (a lock taken twice by one thread, two callers each holding what the
other wants) is named at once, not left to the check's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import sys
import threading
import time
from functools import partial
from types import CodeType, SimpleNamespace

from hitl_kit.course.checks.interleave import (
    AppStandIn,
    Interleaver,
    LockSpy,
    LoopWatch,
    Stuck,
    stepped,
    steps_alone,
    swapped,
)
from hitl_kit.course.selfcheck import (
    Check,
    Drill,
    Flaw,
    NotAttempted,
    describe,
    in_event_loop,
    is_learner_file,
    is_stub,
    learner_error,
    learner_frame,
    local_time_zone,
    need,
    time_left,
    time_zones,
)
from hitl_kit.vocabulary import Approver, Verdict

N = 0.1  # the deadline the checks use, in seconds
WAIT_S = 3.0  # the longest a check waits for something due in N (a loaded machine is slow)
LONG_S = 30.0  # a deadline that never comes during a check
DUE = (0, -1)  # deadlines already due: they time out at once
ACTION = "delete_customer 3"
TIMED_OUT = Verdict.TIMED_OUT.value
SYSTEM = Approver.SYSTEM.value
# The names the drill asks for, and those its notebook gives.
NAMES = ("TimedApproval", "AsyncTimedApproval", "make_example", "pause", "Example", "State",
         "Command", "interrupt", "InMemorySaver", "StateGraph", "START", "END", "TypedDict",
         "example",
         "approval", "quiet", "answered")
GIVEN_FUNCTIONS = ("make_example", "gate", "execute", "pause")  # given code, not the learner's
_by_hand = contextvars.ContextVar("time_out called by the check itself", default=False)
_threads = itertools.count()


def _patience(share: float = 0.25) -> float:
    """How long one wait may last: WAIT_S, or a share of what is left of the check's time."""
    return max(0.2, min(WAIT_S, time_left() * share))


# -- the learner's parts ---------------------------------------------------------------------------

def _parts(ns: dict, name: str, *methods: str):
    """make_example and the learner's class; NotAttempted while a needed method is the stub."""
    make_example, cls = need(ns, "make_example", name, known=NAMES)
    if not inspect.isclass(cls):
        raise Flaw(f"{name} is not a class", got=f"{type(cls).__name__}: {cls!r:.80}",
                   hint=f"Keep the stub's shape: class {name}: with __init__, decide, time_out.")
    for method in methods:
        if is_stub(getattr(cls, method, None)):
            raise NotAttempted(f"{name}.{method} is still the stub")
    return make_example, cls


def _config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def _pause(example, thread_id: str) -> None:
    result = example.app.invoke({"action": ACTION}, _config(thread_id))
    if "__interrupt__" not in result:
        raise Flaw("make_example's graph no longer pauses at its gate",
                   hint="make_example is given: run its cell as it was, unchanged.")


def _decided(rows: list[dict]) -> str:
    return ", ".join(f"{r['decision']} by {r['approver']}" for r in rows) or "nothing"


def _zone_text(zone: str | None) -> str:
    return "" if zone is None else f", the machine's local time zone set to {zone!r}"


class _Probe:
    """One check's world: a fresh example graph behind an ``AppStandIn``, the learner's class
    wrapped so the check sees when each ``time_out`` ran (and for which deadline), and the
    learner's locks watched."""

    def __init__(self, ns: dict, name: str):
        make_example, cls = _parts(ns, name, "__init__", "decide", "time_out")
        self.ns, self.learner_cls = ns, cls
        self.example = make_example()
        self.app = AppStandIn(self.example.app)
        self.locks = LockSpy()
        self.born: dict[int, tuple[float, object, str]] = {}
        self.timed_out: list[tuple[str, object, float]] = []  # not by hand: (thread, seconds, at)
        self.cls = self._watched(cls)
        self.given = _given_codes(ns)

    def own(self, code: CodeType) -> bool:
        """The learner's own code: written in the notebook, and not the drill's given code."""
        return is_learner_file(code.co_filename) and code not in self.given

    def _watched(self, cls):
        probe = self

        def born(approval, args, kwargs):
            seconds = args[2] if len(args) > 2 else kwargs.get("seconds")
            thread_id = args[1] if len(args) > 1 else kwargs.get("thread_id")
            probe.born[id(approval)] = (time.monotonic(), seconds, thread_id)

        def seen(approval):
            if not _by_hand.get():
                made, seconds, thread_id = probe.born.get(id(approval), (None, None, None))
                probe.timed_out.append((thread_id, seconds,
                                        time.monotonic() - made if made else 0.0))

        class Watched(cls):
            def __init__(self, *args, **kwargs):
                born(self, args, kwargs)
                super().__init__(*args, **kwargs)

        if inspect.iscoroutinefunction(cls.time_out):
            async def time_out(self, *args, **kwargs):
                seen(self)
                return await super(Watched, self).time_out(*args, **kwargs)
        else:
            def time_out(self, *args, **kwargs):
                seen(self)
                return super(Watched, self).time_out(*args, **kwargs)
        Watched.time_out = time_out
        Watched.__name__ = Watched.__qualname__ = cls.__name__  # as the learner knows it
        return Watched

    def watching(self):
        """The learner's locks watched while the block runs."""
        return self.locks.installed(self.ns, self.cls.__mro__[1:-1])

    def pause(self, thread_id: str) -> None:
        _pause(self.example, thread_id)

    def rows(self, thread_id: str) -> list[dict]:
        return [row for row in self.example.log if row["thread_id"] == thread_id]

    def ran(self, thread_id: str) -> int:
        return sum(1 for t, _ in self.example.effects if t == thread_id)

    def make(self, thread_id: str, seconds: float, where: str = ""):
        label = f"{self.learner_cls.__name__}(app, {thread_id!r}, {seconds:g}){where}"
        try:
            approval = self.cls(self.app, thread_id, seconds)
        except Exception as exc:
            raise self.error(exc, label) from None
        self.locks.watch(approval)
        return approval

    def error(self, exc: BaseException, label: str, hint: str | None = None) -> Exception:
        """What a learner's error means, in words: given code that failed on what the learner's
        code sent it, a wait that could never end, or the learner's own line."""
        if isinstance(exc, Stuck):
            return _stuck_flaw(exc, label)
        where = learner_frame(exc.__traceback__)
        if where is not None and where.name in GIVEN_FUNCTIONS:
            return self._given_failed(exc, label, where)
        names = [f.name for f in _learner_frames(exc)]
        if "__init__" in names and "time_out" in names[names.index("__init__"):]:
            hint = ("threading.Timer(seconds, self.time_out()) calls time_out now, inside "
                    "__init__, and gives the timer its result. Pass the method itself: "
                    "self.time_out.")
        return learner_error(exc, label, hint=hint)

    def _given_failed(self, exc: BaseException, label: str, where) -> Flaw:
        sent = self.app.resumes[-1] if self.app.resumes else None
        shown = ("nothing yet" if sent is None else
                 f"Command(resume={sent[1]!r})" if sent[2] else f"{sent[1]!r}, not a Command")
        return Flaw(f"the given `{where.name}` failed on what your code resumed the graph with",
                    tried=label, got=f"your code sent app.invoke({shown}); then `{where.name}` "
                                     f"(given) raised {describe(exc)}, line {where.lineno}: "
                                     f"{(where.line or '').strip()}",
                    expected="Command(resume={'decision': ..., 'approver': ..., 'reason': ...})",
                    hint="The gate reads answer['decision'], answer['approver'] and "
                         "answer.get('reason'): resume with that dict, e.g. "
                         "self.app.invoke(Command(resume={'decision': decision, 'approver': "
                         "approver, 'reason': reason}), self.config).")

    def early(self) -> Flaw | None:
        """A Flaw if a deadline's timeout ran before the deadline."""
        for thread_id, seconds, at in self.timed_out:
            if isinstance(seconds, int | float) and seconds > 0 and at < seconds * 0.9:
                return Flaw("the default came before the deadline",
                            tried=f"an approval of {thread_id!r} with a {seconds:g} s deadline",
                            got=f"time_out() ran after {at:.3f} s",
                            expected=f"not before {seconds:g} s",
                            hint="The timer waits `seconds` (a float, in seconds): not "
                                 "milliseconds, not rounded, and time_out is passed to it as "
                                 "self.time_out, without parentheses.")
        return None


def _given_codes(ns: dict) -> set:
    """Code objects of the drill's given functions (and what they define inside)."""
    codes: set = set()
    for name in GIVEN_FUNCTIONS + ("Example",):
        value = ns.get(name)
        for fn in ([value] if inspect.isfunction(value) else
                   [v for v in vars(value).values() if inspect.isfunction(v)]
                   if inspect.isclass(value) else []):
            stack = [fn.__code__]
            while stack:
                code = stack.pop()
                codes.add(code)
                stack += [c for c in code.co_consts if isinstance(c, CodeType)]
    return codes


def _learner_frames(exc: BaseException) -> list:
    import traceback

    return [f for f in traceback.extract_tb(exc.__traceback__) if is_learner_file(f.filename)]


def _stuck_flaw(exc: BaseException, label: str) -> Flaw:
    where = learner_frame(exc.__traceback__)
    line = f"`{where.name}`, line {where.lineno}: {(where.line or '').strip()}" if where else "?"
    return Flaw(f"{label} waits forever: {exc}", tried=label, got=f"stuck at {line}",
                expected="every call returns",
                hint="A threading.Lock taken twice by the same thread waits forever: time_out "
                     "goes through decide, so it must not hold the lock when it calls decide "
                     "(or use an RLock). Two callers that each hold a lock the other wants wait "
                     "forever too: use one lock.")


def _wait_rows(probe: _Probe, thread_id: str, count: int, seconds: float,
               hopeless=lambda: False) -> float:
    """Wait until ``thread_id`` has ``count`` log rows (or waiting is ``hopeless``). Once the
    learner's code has sent the resume, the graph is running: wait for it longer (a loaded
    machine is slow), up to half of what is left of the check's time."""
    started = time.monotonic()

    def waiting() -> float:
        sent = len(probe.app.sent_to(thread_id)) >= count
        return max(seconds, time_left() * 0.5) if sent else seconds

    while (len(probe.rows(thread_id)) < count and time.monotonic() - started < waiting()
           and not hopeless()):
        time.sleep(0.005)
    return time.monotonic() - started


# -- what the learner's deadline did ---------------------------------------------------------------

class _TimerSpy:
    """Stands in for threading.Timer while a probe runs, and remembers each timer's fate.
    ``eager``: a started timer fires at once, and ``start()`` returns only when its function has
    returned or waits for a lock (the timer thread ran before the rest of ``__init__``)."""

    def __init__(self, probe: _Probe, eager: bool = False, thread_id: str | None = None):
        self.probe, self.eager, self.thread_id = probe, eager, thread_id
        self.timers: list = []
        real = threading.Timer
        spy = self

        class Timer(real):
            def __init__(self, interval, function, args=None, kwargs=None):
                self.spied = SimpleNamespace(interval=interval, function=function, started=False,
                                             fired=False, returned=False, error=None, ident=None,
                                             cancelled=False)
                spy.timers.append(self.spied)
                super().__init__(0 if spy.eager else interval, self._fire, args, kwargs)

            def start(self):
                self.spied.started = True
                super().start()
                if spy.eager:
                    ends = time.monotonic() + 0.5
                    while (not self.spied.returned and time.monotonic() < ends
                           and not spy.probe.locks.is_waiting(self.spied.ident)):
                        time.sleep(0.001)

            def cancel(self):
                self.spied.cancelled = True
                super().cancel()

            def _fire(self, *args, **kwargs):
                self.spied.ident = threading.get_ident()
                self.spied.fired = True
                try:
                    self.spied.function(*args, **kwargs)
                except BaseException as exc:  # shown in the check's message
                    self.spied.error = exc
                finally:
                    self.spied.returned = True

        self.Timer = Timer

    def installed(self, ns: dict):
        return swapped(ns, threading, {"Timer": self.Timer})

    def settled(self) -> bool:
        """Every timer started has fired (and returned) or was cancelled."""
        return all(t.returned or t.cancelled for t in self.timers if t.started)

    def hopeless(self, seconds: float):
        """Whether the one timer made cannot end the wait in time: no need to wait it out."""
        def check() -> bool:
            if len(self.timers) != 1:
                return False
            timer = self.timers[0]
            return (not callable(timer.function) or (timer.interval != seconds and seconds > 0)
                    or timer.error is not None)
        return check

    def diagnosis(self, seconds: float) -> tuple[str, str]:
        """(what the timer did, the hint for it) when the thread is still paused."""
        sent = [r for r in self.probe.app.resumes if self.thread_id in (None, r[0])]
        if sent and not sent[-1][2]:
            return (f"your code called app.invoke({sent[-1][1]!r}) without Command(resume=...)"
                    ": that starts a new run of the graph, which pauses again, instead of "
                    "answering the paused one",
                    "Resume with self.app.invoke(Command(resume={...}), self.config).")
        if not self.timers:
            return ("no threading.Timer was created",
                    "In __init__: self.timer = threading.Timer(seconds, self.time_out), then "
                    "self.timer.start().")
        timer = self.timers[-1]
        if not callable(timer.function):
            return (f"the timer was given {timer.function!r}, not a function to call",
                    "threading.Timer(seconds, self.time_out()) calls time_out at once and gives "
                    "the timer its result. Pass the method itself: self.time_out.")
        if not timer.started:
            return ("a threading.Timer was created but never started",
                    "Call self.timer.start() after creating it.")
        if timer.interval != seconds and seconds > 0:
            return (f"the timer was set for {timer.interval!r} s for a {seconds:g} s deadline",
                    "threading.Timer takes seconds (a float), the same `seconds` __init__ got: "
                    "not milliseconds, not minutes.")
        if isinstance(timer.error, Stuck):
            where = learner_frame(timer.error.__traceback__)
            return (f"the timer fired and time_out waits forever: {timer.error}"
                    + (f" (`{where.name}`, line {where.lineno}: {(where.line or '').strip()})"
                       if where else ""),
                    "time_out goes through decide; if it holds the lock when it calls decide, "
                    "decide waits for a lock its own thread holds. Call decide without holding "
                    "the lock (or use an RLock).")
        if timer.error is not None:
            made = self.probe.error(timer.error, "time_out(), called by the timer")
            if isinstance(made, NotAttempted):
                raise made
            if made.flaw.startswith("the given"):
                return f"{made.flaw}: {dict(made.evidence)['got']}", made.hint or ""
            if self.eager and isinstance(timer.error, AttributeError):
                return (f"the timer fired at once and time_out raised {describe(timer.error)}: "
                        "__init__ had not finished setting up the object",
                        "Start the timer last in __init__, after everything time_out and decide "
                        "use (the config, the flag, the lock): a deadline already due fires at "
                        "once, before __init__ has returned.")
            return (f"the timer fired and time_out raised {describe(timer.error)}",
                    made.hint or "")
        if timer.fired and sent:
            return ("the timer fired and time_out resumed the graph, but the resume did not "
                    f"finish the run (it sent {sent[-1][1]!r})",
                    "time_out decides ('rejected', 'system', reason) through decide, which "
                    "resumes with Command(resume={'decision': ..., 'approver': ..., 'reason': "
                    "...}).")
        if timer.fired:
            return ("the timer fired, but time_out() did not resume the thread",
                    "time_out() must decide: self.decide('rejected', 'system', reason), which "
                    "resumes the graph with Command(resume=...).")
        return ("the timer was started but had not fired", "Is it cancelled before it fires?")


# -- part A: threads -------------------------------------------------------------------------------

def no_answer_rejects_as_timed_out(ns: dict) -> None:
    cases = [(zone, N, False) for zone in time_zones()] + [
        (None, 0, True), (None, -1, True), (None, 0, False)]
    probe = _Probe(ns, "TimedApproval")
    for number, (zone, seconds, eager) in enumerate(cases):
        with local_time_zone(zone):
            thread_id = f"quiet-{number}"
            probe.pause(thread_id)
            spy = _TimerSpy(probe, eager=eager, thread_id=thread_id)
            with spy.installed(ns), probe.watching():
                started = time.monotonic()
                _made_despite_due(probe, thread_id, seconds, eager)
                _wait_rows(probe, thread_id, 1, _patience(0.15), spy.hopeless(seconds))
                waited = time.monotonic() - started
            _judge_timeout(probe, thread_id, waited, seconds, spy.diagnosis, zone, eager)


def _made_despite_due(probe: _Probe, thread_id: str, seconds: float, eager: bool):
    try:
        return probe.make(thread_id, seconds)
    except Flaw as flaw:
        if seconds > 0:
            raise
        raise Flaw(f"a deadline already due ({seconds:g} s) makes {probe.cls.__name__} fail, so "
                   "the thread would stay paused forever", tried=_due_text(probe, thread_id,
                                                                            seconds, eager),
                   got=flaw.flaw, expected="a rejection by 'system' at once",
                   hint="A deadline of 0 or less has already passed: time out at once (a "
                        "threading.Timer of 0 s or less fires at once), don't refuse it.") from None


def _due_text(probe: _Probe, thread_id: str, seconds: float, eager: bool) -> str:
    return (f"{probe.cls.__name__}(app, {thread_id!r}, {seconds:g}): a deadline already due"
            + (" (its timer fires the instant it starts)" if eager else ""))


LOCAL_CLOCK_HINT = ("A deadline is a duration: measure it with time.monotonic() (or just the "
                    "timer), never by comparing local wall-clock time (datetime.now()) with UTC "
                    "(datetime.utcnow()): on a machine set to UTC they agree, elsewhere they are "
                    "hours apart.")


def _judge_timeout(probe: _Probe, thread_id: str, waited: float, seconds: float, diagnosis,
                   zone: str | None = None, eager: bool = False) -> None:
    rows = probe.rows(thread_id)
    tried = (f"nobody answers a {seconds:g} s deadline{_zone_text(zone)}" if seconds > 0 else
             _due_text(probe, thread_id, seconds, eager))
    if not rows:
        what, hint = diagnosis(seconds)
        if zone is not None:  # the same answer timed out with the machine's own time zone
            what = (f"no timeout in this time zone, though there was one in the machine's own "
                    f"({what})")
            hint = LOCAL_CLOCK_HINT
        raise Flaw(f"nobody answered, and the thread is still paused after the {seconds:g} s "
                   "deadline" if seconds > 0 else f"a deadline already due ({seconds:g} s) "
                   "never timed out", tried=f"{tried}, then wait {waited:.1f} s", got=what,
                   expected=f"a rejection by {SYSTEM!r} after {max(seconds, 0):g} s", hint=hint)
    first = rows[0]
    if len(rows) > 1:
        raise Flaw("the timeout resolved the approval more than once", tried=tried,
                   got=_decided(rows), expected="one resolution",
                   hint="Decide at most once: time_out goes through decide, which checks and "
                        "sets the flag under the lock.")
    if probe.ran(thread_id):
        raise Flaw("the action ran although nobody approved it", tried=tried,
                   got=f"{_decided(rows)}; the action ran", expected="nothing runs",
                   hint="The safe default is 'rejected': time_out decides ('rejected', "
                        "'system', reason).")
    if (first["decision"], first["approver"]) != (TIMED_OUT, SYSTEM):
        raise Flaw("the timeout is not recorded as a timeout by 'system'", tried=tried,
                   got=f"logged {first['decision']!r} by {first['approver']!r}",
                   expected=f"{TIMED_OUT!r} by {SYSTEM!r}",
                   hint="Resume with decision 'rejected' and approver 'system': the log then "
                        "says 'timed-out', and nobody mistakes it for a person's choice.")
    early = probe.early()
    if early is not None or (seconds > 0 and waited < seconds * 0.9):
        if early is not None and zone is not None:
            early.hint = LOCAL_CLOCK_HINT
        raise early or Flaw("the default came before the deadline", tried=tried,
                            got=f"resolved after {waited:.3f} s",
                            expected=f"not before {seconds:g} s",
                            hint="Start the timer with `seconds`, and do not call time_out "
                                 "yourself in __init__ (self.time_out, without parentheses).")
    if not str(first.get("reason") or "").strip():
        raise Flaw("the timeout gives no reason", tried=tried, got=f"reason {first['reason']!r}",
                   expected="a reason that says what happened, e.g. 'no answer within 0.1 s'",
                   hint="time_out passes a reason to decide, and decide puts it in the resume "
                        "value: {'decision': ..., 'approver': ..., 'reason': reason}.")


class _Click(SimpleNamespace):
    """One caller: its label, and how it calls an approval (``approver`` None: the timeout)."""

    def call(self, approval):
        if self.approver is None:
            token = _by_hand.set(True)
            try:
                return approval.time_out()
            finally:
                _by_hand.reset(token)
        return approval.decide(self.decision, self.approver, self.reason)

    async def acall(self, approval):
        if self.approver is None:
            token = _by_hand.set(True)  # reset: a deadline task made later copies this context
            try:
                return await _awaited("await time_out()", approval.time_out)
            finally:
                _by_hand.reset(token)
        return await _awaited(f"await {self.name}", approval.decide, self.decision,
                              self.approver, self.reason)


def _click(decision: str, approver: str, reason: str = "") -> _Click:
    shown = f", {reason!r}" if reason else ""
    return _Click(name=f"decide({decision!r}, {approver!r}{shown})", decision=decision,
                  approver=approver, reason=reason)


CLICK = _click("approved", "ana")
OTHER_CLICK = _click("rejected", "bo")
REJECT = _click("rejected", "bo", "not now")
TIMEOUT = _Click(name="time_out()", decision="rejected", approver=None, reason="")
# Second tries after a first decision: each must be refused and change nothing.
FIRSTS = (_click("approved", "ana", "looks right"), _click("rejected", "bo", "not this one"),
          TIMEOUT)
LATER = (_click("approved", "ana", "looks right"), _click("rejected", "ana"),
         _click("approved", "bo"), _click("rejected", "bo"), TIMEOUT)


def answer_in_time_wins_and_timer_never_fires(ns: dict) -> None:
    probe = _Probe(ns, "TimedApproval")
    deadline = N * 2
    spy = _TimerSpy(probe)
    with spy.installed(ns), probe.watching():
        created = time.monotonic()
        for number, first in enumerate(FIRSTS):
            thread_id = f"answered-{number}"
            probe.pause(thread_id)
            approval = probe.make(thread_id, deadline)
            tried = f"{first.name} at once, with a {deadline:g} s deadline"
            won = _attempt(probe, first.name, first.call, approval)
            if won is not True:
                raise Flaw(f"{first.name.split('(')[0]}() on an undecided approval did not "
                           "return True", tried=tried, got=repr(won),
                           expected="True: this call decided it",
                           hint="Return True when this call decided, False when someone was "
                                "first.")
            _judge_first(probe, thread_id, first, tried)
            for later in LATER:
                again = _attempt(probe, f"{later.name} after {first.name}", later.call, approval)
                _refused(probe, thread_id, f"{first.name}, then {later.name}", again)
        # the timers a correct answer cancelled are settled at once; others fire after the
        # deadline (a deadline kept some other way than threading.Timer: wait it out)
        _until(lambda: spy.timers and spy.settled(), _patience(0.3))
        time.sleep(max(0.0, created + deadline * 1.5 - time.monotonic()))
    if probe.timed_out:
        thread_id = probe.timed_out[0][0]
        raise Flaw("the timer still fired after the approval was decided",
                   tried=f"{thread_id}: decided at once, with a {deadline:g} s deadline",
                   got="the timer called time_out() after the deadline",
                   expected="the timer cancelled: it never fires",
                   hint="Cancel the timer in decide(): self.timer.cancel(). A timer left running "
                        "fires later, when a decision may be about something else.")


def _refused(probe: _Probe, thread_id: str, tried: str, again) -> None:
    """A call after the first decision must return False and change nothing."""
    rows = probe.rows(thread_id)
    if again is not False or len(rows) != 1:
        raise Flaw("a decision after the first one was not refused", tried=tried,
                   got=f"the second returned {again!r}; log: {_decided(rows)}",
                   expected="False, and nothing more happens",
                   hint="Once decided, decide() returns False without resuming anything, whoever "
                        "calls and whatever they decide: the same approver clicking again, "
                        "another approver, a rejection after an approval or the reverse, the "
                        "late timer.")


def _attempt(probe: _Probe, label: str, call, approval):
    try:
        return call(approval)
    except (NotAttempted, Flaw):
        raise
    except BaseException as exc:
        raise probe.error(exc, label) from None


def _judge_first(probe: _Probe, thread_id: str, first: _Click, tried: str) -> None:
    rows = probe.rows(thread_id)
    if first.approver is None:  # what the timeout decides is the no-answer check's to judge
        if len(rows) != 1:
            raise Flaw("time_out() on an undecided approval did not resume the thread once",
                       tried=tried, got=f"log: {_decided(rows)}", expected="one resolution",
                       hint="time_out() decides through decide(), which resumes the graph "
                            "once.")
        return
    expected = [(first.decision, first.approver)]
    runs = 1 if first.decision == "approved" and first.approver else 0
    if [(r["decision"], r["approver"]) for r in rows] != expected or probe.ran(thread_id) != runs:
        raise Flaw(f"an answer in time did not resume the thread once, {expected[0][0]} by "
                   f"{expected[0][1]}", tried=tried,
                   got=f"log: {_decided(rows)}; the action ran {probe.ran(thread_id)} time(s)",
                   expected=f"one resolution, {expected[0][0]} by {expected[0][1]}; the action "
                            f"ran {runs} time(s)",
                   hint="decide() resumes the graph with Command(resume={'decision': decision, "
                        "'approver': approver, 'reason': reason}) before it returns.")
    if first.approver and rows[0]["reason"] != first.reason:
        raise Flaw("the approver's reason was lost", tried=tried,
                   got=f"reason {rows[0]['reason']!r}", expected=repr(first.reason),
                   hint="Put the reason decide() was given into the resume value.")


# -- part A: two callers at once, every interleaving ----------------------------------------------

RACE_HINT = ("A flag alone is not enough: both threads can read 'not decided yet' before either "
             "sets it. Hold one threading.Lock around: check the flag, set it, resume.")
# The race: a click and the timeout, each run first, preempted at every switch point of its own.
# It covers decide against decide too when time_out goes through decide; who decides in which
# order, one after the other (the same approver twice, a rejection then an approval...), is the
# in-time check's.
PAIR = (CLICK, TIMEOUT)


def click_and_timeout_at_once_decide_once(ns: dict) -> None:
    probe = _Probe(ns, "TimedApproval")
    with probe.watching():
        for first in (0, 1):
            points = _race(probe, PAIR, first, None)
            for preempt_at in range(1, points + 1):
                _race(probe, PAIR, first, preempt_at)


def _race(probe: _Probe, pair, first: int, preempt_at: int | None) -> int:
    """One schedule of the pair; judged; the number of switch points the first caller passed."""
    thread_id = f"race-{next(_threads)}"
    probe.pause(thread_id)
    approval = probe.make(thread_id, LONG_S)  # the real timer is far away
    interleaver = Interleaver(probe.own, first, preempt_at)
    returned: list = [None, None]
    errors: list = []

    def run(index: int) -> None:
        try:
            returned[index] = interleaver.run(index, lambda: pair[index].call(approval))
        except BaseException as exc:  # shown in the check's result, not lost in a thread
            errors.append((index, exc))

    racers = [threading.Thread(target=run, args=(i,), daemon=True) for i in (0, 1)]
    probe.locks.interleaver = interleaver
    try:
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(max(_patience(0.3), time_left() * 0.6))
    finally:
        probe.locks.interleaver = None
    schedule = _schedule_text(pair, first, interleaver)
    if any(racer.is_alive() for racer in racers):
        raise Flaw("two callers at the same instant: one of them never returned",
                   tried=schedule, got="still running when the check had to end",
                   expected="both return", hint=RACE_HINT)
    if errors:
        index, exc = errors[0]
        raise probe.error(exc, f"{pair[index].name}, racing ({schedule})")
    if not probe.rows(thread_id):  # a resume the learner's code left to a thread of its own
        _wait_rows(probe, thread_id, 1, _patience(0.05))
    _judge_race(probe, thread_id, pair, first, returned, schedule, preempt_at is None)
    return interleaver.points[first]


def _schedule_text(pair, first: int, interleaver: Interleaver) -> str:
    one, two = pair[first], pair[1 - first]
    if interleaver.preempted_at is None:
        return f"{one.name}, then {two.name}, one after the other"
    name, line = interleaver.preempted_at
    return (f"{one.name} and {two.name} at the same instant: {one.name} paused at `{name}`, "
            f"line {line}, then {two.name} ran")


def _judge_race(probe: _Probe, thread_id: str, pair, first: int, returned: list,
                schedule: str, one_after_the_other: bool, hint: str = RACE_HINT) -> None:
    rows = probe.rows(thread_id)
    said = {pair[0].name if pair[0].name != pair[1].name else "the first": returned[0],
            pair[1].name if pair[0].name != pair[1].name else "the second": returned[1]}
    winners = [i for i in (0, 1) if returned[i] is True]
    sent = probe.app.sent_to(thread_id)  # whether LangGraph ran both is up to its timing
    if len(sent) > 1 or len(rows) > 1 or len(winners) > 1:
        raise Flaw("two callers at the same instant both decided", tried=schedule,
                   got=f"the graph was resumed {len(sent)} time(s) ({_decided(rows)}); they "
                       f"returned {said}",
                   expected="one resume: one caller decides (True), the other finds it "
                            "decided (False)", hint=hint)
    if not rows:
        raise Flaw("two callers at the same instant left the thread undecided", tried=schedule,
                   got=f"no resolution; they returned {said}", expected="exactly one resolution",
                   hint="The first caller must resume the graph before it returns True.")
    ran = probe.ran(thread_id)
    if ran and rows[0]["approver"] == SYSTEM:
        raise Flaw("the timeout ran the action", tried=schedule, got=f"{_decided(rows)}, and the "
                   f"action ran {ran} time(s)", expected="the default runs nothing",
                   hint="The safe default is 'rejected': time_out decides ('rejected', "
                        "'system', reason).")
    if ran != (rows[0]["decision"] == "approved"):
        raise Flaw("the log and what ran disagree", tried=schedule,
                   got=f"{_decided(rows)}, but the action ran {ran} time(s)",
                   expected="the action runs once if approved, else never",
                   hint="Resume exactly once, with the winner's decision.")
    losers = [i for i in (0, 1) if returned[i] is False]
    if len(winners) != 1 or len(losers) != 1:
        raise Flaw("the two callers were not told who won", tried=schedule,
                   got=f"they returned {said}",
                   expected="True for the winner, False for the other",
                   hint="decide() returns True when this call decided, False when someone was "
                        "first.")
    winner = pair[winners[0]]
    logged = (rows[0]["decision"], rows[0]["approver"])
    if winner.approver is not None and logged != (winner.decision, winner.approver):
        raise Flaw("the graph was resumed with the loser's decision", tried=schedule,
                   got=f"{winner.name} returned True, but the log says {_decided(rows)}",
                   expected=f"the winner's decision in the log: {winner.name}",
                   hint="Keep the decision in local variables until you resume: a value stored "
                        "on self before the lock (self.answer = ...) is overwritten by the "
                        "other caller.")
    if one_after_the_other and winners[0] != first:
        raise Flaw("of two callers one after the other, the first did not win", tried=schedule,
                   got=f"they returned {said}", expected=f"True for {pair[first].name}",
                   hint="The first caller finds the approval undecided: it decides and returns "
                        "True; the second finds it decided and returns False.")


# -- part A: several approvals, a slow resume, a thread paused again -------------------------------

def several_approvals_keep_their_own_state(ns: dict) -> None:
    probe = _Probe(ns, "TimedApproval")
    plan = {"people-a": ("approved", "ana", "fine"), "people-b": ("rejected", "bo", "not now"),
            "quiet-a": N, "quiet-b": N * 1.5}
    tried = ("four approvals alive at once: two decided by people (in reverse order), two left "
             "to time out")
    with probe.watching():
        if not _decides_at_all(probe):
            return  # an approval alone does not work: the in-time check says why
        approvals = {}
        for thread_id, what in plan.items():
            probe.pause(thread_id)
            approvals[thread_id] = probe.make(thread_id, what if isinstance(what, float)
                                              else LONG_S)
        for thread_id in ("people-b", "people-a"):
            decision, approver, reason = plan[thread_id]
            click = _click(decision, approver, reason)
            won = _attempt(probe, f"{click.name} on {thread_id}", click.call,
                           approvals[thread_id])
            if won is False:
                raise Flaw("deciding one approval was refused because of another", tried=tried,
                           got=f"decide on {thread_id} returned {won!r}", expected="True",
                           hint=SHARED_HINT)
        for thread_id in ("quiet-a", "quiet-b"):
            _wait_rows(probe, thread_id, 1, _patience(0.15))
    rows = {thread_id: probe.rows(thread_id) for thread_id in plan}
    _judge_several(rows, plan, tried)
    _slow_resume_blocks_nobody(probe)


SHARED_HINT = ("Keep each approval's flag, lock, timer and config on the instance (self.…), set "
               "in __init__: a class attribute or a module variable is shared by every "
               "approval, so one approval's decide resumes, cancels or blocks another's.")


def _decides_at_all(probe: _Probe) -> bool:
    """Whether one approval alone, decided by ana, resumes its thread: these checks judge what
    approvals do to each other, on an answer where one alone works."""
    probe.pause("alone")
    _attempt(probe, CLICK.name, CLICK.call, probe.make("alone", LONG_S))
    return [(r["decision"], r["approver"]) for r in probe.rows("alone")] == [("approved", "ana")]


def _judge_several(rows: dict, plan: dict, tried: str) -> None:
    everything = "; ".join(f"{t}: {_decided(r)}" for t, r in rows.items())
    for thread_id in ("people-a", "people-b"):
        decision, approver, _ = plan[thread_id]
        if [(r["decision"], r["approver"]) for r in rows[thread_id]] != [(decision, approver)]:
            raise _shared_state(tried, f"{thread_id}: {_decided(rows[thread_id])} (all: "
                                       f"{everything})", f"{thread_id}: {decision} by {approver}")
    for thread_id in ("quiet-a", "quiet-b"):  # whether timeouts work at all is another check's
        people = [r for r in rows[thread_id] if r["approver"] in ("ana", "bo")]
        if people or len(rows[thread_id]) > 1:
            raise _shared_state(tried, f"{thread_id}: {_decided(rows[thread_id])} (all: "
                                       f"{everything})", f"{thread_id}: only its own timeout")
    if rows["quiet-a"] and not rows["quiet-b"]:
        raise _shared_state(tried, f"quiet-a timed out, quiet-b never did (all: {everything})",
                            "each approval nobody answered times out")


def _shared_state(tried: str, got: str, expected: str) -> Flaw:
    return Flaw("approvals alive at the same time share state", tried=tried, got=got,
                expected=expected, hint=SHARED_HINT)


def _slow_resume_blocks_nobody(probe: _Probe) -> None:
    """While one approval's resume is slow (its graph takes long to run the action), another
    approval is decided at once."""
    with probe.watching():
        for thread_id in ("slow", "other"):
            probe.pause(thread_id)
        slow, other = probe.make("slow", LONG_S), probe.make("other", LONG_S)
        probe.app.hold("slow")
        box: dict = {}
        started = threading.Thread(target=_into(box, "slow", probe, CLICK, slow), daemon=True)
        started.start()
        _until(lambda: probe.app.sent_to("slow") or "slow" in box, _patience(0.15))
        second = threading.Thread(target=_into(box, "other", probe, OTHER_CLICK, other),
                                  daemon=True)
        second.start()
        _until(lambda: "other" in box or probe.locks.is_waiting(second.ident), _patience(0.2))
        waits = probe.locks.is_waiting(second.ident) or isinstance(box.get("other"), Stuck)
        during = {"other": probe.rows("other"), "returned": "other" in box and not waits}
        probe.app.release("slow")
        started.join(_patience(0.2))
        second.join(_patience(0.1))
    tried = ("decide('approved', 'ana') on one approval, whose resume takes long; meanwhile "
             "decide('rejected', 'bo') on another")
    for name in ("slow", "other") if during["returned"] else ("slow",):
        if isinstance(box.get(name), BaseException):
            click = CLICK if name == "slow" else OTHER_CLICK
            raise probe.error(box[name], f"{name}: {click.name}")
    if not during["returned"]:
        raise Flaw("deciding one approval waits for another approval's slow resume",
                   tried=tried, got="bo's decide did not return until ana's resume had ended",
                   expected="bo's decide returns at once: the two approvals share nothing",
                   hint="Don't hold a lock shared by every approval (on the class, or in the "
                        "module) around the resume: " + SHARED_HINT)
    if box["other"] is False or not during["other"]:
        raise Flaw("deciding one approval was refused, or did nothing, because another "
                   "approval was resuming", tried=tried,
                   got=f"bo's decide returned {box['other']!r}; its log: "
                       f"{_decided(during['other'])}", expected="True, and rejected by bo",
                   hint=SHARED_HINT)
    if box.get("slow") is False or [(r["decision"], r["approver"]) for r in probe.rows(
            "slow")] != [("approved", "ana")]:
        raise Flaw("a slow resume did not end with the approval it was given", tried=tried,
                   got=f"ana's decide returned {box.get('slow')!r}; its log: "
                       f"{_decided(probe.rows('slow'))}", expected="True; approved by ana",
                   hint=SHARED_HINT)


def _into(box: dict, name: str, probe: _Probe, click: _Click, approval):
    def run():
        try:
            box[name] = click.call(approval)
        except BaseException as exc:
            box[name] = exc
    return run


def _until(condition, seconds: float) -> None:
    ends = time.monotonic() + seconds
    while not condition() and time.monotonic() < ends:
        time.sleep(0.002)


AGAIN_HINT = ("An approval is one pause of one thread. Keep what it knows on the instance, not "
              "in a class- or module-level dict keyed by thread id: the thread pauses again for "
              "its next action, and that pause gets a new approval with a clean slate.")


def a_thread_paused_again_gets_a_new_approval(ns: dict) -> None:
    """The same thread, decided, then paused again for its next action: a new approval decides
    each new pause, and the old approval's late calls do not."""
    probe = _Probe(ns, "TimedApproval")
    thread_id = "again"
    with probe.watching():
        probe.pause(thread_id)
        old = probe.make(thread_id, LONG_S)
        _attempt(probe, CLICK.name, CLICK.call, old)
        if len(probe.rows(thread_id)) != 1:
            return  # an approval alone does not work: the in-time check says why
        probe.pause(thread_id)  # the thread's next action
        with contextlib.suppress(Flaw):  # what late calls return is the in-time check's
            _attempt(probe, "the first approval's late time_out()", TIMEOUT.call, old)
            _attempt(probe, "the first approval's decide('rejected', 'bo')", OTHER_CLICK.call,
                     old)
        after_late = len(probe.rows(thread_id))
        second = probe.make(thread_id, LONG_S)
        won_second = _attempt(probe, f"{CLICK.name} on the second pause", CLICK.call, second)
        probe.pause(thread_id)
        third = probe.make(thread_id, LONG_S)
        won = _attempt(probe, f"{REJECT.name} on the third pause", REJECT.call, third)
    rows = [(r["decision"], r["approver"]) for r in probe.rows(thread_id)]
    tried = (f"thread {thread_id!r}: approved by ana; paused again, a new approval approved "
             "by ana (the first approval's late calls tried first); paused a third time, a new "
             "approval rejected by bo")
    if after_late != 1:
        raise Flaw("an approval already decided decided the thread's next pause", tried=tried,
                   got=f"the first approval's late time_out() and decide resumed the new "
                       f"pause; log: {_decided(probe.rows(thread_id))}",
                   expected="the new pause left for its own approval", hint=AGAIN_HINT)
    if won_second is False or rows[:2] != [("approved", "ana"), ("approved", "ana")]:
        raise Flaw("a thread paused again could not be decided by its new approval",
                   tried=tried, got=f"decide returned {won_second!r}; log: "
                                    f"{_decided(probe.rows(thread_id))}",
                   expected="True; approved by ana, twice", hint=AGAIN_HINT)
    if won is False or rows[2:] != [("rejected", "bo")]:
        raise Flaw("a thread paused a third time could not be decided by its new approval",
                   tried=tried, got=f"decide returned {won!r}; log: "
                                    f"{_decided(probe.rows(thread_id))}",
                   expected="True; rejected by bo", hint=AGAIN_HINT)


# -- part B: asyncio -------------------------------------------------------------------------------

class _NeverFinished(Exception):
    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


def _in_new_loop(probe: _Probe, make_coroutine, tried: str, spy: _SleepSpy | None = None):
    """Run a coroutine in a fresh event loop on a thread of its own (the caller may already be
    inside a running loop, as a kernel's cell is), watched for blocking calls and bounded."""
    box: list = []
    watch = LoopWatch(probe.own, probe.app)
    bound = max(0.2, time_left() * 0.7)

    async def bounded():
        task = asyncio.ensure_future(make_coroutine())
        done, _ = await asyncio.wait({task}, timeout=bound)
        if not done:
            where = _awaiting(probe)
            task.cancel()
            raise _NeverFinished(where)
        return task.result()

    def run():
        with watch.watching(threading.get_ident()):
            try:
                box.append(("ok", asyncio.run(bounded())))
            except BaseException as exc:
                box.append(("error", exc))

    spy = spy or _SleepSpy()
    with spy.installed(probe.ns), probe.watching():
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(bound + 0.1)
    _blocked(probe, spy, watch, tried)
    if not box:
        raise Flaw("your coroutine blocks the event loop: the loop never got back",
                   tried=tried, got=f"the event loop was still busy after {bound + 0.1:.1f} s",
                   expected="every wait awaited", hint=BLOCKING_HINT)
    kind, value = box[0]
    if kind == "error" and isinstance(value, _NeverFinished):
        raise Flaw("a coroutine of yours never finished", tried=tried,
                   got=f"still waiting after {bound:.1f} s{value.where}",
                   expected="every await returns",
                   hint="An asyncio.Lock acquired twice by the same task waits forever (it is "
                        "not re-entrant): time_out goes through decide, so don't hold the lock "
                        "when time_out calls decide.")
    if kind == "error":
        raise value
    return value


BLOCKING_HINT = ("A coroutine must never wait without await: time.sleep, threading.Event.wait, "
                 "a lock's blocking acquire or the graph's invoke stop the whole event loop, so "
                 "no click and no other deadline runs meanwhile. Use await asyncio.sleep(...), "
                 "await self.app.ainvoke(...), asyncio.Lock and asyncio.Event.")


def _blocked(probe: _Probe, spy: _SleepSpy, watch: LoopWatch, tried: str) -> None:
    if spy.blocking:
        raise Flaw("your code calls time.sleep inside a coroutine", tried=tried,
                   got=f"time.sleep({spy.blocking[0]!r}) while the event loop ran",
                   expected="await asyncio.sleep(...)", hint=BLOCKING_HINT)
    if probe.app.blocking:
        raise Flaw("your coroutine calls the graph's blocking invoke", tried=tried,
                   got=f"{probe.app.blocking[0]}, called inside the event loop",
                   expected="await self.app.ainvoke(Command(resume=...), self.config)",
                   hint=BLOCKING_HINT)
    if watch.held is not None:
        name, line, text = watch.held
        raise Flaw("your coroutine blocks the event loop", tried=tried,
                   got=f"`{name}`, line {line}: {text} kept the loop busy (over "
                       f"{LoopWatch.HOLD_S:g} s without an await)",
                   expected="every wait awaited", hint=BLOCKING_HINT)


def _awaiting(probe: _Probe) -> str:
    """Where the learner's pending coroutines wait, for a message: ' (at `f`, line n: ...)'."""
    import linecache

    for task in asyncio.all_tasks():
        coroutine = task.get_coro()
        while coroutine is not None:
            frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
            if frame is not None and probe.own(frame.f_code):
                text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                return f" (at `{frame.f_code.co_name}`, line {frame.f_lineno}: {text})"
            coroutine = (getattr(coroutine, "cr_await", None)
                         or getattr(coroutine, "gi_yieldfrom", None))
    return ""


class _SleepSpy:
    """Stands in for asyncio.sleep and time.sleep while a probe runs: remembers what the
    learner's code asked for. A time.sleep in a coroutine would stop the event loop for that
    long, so it returns at once and is reported instead."""

    def __init__(self):
        self.asked: list[float] = []
        self.blocking: list[float] = []

    @contextlib.contextmanager
    def installed(self, ns: dict):
        real_async, real_blocking = asyncio.sleep, time.sleep
        spy = self

        async def sleep(delay, result=None):
            if is_learner_file(sys._getframe(1).f_code.co_filename):
                spy.asked.append(delay)
            return await real_async(delay, result)

        def blocking_sleep(seconds):
            if in_event_loop() and is_learner_file(sys._getframe(1).f_code.co_filename):
                spy.blocking.append(seconds)
                return None
            return real_blocking(seconds)

        with swapped(ns, asyncio, {"sleep": sleep}), swapped(ns, time, {"sleep": blocking_sleep}):
            yield self

    def diagnosis(self, seconds: float) -> tuple[str, str]:
        if not self.asked:
            return ("nothing of yours awaited asyncio.sleep",
                    "In __init__: self.deadline = asyncio.get_running_loop().create_task("
                    "self._expire()), where _expire awaits asyncio.sleep(seconds), then "
                    "self.time_out().")
        longest = max(self.asked)
        if longest > seconds * 2 and seconds > 0:
            return (f"your deadline task sleeps {longest!r} s for a {seconds:g} s deadline",
                    "asyncio.sleep takes seconds, the same `seconds` __init__ got.")
        return ("your deadline task slept, then the thread was not resumed",
                "After the sleep, await self.time_out(), and in decide await the resume (await "
                "self.app.ainvoke(...): without await nothing runs). decide must not cancel the "
                "task it runs in (asyncio.current_task()), or the resume is cancelled with it.")


async def _wait_rows_async(probe: _Probe, thread_id: str, count: int, seconds: float,
                           hopeless=lambda: False) -> None:
    started = time.monotonic()

    def waiting() -> float:  # as _wait_rows: a resume sent is waited for longer
        sent = len(probe.app.sent_to(thread_id)) >= count
        return max(seconds, time_left() * 0.4) if sent else seconds

    while (len(probe.rows(thread_id)) < count and time.monotonic() - started < waiting()
           and not hopeless()):
        await asyncio.sleep(0.005)


async def _create(probe: _Probe, thread_id: str, seconds: float):
    return probe.make(thread_id, seconds, " inside a running loop")


async def _awaited(label: str, coroutine_function, *args):
    """Await the learner's coroutine; a plain def (no await possible) is a flaw of its own."""
    result = coroutine_function(*args)
    if not asyncio.iscoroutine(result):
        raise Flaw(f"{label} is not a coroutine", tried=label,
                   got=f"it returned {result!r} at once", expected="async def ...",
                   hint="Write `async def decide(...)` and `async def time_out(...)`, and "
                        "await the resume: await self.app.ainvoke(Command(resume=...), ...).")
    return await result


async def _acall(probe: _Probe, click: _Click, approval, label: str | None = None):
    try:
        return await click.acall(approval)
    except (Flaw, NotAttempted, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise probe.error(exc, label or f"await {click.name}") from None


def async_no_answer_rejects(ns: dict) -> None:
    cases = [(zone, N) for zone in time_zones()] + [(None, seconds) for seconds in DUE]
    for number, (zone, seconds) in enumerate(cases):
        with local_time_zone(zone):
            probe = _Probe(ns, "AsyncTimedApproval")
            thread_id = f"async-quiet-{number}"
            probe.pause(thread_id)
            spy = _SleepSpy()
            tried = (f"nobody answers a {seconds:g} s deadline" if seconds > 0 else
                     f"a deadline already due ({seconds:g} s)") + _zone_text(zone)
            waited = _in_new_loop(probe, _quiet(probe, thread_id, seconds, spy), tried, spy)
            _judge_timeout(probe, thread_id, waited, seconds, spy.diagnosis, zone)


def _quiet(probe: _Probe, thread_id: str, seconds: float, spy: _SleepSpy):
    """The coroutine of a probe that makes an approval and waits for its deadline."""
    async def run():
        started = time.monotonic()
        await _create(probe, thread_id, seconds)
        await _wait_rows_async(probe, thread_id, 1, _patience(0.15),
                               lambda: seconds > 0 and any(a > seconds * 2 for a in spy.asked))
        return time.monotonic() - started

    return run


def async_answer_in_time_wins(ns: dict) -> None:
    probe = _Probe(ns, "AsyncTimedApproval")
    deadline = N * 2
    tried = (f"await decide(...) {deadline / 4:g} s into a {deadline:g} s deadline, then every "
             "later call")

    async def run():
        for number, first in enumerate(FIRSTS):
            thread_id = f"async-answered-{number}"
            probe.pause(thread_id)
            approval = await _create(probe, thread_id, deadline)
            await asyncio.sleep(deadline / 4)  # the deadline task is running; then one clicks
            won = await _acall(probe, first, approval)
            if won is not True:
                raise Flaw("an answer in time did not win", tried=f"await {first.name}",
                           got=f"it returned {won!r}", expected="True",
                           hint="decide() resumes with await self.app.ainvoke(Command(resume={"
                                "'decision': ..., 'approver': ..., 'reason': ...}), config) and "
                                "returns True.")
            _judge_first(probe, thread_id, first, f"await {first.name}")
            for later in LATER:
                again = await _acall(probe, later, approval,
                                     f"await {later.name} after {first.name}")
                _refused(probe, thread_id, f"await {first.name}, then await {later.name}", again)
        await asyncio.sleep(deadline * 1.5)

    _in_new_loop(probe, run, tried)
    if probe.timed_out:
        raise Flaw("the deadline task still called time_out() after the approval was decided",
                   tried=tried, got="time_out() ran at the deadline", expected="never",
                   hint="Cancel the deadline task in decide(): self.deadline.cancel() (but not "
                        "from inside that task, which is the one running time_out).")


def async_click_and_timeout_decide_once(ns: dict) -> None:
    probe = _Probe(ns, "AsyncTimedApproval")

    async def run():
        for first in (0, 1):
            _, alone = await _new_async(probe, f"async-alone-{next(_threads)}")
            steps = await steps_alone(partial(_acall, probe, PAIR[first], alone))
            for k in range(0, steps + 1):
                await _async_race(probe, PAIR, first, k, steps)

    _in_new_loop(probe, run, "two coroutines started together, the second after each step "
                             "of the first")


async def _new_async(probe: _Probe, thread_id: str):
    probe.pause(thread_id)
    return thread_id, await _create(probe, thread_id, LONG_S)


async def _async_race(probe: _Probe, pair, first: int, k: int, steps: int) -> None:
    thread_id, approval = await _new_async(probe, f"async-race-{next(_threads)}")
    one, two = pair[first], pair[1 - first]
    results = await stepped(lambda: _acall(probe, one, approval),
                            lambda: _acall(probe, two, approval), k)
    schedule = (f"await {one.name}, then await {two.name}, one after the other" if k >= steps
                else f"await {one.name} and await {two.name} together: {two.name} started after "
                     f"{k} step(s) of the event loop")
    for result in results:
        if isinstance(result, BaseException):
            raise result
    returned = [None, None]
    returned[first], returned[1 - first] = results
    _judge_race(probe, thread_id, pair, first, returned, schedule, k >= steps, ASYNC_RACE_HINT)


ASYNC_RACE_HINT = ("Every await is a point where another coroutine runs. Check and set the flag "
                   "with no await between them (or hold an asyncio.Lock), and only then await "
                   "the resume.")


def async_approvals_keep_their_own_state(ns: dict) -> None:
    """Several async approvals alive at once; one decided while another's resume is slow; a
    thread paused again gets a new approval."""
    probe = _Probe(ns, "AsyncTimedApproval")
    plan = {"people-a": ("approved", "ana", "fine"), "people-b": ("rejected", "bo", "not now"),
            "quiet-a": N, "quiet-b": N * 1.5}
    tried = ("four async approvals alive at once: two decided by people (in reverse order), two "
             "left to time out")

    async def several():
        probe.pause("alone")
        await _acall(probe, CLICK, await _create(probe, "alone", LONG_S))
        if len(probe.rows("alone")) != 1:
            return False  # an approval alone does not work: the in-time check says why
        approvals = {}
        for thread_id, what in plan.items():
            probe.pause(thread_id)
            approvals[thread_id] = await _create(probe, thread_id, what if isinstance(
                what, float) else LONG_S)
        for thread_id in ("people-b", "people-a"):
            click = _click(*plan[thread_id])
            won = await _acall(probe, click, approvals[thread_id])
            if won is False:
                raise Flaw("deciding one approval was refused because of another", tried=tried,
                           got=f"await decide on {thread_id} returned {won!r}", expected="True",
                           hint=SHARED_HINT)
        for thread_id in ("quiet-a", "quiet-b"):
            await _wait_rows_async(probe, thread_id, 1, _patience(0.1))
        return True

    if not _in_new_loop(probe, several, tried):
        return
    _judge_several({t: probe.rows(t) for t in plan}, plan, tried)

    slow_tried = ("await decide('approved', 'ana') on one approval, whose resume takes long; "
                  "meanwhile await decide('rejected', 'bo') on another")

    async def slow():
        _, slow_one = await _new_async(probe, "slow")
        _, other = await _new_async(probe, "other")
        probe.app.hold("slow")
        first = asyncio.ensure_future(_acall(probe, CLICK, slow_one))
        while not probe.app.sent_to("slow") and not first.done():
            await asyncio.sleep(0.001)
        try:
            second = await asyncio.wait_for(_acall(probe, OTHER_CLICK, other), _patience(0.15))
        except TimeoutError:
            second = "waited"
        during = probe.rows("other")
        probe.app.release("slow")
        return second, during, await first

    second, during, first = _in_new_loop(probe, slow, slow_tried)
    if second == "waited":
        raise Flaw("deciding one approval waits for another approval's slow resume",
                   tried=slow_tried, got="bo's decide did not return while ana's resume ran",
                   expected="bo's decide returns at once: the two approvals share nothing",
                   hint="Don't hold an asyncio.Lock shared by every approval (on the class, or "
                        "in the module) around the resume: " + SHARED_HINT)
    if second is not True or [(r["decision"], r["approver"]) for r in during] != [
            ("rejected", "bo")] or first is not True:
        raise Flaw("deciding one approval was refused, or did nothing, because another "
                   "approval was resuming", tried=slow_tried,
                   got=f"bo's decide returned {second!r}, its log: {_decided(during)}; ana's "
                       f"returned {first!r}", expected="True and rejected by bo; True for ana",
                   hint=SHARED_HINT)

    again_tried = ("thread 'again': approved by ana; paused again, the first approval's late "
                   "time_out(), then a new approval rejected by bo")

    async def again():
        _, old = await _new_async(probe, "again")
        await _acall(probe, CLICK, old)
        probe.pause("again")
        late = None
        with contextlib.suppress(Flaw):  # what a late call returns is the in-time check's
            late = await _acall(probe, TIMEOUT, old, "the first approval's late time_out()")
        new = await _create(probe, "again", LONG_S)
        return late, await _acall(probe, REJECT, new)

    late, won = _in_new_loop(probe, again, again_tried)
    rows = [(r["decision"], r["approver"]) for r in probe.rows("again")]
    if won is False or rows != [("approved", "ana"), ("rejected", "bo")]:
        raise Flaw("a thread paused again is not decided by its own new approval",
                   tried=again_tried, got=f"the late time_out() returned {late!r}, the new "
                                          f"approval's decide {won!r}; log: "
                                          f"{_decided(probe.rows('again'))}",
                   expected="False, True; approved by ana, then rejected by bo",
                   hint=AGAIN_HINT)


CHECKS = [
    Check("no answer within N seconds (or a deadline already due): rejected, logged as "
          "timed-out by system", no_answer_rejects_as_timed_out,
          "In __init__, last: self.timer = threading.Timer(seconds, self.time_out); start it. "
          "time_out() decides 'rejected' as approver 'system', with a reason."),
    Check("an answer in time wins, keeps its reason, and the timer never fires",
          answer_in_time_wins_and_timer_never_fires,
          "decide() resumes the graph with Command(resume={...}) and cancels the timer; any "
          "later call, by anyone, returns False."),
    Check("a click and the timeout at the same instant: one decision, one execution",
          click_and_timeout_at_once_decide_once,
          "Two threads can both see 'not decided yet' and both resume (LangGraph runs both). "
          "Hold one threading.Lock around: check the flag, set it, resume."),
    Check("several approvals alive at once each keep their own state, and a slow resume "
          "blocks no other", several_approvals_keep_their_own_state,
          "Everything an approval needs (flag, lock, timer and config) lives on self, set in "
          "__init__; nothing on the class or in module variables, and no lock shared by every "
          "approval around the resume."),
    Check("a thread paused again is decided by its new approval",
          a_thread_paused_again_gets_a_new_approval,
          "An approval answers one pause: keep its state on the instance, not keyed by thread "
          "id on the class or in the module."),
    Check("asyncio: no answer within N seconds (or a deadline already due): rejected by system",
          async_no_answer_rejects,
          "In __init__, start a task (asyncio.get_running_loop().create_task(...)) that awaits "
          "asyncio.sleep(seconds), then time_out()."),
    Check("asyncio: an answer in time wins and the deadline task never fires",
          async_answer_in_time_wins,
          "decide() cancels the deadline task and awaits self.app.ainvoke(Command(...)); wait "
          "with asyncio.sleep, never time.sleep."),
    Check("asyncio: a click and the timeout started together: one decision",
          async_click_and_timeout_decide_once,
          "Between two awaits nothing else runs: check and set the flag with no await between, "
          "then await the resume."),
    Check("asyncio: approvals alive at once, a slow resume, a thread paused again",
          async_approvals_keep_their_own_state,
          "Everything an approval needs lives on self; no asyncio.Lock shared by every approval "
          "around the resume."),
]


def _warm_up() -> None:
    """Compile, pause and resume a small graph once, sync and async, before the checks fork."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    builder = StateGraph(dict)
    builder.add_node("ask", lambda state: {"answer": interrupt("?")})
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=InMemorySaver())

    async def run_async():
        await graph.ainvoke({"answer": None}, _config("warm-async"))
        await graph.ainvoke(Command(resume="yes"), _config("warm-async"))

    graph.invoke({"answer": None}, _config("warm"))
    graph.invoke(Command(resume="yes"), _config("warm"))
    worker = threading.Thread(target=asyncio.run, args=(run_async(),), daemon=True)
    worker.start()  # a thread of its own: the caller may be inside a running loop (a kernel)
    worker.join()


DRILL = Drill(
    key="drill4",
    title="Drill 4: reject by default when nobody answers",
    notebook="04_timeout_default.ipynb",
    checks=CHECKS,
    prepare=_warm_up,
)
