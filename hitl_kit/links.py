"""Approval links, the way an email asks: signed, addressed, single-use, expiring.

``ApprovalLinks.issue`` turns one pending approval into an *approve* link and a *reject* link
addressed to one approver. Each link carries a token: the request (thread, interrupt id), the
fingerprint of what was shown, the action, the requester, the approver it was sent to, an expiry
and a nonce, signed by ``itsdangerous`` (HMAC-SHA256, a key derived for this purpose only). The
two links of a request share their nonce, so whichever is used first uses up both.

``ApprovalLinks.resolve`` is the handler. It refuses, with a reason and without running anything:
a malformed token, a signature that does not match (forged, altered, cut short or missing), a
link used on another request's address, an expired link, a link whose approver is the requester
or is no longer allowed, a request no longer pending or changed since the link was made, and a
link already used. "Already used" holds across handler instances and processes: the nonce is
claimed by an INSERT, in a write transaction, into a SQLite table where it is the primary key.
Only then does the answer go through ``hitl_kit.channels.decide`` (and so ``agent.resume``),
as the link's approver, on channel ``link``.

Opening a link must never decide: mail scanners open links on their own. The web app
(``hitl_kit.web``) answers a GET with a confirm page and decides on its POST.

    >>> import secrets
    >>> secret = secrets.token_bytes(32)  # in real use: from a secret store, never the code

Limits: whoever holds a link decides as its approver (a forwarded email forwards the power);
keep ``ttl_s`` short. A token is signed, not encrypted: its fields can be read.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from itsdangerous import BadData, BadSignature, URLSafeSerializer

from hitl_kit.channels import (
    Answer,
    ApproverDirectory,
    check_not_requester,
    decide,
)
from hitl_kit.contract import ApprovalError, Pending
from hitl_kit.identity import NameRefused, check_name
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.secret_strength import require_strong_secret
from hitl_kit.sqlite import connect, transaction
from hitl_kit.vocabulary import Channel, Kind

ACTIONS = ("approve", "reject")
TOKEN_FIELDS = {"v": int, "thread_id": str, "interrupt_id": str, "fingerprint": str,
                "action": str, "requester": str, "approver": str, "expires": int, "nonce": str}
TOKEN_VERSION = 2
TOKEN_SALT = "hitl-kit approval link"
MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 4096
DEFAULT_TTL_S = 15 * 60
SECRET_HINT = ("Generate one with secrets.token_bytes(32) and pass it in from outside the code "
               "(a secret store or an environment variable)")

# reason -> HTTP status for the web app
REFUSALS = {
    "malformed": 400, "bad_signature": 403, "other_request": 403, "expired": 410,
    "self_approval": 403, "not_allowed": 403, "not_pending": 409, "changed": 409, "used": 409,
    "refused": 409,
}

CLAIMS_SQL = """
CREATE TABLE IF NOT EXISTS link_claims (
    nonce      TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    approver   TEXT NOT NULL,
    claimed_at TEXT NOT NULL
) STRICT
"""


def request_id(thread_id: str, interrupt_id: str) -> str:
    """The id a link's URL names: thread (base64url, so any thread id is one path segment) and
    interrupt."""
    encoded = base64.urlsafe_b64encode(thread_id.encode("utf-8")).rstrip(b"=").decode("ascii")
    return f"{encoded}.{interrupt_id}"


def link_signer(secret: bytes) -> URLSafeSerializer:
    """The serializer that signs and checks link tokens (HMAC-SHA256, key derived per salt)."""
    return URLSafeSerializer(secret, salt=TOKEN_SALT, signer_kwargs={
        "key_derivation": "hmac", "digest_method": hashlib.sha256})


@dataclass(frozen=True)
class LinkResult:
    """The handler's answer: ``ok`` when the link is valid (``inspect``) or its decision went
    through (``resolve``); otherwise ``reason`` says why not."""

    ok: bool
    reason: str  # "valid" or "executed" when ok, else a key of REFUSALS
    message: str
    action: str | None = None
    approver: str | None = None
    requester: str | None = None
    item: Pending | None = None
    answer: Answer | None = None
    nonce: str | None = None

    @property
    def http_status(self) -> int:
        return 200 if self.ok else REFUSALS[self.reason]

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'REFUSED'} ({self.reason}): {self.message}"


class _Refused(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class ApprovalLinks:
    """Issue and resolve approval links for the approvals in ``inbox``.

    ``claims_path`` is the SQLite file where used nonces are claimed; every handler that shares
    it (another instance, another process) sees a link as used once any of them accepted it.
    With a ``directory``, links go only to its people, and a link whose approver has left it
    stops working.
    """

    def __init__(self, inbox: ApprovalInbox, secret: bytes, claims_path: str, *,
                 directory: ApproverDirectory | None = None,
                 base_url: str = "http://127.0.0.1/links", ttl_s: int = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time):
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the link signing secret must be at least {MIN_SECRET_BYTES} "
                             f"random bytes. {SECRET_HINT}")
        require_strong_secret(secret, "the link signing secret", SECRET_HINT)
        if not isinstance(ttl_s, int) or isinstance(ttl_s, bool) or ttl_s <= 0:
            raise ValueError("ttl_s is a positive whole number of seconds")
        self.inbox = inbox
        self.directory = directory
        self._signer = link_signer(secret)
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.clock = clock
        self._claims = connect(claims_path)
        self._claims_lock = threading.Lock()
        with transaction(self._claims, self._claims_lock):
            self._claims.execute(CLAIMS_SQL)

    # -- issuing ----------------------------------------------------------------------------------
    def issue(self, item: Pending, *, requester: str, approver: str) -> dict[str, str]:
        """``{"approve": url, "reject": url}`` for one pending approval asked for by
        ``requester``, sent to ``approver`` (who decides as that name)."""
        if not isinstance(item, Pending):
            raise TypeError(f"issue links for a Pending request, not {type(item).__name__}")
        try:
            requester = check_name(requester, "requester")
            approver = check_name(approver, "approver")
        except NameRefused as exc:
            raise ApprovalError(str(exc)) from None
        if self.directory is not None:
            approver = self.directory.require(approver).name
        check_not_requester(approver, requester)
        expires = int(self.clock()) + self.ttl_s
        deadline = self.inbox.deadline_of(item)
        if deadline is not None:  # a link must not outlive the approval's own deadline
            expires = min(expires, int(deadline.timestamp()))
        fields = {"v": TOKEN_VERSION, "thread_id": item.thread_id,
                  "interrupt_id": item.interrupt_id, "fingerprint": item.fingerprint,
                  "requester": requester, "approver": approver, "expires": expires,
                  "nonce": secrets.token_hex(16)}
        url = f"{self.base_url}/{request_id(item.thread_id, item.interrupt_id)}?token="
        return {action: url + self.sign({**fields, "action": action}) for action in ACTIONS}

    def sign(self, fields: dict) -> str:
        """A token for ``fields``: itsdangerous' ``payload.signature``, URL-safe."""
        return self._signer.dumps(fields)

    # -- resolving --------------------------------------------------------------------------------
    def inspect(self, token: str, for_request: str | None = None) -> LinkResult:
        """Check a link without using it; when valid, ``item`` is the request to show."""
        try:
            fields, item = self._checked(token, for_request)
        except _Refused as refused:
            return LinkResult(False, refused.reason, refused.message)
        return LinkResult(True, "valid", f"a valid link to {fields['action']} {item.request.tool}",
                          fields["action"], fields["approver"], fields["requester"], item,
                          nonce=fields["nonce"])

    def resolve(self, token: str, reason: str = "", for_request: str | None = None
                ) -> LinkResult:
        """Use a link: its approver decides its action. ``for_request`` is the request id the
        URL names, when there is a URL."""
        try:
            fields, item = self._checked(token, for_request)
            self._claim(fields)
        except _Refused as refused:
            return LinkResult(False, refused.reason, refused.message)
        action, approver = fields["action"], fields["approver"]
        reason = reason or f"{Kind(action).past} via approval link"
        try:
            (answer,) = decide(self.inbox, [(item.thread_id, item.interrupt_id,
                                             item.fingerprint)], action, approver, reason,
                               Channel.LINK)
        except ApprovalError as exc:  # e.g. an over-long reason: refused before anything ran
            return LinkResult(False, "refused", f"link used up, nothing ran: {exc}", action,
                              approver, fields["requester"], item, nonce=fields["nonce"])
        return LinkResult(answer.ok, "executed" if answer.ok else "refused",
                          answer.message if answer.ok else f"link used up: {answer.message}",
                          action, approver, fields["requester"], item, answer, fields["nonce"])

    def resolve_url(self, url: str, reason: str = "") -> LinkResult:
        """``resolve`` for a whole link, as a handler receives it: its address names the
        request, its query carries the token."""
        parts = urlsplit(url)
        token = (parse_qs(parts.query).get("token") or [""])[0]
        return self.resolve(token, reason, for_request=parts.path.rsplit("/", 1)[-1])

    def _checked(self, token, for_request) -> tuple[dict, Pending]:
        fields = self._verified(token)
        asked_for = request_id(fields["thread_id"], fields["interrupt_id"])
        if for_request is not None and for_request != asked_for:
            raise _Refused("other_request", "this link belongs to another request")
        if self.clock() >= fields["expires"]:
            when = datetime.fromtimestamp(fields["expires"], UTC).isoformat(timespec="seconds")
            raise _Refused("expired", f"this link expired at {when}; ask for a new one")
        try:
            check_not_requester(fields["approver"], fields["requester"])
        except ApprovalError as exc:
            raise _Refused("self_approval", str(exc)) from None
        if self.directory is not None and self.directory.find(fields["approver"]) is None:
            raise _Refused("not_allowed", f"{fields['approver']} is no longer an allowed "
                           "approver; nothing was decided")
        used = self._claimed(fields["nonce"])
        if used is not None:
            raise _Refused("used", _used_message(used))
        item = self.inbox.get(fields["thread_id"], fields["interrupt_id"])
        if item is None:
            claim = self.inbox.agent.ledger.claims.winner(fields["thread_id"],
                                                          fields["interrupt_id"])
            who = (f": it was decided by {claim.decision.approver} via "
                   f"{claim.decision.channel}") if claim else ""
            raise _Refused("not_pending", f"this request is no longer pending{who}")
        if item.fingerprint != fields["fingerprint"]:
            raise _Refused("changed", "the action, its arguments or what it touches changed "
                           "since this link was made; it cannot approve what you did not see")
        return fields, item

    def _verified(self, token) -> dict:
        if not (isinstance(token, str) and token.isascii() and "." in token
                and len(token) <= MAX_TOKEN_CHARS):
            raise _Refused("malformed", "this is not an approval link token")
        try:
            fields = self._signer.loads(token)
        except BadSignature:
            raise _Refused("bad_signature", "the signature does not match: this link was forged, "
                           "altered or cut short") from None
        except BadData:
            raise _Refused("malformed", "the signed token cannot be read") from None
        shape_ok = (isinstance(fields, dict) and set(fields) == set(TOKEN_FIELDS)
                    and all(type(fields[k]) is t for k, t in TOKEN_FIELDS.items()))
        if not shape_ok or fields["v"] != TOKEN_VERSION or fields["action"] not in ACTIONS:
            raise _Refused("malformed", "the signed token does not have the expected fields")
        return fields

    def _claimed(self, nonce: str) -> tuple[str, str, str] | None:
        with self._claims_lock:
            return self._claims.execute(
                "SELECT action, approver, claimed_at FROM link_claims WHERE nonce = ?",
                (nonce,)).fetchone()

    def _claim(self, fields: dict) -> None:
        """Use up the nonce: the first INSERT wins, in every process sharing the file."""
        try:
            with transaction(self._claims, self._claims_lock):
                self._claims.execute(
                    "INSERT INTO link_claims VALUES (?, ?, ?, ?, ?)",
                    (fields["nonce"], request_id(fields["thread_id"], fields["interrupt_id"]),
                     fields["action"], fields["approver"], datetime.now(UTC).isoformat()))
        except sqlite3.IntegrityError:
            used = self._claimed(fields["nonce"])
            raise _Refused("used", _used_message(used) if used else "this link was already "
                           "used") from None

    def close(self) -> None:
        self._claims.close()


def _used_message(claim: tuple[str, str, str]) -> str:
    action, approver, claimed_at = claim
    return (f"this request's links were already used: {Kind(action).past} by {approver} at "
            f"{claimed_at}")
