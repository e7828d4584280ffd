"""Who may decide what: approver roles per tool or per class, the people holding each role, and
the actions that need two different people.

Real approval systems do not let just anyone approve: finance approves refunds, on-call approves
deploys, and the worst actions need a second person. ``Approvers`` is that table, plain data
checked when it is built, used by ``ApprovalAgent`` in its one decision path, so every channel
(card, inbox, terminal, links, Slack, dashboard) enforces the same rules::

    >>> approvers = Approvers(
    ...     people={"ana": ["oncall"], "bo": ["finance"], "cy": ["oncall", "finance"]},
    ...     may_decide={"deploy_to_prod": ["oncall"], "issue_refund": ["finance"]},
    ...     two_person=["deploy_to_prod"])
    >>> from types import SimpleNamespace
    >>> deploy = SimpleNamespace(tool="deploy_to_prod", reversibility="irreversible_high")
    >>> approvers.role_for("Ana", deploy), approvers.needed(deploy)
    ('oncall', 2)
    >>> approvers.role_for("bo", deploy)
    Traceback (most recent call last):
    ...
    hitl_kit.contract.NotAllowed: bo may not decide deploy_to_prod: it needs the role oncall, ...

    >>> approvers.role_for("\u0430na", deploy)  # a Cyrillic а: still ana, still oncall
    'oncall'

Limits: the kit trusts the channel to say who is deciding (Slack's signed user id, the
dashboard's login, the link's recipient); it checks what that person may do. Who is the same
person is ``hitl_kit.identity``'s rule (names that render alike are one person), with its limits.
A tool's own entry wins over its class's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hitl_kit.contract import NotAllowed
from hitl_kit.identity import NameRefused, check_new_person, one_of, person_key
from hitl_kit.vocabulary import UNCLASSIFIED, Reversibility

CLASSES = {str(c) for c in Reversibility} | {UNCLASSIFIED}


def _roles(value, where: str) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{where}: give a list of roles, not {value!r}")
    roles = frozenset(value)
    if not roles or not all(isinstance(r, str) and r.strip() for r in roles):
        raise ValueError(f"{where}: roles are non-empty names, not {sorted(map(repr, roles))}")
    return roles


@dataclass(frozen=True)
class Approvers:
    """``people``: name -> roles (kept keyed by ``person_key``; two spellings of one person, or
    one of the kit's own names, are refused). ``may_decide``: tool name or reversibility class
    -> the roles that may decide it (nothing listed: anyone known may). ``two_person``: tool names
    or classes that run only once two different people approved."""

    people: Mapping[str, Iterable[str]] = field(default_factory=dict)
    may_decide: Mapping[str, Iterable[str]] = field(default_factory=dict)
    two_person: Iterable[str] = ()

    def __post_init__(self):
        people, names = {}, {}
        for name, roles in dict(self.people).items():
            name = check_new_person(name, names.values())
            people[person_key(name)] = _roles(roles, f"roles of {name!r}")
            names[person_key(name)] = name
        may_decide = {key: _roles(roles, f"who may decide {key!r}")
                      for key, roles in dict(self.may_decide).items()}
        known = set().union(*people.values()) if people else set()
        for key, roles in may_decide.items():
            if people and not roles & known:
                raise ValueError(f"nobody holds a role that may decide {key!r} "
                                 f"({sorted(roles)}): it could never be approved")
        two_person = frozenset(self.two_person)
        object.__setattr__(self, "people", people)
        object.__setattr__(self, "_names", names)  # person_key -> the name as listed
        object.__setattr__(self, "may_decide", may_decide)
        object.__setattr__(self, "two_person", two_person)

    def check_names(self, tools: Iterable[str]) -> None:
        """Every key names a tool or a class (a typo would leave an action unguarded)."""
        names = set(tools) | CLASSES
        unknown = sorted((set(self.may_decide) | set(self.two_person)) - names)
        if unknown:
            raise ValueError(f"approver rules name no tool or class: {unknown}; tools are "
                             f"{sorted(set(tools))}, classes {sorted(CLASSES)}")

    def roles_for_request(self, request) -> frozenset[str] | None:
        """The roles that may decide this request (an ``ApprovalRequest``), or None when any
        known person may."""
        for key in (request.tool, request.reversibility):
            if key in self.may_decide:
                return self.may_decide[key]
        return None

    def needed(self, request) -> int:
        """How many different people must approve before it runs: 1 or 2."""
        return 2 if {request.tool, request.reversibility} & self.two_person else 1

    def role_for(self, approver: str, request) -> str | None:
        """The role under which ``approver`` may decide this request (None when no role is
        needed), or ``NotAllowed`` saying why not."""
        try:
            listed = one_of(approver, self._names.values())
        except NameRefused as exc:
            raise NotAllowed(str(exc)) from None
        held = None if listed is None else self.people[person_key(listed)]
        if self.people and held is None:
            raise NotAllowed(f"{approver} is not a known approver: only the people listed in "
                             "the approver table may decide")
        needed = self.roles_for_request(request)
        if needed is None:
            return None
        allowed = sorted((held or frozenset()) & needed)
        if not allowed:
            has = ", ".join(sorted(held or ())) or "no role"
            raise NotAllowed(f"{approver} may not decide {request.tool}: it needs the "
                             f"role {' or '.join(sorted(needed))}, and {approver} has {has}")
        return allowed[0]

    def describe_for(self, request) -> dict:
        """What the request shows: who may decide, how many approvals it needs."""
        roles = self.roles_for_request(request)
        return {"may_decide": None if roles is None else tuple(sorted(roles)),
                "approvals_needed": self.needed(request)}
