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
           {RACE: "at the same instant both decided"}, race=True),
    Mutant("cancel-between-check-and-set", "a call between the check and the set is a switch point",
           ((LOCKED, '''        if self.decided_by is not None:
            return False
        self.timer.cancel()
        self.decided_by = approver
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True'''),),
           {RACE: "at the same instant both decided"}, subtle=True, race=True),
    Mutant("check-then-set-without-a-lock", "a flag without a lock: atomic only by luck",
           ((LOCKED, LOCKED.replace("        with self._lock:\n", "        if True:\n")),),
           {RACE: "both decided"}, subtle=True, race=True),
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
           {A_RACE: "both decided"}, subtle=True, race=True),
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

# -- what an answer silently depends on (issue 22): a batch per part ------------------------------
INIT_REST = '''        self.seconds = seconds
        self.decided_by = None
        self._lock = threading.Lock()
'''
DOC = ('    """One paused thread, decided exactly once: by a person, or by the timer after '
       '`seconds`."""\n')
ASYNC_DOC = ('    """The same approval in asyncio. Create it inside a running event loop (a '
             'cell is one)."""\n')
ASYNC_INIT = '''        self.decided_by = None
        self.deadline = asyncio.get_running_loop().create_task(self._expire())'''

MUTANTS += [
    # -- part A: who and in which order ------------------------------------------------------------
    Mutant("same-approver-may-click-again", "ana's double click resumes the graph twice",
           (("            if self.decided_by is not None:\n                return False\n"
             "            self.decided_by = approver\n            self.timer",
             "            if self.decided_by not in (None, approver):\n"
             "                return False\n"
             "            self.decided_by = approver\n            self.timer"),),
           {IN_TIME: "was not refused"}, subtle=True),
    Mutant("only-an-approval-closes-it", "after bo's rejection, ana's approval still runs it",
           (("            self.decided_by = approver\n            self.timer",
             '            if decision == "approved":\n                self.decided_by = approver\n'
             "            self.timer"),),
           {IN_TIME: "was not refused", RACE: "both decided"}, subtle=True),
    # -- part A: two callers at once ---------------------------------------------------------------
    Mutant("flag-set-after-the-lock", "checked under the lock, set after it is released",
           ((LOCKED, '''        with self._lock:
            if self.decided_by is not None:
                return False
        self.decided_by = approver
        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True'''),),
           {RACE: "both decided"}, subtle=True, race=True),
    Mutant("checked-before-the-lock", "the flag is read outside the lock and not read again",
           ((LOCKED, '''        if self.decided_by is not None:
            return False
        with self._lock:
            self.decided_by = approver
            self.timer.cancel()
            answer = {"decision": decision, "approver": approver, "reason": reason}
            self.app.invoke(Command(resume=answer), self.config)
            return True'''),),
           {RACE: "both decided"}, subtle=True, race=True),
    Mutant("answer-kept-on-self", "the other caller overwrites the answer before the resume",
           ((LOCKED, '''        self.answer = dict(decision=decision, approver=approver,
                           reason=reason)
        with self._lock:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
            self.timer.cancel()
            self.app.invoke(Command(resume=self.answer), self.config)
            return True'''),),
           {RACE: "resumed with the loser's decision"}, subtle=True, race=True),
    Mutant("time-out-holds-the-lock", "time_out takes the lock, then decide takes it again",
           ((DEFAULT, '''with self._lock:  # nobody decides while the default is applied
            ''' + DEFAULT),),
           {QUIET: "waits forever", IN_TIME: "waits forever", RACE: "waits forever"}),
    # -- part A: time ------------------------------------------------------------------------------
    Mutant("timer-started-before-the-object-is-ready", "a 0 s timer fires before the lock exists",
           ((TIMER + "\n", ""), (INIT_REST, TIMER + "\n" + INIT_REST)),
           {QUIET: "__init__ had not finished"}, subtle=True),
    Mutant("a-due-deadline-refused", "a deadline of 0 s raises, and the thread waits forever",
           ((INIT_REST, "        if seconds <= 0:\n            raise ValueError(f\"the deadline "
                        "must be in the future, not {seconds} s\")\n" + INIT_REST),),
           {QUIET: "makes TimedApproval fail"}, subtle=True),
    Mutant("deadline-on-the-local-clock", "due is UTC, the check is local time: never, west of UTC",
           ((TIMER, '''        self.due = datetime.utcnow() + timedelta(seconds=seconds)
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True
        self.timer.start()

    def _expire(self) -> None:
        if datetime.now() >= self.due:  # a timer may wake a hair early
            self.time_out()'''),
            ("from langgraph.types import Command\n",
             "from datetime import datetime, timedelta\n\nfrom langgraph.types import Command\n")),
           {QUIET: "no timeout in this time zone"}, subtle=True, zone=True),
    # -- part A: lifetime and state shared between approvals ---------------------------------------
    Mutant("one-lock-for-every-approval", "bo's click waits while ana's approval runs the action",
           (("        self._lock = threading.Lock()\n", ""),
            (DOC, DOC + "\n    _lock = threading.Lock()  # one for all: nobody decides at once\n")),
           {SEVERAL: "waits for another approval's slow resume"}, subtle=True),
    Mutant("decided-threads-on-the-class", "the thread's next pause can never be decided",
           (("            self.decided_by = approver\n            self.timer",
             '            if self.config["configurable"]["thread_id"] in '
             "self.decided_threads:\n"
             "                return False\n"
             "            self.decided_threads.add(self.config[\"configurable\"][\"thread_id\"])\n"
             "            self.decided_by = approver\n            self.timer"),
            (DOC, DOC + "\n    decided_threads = set()  # threads already answered\n")),
           {AGAIN: "could not be decided by its new approval"}, subtle=True),
    # -- part A: what reaches the given code -------------------------------------------------------
    Mutant("resumes-with-the-bare-decision", "the gate reads answer['decision'] from a string",
           (("            self.app.invoke(Command(resume=answer), self.config)",
             "            self.app.invoke(Command(resume=decision), self.config)"),),
           dict.fromkeys(PART_A, "the given `gate` failed on what your code resumed"),
           subtle=True),
    # -- part B: blocking calls inside a coroutine -------------------------------------------------
    Mutant("async-blocking-invoke", "the graph's sync invoke stops the event loop while it runs",
           (("        await self.app.ainvoke(Command(resume=answer), self.config)",
             "        self.app.invoke(Command(resume=answer), self.config)"),),
           dict.fromkeys((A_QUIET, A_IN_TIME, A_RACE, A_SEVERAL), "blocking invoke"),
           subtle=True),
    Mutant("async-event-wait", "threading.Event().wait holds the event loop for the whole deadline",
           (("        await asyncio.sleep(self.seconds)",
             "        threading.Event().wait(self.seconds)  # wait without busy looping"),
            ("import asyncio\n", "import asyncio\nimport threading\n")),
           dict.fromkeys((A_QUIET, A_IN_TIME, A_RACE, A_SEVERAL), "blocks the event loop"),
           subtle=True),
    # -- part B: two coroutines at once ------------------------------------------------------------
    Mutant("async-yield-between-check-and-set", "an await between the check and the set",
           (("        if self.decided_by is not None:\n            return False\n"
             "        self.decided_by = approver\n        if self.deadline",
             "        if self.decided_by is not None:\n            return False\n"
             "        await asyncio.sleep(0)  # let the deadline task see it is being decided\n"
             "        self.decided_by = approver\n        if self.deadline"),),
           {A_RACE: "both decided"}, subtle=True, race=True),
    Mutant("async-lock-made-per-call", "a new asyncio.Lock on every call guards nothing",
           ((ASYNC_CHECK_AND_SET, '''        async with asyncio.Lock():
            if self.decided_by is not None:
                return False
            if self.deadline is not asyncio.current_task():
                self.deadline.cancel()
            answer = {"decision": decision, "approver": approver, "reason": reason}
            await self.app.ainvoke(Command(resume=answer), self.config)
            self.decided_by = approver
            return True'''),),
           {A_RACE: "both decided"}, subtle=True, race=True),
    # -- part B: who and in which order ------------------------------------------------------------
    Mutant("async-same-approver-again", "ana's double click resumes twice",
           (("        if self.decided_by is not None:\n            return False\n"
             "        self.decided_by = approver\n        if self.deadline",
             "        if self.decided_by not in (None, approver):\n            return False\n"
             "        self.decided_by = approver\n        if self.deadline"),),
           {A_IN_TIME: "was not refused"}, subtle=True),
    Mutant("async-rejection-leaves-it-open", "after a rejection, an approval still runs it",
           (("        self.decided_by = approver\n        if self.deadline",
             '        if decision == "approved":\n            self.decided_by = approver\n'
             "        if self.deadline"),),
           {A_IN_TIME: "was not refused", A_RACE: "both decided"}, subtle=True),
    # -- part B: time ------------------------------------------------------------------------------
    Mutant("async-due-deadline-never-starts", "no deadline task for 0 s: it waits forever",
           ((ASYNC_INIT, '''        self.decided_by = None
        self.deadline = (asyncio.get_running_loop().create_task(self._expire())
                         if seconds > 0 else asyncio.get_running_loop().create_future())'''),),
           {A_QUIET: "already due"}, subtle=True),
    Mutant("async-deadline-on-the-local-clock", "polls local time against a UTC deadline",
           (("        await asyncio.sleep(self.seconds)\n        await self.time_out()",
             '''        due = datetime.utcnow() + timedelta(seconds=self.seconds)
        while datetime.now() < due:
            await asyncio.sleep(0.01)
        await self.time_out()'''),
            ("import asyncio\n", "import asyncio\nfrom datetime import datetime, timedelta\n")),
           {A_QUIET: "the default came before the deadline"}, subtle=True, zone=True),
    # -- part B: lifetime and shared state ---------------------------------------------------------
    Mutant("async-one-lock-for-every-approval", "bo waits while ana's approval resumes",
           ((ASYNC_CHECK_AND_SET, '''        async with AsyncTimedApproval.busy:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
            if self.deadline is not asyncio.current_task():
                self.deadline.cancel()
            answer = {"decision": decision, "approver": approver, "reason": reason}
            await self.app.ainvoke(Command(resume=answer), self.config)
            return True'''),
            (ASYNC_DOC, ASYNC_DOC + "\n    busy = asyncio.Lock()  # one resume at a time\n")),
           {A_SEVERAL: "waits for another approval's slow resume"}, subtle=True),
    Mutant("async-decided-threads-in-the-module", "a thread answered once is never answered again",
           (("        self.decided_by = approver\n        if self.deadline",
             '        if self.config["configurable"]["thread_id"] in DECIDED_THREADS:\n'
             "            return False\n"
             '        DECIDED_THREADS.add(self.config["configurable"]["thread_id"])\n'
             "        self.decided_by = approver\n        if self.deadline"),
            ("import asyncio\n", "import asyncio\n\nDECIDED_THREADS = set()\n")),
           {A_SEVERAL: "not decided by its own new approval"}, subtle=True),
]
