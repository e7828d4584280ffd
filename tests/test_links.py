"""Approval links: signed, addressed, single-use, expiring; every bad link refused, nothing run."""

import base64
import json
import secrets
import threading
import urllib.parse
import zlib
from datetime import UTC, datetime

import pytest

from hitl_kit.approval import ApprovalAgent, ApprovalError
from hitl_kit.channels import ApproverDirectory, Person
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.links import ApprovalLinks, request_id
from hitl_kit.llm import OfflineChatModel

from .conftest import AGENT_KINDS, agent_of_kind


class FakeClock:
    def __init__(self, now: float = 1_900_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def agent(world, request):
    """The kit's graph, or the agent kind a test names (``indirect``)."""
    return agent_of_kind(getattr(request, "param", "graph"))(OfflineChatModel(), world.tools(),
                                                            world=world)


@pytest.fixture
def inbox(agent):
    box = ApprovalInbox(agent)
    box.submit("delete customer 4", "a", requested_by="rita")
    box.submit("delete customer 2", "b", requested_by="rita")
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


def item_for(links, thread_id):
    return next(i for i in links.inbox.items() if i.thread_id == thread_id)


def issued(links, thread_id: str, requester: str = "rita", approver: str = "ana"
           ) -> dict[str, str]:
    urls = links.issue(item_for(links, thread_id), requester=requester, approver=approver)
    return {action: token_of(url) for action, url in urls.items()}


def deleted(world) -> int:
    return world.calls["delete_customer"]


def fields_of(token: str) -> dict:
    body = token.rsplit(".", 1)[0]
    raw = base64.urlsafe_b64decode(body.lstrip(".") + "=" * (-len(body.lstrip(".")) % 4))
    return json.loads(zlib.decompress(raw) if body.startswith(".") else raw)


def test_issue_gives_an_approve_and_a_reject_link_for_the_request(links, inbox):
    item = item_for(links, "a")
    urls = links.issue(item, requester="rita", approver="ana")
    assert set(urls) == {"approve", "reject"}
    for url in urls.values():
        assert url.startswith(f"http://127.0.0.1/links/{request_id('a', item.interrupt_id)}?token=")
        assert request_id("a", item.interrupt_id) == f"YQ.{item.interrupt_id}"  # base64url of a
    assert token_of(urls["approve"]) != token_of(urls["reject"])
    assert fields_of(token_of(urls["approve"]))["approver"] == "ana"


@pytest.mark.parametrize("agent", AGENT_KINDS, indirect=True)
def test_a_link_resolves_its_request_once_as_its_approver(links, world, inbox, agent):
    tokens = issued(links, "a")
    result = links.resolve(tokens["approve"], "checked the account")
    assert result.ok and result.reason == "executed" and result.approver == "ana"
    decided = agent.outcome("a").decisions[-1]
    assert (decided.decision.approver, decided.decision.reason, decided.decision.channel) == (
        "ana", "checked the account", "link")
    assert deleted(world) == 1 and [c["id"] for c in world.rows("customers")] == [1, 2, 3]
    assert [i.thread_id for i in inbox.items()] == ["b"]


def test_a_reject_link_runs_nothing(links, world, agent):
    result = links.resolve(issued(links, "a")["reject"])
    decided = agent.outcome("a").decisions[-1]
    assert result.ok and (decided.verdict, decided.decision.reason) == (
        "rejected", "rejected via approval link")
    assert deleted(world) == 0
    assert "rejected by ana" in links.resolve(issued(links, "b")["reject"]).message


def test_resolve_url_takes_the_request_from_the_address(links, world):
    urls = {t: links.issue(item_for(links, t), requester="rita", approver="ana")
            for t in ("a", "b")}
    swapped = urls["b"]["approve"].split("?")[0] + "?" + urls["a"]["approve"].split("?")[1]
    result = links.resolve_url(swapped)  # a's token on b's address
    assert (result.ok, result.reason) == (False, "other_request") and deleted(world) == 0
    assert links.resolve_url(urls["a"]["approve"]).ok and deleted(world) == 1
    assert links.resolve_url(urls["b"]["approve"].split("?")[0]).reason == "malformed"


def test_a_replayed_link_and_its_twin_are_refused(links, world):
    tokens = issued(links, "a")
    assert links.resolve(tokens["approve"]).ok
    again, twin = links.resolve(tokens["approve"]), links.resolve(tokens["reject"])
    assert (again.ok, again.reason, twin.ok, twin.reason) == (False, "used", False, "used")
    assert "approved by ana" in again.message
    assert deleted(world) == 1


def test_an_expired_link_is_refused_and_the_request_still_waits(links, world, clock, inbox):
    tokens = issued(links, "a")
    clock.now += 600
    result = links.resolve(tokens["approve"])
    assert (result.ok, result.reason) == (False, "expired")
    assert "ask for a new one" in result.message
    assert deleted(world) == 0 and len(inbox.items()) == 2
    clock.now -= 1
    assert links.resolve(tokens["approve"]).ok  # one second earlier it was still good


def test_a_link_does_not_outlive_the_approvals_deadline(world, secret, clock, tmp_path):
    deadline = clock.now + 60
    box = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world),
                        deadline_of=lambda p: datetime.fromtimestamp(deadline, UTC))
    box.submit("delete customer 4", "a")
    links = ApprovalLinks(box, secret, str(tmp_path / "claims.db"), ttl_s=3600, clock=clock)
    token = token_of(links.issue(box.items()[0], requester="rita", approver="ana")["approve"])
    clock.now = deadline
    assert links.resolve(token).reason == "expired" and deleted(world) == 0


def test_a_link_signed_with_another_key_is_refused(links, inbox, tmp_path, clock, world):
    forger = ApprovalLinks(inbox, secrets.token_bytes(32), str(tmp_path / "forger.db"),
                           clock=clock)
    forged = token_of(forger.issue(item_for(links, "a"), requester="rita",
                                   approver="ana")["approve"])
    result = links.resolve(forged)
    assert (result.ok, result.reason) == (False, "bad_signature")
    assert "forged" in result.message and deleted(world) == 0


def resigned_body(token: str, **changes) -> str:
    """The token's signed part with fields changed, re-encoded, keeping the old signature."""
    fields = {**fields_of(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{body}.{token.rsplit('.', 1)[1]}"


@pytest.mark.parametrize("changes", [
    {"action": "approve"}, {"thread_id": "b"}, {"expires": 2_000_000_000},
    {"requester": "ana"}, {"approver": "bo"}, {"nonce": "0" * 32}, {"fingerprint": "0" * 16},
])
def test_a_tampered_field_breaks_the_signature(links, world, changes):
    token = issued(links, "a")["reject"]
    result = links.resolve(resigned_body(token, **changes))
    assert (result.ok, result.reason) == (False, "bad_signature") and deleted(world) == 0
    assert links.resolve(token).ok  # the genuine link still works


def test_an_empty_or_truncated_signature_is_refused(links, world):
    """A verifier that compared only the bytes it was given, or accepted no MAC at all, would
    let anyone sign anything: `body.` with nothing after the dot must fail like a forgery."""
    token = issued(links, "a")["approve"]
    body, mac = token.rsplit(".", 1)
    for cut in ("", mac[:1], mac[:8], mac[:-1], mac[:-4], mac + "A", mac[::-1]):
        result = links.resolve(f"{body}.{cut}")
        assert (result.ok, result.reason) == (False, "bad_signature"), cut
    assert deleted(world) == 0
    assert links.resolve(token).ok and deleted(world) == 1  # the whole signature works


@pytest.mark.parametrize("token", ["", "nodot", "!!!.???", "é.x", None, 42, "a." * 3000])
def test_a_malformed_token_is_refused(links, token):
    result = links.resolve(token)
    assert not result.ok and result.reason in ("malformed", "bad_signature")


def test_a_signed_token_with_the_wrong_fields_is_refused(links, world):
    assert links.resolve(links.sign({"thread_id": "a", "action": "approve"})).reason == \
        "malformed"
    good = fields_of(issued(links, "a")["approve"])
    for bad in ({**good, "action": "delete"}, {**good, "expires": "never"}, {**good, "v": 1},
                {**good, "extra": 1}, [good]):
        assert links.resolve(links.sign(bad)).reason == "malformed"
    assert deleted(world) == 0


def test_a_link_for_another_request_is_refused(links, world):
    tokens = issued(links, "a")
    other = item_for(links, "b")
    result = links.resolve(tokens["approve"], for_request=request_id("b", other.interrupt_id))
    assert (result.ok, result.reason) == (False, "other_request") and deleted(world) == 0


def test_a_link_for_a_request_decided_elsewhere_or_changed_is_refused(links, inbox, world):
    tokens = issued(links, "a")
    inbox.reject([item_for(links, "a")], "bo", "decided in the inbox")
    result = links.resolve(tokens["approve"])
    assert result.reason == "not_pending" and "decided by bo via inbox" in result.message
    fields = fields_of(issued(links, "b")["approve"])
    changed = links.sign({**fields, "fingerprint": "0" * 16})  # validly signed, other request
    result = links.resolve(changed)
    assert (result.ok, result.reason) == (False, "changed") and deleted(world) == 0


@pytest.mark.parametrize("approver", ["rita", " Rita ", "RITA", "ＲＩＴＡ", "rit\u0430"])
def test_the_requester_cannot_be_sent_their_own_request(links, world, approver):
    with pytest.raises(ValueError, match="someone else must decide|mixes scripts"):
        issued(links, "a", requester="rita", approver=approver)
    signed = links.sign({**fields_of(issued(links, "a")["approve"]), "approver": approver})
    result = links.resolve(signed)  # a validly signed link that names the requester anyway
    assert (result.ok, result.reason) == (False, "self_approval") and deleted(world) == 0


@pytest.mark.parametrize("name", ["rita\u200b", "ri\u202eta", "ri\nta", "", "   "])
def test_names_with_hidden_characters_are_refused_outright(links, name):
    with pytest.raises(ValueError, match="invisible|non-empty"):
        issued(links, "a", requester=name)
    with pytest.raises(ValueError, match="invisible|non-empty"):
        issued(links, "a", approver=name)


def test_a_requester_recorded_under_another_spelling_cannot_use_a_link(agent, secret, tmp_path,
                                                                        world):
    box = ApprovalInbox(agent)
    with pytest.raises(ApprovalError, match="invisible"):  # a task's requester is a plain name
        box.submit("delete customer 4", "z", requested_by="rita\u200b")
    box.submit("delete customer 4", "z", requested_by="RITA")  # how the thread was started
    links = ApprovalLinks(box, secret, str(tmp_path / "claims.db"))
    token = token_of(links.issue(box.items()[0], requester="someone", approver="rita")
                     ["approve"])
    result = links.resolve(token)
    assert (result.ok, result.reason) == (False, "refused") and deleted(world) == 0
    assert "someone else must decide" in result.message


def test_a_directory_limits_who_links_go_to(inbox, secret, tmp_path, world):
    people = ApproverDirectory([Person("ana", email="ana@example.com")])
    links = ApprovalLinks(inbox, secret, str(tmp_path / "c.db"), directory=people)
    with pytest.raises(ValueError, match="not an allowed approver"):
        links.issue(item_for(links, "a"), requester="rita", approver="eve")
    token = token_of(links.issue(item_for(links, "a"), requester="rita", approver="ANA")
                     ["approve"])
    assert fields_of(token)["approver"] == "ana"  # the directory's spelling
    stricter = ApprovalLinks(inbox, secret, str(tmp_path / "c.db"),
                             directory=ApproverDirectory([Person("bo")]))
    result = stricter.resolve(token)  # ana left the approvers after the mail went out
    assert (result.ok, result.reason) == (False, "not_allowed") and deleted(world) == 0
    assert links.resolve(token).ok


def test_single_use_holds_across_two_handlers_sharing_the_store(inbox, secret, clock, tmp_path,
                                                                world):
    path = str(tmp_path / "shared-claims.db")
    first = ApprovalLinks(inbox, secret, path, clock=clock)
    second = ApprovalLinks(inbox, secret, path, clock=clock)
    tokens = issued(first, "a")
    assert first.resolve(tokens["approve"]).ok
    refused = second.resolve(tokens["approve"])
    assert (refused.ok, refused.reason) == (False, "used") and deleted(world) == 1


def test_the_insert_is_what_decides_even_when_both_checked_first(inbox, secret, clock,
                                                                 tmp_path, world, monkeypatch):
    path = str(tmp_path / "shared-claims.db")
    first = ApprovalLinks(inbox, secret, path, clock=clock)
    second = ApprovalLinks(ApprovalInbox(inbox.agent), secret, path, clock=clock)
    tokens = issued(first, "a")
    as_seen = item_for(first, "a")
    # Freeze what the second handler checked: it looked just before the first one won.
    monkeypatch.setattr(second, "_claimed", lambda nonce: None)
    monkeypatch.setattr(second.inbox, "get", lambda thread_id, interrupt_id: as_seen)
    assert first.resolve(tokens["approve"]).ok
    refused = second.resolve(tokens["reject"])
    assert (refused.ok, refused.reason) == (False, "used") and deleted(world) == 1


@pytest.mark.parametrize("agent", AGENT_KINDS, indirect=True)
def test_two_handlers_racing_on_one_link_let_exactly_one_through(agent, world, secret,
                                                                 tmp_path):
    box = ApprovalInbox(agent)
    handlers = [ApprovalLinks(ApprovalInbox(agent), secret, str(tmp_path / "race.db"))
                for _ in range(2)]  # nothing shared but the agent and the claims file
    trials = 10
    for trial in range(trials):
        box.submit("delete customer 99", f"t{trial}")  # no such customer: it can run often
        token = token_of(handlers[0].issue(box.items()[0], requester="rita",
                                           approver="ana")["approve"])
        start = threading.Barrier(2)
        results = []

        def click(handler, token=token, start=start, results=results):
            start.wait()
            results.append(handler.resolve(token))

        clicks = [threading.Thread(target=click, args=(h,)) for h in handlers]
        for thread in clicks:
            thread.start()
        for thread in clicks:
            thread.join(timeout=60)
        assert sorted(r.ok for r in results) == [False, True]
    assert deleted(world) == trials  # one execution per link, never two


WEAK_SECRETS = [bytes(32), b"\xff" * 64, b"\x00\x01" * 16, bytes(range(32)),
                bytes([0, 1, 2, 3]) * 8, b"\x00" * 31 + b"\x01", b"password" * 4,
                b"my-app-signing-secret-0123456789", b"qwertyuiopasdfghjklzxcvbnm123456",
                bytes([7, 0, 7, 7, 0, 0, 7, 0, 0, 7, 7, 7, 0, 7, 0, 0] * 2 + [7, 0])]


@pytest.mark.parametrize("weak", WEAK_SECRETS, ids=lambda s: s[:6].hex())
def test_a_low_entropy_secret_is_refused_with_a_reason(inbox, tmp_path, weak):
    with pytest.raises(ValueError, match="too weak to sign with: it .*secrets.token_bytes"):
        ApprovalLinks(inbox, weak, str(tmp_path / "c.db"))


def test_the_secret_is_required_bytes_and_long_enough(inbox, tmp_path):
    with pytest.raises(TypeError):
        ApprovalLinks(inbox, claims_path=str(tmp_path / "c.db"))  # no default key exists
    for bad in (b"short", "a text secret that is long enough to pass", b""):
        with pytest.raises(ValueError, match="secrets.token_bytes"):
            ApprovalLinks(inbox, bad, str(tmp_path / "c.db"))
    for _ in range(200):  # and random secrets are never refused
        ApprovalLinks(inbox, secrets.token_bytes(32), ":memory:")


def test_issue_refuses_what_it_cannot_bind(links):
    with pytest.raises(TypeError):
        links.issue(("a", "some-interrupt"), requester="rita", approver="ana")
