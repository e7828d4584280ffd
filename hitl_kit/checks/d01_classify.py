"""Drill 1: classify the email assistant's ten actions and give each a policy.

The learner writes ``EMAIL_TABLE`` (action -> (class, policy)) and ``policy_for(action)``. The
checks are the constraints a reviewer would insist on, not one answer key: the table's rows, then
the lookup, probed with every action in the table and with many names it has never seen.
A later part (rules over a call's arguments) adds its checks to ``CHECKS``.
"""

from __future__ import annotations

import copy

from hitl_kit.checks.names import HINTS, NEW, Unseen, most_common_kind_first, unseen_names
from hitl_kit.policy import POLICY_BY_CLASS
from hitl_kit.selfcheck import Check, Drill, Flaw, NotAttempted, describe, learner_error, need
from hitl_kit.vocabulary import Policy, Reversibility

EMAIL_ACTIONS = (
    "read_inbox", "draft_reply", "send_reply", "unsubscribe", "delete_thread",
    "add_contact", "set_rule", "archive_thread", "search_mail", "create_calendar_event",
)
UNDOABLE = ("read_inbox", "search_mail", "draft_reply", "archive_thread")
SENDS = ("send_reply", "unsubscribe")  # they leave the mailbox: nobody can call them back
DESTROYS = ("delete_thread",)  # past the trash: a soft gate's timeout would destroy it
GATES = (Policy.SOFT_GATE, Policy.HARD_GATE)
CLASSES = [k.value for k in Reversibility]
POLICIES = [p.value for p in Policy]
OTHER_KIT_TOOLS = ("delete_customer", "send_mass_email", "deploy_to_prod")  # not email actions


def _table(ns: dict) -> dict:
    table = need(ns, "EMAIL_TABLE")
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
destruction_waits_for_a_hard_gate = _rule(
    DESTROYS, (Policy.HARD_GATE,), "a permanent deletion can happen without a human saying yes",
    "A soft gate runs the action when nobody rejects it in time. Deleting past the trash cannot "
    "be undone and costs a lot: irreversible_high.")


def _policy_for(ns: dict):
    policy_for = need(ns, "policy_for")
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


def unknown_actions_fail_closed(ns: dict) -> None:
    table, policy_for = _table(ns), _policy_for(ns)
    before = copy.deepcopy(table)
    probes = unseen_names(list(table) or EMAIL_ACTIONS)
    probes += [Unseen(name, NEW, "") for name in OTHER_KIT_TOOLS if name not in table]
    failed = []  # (probe, text, error, raw)
    for probe in probes:
        text, error, raw = _ask(policy_for, probe.name)
        if error is not None or text != Policy.HARD_GATE:
            failed.append((probe, text, error, raw))
    if table != before:
        added = sorted(set(table) - set(before), key=str)[:3]
        raise Flaw("policy_for changes EMAIL_TABLE while it looks names up",
                   tried=f"{len(probes)} names not in the table",
                   got=f"the table changed; new keys include {added!r}" if added
                   else "rows of the table were changed",
                   expected="EMAIL_TABLE as it was: a lookup only reads",
                   hint="dict.setdefault writes the default into the table; dict.get only reads.")
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

DRILL = Drill(
    key="drill1",
    title="Drill 1: classify the email assistant's actions",
    notebook="01_classify_email_actions.ipynb",
    checks=CHECKS,
)
