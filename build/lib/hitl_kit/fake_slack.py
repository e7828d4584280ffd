"""A stand-in for slack.com on 127.0.0.1, so the Slack channel runs end to end offline.

``FakeSlack`` serves what the kit uses of Slack: the Web API methods ``chat.postMessage`` and
``chat.update`` (called by a real ``slack_sdk.WebClient`` whose ``base_url`` points here) and the
``response_url`` a click's follow-up is posted to. It keeps every message as Slack would show it.
``click()`` does what Slack does when someone presses a button: it builds the ``block_actions``
payload from the message, signs it with the app's signing secret (``v0``, with the timestamp)
and posts it, form-encoded, to the app's interactivity URL.

    >>> import secrets
    >>> secret = secrets.token_hex(16)
    >>> with FakeSlack(secret) as slack:
    ...     posted = slack.web_client().chat_postMessage(channel="C0APPROVALS", text="hi")
    ...     slack.messages[posted["ts"]]["text"]
    'hi'

Limits: only those two methods, one workspace, no real users; a stand-in for tests and the
notebook, never a Slack.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from urllib.parse import urlencode

import httpx
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from hitl_kit.server import LocalServer

BOT_TOKEN = "xoxb-offline-hitl-kit"


class FakeSlack:
    """Slack's Web API and response URLs for one workspace, on 127.0.0.1."""

    def __init__(self, signing_secret: str, *, team_id: str = "T0HITLKIT",
                 lifetime_s: float = 600.0):
        self.signing_secret, self.team_id = signing_secret, team_id
        self.messages: dict[str, dict] = {}  # ts -> {"channel", "ts", "text", "blocks"}
        self.ephemeral: list[dict] = []  # what only the clicking user saw
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self.server = LocalServer(Starlette(routes=[
            Route("/api/{method}", self._api, methods=["POST"]),
            Route("/hooks/{ts}", self._hook, methods=["POST"]),
        ]), lifetime_s=lifetime_s)

    def __enter__(self) -> FakeSlack:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def response_url_prefix(self) -> str:
        return f"{self.server.url}/hooks/"

    def web_client(self) -> WebClient:
        """A real ``slack_sdk.WebClient`` that talks to this stand-in."""
        return WebClient(token=BOT_TOKEN, base_url=f"{self.server.url}/api/", timeout=10)

    # -- the Web API ------------------------------------------------------------------------------
    async def _api(self, request: Request):
        method = request.path_params["method"]
        self.calls.append(method)
        if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return JSONResponse({"ok": False, "error": "not_authed"})
        body = await request.json()
        with self._lock:
            if method == "chat.postMessage":
                ts = f"{int(time.time())}.{next(self._ts):06d}"
                self.messages[ts] = {"channel": body["channel"], "ts": ts,
                                     "text": body.get("text", ""),
                                     "blocks": body.get("blocks", [])}
                return JSONResponse({"ok": True, "channel": body["channel"], "ts": ts,
                                     "message": self.messages[ts]})
            if method == "chat.update":
                found = self.messages.get(body.get("ts"))
                if found is None:
                    return JSONResponse({"ok": False, "error": "message_not_found"})
                found.update(text=body.get("text", ""), blocks=body.get("blocks", []))
                return JSONResponse({"ok": True, "channel": found["channel"],
                                     "ts": found["ts"]})
        return JSONResponse({"ok": False, "error": "unknown_method"})

    async def _hook(self, request: Request):
        ts, body = request.path_params["ts"], await request.json()
        with self._lock:
            if body.get("replace_original") and ts in self.messages:
                self.messages[ts].update(text=body.get("text", ""),
                                         blocks=body.get("blocks", []))
            elif body.get("response_type") == "ephemeral":
                self.ephemeral.append({"ts": ts, "text": body.get("text", "")})
        return PlainTextResponse("ok")

    # -- a click ----------------------------------------------------------------------------------
    def click_request(self, ts: str, user_id: str, action_id: str, *,
                      at: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers Slack would post when ``user_id`` presses the message's button
        ``action_id`` (at time ``at``, default now)."""
        message = self.messages[ts]
        button = next((e for b in message["blocks"] if b.get("type") == "actions"
                       for e in b["elements"] if e.get("action_id") == action_id), None)
        if button is None:
            raise ValueError(f"the message has no {action_id!r} button (any more)")
        stamp = str(int(time.time() if at is None else at))
        payload = {
            "type": "block_actions", "api_app_id": "A0HITLKIT", "token": "legacy-unused",
            "user": {"id": user_id, "username": user_id.lower(), "team_id": self.team_id},
            "team": {"id": self.team_id, "domain": "hitl-kit"},
            "container": {"type": "message", "message_ts": ts, "channel_id": message["channel"],
                          "is_ephemeral": False},
            "channel": {"id": message["channel"], "name": "approvals"},
            "message": {"type": "message", "ts": ts, "text": message["text"],
                        "blocks": message["blocks"]},
            "trigger_id": f"{stamp}.1.fake", "state": {"values": {}},
            "response_url": f"{self.response_url_prefix}{ts}",
            "actions": [{"type": "button", "action_id": action_id, "block_id": "decision",
                         "value": button.get("value"), "text": button.get("text"),
                         "action_ts": f"{stamp}.000100"}],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        signature = SignatureVerifier(self.signing_secret).generate_signature(
            timestamp=stamp, body=body)
        return body, {"Content-Type": "application/x-www-form-urlencoded",
                      "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature,
                      "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}

    def click(self, interactivity_url: str, ts: str, user_id: str, action_id: str, *,
              at: float | None = None) -> httpx.Response:
        """Press a button of a posted message, as Slack would deliver it."""
        body, headers = self.click_request(ts, user_id, action_id, at=at)
        with httpx.Client(trust_env=False, timeout=10) as client:
            return client.post(interactivity_url, content=body, headers=headers)
