"""What the channel tests share: a small world with pending requests, the approvers, the web app
on 127.0.0.1, and a reader for the pages' forms."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx

from hitl_kit.approval import ApprovalAgent
from hitl_kit.channels import ApproverDirectory, Person
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.links import ApprovalLinks
from hitl_kit.llm import OfflineChatModel
from hitl_kit.server import Limits
from hitl_kit.web import ApprovalsApp
from hitl_kit.world import World

from .conftest import agent_of_kind

TASKS = {"del-4": "delete customer 4", "del-2": "delete customer 2",
         "reply": 'send a reply to thread 3 saying "see you"'}
PEOPLE = [Person("ana", email="ana@example.com", slack_user_id="U0ANA"),
          Person("bo", email="bo@example.com", slack_user_id="U0BO"),
          Person("rita", email="rita@example.com", slack_user_id="U0RITA")]
FAST = Limits(head_timeout_s=5, body_timeout_s=5, shutdown_grace_s=1)


@dataclass
class Setup:
    world: World
    agent: ApprovalAgent
    inbox: ApprovalInbox
    directory: ApproverDirectory
    links: ApprovalLinks
    app: ApprovalsApp

    def item(self, thread_id: str):
        return next(i for i in self.inbox.items() if i.thread_id == thread_id)

    def executed(self) -> int:
        return sum(self.world.calls[t] for t in ("delete_customer", "send_reply"))


def make_setup(tmp_path, tasks: dict[str, str] = TASKS, requester: str = "rita",
               people=PEOPLE, world: World | None = None, kind: str = "graph",
               **app_kwargs) -> Setup:
    """The channels on an agent of ``kind`` (see ``conftest.AGENT_KINDS``)."""
    world = world or World()
    agent = agent_of_kind(kind)(OfflineChatModel(), world.tools(), world=world)
    inbox = ApprovalInbox(agent)
    for thread_id, task in tasks.items():
        inbox.submit(task, thread_id, requested_by=requester)
    directory = ApproverDirectory(people)
    links = ApprovalLinks(inbox, secrets.token_bytes(32), str(tmp_path / "claims.db"),
                          directory=directory)
    app = ApprovalsApp(inbox, secret=secrets.token_bytes(32), directory=directory, links=links,
                       **app_kwargs)
    return Setup(world, agent, inbox, directory, links, app)


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, trust_env=False, timeout=20)


def sign_in(http: httpx.Client, app: ApprovalsApp, name: str) -> httpx.Response:
    reply = http.post("/login", data={"key": app.sign_in_key(name)})
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard"
    return reply


class Forms(HTMLParser):
    """The inputs and buttons of a page, and the id of the row each sits in."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.inputs: list[dict] = []
        self.forms: list[dict] = []
        self._row: str | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self._row = attrs.get("data-thread")
        if tag == "form":
            self.forms.append(attrs)
        if tag in ("input", "button"):
            self.inputs.append({**attrs, "row": self._row})

    def value(self, name: str) -> str:
        return next(i["value"] for i in self.inputs if i.get("name") == name)

    def refs(self) -> dict[str, str]:
        """thread id -> the ref of its row's checkbox."""
        return {i["row"]: i["value"] for i in self.inputs if i.get("name") == "ref"}


def results(page: str) -> dict[str, str]:
    """The dashboard's results: thread id -> 'ok: message' or 'refused: message'."""
    found = re.findall(r'<li class="(ok|refused)" data-thread="([^"]*)">.*?'
                       r'<span class="message">(.*?)</span>', page, re.S)
    return {html.unescape(thread): f"{kind}: {html.unescape(text)}"
            for kind, thread, text in found}


def message_of(page: str) -> str:
    match = re.search(r'id="message">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else ""
