"""Approval links, the way an email or a chat bot asks: signed, single-use, expiring.

``ApprovalLinks.issue`` turns one pending approval into an *approve* link and a *reject* link.
Each link carries a token: the request it is for (thread id, interrupt id), a fingerprint of the
tool and arguments shown, the action, who asked, an expiry and a nonce, signed with HMAC-SHA256.
The two links of a request share their nonce, so whichever is used first uses up both.

``ApprovalLinks.resolve`` is the handler. It refuses, with a reason and without running anything:
a malformed token, a signature that does not match (forged, or a field altered), a link for
another request, an expired link, an approver who is the requester, a request no longer pending or
changed since the link was made, and a link already used. "Already used" holds across handler
instances and processes: the nonce is claimed by an INSERT into a SQLite table where it is UNIQUE.
Only then does the answer go through the inbox (and so through ``agent.resume``).

``LinkServer`` serves the same handler over HTTP on 127.0.0.1 (stdlib only). Opening a link
(GET) shows the request and a confirm button; only the POST acts, because mail scanners and chat
previews open links on their own.

The secret key is always passed in; generate one with ``secrets.token_bytes(32)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from hitl_kit.audit import canonical_json
from hitl_kit.inbox import ApprovalInbox, InboxItem, Resolution
from hitl_kit.render import payload_table_html
from hitl_kit.vocabulary import Channel, Kind

ACTIONS = ("approve", "reject")
TOKEN_FIELDS = {"v": int, "thread_id": str, "interrupt_id": str, "fingerprint": str,
                "action": str, "requester": str, "expires": int, "nonce": str}
TOKEN_VERSION = 1
MIN_SECRET_BYTES = 32
DEFAULT_TTL_S = 15 * 60
MAX_FORM_BYTES = 16 * 1024  # a token and a reason; anything bigger is refused unread

# reason -> HTTP status for the server
REFUSALS = {
    "no_user": 401, "malformed": 400, "bad_signature": 403, "other_request": 403,
    "expired": 410, "self_approval": 403, "not_pending": 409, "changed": 409, "used": 409,
    "resume_failed": 500,
}

CLAIMS_SQL = """
CREATE TABLE IF NOT EXISTS link_claims (
    nonce      TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    approver   TEXT NOT NULL,
    claimed_at TEXT NOT NULL
)
"""


def request_id(thread_id: str, interrupt_id: str) -> str:
    """The id a link's URL names: thread and interrupt, URL-safe."""
    return f"{quote(thread_id, safe='')}.{interrupt_id}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class LinkResult:
    """The handler's answer: ``ok`` when the decision went through, else ``reason`` says why."""

    ok: bool
    reason: str  # "executed" or "valid" when ok, else a key of REFUSALS
    message: str
    action: str | None = None
    approver: str | None = None
    item: InboxItem | None = None
    resolution: Resolution | None = None

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
    """

    def __init__(self, inbox: ApprovalInbox, secret: bytes, claims_path: str, *,
                 base_url: str = "http://127.0.0.1/approvals", ttl_s: int = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time):
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the secret must be at least {MIN_SECRET_BYTES} random bytes, e.g. "
                             "secrets.token_bytes(32), passed in from outside the code")
        if not isinstance(ttl_s, int) or ttl_s <= 0:
            raise ValueError("ttl_s is a positive number of seconds")
        self.inbox = inbox
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.clock = clock
        self._claims = sqlite3.connect(claims_path, check_same_thread=False, isolation_level=None,
                                       timeout=30)
        self._claims.execute(CLAIMS_SQL)
        self._claims_lock = threading.Lock()

    # -- issuing ----------------------------------------------------------------------------------
    def issue(self, item: InboxItem, requester: str) -> dict[str, str]:
        """``{"approve": url, "reject": url}`` for one pending approval asked for by
        ``requester`` (who may not approve it)."""
        if not isinstance(item, InboxItem):
            raise TypeError(f"issue links for an InboxItem, not {type(item).__name__}")
        if not isinstance(requester, str) or not requester.strip():
            raise ValueError("a link must name its requester, so they cannot approve it")
        expires = int(self.clock()) + self.ttl_s
        if item.deadline is not None:  # a link must not outlive the approval's own deadline
            expires = min(expires, int(item.deadline.timestamp()))
        fields = {"v": TOKEN_VERSION, "thread_id": item.thread_id,
                  "interrupt_id": item.interrupt_id, "fingerprint": item.fingerprint,
                  "requester": requester.strip(), "expires": expires,
                  "nonce": secrets.token_hex(16)}
        url = f"{self.base_url}/{request_id(item.thread_id, item.interrupt_id)}?token="
        return {action: url + self.sign({**fields, "action": action}) for action in ACTIONS}

    def sign(self, fields: dict) -> str:
        """A token: base64url(canonical JSON) '.' base64url(HMAC-SHA256 of it)."""
        body = canonical_json(fields).encode("utf-8")
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()
        return f"{_b64(body)}.{_b64(mac)}"

    # -- resolving --------------------------------------------------------------------------------
    def inspect(self, token: str, user: str | None,
                for_request: str | None = None) -> LinkResult:
        """Check a link without using it; when valid, ``item`` is the request to show."""
        try:
            fields, item = self._checked(token, user, for_request)
        except _Refused as refused:
            return LinkResult(False, refused.reason, refused.message)
        return LinkResult(True, "valid", f"a valid link to {fields['action']} {item.tool}",
                          fields["action"], user.strip(), item)

    def resolve(self, token: str, user: str | None, reason: str = "",
                for_request: str | None = None) -> LinkResult:
        """Use a link as ``user`` (the authenticated approver). ``for_request`` is the request id
        the URL names, when there is a URL."""
        try:
            fields, item = self._checked(token, user, for_request)
            approver = user.strip()
            self._claim(fields, approver)
        except _Refused as refused:
            return LinkResult(False, refused.reason, refused.message)
        action = fields["action"]
        decision = {"kind": action, "approver": approver,
                    "reason": reason or f"{Kind(action).past} via approval link"}
        resolution = self.inbox.resolve([(item, decision)], channel=Channel.LINK)[0]
        if not resolution.resumed:
            return LinkResult(False, "resume_failed", f"link used up, but {resolution.message}",
                              action, approver, item, resolution)
        return LinkResult(True, "executed", resolution.message, action, approver, item,
                          resolution)

    def resolve_url(self, url: str, user: str | None, reason: str = "") -> LinkResult:
        """``resolve`` for a whole link, as a handler receives it: its address names the
        request, its query carries the token."""
        parts = urlsplit(url)
        token = (parse_qs(parts.query).get("token") or [""])[0]
        return self.resolve(token, user, reason, for_request=parts.path.rsplit("/", 1)[-1])

    def _checked(self, token, user, for_request) -> tuple[dict, InboxItem]:
        if not isinstance(user, str) or not user.strip():
            raise _Refused("no_user", "nobody is signed in: a link needs an authenticated user")
        fields = self._verified(token)
        asked_for = request_id(fields["thread_id"], fields["interrupt_id"])
        if for_request is not None and for_request != asked_for:
            raise _Refused("other_request", "this link belongs to another request")
        if self.clock() >= fields["expires"]:
            when = datetime.fromtimestamp(fields["expires"], UTC).isoformat(timespec="seconds")
            raise _Refused("expired", f"this link expired at {when}; ask for a new one")
        if user.strip().casefold() == fields["requester"].casefold():
            raise _Refused("self_approval", f"{fields['requester']} asked for this; someone "
                           "else must decide it")
        used = self._claimed(fields["nonce"])
        if used is not None:
            raise _Refused("used", _used_message(used))
        item = self.inbox.get(fields["thread_id"], fields["interrupt_id"])
        if item is None:
            raise _Refused("not_pending", "this request is no longer pending: it was decided "
                           "elsewhere or its thread is gone")
        if item.fingerprint != fields["fingerprint"]:
            raise _Refused("changed", "the action or its arguments changed since this link was "
                           "made; it cannot approve what you did not see")
        return fields, item

    def _verified(self, token) -> dict:
        if not isinstance(token, str) or token.count(".") != 1:
            raise _Refused("malformed", "this is not an approval link token")
        body_text, mac_text = token.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (binascii.Error, ValueError):
            raise _Refused("malformed", "the link token is not valid base64") from None
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise _Refused("bad_signature", "the signature does not match: this link was forged "
                           "or altered")
        try:
            fields = json.loads(body)
        except ValueError:
            raise _Refused("malformed", "the signed token is not JSON") from None
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

    def _claim(self, fields: dict, approver: str) -> None:
        """Use up the nonce; the UNIQUE constraint lets exactly one claimant win."""
        try:
            with self._claims_lock:
                self._claims.execute(
                    "INSERT INTO link_claims VALUES (?, ?, ?, ?, ?)",
                    (fields["nonce"], request_id(fields["thread_id"], fields["interrupt_id"]),
                     fields["action"], approver, datetime.now(UTC).isoformat()))
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


# -- the HTTP handler -----------------------------------------------------------------------------

def _page(title: str, body_html: str) -> bytes:
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}</h1>{body_html}").encode()


class LinkServer:
    """``ApprovalLinks`` over HTTP on 127.0.0.1, in a background thread.

    ``authenticate(headers)`` returns the signed-in user or None (a real deployment would check a
    session or SSO here). The server stops by itself after ``max_requests`` requests or
    ``lifetime_s`` seconds, whichever comes first, and on leaving a ``with`` block.
    """

    def __init__(self, links: ApprovalLinks, authenticate: Callable[[object], str | None], *,
                 max_requests: int = 100, lifetime_s: float = 60.0):
        self.links, self.authenticate = links, authenticate
        self.max_requests, self.lifetime_s = max_requests, lifetime_s
        self._server = HTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.timeout = 0.1  # how often the serving loop looks at its limits
        self.requests_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/approvals"

    def __enter__(self) -> LinkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        else:
            self._server.server_close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server has stopped (by itself or not); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _serve(self) -> None:
        stop_at = time.monotonic() + self.lifetime_s
        try:
            while (not self._stop.is_set() and self.requests_seen < self.max_requests
                   and time.monotonic() < stop_at):
                self._server.handle_request()
        finally:
            self._server.server_close()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test and notebook output quiet
                pass

            def do_GET(self):
                self._answer(confirm=False)

            def do_POST(self):
                self._answer(confirm=True)

            def _answer(self, confirm: bool) -> None:
                server.requests_seen += 1
                parts = urlsplit(self.path)
                prefix = "/approvals/"
                if not parts.path.startswith(prefix):
                    return self._send(404, _page("Not found", ""))
                for_request = parts.path[len(prefix):]
                query = parse_qs(parts.query)
                if confirm:
                    length = self.headers.get("Content-Length", "0")
                    if not (length.isascii() and length.isdigit()) or int(length) > MAX_FORM_BYTES:
                        return self._send(400, _page("Refused, nothing ran",
                                                     "<p>the form is missing or too large</p>"))
                    form = self.rfile.read(int(length)).decode("utf-8", errors="replace")
                    query.update(parse_qs(form))
                token = (query.get("token") or [""])[0]
                user = server.authenticate(self.headers)
                if confirm:
                    reason = (query.get("reason") or [""])[0]
                    result = server.links.resolve(token, user, reason, for_request)
                    title = "Done" if result.ok else "Refused, nothing ran"
                    return self._send(result.http_status, _page(
                        title, f"<p>{html.escape(result.message)}</p>"))
                checked = server.links.inspect(token, user, for_request)
                if not checked.ok:
                    return self._send(checked.http_status, _page(
                        "Refused, nothing ran", f"<p>{html.escape(checked.message)}</p>"))
                self._send(200, _page(f"Confirm: {checked.action}", _confirm_form(
                    checked.action, checked.item, token)))

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _confirm_form(action: str, item: InboxItem, token: str) -> str:
    return (f"{payload_table_html(item.payload)}<form method='post'>"
            f"<input type='hidden' name='token' value='{html.escape(token, quote=True)}'>"
            "<input name='reason' placeholder='reason'>"
            f"<button type='submit'>{html.escape(action)}</button></form>")
