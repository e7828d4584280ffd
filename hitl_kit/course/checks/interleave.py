"""Deterministic interleavings, for checks that judge code written to survive a race.

A race found by luck is a verdict that changes from run to run. Here the schedule is chosen, not
left to the machine:

* ``Interleaver`` runs two racer threads one at a time. A racer stops only at a *switch point*
  of the learner's code (the start of a line, a store to an attribute, a global, a closure or an
  item, a call, a lock's acquire and release) and only when the schedule says so. A schedule is
  which racer starts and at which of its points it is preempted (at most once, as in CHESS's
  preemption bounding); a check runs each racer first alone to count its points, then every
  preemption, so a window between a check and a set is found whichever line it opens on. A
  racer that waits for a lock hands the turn over. A wait that can never end (a lock its own
  thread holds, or two racers each holding what the other wants) raises ``Stuck`` in that
  thread at once, and any other wait for a learner's lock is bounded, so no check hangs on one.
* ``stepped`` does the same for coroutines: the second starts after the first has taken ``k``
  steps of the event loop, for every ``k`` until the first is done.
* ``LoopWatch`` names a line of the learner's that holds an event loop (a blocking call inside a
  coroutine: nothing else can run meanwhile).
* ``AppStandIn`` stands in for a compiled graph: every call goes to the graph, each resume is
  recorded (so a message can say what the learner's code sent), a check can hold one thread's
  resume to make it slow, and ``ainvoke`` resumes between two explicit yields, so coroutine
  schedules do not depend on a thread pool's timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dis
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import CodeType

from hitl_kit.course.selfcheck import in_event_loop, is_learner_file

# Opcodes (Python 3.11 and later) before which another thread may change what the learner's code
# reads or writes: stores and deletes of shared things, and calls (a call can do anything).
SWITCH_OPS = frozenset({
    "STORE_ATTR", "STORE_GLOBAL", "STORE_SUBSCR", "STORE_DEREF", "STORE_SLICE",
    "DELETE_ATTR", "DELETE_GLOBAL", "DELETE_SUBSCR", "DELETE_DEREF",
    "CALL", "CALL_FUNCTION_EX", "CALL_FUNCTION", "CALL_METHOD", "CALL_FUNCTION_KW",
})
# Opcodes that read or write what another thread can see (the rest only touch locals): two switch
# points with none of these between them give the other racer the same state, so only the
# first of them counts.
SHARED_OPS = SWITCH_OPS | frozenset({
    "LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_NAME",
    "BINARY_SUBSCR", "BEFORE_WITH", "FOR_ITER", "GET_ITER",
})
GIVE_UP_S = 1.0  # the running racer used no CPU this long: it waits on something no point sees
LOCK_WAIT_S = 1.0  # the longest a racer waits for a lock no racer holds, then it is Stuck
THREAD_LOCK_WAIT_S = 3.0  # the same for any other thread (a timer's, the check's own)
OTHER_RACER_S = 20.0  # a lock the other, running, racer holds: it will release it


def switch_points(code: CodeType) -> tuple[frozenset[int], frozenset[int]]:
    """Offsets of ``code``'s instructions that are switch points, and of those that touch
    shared state."""
    instructions = list(dis.get_instructions(code))
    starts = {offset for offset, _ in dis.findlinestarts(code)}
    return (frozenset(starts | {i.offset for i in instructions if i.opname in SWITCH_OPS}),
            frozenset(i.offset for i in instructions if i.opname in SHARED_OPS))


class Stuck(BaseException):  # not an Exception: the learner's `except Exception` can't eat it
    """Raised in a racer whose wait could never end; the message says why."""


# -- threads ---------------------------------------------------------------------------------------

class Interleaver:
    """One schedule of two racers: ``first`` runs until its ``preempt_at``-th switch point (never,
    if None), then the other runs until it is done or waits for a lock, and so on."""

    def __init__(self, traced: Callable[[CodeType], bool], first: int, preempt_at: int | None):
        self.traced, self.first, self.preempt_at = traced, first, preempt_at
        self.cond = threading.Condition()
        self.current: int | None = first
        self.points = [0, 0]
        self.touched = [True, True]  # shared state touched since the racer's last point
        self.done = [False, False]
        self.waiting_for: list[WatchedLock | None] = [None, None]
        self.preempted = False
        self.preempted_at: tuple[str, int] | None = None  # (function, line) where it happened
        self.free = False  # control was given up: every racer runs as the machine likes
        self._racers: dict[int, int] = {}
        self._points: dict[CodeType, tuple | None] = {}  # None: not the learner's code

    def me(self) -> int | None:
        return self._racers.get(threading.get_ident())

    def run(self, index: int, call: Callable[[], object]):
        """In racer ``index``'s thread: wait for its turn, then ``call()`` with points traced."""
        self._racers[threading.get_ident()] = index
        with self.cond:
            self._wait_turn(index)
        sys.settrace(self._tracer)
        try:
            return call()
        finally:
            sys.settrace(None)
            with self.cond:
                self.done[index] = True
                self._hand_over(index)

    def _tracer(self, frame, event, arg):
        code = frame.f_code
        points = self._points.get(code, False)  # called on every call of every function
        if points is False:
            points = self._points[code] = switch_points(code) if self.traced(code) else None
        if points is None or event != "call":
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        me = self.me()
        switches, shared = points

        def local(frame, event, arg):
            if event == "opcode":
                if frame.f_lasti in switches and self.touched[me]:
                    self.point(me, frame)
                if frame.f_lasti in shared:
                    self.touched[me] = True
            return local

        return local

    def point(self, me: int, frame) -> None:
        with self.cond:
            if self.free:
                return
            self.touched[me] = False
            self.points[me] += 1
            if not self.preempted and me == self.first and self.points[me] == self.preempt_at:
                self.preempted = True
                self.preempted_at = (frame.f_code.co_name, frame.f_lineno) if frame else None
                self._hand_over(me)
            self._wait_turn(me)

    def _runnable(self, index: int) -> bool:
        return not self.done[index] and self.waiting_for[index] is None

    def _hand_over(self, me: int) -> None:
        """Give the turn to the other racer if it can run, else keep it (else nobody)."""
        other = 1 - me
        self.current = other if self._runnable(other) else me if self._runnable(me) else None
        self.cond.notify_all()

    def _wait_turn(self, me: int) -> None:
        progress = _Progress(self, me)
        while not self.free and self.current != me:
            if self.current is None and self._runnable(me):
                self.current = me
                break
            if progress.stalled():  # the running racer waits on something no point sees
                self.free = True
                self.cond.notify_all()
                break
            self.cond.wait(0.05)

    # -- called by WatchedLock, in a racer's thread
    def before_wait(self, me: int, lock: WatchedLock) -> None:
        """Racer ``me`` is about to wait for ``lock``: hand over, or raise Stuck if the two
        racers each hold what the other waits for."""
        with self.cond:
            if self.free:
                return
            other = 1 - me
            waited_by_other = self.waiting_for[other]
            if (lock.owner_racer(self) == other and waited_by_other is not None
                    and waited_by_other.owner_racer(self) == me):
                raise Stuck(f"each of the two callers holds a {lock.kind} the other waits for")
            self.waiting_for[me] = lock
            self._hand_over(me)

    def after_wait(self, me: int) -> None:
        with self.cond:
            self.waiting_for[me] = None
            if not self.free:
                self._wait_turn(me)

    def owner_index(self, ident: int | None) -> int | None:
        return self._racers.get(ident) if ident is not None else None

    def ident_of(self, index: int | None) -> int | None:
        return next((ident for ident, i in list(self._racers.items()) if i == index), None)


class _Progress:
    """Whether the racer whose turn it is has used no CPU for GIVE_UP_S (it waits on something
    no switch point sees). On a loaded machine a running racer is slow, not stalled: its CPU time
    still moves. Where a thread's CPU clock cannot be read, GIVE_UP_S of wall time decides."""

    def __init__(self, interleaver: Interleaver, me: int):
        self.interleaver, self.me = interleaver, me
        self.since, self.seen = time.monotonic(), None

    def stalled(self) -> bool:
        used = _cpu_of(self.interleaver.ident_of(self.interleaver.current))
        now = time.monotonic()
        if used is not None and used != self.seen:
            self.since, self.seen = now, used
        return now - self.since > GIVE_UP_S


def _cpu_of(ident: int | None) -> float | None:
    if ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, OverflowError):
        return None


class LockSpy:
    """Makes the locks the learner's code creates (threading.Lock and RLock) ``WatchedLock``s,
    and wraps the locks and semaphores it already made (on the class, in its module, and, with
    ``watch``, on an object just built), so an ``Interleaver`` sees each acquire, release and
    wait. (Semaphores are wrapped where they are found, not made through a stand-in: threading's
    own BoundedSemaphore looks ``Semaphore`` up when it is called.)"""

    KINDS = {"Lock": (False, "lock"), "RLock": (True, "lock")}

    def __init__(self):
        self.interleaver: Interleaver | None = None
        self.waits: list[tuple[int, WatchedLock]] = []  # (thread, lock) of waits not over yet

    @contextlib.contextmanager
    def installed(self, namespace: dict, owners: Iterable):
        """While the block runs: new locks made by learner code are watched, and so are the
        ones already in ``namespace`` or on each of ``owners`` (classes)."""
        made = []
        for owner in (namespace, *owners):
            made += self.watch(owner)
        stand_ins = {name: self._factory(getattr(threading, name), *self.KINDS[name])
                     for name in self.KINDS}
        try:
            with swapped(namespace, threading, stand_ins):
                yield self
        finally:
            for owner, name, value in made:
                _put(owner, name, value)

    def watch(self, owner) -> list[tuple]:
        """Wrap the locks and semaphores found in ``owner`` (a dict, a class, an object);
        (owner, name, the real one) for each, to put back."""
        space = owner if isinstance(owner, dict) else getattr(owner, "__dict__", {})
        wrapped = []
        for name, value in list(space.items()):
            kind = _kind_of(value)
            if kind is not None:
                wrapped.append((owner, name, value))
                _put(owner, name, WatchedLock(value, self, *kind))
        return wrapped

    def _factory(self, real, reentrant: bool, kind: str):
        spy = self

        def make(*args, **kwargs):
            lock = real(*args, **kwargs)
            if is_learner_file(sys._getframe(1).f_code.co_filename):
                return WatchedLock(lock, spy, reentrant, kind)
            return lock

        return make

    def is_waiting(self, ident: int | None) -> bool:
        """Whether thread ``ident`` waits for a learner's lock right now."""
        return any(waiter == ident for waiter, _ in list(self.waits))


class WatchedLock:
    """A learner's lock, seen by the schedule: every acquire and release is a switch point, a
    wait hands the turn over, and a wait that could never end raises ``Stuck``."""

    def __init__(self, lock, spy: LockSpy, reentrant: bool, kind: str):
        self._lock, self._spy = lock, spy
        self.reentrant, self.kind = reentrant, kind
        self.owner: int | None = None  # the thread that holds it (the last one, for a semaphore)
        self._depth = 0

    def owner_racer(self, interleaver: Interleaver) -> int | None:
        return interleaver.owner_index(self.owner)

    def _racer(self) -> tuple[Interleaver | None, int | None]:
        interleaver = self._spy.interleaver
        return (interleaver, interleaver.me()) if interleaver is not None else (None, None)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        interleaver, me = self._racer()
        if me is not None:
            interleaver.point(me, _innermost_learner(sys._getframe(1)))
        if self._lock.acquire(False):
            return self._took()
        if not blocking:
            return False
        if self.kind == "lock" and not self.reentrant and self.owner == threading.get_ident():
            raise Stuck(f"it waits for a {self.kind} its own thread already holds")
        waiting = (threading.get_ident(), self)
        self._spy.waits.append(waiting)
        try:
            if me is not None:
                interleaver.before_wait(me, self)
            bound = (THREAD_LOCK_WAIT_S if me is None else OTHER_RACER_S
                     if self.owner_racer(interleaver) == 1 - me else LOCK_WAIT_S)
            got = self._lock.acquire(True, bound if timeout < 0 else min(timeout, bound))
            if not got and timeout < 0:
                raise Stuck(f"it waits for a {self.kind} that nobody releases")
        finally:
            self._spy.waits.remove(waiting)
        if got:
            self._took()
        if me is not None:
            interleaver.after_wait(me)
        return got

    def _took(self) -> bool:
        self.owner = threading.get_ident()
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self.owner = None
        self._lock.release()
        interleaver, me = self._racer()
        if me is not None:
            interleaver.point(me, _innermost_learner(sys._getframe(1)))

    def locked(self) -> bool:
        return self._lock.locked() if hasattr(self._lock, "locked") else self.owner is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_LOCK, _RLOCK = type(threading.Lock()), type(threading.RLock())


def _kind_of(value) -> tuple[bool, str] | None:
    """(reentrant, kind) of a real lock or semaphore, None for anything else."""
    if isinstance(value, _LOCK):
        return False, "lock"
    if isinstance(value, _RLOCK):
        return True, "lock"
    if isinstance(value, threading.Semaphore) and not isinstance(value, WatchedLock):
        return False, "semaphore"
    return None


def _put(owner, name: str, value) -> None:
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)


@contextlib.contextmanager
def swapped(namespace: dict, module, stand_ins: dict):
    """Replace ``module.<name>`` (and the same name in the learner's namespace, if it was
    imported there) by a stand-in while the block runs; everything is put back after."""
    done = []
    for name, stand_in in stand_ins.items():
        real = getattr(module, name)
        setattr(module, name, stand_in)
        done.append((module.__dict__, name, real))
        if namespace.get(name) is real:
            namespace[name] = stand_in
            done.append((namespace, name, real))
    try:
        yield
    finally:
        for space, name, real in reversed(done):
            space[name] = real


# -- coroutines ------------------------------------------------------------------------------------

async def steps_alone(make: Callable[[], object], limit: int = 200) -> int:
    """How many event-loop steps the coroutine ``make()`` takes to finish alone."""
    task = asyncio.ensure_future(make())
    steps = 0
    while not task.done() and steps < limit:
        await asyncio.sleep(0)
        steps += 1
    with contextlib.suppress(BaseException):
        await task
    return steps


async def stepped(first: Callable[[], object], second: Callable[[], object], k: int) -> list:
    """Start ``first()``; after ``k`` steps of the loop, start ``second()``; both results (an
    exception as a result)."""
    one = asyncio.ensure_future(first())
    for _ in range(k):
        if one.done():
            break
        await asyncio.sleep(0)
    two = asyncio.ensure_future(second())
    return list(await asyncio.gather(one, two, return_exceptions=True))


class LoopWatch:
    """Samples the thread that runs an event loop; a line of the learner's that keeps the loop
    busy for ``HOLD_S`` (a blocking call, a busy wait) is kept in ``held``: (function, line,
    text). Time spent inside ``AppStandIn``'s own resume does not count."""

    HOLD_S = 0.05
    EVERY_S = 0.004

    def __init__(self, own: Callable[[CodeType], bool], app: AppStandIn | None = None):
        self.own, self.app = own, app  # own: the learner's own code (not the drill's given code)
        self.held: tuple[str, int, str] | None = None
        self._ident: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, ident: int):
        self._ident = ident
        self._thread = threading.Thread(target=self._sample, daemon=True, name="loop watch")
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def _sample(self) -> None:
        import linecache

        since = last = None
        while not self._stop.wait(self.EVERY_S):
            now = time.monotonic()
            frame = sys._current_frames().get(self._ident)
            learner = _innermost_learner(frame, self.own)
            busy = learner is not None and not (self.app is not None and self.app.resuming)
            if not busy or (last is not None and now - last > 5 * self.EVERY_S):
                since = now if busy else None  # a gap in sampling proves nothing
            elif since is None:
                since = now
            last = now
            if since is not None and now - since >= self.HOLD_S and self.held is None:
                code = learner.f_code
                text = linecache.getline(code.co_filename, learner.f_lineno).strip()
                self.held = (code.co_name, learner.f_lineno, text)


def _innermost_learner(frame, own: Callable[[CodeType], bool] | None = None):
    """The innermost frame of the learner's code (of ``own`` code, if given) on a stack."""
    while frame is not None:
        if own(frame.f_code) if own else is_learner_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


# -- the graph, stood in for -----------------------------------------------------------------------

class AppStandIn:
    """A compiled graph as the learner's code sees it (everything else passes through).

    ``resumes`` records (thread id, what was sent: the Command's resume value, or the value
    itself if it was no Command); ``blocking`` the sync calls made from inside a running event
    loop; ``hold(thread_id)`` makes that thread's resume wait until ``release``.
    """

    def __init__(self, graph):
        self._graph = graph
        self.resumes: list[tuple[str, object, bool]] = []  # (thread id, value, was a Command)
        self.blocking: list[str] = []
        self.resuming = 0  # resumes running right now inside ainvoke (the loop is ours)
        self._held: dict[str, threading.Event] = {}

    def __getattr__(self, name: str):
        return getattr(self._graph, name)

    def hold(self, thread_id: str) -> None:
        self._held[thread_id] = threading.Event()

    def release(self, thread_id: str) -> None:
        self._held.pop(thread_id, threading.Event()).set()

    def _record(self, value, config) -> str | None:
        from langgraph.types import Command

        thread_id = ((config or {}).get("configurable") or {}).get("thread_id") if isinstance(
            config, dict) else None
        is_command = isinstance(value, Command)
        self.resumes.append((thread_id, value.resume if is_command else value, is_command))
        return thread_id

    def sent_to(self, thread_id: str) -> list[tuple[object, bool]]:
        return [(value, command) for t, value, command in self.resumes if t == thread_id]

    def invoke(self, value, config=None, **kwargs):
        thread_id = self._record(value, config)
        if in_event_loop():
            self.blocking.append("self.app.invoke(...), the graph's blocking resume")
        held = self._held.get(thread_id)
        if held is not None:
            held.wait(LOCK_WAIT_S * 5)
        return self._graph.invoke(value, config, **kwargs)

    async def ainvoke(self, value, config=None, **kwargs):
        thread_id = self._record(value, config)
        await asyncio.sleep(0)
        held = self._held.get(thread_id)
        ends = time.monotonic() + LOCK_WAIT_S * 5
        while held is not None and not held.is_set() and time.monotonic() < ends:
            await asyncio.sleep(0.002)
        self.resuming += 1
        try:
            result = self._graph.invoke(value, config, **kwargs)
        finally:
            self.resuming -= 1
        await asyncio.sleep(0)
        return result
