"""Drill 1: classify the email assistant's ten actions and give each a policy (part A), then
raise the class of one call from what it would do (part B).

Part A: the learner writes ``EMAIL_TABLE`` (action -> (class, policy)) and ``policy_for(action)``.
The checks are the constraints a reviewer would insist on, not one answer key: the table's rows,
then the lookup, probed with every action in the table and with many names it has never seen.

Part B: the learner writes ``EMAIL_RULES`` (impact rules as data, in the kit's shape) and
``policy_for_call(action, args, target, rules) -> (policy, raised_by)`` on top of the table. The
rules are judged by what they do to calls, not by their text; the function is probed with rules,
fields, values and actions it has never seen (every operator at and around its threshold, fields
missing or of the wrong type, rules that would lower a class, rules of other actions, unknown
actions), each answer compared with the kit's own rule evaluator run on the learner's table.

What an answer could silently depend on, and how the checks vary it:

* every row judged: each of the ten rows is held to what a reviewer expects of its class (the
  contacts, mail rules and calendar events included, not only the reads, sends and deletes), and
  part B puts every row of the learner's table below the top class through the rule probes, not
  one action per class;
* names: besides other capitals, spacing, look-alikes and affixes, every known name behind a
  namespace or a separator (``email.read_inbox``, ``mcp__email__read_inbox``, ``/read_inbox``),
  for actions and for the actions rules are written for;
* order and state: the unknown names are asked after every known one (a cache filled by a known
  name must not answer for a look-alike), rules come in both orders, and EMAIL_TABLE, args,
  target and rules must be unchanged by any call;
* values: thresholds at, under and over, ints and floats, 0, fields one, two and three keys deep,
  and None, 0 and "" where == and != compare anything.
"""

from __future__ import annotations

import contextlib
import copy
import dis
import inspect
from collections import Counter
from dataclasses import dataclass, replace

from hitl_kit.course.checks.names import HINTS, NEW, Unseen, most_common_kind_first, unseen_names
from hitl_kit.course.selfcheck import (
    Check,
    Drill,
    Flaw,
    NotAttempted,
    describe,
    learner_error,
    need,
)
from hitl_kit.policy import POLICY_BY_CLASS, ImpactRule, RuleError
from hitl_kit.vocabulary import Policy, Reversibility

EMAIL_ACTIONS = (
    "read_inbox", "draft_reply", "send_reply", "unsubscribe", "delete_thread",
    "add_contact", "set_rule", "archive_thread", "search_mail", "create_calendar_event",
)
UNDOABLE = ("read_inbox", "search_mail", "draft_reply", "archive_thread")
OWN_STATE = ("add_contact", "set_rule", "create_calendar_event")  # the user can remove them
SENDS = ("send_reply", "unsubscribe")  # they leave the mailbox: nobody can call them back
DESTROYS = ("delete_thread",)  # past the trash: a soft gate's timeout would destroy it
GATES = (Policy.SOFT_GATE, Policy.HARD_GATE)
CLASSES = [k.value for k in Reversibility]
POLICIES = [p.value for p in Policy]
OTHER_KIT_TOOLS = ("delete_customer", "send_mass_email", "deploy_to_prod")  # not email actions
# The names the drill asks for, and those its notebook gives (a renamed answer is told apart).
NAMES = ("EMAIL_TABLE", "policy_for", "EMAIL_RULES", "policy_for_call", "EMAIL_ACTIONS",
         "POLICY_BY_CLASS", "World", "CLASS_ORDER", "world", "call", "EXAMPLE_CALLS", "TODO",
         "tool", "klass", "policy", "action", "args", "target")


def _table(ns: dict) -> dict:
    table = need(ns, "EMAIL_TABLE", known=NAMES)
    if not isinstance(table, dict):
        raise Flaw("EMAIL_TABLE is not a dict", got=f"{type(table).__name__}: {table!r:.80}",
                   expected="a dict of action -> (class, policy)",
                   hint="Keep the shape of the stub: {'read_inbox': (class, policy), ...}.")
    if table and all(v in (None, (None, None)) for v in table.values()):
        raise NotAttempted("every row of EMAIL_TABLE is still TODO")
    return table


def _text(value) -> str | None:
    """A class or policy as its text: a plain string or a StrEnum member."""
    return None if value is None else str(getattr(value, "value", value))


def _pair(table: dict, action: str) -> tuple[str | None, str | None]:
    value = table.get(action)
    if isinstance(value, tuple | list) and len(value) == 2:
        return _text(value[0]), _text(value[1])
    return None, None


def every_action_classified(ns: dict) -> None:
    table = _table(ns)
    problems = []
    for action in EMAIL_ACTIONS:
        klass, policy = _pair(table, action)
        if action not in table:
            problems.append(f"{action}: missing from EMAIL_TABLE")
        elif klass not in CLASSES:
            problems.append(f"{action}: class {klass!r} is not one of the four classes")
        elif policy not in POLICIES:
            problems.append(f"{action}: policy {policy!r} is not one of the four policies")
    if problems:
        verb = "lacks" if len(problems) == 1 else "lack"
        raise Flaw(f"{len(problems)} of the ten actions {verb} a known class and policy",
                   got="\n".join(problems),
                   expected=f"classes: {', '.join(CLASSES)}\npolicies: {', '.join(POLICIES)}",
                   hint="Each of the ten actions needs a pair like ('fully_reversible', "
                        "'auto_execute'), spelt exactly as above (the key too).")


def policy_follows_class(ns: dict) -> None:
    table = _table(ns)
    wrong = []
    for action in table:
        klass, policy = _pair(table, action)
        if klass in POLICY_BY_CLASS and policy != POLICY_BY_CLASS[klass]:
            wrong.append(f"{action}: {klass} calls for {POLICY_BY_CLASS[klass]}, "
                         f"the table says {policy}")
    if wrong:
        raise Flaw("a policy contradicts its action's class", got="\n".join(wrong),
                   expected="the policy POLICY_BY_CLASS gives that class",
                   hint="The class decides the policy. If a policy feels wrong for an action, "
                        "the class is what to change.")


def _rule(actions: tuple[str, ...], allowed: tuple[str, ...], flaw: str, hint: str):
    """A check that each of ``actions`` has one of the ``allowed`` policies in the table (a row
    that is missing or unreadable is the first check's to report)."""
    def check(ns: dict) -> None:
        table = _table(ns)
        policies = {a: _pair(table, a)[1] for a in actions}
        wrong = [f"{a}: {p}" for a, p in policies.items() if p is not None and p not in allowed]
        if wrong:
            raise Flaw(flaw, got="\n".join(wrong), expected=" or ".join(allowed), hint=hint)

    return check


undoable_actions_not_gated = _rule(
    UNDOABLE, (Policy.AUTO_EXECUTE, Policy.AUTO_WITH_LOGGING),
    "actions the user can undo (or that change nothing) wait for a human",
    "Gating what the user can undo is over-gating: approvers learn to click Approve without "
    "reading. Can the user take it back themselves?")
sends_wait_for_a_human = _rule(
    SENDS, GATES, "a message that leaves the mailbox is sent without a human",
    "Once a reply or an unsubscribe request has left, nobody can call it back: it is "
    "irreversible, whatever it costs.")
own_changes_run_without_a_human = _rule(
    OWN_STATE, (Policy.AUTO_EXECUTE, Policy.AUTO_WITH_LOGGING),
    "a change the user can undo (a contact, a mail rule, a calendar event) waits for a human",
    "These change only the user's own address book, mail rules and calendar, and the user can "
    "remove what was added: partially_reversible (auto_with_logging), or fully_reversible. A "
    "gate here is over-gating; part B raises the one kind of mail rule that deletes mail.")
destruction_waits_for_a_hard_gate = _rule(
    DESTROYS, (Policy.HARD_GATE,), "a permanent deletion can happen without a human saying yes",
    "A soft gate runs the action when nobody rejects it in time. Deleting past the trash cannot "
    "be undone and costs a lot: irreversible_high.")


def _policy_for(ns: dict):
    policy_for = need(ns, "policy_for", known=NAMES)
    if not callable(policy_for):
        raise Flaw("policy_for is not a function", got=repr(policy_for),
                   hint="def policy_for(action: str) -> str: ...")
    return policy_for


def _ask(policy_for, action: str) -> tuple[str | None, BaseException | None, object]:
    """(policy as text or None, the error it raised, the raw value it returned)."""
    try:
        got = policy_for(action)
    except Exception as exc:
        made = learner_error(exc, f"policy_for({action!r})")
        if isinstance(made, NotAttempted):
            raise made from None
        return None, exc, None
    return (_text(got) if isinstance(got, str) else None), None, got


def known_actions_get_their_policy(ns: dict) -> None:
    table, policy_for = _table(ns), _policy_for(ns)
    for action in table:
        expected = _pair(table, action)[1]
        text, error, raw = _ask(policy_for, action)
        if error is not None:
            raise learner_error(error, f"policy_for({action!r})",
                                expected=f"{expected!r}, the policy in EMAIL_TABLE",
                                hint="For an action in the table, return its policy: the "
                                     "second item of its pair.")
        if text != expected:
            pair = isinstance(raw, tuple | list)
            raise Flaw(f"policy_for disagrees with EMAIL_TABLE for {action!r}",
                       tried=f"policy_for({action!r})", got=repr(raw),
                       expected=f"{expected!r} (EMAIL_TABLE[{action!r}] is {table[action]!r})",
                       hint="Return only the policy, the second item of the pair."
                       if pair else "For an action in the table, return the policy the table "
                                    "gives it, spelt exactly as there.")


@contextlib.contextmanager
def _table_kept(ns: dict, who: str, tried: str):
    """The block's probes must leave EMAIL_TABLE as it was: deciding a policy only reads."""
    table = _table(ns)
    before = copy.deepcopy(table)
    yield
    if table != before:
        added = sorted(set(table) - set(before), key=str)[:3]
        raise Flaw(f"{who} changes EMAIL_TABLE while it decides", tried=tried,
                   got=f"the table changed; new keys include {added!r}" if added
                   else "rows of the table were changed",
                   expected="EMAIL_TABLE as it was: deciding a policy only reads",
                   hint="dict.setdefault writes the default into the table, and an assignment "
                        "keeps a call's raised class for every later call; dict.get only reads.")


def unknown_actions_fail_closed(ns: dict) -> None:
    table, policy_for = _table(ns), _policy_for(ns)
    probes = unseen_names(list(table) or EMAIL_ACTIONS)
    probes += [Unseen(name, NEW, "") for name in OTHER_KIT_TOOLS if name not in table]
    failed = []  # (probe, text, error, raw)
    with _table_kept(ns, "policy_for", f"{len(probes)} names not in the table"):
        for action in list(table):  # first each known name: a cache it fills must not answer
            _ask(policy_for, action)
        for probe in probes:
            text, error, raw = _ask(policy_for, probe.name)
            if error is not None or text != Policy.HARD_GATE:
                failed.append((probe, text, error, raw))
    if failed:
        raise _fail_open(failed, len(probes))


def _fail_open(failed: list, total: int) -> Flaw:
    failed = most_common_kind_first(failed)
    probe, text, error, raw = failed[0]
    others = [f"{p.name!r} -> {describe(e) if e else repr(r)}" for p, _, e, r in failed[1:4]]
    also = (f"{len(failed) - 1} more of the {total} unseen names, e.g. " + "; ".join(others)
            if others else None)
    tried = f"policy_for({probe.name!r})  ({probe.made()})"
    expected = "'hard_gate': a human sees anything nobody classified (fail closed)"
    if error is not None:
        return Flaw("policy_for crashes on an action that is not in the table", tried=tried,
                    got=describe(error), expected=expected, also=also,
                    hint="An unknown action must not stop the agent with an error: "
                         "return 'hard_gate'. " + HINTS[NEW])
    if text == Policy.SOFT_GATE:
        return Flaw("policy_for gives an action nobody classified a soft gate", tried=tried,
                    got=repr(raw), expected=expected, also=also,
                    hint="A soft gate runs the action when nobody answers in time, so an "
                         "unclassified action would run unseen. Use 'hard_gate'.")
    if text not in POLICIES:
        return Flaw("policy_for returns something that is not a policy name", tried=tried,
                    got=repr(raw), expected=expected, also=also,
                    hint=f"Return one policy name, spelt exactly: {', '.join(POLICIES)}.")
    return Flaw("policy_for lets an action nobody classified run without a hard gate",
                tried=tried, got=repr(raw), expected=expected, also=also,
                hint=HINTS[probe.how])


# -- part B: impact rules ----------------------------------------------------------------------
# A rule is (action, field, operator, value, raise to). The expected answer for every probe comes
# from the kit's own rule evaluator (hitl_kit.policy.ImpactRule) on the learner's own table.

TOP = CLASSES[-1]
HARD = POLICY_BY_CLASS[TOP]
OPERATORS = (">", ">=", "<", "<=", "==", "!=")
NUMERIC = (">", ">=", "<", "<=")
COMPANY = "example.com"
OUTSIDE = ("vendor.example", "deals.example", "example.org", "example.com.evil.net",
           "notexample.com", "")
MAIL_RULE_ACTIONS = ("delete", "archive", "label")
REPLY, MAIL_RULE = "send_reply", "set_rule"


def _rank(klass: str) -> int:
    return CLASSES.index(klass)


def _rows(ns: dict) -> dict[str, tuple[str, str]]:
    """The learner's table rows that have a known class and policy: what part B builds on."""
    table = _table(ns)
    rows = {action: _pair(table, action) for action in table if isinstance(action, str)}
    rows = {a: (k, p) for a, (k, p) in rows.items() if k in CLASSES and p in POLICIES}
    if not rows:
        raise NotAttempted("EMAIL_TABLE has no row with a known class and policy yet: part B "
                           "builds on part A's table")
    return rows


@dataclass(frozen=True)
class Call:
    """One probe: a call of ``action`` with ``args`` and ``target``, judged under ``rules``."""

    action: str
    args: dict
    target: object
    rules: tuple
    kind: str = ""  # what the probe is about; picks the flaw and the hint

    def tried(self) -> str:
        return (f"policy_for_call({self.action!r}, {self.args!r}, {self.target!r}, rules)\n"
                f"rules = {list(self.rules)!r}")


def _outcome(rule: tuple, args, target) -> bool | None:
    """Whether ``rule`` holds for the call; None when it cannot be evaluated."""
    try:
        return ImpactRule(*rule).holds(args, target)[0]
    except RuleError:
        return None


def _expected(rows: dict, call: Call) -> tuple[str, list]:
    """What policy_for_call must answer, by the drill's rules, on the learner's table."""
    if call.action not in rows:
        return HARD, []
    base, own = rows[call.action]
    klass, counted = base, []
    for rule in call.rules:
        if rule[0] != call.action or _rank(rule[4]) <= _rank(base):
            continue
        holds = _outcome(rule, call.args, call.target)
        if holds is None or holds:
            counted.append(rule)
            klass = max(klass, TOP if holds is None else rule[4], key=_rank)
    return (POLICY_BY_CLASS[klass] if counted else own), counted


def _policy_for_call(ns: dict):
    """The learner's function, once it is more than the stub and takes the rules it is given."""
    fn = need(ns, "policy_for_call", known=NAMES)
    if not callable(fn):
        raise Flaw("policy_for_call is not a function", got=f"{fn!r:.80}",
                   hint="def policy_for_call(action, args, target, rules): ...")
    try:
        inspect.signature(fn).bind("send_reply", {}, None, [])
    except TypeError:
        raise Flaw("policy_for_call does not take (action, args, target, rules)",
                   got=f"policy_for_call{inspect.signature(fn)}",
                   expected="policy_for_call(action, args, target, rules)",
                   hint="The agent passes the rules too, so the same function works for any "
                        "rules: def policy_for_call(action, args, target, rules).") from None
    except ValueError:
        pass  # a builtin or a callable whose signature Python cannot read: just call it
    rows = _rows(ns)
    _answer(fn, Call(next(iter(rows)), {"thread_id": 7}, None, ()))  # a stub: not attempted
    if _never_reads_its_rules(fn):
        raise Flaw("policy_for_call never reads its rules argument",
                   got=f"the parameter {fn.__code__.co_varnames[3]!r} is not used in its body",
                   expected="the rules it is given: the agent passes EMAIL_RULES, the check "
                            "passes rules of its own",
                   hint="Go through the `rules` parameter, not the EMAIL_RULES global: the "
                        "same function must work for any rules.")
    return fn


def _never_reads_its_rules(fn) -> bool:
    """True when the function's code never loads its fourth parameter (read from its bytecode,
    so nothing of the learner's runs)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount < 4:
        return False
    name = code.co_varnames[3]
    if name in code.co_cellvars:  # used by a nested function or a comprehension
        return False
    for instruction in dis.get_instructions(code):
        loaded = instruction.argval if isinstance(instruction.argval, tuple) else (
            instruction.argval,)
        if instruction.opname.startswith("LOAD_FAST") and name in loaded:
            return False
    return True


@dataclass
class Answer:
    raw: object = None
    error: BaseException | None = None

    @property
    def policy(self) -> str | None:
        return _text(self.raw[0]) if isinstance(self.raw[0], str) else None


def _copied(value):
    """A deep copy of plain data (dicts, lists, tuples of constants): copy.deepcopy's speed
    matters here, with a few thousand calls per check."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(item) for item in value)
    return value


def _answer(fn, call: Call) -> Answer:
    """The learner's answer to one probe (its error, if it raised). A stub is not attempted; an
    answer that is not a (policy, raised_by) pair or that changed its inputs is a Flaw."""
    given = _copied((call.args, call.target, list(call.rules)))
    try:
        raw = fn(call.action, given[0], given[1], given[2])
    except Exception as exc:
        made = learner_error(exc, "policy_for_call")
        if isinstance(made, NotAttempted):
            raise made from None
        return Answer(error=exc)
    if given != (call.args, call.target, list(call.rules)):
        raise Flaw("policy_for_call changes the call or the rules it is given",
                   tried=call.tried(),
                   got=f"afterwards: args={given[0]!r}, target={given[1]!r},\n"
                       f"rules={given[2]!r}",
                   expected="args, target and rules as they were: deciding a policy only reads",
                   hint="Read with `in` and [] (no setdefault, pop or sort on what you are "
                        "given): the approver must see the call exactly as it will run.")
    if not (isinstance(raw, tuple | list) and len(raw) == 2):
        raise Flaw("policy_for_call does not return a (policy, raised_by) pair",
                   tried=call.tried(), got=f"{raw!r:.120}",
                   expected="a pair such as ('auto_execute', []) or ('hard_gate', [rule])",
                   hint="return policy, raised_by: the policy's name, and the list of rules "
                        "that raised the call.")
    return Answer(raw)


def _raised(error: BaseException) -> str:
    """What the learner's code raised and where: two lines, never a traceback."""
    made = learner_error(error, "policy_for_call")
    where = dict(made.evidence)["got"].removeprefix(type(error).__name__).strip()
    return f"{describe(error)}\n{where}"


def _ask_call(fn, call: Call, expected: str, crash: str, hint: str) -> Answer:
    """The learner's answer to one probe; if it raised, the Flaw ``crash`` with ``hint``."""
    answer = _answer(fn, call)
    if answer.error is not None:
        raise Flaw(crash, tried=call.tried(), got=_raised(answer.error), expected=expected,
                   hint=hint)
    return answer


def _why(call: Call, rule: tuple) -> str:
    """How a rule fares on a call, in words: "args.count is 10: 10 > 10 does not hold"."""
    field, op, value = rule[1:4]
    try:
        holds = ImpactRule(*rule).holds(call.args, call.target)[0]
    except RuleError as exc:
        return f"{exc}: the rule cannot be evaluated"
    found = _found(call, field)
    return f"{field} is {found!r}: {found!r} {op} {value!r} " + (
        "holds" if holds else "does not hold")


def _found(call: Call, field: str):
    where, _, path = field.partition(".")
    found = call.args if where == "args" else call.target
    for key in path.split("."):
        found = found.get(key) if isinstance(found, dict) else None
    return found


def _expected_text(rows: dict, call: Call) -> str:
    policy, counted = _expected(rows, call)
    base = rows[call.action][0] if call.action in rows else None
    if base is None:
        return f"{policy!r}: {call.action!r} is not in EMAIL_TABLE"
    if not counted:
        own = [r for r in call.rules if r[0] == call.action]
        why = "; ".join(_why(call, r) for r in own[:2]) or "no rule for it"
        return f"{policy!r}, {call.action}'s own policy ({why})"
    klass = max((TOP if _outcome(r, call.args, call.target) is None else r[4] for r in counted),
                key=_rank)
    return (f"{policy!r}: {'; '.join(_why(call, r) for r in counted[:2])}, so the call "
            f"goes from {base} to {klass}")


# -- part B, the rules as data ---------------------------------------------------------------------

def _email_rules(ns: dict) -> list:
    rules = need(ns, "EMAIL_RULES", known=NAMES)
    if not isinstance(rules, list | tuple):
        raise Flaw("EMAIL_RULES is not a list", got=f"{type(rules).__name__}: {rules!r:.80}",
                   expected="a list of (action, field, operator, value, raise to) rules",
                   hint="Keep the shape of the stub: [(action, field, operator, value, raise "
                        "to), ...].")
    if not rules or all(isinstance(r, tuple | list) and all(x is None for x in r)
                        for r in rules):
        raise NotAttempted("EMAIL_RULES is still TODO")
    return list(rules)


def _malformed(rule, table: dict) -> str | None:
    """What is wrong with one rule's shape, or None."""
    if not (isinstance(rule, tuple | list) and len(rule) == 5):
        return "is not (action, field, operator, value, raise to)"
    action, field, op, value, raise_to = rule
    where, _, path = field.partition(".") if isinstance(field, str) else ("", "", "")
    if not isinstance(action, str) or action not in table:
        return f"is for {action!r}, which is not an action of EMAIL_TABLE"
    if where not in ("args", "target") or not path or "" in path.split("."):
        return f"has field {field!r}: write 'args.<name>' or 'target.<key>.<key>'"
    if op not in OPERATORS:
        return f"has operator {op!r}: use one of {', '.join(OPERATORS)}"
    if op in NUMERIC and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"compares with {op} but its value {value!r} is not a number"
    if raise_to not in CLASSES:
        return f"raises to {raise_to!r}, which is not one of the four classes"
    return None


def _reply_calls() -> list[tuple[str, Call]]:
    calls = []
    for domain in (*OUTSIDE, COMPANY):
        sender = f"someone@{domain}" if domain else "someone"
        target = {"thread": {"id": 1, "sender": sender, "sender_domain": domain,
                             "subject": "Invoice 1042", "archived": 0}}
        call = Call(REPLY, {"thread_id": 1, "body": "Thanks, noted."}, target, ())
        calls.append((f"a reply to {sender}", call))
    return calls


def _mail_rule_calls() -> list[tuple[str, Call]]:
    return [(f"a mail rule that {what}s news@deals.example's mail",
             Call(MAIL_RULE, {"sender": "news@deals.example", "action": what}, None, ()))
            for what in MAIL_RULE_ACTIONS]


def email_rules_gate_what_they_should(ns: dict) -> None:
    rows, rules = _rows(ns), _email_rules(ns)
    for rule in rules:
        wrong = _malformed(rule, _table(ns))
        if wrong:
            raise Flaw("a rule in EMAIL_RULES is malformed", got=f"{rule!r} {wrong}",
                       expected="(action, field, operator, value, raise to), e.g.\n"
                                "('send_mass_email', 'target.recipients', '>', 100, "
                                "'irreversible_high')",
                       hint="Spell the action as in EMAIL_TABLE, the field as args.<name> or "
                            "target.<path>, and the class as one of the four.")
    rules = tuple(tuple(r) for r in rules)
    cases = [(label, call, (call.target["thread"]["sender_domain"] != COMPANY))
             for label, call in _reply_calls()]
    cases += [(label, call, call.args["action"] == "delete") for label, call in _mail_rule_calls()]
    for label, call, gated in cases:
        if call.action not in rows:
            continue  # a missing row is part A's to report
        call = replace(call, rules=rules)
        policy, counted = _expected(rows, call)
        own = rows[call.action][1]
        if gated and policy != HARD:
            raise Flaw(f"with EMAIL_RULES, {label} gets {policy!r}, not a hard gate",
                       tried=f"your EMAIL_RULES on {call.action}({call.args!r})\n"
                             f"target = {call.target!r}",
                       got=f"{policy!r}, raised by {counted!r}",
                       expected=f"{HARD!r}: {_gated_why(call)}",
                       hint=_gated_hint(call))
        if not gated and policy != own:
            raise Flaw(f"with EMAIL_RULES, {label} is raised: over-gating",
                       tried=f"your EMAIL_RULES on {call.action}({call.args!r})\n"
                             f"target = {call.target!r}",
                       got=f"{policy!r}, raised by {counted!r}",
                       expected=f"{own!r}, the action's own policy: nothing about this call "
                                "is bigger than usual",
                       hint="Raise only what the drill asks: a reply whose sender_domain is "
                            "not 'example.com', a mail rule whose action is 'delete'. Read the "
                            "field the drill names, exactly as spelt there.")


def _gated_why(call: Call) -> str:
    if call.action == REPLY:
        return "the reply leaves the company: a stranger reads it, and it cannot be recalled"
    return "mail deleted as it arrives is gone before anyone has read it"


def _gated_hint(call: Call) -> str:
    if call.action == REPLY:
        return ("One rule for send_reply over target.thread.sender_domain, holding when it is "
                "not 'example.com' (operator !=), raising to the class whose policy is "
                "hard_gate.")
    return ("One rule for set_rule over args.action, holding when it is exactly 'delete' "
            "(operator ==), raising to the class whose policy is hard_gate.")


# -- part B, the function: probes ------------------------------------------------------------------

def _subjects(rows: dict) -> list[str]:
    """Every action below the top class (rules can raise it), lowest class first."""
    below = [action for action, (klass, _) in rows.items() if klass != TOP]
    return sorted(below, key=lambda action: _rank(rows[action][0]))


def _above(rows: dict, action: str) -> list[str]:
    return CLASSES[_rank(rows[action][0]) + 1:]


FIELDS = ("args.count", "target.size", "target.thread.people", "target.thread.sender.people")


def _placed(field: str, found) -> tuple[dict, dict | None]:
    """(args, target) holding ``found`` at ``field``, beside keys no rule reads."""
    where, _, path = field.partition(".")
    args: dict = {"thread_id": 7}
    target: dict = {"thread": {"id": 7, "subject": "Q3 plans"}}
    place = args if where == "args" else target
    *steps, last = path.split(".")
    for key in steps:
        place = place.setdefault(key, {})
    place[last] = found
    return args, target


def _threshold_values(op: str) -> list[tuple[object, list]]:
    """(rule value, values found): at, just under and just over each threshold, ints and
    floats; for == and !=, equal values that are other objects (1000 built at run time, a
    string joined at run time) and near misses."""
    values = [(10, [11, 10, 9, 10.0, 10.5, 9.5]), (0.5, [1, 0.5, 0]), (0, [1, 0, -1, -0.5])]
    if op in ("==", "!="):
        values += [(1000, [int("1000"), 999, None]),
                   ("delete", ["".join(["del", "ete"]), "Delete", "archive", None, ""]),
                   ("", ["", None, 0])]
    return values


def _threshold_calls(rows: dict) -> list[Call]:
    """One rule per call, for each action below the top raised to the next class and to the
    top, over a field of args, of target and nested in target, two and three keys deep: every
    value over the first three fields for the first action of each class; at, under and over
    one threshold for the rest (every row and every depth is judged; the grid is what costs)."""
    calls = []
    classes_seen: set[str] = set()
    for action in _subjects(rows):
        above = _above(rows, action)
        first = rows[action][0] not in classes_seen
        classes_seen.add(rows[action][0])
        for raise_to in dict.fromkeys((above[0], above[-1])):
            for field in FIELDS:
                full = first and field != FIELDS[-1]
                for op in OPERATORS:
                    for value, founds in _threshold_values(op)[:None if full else 1]:
                        for found in founds if full else founds[:3]:
                            args, target = _placed(field, found)
                            rule = (action, field, op, value, raise_to)
                            calls.append(Call(action, args, target, (rule,), kind=field))
    return calls


def rules_raise_exactly_when_they_hold(ns: dict) -> None:
    rows, fn = _rows(ns), _policy_for_call(ns)
    failed, answered = [], []  # answered: (call, policy) of every probe
    with _table_kept(ns, "policy_for_call", "calls with one rule each, holding or not"):
        _threshold_answers(rows, fn, failed, answered)
    if failed:
        raise _threshold_flaw(rows, failed, answered)


def _threshold_answers(rows: dict, fn, failed: list, answered: list) -> None:
    for call in _threshold_calls(rows):
        expected, _ = _expected(rows, call)
        answer = _ask_call(
            fn, call, repr(expected), "policy_for_call crashes on a rule it can evaluate",
            "Read the line named above. The field is there and the value is a number (or, for "
            "== and !=, anything): compare it with the rule's value.")
        answered.append((call, answer.policy))
        if answer.policy != expected:
            failed.append((call, answer))


def _threshold_flaw(rows: dict, failed: list, answered: list) -> Flaw:
    def holds(call):
        return _outcome(call.rules[0], call.args, call.target)

    if all(c.kind.startswith("target.") for c, _ in failed):
        call, answer = next(((c, a) for c, a in failed if not holds(c)), failed[0])
        nested = all(c.kind.count(".") > 1 for c, _ in failed)
        return Flaw("a rule over a nested target field is not read one key per dot" if nested
                    else "a rule over the target is not read from target", tried=call.tried(),
                    got=repr(answer.raw), expected=_expected_text(rows, call),
                    hint="A field 'target.<path>' is read from target, one key per dot: "
                         "target.thread.people is target['thread']['people']. Only "
                         "'args.<name>' is read from args.")
    unraised = [(c, a) for c, a in failed if holds(c) and a.policy == rows[c.action][1]]
    if unraised:
        call, answer = unraised[0]
        if all(policy == rows[c.action][1] for c, policy in answered):
            hint = ("policy_for_call never raised a call: go through the rules it is given (its "
                    "fourth argument, not only EMAIL_RULES) and raise the class for each rule "
                    "of this action that holds.")
        elif all(max(rows[c.action][0], c.rules[0][4]) == rows[c.action][0]
                 for c, _ in unraised):
            hint = ("Compare classes by their position in CLASS_ORDER, not as text: as strings, "
                    "'partially_reversible' > 'irreversible_low', so max() keeps the action's "
                    "class.")
        elif all(c.rules[0][2] == "==" for c, _ in unraised):
            hint = ("Compare with == (equal values), never `is` (the same object): 10.0 == 10, "
                    "and two equal strings or big numbers are often different objects.")
        else:
            hint = ("Compare the value found with the rule's value using exactly the rule's "
                    "operator: found > value, with the value found on the left.")
        return Flaw("a rule that holds does not raise the call", tried=call.tried(),
                    got=repr(answer.raw), expected=_expected_text(rows, call), hint=hint)
    raised = [(c, a) for c, a in failed if not holds(c)]
    if raised:
        at = [(c, a) for c, a in raised if _found(c, c.rules[0][1]) == c.rules[0][3]]
        call, answer = (at or raised)[0]
        if len(at) == len(raised):
            return Flaw("a rule raises the call at its threshold, where it does not hold",
                        tried=call.tried(), got=repr(answer.raw),
                        expected=_expected_text(rows, call),
                        hint="Each operator exactly as written: 10 > 10 and 10 < 10 are False, "
                             "10 >= 10 is True. Map '>' to >, not to >=.")
        return Flaw("a rule raises the call although it does not hold", tried=call.tried(),
                    got=repr(answer.raw), expected=_expected_text(rows, call),
                    hint="Compare the value found with the rule's value using exactly the "
                         "rule's operator; a rule that does not hold leaves the call alone.")
    call, answer = failed[0]
    if answer.policy == HARD:
        hint = ("A rule that holds raises the call to its own class (the rule's last item), "
                "whose policy POLICY_BY_CLASS gives; only a rule that cannot be evaluated goes "
                "to the top.")
    else:
        hint = ("The call's class is the highest of the action's class and the rule's. Compare "
                "classes by their position in CLASS_ORDER, not as text ('partially_reversible' > "
                "'irreversible_high' as strings).")
    return Flaw("a rule that holds raises the call to another class than its own",
                tried=call.tried(), got=repr(answer.raw), expected=_expected_text(rows, call),
                hint=hint)


def _lowering_calls(rows: dict) -> list[Call]:
    """Rules that would keep or lower the class, holding or not evaluable: alone, and after a
    raising rule (the most severe actions first: they have the most room to be lowered)."""
    calls = []
    for action, (base, _) in sorted(rows.items(), key=lambda row: -_rank(row[1][0])):
        args, target = _placed("args.count", 5)
        for klass in CLASSES[:_rank(base) + 1]:
            calls.append(Call(action, args, target, ((action, "args.count", ">", 0, klass),),
                              kind="lower"))
            calls.append(Call(action, args, target, ((action, "args.size", ">", 0, klass),),
                              kind="lower"))  # cannot be evaluated, and never counts
            above = _above(rows, action)
            if above:
                raising = (action, "args.thread_id", "==", 7, above[-1])
                calls.append(Call(action, args, target,
                                  (raising, (action, "args.count", ">", 0, klass)),
                                  kind="lower"))
    return calls


def _several_rules_calls(rows: dict) -> list[Call]:
    """Two rules of the action that both hold, one raising it to the top and one to a class
    between, in both orders."""
    calls = []
    for action in _subjects(rows):
        for between in _above(rows, action)[:-1]:
            args, target = _placed("args.people", 40)
            args["count"] = 3
            lower = (action, "args.count", ">=", 3, between)
            higher = (action, "args.people", ">", 25, TOP)
            calls += [Call(action, args, target, (higher, lower), kind="several"),
                      Call(action, args, target, (lower, higher), kind="several")]
    return calls


def _other_action_calls(rows: dict) -> list[Call]:
    """Rules that hold for the call's values but are for another action: a known one, or a
    name that only looks like the call's."""
    calls = []
    names = list(rows)
    for action in _subjects(rows):
        others = [n for n in names if n != action][:1] + [
            action.upper(), action + " ", action + "_all", action[:-1], "email." + action,
            "mcp__email__" + action, "/" + action]
        args, target = _placed("args.count", 5)
        for other in others:
                calls.append(Call(action, args, target, ((other, "args.count", ">", 0, TOP),),
                              kind="other"))
    return calls


def rules_only_raise_their_own_action(ns: dict) -> None:
    rows, fn = _rows(ns), _policy_for_call(ns)
    for kind_calls in (_several_rules_calls(rows), _lowering_calls(rows),
                       _other_action_calls(rows)):
        for call in kind_calls:
            expected, _ = _expected(rows, call)
            answer = _ask_call(
                fn, call, repr(expected), "policy_for_call crashes on a call with several rules",
                "Read the line named above: a rule of another action, or one that would not "
                "raise the class, is skipped, not an error.")
            if answer.policy != expected:
                raise _raise_only_flaw(rows, call, answer)


def _raise_only_flaw(rows: dict, call: Call, answer: Answer) -> Flaw:
    evidence = {"tried": call.tried(), "got": repr(answer.raw),
                "expected": _expected_text(rows, call)}
    if call.kind == "other":
        return Flaw("a rule for another action changed this call", **evidence,
                    hint="A rule applies only to calls of its own action: skip a rule whose "
                         "first item is not exactly the action being called (compared as in "
                         "part A: no lower-casing, stripping or prefixes).")
    if call.kind == "lower":
        got_rank = next((_rank(k) for k, p in POLICY_BY_CLASS.items() if p == answer.policy), 0)
        if got_rank < _rank(rows[call.action][0]):
            return Flaw("a rule lowered a call below its action's class", **evidence,
                        hint="Rules only raise: skip a rule whose class is not above the "
                             "action's class in EMAIL_TABLE, and never set the call's class "
                             "to a lower one than it has.")
        return Flaw("a rule that would keep or lower the class changed the call", **evidence,
                    hint="Rules only raise: a rule whose class is not above the action's "
                         "class never counts, and a later rule never undoes an earlier one.")
    return Flaw("two rules hold and the call does not get the higher class", **evidence,
                hint="The call's class is the highest of the action's class and every rule "
                     "that holds, whatever the order of the rules: keep the maximum by "
                     "position in CLASS_ORDER, don't let the last rule win.")


# -- part B, the function: fail closed -------------------------------------------------------------

MISSING = "missing"
NOT_A_NUMBER = "not a number"
MISSING_PLACES = (
    ("args.count", {"thread_id": 7}, {"thread": {"id": 7, "count": 12}}),
    ("args.count", {}, None),
    ("target.size", {"thread_id": 7, "size": 12}, None),
    ("target.size", {"thread_id": 7}, {}),
    ("target.thread.people", {"thread_id": 7}, {"thread": None}),
    ("target.thread.people", {"thread_id": 7}, {"thread": 12}),
    ("target.thread.people", {"thread_id": 7}, {"thread": "people"}),
    ("target.thread.people", {"thread_id": 7}, {"thread": ["people"]}),
    ("target.thread.people", {"thread_id": 7}, {"people": 12, "other": {"people": 12}}),
)
NOT_NUMBERS = ("250", "5", "lots", "", None, True, False, [12], {"n": 12})


def _unevaluable_calls(rows: dict) -> list[Call]:
    """Rules that cannot be evaluated for the call, for each action below the top, with the
    lowest class above it (so the top is not also the rule's own class) and with the top."""
    calls = []
    for action in _subjects(rows):
        above = _above(rows, action)
        for raise_to in dict.fromkeys((above[0], above[-1])):
            for field, args, target in MISSING_PLACES:
                for op in (">", "=="):
                    rule = (action, field, op, 10, raise_to)
                    calls.append(Call(action, args, target, (rule,), kind=MISSING))
            for field in ("args.count", "target.thread.people"):
                for found in NOT_NUMBERS:
                    for op in (">", "<="):
                        args, target = _placed(field, found)
                        rule = (action, field, op, 10, raise_to)
                        calls.append(Call(action, args, target, (rule,), kind=NOT_A_NUMBER))
    return calls


def unevaluable_rules_fail_closed(ns: dict) -> None:
    rows, fn = _rows(ns), _policy_for_call(ns)
    failed, answered = [], []
    for call in _unevaluable_calls(rows):
        answer = _ask_call(
            fn, call, repr(HARD), "policy_for_call crashes on a rule it cannot evaluate",
            "Reading the field can fail: a key missing, a step that is not a dict, a value that "
            "is not a number. Catch that where you read it, and let the rule raise the call to "
            "the top class.")
        answered.append((call, answer))
        if answer.policy != HARD:
            failed.append((call, answer))
    if failed:
        raise _fail_closed_flaw(rows, failed, answered)


def _read_from_args(rows: dict, call: Call) -> str:
    """The policy the call would get if its target field were read from args instead."""
    tool, field, *rest = call.rules[0]
    misread = (tool, "args." + field.partition(".")[2], *rest)
    return _expected(rows, replace(call, rules=(misread,)))[0]


def _fail_closed_flaw(rows: dict, failed: list, answered: list) -> Flaw:
    def rules_class(call, answer):
        return answer.policy == POLICY_BY_CLASS[call.rules[0][4]] != rows[call.action][1]

    missing = [(c, a) for c, a in failed if c.kind == MISSING]
    in_args = [(c, a) for c, a in answered if c.kind == MISSING and c.rules[0][1].startswith(
        "target.") and c.rules[0][1].split(".")[1] in c.args]
    if any(a.policy != HARD for _, a in in_args) and all(
            a.policy == _read_from_args(rows, c) for c, a in in_args):
        call, answer = next((c, a) for c, a in in_args if a.policy != HARD)
        return Flaw("a rule over the target is read from args", tried=call.tried(),
                    got=repr(answer.raw), expected=_expected_text(rows, call),
                    hint="target has no such field, so the rule cannot be evaluated: a hard "
                         "gate. A field 'target.<path>' is read from target only, even when "
                         "args has a key of the same name.")
    if all(a.policy == rows[c.action][1] and max(rows[c.action][0], TOP) != TOP
           for c, a in failed):
        call, answer = failed[0]
        return Flaw("a call whose rule cannot be evaluated is not raised to the top class",
                    tried=call.tried(), got=repr(answer.raw), expected=_expected_text(rows, call),
                    hint="Compare classes by their position in CLASS_ORDER, not as text: as "
                         "strings, 'partially_reversible' > 'irreversible_high', so max() keeps "
                         "the action's class.")
    if missing and all(rules_class(c, a) for c, a in failed):
        call, answer = missing[0]
        return Flaw("a rule that cannot be evaluated raises the call only to the rule's class",
                    tried=call.tried(), got=repr(answer.raw), expected=_expected_text(rows, call),
                    hint="Fail closed means the top class, irreversible_high (hard_gate), "
                         "whatever class the rule names: nobody can tell how big the call is.")
    if missing:
        call, answer = missing[0]
        return Flaw("a rule whose field is missing lets the call through (fail open)",
                    tried=call.tried(), got=repr(answer.raw), expected=_expected_text(rows, call),
                    hint="A missing field (or a step on the path that is not a dict) does not "
                         "mean the rule does not hold: nobody can tell, so the call goes to "
                         "the top class, a hard gate.")
    call, answer = failed[0]
    found = _found(call, call.rules[0][1])
    if all(isinstance(_found(c, c.rules[0][1]), bool) for c, _ in failed):
        hint = ("True and False are ints in Python (True > 0 is True), so check for bool before "
                "int: isinstance(found, bool) means it is not a number here.")
    elif isinstance(found, str):
        hint = (f"{found!r} is text, not a number: do not convert it (int(), float()). Only an "
                "int or a float can be compared with >, >=, <, <=; anything else cannot be "
                "evaluated, so the call gets a hard gate.")
    else:
        hint = ("Only an int or a float (not a bool, not text) can be compared with >, >=, <, "
                "<=; anything else cannot be evaluated, so the call gets a hard gate.")
    return Flaw("a value that is not a number is compared as if it were one", tried=call.tried(),
                got=repr(answer.raw), expected=_expected_text(rows, call), hint=hint)


# -- part B, the function: the explanation ---------------------------------------------------------

def _explained_calls(rows: dict) -> list[Call]:
    calls = []
    for action in _subjects(rows):
        above = _above(rows, action)
        args, target = _placed("args.people", 40)
        args["count"] = 3
        holding = (action, "args.count", "<", 5, above[0])
        not_holding = (action, "args.people", "<", 5, above[-1])
        missing = (action, "args.size", ">", 5, above[0])
        keeping = (action, "args.count", "<", 5, rows[action][0])
        calls += [Call(action, args, target, (not_holding,)),
                  Call(action, args, target, (not_holding, holding)),
                  Call(action, args, target, (keeping, holding)),
                  Call(action, args, target, (missing,))]
        if len(above) > 1:
            higher = (action, "args.people", ">", 25, above[-1])
            calls.append(Call(action, args, target, (higher, holding)))
    return calls


def _as_rules(raised_by) -> list | None:
    if not isinstance(raised_by, list | tuple):
        return None
    return [tuple(r) if isinstance(r, list | tuple) else r for r in raised_by]


def raised_by_names_the_rules(ns: dict) -> None:
    rows, fn = _rows(ns), _policy_for_call(ns)
    for call in _explained_calls(rows):
        _, expected = _expected(rows, call)
        answer = _ask_call(
            fn, call, f"raised_by = {expected!r}", "policy_for_call crashes while explaining a "
            "call", "Read the line named above; raised_by is the list of the rules that counted.")
        got = _as_rules(answer.raw[1])
        evidence = {"tried": call.tried(), "got": f"raised_by = {answer.raw[1]!r}",
                    "expected": f"raised_by = {expected!r} (in any order)"}
        if got is None or not all(isinstance(r, tuple) for r in got):
            raise Flaw("raised_by is not a list of rules", **evidence,
                       hint="Put the rule tuples themselves in a list, as they were given: the "
                            "card shows them to the approver.")
        extra = [r for r in got if r not in expected]
        left_out = [r for r in expected if r not in got]
        if expected and not got:
            raise Flaw("raised_by is empty although a rule raised the call", **evidence,
                       hint="Return the rules that raised the call with the policy, e.g. "
                            "('hard_gate', [rule]): the approver sees why this call needs them.")
        if extra:
            made = ("it does not hold" if _outcome(extra[0], call.args, call.target) is False
                    else "its class is not above the action's, so it never counts")
            raise Flaw("raised_by names a rule that did not raise the call", **evidence,
                       also=f"{extra[0]!r}: {made}",
                       hint="List a rule only when it counts: it is for this action, its class "
                            "is above the action's, and it holds or cannot be evaluated.")
        if left_out:
            unevaluable = [r for r in left_out if _outcome(r, call.args, call.target) is None]
            raise Flaw("raised_by leaves out a rule that raised the call", **evidence,
                       hint="A rule that cannot be evaluated raised the call too (to the top): "
                            "list it." if unevaluable else
                            "List every rule that counts, not only the one that set the class: "
                            "each is a reason the approver should see.")
        if Counter(map(repr, got)) != Counter(map(repr, expected)):
            raise Flaw("raised_by names a rule more than once", **evidence,
                       hint="Add each rule that counts once, as you go through the rules, to a "
                            "list made for this call: a default argument (raised_by=[]) or a "
                            "module-level list is shared by every call and keeps the last "
                            "call's rules.")


# -- part B, the function: unknown actions ---------------------------------------------------------

def unknown_calls_fail_closed(ns: dict) -> None:
    rows, fn = _rows(ns), _policy_for_call(ns)
    table = _table(ns)
    probes = [p for p in unseen_names(list(table)) if p.name not in table]
    probes += [Unseen(name, NEW, "") for name in OTHER_KIT_TOOLS if name not in table]
    failed = []  # (probe, call, answer)
    with _table_kept(ns, "policy_for_call", f"calls of {len(probes)} actions not in the table"):
        for probe in probes:
            args, target = _placed("args.count", 5)
            for rules in ((), ((probe.name, "args.count", ">", 0, CLASSES[2]),)):
                call = Call(probe.name, args, target, rules, kind="ruled" if rules else "")
                answer = _answer(fn, call)
                if (answer.error is not None or answer.policy != HARD
                        or _as_rules(answer.raw[1]) != []):
                    failed.append((probe, call, answer))
    if failed:
        raise _unknown_flaw(rows, failed, len(probes))


def _unknown_flaw(rows: dict, failed: list, total: int) -> Flaw:
    failed = most_common_kind_first(failed)
    probe, call, answer = failed[0]
    tried = f"{call.tried()}\n({probe.made()})"
    expected = "('hard_gate', []): a human sees anything nobody classified (fail closed)"
    others = {p.name for p, _, _ in failed} - {probe.name}
    also = (f"{len(others)} more of the {total} unseen names, e.g. "
            + ", ".join(repr(n) for n in sorted(others)[:3]) if others else None)
    if answer.error is not None:
        return Flaw("policy_for_call crashes on an action that is not in the table",
                    tried=tried, got=_raised(answer.error), expected=expected, also=also,
                    hint="Before anything else: an action that is not a key of EMAIL_TABLE "
                         "gets ('hard_gate', []). " + HINTS[NEW])
    if answer.policy == HARD:
        return Flaw("policy_for_call names rules for an action nobody classified",
                    tried=tried, got=repr(answer.raw), expected=expected, also=also,
                    hint="An unknown action gets ('hard_gate', []) before any rule is read: "
                         "no rule raised it, it is unknown.")
    if probe.how == NEW and all(c.kind == "ruled" for _, c, _ in failed):
        return Flaw("a rule gives an action nobody classified a class of its own",
                    tried=tried, got=repr(answer.raw), expected=expected, also=also,
                    hint="Rules raise an action's class; an unknown action has none to raise. "
                         "Return ('hard_gate', []) for it before reading any rule.")
    return Flaw("policy_for_call lets an action nobody classified run without a hard gate",
                tried=tried, got=repr(answer.raw), expected=expected, also=also,
                hint=HINTS[probe.how])


CHECKS = [
    Check("every action is classified with a known class and policy", every_action_classified,
          "Each of the ten actions needs a pair like ('fully_reversible', 'auto_execute'). "
          "Spell classes and policies exactly as hitl_kit.policy does."),
    Check("each policy follows from its class", policy_follows_class,
          "The class decides the policy: look up POLICY_BY_CLASS. If a policy feels wrong for "
          "an action, the class is what to change."),
    Check("reads, searches, drafts and archiving run without a human", undoable_actions_not_gated,
          "Gating what the user can undo is over-gating: approvers learn to click Approve "
          "without reading. Can the user take it back themselves?"),
    Check("sending waits for a human", sends_wait_for_a_human,
          "Once a reply or an unsubscribe request has left, nobody can take it back. Which "
          "classes are irreversible?"),
    Check("contacts, mail rules and calendar events run without a human",
          own_changes_run_without_a_human,
          "They change only the user's own things, which the user can remove: partially_"
          "reversible, auto_with_logging. Gating them is over-gating."),
    Check("permanent deletion waits for a hard gate", destruction_waits_for_a_hard_gate,
          "A soft gate proceeds when nobody answers; a thread deleted past the trash is gone for "
          "good. Which class costs the most?"),
    Check("policy_for returns the table's policy for every action in it",
          known_actions_get_their_policy,
          "policy_for returns the second item of the action's pair in EMAIL_TABLE."),
    Check("policy_for fails closed for every action not in the table",
          unknown_actions_fail_closed,
          "Any name that is not a key of EMAIL_TABLE, even one that looks like a key, gets "
          "'hard_gate'. dict.get takes a default."),
]
IMPACT_CHECKS = [
    Check("your rules gate replies outside the company and mail rules that delete",
          email_rules_gate_what_they_should,
          "Two rules in the kit's shape: send_reply over target.thread.sender_domain, set_rule "
          "over args.action. Each raises to the class whose policy is a hard gate."),
    Check("policy_for_call: a rule raises a call to its class exactly when it holds",
          rules_raise_exactly_when_they_hold,
          "For each rule of the action whose class is above the action's: read the field, "
          "compare it with exactly the rule's operator, and if it holds raise the call to the "
          "rule's class."),
    Check("policy_for_call: rules only raise, only their own action, and the highest wins",
          rules_only_raise_their_own_action,
          "Skip rules of other actions and rules whose class is not above the action's; the "
          "call's class is the highest, by position in CLASS_ORDER, whatever the rules' order."),
    Check("policy_for_call: a rule that cannot be evaluated sends the call to a hard gate",
          unevaluable_rules_fail_closed,
          "A field that is missing, or not a number where >, >=, <, <= need one, means nobody "
          "can tell: the call goes to irreversible_high. Don't crash, don't convert, don't "
          "skip the rule."),
    Check("policy_for_call: raised_by names exactly the rules that raised the call",
          raised_by_names_the_rules,
          "raised_by is the list of the rules that counted (they held or could not be "
          "evaluated, and raise above the action's class); [] when none did."),
    Check("policy_for_call fails closed for every action not in the table",
          unknown_calls_fail_closed,
          "An action that is not exactly a key of EMAIL_TABLE gets ('hard_gate', []), before "
          "any rule is read."),
]

def _warm_up() -> None:
    """Import what the drill's first cell uses (the demo world's tools) before its clock starts."""
    from hitl_kit.world import World

    World().tools(list(EMAIL_ACTIONS))


DRILL = Drill(
    key="drill1",
    title="Drill 1: classify the email assistant's actions",
    notebook="01_classify_email_actions.ipynb",
    checks=CHECKS + IMPACT_CHECKS,
    prepare=_warm_up,
)
