"""Classify every action by reversibility, and let the class decide the approval policy.

Two tables, both plain data:

* ``ACTION_TABLE``: tool name -> reversibility class (one row per tool of the demo world);
* ``POLICY_BY_CLASS``: reversibility class -> policy.

``ActionPolicy`` checks both tables when it is built (a malformed table fails at load time, not in
the middle of a run) and answers one question: what must happen before this call runs?
An action nobody classified gets the strictest answer, a hard gate, and the reason says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum

from hitl_kit.spoilers.drill1 import EMAIL_ASSISTANT_ACTIONS


class Reversibility(StrEnum):
    """How far an action can be undone."""

    FULLY_REVERSIBLE = "fully_reversible"
    PARTIALLY_REVERSIBLE = "partially_reversible"
    IRREVERSIBLE_LOW = "irreversible_low"
    IRREVERSIBLE_HIGH = "irreversible_high"


class Policy(StrEnum):
    """What happens before an action runs, from least to most friction."""

    AUTO_EXECUTE = "auto_execute"
    AUTO_WITH_LOGGING = "auto_with_logging"  # runs at once; logged; bursts raise an alert
    SOFT_GATE = "soft_gate"  # warn; proceeds unless a human rejects it in time
    HARD_GATE = "hard_gate"  # blocked until a human approves it

    @property
    def needs_human(self) -> bool:
        return self in (Policy.SOFT_GATE, Policy.HARD_GATE)


POLICY_BY_CLASS: dict[str, str] = {
    "fully_reversible": "auto_execute",
    "partially_reversible": "auto_with_logging",
    "irreversible_low": "soft_gate",
    "irreversible_high": "hard_gate",
}

# The demo world's tools (see hitl_kit.world) with their classes. Each tool also carries its class
# in its metadata; tests keep the two in step. The email assistant's ten tools are drill 1: their
# classes are the drill's answer, so they live in hitl_kit/spoilers/drill1.py (open it after the
# drill), and notebook 01 shows SHOWN_ACTIONS, the table without them.
CUSTOMER_ACTIONS: list[tuple[str, str]] = [
    ("find_customers", "fully_reversible"),
    ("read_customer", "fully_reversible"),
    ("update_customer", "partially_reversible"),
    ("delete_customer", "irreversible_high"),
]
HIGH_STAKES_ACTIONS: list[tuple[str, str]] = [
    ("send_mass_email", "irreversible_high"),
    ("deploy_to_prod", "irreversible_high"),
]
SHOWN_ACTIONS = CUSTOMER_ACTIONS + HIGH_STAKES_ACTIONS
ACTION_TABLE = CUSTOMER_ACTIONS + EMAIL_ASSISTANT_ACTIONS + HIGH_STAKES_ACTIONS


class PolicyTableError(ValueError):
    """The classification or policy table is malformed."""


@dataclass(frozen=True)
class Ruling:
    """The answer for one action: its class (None when unclassified), the policy and why."""

    action: str
    reversibility: Reversibility | None
    policy: Policy
    reason: str

    @property
    def needs_human(self) -> bool:
        return self.policy.needs_human


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

    ``rows`` is an iterable of ``(action, class)`` pairs (or a mapping). Raises
    ``PolicyTableError`` for an unknown class or policy, an action listed twice, or a class with
    no policy.
    """

    def __init__(
        self,
        rows: Iterable[tuple[str, str]] | Mapping[str, str] = ACTION_TABLE,
        policies: Mapping[str, str] = POLICY_BY_CLASS,
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

    @classmethod
    def from_tools(cls, tools: Iterable, policies: Mapping[str, str] = POLICY_BY_CLASS):
        """Build the table from tools that carry ``metadata["reversibility"]``."""
        rows = []
        for tool in tools:
            klass = (getattr(tool, "metadata", None) or {}).get("reversibility")
            if klass is None:
                continue  # left out on purpose: an untagged tool is unclassified -> hard gate
            rows.append((tool.name, klass))
        return cls(rows, policies)

    def classify(self, action: str) -> Ruling:
        """The ruling for one action. Unknown actions fail closed to a hard gate."""
        klass = self.classes.get(action)
        if klass is None:
            return Ruling(
                action,
                None,
                Policy.HARD_GATE,
                f"{action!r} is unclassified: it is not in the action table, so it needs a human "
                "(fail closed). Add it to the table to change that.",
            )
        policy = self.policies[klass]
        return Ruling(action, klass, policy, f"{action!r} is {klass.value}: policy {policy.value}")

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
