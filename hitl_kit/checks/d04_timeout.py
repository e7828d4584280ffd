"""Drill 4: when nobody answers within N seconds, reject by default, exactly once.

The learner writes ``TimedApproval(app, thread_id, seconds)`` with ``decide(decision, approver)``
and ``time_out()`` around the drill's paused-approval graph (``make_example()``). The checks run
it with a short N: no answer, an answer in time, and a click racing the timeout.
"""

from __future__ import annotations

import threading
import time

from hitl_kit.selfcheck import Check, Drill, NotAttempted

N = 0.1  # the deadline the checks use, in seconds
WAIT_S = 5.0  # how long a check waits for something that should happen well within it
RACE_TRIALS = 60
ACTION = "delete_customer 3"


def _parts(ns: dict):
    make_example, timed_approval = ns.get("make_example"), ns.get("TimedApproval")
    if make_example is None:
        raise NotAttempted("make_example is not defined: run the drill's first code cell")
    if timed_approval is None:
        raise NotAttempted("TimedApproval is not defined yet")
    return make_example, timed_approval


def _require(timed_approval, *methods: str) -> None:
    """NotAttempted while one of these methods is still the stub. Called on a bare instance, a
    stub raises NotImplementedError at once; written code fails on the missing attributes."""
    for name in methods:
        try:
            getattr(timed_approval, name)(object.__new__(timed_approval), *_PROBE_ARGS[name])
        except NotImplementedError:
            raise NotAttempted(f"TimedApproval.{name} is still the stub") from None
        except Exception:
            pass


_PROBE_ARGS = {"decide": ("approved", "probe"), "time_out": ()}


def _config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def _pause(example, thread_id: str) -> None:
    result = example.app.invoke({"action": ACTION}, _config(thread_id))
    assert "__interrupt__" in result, "make_example's graph no longer pauses at its gate"


def _rows(example, thread_id: str) -> list[dict]:
    return [row for row in example.log if row["thread_id"] == thread_id]


def no_answer_rejects_as_timed_out(ns: dict) -> None:
    make_example, timed_approval = _parts(ns)
    _require(timed_approval, "time_out")  # else the stub would raise unseen, in the timer's thread
    example = make_example()
    _pause(example, "quiet")
    started = time.monotonic()
    timed_approval(example.app, "quiet", N)
    assert example.resolved.wait(WAIT_S), (
        f"nobody answered, and {WAIT_S:g} s after a {N:g} s deadline the thread is still paused: "
        "start a threading.Timer in __init__ that calls self.time_out() after `seconds`")
    waited = time.monotonic() - started
    assert waited >= N * 0.9, (
        f"the default came after {waited:.3f} s, before the {N:g} s deadline")
    assert example.effects == [], f"the action ran although nobody approved it: {example.effects}"
    rows = _rows(example, "quiet")
    assert len(rows) == 1, f"expected one resolution in the log, found {len(rows)}: {rows}"
    decision = example.app.get_state(_config("quiet")).values.get("decision")
    assert decision == "rejected", (
        f"the timeout resumed the graph with decision {decision!r}; the safe default is "
        "'rejected'")
    assert (rows[0]["decision"], rows[0]["approver"]) == ("timed-out", "system"), (
        f"the timeout was logged as {rows[0]['decision']!r} by {rows[0]['approver']!r}; resume "
        "with approver 'system', so the log says 'timed-out' and nobody mistakes it for a person")


def answer_in_time_wins_and_timer_never_fires(ns: dict) -> None:
    make_example, timed_approval = _parts(ns)
    _require(timed_approval, "decide")
    fired = threading.Event()

    class Watched(timed_approval):
        def time_out(self):
            fired.set()
            return super().time_out()

    example = make_example()
    _pause(example, "answered")
    deadline = N * 3
    approval = Watched(example.app, "answered", deadline)
    won = approval.decide("approved", "ana")
    assert won is True, f"decide() on an undecided approval returned {won!r}, not True"
    assert example.effects == [("answered", ACTION)], (
        f"ana approved in time, but the action ran {len(example.effects)} time(s); decide() "
        "should resume the graph with Command(resume=...) before it returns")
    assert not fired.wait(deadline * 2), (
        "the timer still called time_out() after ana had decided: cancel it in decide()")
    rows = _rows(example, "answered")
    assert [(r["decision"], r["approver"]) for r in rows] == [("approved", "ana")], (
        f"expected one resolution, approved by ana; the log has {rows}")


def click_and_timeout_at_once_decide_once(ns: dict) -> None:
    make_example, timed_approval = _parts(ns)
    _require(timed_approval, "decide", "time_out")
    example = make_example()
    for trial in range(RACE_TRIALS):
        thread_id = f"race-{trial}"
        _pause(example, thread_id)
        # The real timer is far away; the race is forced with direct calls at one instant.
        approval = timed_approval(example.app, thread_id, WAIT_S)
        returned, errors = {}, []
        barrier = threading.Barrier(2)

        def run(name, call, barrier=barrier, returned=returned, errors=errors):
            barrier.wait()
            try:
                returned[name] = call()
            except BaseException as exc:  # shown in the check's result, not lost in a thread
                errors.append(exc)

        racers = [threading.Thread(target=run, args=("ana", lambda a=approval: a.decide(
                      "approved", "ana"))),
                  threading.Thread(target=run, args=("system", approval.time_out))]
        if trial % 2:
            racers.reverse()
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(WAIT_S)
        if errors:
            raise errors[0]
        rows = _rows(example, thread_id)
        decided = ", ".join(f"{r['decision']} by {r['approver']}" for r in rows) or "nothing"
        assert len(rows) == 1, (
            f"trial {trial + 1}: a click and the timeout at the same instant resumed the graph "
            f"{len(rows)} times ({decided}). Only one may win: check and set 'decided' and "
            "resume while holding one threading.Lock")
        ran = [e for e in example.effects if e[0] == thread_id]
        assert len(ran) == (rows[0]["decision"] == "approved"), (
            f"trial {trial + 1}: the log says {decided} but the action ran {len(ran)} time(s)")
        winners = sorted(name for name, value in returned.items() if value is True)
        assert winners == [rows[0]["approver"]], (
            f"trial {trial + 1}: {decided} won, but the calls returned {returned}: the winner "
            "returns True, the other False")


DRILL = Drill(
    key="drill4",
    title="Drill 4: reject by default when nobody answers",
    notebook="04_timeout_default.ipynb",
    checks=[
        Check("no answer within N seconds: rejected, logged as timed-out by system",
              no_answer_rejects_as_timed_out,
              "In __init__: self.timer = threading.Timer(seconds, self.time_out); start it. "
              "time_out() decides 'rejected' as approver 'system'."),
        Check("an answer in time wins and the timer never fires",
              answer_in_time_wins_and_timer_never_fires,
              "decide() resumes the graph with Command(resume={...}) and cancels the timer."),
        Check("a click and the timeout at the same instant: one decision, one execution",
              click_and_timeout_at_once_decide_once,
              "Two threads can both see 'not decided yet' and both resume (LangGraph runs both). "
              "Hold one threading.Lock around: check the flag, set it, resume."),
    ],
)
