"""Slack: a request as a Block Kit message with Approve / Reject buttons, and the interactivity
endpoint that turns a click into a decision.

* ``request_blocks`` builds the message with ``slack_sdk``'s block models: the same rows as the
  card (risk, task, action, arguments, what it touches, what approve and reject do), who asked,
  and the buttons, whose value binds the click to the request as shown (thread, interrupt,
  fingerprint). Everything that came from a model, from data or from a person goes in
  ``plain_text`` objects, made visible: Slack never reads it as markup, mentions or links.
* ``SlackApprovals.post`` sends it with a ``slack_sdk.WebClient``; ``handle`` is the endpoint.
  It checks Slack's signature with ``slack_sdk.signature.SignatureVerifier`` (the app's signing
  secret, v0 HMAC-SHA256 over timestamp and body, the timestamp within five minutes: an old
  request replayed is refused), maps the Slack user to an approver of the ``ApproverDirectory``
  (anyone else is told so and nothing is decided), refuses the requester, and decides through
  ``hitl_kit.channels.decide`` on channel ``slack``. It answers with the updated message (the
  buttons replaced by who decided), in its reply and through the click's ``response_url``.
* A decision made anywhere else (dashboard, link, inbox, card, a timeout) updates the posted
  message too (``chat.update``), so nobody clicks on a request that is gone.

Nothing leaves the machine in the kit: ``hitl_kit.fake_slack`` stands in for slack.com. To
connect a real Slack app: create it, add a bot token with ``chat:write``, turn on Interactivity
with the Request URL ``https://<your host>/slack/interactions``, then pass
``WebClient(token=<bot token>)`` (no ``base_url``), the app's Signing Secret, the channel id, and
``response_url_prefix="https://hooks.slack.com/"`` (the default).

Limits: posted messages are remembered in memory (a restarted server no longer updates them);
a Slack button carries no text, so a rejection's reason is fixed ("clicked Reject in
Slack").
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from slack_sdk import WebClient
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from hitl_kit.channels import (
    ApproverDirectory,
    decide,
    item_anchor,
    item_ref,
    requester_of,
)
from hitl_kit.contract import ApprovalError, Pending
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.ledger import Claim
from hitl_kit.render import payload_rows, visible
from hitl_kit.secret_strength import require_strong_secret
from hitl_kit.vocabulary import Channel, Kind

WINDOW_S = 5 * 60  # Slack's own rule: a request older than this may be a replay
MAX_FIELD_CHARS = 1900  # a section field holds 2,000
MAX_BODY_BYTES = 64 * 1024
SECRET_HINT = ("Copy the Signing Secret from your Slack app's Basic Information page and pass "
               "it in from outside the code")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying that it was."""
    return text if len(text) <= limit else text[:limit - 40] + f" … ({len(text):,} chars, cut)"


def plain(text: str, limit: int = MAX_FIELD_CHARS) -> PlainTextObject:
    """A plain_text object for untrusted text: visible, never parsed, never an emoji code."""
    return PlainTextObject(text=clip(visible(text), limit) or " ", emoji=False)


def mrkdwn_escaped(text: str) -> str:
    """Text for a mrkdwn field (the message's notification text): &, < and > escaped, so
    ``<!channel>`` or ``<https://x|y>`` stays text."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def request_blocks(item: Pending, requester: str | None, *, dashboard_url: str | None = None,
                   decided: str | None = None, waiting: str = "") -> list[Block]:
    """The request as Block Kit blocks; with ``decided`` (a line saying who decided), the same
    without its buttons."""
    risk = str(item.request.risk).upper()
    blocks: list[Block] = [HeaderBlock(text=plain(f"{risk} risk: approval needed for "
                                                  f"{item.request.tool}", 150))]
    for label, text in payload_rows(item.request):
        blocks.append(SectionBlock(fields=[MarkdownTextObject(text=f"*{mrkdwn_escaped(label)}*"),
                                           plain(text)]))
    blocks.append(ContextBlock(elements=[plain(
        f"requested by {requester or 'nobody recorded'} · thread {item.thread_id} · "
        f"{waiting}", 2000)]))
    if decided is not None:
        blocks.append(SectionBlock(text=plain(decided, 3000)))
        return blocks
    ref = item_ref(item)
    if len(ref) > 2000:
        raise ValueError("the thread id is too long for a Slack button (2,000 characters)")
    buttons = [
        ButtonElement(text=plain("Approve", 75), action_id=Kind.APPROVE, value=ref,
                      style="primary", confirm=ConfirmObject(
                          title=plain("Approve this action?", 100),
                          text=plain(item.request.on_approve, 300),
                          confirm=plain("Approve", 30), deny=plain("Cancel", 30))),
        ButtonElement(text=plain("Reject", 75), action_id=Kind.REJECT, value=ref,
                      style="danger"),
    ]
    if dashboard_url:
        buttons.append(ButtonElement(text=plain("Full context", 75), action_id="open",
                                     url=dashboard_url))
    blocks.append(ActionsBlock(block_id="decision", elements=buttons))
    return blocks


def message(item: Pending, requester: str | None, **kwargs) -> dict:
    """A chat.postMessage / chat.update body: notification text and blocks, as dicts."""
    text = f"Approval needed: {mrkdwn_escaped(item.request.tool)} ({item.request.risk} risk)"
    if kwargs.get("decided"):
        text = mrkdwn_escaped(kwargs["decided"])
    return {"text": text, "blocks": [b.to_dict() for b in request_blocks(item, requester,
                                                                         **kwargs)]}


@dataclass(frozen=True)
class SlackReply:
    """What the endpoint answers: an HTTP status and a JSON body (a message, or an error)."""

    status: int
    body: dict
    decided: bool = False


@dataclass
class Posted:
    """A request's message in Slack."""

    item: Pending
    requester: str | None
    channel: str
    ts: str
    decided: str | None = None


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]):
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackApprovals:
    """Approvals in Slack for the requests in ``inbox``.

    ``signing_secret`` checks Slack's requests; ``directory`` maps Slack user ids to approvers;
    ``client`` posts and updates messages in ``channel``. Follow-ups go only to a
    ``response_url`` under ``response_url_prefix``.
    """

    def __init__(self, inbox: ApprovalInbox, signing_secret: str,
                 directory: ApproverDirectory, *, client: WebClient | None = None,
                 channel: str = "C0APPROVALS",
                 response_url_prefix: str = "https://hooks.slack.com/",
                 dashboard_url: str | None = None, clock: Callable[[], float] = time.time):
        if not isinstance(signing_secret, str) or len(signing_secret) < 32:
            raise ValueError(f"the Slack signing secret is a text of 32 characters or more. "
                             f"{SECRET_HINT}")
        require_strong_secret(signing_secret, "the Slack signing secret", SECRET_HINT)
        self.inbox, self.directory, self.client = inbox, directory, client
        self.channel, self.response_url_prefix = channel, response_url_prefix
        self.dashboard_url, self.clock = dashboard_url, clock
        self.verifier = SignatureVerifier(signing_secret, clock=_Clock(clock))
        self.posted: dict[tuple[str, str], Posted] = {}
        self._lock = threading.Lock()
        inbox.agent.on_decided.append(self._decided_somewhere)

    # -- asking -----------------------------------------------------------------------------------
    def post(self, item: Pending, requester: str | None = None) -> Posted:
        """Post the request to the channel (``chat.postMessage``); ``requester`` defaults to
        whoever started the thread."""
        if self.client is None:
            raise ValueError("no WebClient to post with: pass client=WebClient(token=...)")
        requester = requester or requester_of(self.inbox, item.thread_id, item)
        dashboard = None if not self.dashboard_url else f"{self.dashboard_url}#{item_anchor(item)}"
        body = message(item, requester, dashboard_url=dashboard, waiting=self.inbox.when(item))
        reply = self.client.chat_postMessage(channel=self.channel, **body)
        posted = Posted(item, requester, reply["channel"], reply["ts"])
        with self._lock:
            self.posted[item.thread_id, item.interrupt_id] = posted
        return posted

    # -- the endpoint -----------------------------------------------------------------------------
    def handle(self, body: bytes, headers: Mapping[str, str]) -> SlackReply:
        """One request to the interactivity endpoint, exactly as Slack posts it."""
        headers = {k.lower(): v for k, v in headers.items()}
        stamp = headers.get("x-slack-request-timestamp", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) < 12):
            return SlackReply(401, {"error": "no Slack request timestamp: not from Slack"})
        if abs(self.clock() - int(stamp)) > WINDOW_S:
            return SlackReply(401, {"error": "the request is more than five minutes old or "
                                             "new: a replay, or a clock far off; refused"})
        try:
            valid = self.verifier.is_valid(body, stamp, headers.get("x-slack-signature"))
        except (UnicodeDecodeError, ValueError, TypeError):
            valid = False
        if not valid:
            return SlackReply(401, {"error": "the signature does not match: this request did not "
                                             "come from Slack, or was changed; refused"})
        try:
            payload = _block_action(body)
        except ValueError as exc:
            return SlackReply(400, {"error": f"not a button click the kit understands: {exc}"})
        user_id, action = payload["user"]["id"], payload["actions"][0]
        person = self.directory.by_slack_user(user_id)
        if person is None:
            return self._tell(payload, f"Slack user {user_id} is not an allowed approver; "
                                       "nothing was decided. Ask whoever runs the approvals "
                                       "to add you.")
        kind = action.get("action_id")
        if kind not in (Kind.APPROVE, Kind.REJECT):
            return SlackReply(200, {"text": "nothing to decide"})
        try:
            (answer,) = decide(self.inbox, [action.get("value")], kind, person.name,
                               f"clicked {kind.capitalize()} in Slack", Channel.SLACK)
        except ApprovalError as exc:
            return self._tell(payload, f"Refused, nothing ran: {exc}")
        if answer.ok:
            line = f"{Kind(kind).past.capitalize()} by {person.name} in Slack."
            return self._replace(payload, answer.item, line, decided=True)
        if answer.decided_by is not None or answer.item is None:  # too late: tell who won
            with self._lock:
                posted = self.posted.get((answer.thread_id, answer.interrupt_id))
            if posted is None or posted.decided is None:  # a message the kit did not update
                self._replace(payload, answer.item, f"Decided by "
                              f"{answer.decided_by.describe()}" if answer.decided_by
                              else answer.message)
            return self._tell(payload, f"Not applied: {answer.message}")
        return self._tell(payload, answer.message)

    def _replace(self, payload: dict, item: Pending | None, line: str,
                 decided: bool = False) -> SlackReply:
        """Answer with the message updated: no buttons, who decided."""
        if item is None:
            body = {"replace_original": True, "text": mrkdwn_escaped(line),
                    "blocks": [SectionBlock(text=plain(line, 3000)).to_dict()]}
        else:
            key = (item.thread_id, item.interrupt_id)
            with self._lock:
                posted = self.posted.get(key)
                if posted is not None:
                    posted.decided = line
            requester = posted.requester if posted else None
            body = {"replace_original": True, **message(item, requester, decided=line)}
        self._follow_up(payload, body)
        return SlackReply(200, body, decided)

    def _tell(self, payload: dict, text: str) -> SlackReply:
        """Answer only the person who clicked; the message stays as it was."""
        body = {"response_type": "ephemeral", "replace_original": False,
                "text": mrkdwn_escaped(text)}
        self._follow_up(payload, body)
        return SlackReply(200, body)

    def _follow_up(self, payload: dict, body: dict) -> None:
        url = payload.get("response_url")
        if isinstance(url, str) and url.startswith(self.response_url_prefix):
            with contextlib.suppress(Exception):  # the decision stands; the update is best effort
                WebhookClient(url, timeout=5).send_dict(body)

    # -- decided elsewhere ------------------------------------------------------------------------
    def _decided_somewhere(self, claims: list[Claim], outcome) -> None:
        for claim in claims:
            with self._lock:
                posted = self.posted.get((claim.thread_id, claim.interrupt_id))
                if posted is None or posted.decided is not None:
                    continue
                posted.decided = f"Decided by {claim.describe()}"
            if self.client is not None:
                self.client.chat_update(channel=posted.channel, ts=posted.ts, **message(
                    posted.item, posted.requester, decided=posted.decided))


def _block_action(body: bytes) -> dict:
    """The JSON ``payload`` of a form-encoded block_actions request, checked for what is used."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError("the body is too large")
    form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=8)
    if list(form) != ["payload"] or len(form["payload"]) != 1:
        raise ValueError("the form must hold one 'payload' field")
    try:
        payload = json.loads(form["payload"][0])
    except RecursionError:  # a signed body can still be hostile: nested past Python's stack
        raise ValueError("the payload's JSON nests too deeply to read") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise ValueError("only block_actions (button clicks) are handled")
    user, actions = payload.get("user"), payload.get("actions")
    if not (isinstance(user, dict) and isinstance(user.get("id"), str)):
        raise ValueError("the payload names no user")
    if not (isinstance(actions, list) and len(actions) == 1 and isinstance(actions[0], dict)):
        raise ValueError("the payload must hold exactly one action")
    return payload
