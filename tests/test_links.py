"""Approval links: signed, single-use, expiring; every bad link refused with nothing run."""

import base64
import http.client
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

import pytest

from hitl_kit.approval import ApprovalAgent
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.links import ApprovalLinks, LinkServer, request_id
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World

XSS = "<img src=x onerror=alert(1)>"


class FakeClock:
    def __init__(self, now: float = 1_900_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world():
    return World()


@pytest.fixture
def inbox(world):
    box = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world))
    box.submit("delete customer 4", "a")
    box.submit("delete customer 2", "b")
    return box


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def secret():
    return secrets.token_bytes(32)


@pytest.fixture
def links(inbox, secret, clock, tmp_path):
    return ApprovalLinks(inbox, secret, str(tmp_path / "claims.db"), ttl_s=600, clock=clock)


def token_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]


def issued(links, thread_id: str, requester: str = "rita") -> dict[str, str]:
    item = next(i for i in links.inbox.items() if i.thread_id == thread_id)
    return {action: token_of(url) for action, url in links.issue(item, requester).items()}


def deleted(world) -> int:
    return world.calls["delete_customer"]


def test_issue_gives_an_approve_and_a_reject_link_for_the_request(links, inbox):
    item = next(i for i in inbox.items() if i.thread_id == "a")
    urls = links.issue(item, "rita")
    assert set(urls) == {"approve", "reject"}
    for url in urls.values():
        assert url.startswith(f"http://127.0.0.1/approvals/a.{item.interrupt_id}?token=")
    assert token_of(urls["approve"]) != token_of(urls["reject"])


def test_a_link_used_by_someone_else_resolves_its_request_once(links, world, inbox):
    tokens = issued(links, "a")
    result = links.resolve(tokens["approve"], "ana", "checked the account")
    assert result.ok and result.reason == "executed" and result.approver == "ana"
    assert result.resolution.outcome.decisions[-1]["reason"] == "checked the account"
    assert deleted(world) == 1 and [c["id"] for c in world.rows("customers")] == [1, 2, 3]
    assert [i.thread_id for i in inbox.items()] == ["b"]


def test_a_reject_link_runs_nothing(links, world):
    result = links.resolve(issued(links, "a")["reject"], "ana")
    decision = result.resolution.outcome.decisions[-1]
    assert result.ok and (decision["decision"], decision["reason"]) == (
        "rejected", "rejected via approval link")
    assert deleted(world) == 0
    assert "rejected by ana" in links.resolve(issued(links, "b")["reject"], "ana").message


def test_resolve_url_takes_the_request_from_the_address(links, inbox, world):
    urls = {t: links.issue(i, "rita") for t, i in by_thread_items(inbox).items()}
    swapped = urls["b"]["approve"].split("?")[0] + "?" + urls["a"]["approve"].split("?")[1]
    result = links.resolve_url(swapped, "ana")  # a's token on b's address
    assert (result.ok, result.reason) == (False, "other_request") and deleted(world) == 0
    assert links.resolve_url(urls["a"]["approve"], "ana").ok and deleted(world) == 1
    assert links.resolve_url(urls["b"]["approve"].split("?")[0], "ana").reason == "malformed"


def by_thread_items(inbox):
    return {item.thread_id: item for item in inbox.items()}


def test_a_replayed_link_and_its_twin_are_refused(links, world):
    tokens = issued(links, "a")
    assert links.resolve(tokens["approve"], "ana").ok
    again = links.resolve(tokens["approve"], "ana")
    twin = links.resolve(tokens["reject"], "bo")
    assert (again.ok, again.reason, twin.ok, twin.reason) == (False, "used", False, "used")
    assert "approved by ana" in again.message
    assert deleted(world) == 1


def test_an_expired_link_is_refused_and_the_request_still_waits(links, world, clock, inbox):
    tokens = issued(links, "a")
    clock.now += 600
    result = links.resolve(tokens["approve"], "ana")
    assert (result.ok, result.reason) == (False, "expired") and "ask for a new one" in \
        result.message
    assert deleted(world) == 0 and len(inbox.items()) == 2
    clock.now -= 1
    assert links.resolve(tokens["approve"], "ana").ok  # one second earlier it was still good


def test_a_link_does_not_outlive_the_approvals_deadline(world, secret, clock, tmp_path):
    deadline = clock.now + 60
    box = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world),
                        deadline_of=lambda thread_id, p: datetime.fromtimestamp(deadline, UTC))
    box.submit("delete customer 4", "a")
    links = ApprovalLinks(box, secret, str(tmp_path / "claims.db"), ttl_s=3600, clock=clock)
    token = token_of(links.issue(box.items()[0], "rita")["approve"])
    clock.now = deadline
    assert links.resolve(token, "ana").reason == "expired" and deleted(world) == 0


def test_a_link_signed_with_another_key_is_refused(links, inbox, tmp_path, clock, world):
    forger = ApprovalLinks(inbox, secrets.token_bytes(32), str(tmp_path / "forger.db"),
                           clock=clock)
    item = inbox.items()[0]
    forged = token_of(forger.issue(item, "rita")["approve"])
    result = links.resolve(forged, "ana")
    assert (result.ok, result.reason) == (False, "bad_signature")
    assert "forged or altered" in result.message and deleted(world) == 0


def tampered(token: str, **changes) -> str:
    body, mac = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    fields.update(changes)
    new_body = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{new_body}.{mac}"


@pytest.mark.parametrize("changes", [
    {"action": "approve"}, {"thread_id": "b"}, {"expires": 2_000_000_000},
    {"requester": "ana"}, {"nonce": "0" * 32}, {"fingerprint": "0" * 64},
])
def test_a_tampered_field_breaks_the_signature(links, world, changes):
    token = issued(links, "a")["reject"]
    result = links.resolve(tampered(token, **changes), "ana")
    assert (result.ok, result.reason) == (False, "bad_signature") and deleted(world) == 0
    assert links.resolve(token, "ana").ok  # the genuine link still works


@pytest.mark.parametrize("token", ["", "nodot", "a.b.c", "!!!.???", None, 42])
def test_a_malformed_token_is_refused(links, token):
    result = links.resolve(token, "ana")
    assert (result.ok, result.reason) == (False, "malformed")


def test_a_signed_token_with_the_wrong_fields_is_refused(links, world):
    token = links.sign({"thread_id": "a", "action": "approve"})
    assert links.resolve(token, "ana").reason == "malformed" and deleted(world) == 0
    good = json.loads(base64.urlsafe_b64decode(
        issued(links, "a")["approve"].split(".")[0] + "=="))
    for bad in ({**good, "action": "delete"}, {**good, "expires": "never"}, {**good, "v": 2}):
        assert links.resolve(links.sign(bad), "ana").reason == "malformed"
    assert deleted(world) == 0


def test_a_link_for_another_request_is_refused(links, inbox, world):
    tokens = issued(links, "a")
    other = next(i for i in inbox.items() if i.thread_id == "b")
    result = links.resolve(tokens["approve"], "ana",
                           for_request=request_id("b", other.interrupt_id))
    assert (result.ok, result.reason) == (False, "other_request") and deleted(world) == 0


def test_a_link_for_a_request_no_longer_pending_or_changed_is_refused(links, inbox, world):
    tokens = issued(links, "a")
    item = next(i for i in inbox.items() if i.thread_id == "a")
    inbox.reject([item], "bo", "decided in the inbox")
    assert links.resolve(tokens["approve"], "ana").reason == "not_pending"
    fields = json.loads(base64.urlsafe_b64decode(issued(links, "b")["approve"].split(".")[0]
                                                 + "=="))
    changed = links.sign({**fields, "fingerprint": "0" * 64})  # validly signed, other args
    result = links.resolve(changed, "ana")
    assert (result.ok, result.reason) == (False, "changed") and deleted(world) == 0


@pytest.mark.parametrize("user", ["rita", " Rita ", "RITA"])
def test_the_requester_cannot_approve_their_own_request(links, world, user):
    result = links.resolve(issued(links, "a", requester="rita")["approve"], user)
    assert (result.ok, result.reason) == (False, "self_approval") and deleted(world) == 0


@pytest.mark.parametrize("user", [None, "", "   "])
def test_nobody_signed_in_is_refused(links, world, user):
    result = links.resolve(issued(links, "a")["approve"], user)
    assert (result.ok, result.reason) == (False, "no_user") and deleted(world) == 0


def test_single_use_holds_across_two_handlers_sharing_the_store(inbox, secret, clock, tmp_path,
                                                                world):
    path = str(tmp_path / "shared-claims.db")
    first = ApprovalLinks(inbox, secret, path, clock=clock)
    second = ApprovalLinks(inbox, secret, path, clock=clock)
    tokens = issued(first, "a")
    assert first.resolve(tokens["approve"], "ana").ok
    refused = second.resolve(tokens["approve"], "bo")
    assert (refused.ok, refused.reason) == (False, "used") and deleted(world) == 1


def test_the_insert_is_what_decides_even_when_both_checked_first(inbox, secret, clock,
                                                                 tmp_path, world, monkeypatch):
    path = str(tmp_path / "shared-claims.db")
    first = ApprovalLinks(inbox, secret, path, clock=clock)
    second = ApprovalLinks(ApprovalInbox(inbox.agent), secret, path, clock=clock)
    tokens = issued(first, "a")
    as_seen = first.inbox.get(*by_thread_items(inbox)["a"].key)
    # Freeze what the second handler checked: it looked just before the first one won.
    monkeypatch.setattr(second, "_claimed", lambda nonce: None)
    monkeypatch.setattr(second.inbox, "get", lambda thread_id, interrupt_id: as_seen)
    assert first.resolve(tokens["approve"], "ana").ok
    refused = second.resolve(tokens["reject"], "bo")
    assert (refused.ok, refused.reason) == (False, "used") and deleted(world) == 1


def test_two_handlers_racing_on_one_link_let_exactly_one_through(world, secret, tmp_path):
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    box = ApprovalInbox(agent)
    handlers = [ApprovalLinks(ApprovalInbox(agent), secret, str(tmp_path / "race.db"))
                for _ in range(2)]  # nothing shared but the agent and the claims file
    trials = 15
    for trial in range(trials):
        box.submit("delete customer 99", f"t{trial}")  # no such customer: it can run often
        token = token_of(handlers[0].issue(box.items()[0], "rita")["approve"])
        start = threading.Barrier(2)
        results = []

        def click(handler, user, token=token, start=start, results=results):
            start.wait()
            results.append(handler.resolve(token, user))

        clicks = [threading.Thread(target=click, args=(h, u))
                  for h, u in zip(handlers, ("ana", "bo"), strict=True)]
        for thread in clicks:
            thread.start()
        for thread in clicks:
            thread.join(timeout=10)
        assert sorted(r.ok for r in results) == [False, True]
    assert deleted(world) == trials  # one execution per link, never two


def test_the_secret_is_required_and_must_be_strong(inbox, tmp_path):
    with pytest.raises(TypeError):
        ApprovalLinks(inbox, claims_path=str(tmp_path / "c.db"))  # no default key exists
    for weak in (b"short", "a text secret that is long enough to pass", b""):
        with pytest.raises(ValueError, match="secrets.token_bytes"):
            ApprovalLinks(inbox, weak, str(tmp_path / "c.db"))


def test_issue_refuses_what_it_cannot_bind(links, inbox):
    with pytest.raises(TypeError):
        links.issue(("a", "some-interrupt"), "rita")
    with pytest.raises(ValueError, match="requester"):
        links.issue(inbox.items()[0], " ")


# -- over HTTP on 127.0.0.1 -----------------------------------------------------------------------

USERS = {"Bearer ana-session": "ana", "Bearer rita-session": "rita"}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def authenticate(headers) -> str | None:
    return USERS.get(headers.get("Authorization", ""))


def fetch(url: str, session: str | None = None, form: dict | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {session}"} if session else {}
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with NO_PROXY.open(urllib.request.Request(url, data=data, headers=headers),
                           timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_http_handler_confirms_on_get_and_acts_only_on_post(world, secret, tmp_path):
    box = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world))
    box.submit(f'send a reply to thread 3 saying "{XSS}"', "x")
    box.submit("delete customer 4", "a")
    links = ApprovalLinks(box, secret, str(tmp_path / "claims.db"))
    with LinkServer(links, authenticate, max_requests=20, lifetime_s=20) as server:
        assert server.url.startswith("http://127.0.0.1:")
        links.base_url = server.url
        reply_item = next(i for i in box.items() if i.thread_id == "x")
        url = links.issue(reply_item, "rita")["approve"]
        path, token = url.split("?")[0], token_of(url)

        status, page = fetch(url, "ana-session")
        assert status == 200 and "Confirm: approve" in page and "method='post'" in page
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert world.calls["send_reply"] == 0  # opening the link did nothing

        assert fetch(path, None, {"token": token})[0] == 401
        assert fetch(path, "rita-session", {"token": token})[0] == 403  # the requester
        status, page = fetch(path, "ana-session", {"token": token, "reason": "fine"})
        assert status == 200 and "approved by ana" in page
        assert world.calls["send_reply"] == 1
        status, page = fetch(path, "ana-session", {"token": token})
        assert status == 409 and "already used" in page

        delete_item = next(i for i in box.items() if i.thread_id == "a")
        delete_token = token_of(links.issue(delete_item, "rita")["approve"])
        status, page = fetch(path, "ana-session", {"token": delete_token})
        assert status == 403 and "another request" in page  # a's token on x's address
        forged = tampered(delete_token, requester="someone")
        delete_path = f"{server.url}/{request_id('a', delete_item.interrupt_id)}"
        assert fetch(delete_path, "ana-session", {"token": forged})[0] == 403
        assert fetch(f"{server.url.rsplit('/', 1)[0]}/elsewhere", "ana-session")[0] == 404
        assert world.calls["delete_customer"] == 0 and world.calls["send_reply"] == 1
    assert not server.running


def test_an_oversized_or_garbled_form_is_refused_unread(world, secret, tmp_path, inbox):
    links = ApprovalLinks(inbox, secret, str(tmp_path / "claims.db"))
    with LinkServer(links, authenticate, max_requests=2, lifetime_s=10) as server:
        host, port = server.url.split("//")[1].split("/")[0].split(":")
        for length in ("10000000", "-1"):
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            connection.putrequest("POST", "/approvals/x")
            connection.putheader("Authorization", "Bearer ana-session")
            connection.putheader("Content-Length", length)
            connection.endheaders()
            assert connection.getresponse().status == 400
            connection.close()
    assert deleted(world) == 0 and len(inbox.items()) == 2


def test_the_server_stops_by_itself(world, secret, tmp_path, inbox):
    links = ApprovalLinks(inbox, secret, str(tmp_path / "claims.db"))
    server = LinkServer(links, authenticate, max_requests=1, lifetime_s=5)
    with server:
        assert fetch(f"{server.url}/nothing", "ana-session")[0] == 400  # no token at all
        assert server.wait(timeout=2)  # one request was its limit
        with pytest.raises(OSError):
            NO_PROXY.open(f"{server.url}/again", timeout=1)
    quiet = LinkServer(links, authenticate, lifetime_s=0.3)
    with quiet:
        assert quiet.wait(timeout=2)  # its lifetime ran out with no request at all
