"""Drill 1: classify the email assistant's ten actions and give each a policy.

The learner writes ``EMAIL_TABLE`` (action -> (class, policy)) and ``policy_for(action)``. The
checks are the constraints a reviewer would insist on, not one answer key.
"""

from __future__ import annotations

from hitl_kit.policy import POLICY_BY_CLASS, Policy, Reversibility
from hitl_kit.selfcheck import Check, Drill, NotAttempted

EMAIL_ACTIONS = (
    "read_inbox", "draft_reply", "send_reply", "unsubscribe", "delete_thread",
    "add_contact", "set_rule", "archive_thread", "search_mail", "create_calendar_event",
)
UNDOABLE = ("read_inbox", "search_mail", "draft_reply", "archive_thread")
BEYOND_UNDO = ("send_reply", "unsubscribe", "delete_thread")  # they send or destroy
GATES = (Policy.SOFT_GATE.value, Policy.HARD_GATE.value)
CLASSES = [k.value for k in Reversibility]
POLICIES = [p.value for p in Policy]


def _table(ns: dict) -> dict:
    table = ns.get("EMAIL_TABLE")
    if table is None:
        raise NotAttempted("EMAIL_TABLE is not defined yet")
    if not isinstance(table, dict):
        raise AssertionError(f"EMAIL_TABLE must be a dict of action -> (class, policy), "
                             f"not {type(table).__name__}")
    if all(v in (None, (None, None)) for v in table.values()):
        raise NotAttempted("every row of EMAIL_TABLE is still TODO")
    return table


def _pair(table: dict, action: str) -> tuple[str | None, str | None]:
    value = table.get(action)
    if isinstance(value, tuple | list) and len(value) == 2:
        klass, policy = value
        return (None if klass is None else str(getattr(klass, "value", klass)),
                None if policy is None else str(getattr(policy, "value", policy)))
    return None, None


def every_action_classified(ns: dict) -> None:
    table = _table(ns)
    problems = []
    for action in EMAIL_ACTIONS:
        klass, policy = _pair(table, action)
        if action not in table:
            problems.append(f"{action}: missing from EMAIL_TABLE")
        elif klass not in CLASSES:
            problems.append(f"{action}: class {klass!r} is not one of {CLASSES}")
        elif policy not in POLICIES:
            problems.append(f"{action}: policy {policy!r} is not one of {POLICIES}")
    assert not problems, "\n".join(problems)


def policy_follows_class(ns: dict) -> None:
    table = _table(ns)
    wrong = []
    for action in EMAIL_ACTIONS:
        klass, policy = _pair(table, action)
        expected = POLICY_BY_CLASS.get(klass)
        if expected and policy != expected:
            wrong.append(f"{action}: class {klass} calls for {expected}, the table says {policy}")
    assert not wrong, "\n".join(wrong)


def undoable_actions_not_gated(ns: dict) -> None:
    table = _table(ns)
    gated = [f"{a}: {_pair(table, a)[1]}" for a in UNDOABLE if _pair(table, a)[1] in GATES]
    assert not gated, (
        "these can be undone by the user (or change nothing), yet wait for a human:\n"
        + "\n".join(gated)
    )


def sends_and_destroys_gated(ns: dict) -> None:
    table = _table(ns)
    open_ = [f"{a}: {_pair(table, a)[1]}" for a in BEYOND_UNDO if _pair(table, a)[1] not in GATES]
    assert not open_, (
        "these send something or destroy something the user cannot get back, "
        "yet run without a human:\n" + "\n".join(open_)
    )


def unknown_action_fails_closed(ns: dict) -> None:
    policy_for = ns.get("policy_for")
    if policy_for is None:
        raise NotAttempted("policy_for is not defined yet")
    table = _table(ns)
    for action in EMAIL_ACTIONS:
        got = policy_for(action)
        got = getattr(got, "value", got)
        expected = _pair(table, action)[1]
        assert got == expected, (
            f"policy_for({action!r}) returned {got!r}, but EMAIL_TABLE says {expected!r}"
        )
    for unknown in ("forward_all_mail", "empty_trash"):
        got = policy_for(unknown)
        got = getattr(got, "value", got)
        assert got == Policy.HARD_GATE.value, (
            f"policy_for({unknown!r}) returned {got!r}: an action nobody classified must get "
            "'hard_gate' (fail closed), not an exception or a guess"
        )


DRILL = Drill(
    key="drill1",
    title="Drill 1: classify the email assistant's actions",
    notebook="01_classify_email_actions.ipynb",
    checks=[
        Check("every action is classified with a known class and policy", every_action_classified,
              "Each of the ten actions needs a pair like ('fully_reversible', 'auto_execute'). "
              "Spell classes and policies exactly as hitl_kit.policy does."),
        Check("each policy follows from its class", policy_follows_class,
              "The class decides the policy: look up POLICY_BY_CLASS. If a policy feels wrong for "
              "an action, the class is what to change."),
        Check("reads, searches, drafts and archiving run without a human",
              undoable_actions_not_gated,
              "Gating what the user can undo is over-gating: approvers learn to click Approve "
              "without reading. Can the user take it back themselves?"),
        Check("sending and permanent deletion wait for a human", sends_and_destroys_gated,
              "Once a reply or an unsubscribe request has left, or a thread is deleted past the "
              "trash, nobody can take it back. Which classes are irreversible?"),
        Check("policy_for fails closed for an unknown action", unknown_action_fails_closed,
              "policy_for should return the table's policy for a known action and 'hard_gate' "
              "for anything not in the table. dict.get takes a default."),
    ],
)
