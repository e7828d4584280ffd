"""Drill 4: when nobody answers within N seconds, reject by default, exactly once.

Part A: ``TimedApproval(app, thread_id, seconds)`` with ``decide(decision, approver, reason)``
and ``time_out()``, its deadline a ``threading.Timer``. Part B: ``AsyncTimedApproval``, the same
in asyncio (``await decide(...)``, a deadline task). Both wrap the drill's paused-approval graph
(``make_example()``). The checks run them with short deadlines: no answer, an answer in time,
a click racing the timeout (threads: forced to interleave line by line under a tiny
``sys.setswitchinterval``, many trials; asyncio: both coroutines started together), and several
approvals alive at once. A spy on ``threading.Timer`` and ``asyncio.sleep`` says what the
learner's deadline really did when nothing happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from types import SimpleNamespace

from hitl_kit.course.selfcheck import (
    Check,
    Drill,
    Flaw,
    NotAttempted,
    attempt,
    is_learner_file,
    is_stub,
    learner_error,
    need,
)
from hitl_kit.vocabulary import Approver, Verdict

N = 0.1  # the deadline the checks use, in seconds
WAIT_S = 3.0  # how long a check waits for something due in 0.1 s (a loaded machine is slow)
LONG_S = 30.0  # a deadline that never comes during a check
TRACED_TRIALS = 12  # races interleaved line by line (each order six times)
SWITCH_TRIALS = 16  # races left to a tiny switch interval
ACTION = "delete_customer 3"
TIMED_OUT = Verdict.TIMED_OUT.value
SYSTEM = Approver.SYSTEM.value


# -- the learner's parts ---------------------------------------------------------------------------

def _parts(ns: dict, name: str, *methods: str):
    """make_example and the learner's class; NotAttempted while a needed method is the stub."""
    make_example, cls = need(ns, "make_example", name)
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


def _rows(example, thread_id: str) -> list[dict]:
    return [row for row in example.log if row["thread_id"] == thread_id]


def _ran(example, thread_id: str) -> int:
    return sum(1 for t, _ in example.effects if t == thread_id)


def _decided(rows: list[dict]) -> str:
    return ", ".join(f"{r['decision']} by {r['approver']}" for r in rows) or "nothing"


def _construct(cls, example, thread_id: str, seconds: float):
    label = f"{cls.__name__}(app, {thread_id!r}, {seconds:g})"
    try:
        return cls(example.app, thread_id, seconds)
    except Exception as exc:
        raise _construction_error(exc, label) from None


def _construction_error(exc: BaseException, label: str) -> Exception:
    names = [f.name for f in _learner_frames(exc)]
    if "__init__" in names and "time_out" in names[names.index("__init__"):]:
        return learner_error(exc, label, hint=(
            "threading.Timer(seconds, self.time_out()) calls time_out now, inside __init__, "
            "and gives the timer its result. Pass the method itself: self.time_out."))
    return learner_error(exc, label)


def _learner_frames(exc: BaseException) -> list:
    import traceback

    return [f for f in traceback.extract_tb(exc.__traceback__) if is_learner_file(f.filename)]


def _wait_for_rows(example, thread_id: str, count: int, seconds: float,
                   hopeless=lambda: False) -> float:
    """Wait until ``thread_id`` has ``count`` log rows (or waiting is ``hopeless``)."""
    started = time.monotonic()
    while (len(_rows(example, thread_id)) < count and time.monotonic() - started < seconds
           and not hopeless()):
        time.sleep(0.005)
    return time.monotonic() - started


@contextlib.contextmanager
def _swapped(ns: dict, module, stand_ins: dict):
    """Replace ``module.<name>`` (and the same name in the learner's namespace, if it was
    imported there) by a stand-in while the block runs; everything is put back after."""
    done = []
    for name, stand_in in stand_ins.items():
        real = getattr(module, name)
        setattr(module, name, stand_in)
        done.append((module.__dict__, name, real))
        if ns.get(name) is real:
            ns[name] = stand_in
            done.append((ns, name, real))
    try:
        yield
    finally:
        for space, name, real in done:
            space[name] = real


# -- what the learner's deadline did ---------------------------------------------------------------

class _TimerSpy:
    """Stands in for threading.Timer while a probe runs, and remembers each timer's fate."""

    def __init__(self):
        self.timers: list = []
        real = threading.Timer
        spy = self

        class Timer(real):
            def __init__(self, interval, function, args=None, kwargs=None):
                self.spied = SimpleNamespace(interval=interval, function=function, started=False,
                                             fired=False, error=None)
                spy.timers.append(self.spied)
                super().__init__(interval, self._fire, args, kwargs)

            def start(self):
                self.spied.started = True
                super().start()

            def _fire(self, *args, **kwargs):
                self.spied.fired = True
                try:
                    self.spied.function(*args, **kwargs)
                except BaseException as exc:  # shown in the check's message
                    self.spied.error = exc

        self.real, self.Timer = real, Timer

    def installed(self, ns: dict):
        return _swapped(ns, threading, {"Timer": self.Timer})

    def hopeless(self) -> bool:
        """The one timer made cannot end the wait in time: no need to wait it out."""
        if len(self.timers) != 1:
            return False
        timer = self.timers[0]
        return not callable(timer.function) or timer.interval != N or timer.error is not None

    def diagnosis(self, seconds: float) -> tuple[str, str]:
        """(what the timer did, the hint for it) when the thread is still paused."""
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
        if timer.interval != seconds:
            return (f"the timer was set for {timer.interval!r} s for a {seconds:g} s deadline",
                    "threading.Timer takes seconds (a float), the same `seconds` __init__ got: "
                    "not milliseconds, not minutes.")
        if timer.error is not None:
            made = learner_error(timer.error, "time_out(), called by the timer")
            if isinstance(made, NotAttempted):
                raise made
            return (f"the timer fired and time_out raised {type(timer.error).__name__}: "
                    f"{timer.error}", made.hint or "")
        if timer.fired:
            return ("the timer fired, but time_out() did not resume the thread",
                    "time_out() must decide: self.decide('rejected', 'system', reason), which "
                    "resumes the graph with Command(resume=...).")
        return ("the timer was started but had not fired", "Is it cancelled before it fires?")


# -- part A: threads -------------------------------------------------------------------------------

def no_answer_rejects_as_timed_out(ns: dict) -> None:
    make_example, cls = _parts(ns, "TimedApproval", "__init__", "decide", "time_out")
    example = make_example()
    _pause(example, "quiet")
    spy = _TimerSpy()
    with spy.installed(ns):
        started = time.monotonic()
        _construct(cls, example, "quiet", N)
        _wait_for_rows(example, "quiet", 1, WAIT_S, spy.hopeless)
        waited = time.monotonic() - started
    _judge_timeout(example, "quiet", waited, N, spy.diagnosis)


def _judge_timeout(example, thread_id: str, waited: float, seconds: float, diagnosis) -> None:
    rows = _rows(example, thread_id)
    tried = f"nobody answers a {seconds:g} s deadline"
    if not rows:
        what, hint = diagnosis(seconds)
        raise Flaw(f"nobody answered, and the thread is still paused after the {seconds:g} s "
                   "deadline", tried=f"{tried}, then wait {waited:.1f} s", got=what,
                   expected=f"a rejection by {SYSTEM!r} after {seconds:g} s", hint=hint)
    first = rows[0]
    if len(rows) > 1:
        raise Flaw("the timeout resolved the approval more than once", tried=tried,
                   got=_decided(rows), expected="one resolution",
                   hint="Decide at most once: time_out goes through decide, which checks and "
                        "sets the flag under the lock.")
    if _ran(example, thread_id):
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
    if waited < seconds * 0.9:
        raise Flaw("the default came before the deadline", tried=tried,
                   got=f"resolved after {waited:.3f} s", expected=f"not before {seconds:g} s",
                   hint="Start the timer with `seconds`, and do not call time_out yourself in "
                        "__init__ (self.time_out, without parentheses).")
    if not str(first.get("reason") or "").strip():
        raise Flaw("the timeout gives no reason", tried=tried, got=f"reason {first['reason']!r}",
                   expected="a reason that says what happened, e.g. 'no answer within 0.1 s'",
                   hint="time_out passes a reason to decide, and decide puts it in the resume "
                        "value: {'decision': ..., 'approver': ..., 'reason': reason}.")


def answer_in_time_wins_and_timer_never_fires(ns: dict) -> None:
    make_example, cls = _parts(ns, "TimedApproval", "__init__", "decide", "time_out")
    by_timer = []
    probe_thread = threading.current_thread()

    class Watched(cls):
        def time_out(self):
            if threading.current_thread() is not probe_thread:
                by_timer.append(time.monotonic())
            return super().time_out()

    Watched.__name__ = Watched.__qualname__ = cls.__name__  # as the learner knows it

    example = make_example()
    _pause(example, "answered")
    deadline = N * 2
    created = time.monotonic()
    approval = _construct(Watched, example, "answered", deadline)
    won = attempt("decide('approved', 'ana', 'looks right')", approval.decide, "approved", "ana",
                  "looks right")
    tried = f"decide('approved', 'ana', 'looks right') at once, with a {deadline:g} s deadline"
    if won is not True:
        raise Flaw("decide() on an undecided approval did not return True", tried=tried,
                   got=repr(won), expected="True: this call decided it",
                   hint="Return True when this call decided, False when someone was first.")
    rows = _rows(example, "answered")
    if [(r["decision"], r["approver"]) for r in rows] != [("approved", "ana")] or _ran(
            example, "answered") != 1:
        raise Flaw("an answer in time did not resume the thread once, approved by ana",
                   tried=tried, got=f"log: {_decided(rows)}; the action ran "
                                    f"{_ran(example, 'answered')} time(s)",
                   expected="one resolution, approved by ana; the action ran once",
                   hint="decide() resumes the graph with Command(resume={'decision': decision, "
                        "'approver': approver, 'reason': reason}) before it returns.")
    if rows[0]["reason"] != "looks right":
        raise Flaw("the approver's reason was lost", tried=tried,
                   got=f"reason {rows[0]['reason']!r}", expected="'looks right'",
                   hint="Put the reason decide() was given into the resume value.")
    again = attempt("a second decide('rejected', 'bo')", approval.decide, "rejected", "bo")
    late = attempt("time_out() after the decision (a late timer)", Watched.time_out, approval)
    if again is not False or late is not False or len(_rows(example, "answered")) != 1:
        raise Flaw("a decision after the first one was not refused",
                   tried="decide('rejected', 'bo'), then time_out(), after ana had decided",
                   got=f"they returned {again!r} and {late!r}; log: "
                       f"{_decided(_rows(example, 'answered'))}",
                   expected="both return False and nothing more happens",
                   hint="Once decided, decide() returns False without resuming anything.")
    time.sleep(max(0.0, created + deadline * 1.5 - time.monotonic()))
    if by_timer:
        raise Flaw("the timer still fired after ana had decided", tried=tried,
                   got="the timer called time_out() after the deadline",
                   expected="the timer cancelled: it never fires",
                   hint="Cancel the timer in decide(): self.timer.cancel(). A timer left running "
                        "fires later, when a decision may be about something else.")


class _Alternate:
    """Two racing threads take turns, one line of the learner's methods each, so a window
    between checking a flag and setting it is hit on purpose, not by luck or load.

    A thread waits for its turn at each line; it stops waiting when the other thread cannot take
    a turn: blocked on a lock the learner made (``locks`` reports it), or done. ``phase`` picks
    which thread goes first, so both offsets of the two threads' lines are tried.
    """

    GIVE_UP_S = 0.25  # only for other kinds of blocking (an Event, a Condition...)

    def __init__(self, codes: set, phase: int):
        self.codes = codes
        self.turn = phase
        self.cond = threading.Condition()
        self.blocked = [False, False]
        self.done = [False, False]

    def tracer(self, me: int):
        other = 1 - me

        def line(frame, event, arg):
            if event == "line":
                with self.cond:
                    self.cond.wait_for(lambda: self.turn == me or self.blocked[other]
                                       or self.done[other], timeout=self.GIVE_UP_S)
                    self.turn = other
                    self.cond.notify_all()
            return line

        return lambda frame, event, arg: line if frame.f_code in self.codes else None

    def mark(self, me: int, *, blocked: bool | None = None, done: bool | None = None) -> None:
        with self.cond:
            if blocked is not None:
                self.blocked[me] = blocked
            if done is not None:
                self.done[me] = done
            self.cond.notify_all()


class _LockSpy:
    """While installed, a threading.Lock or RLock made by the learner's code tells the
    alternation when a racer is blocked on it."""

    def __init__(self):
        self.alternate: _Alternate | None = None
        self.racers: dict[int, int] = {}  # thread ident -> racer number

    @contextlib.contextmanager
    def installed(self, ns: dict, cls):
        """Locks made from now on by the learner's code are watched, and so are the locks
        already on the class or in the learner's module (made before the race began)."""
        kinds = (type(threading.Lock()), type(threading.RLock()))
        made = [(owner, name, value) for owner in (ns, *cls.__mro__[:-1])
                for name, value in list((owner if isinstance(owner, dict) else vars(owner))
                                        .items()) if isinstance(value, kinds)]
        for owner, name, value in made:
            _put(owner, name, _WatchedLock(value, self))
        try:
            with _swapped(ns, threading, {name: self._factory(getattr(threading, name))
                                          for name in ("Lock", "RLock")}):
                yield self
        finally:
            for owner, name, value in made:
                _put(owner, name, value)

    def _factory(self, real):
        def make(*args, **kwargs):
            lock = real(*args, **kwargs)
            caller = sys._getframe(1).f_code.co_filename
            return _WatchedLock(lock, self) if is_learner_file(caller) else lock

        return make

    def waiting(self, blocked: bool) -> None:
        me = self.racers.get(threading.get_ident())
        if self.alternate is not None and me is not None:
            self.alternate.mark(me, blocked=blocked)


def _put(owner, name: str, value) -> None:
    """Set ``name`` in a namespace dict or on a class."""
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)


class _WatchedLock:
    def __init__(self, lock, spy: _LockSpy):
        self._lock, self._spy = lock, spy

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        self._spy.waiting(True)
        try:
            return self._lock.acquire(True, timeout)
        finally:
            self._spy.waiting(False)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def _method_codes(cls) -> set:
    codes = set()
    for klass in cls.__mro__[:-1]:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                codes.add(code)
                codes.update(c for c in code.co_consts if hasattr(c, "co_code"))
    return codes


def _race(cls, example, thread_id: str, calls, alternate: _Alternate | None,
          locks: _LockSpy) -> dict:
    _pause(example, thread_id)
    approval = _construct(cls, example, thread_id, LONG_S)  # the real timer is far away
    returned, errors = {}, []
    barrier = threading.Barrier(2)
    locks.alternate = alternate

    def run(me: int, name: str, call):
        locks.racers[threading.get_ident()] = me
        if alternate is not None:
            sys.settrace(alternate.tracer(me))
        barrier.wait()
        try:
            returned[name] = call(approval)
        except BaseException as exc:  # shown in the check's result, not lost in a thread
            errors.append((name, exc))
        finally:
            sys.settrace(None)
            if alternate is not None:
                alternate.mark(me, done=True)

    racers = [threading.Thread(target=run, args=(i, name, call), daemon=True)
              for i, (name, call) in enumerate(calls)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(WAIT_S * 5)
    locks.racers.clear()
    if errors:
        name, exc = errors[0]
        raise learner_error(exc, f"{name}, racing")
    return returned


RACE_HINT = ("A flag alone is not enough: both threads can read 'not decided yet' before either "
             "sets it. Hold one threading.Lock around: check the flag, set it, resume.")
CLICK = ("decide('approved', 'ana')", lambda a: a.decide("approved", "ana"))
TIMEOUT = ("time_out()", lambda a: a.time_out())
SECOND_CLICK = ("decide('rejected', 'bo')", lambda a: a.decide("rejected", "bo"))


def click_and_timeout_at_once_decide_once(ns: dict) -> None:
    make_example, cls = _parts(ns, "TimedApproval", "__init__", "decide", "time_out")
    example = make_example()
    codes = _method_codes(cls)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    locks = _LockSpy()
    try:
        with locks.installed(ns, cls):
            for trial in range(TRACED_TRIALS + SWITCH_TRIALS):
                pair = [CLICK, SECOND_CLICK if trial % 6 == 5 else TIMEOUT]
                if trial % 2:
                    pair.reverse()
                traced = trial < TRACED_TRIALS
                alternate = _Alternate(codes, phase=(trial // 2) % 2) if traced else None
                thread_id = f"race-{trial}"
                returned = _race(cls, example, thread_id, pair, alternate, locks)
                _judge_race(example, thread_id, trial, pair, returned, traced)
    finally:
        sys.setswitchinterval(previous)


def _judge_race(example, thread_id: str, trial: int, pair, returned: dict, traced: bool) -> None:
    rows = _rows(example, thread_id)
    tried = (f"trial {trial + 1}: {pair[0][0]} and {pair[1][0]} at the same instant"
             + (", their lines interleaved one by one" if traced else ""))
    winners = sorted(name for name, value in returned.items() if value is True)
    if len(rows) > 1 or len(winners) > 1:  # whether both resumes ran is up to LangGraph's timing
        raise Flaw("two callers at the same instant both decided", tried=tried,
                   got=f"{len(rows)} resolution(s) ({_decided(rows)}); they returned {returned}",
                   expected="one resolution: one caller decides (True), the other finds it "
                            "decided (False)", hint=RACE_HINT)
    if not rows:
        raise Flaw("two callers at the same instant left the thread undecided", tried=tried,
                   got=f"no resolution; they returned {returned}",
                   expected="exactly one resolution",
                   hint="The first caller must resume the graph before it returns True.")
    ran = _ran(example, thread_id)
    if ran and rows[0]["approver"] == SYSTEM:
        raise Flaw("the timeout ran the action", tried=tried, got=f"{_decided(rows)}, and the "
                   f"action ran {ran} time(s)", expected="the default runs nothing",
                   hint="The safe default is 'rejected': time_out decides ('rejected', "
                        "'system', reason).")
    if ran != (rows[0]["decision"] == "approved"):
        raise Flaw("the log and what ran disagree", tried=tried,
                   got=f"{_decided(rows)}, but the action ran {ran} time(s)",
                   expected="the action runs once if approved, else never",
                   hint="Resume exactly once, with the winner's decision.")
    losers = [name for name, value in returned.items() if value is False]
    if len(winners) != 1 or len(losers) != 1:
        raise Flaw("the two callers were not told who won", tried=tried,
                   got=f"they returned {returned}", expected="True for the winner, False for "
                                                          "the other",
                   hint="decide() returns True when this call decided, False when someone was "
                        "first.")


def several_approvals_keep_their_own_state(ns: dict) -> None:
    make_example, cls = _parts(ns, "TimedApproval", "__init__", "decide", "time_out")
    example = make_example()
    plan = {"people-a": ("approved", "ana", "fine"), "people-b": ("rejected", "bo", "not now"),
            "quiet-a": N, "quiet-b": N * 1.5}
    approvals = {}
    for thread_id, what in plan.items():
        _pause(example, thread_id)
        approvals[thread_id] = _construct(cls, example, thread_id,
                                          what if isinstance(what, float) else LONG_S)
    tried = ("four approvals alive at once: two decided by people (in reverse order), two left "
             "to time out")
    for thread_id in ("people-b", "people-a"):
        decision, approver, reason = plan[thread_id]
        won = attempt(f"decide({decision!r}, {approver!r}) on {thread_id}",
                      approvals[thread_id].decide, decision, approver, reason)
        if won is False:
            raise Flaw("deciding one approval was refused because of another", tried=tried,
                       got=f"decide on {thread_id} returned {won!r}", expected="True",
                       hint="Keep each approval's flag, lock, timer and config on the instance "
                            "(self.…), set in __init__: a class attribute or a module variable "
                            "is shared by every approval.")
    for thread_id in ("quiet-a", "quiet-b"):
        _wait_for_rows(example, thread_id, 1, WAIT_S)
    rows = {thread_id: _rows(example, thread_id) for thread_id in plan}
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
                expected=expected,
                hint="Keep each approval's flag, lock, timer and config on the instance (self.…), "
                     "set in __init__: a class attribute or a module variable is shared by every "
                     "approval, so one approval's decide resumes or cancels another's.")


# -- part B: asyncio -------------------------------------------------------------------------------

def _in_new_loop(make_coroutine):
    """Run a coroutine in a fresh event loop on a thread of its own (the caller may already be
    inside a running loop, as a kernel's cell is)."""
    box: list = []

    def run():
        try:
            box.append(("ok", asyncio.run(make_coroutine())))
        except BaseException as exc:
            box.append(("error", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join()
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


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
            if _in_event_loop() and is_learner_file(sys._getframe(1).f_code.co_filename):
                spy.blocking.append(seconds)
                return None
            return real_blocking(seconds)

        with _swapped(ns, asyncio, {"sleep": sleep}), _swapped(ns, time, {"sleep": blocking_sleep}):
            yield self

    def blocked(self, tried: str) -> None:
        if self.blocking:
            raise Flaw("your code calls time.sleep inside a coroutine", tried=tried,
                       got=f"time.sleep({self.blocking[0]!r}) while the event loop ran",
                       expected="await asyncio.sleep(...)",
                       hint="time.sleep stops the whole event loop: no click, no other task "
                            "runs meanwhile. In a coroutine, wait with await asyncio.sleep().")

    def diagnosis(self, seconds: float) -> tuple[str, str]:
        if not self.asked:
            return ("nothing of yours awaited asyncio.sleep",
                    "In __init__: self.deadline = asyncio.get_running_loop().create_task("
                    "self._expire()), where _expire awaits asyncio.sleep(seconds), then "
                    "self.time_out().")
        if self.asked[-1] != seconds:
            return (f"your deadline task sleeps {self.asked[-1]!r} s for a {seconds:g} s "
                    "deadline", "asyncio.sleep takes seconds, the same `seconds` __init__ got.")
        return ("your deadline task slept, then the thread was not resumed",
                "After the sleep, await self.time_out(), and in decide await the resume (await "
                "self.app.ainvoke(...): without await nothing runs). decide must not cancel the "
                "task it runs in (asyncio.current_task()), or the resume is cancelled with it.")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _wait_rows_async(example, thread_id: str, count: int, seconds: float,
                           hopeless=lambda: False) -> None:
    started = time.monotonic()
    while (len(_rows(example, thread_id)) < count and time.monotonic() - started < seconds
           and not hopeless()):
        await asyncio.sleep(0.005)


async def _create(cls, example, thread_id: str, seconds: float):
    label = f"{cls.__name__}(app, {thread_id!r}, {seconds:g}) inside a running loop"
    try:
        return cls(example.app, thread_id, seconds)
    except Exception as exc:
        raise _construction_error(exc, label) from None


async def _call(label: str, coroutine_function, *args):
    """Await the learner's coroutine; a plain def (no await possible) is a flaw of its own."""
    try:
        result = coroutine_function(*args)
        if not asyncio.iscoroutine(result):
            raise Flaw(f"{label} is not a coroutine", tried=label,
                       got=f"it returned {result!r} at once", expected="async def ...",
                       hint="Write `async def decide(...)` and `async def time_out(...)`, and "
                            "await the resume: await self.app.ainvoke(Command(resume=...), ...).")
        return await result
    except (Flaw, NotAttempted):
        raise
    except Exception as exc:
        raise learner_error(exc, label) from None


def async_no_answer_rejects(ns: dict) -> None:
    make_example, cls = _parts(ns, "AsyncTimedApproval", "__init__", "decide", "time_out")
    example = make_example()
    _pause(example, "async-quiet")
    spy = _SleepSpy()

    async def probe():
        started = time.monotonic()
        approval = await _create(cls, example, "async-quiet", N)
        await _wait_rows_async(example, "async-quiet", 1, WAIT_S,
                               lambda: spy.blocking or any(a != N for a in spy.asked))
        return approval, time.monotonic() - started

    with spy.installed(ns):
        _, waited = _in_new_loop(probe)
    spy.blocked(f"nobody answers a {N:g} s deadline")
    _judge_timeout(example, "async-quiet", waited, N, spy.diagnosis)


def async_answer_in_time_wins(ns: dict) -> None:
    make_example, cls = _parts(ns, "AsyncTimedApproval", "__init__", "decide", "time_out")
    fired = []

    class Watched(cls):
        async def time_out(self):
            fired.append(asyncio.current_task())
            return await super().time_out()

    Watched.__name__ = Watched.__qualname__ = cls.__name__  # as the learner knows it

    example = make_example()
    _pause(example, "async-answered")
    deadline = N * 2

    async def probe():
        approval = await _create(Watched, example, "async-answered", deadline)
        await asyncio.sleep(deadline / 4)  # the deadline task is running; then ana clicks
        won = await _call("await decide('approved', 'ana', 'looks right')", approval.decide,
                          "approved", "ana", "looks right")
        await asyncio.sleep(deadline * 1.5)
        return won

    spy = _SleepSpy()
    with spy.installed(ns):
        won = _in_new_loop(probe)
    tried = (f"await decide('approved', 'ana', 'looks right') {deadline / 4:g} s into a "
             f"{deadline:g} s deadline")
    spy.blocked(tried)
    rows = _rows(example, "async-answered")
    if won is not True or [(r["decision"], r["approver"], r["reason"]) for r in rows] != [
            ("approved", "ana", "looks right")]:
        raise Flaw("an answer in time did not win", tried=tried,
                   got=f"decide returned {won!r}; log: {_decided(rows)}",
                   expected="True; one resolution, approved by ana, with her reason",
                   hint="decide() resumes with await self.app.ainvoke(Command(resume={"
                        "'decision': ..., 'approver': ..., 'reason': ...}), config) and "
                        "returns True.")
    if fired:
        raise Flaw("the deadline task still called time_out() after ana had decided",
                   tried=tried, got="time_out() ran at the deadline", expected="never",
                   hint="Cancel the deadline task in decide(): self.deadline.cancel() (but not "
                        "from inside that task, which is the one running time_out).")


def async_click_and_timeout_decide_once(ns: dict) -> None:
    make_example, cls = _parts(ns, "AsyncTimedApproval", "__init__", "decide", "time_out")
    example = make_example()
    pairs = [(CLICK, TIMEOUT), (TIMEOUT, CLICK), (CLICK, SECOND_CLICK)]

    async def probe():
        results = []
        for trial, pair in enumerate(pairs * 2):
            thread_id = f"async-race-{trial}"
            _pause(example, thread_id)
            approval = await _create(cls, example, thread_id, LONG_S)
            returned = await asyncio.gather(*(_call(f"await {name}", lambda a=approval, c=call:
                                                    c(a)) for name, call in pair))
            results.append((thread_id, trial, pair, dict(zip((n for n, _ in pair), returned,
                                                             strict=True))))
        return results

    spy = _SleepSpy()
    with spy.installed(ns):
        results = _in_new_loop(probe)
    spy.blocked("asyncio.gather(decide(...), time_out()) on fresh approvals")
    for thread_id, trial, pair, returned in results:
        rows = _rows(example, thread_id)
        tried = f"asyncio.gather({pair[0][0]}, {pair[1][0]})"
        if len(rows) != 1:
            raise Flaw("two coroutines started together both resumed the graph" if len(rows) > 1
                       else "two coroutines started together left the thread undecided",
                       tried=tried, got=f"{len(rows)} resolutions ({_decided(rows)})",
                       expected="exactly one resolution",
                       hint="Every await is a point where another coroutine runs. Check and set "
                            "the flag with no await between them (or hold an asyncio.Lock), and "
                            "only then await the resume." if len(rows) > 1 else
                            "The first caller must resume the graph before it returns True.")
        _judge_race(example, thread_id, trial, pair, returned, traced=False)


CHECKS = [
    Check("no answer within N seconds: rejected, logged as timed-out by system",
          no_answer_rejects_as_timed_out,
          "In __init__: self.timer = threading.Timer(seconds, self.time_out); start it. "
          "time_out() decides 'rejected' as approver 'system', with a reason."),
    Check("an answer in time wins, keeps its reason, and the timer never fires",
          answer_in_time_wins_and_timer_never_fires,
          "decide() resumes the graph with Command(resume={...}) and cancels the timer."),
    Check("a click and the timeout at the same instant: one decision, one execution",
          click_and_timeout_at_once_decide_once,
          "Two threads can both see 'not decided yet' and both resume (LangGraph runs both). "
          "Hold one threading.Lock around: check the flag, set it, resume."),
    Check("several approvals alive at once each keep their own state",
          several_approvals_keep_their_own_state,
          "Everything an approval needs (flag, lock, timer, config) lives on self, set in "
          "__init__; nothing on the class or in module variables."),
    Check("asyncio: no answer within N seconds: rejected by system", async_no_answer_rejects,
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
    _in_new_loop(run_async)


DRILL = Drill(
    key="drill4",
    title="Drill 4: reject by default when nobody answers",
    notebook="04_timeout_default.ipynb",
    checks=CHECKS,
    prepare=_warm_up,
)
