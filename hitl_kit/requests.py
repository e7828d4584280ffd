"""What an approver is shown, and what an approver may answer.

* ``approval_payload``: the request as the approver sees it (goal, action, arguments, what it
  would touch, what each answer does), with a ``fingerprint`` of everything that decides what
  runs: tool, arguments, call id, revision, and the state of the record it would touch.
* ``parse_decision``: a caller's answer checked before anything resumes. Unknown keys, a missing
  or reserved approver, an over-long reason, or arguments on anything but an edit are refused
  with a message saying what to send instead.
* ``validate_args``: arguments checked against the tool's schema, unknown keys refused (a model
  that adds ``dry_run=True`` must not see it silently dropped while the real call runs).

    >>> parse_decision({"kind": "approve", "approver": "Ana"}).kind
    <Kind.APPROVE: 'approve'>
    >>> parse_decision({"kind": "approve", "approver": "ana", "args": {"customer_id": 4}})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hitl_kit.requests.ApprovalError: 'args' belongs to an 'edit' decision: ...

Limits: names are compared after NFKC normalisation and case folding (``same_person``), which
catches look-alike spellings made of compatibility characters, not every homoglyph (a Cyrillic
"а" is a different letter to Unicode). Names holding invisible or bidi control characters are
refused outright.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from hitl_kit.vocabulary import (
    PERSON_KINDS,
    RISK_BY_CLASS,
    SYSTEM_KINDS,
    UNCLASSIFIED,
    Approver,
    Kind,
)

DECISION_KEYS = frozenset({"kind", "approver", "reason", "fingerprint", "args"})
MAX_NAME_CHARS = 64
MAX_REASON_CHARS = 2_000
REFRESH = "refresh"  # the kit's own resume value: "show this request again, it changed"


class ApprovalError(ValueError):
    """A call the kit refuses: unknown thread, nothing pending, or a malformed decision.
    Nothing was applied."""


# -- names ----------------------------------------------------------------------------------------

def _hidden_characters(text: str) -> list[str]:
    """Control, format (zero-width, bidi) and unassigned characters: invisible or misleading."""
    return [f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cn", "Co",
                                                                            "Cs", "Zl", "Zp")]


def normalise_name(name: str) -> str:
    """The comparable form of a person's name: NFKC, case folded, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def same_person(a: str | None, b: str | None) -> bool:
    """True when two names are one person once normalised (``Rita``, ``ＲＩＴＡ``, ``rita``)."""
    return a is not None and b is not None and normalise_name(a) == normalise_name(b)


def check_name(name: Any, role: str = "approver") -> str:
    """A person's name, stripped, or ApprovalError saying what is wrong with it."""
    if not isinstance(name, str) or not name.strip():
        raise ApprovalError(f"a decision must name its {role} (a non-empty '{role}')")
    name = name.strip()
    hidden = _hidden_characters(name)
    if hidden:
        raise ApprovalError(f"{role} name {name!r} holds invisible or control characters "
                            f"({', '.join(hidden)}); type the name plainly")
    if len(name) > MAX_NAME_CHARS:
        raise ApprovalError(f"{role} name is {len(name)} characters; at most {MAX_NAME_CHARS}")
    return name


def is_reserved(name: str) -> bool:
    """True for the kit's own approver names (``system``, ``auto``), however they are spelt."""
    return normalise_name(name) in {normalise_name(a) for a in Approver}


# -- decisions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """An answer to one pending approval: a person's, or the system's when time ran out.

    ``fingerprint`` binds it to the request it was made on; ``args`` are an edit's new
    arguments. ``channel``, ``role`` and ``approvals`` are filled in by the agent, never by the
    caller.
    """

    kind: Kind
    approver: str
    reason: str = ""
    args: dict | None = None
    fingerprint: str | None = None
    channel: str | None = None
    role: str | None = None
    approvals: tuple = ()  # under a two-person rule: each approval that made it, in order

    def as_dict(self) -> dict:
        """The decision as a caller sends it (the keys ``parse_decision`` accepts)."""
        return {k: v for k, v in self.as_resume_value().items()
                if k in DECISION_KEYS and v is not None and v != ""} | {"reason": self.reason}

    def as_resume_value(self) -> dict:
        return {"kind": str(self.kind), "approver": self.approver, "reason": self.reason,
                "args": self.args, "fingerprint": self.fingerprint, "channel": self.channel,
                "role": self.role, "approvals": list(self.approvals)}


def parse_decision(value: Any, tool=None, *, system: bool = False) -> Decision:
    """A ``Decision`` from a dict (or a Decision), or ``ApprovalError`` saying what is wrong.

    With ``tool`` given, an edit's arguments are validated against the tool's schema. A person
    answers approve / reject / edit under their own name; ``system=True`` is for the kit's
    timers, which answer timeout / proceed as approver "system".
    """
    if isinstance(value, Decision):
        value = value.as_dict()
    if not isinstance(value, dict):
        raise ApprovalError(
            f"a decision is a dict like {{'kind': 'approve', 'approver': 'ana'}}, not {value!r}")
    unknown = sorted(map(str, set(value) - DECISION_KEYS))
    if unknown:
        raise ApprovalError(f"a decision has no key(s) {unknown}; it may hold only "
                            f"{sorted(DECISION_KEYS)}")
    raw_kind = value.get("kind")
    kinds = SYSTEM_KINDS if system else PERSON_KINDS
    if raw_kind not in [str(k) for k in kinds]:
        if not system and raw_kind in [str(k) for k in SYSTEM_KINDS]:
            raise ApprovalError(f"decision kind {raw_kind!r} is the system's own, for timeouts; "
                                f"a person answers with one of {[str(k) for k in PERSON_KINDS]}")
        raise ApprovalError(f"decision kind {raw_kind!r} is unknown; use one of "
                            f"{[str(k) for k in kinds]}")
    kind = Kind(raw_kind)
    approver = check_name(value.get("approver"))
    if system and approver != Approver.SYSTEM:
        raise ApprovalError(f"the system's decisions are made as 'system', not {approver!r}")
    if not system and is_reserved(approver):
        raise ApprovalError(f"approver {approver!r} is reserved ('system' applies timeouts, "
                            "'auto' runs what needs no human); name the person deciding")
    reason = value.get("reason") or ""
    if not isinstance(reason, str):
        raise ApprovalError("'reason' must be text")
    if len(reason) > MAX_REASON_CHARS:
        raise ApprovalError(f"'reason' is {len(reason):,} characters; keep it under "
                            f"{MAX_REASON_CHARS:,}")
    fingerprint = value.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
        raise ApprovalError("'fingerprint' must be the text of a pending request's fingerprint")
    args = value.get("args")
    if kind == Kind.EDIT:
        if not isinstance(args, dict):
            raise ApprovalError("an 'edit' decision needs 'args': the tool's new arguments")
        if tool is not None:
            args = validate_args(tool, args)
    elif args is not None:
        raise ApprovalError("'args' belongs to an 'edit' decision: an approval runs the "
                            "arguments shown; to change them answer {'kind': 'edit', "
                            "'args': {...}}")
    return Decision(kind, approver, reason, args, fingerprint)


def model_arg_names(tool) -> set[str]:
    """The arguments a model (or an editing person) may give the tool: injected ones, such as
    the idempotency key the kit passes itself, are not among them."""
    return set(tool.args)


def validate_args(tool, args: Any) -> dict:
    """The arguments checked strictly against the tool's schema (defaults filled in), or
    ``ApprovalError`` naming every problem."""
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
        # Strict: a number where a number is due, not "3", 3.0 or True turned into one. What
        # runs is what the card shows either way; strict makes it what the model or the
        # editor wrote, too.
        checked = schema.model_validate(args, strict=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                             for e in exc.errors())
        raise ApprovalError(f"arguments for {tool.name} are invalid: {problems}") from None
    return checked.model_dump()


# -- what the approver is shown ------------------------------------------------------------------

def _digest(value: Any, size: int = 16) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:size]


def request_fingerprint(call: dict, revision: int, target: Any = None) -> str:
    """A short hash of everything that decides what runs: the tool, its arguments, the call,
    how many answers it has had (an edited call never shares its old fingerprint), and the
    state of the record it would touch (an approval of "delete trial customer 3" is not an
    approval of deleting customer 3 once it became an enterprise account)."""
    return _digest({"tool": call["name"], "args": call["args"], "call": call["id"],
                    "revision": revision, "target": target})


def target_digest(target: Any) -> str:
    """A hash of what a call would touch, compared again just before it runs."""
    return _digest(target)


def approval_payload(task: str, call: dict, ruling, tool, target: Any, *, revision: int = 0,
                     problem: str | None = None) -> dict:
    """What an approver needs: the goal, the action, what it touches, what each answer does.
    ``problem`` says why the call cannot be approved as it stands (invalid arguments, no such
    tool): the approver may edit or reject it, not approve it."""
    klass = ruling.reversibility.value if ruling.reversibility else UNCLASSIFIED
    args_text = ", ".join(f"{k}={v!r}" for k, v in call["args"].items()) \
        if isinstance(call["args"], dict) else repr(call["args"])
    payload = {
        "task": task,
        "tool": call["name"],
        "args": call["args"],
        "tool_call_id": call["id"],
        "description": getattr(tool, "description", "no such tool: it cannot run"),
        "target": target,
        "reversibility": klass,
        "policy": str(ruling.policy),
        "risk": str(RISK_BY_CLASS[ruling.reversibility]),
        "why_gated": ruling.reason,
        "on_approve": (f"{call['name']}({args_text}) runs now." if problem is None else
                       "It cannot be approved as it stands: edit the arguments or reject it."),
        "on_reject": "Nothing runs. The agent is told your reason and may propose something else.",
        "revision": revision,
        "fingerprint": request_fingerprint(call, revision, target),
    }
    if problem is not None:
        payload["problem"] = problem
    return payload
