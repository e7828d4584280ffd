"""Drill 4's mutants: deadlines that never come or come twice, races left open, shared state."""

from tests.mutants import Mutant

QUIET = ("no answer within N seconds (or a deadline already due): rejected, logged as "
         "timed-out by system")
IN_TIME = "an answer in time wins, keeps its reason, and the timer never fires"
RACE = "a click and the timeout at the same instant: one decision, one execution"
SEVERAL = ("several approvals alive at once each keep their own state, and a slow resume blocks "
           "no other")
AGAIN = "a thread paused again is decided by its new approval"
A_QUIET = "asyncio: no answer within N seconds (or a deadline already due): rejected by system"
A_IN_TIME = "asyncio: an answer in time wins and the deadline task never fires"
A_RACE = "asyncio: a click and the timeout started together: one decision"
A_SEVERAL = "asyncio: approvals alive at once, a slow resume, a thread paused again"
PART_A = (QUIET, IN_TIME, RACE, SEVERAL, AGAIN)

LOCKED = '''        with self._lock:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
            self.timer.cancel()  # harmless when the timer itself is the caller
            answer = {"decision": decision, "approver": approver, "reason": reason}
            self.app.invoke(Command(resume=answer), self.config)
            return True'''
TIMER = '''        self.timer = threading.Timer(seconds, self.time_out)
        self.timer.daemon = True
        self.timer.start()'''
DEFAULT = 'return self.decide("rejected", "system", f"no answer within {self.seconds:g} s")'
ASYNC_CHECK_AND_SET = '''        if self.decided_by is not None:
            return False
        self.decided_by = approver
        if self.deadline is not asyncio.current_task():  # don't cancel the resume we are in
            self.deadline.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        await self.app.ainvoke(Command(resume=answer), self.config)
        return True'''
ASYNC_CANCEL = ("        if self.deadline is not asyncio.current_task():  # don't cancel the "
                "resume we are in\n            self.deadline.cancel()")
ASYNC_DEFAULT = ('return await self.decide("rejected", "system", '
                 'f"no answer within {self.seconds:g} s")')

MUTANTS = [
    # -- part A: threading.Timer -------------------------------------------------------------------
    Mutant("flag-set-after-the-resume", "both callers see 'not decided' while the first resumes",
           ((LOCKED, '''        if self.decided_by is not None:
            return False
        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        self.decided_by = approver
        return True'''),),
           {RACE: "at the same instant both decided"}),
    Mutant("cancel-between-check-and-set", "a call between the check and the set is a switch point",
           ((LOCKED, '''        if self.decided_by is not None:
            return False
        self.timer.cancel()
        self.decided_by = approver
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True'''),),
           {RACE: "at the same instant both decided"}, subtle=True),
    Mutant("check-then-set-without-a-lock", "a flag without a lock: atomic only by luck",
           ((LOCKED, LOCKED.replace("        with self._lock:\n", "        if True:\n")),),
           {RACE: "both decided"}, subtle=True),
    Mutant("timer-never-cancelled", "the timer fires later, about a decision already made",
           (("            self.timer.cancel()  # harmless when the timer itself is the caller\n",
             ""),),
           {IN_TIME: "the timer still fired"}),
    Mutant("timer-never-started", "a Timer created and forgotten",
           (("        self.timer.start()\n", ""),),
           {QUIET: "never started"}),
    Mutant("default-approves", "when nobody answers, the action runs",
           ((DEFAULT, DEFAULT.replace('"rejected"', '"approved"')),),
           {QUIET: "ran although nobody approved it", RACE: "the timeout ran the action"}),
    Mutant("default-by-the-timer", "the log cannot tell the default from a person",
           ((DEFAULT, DEFAULT.replace('"system"', '"timer"')),),
           {QUIET: "not recorded as a timeout by 'system'"}),
    Mutant("timer-in-milliseconds", "Timer(seconds * 1000, ...): a 0.1 s deadline becomes 100 s",
           ((TIMER, TIMER.replace("Timer(seconds,", "Timer(seconds * 1000,")),),
           {QUIET: "the timer was set for 100.0 s"}, subtle=True),
    Mutant("time-out-called-in-init", "Timer(s, self.time_out()) calls it at once",
           ((TIMER, TIMER.replace("self.time_out)", "self.time_out())")),),
           dict.fromkeys(PART_A, "raised AttributeError"), subtle=True),
    Mutant("reason-dropped", "the approver's reason never reaches the record",
           (('            answer = {"decision": decision, "approver": approver, "reason": reason}',
             '            answer = {"decision": decision, "approver": approver}'),),
           {QUIET: "gives no reason", IN_TIME: "reason was lost"}, subtle=True),
    Mutant("time-out-only-sets-the-flag", "the default is decided but never sent to the graph",
           ((DEFAULT, '''self.decided_by = "system"
        return True'''),),
           {QUIET: "did not resume the thread", IN_TIME: "was not refused",
            RACE: "both decided"}, subtle=True),
    Mutant("decide-returns-nothing", "the caller cannot tell who won",
           (("            return True", "            return None"),),
           {IN_TIME: "did not return True", RACE: "were not told who won"}),
    Mutant("config-on-the-class", "one dict shared by all: every approval resumes the last thread",
           (('        self.config = {"configurable": {"thread_id": thread_id}}\n'
             '        self.seconds = seconds\n        self.decided_by = None\n        self._lock',
             '        self.config["configurable"]["thread_id"] = thread_id\n'
             '        self.seconds = seconds\n        self.decided_by = None\n        self._lock'),
            ('    """One paused thread, decided exactly once: by a person, or by the timer after '
             '`seconds`."""\n',
             '    """One paused thread, decided exactly once: by a person, or by the timer after '
             '`seconds`."""\n\n    config = {"configurable": {}}\n')),
           {SEVERAL: "share state"}, subtle=True),
    Mutant("timer-in-a-module-variable", "deciding one approval cancels another's timer",
           ((TIMER, '''        global _timer
        _timer = threading.Timer(seconds, self.time_out)
        _timer.daemon = True
        _timer.start()'''),
            ("            self.timer.cancel()  # harmless",
             "            _timer.cancel()  # harmless")),
           {SEVERAL: "quiet-b never did"}, subtle=True),
    # -- part B: asyncio ---------------------------------------------------------------------------
    Mutant("async-flag-set-after-await", "the other coroutine runs during the await",
           ((ASYNC_CHECK_AND_SET, ASYNC_CHECK_AND_SET.replace(
               "        self.decided_by = approver\n", "").replace(
               "        return True", "        self.decided_by = approver\n        return True")),),
           {A_RACE: "both decided"}, subtle=True),
    Mutant("async-time-sleep", "time.sleep in a coroutine stops the event loop",
           (("        await asyncio.sleep(self.seconds)", "        time.sleep(self.seconds)"),
            ("import asyncio\n", "import asyncio\nimport time\n")),
           dict.fromkeys((A_QUIET, A_IN_TIME, A_RACE, A_SEVERAL), "time.sleep inside a coroutine"),
           subtle=True),
    Mutant("async-deadline-never-cancelled", "the deadline task still runs time_out later",
           ((ASYNC_CANCEL + "\n", ""),),
           {A_IN_TIME: "still called time_out()"}),
    Mutant("async-deadline-cancels-itself", "decide cancels the task it is running in",
           ((ASYNC_CANCEL, "        self.deadline.cancel()"),),
           {A_QUIET: "the thread was not resumed"}, subtle=True),
    Mutant("async-default-approves", "when nobody answers, the action runs",
           ((ASYNC_DEFAULT, ASYNC_DEFAULT.replace('"rejected"', '"approved"')),),
           {A_QUIET: "ran although nobody approved it", A_RACE: "the timeout ran the action"}),
    Mutant("async-resume-not-awaited", "a coroutine created and never run: nothing resumes",
           (("        await self.app.ainvoke(Command(resume=answer), self.config)",
             "        self.app.ainvoke(Command(resume=answer), self.config)"),),
           {A_QUIET: "the thread was not resumed", A_IN_TIME: "did not resume the thread once",
            A_RACE: "left the thread undecided"}),
]
