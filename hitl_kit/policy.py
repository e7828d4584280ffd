"""Classify every action by reversibility, and let the class decide the approval policy.

Three tables, all plain data:

* ``ACTION_TABLE``: tool name -> reversibility class (one row per tool of the demo world);
* ``POLICY_BY_CLASS``: reversibility class -> policy;
* ``IMPACT_RULES``: what raises a tool's class for one call: its arguments or the record it
  would touch (a refund over 1,000, a mailing list of more than 100 people).

``ActionPolicy`` checks the tables when it is built (a malformed table fails at load time, not in
the middle of a run) and answers one question: what must happen before this call runs?
An action nobody classified gets the strictest answer, a hard gate, and the reason says why.
A rule can only raise a class, never lower it; a rule that cannot be evaluated for a call (a
field missing, a value of the wrong type) raises it to the top: fail closed.

    >>> policy = ActionPolicy()
    >>> policy.classify("send_mass_email", {"list_name": "vip"}, {"recipients": 12}).policy
    <Policy.SOFT_GATE: 'soft_gate'>
    >>> ruling = policy.classify("send_mass_email", {"list_name": "all"}, {"recipients": 250})
    >>> ruling.policy, ruling.raised_by
    (<Policy.HARD_GATE: 'hard_gate'>, ('target.recipients is 250, > 100',))
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from hitl_kit.email_classes import EMAIL_ASSISTANT_ACTIONS
from hitl_kit.vocabulary import Policy, Reversibility

__all__ = ["ACTION_TABLE", "IMPACT_RULES", "POLICY_BY_CLASS", "SHOWN_ACTIONS", "ActionPolicy",
           "ImpactRule", "Policy", "PolicyTableError", "Reversibility", "Ruling"]


POLICY_BY_CLASS: dict[str, str] = {
    "fully_reversible": "auto_execute",
    "partially_reversible": "auto_with_logging",
    "irreversible_low": "soft_gate",
    "irreversible_high": "hard_gate",
}

# The demo world's tools (see hitl_kit.world) with their classes. Each tool also carries its class
# in its metadata; tests keep the two in step. The email assistant's ten tools are drill 1: their
# classes are the drill's answer, so they live in hitl_kit/email_classes.py (open it after the
# drill), and notebook 01 shows SHOWN_ACTIONS, the table without them.
CUSTOMER_ACTIONS: list[tuple[str, str]] = [
    ("find_customers", "fully_reversible"),
    ("read_customer", "fully_reversible"),
    ("update_customer", "partially_reversible"),
    ("issue_refund", "irreversible_low"),  # money leaves; a small refund needs only a warning
    ("delete_customer", "irreversible_high"),
]
HIGH_STAKES_ACTIONS: list[tuple[str, str]] = [
    ("send_mass_email", "irreversible_low"),  # raised to high by IMPACT_RULES for a big list
    ("deploy_to_prod", "irreversible_high"),
]
SHOWN_ACTIONS = CUSTOMER_ACTIONS + HIGH_STAKES_ACTIONS
ACTION_TABLE = CUSTOMER_ACTIONS + EMAIL_ASSISTANT_ACTIONS + HIGH_STAKES_ACTIONS

# (tool, field, operator, value, raise to). ``field`` is "args.<name>" (what the model asked
# for) or "target.<path>" (the record the call would touch, read just before the approver sees
# it). The seed's two email rows are one tool here: one message is a soft gate, a big list hard.
IMPACT_RULES: list[tuple[str, str, str, Any, str]] = [
    ("send_mass_email", "target.recipients", ">", 100, "irreversible_high"),
    ("issue_refund", "args.amount", ">", 1000, "irreversible_high"),
    ("update_customer", "target.customer.plan", "==", "enterprise", "irreversible_low"),
]
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
             "==": operator.eq, "!=": operator.ne,
             "in": lambda found, allowed: found in allowed,
             "not in": lambda found, allowed: found not in allowed}
ORDER = list(Reversibility)  # least to most severe


def _class_rank(klass: Reversibility | None) -> int:
    return len(ORDER) if klass is None else ORDER.index(klass)


class PolicyTableError(ValueError):
    """The classification or policy table is malformed."""


@dataclass(frozen=True)
class Ruling:
    """The answer for one call: its class (None when unclassified), the policy and why.
    ``raised_by`` explains each impact rule that raised the class above ``base``."""

    action: str
    reversibility: Reversibility | None
    policy: Policy
    reason: str
    base: Reversibility | None = None
    raised_by: tuple[str, ...] = ()

    @property
    def needs_human(self) -> bool:
        return self.policy.needs_human


class RuleError(ValueError):
    """An impact rule that cannot be evaluated for this call."""


@dataclass(frozen=True)
class ImpactRule:
    """Raise ``tool``'s class to ``raise_to`` when ``field`` ``op`` ``value`` holds."""

    tool: str
    field: str
    op: str
    value: Any
    raise_to: Reversibility

    def holds(self, args: Mapping | None, target: Any) -> tuple[bool, str]:
        """Whether the rule holds for this call, and what it found; RuleError when it cannot
        tell (the field is missing, or its value cannot be compared)."""
        where, _, path = self.field.partition(".")
        found: Any = args if where == "args" else target
        for part in path.split("."):
            if not isinstance(found, Mapping) or part not in found:
                raise RuleError(f"{self.field} is missing")
            found = found[part]
        numeric = self.op in (">", ">=", "<", "<=")
        if numeric and (isinstance(found, bool) or not isinstance(found, int | float)
                        or not math.isfinite(found)):  # NaN compares False to everything
            raise RuleError(f"{self.field} is {found!r}, not a number")
        shown = int(found) if isinstance(found, float) and found.is_integer() else found
        try:
            return bool(OPERATORS[self.op](found, self.value)), f"{self.field} is {shown!r}"
        except TypeError as exc:
            raise RuleError(f"{self.field} is {found!r}: {exc}") from None

    def describe(self) -> str:
        return f"{self.field} {self.op} {self.value!r} raises {self.tool} to {self.raise_to}"


def _as_enum(enum: type[Enum], value: object, where: str) -> Enum:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise PolicyTableError(
            f"{where}: {value!r} is not a known value; use one of: {allowed}"
        ) from None


class ActionPolicy:
    """A validated classification table plus class->policy table.

    ``rows`` is an iterable of ``(action, class)`` pairs (or a mapping); ``rules`` the impact
    rules (default: the kit's ``IMPACT_RULES`` for the tools in ``rows`` that they raise).
    Raises ``PolicyTableError`` for an unknown class or policy, an action listed twice, a class
    with no policy, or a rule that is malformed, names an unknown tool, or does not raise its
    tool's class.
    """

    def __init__(
        self,
        rows: Iterable[tuple[str, str]] | Mapping[str, str] = ACTION_TABLE,
        policies: Mapping[str, str] = POLICY_BY_CLASS,
        rules: Iterable | None = None,
        raise_after_instructions: Iterable[str] | None = None,
    ):
        self.policies: dict[Reversibility, Policy] = {}
        for klass, policy in policies.items():
            key = _as_enum(Reversibility, klass, "policy table")
            self.policies[key] = _as_enum(Policy, policy, f"policy for {klass!r}")
        missing = [k.value for k in Reversibility if k not in self.policies]
        if missing:
            raise PolicyTableError(
                f"policy table has no policy for: {', '.join(missing)}; give every class a policy"
            )

        pairs = rows.items() if isinstance(rows, Mapping) else rows
        self.classes: dict[str, Reversibility] = {}
        for row in pairs:
            if not (isinstance(row, tuple | list) and len(row) == 2):
                raise PolicyTableError(f"action table row {row!r} is not an (action, class) pair")
            action, klass = row
            if not isinstance(action, str) or not action.strip():
                raise PolicyTableError(f"action table row {row!r}: the action name must be text")
            if action in self.classes:
                raise PolicyTableError(
                    f"action {action!r} is listed twice; keep exactly one row per action"
                )
            self.classes[action] = _as_enum(Reversibility, klass, f"class of {action!r}")
        if rules is None:  # the kit's rules, for the tools of this table that they raise
            rules = [r for r in IMPACT_RULES if r[0] in self.classes
                     and ORDER.index(Reversibility(r[4])) > ORDER.index(self.classes[r[0]])]
        self.rules = [self._checked_rule(row) for row in rules]
        chosen = ORDER if raise_after_instructions is None else [
            _as_enum(Reversibility, k, "raise_after_instructions")
            for k in raise_after_instructions]
        self.raise_after_instructions = frozenset(chosen)

    def _checked_rule(self, row) -> ImpactRule:
        if not (isinstance(row, tuple | list) and len(row) == 5):
            raise PolicyTableError(f"impact rule {row!r} is not (tool, field, operator, value, "
                                   "raise to)")
        tool, field, op, value, raise_to = row
        if tool not in self.classes:
            raise PolicyTableError(f"impact rule {row!r}: {tool!r} is not in the action table")
        where, _, path = field.partition(".") if isinstance(field, str) else ("", "", "")
        if where not in ("args", "target") or not path or "" in path.split("."):
            raise PolicyTableError(f"impact rule {row!r}: the field must be 'args.<name>' or "
                                   "'target.<path>'")
        if op not in OPERATORS:
            raise PolicyTableError(f"impact rule {row!r}: operator {op!r} is unknown; use one "
                                   f"of {', '.join(OPERATORS)}")
        if op in (">", ">=", "<", "<=") and (isinstance(value, bool)
                                            or not isinstance(value, int | float)):
            raise PolicyTableError(f"impact rule {row!r}: {op} compares numbers, not {value!r}")
        if op in ("in", "not in") and not isinstance(value, list | tuple | set | frozenset):
            raise PolicyTableError(f"impact rule {row!r}: {op} needs a list of values")
        raised = _as_enum(Reversibility, raise_to, f"impact rule {row!r}")
        base = self.classes[tool]
        if ORDER.index(raised) <= ORDER.index(base):
            raise PolicyTableError(
                f"impact rule {row!r} would not raise {tool} above its class {base}: a rule "
                "may only raise a class, never keep or lower it")
        return ImpactRule(tool, field, op, value, raised)

    @classmethod
    def from_tools(cls, tools: Iterable, policies: Mapping[str, str] = POLICY_BY_CLASS,
                   rules: Iterable | None = None):
        """Build the table from tools that carry ``metadata["reversibility"]``."""
        rows = []
        for tool in tools:
            klass = (getattr(tool, "metadata", None) or {}).get("reversibility")
            if klass is None:
                continue  # left out on purpose: an untagged tool is unclassified -> hard gate
            rows.append((tool.name, klass))
        return cls(rows, policies, rules)

    def classify(self, action: str, args: Mapping | None = None, target: Any = None, *,
                 provenance: Iterable[Mapping] = ()) -> Ruling:
        """The ruling for one call. Unknown actions fail closed to a hard gate. Given the call's
        ``args`` (and the ``target`` it would touch), impact rules may raise the class; a rule
        that cannot be evaluated raises it to the top. Without ``args``: the tool's own class.
        ``provenance`` (``hitl_kit.provenance``): when the agent had read text that reads as an
        instruction to it, a call that would run unattended waits for a person (soft gate), for
        the classes in ``raise_after_instructions`` (default: all)."""
        return self._after_reading(self._classify(action, args, target), provenance)

    def _after_reading(self, ruling: Ruling, provenance: Iterable[Mapping]) -> Ruling:
        if ruling.needs_human or ruling.reversibility not in self.raise_after_instructions:
            return ruling
        quoted = [f"{p.get('source')}: {p.get('quote')!r}" for p in provenance
                  if p.get("suspicious") and p.get("quote")]
        if not quoted:
            return ruling
        why = ("the agent had read text that reads as an instruction to it ("
               + "; ".join(quoted) + "), so a person sees this call first")
        return replace(ruling, policy=Policy.SOFT_GATE, reason=f"{ruling.reason}; raised: {why}",
                       raised_by=(*ruling.raised_by, why))

    def at_least(self, ruling: Ruling, floor: Any) -> Ruling:
        """The ruling, never below ``floor`` (the request as first shown: its ``reversibility``,
        ``policy`` and ``raised_by``): a call shown again keeps how it was gated."""
        floor_class = None if floor.reversibility not in set(Reversibility) \
            else Reversibility(floor.reversibility)
        klass = max(ruling.reversibility, floor_class, key=_class_rank)
        policy = max(ruling.policy, Policy(floor.policy),
                     Policy.HARD_GATE if klass is None else self.policies[klass],
                     key=list(Policy).index)
        if (klass, policy) == (ruling.reversibility, ruling.policy):
            return ruling
        return replace(ruling, reversibility=klass, policy=policy,
                       raised_by=tuple(dict.fromkeys((*ruling.raised_by, *floor.raised_by))),
                       reason=f"{ruling.reason}; kept at {klass or 'unclassified'}, {policy}, as "
                              "when first shown")

    def _classify(self, action: str, args: Mapping | None, target: Any) -> Ruling:
        klass = self.classes.get(action)
        if klass is None:
            return Ruling(
                action,
                None,
                Policy.HARD_GATE,
                f"{action!r} is unclassified: it is not in the action table, so it needs a human "
                "(fail closed). Add it to the table to change that.",
            )
        base, raised_by = klass, []
        for rule in (r for r in self.rules if r.tool == action and args is not None):
            try:
                holds, found = rule.holds(args, target)
            except RuleError as exc:
                holds, found = True, f"{exc}, so the rule cannot tell (fail closed)"
                rule = ImpactRule(rule.tool, rule.field, rule.op, rule.value, ORDER[-1])
            if holds:
                raised_by.append(f"{found}, {rule.op} {rule.value!r}"
                                 if "fail closed" not in found else found)
                if ORDER.index(rule.raise_to) > ORDER.index(klass):
                    klass = rule.raise_to
        policy = self.policies[klass]
        reason = f"{action!r} is {base.value}: policy {self.policies[base].value}"
        if klass != base:
            reason = (f"{action!r} is {base.value}, raised to {klass.value} ("
                      f"{'; '.join(raised_by)}): policy {policy.value}")
        return Ruling(action, klass, policy, reason, base, tuple(raised_by))

    def __contains__(self, action: str) -> bool:
        return action in self.classes

    def table(self) -> list[dict[str, str]]:
        """Rows for display: action, class, policy, whether a human is needed."""
        return [
            {
                "action": action,
                "class": klass.value,
                "policy": self.policies[klass].value,
                "needs_human": self.policies[klass].needs_human,
            }
            for action, klass in self.classes.items()
        ]
