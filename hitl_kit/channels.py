"""What every remote channel (Slack, email links, the web dashboard) does the same way.

* ``ApproverDirectory``: who may approve, and how each channel knows them: a Slack user id, an
  email address, a name to sign in to the dashboard with. Anyone else is refused by the channel
  before anything is decided.
* ``requester_of`` and ``check_not_requester``: who asked for a thread's task, who may not
  approve its actions. Names are compared by ``hitl_kit.identity.same_person`` (``RITA``,
  ``ＲＩＴＡ`` and ``ritа`` with a Cyrillic ``а`` are ``rita``); a requester name that
  ``check_name`` refuses cannot be compared, so nothing is decided on it (fail closed).
* ``decide``: one person's answer, from one channel, to requests as that person saw them
  (``item_ref``: thread, interrupt, fingerprint). A request decided elsewhere is refused naming
  who decided, how and where; a changed one is refused; otherwise the answer goes through
  ``ApprovalInbox.resolve``, so through ``agent.resume``, with the channel recorded.

    >>> directory = ApproverDirectory([Person("ana", email="ana@example.com",
    ...                                       slack_user_id="U0ANA")])
    >>> directory.by_slack_user("U0ANA").name, directory.by_slack_user("U0EVE")
    ('ana', None)
    >>> directory.find("\\u0430na").name  # a Cyrillic а: the same person
    'ana'

Limits: who is the same person is ``hitl_kit.identity``'s rule, with its limits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hitl_kit.contract import ApprovalError, Pending
from hitl_kit.identity import NameRefused, check_name, check_new_person, one_of, same_person
from hitl_kit.inbox import ApprovalInbox, Resolution
from hitl_kit.ledger import Claim
from hitl_kit.vocabulary import Channel, Kind

SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
EMAIL_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")
MAX_REF_CHARS = 1000


@dataclass(frozen=True)
class Person:
    """Someone who may approve: the name their decisions carry, and how channels know them."""

    name: str
    email: str | None = None
    slack_user_id: str | None = None


class ApproverDirectory:
    """The people who may approve through the channels. Names are checked like any approver's
    (``check_name``), may not be the kit's own (``system``, ``auto``), and may not be the same
    person as another's (``same_person``: no look-alike spellings); emails and Slack user ids are
    unique too."""

    def __init__(self, people: Iterable[Person]):
        self.people: list[Person] = []
        for person in people:
            self._add(person)
        if not self.people:
            raise ValueError("an approver directory needs at least one person")

    def _add(self, person: Person) -> None:
        if not isinstance(person, Person):
            raise TypeError(f"list Person(...) entries, not {person!r}")
        name = check_new_person(person.name, self.names)
        if person.email is not None:
            if not (isinstance(person.email, str) and EMAIL_ADDRESS.fullmatch(person.email)):
                raise ValueError(f"{name}: {person.email!r} is not an email address")
            if self.by_email(person.email) is not None:
                raise ValueError(f"{person.email!r} belongs to two people")
        if person.slack_user_id is not None:
            if not (isinstance(person.slack_user_id, str)
                    and SLACK_USER_ID.fullmatch(person.slack_user_id)):
                raise ValueError(f"{name}: {person.slack_user_id!r} is not a Slack user id "
                                 "(like U024BE7LH)")
            if self.by_slack_user(person.slack_user_id) is not None:
                raise ValueError(f"Slack user {person.slack_user_id} belongs to two people")
        self.people.append(Person(name, person.email, person.slack_user_id))

    def __iter__(self):
        return iter(self.people)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.people]

    def find(self, name: str | None) -> Person | None:
        """The person this name is (``same_person``), or None: nobody, or more than one."""
        try:
            return self.require(name)
        except ApprovalError:
            return None

    def by_email(self, address: str | None) -> Person | None:
        if not isinstance(address, str):
            return None
        return next((p for p in self.people if p.email is not None
                     and p.email.casefold() == address.strip().casefold()), None)

    def by_slack_user(self, user_id: str | None) -> Person | None:
        return next((p for p in self.people if user_id and p.slack_user_id == user_id), None)

    def require(self, name: str | None) -> Person:
        """The person this name is, or ApprovalError: nobody here, or more than one."""
        try:
            found = one_of(name, self.names)
        except NameRefused as exc:
            raise ApprovalError(str(exc)) from None
        if found is None:
            raise ApprovalError(f"{name!r} is not an allowed approver; the approvers are "
                                f"{', '.join(self.names)}")
        return next(p for p in self.people if p.name == found)


# -- who asked ------------------------------------------------------------------------------------

def requester_of(inbox: ApprovalInbox, thread_id: str, pending: Pending | None = None
                 ) -> str | None:
    """Who asked for the thread's task (``requested_by`` when it was started), or None."""
    if pending is not None and pending.request.requested_by:
        return pending.request.requested_by
    state = inbox.agent.graph.get_state({"configurable": {"thread_id": thread_id}})
    return state.values.get("requested_by")


def check_not_requester(approver: str, requester: str | None) -> None:
    """ApprovalError when ``approver`` asked for the request (``same_person``), or when the
    requester's name cannot be compared (``check_name`` refuses it: fail closed)."""
    if requester is None:
        return
    try:
        requester = check_name(requester, "requester")
    except NameRefused as exc:
        raise ApprovalError(f"{exc}; it cannot be told apart from an approver's name, so "
                            "nothing is decided through this channel") from None
    if same_person(approver, requester):
        raise ApprovalError(f"{approver} asked for this task and may not approve its actions; "
                            "someone else must decide it")


# -- requests as a person saw them ----------------------------------------------------------------

def item_ref(item: Pending) -> str:
    """The request as shown: thread, interrupt and fingerprint, as text for a form or a button."""
    return json.dumps([item.thread_id, item.interrupt_id, item.fingerprint],
                      separators=(",", ":"), ensure_ascii=False)


def item_anchor(item: Pending) -> str:
    """A short, stable HTML id for the request as shown (the dashboard's row anchor)."""
    return "r-" + hashlib.sha256(item_ref(item).encode("utf-8")).hexdigest()[:16]


def parse_ref(text: object) -> tuple[str, str, str]:
    """``item_ref``'s text back as (thread, interrupt, fingerprint), or ApprovalError."""
    try:
        value = json.loads(text) if isinstance(text, str) and len(text) <= MAX_REF_CHARS else None
    except ValueError:
        value = None
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, str) and v for v in value)):
        raise ApprovalError("that is not a reference to a request; reload the page or message")
    return value[0], value[1], value[2]


@dataclass(frozen=True)
class Answer:
    """What became of one person's answer to one request from a channel."""

    ok: bool
    message: str
    thread_id: str
    interrupt_id: str
    item: Pending | None = None
    resolution: Resolution | None = None
    decided_by: Claim | None = None  # the decision that won, when it was not this one


def decide(inbox: ApprovalInbox, refs: Sequence[str | tuple[str, str, str]], kind: str,
           approver: str, reason: str, channel: Channel) -> list[Answer]:
    """Answer each request ``kind`` ("approve" or "reject") as ``approver`` from ``channel``;
    one Answer per ref, in order. Each is refused on its own (decided elsewhere, changed, the
    approver asked for it); the others go ahead."""
    if kind not in (Kind.APPROVE, Kind.REJECT):
        raise ApprovalError(f"a channel answers approve or reject, not {kind!r}")
    answers: list[Answer | None] = []
    ready: list[tuple[int, Pending]] = []
    for ref in refs:
        thread_id, interrupt_id, fingerprint = ref if isinstance(ref, tuple) else parse_ref(ref)
        current = inbox.get(thread_id, interrupt_id)
        refused = _why_not(inbox, current, thread_id, interrupt_id, fingerprint, approver)
        if refused is not None:
            answers.append(refused)
            continue
        ready.append((len(answers), current))
        answers.append(None)
    if ready:
        decision = {"kind": str(kind), "approver": approver, "reason": reason}
        resolutions = inbox.resolve([(item, decision) for _, item in ready], channel=channel)
        for (at, item), resolution in zip(ready, resolutions, strict=True):
            claim = None if resolution.resumed else inbox.agent.ledger.claims.winner(
                item.thread_id, item.interrupt_id, item.fingerprint)
            answers[at] = Answer(resolution.resumed, resolution.message, item.thread_id,
                                 item.interrupt_id, item, resolution, claim)
    return [a for a in answers if a is not None]


def _why_not(inbox, current, thread_id, interrupt_id, fingerprint, approver) -> Answer | None:
    if current is None or current.fingerprint != fingerprint:
        claim = inbox.agent.ledger.claims.winner(thread_id, interrupt_id, fingerprint)
        if claim is not None:
            message = f"already decided by {claim.describe()}; nothing more was applied"
        elif current is None and not inbox.agent.ledger.index.listed(thread_id):
            message = "no longer pending: its thread finished or is gone; nothing was applied"
        else:  # the same request with a new fingerprint, or the thread asking again
            message = ("changed since you saw it (its arguments or what it touches); look at "
                       "it again, it is still pending. Nothing was applied")
        return Answer(False, message, thread_id, interrupt_id, current, decided_by=claim)
    return None  # who may decide it is judged by the agent, and a refusal is audited there
