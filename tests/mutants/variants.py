"""Right answers written differently from the solutions: every check must pass them. A check that
fails one of these fails a learner for something the drill never asked."""

from tests.mutants import Mutant
from tests.mutants.drill4 import LOCKED as D4_LOCKED

D1_BODY = '''    _klass, policy = EMAIL_TABLE.get(action, (None, "hard_gate"))
    return policy'''
D2_RETURN = '    return {"decision": decision}'
D3_INSERT = '''    with conn:  # commits, so the row is kept whatever the caller does next
        conn.execute(f"INSERT INTO audit_log ({columns}) VALUES ({placeholders})", row)'''
D4_DOC = ('    """One paused thread, decided exactly once: by a person, or by the timer after '
          '`seconds`."""\n')

VARIANTS = {
    "drill1": [
        Mutant("try-except-lookup", "", ((D1_BODY, '''    try:
        return EMAIL_TABLE[action][1]
    except KeyError:
        return "hard_gate"'''),), {}),
        Mutant("membership-test", "", ((D1_BODY, '''    if action in EMAIL_TABLE:
        return EMAIL_TABLE[action][1]
    return Policy.HARD_GATE'''), ("def policy_for(", "from hitl_kit.vocabulary import Policy\n\n\n"
                                                "def policy_for(")), {}),
        Mutant("enum-members-in-the-table", "",
               (('"delete_thread": ("irreversible_high", "hard_gate")',
                 '"delete_thread": (__import__("hitl_kit.vocabulary").vocabulary.Reversibility'
                 '.IRREVERSIBLE_HIGH, __import__("hitl_kit.vocabulary").vocabulary.Policy'
                 '.HARD_GATE)'),), {}),
        Mutant("sends-behind-a-hard-gate", "",
               (('"send_reply": ("irreversible_low", "soft_gate")',
                 '"send_reply": ("irreversible_high", "hard_gate")'),), {}),
        Mutant("calendar-event-undoable", "",
               (('"create_calendar_event": ("partially_reversible", "auto_with_logging")',
                 '"create_calendar_event": ("fully_reversible", "auto_execute")'),), {}),
        Mutant("rules-as-lists-in-a-tuple", "",
               (("raised_by.append(rule)", "raised_by.append(list(rule))"),
                ("own_policy), raised_by", "own_policy), tuple(raised_by)")), {}),
        Mutant("none-for-cannot-tell", "",
               (('raise CannotTell(f"{field} is missing")', "return None"),
                ('raise CannotTell(f"{field} is {found!r}, not a number")', "return None"),
                ('''        try:
            holds = rule_holds(field, op, value, args, target)
        except CannotTell:
            holds, raise_to = True, CLASS_ORDER[-1]  # nobody can tell: fail closed''',
                 '''        holds = rule_holds(field, op, value, args, target)
        if holds is None:
            holds, raise_to = True, CLASS_ORDER[-1]''')), {}),
        Mutant("rank-from-the-enum-policy-as-enum", "",
               (("rank = CLASS_ORDER.index", "rank = [k.value for k in Reversibility].index"),
                ("return (POLICY_BY_CLASS[klass] if raised_by else own_policy)",
                 "return Policy(POLICY_BY_CLASS[klass] if raised_by else own_policy)"),
                ("import operator\n", "import operator\n\nfrom hitl_kit.vocabulary import Policy, "
                                      "Reversibility\n")), {}),
        Mutant("policies-copied-into-a-lookup", "",
               ((D1_BODY, '    return {a: pair[1] for a, pair in EMAIL_TABLE.items()}.get(action, '
                          '"hard_gate")'),), {}),
        Mutant("calendar-fully-and-contacts-logged", "",
               (('"create_calendar_event": ("partially_reversible", "auto_with_logging")',
                 '"create_calendar_event": ("fully_reversible", "auto_execute")'),
                ('"add_contact": ("partially_reversible", "auto_with_logging")',
                 '"add_contact": ("fully_reversible", "auto_execute")')), {}),
        Mutant("walk-with-a-sentinel-and-ranks-by-dict", "",
               (('''    for key in path.split("."):
        if not isinstance(found, dict) or key not in found:
            raise CannotTell(f"{field} is missing")
        found = found[key]''', '''    missing = object()
    for key in path.split("."):
        found = found.get(key, missing) if isinstance(found, dict) else missing
        if found is missing:
            raise CannotTell(f"{field} is missing")'''),
                ("    rank = CLASS_ORDER.index\n",
                 "    rank = {k: i for i, k in enumerate(CLASS_ORDER)}.__getitem__\n")), {}),
        Mutant("collect-then-take-the-highest", "",
               (('''        if holds:
            raised_by.append(rule)
            klass = max(klass, raise_to, key=rank)
    return (POLICY_BY_CLASS[klass] if raised_by else own_policy), raised_by''',
                 '''        if holds:
            raised_by.append((rule, raise_to))
    if not raised_by:
        return own_policy, []
    top = max((to for _, to in raised_by), key=rank)
    return POLICY_BY_CLASS[top], [rule for rule, _ in raised_by]'''),), {}),
        Mutant("a-second-lower-rule-for-delete", "",
               (('    ("set_rule", "args.action", "==", "delete", "irreversible_high"),',
                 '    ("set_rule", "args.action", "==", "delete", "irreversible_low"),\n'
                 '    ("set_rule", "args.action", "==", "delete", "irreversible_high"),'),), {}),
    ],
    "drill2": [
        Mutant("needs-approval-by-inequality", "",
               (("return tool_name not in READ_ONLY",
                 'return tool_name != "find_customers" and tool_name != "read_customer"'),), {}),
        Mutant("payload-with-more-context", "",
               (('        "args": call["args"],\n',
                 '        "args": call["args"],\n        "call_id": call.get("id"),\n'
                 '        "risk": "high" if call["name"] == "delete_customer" else "medium",\n'),),
               {}),
        Mutant("review-returns-the-answer-by-name", "",
               ((D2_RETURN, '    answer = decision\n    return {"decision": answer}'),), {}),
        Mutant("review-asks-first-then-auto-approves-with-a-reason", "",
               (('''    call = state.get("call")
    if call is None or not needs_approval(call["name"]):
        return {"decision": {"decision": "auto-approved", "approver": "auto"}}''',
                 '''    call = state.get("call")
    if call is not None and needs_approval(call["name"]):
        return {"decision": interrupt({"action": call["name"], "args": call["args"],
                                       "task": state["task"]})}
    return {"decision": {"decision": "auto-approved", "approver": "auto",
                         "reason": "no call, or a read"}}'''),), {}),
        Mutant("payload-as-a-list-of-calls", "",
               (('''    decision = interrupt({
        "task": state["task"],
        "action": call["name"],
        "args": call["args"],
        "message": "This call changes customer data. Approve or reject?",
    })''', '''    decision = interrupt([{"tool": call["name"], "arguments": call["args"]}])'''),),
               {}),
        Mutant("review-copies-the-answer", "",
               ((D2_RETURN, '    return {"decision": dict(decision)}'),), {}),
        Mutant("graph-built-with-a-sequence", "",
               (('''    builder.add_edge(START, "plan")
    builder.add_edge("plan", "review")
    builder.add_edge("review", "execute")
    builder.add_edge("execute", END)
    return builder.compile(checkpointer=checkpointer)''',
                 '''    builder.add_edge(START, "plan")
    builder.add_edge("plan", "review")
    builder.add_edge("review", "execute")
    builder.set_finish_point("execute")
    return builder.compile(checkpointer)'''),), {}),
    ],
    "drill3": [
        Mutant("commit-instead-of-with", "",
               ((D3_INSERT, '    conn.execute(f"INSERT INTO audit_log ({columns}) VALUES '
                            '({placeholders})", row)\n    conn.commit()'),), {}, zone=True),
        Mutant("after-triggers-that-abort", "",
               (("BEFORE UPDATE ON audit_log", "AFTER UPDATE ON audit_log"),
                ("BEFORE DELETE ON audit_log", "AFTER DELETE ON audit_log")), {}),
        Mutant("no-seq-column-guard-on-rowid", "",
               (("    seq                 INTEGER PRIMARY KEY,  -- the order the rows were written "
                 "in\n", ""),
                ("WHERE seq = NEW.seq", "WHERE rowid = NEW.rowid")), {}),
        Mutant("positional-values-in-order", "",
               ((D3_INSERT, '''    with conn:
        conn.execute("INSERT INTO audit_log (timestamp, session_id, action_type, parameters, "
                     "reversibility_class, approver_id, decision, outcome, proposed_at, "
                     "executed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     tuple(row[c] for c in ("timestamp", *ENTRY_FIELDS)))'''),), {}),
        Mutant("fail-in-before-triggers-without-strict", "",
               (("RAISE(ABORT, 'audit_log is append-only: rows cannot be updated')",
                 "RAISE(FAIL, 'audit_log is append-only: rows cannot be updated')"),
                ("RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted')",
                 "RAISE(FAIL, 'audit_log is append-only: rows cannot be deleted')"),
                (") STRICT;", ");")), {}),
        Mutant("missing-keys-by-set-difference-and-commit", "",
               (('''    missing = [field for field in ENTRY_FIELDS if field not in entry]
    if missing:
        raise ValueError(f"entry has no {', '.join(missing)}")''',
                 '''    missing = sorted(set(ENTRY_FIELDS) - entry.keys())
    if missing:
        raise KeyError(f"log_action: the entry lacks {missing}")'''),
                ('json.dumps(row["parameters"], sort_keys=True)',
                 'json.dumps(row["parameters"], separators=(",", ":"), ensure_ascii=False)'),
                (D3_INSERT, '''    names = f"audit_log ({columns})"
    conn.execute(f"INSERT INTO {names} VALUES ({placeholders})", row)
    conn.commit()''')), {}),
        Mutant("timestamps-from-epoch-seconds", "",
               (("    return moment.astimezone(UTC).isoformat()",
                 "    return datetime.fromtimestamp(moment.timestamp(), tz=UTC).isoformat()"),
                ('row["timestamp"] = datetime.now(UTC).isoformat()',
                 'row["timestamp"] = datetime.fromtimestamp(__import__("time").time(), UTC)'
                 '.isoformat(timespec="milliseconds")')), {}, zone=True),
        Mutant("autoincrement-id-and-its-guard", "",
               (("    seq                 INTEGER PRIMARY KEY,  -- the order the rows were written "
                 "in\n", "    id                  INTEGER PRIMARY KEY AUTOINCREMENT,\n"),
                ("WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)",
                 "WHEN NEW.id IN (SELECT id FROM audit_log)")), {}),
        Mutant("raise-rollback-triggers", "",
               (("RAISE(ABORT, 'audit_log is append-only: rows cannot be updated')",
                 "RAISE(ROLLBACK, 'audit_log is append-only: rows cannot be updated')"),), {}),
    ],
    "drill4": [
        Mutant("lock-on-the-class-resume-outside", "",
               (("        self._lock = threading.Lock()\n", ""),
                (D4_DOC, D4_DOC + "\n    _lock = threading.Lock()  # held only to claim\n"),
                (D4_LOCKED, '''        with self._lock:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True''')), {}),
        Mutant("bounded-semaphore", "",
               (("self._lock = threading.Lock()", "self._gate = threading.BoundedSemaphore(1)"),
                (D4_LOCKED, '''        self._gate.acquire()
        try:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
            self.timer.cancel()
            self.app.invoke(Command(resume={"decision": decision, "approver": approver,
                                            "reason": reason}), self.config)
        finally:
            self._gate.release()
        return True''')), {}),
        Mutant("claimed-with-setdefault", "",
               (("self._lock = threading.Lock()", "self._claim = {}"),
                (D4_LOCKED, '''        me = object()
        if self._claim.setdefault("winner", me) is not me:  # atomic: one caller wins
            return False
        self.decided_by = approver
        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True''')), {}),
        Mutant("event-as-the-flag", "",
               (("        self.decided_by = None\n        self._lock",
                 "        self.decided = threading.Event()\n        self._lock"),
                (D4_LOCKED, '''        with self._lock:
            if self.decided.is_set():
                return False
            self.decided.set()
        self.timer.cancel()
        self.app.invoke(Command(resume=dict(decision=decision, approver=approver,
                                            reason=reason)), self.config)
        return True''')), {}),
        Mutant("async-wait-for-an-answer", "",
               (("        await asyncio.sleep(self.seconds)\n        await self.time_out()",
                 '''        try:
            await asyncio.wait_for(self.answered.wait(), self.seconds)
        except TimeoutError:
            await self.time_out()'''),
                ("        self.decided_by = None\n        self.deadline",
                 "        self.decided_by = None\n        self.answered = asyncio.Event()\n"
                 "        self.deadline"),
                ("        if self.deadline is not asyncio.current_task():  # don't cancel the "
                 "resume we are in\n            self.deadline.cancel()",
                 "        self.answered.set()")), {}, zone=True),
        Mutant("rlock", "", (("self._lock = threading.Lock()", "self._lock = threading.RLock()"),),
               {}),
        Mutant("resume-outside-the-lock", "",
               ((D4_LOCKED, '''        with self._lock:
            if self.decided_by is not None:
                return False
            self.decided_by = approver
        self.timer.cancel()
        answer = {"decision": decision, "approver": approver, "reason": reason}
        self.app.invoke(Command(resume=answer), self.config)
        return True'''),), {}),
        Mutant("async-lock", "",
               (('''        if self.decided_by is not None:
            return False
        self.decided_by = approver''', '''        async with self._lock:
            if self.decided_by is not None:
                return False
            self.decided_by = approver'''),
                ("        self.decided_by = None\n        self.deadline",
                 "        self.decided_by = None\n        self._lock = asyncio.Lock()\n"
                 "        self.deadline")), {}),
        Mutant("async-call-later", "",
               (("        self.deadline = asyncio.get_running_loop().create_task(self._expire())",
                 "        self.deadline = asyncio.get_running_loop().create_task(\n"
                 "            asyncio.wait_for(asyncio.Event().wait(), seconds))\n"
                 "        self.deadline.add_done_callback(\n"
                 "            lambda t: t.cancelled() or asyncio.ensure_future(self.time_out()))"
                 ),),
               {}, zone=True),
    ],
}
