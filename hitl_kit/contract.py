"""The contract every approval follows: one request, one decision, one judge.

* ``ApprovalRequest``: what an approver is shown (goal, action, arguments, what it would touch,
  what each answer does, who may answer) and its ``fingerprint``, a hash of every field but the
  last refusal, so a decision can be bound to exactly what was shown.
* ``Decision``: an answer. People answer approve / reject / edit; the kit's timers answer
  timeout / proceed. The same object travels from every channel to the ledger, the graph,
  recovery and the audit trail.
* ``Pending``: one request waiting for a decision, wherever it is listed (agent, inbox, cards,
  Slack, email, dashboard).
* ``judge``: the one validator. Every decision, whatever path it came by (``agent.resume``, a
  raw ``Command(resume=...)``, the inbox, a channel, recovery, a timer), is judged by it against
  the request it answers. It has no side effects.

    >>> request = ApprovalRequest(task="tidy up", tool="delete_customer",
    ...     args={"customer_id": 3}, tool_call_id="c1", reversibility="irreversible_high",
    ...     policy="hard_gate", why_gated="irreversible", proposed_at="2026-12-06T10:00:00+00:00")
    >>> decision = judge({"kind": "approve", "approver": "Ana"}, request)
    >>> decision.fingerprint == request.fingerprint, decision.channel
    (True, <Channel.API: 'api'>)
    >>> judge({"kind": "proceed", "approver": "system", "channel": "timer"}, request,
    ...       by_kit=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hitl_kit.contract.ApprovalError: only a soft gate proceeds without a person; ...

Limits: ``judge`` checks a decision against the request as given; whether the record the call
would touch still looks as it did is read from the world, so that comparison is a separate,
explicit step (``ApprovalAgent.resume`` before deciding, ``graph.execute`` before running).
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hitl_kit import identity
from hitl_kit.vocabulary import (
    PERSON_CHANNELS,
    RISK_BY_CLASS,
    UNCLASSIFIED,
    Approver,
    Channel,
    Kind,
    Policy,
    Reversibility,
    Risk,
)

MAX_REASON_CHARS = 2_000
FINGERPRINT_CHARS = 24  # hex; never 32, which LangGraph reads as an interrupt id in a resume map


class ApprovalError(ValueError):
    """A decision or call the kit refuses, saying what was wrong and what to do. Nothing was
    applied."""


class NotAllowed(ApprovalError):
    """This person may not make this decision (their role, or they asked for the action)."""


_RECORD = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, defer_build=True)


class ApprovalRequest(BaseModel):
    """What an approver is shown for one proposed call, and its fingerprint."""

    model_config = _RECORD

    task: str
    """The goal the agent was given."""
    tool: str
    """The tool the agent wants to run."""
    args: Any
    """Its arguments as they would run (the model's text, when they could not be read)."""
    tool_call_id: str
    """The call's id, unique in its thread."""
    description: str = "no such tool: it cannot run"
    """What the tool does."""
    target: Any = None
    """The record the call would touch, as it was when the request was made."""
    reversibility: str = UNCLASSIFIED
    """The call's class (raised by impact rules or what the agent had read)."""
    policy: Policy = Policy.HARD_GATE
    """What must happen before it runs."""
    risk: Risk | None = None
    """The card's badge; follows from the class."""
    why_gated: str = ""
    """Why a person is asked."""
    raised_by: tuple[str, ...] = ()
    """Each thing that raised the class above the tool's own."""
    on_approve: str = ""
    """What an approval does."""
    on_reject: str = "Nothing runs. The agent is told your reason and may propose something else."
    """What a rejection does."""
    revision: int = 0
    """How many times this call was shown before (an edit or a change shows it again)."""
    proposed_at: str
    """When the model proposed the call (ISO 8601, UTC)."""
    expires_at: str | None = None
    """After this an approval no longer runs the call."""
    provenance: tuple[dict, ...] = ()
    """What the agent had read before proposing it, suspicious lines quoted."""
    requested_by: str | None = None
    """Who asked for the task: they may not approve its actions."""
    may_decide: tuple[str, ...] | None = None
    """The roles that may decide it (None: any approver)."""
    approvals_needed: int = 1
    """How many different people must approve it."""
    problem: str | None = None
    """Why it cannot be approved as it stands (edit or reject it)."""
    edited_by: str | None = None
    """Who edited the arguments, when a person did."""
    error: str | None = None
    """Why the previous answer was refused, or why it is shown again."""
    fingerprint: str = ""
    """A hash of every field above but ``error``: what a decision binds itself to."""

    @model_validator(mode="after")
    def _derived(self) -> ApprovalRequest:
        klass = None if self.reversibility == UNCLASSIFIED else Reversibility(self.reversibility)
        if self.risk is None:
            object.__setattr__(self, "risk", RISK_BY_CLASS[klass])
        if not self.on_approve:
            object.__setattr__(self, "on_approve", _on_approve(self.tool, self.args,
                                                               self.problem))
        digest = _digest(self.model_dump(mode="json", exclude={"fingerprint", "error"}))
        if self.fingerprint and self.fingerprint != digest:
            raise ValueError("the request's fingerprint does not match its contents: it was "
                             "changed after it was made")
        object.__setattr__(self, "fingerprint", digest)
        return self

    def as_json(self) -> dict:
        """The request as plain JSON data (what the interrupt and the ledger keep)."""
        return self.model_dump(mode="json")

    def changed(self, **fields) -> ApprovalRequest:
        """The request with these fields changed and its fingerprint made anew."""
        data = self.model_dump() | fields
        data.pop("fingerprint")
        for derived in ("risk", "on_approve"):
            if derived not in fields:
                data.pop(derived)
        return ApprovalRequest(**data)


def _on_approve(tool: str, args: Any, problem: str | None) -> str:
    if problem is not None:
        return "It cannot be approved as it stands: edit the arguments or reject it."
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items()) if isinstance(args, dict) \
        else repr(args)
    return f"{tool}({shown}) runs now."


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def target_digest(target: Any) -> str:
    """A hash of what a call would touch, to compare it with what was approved."""
    return _digest(target)


class Approval(BaseModel):
    """One person's approval of a request that needs several (the two-person rule)."""

    model_config = _RECORD

    approver: str
    """Who approved."""
    role: str | None = None
    """The role they approved under."""
    channel: Channel = Channel.API
    """Where the approval came from."""
    approved_at: str
    """When (ISO 8601, UTC)."""


class Decision(BaseModel):
    """One answer to one pending request.

    A caller gives ``kind``, ``approver``, and optionally ``reason``, ``fingerprint`` (to bind
    the answer to what they saw) and, for an edit, ``args``. ``role`` and ``approvals`` are the
    kit's to fill in; ``channel`` a person's channel, never ``timer`` or ``policy``.
    """

    model_config = _RECORD

    kind: Kind
    """approve, reject or edit (a person); timeout or proceed (the kit's timers); refresh (the
    kit: show the request again, what it touches changed)."""
    approver: str
    """The person deciding, or ``system`` for the kit."""
    reason: str = Field("", max_length=MAX_REASON_CHARS)
    """Why; a rejection's reason goes to the agent."""
    args: dict | None = None
    """An edit's new arguments (only an edit has them)."""
    fingerprint: str | None = None
    """The fingerprint of the request as the approver saw it."""
    channel: Channel = Channel.API
    """Where the decision came from."""
    role: str | None = None
    """The role the approver decided under (filled in by the kit)."""
    approvals: tuple[Approval, ...] = ()
    """Under the two-person rule: each approval that made this one, in order (the kit's)."""

    @field_validator("approver", mode="before")
    @classmethod
    def _plain_name(cls, name: Any) -> str:
        try:
            return identity.check_name(name)
        except identity.NameRefused as exc:
            raise ValueError(str(exc)) from None

    @field_validator("reason", mode="before")
    @classmethod
    def _text(cls, reason: Any) -> Any:
        return "" if reason is None else reason

    @model_validator(mode="after")
    def _consistent(self) -> Decision:
        by_kit = self.kind.by_system
        if by_kit and self.approver not in set(Approver):
            raise ValueError(f"{self.kind} decisions are the kit's own, made as 'system', "
                             f"not {self.approver!r}")
        if not by_kit and identity.is_reserved(self.approver):
            raise ValueError(f"approver {self.approver!r} is reserved ('system' applies "
                             "timeouts, 'auto' runs what needs no human); name the person "
                             "deciding")
        if (self.kind == Kind.EDIT) != (self.args is not None):
            raise ValueError("an 'edit' decision needs 'args' (the tool's new arguments), and "
                             "only an edit has them: an approval runs the arguments shown")
        return self

    def describe(self) -> str:
        """'ana (rejected: too risky)'."""
        because = f": {self.reason}" if self.reason else ""
        return f"{self.approver} ({self.kind.past}{because})"


class DecisionForm:
    """``Decision`` as ``interrupt(request, response_schema=DecisionForm)`` takes it: a resume is
    validated into a ``Decision`` exactly as by the model (a bad one raises pydantic's
    ``ValidationError`` and the interrupt stays pending), and the JSON schema the interrupt
    carries for a UI is built once. Given ``Decision`` itself, pydantic builds that schema anew
    on every pause: about 1 ms, a fifth of an approve cycle (benchmarks/profiles/).

        >>> from pydantic import TypeAdapter
        >>> form = TypeAdapter(DecisionForm)
        >>> form.validate_python({"kind": "approve", "approver": "ana"}).kind
        <Kind.APPROVE: 'approve'>
        >>> sorted(form.json_schema()["properties"]) == sorted(Decision.model_fields)
        True
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        form = _decision_form()
        # Kept on the class, as pydantic keeps a model's: a later TypeAdapter(DecisionForm)
        # (one per interrupt() call) takes them as built instead of building a validator.
        cls.__pydantic_core_schema__ = form.core_schema
        cls.__pydantic_validator__ = form.validator
        cls.__pydantic_serializer__ = form.serializer
        return form.core_schema


@functools.cache
def _decision_form():
    from typing import Annotated

    from pydantic import PlainValidator, TypeAdapter, WithJsonSchema

    schema = Decision.model_json_schema()
    shown = _inlined(schema, schema.pop("$defs", {}))  # a schema given as is has no $defs
    return TypeAdapter(Annotated[Any, PlainValidator(Decision.model_validate),
                                 WithJsonSchema(shown)])


def _inlined(node: Any, defs: dict) -> Any:
    """A JSON schema with each ``$ref`` to ``defs`` replaced by what it names."""
    if isinstance(node, dict):
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inlined({**defs[node["$ref"].rsplit("/", 1)[1]], **rest}, defs)
        return {k: _inlined(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    return node


def as_decision(value: Any) -> Decision:
    """A caller's decision (a dict or a ``Decision``) checked, or ``ApprovalError`` saying what
    is wrong, one clause per problem. ``role`` and ``approvals`` are the kit's: refused here."""
    if isinstance(value, Decision):
        value = value.model_dump(exclude_defaults=True)
    if not isinstance(value, dict):
        raise ApprovalError(
            f"a decision is a dict like {{'kind': 'approve', 'approver': 'ana'}}, not "
            f"{value!r}"[:300])
    kits = sorted({"role", "approvals"} & set(value))
    if kits:
        raise ApprovalError(f"{', '.join(map(repr, kits))}: not the caller's; the kit fills "
                            "in the role and the approvals")
    try:
        return Decision.model_validate(value)
    except ValidationError as exc:
        raise ApprovalError(_problems(exc, "decision")) from None


def _problems(exc: ValidationError, what: str) -> str:
    said = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"a {what} has no key {where!r}"
        elif error["type"] == "enum" and where == "kind":
            message = (f"decision kind {error['input']!r} is unknown; use one of "
                       "approve, reject, edit")
        elif error["type"] == "string_too_long":
            message = (f"{where!r} is {len(error['input']):,} characters; keep it under "
                       f"{error['ctx']['max_length']:,}")
        elif error["type"] == "missing":
            message = f"{where!r} is missing"
        elif where:
            message = f"{where}: {message}"
        said.append(message)
    return f"this {what} is refused: " + "; ".join(said)


def judge(value: Any, request: ApprovalRequest, *, tool=None, approvers=None,
          by_kit: bool = False) -> Decision:
    """The decision checked against the request it answers, or ``ApprovalError`` (``NotAllowed``
    for who may decide). Returns it bound to the request's fingerprint, with an edit's
    arguments validated against ``tool`` and the approver's role from ``approvers``.

    ``by_kit`` is True only for the kit's own timers; a caller may answer only as a person,
    from a person's channel. A dict is a caller's answer (``as_decision``); a ``Decision`` is
    taken as built (the ledger's, with the role and approvals the kit filled in). Pure:
    nothing is recorded, read or resumed.
    """
    decision = value if isinstance(value, Decision) else as_decision(value)
    kind = decision.kind
    if by_kit != kind.by_system:
        if by_kit:
            raise ApprovalError(f"the kit's timers answer timeout or proceed, not {kind}")
        raise ApprovalError(f"decision kind {str(kind)!r} is the kit's own; a person answers "
                            "approve, reject or edit")
    if by_kit != (decision.channel not in PERSON_CHANNELS):
        raise ApprovalError(f"channel {str(decision.channel)!r} is the kit's own; a person "
                            f"decides through one of {sorted(map(str, PERSON_CHANNELS))}"
                            if not by_kit else "the kit's timers decide through 'timer'")
    if decision.fingerprint is not None and decision.fingerprint != request.fingerprint:
        raise ApprovalError("this decision was made on another version of the request (its "
                            "arguments, what it touches or who may decide changed since it was "
                            "shown); look at it again")
    updates: dict[str, Any] = {"fingerprint": request.fingerprint}
    if kind == Kind.PROCEED and not may_proceed(request):
        raise ApprovalError(f"only a soft gate proceeds without a person; this request is a "
                            f"{request.policy}" + (f" needing {request.approvals_needed} "
                                                   "approvals" if request.approvals_needed > 1
                                                   else "") + (
            f" that cannot run as it stands ({request.problem})" if request.problem else ""))
    if kind == Kind.APPROVE and request.problem is not None:
        raise ApprovalError(f"it cannot be approved as it stands ({request.problem}); edit "
                            "or reject it")
    if kind == Kind.EDIT and tool is not None:
        updates["args"] = validate_args(tool, decision.args)
    if kind in (Kind.APPROVE, Kind.EDIT) and identity.same_person(decision.approver,
                                                                  request.requested_by):
        raise NotAllowed(f"{decision.approver} asked for this task and may not approve its "
                         "actions; someone else must decide it")
    if not by_kit and approvers is not None:
        updates["role"] = approvers.role_for(decision.approver, request)
    if kind == Kind.APPROVE and decision.approvals:
        _check_approvals(decision, request, approvers)
    return decision.model_copy(update=updates)


def may_proceed(request: ApprovalRequest) -> bool:
    """Whether a deadline may let the call run with no person: a soft gate needing one approval
    and nothing wrong with the call. Anything else times out (fail closed)."""
    return (request.policy == Policy.SOFT_GATE and request.approvals_needed <= 1
            and request.problem is None)


def _check_approvals(decision: Decision, request: ApprovalRequest, approvers) -> None:
    """Under the two-person rule: enough approvals, each by a different person allowed to give
    it, the last one the deciding one."""
    people = [a.approver for a in decision.approvals]
    if any(identity.same_person(a, b) for at, a in enumerate(people) for b in people[at + 1:]):
        raise NotAllowed("the same person approved twice; a second, different person must")
    if len(people) < request.approvals_needed:
        raise NotAllowed(f"it needs {request.approvals_needed} approvals from different people, "
                         f"and has {len(people)}")
    if not identity.same_person(people[-1], decision.approver):
        raise ApprovalError("the deciding approval must be the last one recorded")
    for approval in decision.approvals:
        if request.requested_by is not None and identity.same_person(approval.approver,
                                                                     request.requested_by):
            raise NotAllowed(f"{approval.approver} asked for this task and may not approve it")
        if approvers is not None:
            approvers.role_for(approval.approver, request)


def enough_approvals(decision: Decision, request: ApprovalRequest) -> bool:
    """True when an approval may run the call: one person, or all the people it needs."""
    return (decision.kind != Kind.APPROVE or request.approvals_needed <= 1
            or len(decision.approvals) >= request.approvals_needed)


# -- arguments ------------------------------------------------------------------------------------

def model_arg_names(tool) -> set[str]:
    """The arguments a model (or an editing person) may give the tool: injected ones, such as
    the idempotency key the kit passes itself, are not among them."""
    return set(tool.args)


def validate_args(tool, args: Any) -> dict:
    """The arguments checked strictly against the tool's schema (defaults filled in), or
    ``ApprovalError`` naming every problem. Strict: a number where a number is due, not "3",
    3.0 or True turned into one, and no unknown keys (a model that adds ``dry_run=True`` must
    not see it silently dropped while the real call runs)."""
    if not isinstance(args, dict):
        raise ApprovalError(f"arguments for {tool.name} must be a JSON object, not "
                            f"{type(args).__name__}: {args!r}"[:300])
    unknown = sorted(map(str, set(args) - model_arg_names(tool)))
    if unknown:
        raise ApprovalError(f"{tool.name} has no argument(s) {unknown}; its arguments are "
                            f"{sorted(model_arg_names(tool))}")
    schema = tool.tool_call_schema
    if not hasattr(schema, "model_validate"):
        return dict(args)
    try:
        checked = schema.model_validate(args, strict=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                             for e in exc.errors())
        raise ApprovalError(f"arguments for {tool.name} are invalid: {problems}") from None
    return checked.model_dump()


# -- pending --------------------------------------------------------------------------------------

class Pending(BaseModel):
    """One request waiting for a decision: where it waits (thread, interrupt), what it shows,
    since when, and its deadline once one is armed."""

    model_config = _RECORD

    thread_id: str
    """The thread paused on it."""
    interrupt_id: str
    """LangGraph's id of the interrupt that asks it."""
    request: ApprovalRequest
    """What the approver is shown."""
    asked_at: str
    """When it was first asked (ISO 8601, UTC)."""
    deadline_at: float | None = None
    """When its deadline passes (epoch seconds), once a timer was armed."""
    deadline_stage: int = 0
    """0: its first deadline; n: after n escalations."""

    @property
    def fingerprint(self) -> str:
        return self.request.fingerprint

    @property
    def key(self) -> tuple[str, str, str]:
        """(thread, interrupt, fingerprint): the request exactly as shown."""
        return self.thread_id, self.interrupt_id, self.request.fingerprint

    def asked(self) -> datetime:
        return datetime.fromisoformat(self.asked_at)


def key_text(*parts: str) -> str:
    """Several keys as one text that no key can forge: a JSON array, not a joined string
    (a call id holding ':' must not make two threads share a journal or audit key)."""
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)
