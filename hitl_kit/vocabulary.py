"""The kit's words, one ``StrEnum`` per concept, used everywhere (graph, ledger, audit, UI, checks).

A ``StrEnum`` member *is* its string (``Verdict.APPROVED == "approved"``), so values read back
from SQLite, JSON or a checkpoint compare equal to the members without conversion::

    >>> from hitl_kit.vocabulary import Kind, Verdict
    >>> Kind("approve").verdict
    <Verdict.APPROVED: 'approved'>
    >>> Verdict.TIMED_OUT == "timed-out"
    True

Limits: members are the only valid values; anything else raises ``ValueError`` on ``Enum(x)``.
"""

from __future__ import annotations

from enum import StrEnum


class Reversibility(StrEnum):
    """How far an action can be undone."""

    FULLY_REVERSIBLE = "fully_reversible"
    PARTIALLY_REVERSIBLE = "partially_reversible"
    IRREVERSIBLE_LOW = "irreversible_low"
    IRREVERSIBLE_HIGH = "irreversible_high"


UNCLASSIFIED = "unclassified"  # the class recorded for an action nobody classified
IDEMPOTENCY_KEY = "idempotency_key"  # the argument the kit passes a tool so it runs once per key


class Policy(StrEnum):
    """What happens before an action runs, from least to most friction."""

    AUTO_EXECUTE = "auto_execute"
    AUTO_WITH_LOGGING = "auto_with_logging"  # runs at once; logged; bursts raise an alert
    SOFT_GATE = "soft_gate"  # warn; proceeds unless a human rejects it in time
    HARD_GATE = "hard_gate"  # blocked until a human approves it

    @property
    def needs_human(self) -> bool:
        return self in (Policy.SOFT_GATE, Policy.HARD_GATE)


class Risk(StrEnum):
    """What the card shows in its coloured badge."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


RISK_BY_CLASS: dict[str | None, Risk] = {
    Reversibility.FULLY_REVERSIBLE: Risk.LOW,
    Reversibility.PARTIALLY_REVERSIBLE: Risk.LOW,
    Reversibility.IRREVERSIBLE_LOW: Risk.MEDIUM,
    Reversibility.IRREVERSIBLE_HIGH: Risk.HIGH,
    None: Risk.HIGH,  # unclassified: fail closed
}


class Verdict(StrEnum):
    """What was decided about one call (the audit trail's ``decision`` column)."""

    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed-out"
    AUTO_APPROVED = "auto-approved"

    @property
    def runs(self) -> bool:
        """True when the call is executed."""
        return self in (Verdict.APPROVED, Verdict.AUTO_APPROVED)


class Kind(StrEnum):
    """How a decision answers a pending approval. People answer approve / reject / edit; only
    the kit answers timeout / proceed (its timers) and refresh (show it again: it changed)."""

    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"
    TIMEOUT = "timeout"
    PROCEED = "proceed"
    REFRESH = "refresh"

    @property
    def by_system(self) -> bool:
        return self in (Kind.TIMEOUT, Kind.PROCEED, Kind.REFRESH)

    @property
    def verdict(self) -> Verdict | None:
        """The verdict this answer gives (None for an edit, which asks again)."""
        return _VERDICT_OF_KIND.get(self)

    @property
    def past(self) -> str:
        """For people: "approved", "edited the arguments", "timed out"..."""
        return _PAST_OF_KIND[self]


_VERDICT_OF_KIND = {Kind.APPROVE: Verdict.APPROVED, Kind.REJECT: Verdict.REJECTED,
                    Kind.TIMEOUT: Verdict.TIMED_OUT, Kind.PROCEED: Verdict.AUTO_APPROVED}
_PAST_OF_KIND = {Kind.APPROVE: "approved", Kind.REJECT: "rejected",
                 Kind.EDIT: "edited the arguments", Kind.TIMEOUT: "timed out",
                 Kind.PROCEED: "proceeded without a human", Kind.REFRESH: "shown again"}
PERSON_KINDS = (Kind.APPROVE, Kind.REJECT, Kind.EDIT)
SYSTEM_KINDS = (Kind.TIMEOUT, Kind.PROCEED)


class Execution(StrEnum):
    """What happened when the decision was carried out (the audit trail's ``outcome``)."""

    SUCCESS = "success"
    ERROR = "error"
    ROLLBACK = "rollback"
    NOT_EXECUTED = "not_executed"


class Event(StrEnum):
    """Kinds of audit row."""

    PROPOSED = "proposed"  # the model asked for the call
    DECIDED = "decided"  # one approval of several needed (two-person rule); nothing ran yet
    REFUSED = "refused"  # a decision refused: its approver may not decide this request
    RESOLVED = "resolved"  # the call was decided and run (or not)


class Channel(StrEnum):
    """Where a decision came from; recorded with it."""

    API = "api"  # ApprovalAgent.resume called from code
    CARD = "card"  # the inline Jupyter card
    INBOX = "inbox"  # ApprovalInbox / its widget
    CLI = "cli"  # the terminal approver
    LINK = "link"  # a signed approval link (email)
    SLACK = "slack"
    DASHBOARD = "dashboard"
    TIMER = "timer"  # a deadline's default
    POLICY = "policy"  # no human needed: the policy table let it run


PERSON_CHANNELS = frozenset(Channel) - {Channel.TIMER, Channel.POLICY}  # a caller may claim these


class Approver(StrEnum):
    """Approver names that belong to the kit, never to a person."""

    SYSTEM = "system"  # applies timeouts
    AUTO = "auto"  # runs what needs no human
