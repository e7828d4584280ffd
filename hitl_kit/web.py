"""The approvals web app: where approvers outside Jupyter decide (Starlette, served by
``hitl_kit.server.LocalServer`` on 127.0.0.1).

=========================  ===================================================================
``GET /dashboard``         every pending request across threads: risk, action, who asked, age
                           and countdown, full context; sign-in required
``POST /dashboard/decide`` approve or reject the ticked requests with a reason; one result each,
                           shown on the dashboard it redirects to (a reload decides nothing)
``GET /links/{id}``        an approval link opened: a confirm page, never a decision (mail
                           scanners open links by themselves)
``POST /links/{id}``       the confirm page's button: the link's approver decides, once
``POST /slack/interactions``  Slack's button clicks, signature checked (``hitl_kit.slack``)
``GET, POST /login``       sign in with a key; ``POST /logout``
=========================  ===================================================================

Every decision goes through ``hitl_kit.channels.decide``, so through ``agent.resume`` with its
channel (``dashboard``, ``link``, ``slack``): one ledger, one audit trail, exactly one decision
per request whichever channel is first. Pages are rendered by Jinja2 with autoescaping, texts
made visible (``hitl_kit.render.visible``); forms carry a CSRF token and cross-site posts are
refused; no page runs a script, and none may be framed.

Usage (``notebooks/05_approval_patterns`` runs it all)::

    app = ApprovalsApp(inbox, secret=secrets.token_bytes(32),
                       directory=ApproverDirectory([Person("ana")]), links=links, slack=slack)
    with app.serve(lifetime_s=900) as server:
        print(f"{server.url}/dashboard", app.sign_in_key("ana"))

Limits: sign-in keys and sessions live in this process's memory (a restart signs everyone out);
a real deployment signs people in with its own SSO in ``signed_in``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import jinja2
from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from hitl_kit.audit import canonical_json
from hitl_kit.channels import (
    Answer,
    ApproverDirectory,
    Person,
    decide,
    item_anchor,
    item_ref,
    requester_of,
)
from hitl_kit.contract import ApprovalError, Pending
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.links import MIN_SECRET_BYTES, SECRET_HINT, ApprovalLinks, request_id
from hitl_kit.render import payload_rows, visible
from hitl_kit.secret_strength import require_strong_secret
from hitl_kit.server import DEFAULT_LIMITS, Limits, LocalServer
from hitl_kit.vocabulary import Channel, Kind, Risk

SESSION_COOKIE = "hitl_session"
SESSION_S = 8 * 3600
CONFIRM_S = 15 * 60  # how long a link's confirm page may wait before its button
MAX_SELECTED = 500
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # pass your public host name when serving it elsewhere
MAX_LISTED = 200  # rows on one dashboard page: nearest deadline, highest risk, oldest first
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"),
]


@functools.cache
def templates() -> jinja2.Environment:
    """The page templates, every ``{{ }}`` escaped; ``| visible`` shows hidden characters."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("hitl_kit", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["visible"] = lambda text: visible(str(text))
    return env


def _signer(secret: bytes, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=salt, signer_kwargs={
        "key_derivation": "hmac", "digest_method": hashlib.sha256})


class SecurityHeaders:
    """ASGI middleware: no framing, no scripts, no referrer (link tokens live in URLs), no
    caching, on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


@dataclass(frozen=True)
class Row:
    """One pending request as the dashboard shows it."""

    item: Pending
    ref: str
    anchor: str
    risk: str
    args: str
    requester: str | None  # None: nobody recorded who asked
    rows: list
    problem: str | None
    when: str


class ApprovalsApp:
    """The web app over ``inbox``. ``directory`` says who may sign in and decide; ``links`` and
    ``slack`` add their routes' handlers (``hitl_kit.links.ApprovalLinks``,
    ``hitl_kit.slack.SlackApprovals``). ``secret`` signs sessions and CSRF tokens. Requests
    naming another host than ``allowed_hosts`` are refused (400)."""

    def __init__(self, inbox: ApprovalInbox, *, secret: bytes, directory: ApproverDirectory,
                 links: ApprovalLinks | None = None, slack=None,
                 allowed_hosts: tuple[str, ...] = LOCAL_HOSTS):
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the web app's secret must be at least {MIN_SECRET_BYTES} random "
                             f"bytes. {SECRET_HINT}")
        require_strong_secret(secret, "the web app's secret", SECRET_HINT)
        self.inbox, self.directory, self.links, self.slack = inbox, directory, links, slack
        self.env = templates()
        self._session_signer = _signer(secret, "hitl-kit dashboard session")
        self._csrf_signer = _signer(secret, "hitl-kit csrf")
        self._confirm_signer = _signer(secret, "hitl-kit link confirm")
        self._keys: dict[str, str] = {}  # sha256 of a sign-in key -> approver name
        self._sessions: dict[str, tuple[str, float]] = {}  # session id -> (approver, start)
        self._last_action: dict[str, list[dict]] = {}  # session id -> results not shown yet
        self._requesters: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.public_url = "http://127.0.0.1"
        routes = [
            Route("/", lambda request: RedirectResponse("/dashboard", 303)),
            Route("/healthz", lambda request: PlainTextResponse("ok")),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/dashboard", self.dashboard, methods=["GET"]),
            Route("/dashboard/decide", self.dashboard_decide, methods=["POST"]),
            Route("/links/{request_id}", self.link_page, methods=["GET"]),
            Route("/links/{request_id}", self.link_decide, methods=["POST"]),
            Route("/slack/interactions", self.slack_interaction, methods=["POST"]),
        ]
        # A Host header naming any other site is a DNS-rebinding page talking to 127.0.0.1.
        self.app = SecurityHeaders(TrustedHostMiddleware(Starlette(routes=routes),
                                                         allowed_hosts=list(allowed_hosts),
                                                         www_redirect=False))

    # -- serving ----------------------------------------------------------------------------------
    def serve(self, *, lifetime_s: float | None = 600.0, limits: Limits = DEFAULT_LIMITS
              ) -> LocalServer:
        """Start the app on 127.0.0.1 (``LocalServer``); links issued from now on point at it."""
        server = LocalServer(self.app, lifetime_s=lifetime_s, limits=limits).start()
        self.public_url = server.url
        if self.links is not None:
            self.links.base_url = f"{server.url}/links"
        if self.slack is not None:
            self.slack.dashboard_url = f"{server.url}/dashboard"
        return server

    # -- signing in -------------------------------------------------------------------------------
    def sign_in_key(self, name: str) -> str:
        """A new sign-in key for an approver of the directory (give it to them privately)."""
        person = self.directory.require(name)
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._keys[_digest(key)] = person.name
        return key

    def signed_in(self, request: Request) -> tuple[str, str] | None:
        """(approver, session id) of the request's session, or None."""
        try:
            sid = self._session_signer.loads(request.cookies.get(SESSION_COOKIE, ""),
                                             max_age=SESSION_S)
        except BadData:
            return None
        name, _ = self._sessions.get(sid, (None, 0.0)) if isinstance(sid, str) else (None, 0.0)
        if name is None or self.directory.find(name) is None:
            return None
        return name, sid

    async def login_page(self, request: Request):
        return self._page(request, "login.html", title="Sign in", error=None)

    async def login(self, request: Request):
        if not _same_origin(request):
            return self._refused(request, 403, "a form from another site cannot sign you in")
        form = await request.form()
        key = form.get("key")
        name = self._keys.get(_digest(key)) if isinstance(key, str) and key else None
        if name is None or self.directory.find(name) is None:
            return self._page(request, "login.html", 403, title="Sign in",
                              error="that key is not valid; ask for a new one")
        sid, now = secrets.token_urlsafe(18), time.time()
        with self._lock:
            for old in [s for s, (_, at) in self._sessions.items() if at < now - SESSION_S]:
                del self._sessions[old]  # expired: its cookie is refused anyway
                self._last_action.pop(old, None)
            self._sessions[sid] = (name, now)
        response = RedirectResponse("/dashboard", 303)
        response.set_cookie(SESSION_COOKIE, self._session_signer.dumps(sid), max_age=SESSION_S,
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request):
        who = self.signed_in(request)
        if who is not None and await self._csrf_ok(request, who[1]):
            with self._lock:
                self._sessions.pop(who[1], None)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def _csrf_ok(self, request: Request, sid: str) -> bool:
        if not _same_origin(request):
            return False
        token = (await request.form()).get("csrf")
        try:
            return isinstance(token, str) and hmac.compare_digest(
                self._csrf_signer.loads(token, max_age=SESSION_S), sid)
        except (BadData, TypeError):
            return False

    # -- the dashboard ----------------------------------------------------------------------------
    async def dashboard(self, request: Request):
        who = self.signed_in(request)
        if who is None:
            return RedirectResponse("/login", 303)
        with self._lock:
            answers = self._last_action.pop(who[1], None)  # shown once: a reload drops it
        rows, total = await run_in_threadpool(self._rows)
        return self._page(request, "dashboard.html", title="Approvals", items=rows,
                          total=total, answers=answers, error=None, who=who)

    async def dashboard_decide(self, request: Request):
        who = self.signed_in(request)
        if who is None:
            return self._refused(request, 401, "sign in first; nothing was decided")
        if not await self._csrf_ok(request, who[1]):
            return self._refused(request, 403, "this form did not come from your dashboard "
                                               "page (or it is too old); reload it. Nothing was "
                                               "decided")
        form = await request.form()
        kind, reason, refs = form.get("kind"), form.get("reason") or "", form.getlist("ref")
        error = None
        if kind not in (Kind.APPROVE, Kind.REJECT):
            error = "press Approve selected or Reject selected"
        elif not refs:
            error = "nothing selected: tick the requests to answer first"
        elif len(refs) > MAX_SELECTED or not all(isinstance(r, str) for r in refs):
            error = f"select at most {MAX_SELECTED} requests at once"
        else:
            try:
                found = await run_in_threadpool(decide, self.inbox, refs, kind, who[0],
                                                str(reason), Channel.DASHBOARD)
            except ApprovalError as exc:
                error = str(exc)
        if error is not None:  # nothing was decided: the form stays, with why
            rows, total = await run_in_threadpool(self._rows)
            return self._page(request, "dashboard.html", 400, title="Approvals", items=rows,
                              total=total, answers=None, error=error, who=who)
        with self._lock:
            self._last_action[who[1]] = [_answer_row(a) for a in found]
        # Redirect after the POST: the page that shows the results is a GET, so reloading it,
        # or going back to it, never sends the answers again.
        return RedirectResponse("/dashboard#results", 303)

    def _rows(self) -> tuple[list[Row], int]:
        """The first MAX_LISTED pending requests as rows, and how many are pending."""
        items, rows = self.inbox.items(), []
        for item in items[:MAX_LISTED]:
            risk = item.request.risk if item.request.risk in set(Risk) else Risk.HIGH
            rows.append(Row(item, item_ref(item), item_anchor(item), str(risk),
                visible(canonical_json(item.request.args)),
                self._requester(item), payload_rows(item.request),
                item.request.problem, self.inbox.when(item)))
        return rows, len(items)

    def _requester(self, item: Pending) -> str | None:
        if item.thread_id not in self._requesters:  # a thread's requester never changes
            self._requesters[item.thread_id] = requester_of(self.inbox, item.thread_id, item)
        return self._requesters[item.thread_id]

    # -- approval links ---------------------------------------------------------------------------
    async def link_page(self, request: Request):
        if self.links is None:
            return self._refused(request, 404, "this server issues no approval links")
        rid = request.path_params["request_id"]
        token = request.query_params.get("token", "")
        result = await run_in_threadpool(self.links.inspect, token, rid)
        if not result.ok:
            return self._refused(request, result.http_status, result.message)
        return self._page(request, "confirm.html", title=f"Confirm: {result.action}",
                          action=result.action, approver=result.approver,
                          requester=result.requester, rows=payload_rows(result.item.request),
                          token=token, csrf=self._confirm_signer.dumps(result.nonce),
                          action_url="/links/" + request_id(result.item.thread_id,
                                                            result.item.interrupt_id))

    async def link_decide(self, request: Request):
        if self.links is None:
            return self._refused(request, 404, "this server issues no approval links")
        if not _same_origin(request):
            return self._refused(request, 403, "a form from another site cannot decide; nothing "
                                               "was decided")
        rid = request.path_params["request_id"]
        form = await request.form()
        token, reason = form.get("token"), form.get("reason") or ""
        if not isinstance(token, str) or not isinstance(reason, str):
            return self._refused(request, 400, "this form is not a confirm page's")
        checked = await run_in_threadpool(self.links.inspect, token, rid)
        if not checked.ok:
            return self._refused(request, checked.http_status, checked.message)
        try:
            confirmed = self._confirm_signer.loads(form.get("csrf") or "", max_age=CONFIRM_S)
        except BadData:
            confirmed = None
        if confirmed != checked.nonce:
            return self._refused(request, 403, "confirm on the link's own page: open the link "
                                               "again and press its button. Nothing was decided")
        result = await run_in_threadpool(self.links.resolve, token, reason, rid)
        title = f"Done: {Kind(result.action).past}" if result.ok else "Refused, nothing ran"
        return self._page(request, "message.html", result.http_status, title=title,
                          message=result.message, ok=result.ok, back=None)

    # -- Slack ------------------------------------------------------------------------------------
    async def slack_interaction(self, request: Request):
        if self.slack is None:
            return JSONResponse({"error": "Slack is not connected to this server"}, 404)
        body = await request.body()
        reply = await run_in_threadpool(self.slack.handle, body, dict(request.headers))
        return JSONResponse(reply.body, reply.status)

    # -- pages ------------------------------------------------------------------------------------
    def _page(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        who = context.pop("who", None) or self.signed_in(request)
        context.setdefault("signed_in", who[0] if who else None)
        context.setdefault("csrf", self._csrf_signer.dumps(who[1]) if who else "")
        return HTMLResponse(self.env.get_template(name).render(**context), status)

    def _refused(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self._page(request, "message.html", status, title="Refused, nothing ran",
                          message=message, ok=False, back="/dashboard")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site. Browsers say it in
    ``Sec-Fetch-Site``; older ones in ``Origin`` (which is "null" under this app's
    no-referrer policy, refused) or ``Referer``."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")  # "none": typed or bookmarked by the user
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # not a browser, or one that says nothing; the CSRF token still applies
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own or origin.startswith(own + "/")


def _answer_row(answer: Answer) -> dict:
    tool = answer.item.request.tool if answer.item is not None else "a request"
    return {"ok": answer.ok, "thread_id": answer.thread_id, "tool": tool,
            "message": answer.message}



# -- python -m hitl_kit serve ---------------------------------------------------------------------

DEMO_TASKS = {"cleanup": "delete customer 4", "release": "deploy the billing service version 2.4",
              "reply": 'send a reply to thread 3 saying "Monday works"'}


def serve_from_cli(approvers: list[str], world_path: str | None, checkpoints: str | None,
                   minutes: float, say: Callable[[str], None] = print) -> int:
    """What ``python -m hitl_kit serve`` runs: the app over a demo world (three requests asked
    for by rita), or over the threads paused in a checkpointer file; until Ctrl-C or
    ``minutes``."""
    from hitl_kit.approval import ApprovalAgent, durable_checkpointer
    from hitl_kit.llm import get_chat_model
    from hitl_kit.world import World

    world = World(world_path) if world_path else World()
    agent = ApprovalAgent(get_chat_model(), world.tools(), world=world,
                          checkpointer=durable_checkpointer(checkpoints) if checkpoints else None)
    inbox = ApprovalInbox(agent)
    if checkpoints is None:
        for thread_id, task in DEMO_TASKS.items():
            inbox.submit(task, thread_id, requested_by="rita")
    directory = ApproverDirectory([Person(name) for name in approvers or ["ana", "bo"]])
    links = ApprovalLinks(inbox, secrets.token_bytes(32), ":memory:", directory=directory)
    app = ApprovalsApp(inbox, secret=secrets.token_bytes(32), directory=directory, links=links)
    server = app.serve(lifetime_s=minutes * 60)
    say(f"approvals web app: {server.url}/dashboard ({len(inbox.items())} waiting; it stops "
        f"by itself after {minutes:g} min, or press Ctrl-C)")
    for person in directory:
        say(f"  sign-in key for {person.name}: {app.sign_in_key(person.name)}")
    for item in inbox.items()[:3]:
        url = links.issue(item, requester=requester_of(inbox, item.thread_id, item)
                          or "someone", approver=directory.names[0])["approve"]
        say(f"  an approval link for {directory.names[0]} ({item.request.tool}): {url}")
    try:
        server.wait()
    except KeyboardInterrupt:
        say("stopping")
    finally:
        server.stop()
    return 0
