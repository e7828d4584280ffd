"""Slack: the Block Kit message, and the interactivity endpoint fed exactly what Slack posts
(form-encoded ``payload``, ``X-Slack-Signature``, ``X-Slack-Request-Timestamp``), over HTTP."""

import json
import secrets
import time
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hitl_kit.channels import item_ref
from hitl_kit.fake_slack import FakeSlack
from hitl_kit.server import LocalServer
from hitl_kit.slack import SlackApprovals, message, request_blocks

from .channel_kit import FAST, Forms, client, make_setup, sign_in
from .conftest import AGENT_KINDS

SIGNING_SECRET = secrets.token_hex(16)  # what Slack shows: 32 hex characters


@pytest.fixture(scope="module")
def fake():
    with FakeSlack(SIGNING_SECRET, lifetime_s=300) as slack:
        yield slack


@pytest.fixture
def wired(tmp_path, fake, request):
    """The world, the app with Slack connected, served; the request 'del-4' posted to Slack. On
    the kit's graph, or on the agent kind a test names (``indirect``)."""
    setup = make_setup(tmp_path, {"del-4": "delete customer 4"},
                       kind=getattr(request, "param", "graph"))
    slack = SlackApprovals(setup.inbox, SIGNING_SECRET, setup.directory,
                           client=fake.web_client(),
                           response_url_prefix=fake.response_url_prefix)
    setup.app.slack = slack
    with setup.app.serve(lifetime_s=60, limits=FAST) as server:
        posted = slack.post(setup.item("del-4"), requester="rita")
        yield setup, slack, server, posted


def endpoint(server) -> str:
    return f"{server.url}/slack/interactions"


def post(server, body: bytes, headers: dict) -> httpx.Response:
    return httpx.post(endpoint(server), content=body, headers=headers, trust_env=False,
                      timeout=20)


def buttons(blocks: list[dict]) -> list[str]:
    return [e.get("action_id") for b in blocks if b["type"] == "actions" for e in b["elements"]]


def texts(blocks) -> list[dict]:
    """Every text object in the blocks, nested ones included."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if value.get("type") in ("plain_text", "mrkdwn") and "text" in value:
                found.append(value)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(blocks)
    return found


# -- the message ----------------------------------------------------------------------------------

def test_the_message_shows_what_the_card_shows_and_two_buttons(tmp_path):
    setup = make_setup(tmp_path, {"del-4": "delete customer 4"})
    item = setup.item("del-4")
    blocks = [b.to_dict() for b in request_blocks(item, "rita",
                                                  dashboard_url="http://x/dashboard")]
    shown = " | ".join(t["text"] for t in texts(blocks))
    assert blocks[0]["type"] == "header" and "HIGH risk" in blocks[0]["text"]["text"]
    for text in ("*risk*", "*the agent was asked*", "delete customer 4", "*it wants to run*",
                 "delete_customer", "*with arguments*", '{"customer_id": 4}',
                 "*it would touch*", '"plan": "', "*if you approve*", "*if you reject*",
                 "*why you are asked*", "requested by rita", "thread del-4"):
        assert text in shown, text
    [actions] = [b for b in blocks if b["type"] == "actions"]
    approve, reject, context = actions["elements"]
    assert (approve["action_id"], approve["style"], approve["value"]) == (
        "approve", "primary", item_ref(item))
    assert approve["confirm"]["text"]["text"] == item.request.on_approve
    assert (reject["action_id"], reject["style"], reject["value"]) == (
        "reject", "danger", item_ref(item))
    assert context["url"] == "http://x/dashboard"


def test_untrusted_text_is_plain_text_never_slack_markup(tmp_path):
    sneaky = "<!channel> *now* <https://evil.example|click> :fire: &amp;"
    setup = make_setup(tmp_path, {sneaky: f'send a reply to thread 3 saying "{sneaky}"'})
    setup.world.update_customer(4, "name", sneaky)
    setup.inbox.submit("delete customer 4", "t2")
    for item in setup.inbox.items():
        body = message(item, requester=sneaky)
        for text in texts(body["blocks"]):
            if text["type"] == "mrkdwn":  # only the kit's own labels are read as markup
                assert text["text"].startswith("*") and "<" not in text["text"], text
            else:
                assert text.get("emoji") is False
        assert sneaky in json.dumps(body["blocks"], ensure_ascii=False)  # shown, as text
        assert "<" not in body["text"] or "&lt;" in body["text"]


def test_hidden_characters_are_shown_in_the_message(tmp_path):
    setup = make_setup(tmp_path, {"t": 'send a reply to thread 3 saying "ok\u202e"'})
    body = message(setup.item("t"), requester="ri\u200bta")
    dumped = json.dumps(body, ensure_ascii=False)
    assert "\u202e" not in dumped and "\u200b" not in dumped
    assert "ok\\\\u202e" in dumped and "WARNING" in dumped and "ri\\\\u200bta" in dumped


def test_long_values_are_cut_to_what_slack_accepts(tmp_path):
    setup = make_setup(tmp_path, {"t": "send a reply to thread 3 saying \"" + "x" * 12_000 +
                                       "\""})
    body = message(setup.item("t"), requester="rita")  # to_dict() validates Slack's limits
    assert "chars, cut" in json.dumps(body)


# -- clicks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("wired", AGENT_KINDS, indirect=True)
def test_an_approvers_click_decides_once_and_updates_the_message(wired, fake):
    setup, slack, server, posted = wired
    reply = fake.click(endpoint(server), posted.ts, "U0ANA", "approve")
    assert reply.status_code == 200 and reply.json()["replace_original"] is True
    assert buttons(reply.json()["blocks"]) == []  # the updated message: no buttons left
    assert "Approved by ana in Slack" in reply.json()["text"]
    shown = fake.messages[posted.ts]  # and the same through response_url, as Slack shows it
    assert buttons(shown["blocks"]) == [] and "Approved by ana in Slack" in shown["text"]
    decided = setup.agent.outcome("del-4").decisions[-1]
    assert (decided.decision.approver, decided.decision.channel, decided.verdict) == (
        "ana", "slack", "approved")
    assert setup.world.calls["delete_customer"] == 1


def test_a_reject_click_runs_nothing(wired, fake):
    setup, slack, server, posted = wired
    reply = fake.click(endpoint(server), posted.ts, "U0BO", "reject")
    assert "Rejected by bo in Slack" in reply.json()["text"]
    assert setup.agent.outcome("del-4").decisions[-1].decision.reason == "clicked Reject in Slack"
    assert setup.executed() == 0


def test_a_click_replayed_within_the_window_decides_nothing_more(wired, fake):
    setup, slack, server, posted = wired
    body, headers = fake.click_request(posted.ts, "U0ANA", "approve")
    assert post(server, body, headers).status_code == 200
    replayed = post(server, body, headers)  # the same signed request, sent again
    assert replayed.status_code == 200
    assert "already decided by ana (approved: clicked Approve in Slack) via slack" in \
        replayed.json()["text"]
    bo_late = fake_click_on_old_message(fake, server, body, "U0BO")
    assert "already decided by ana" in bo_late.json()["text"]
    assert setup.world.calls["delete_customer"] == 1


def fake_click_on_old_message(fake, server, body, user_id):
    """Another user clicking the message as it was (before it was updated)."""
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    payload["user"]["id"] = user_id
    return post(server, *signed(payload))


def signed(payload: dict | bytes, at: float | None = None, secret: str = SIGNING_SECRET
           ) -> tuple[bytes, dict]:
    body = payload if isinstance(payload, bytes) else urlencode(
        {"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def test_a_click_outside_the_five_minute_window_is_refused(wired, fake):
    setup, slack, server, posted = wired
    for offset in (-301, +360, -3600, -86400):  # replayed later, or stamped in the future
        body, headers = fake.click_request(posted.ts, "U0ANA", "approve",
                                           at=time.time() + offset)
        reply = post(server, body, headers)
        assert reply.status_code == 401 and "five minutes" in reply.json()["error"], offset
    assert setup.executed() == 0 and buttons(fake.messages[posted.ts]["blocks"])


def test_a_click_just_inside_the_window_is_accepted(wired, fake):
    setup, slack, server, posted = wired
    body, headers = fake.click_request(posted.ts, "U0ANA", "approve", at=time.time() - 280)
    assert post(server, body, headers).status_code == 200 and setup.executed() == 1


def forged_variants(body: bytes, headers: dict) -> list[tuple[str, bytes, dict]]:
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    as_ana = {**payload, "user": {**payload["user"], "id": "U0ANA"}}
    sig, stamp = headers["X-Slack-Signature"], headers["X-Slack-Request-Timestamp"]
    return [
        ("body changed after signing (the user id swapped)",
         urlencode({"payload": json.dumps(as_ana)}).encode(), headers),
        ("signed with another secret", *signed(as_ana, secret=secrets.token_hex(16))),
        ("no signature", body, {k: v for k, v in headers.items() if k != "X-Slack-Signature"}),
        ("no timestamp", body, {k: v for k, v in headers.items()
                                if k != "X-Slack-Request-Timestamp"}),
        ("empty signature", body, {**headers, "X-Slack-Signature": "v0="}),
        ("truncated signature", body, {**headers, "X-Slack-Signature": sig[:-8]}),
        ("another version", body, {**headers, "X-Slack-Signature": "v1=" + sig[3:]}),
        ("timestamp changed", body,
         {**headers, "X-Slack-Request-Timestamp": str(int(stamp) - 1)}),
        ("timestamp not a number", body, {**headers, "X-Slack-Request-Timestamp": "1e9"}),
        ("not UTF-8", b"payload=%FF\xff", headers),
    ]


def test_a_forged_or_altered_request_is_refused_and_nothing_is_called(wired, fake):
    setup, slack, server, posted = wired
    body, headers = fake.click_request(posted.ts, "U0EVE", "approve")  # eve may not approve
    before = list(fake.ephemeral)
    for name, forged_body, forged_headers in forged_variants(body, headers):
        reply = post(server, forged_body, forged_headers)
        assert reply.status_code == 401, name
    assert setup.executed() == 0 and fake.ephemeral == before  # no follow-up to a forger
    assert buttons(fake.messages[posted.ts]["blocks"])


def test_someone_who_is_not_an_approver_is_told_and_nothing_is_decided(wired, fake):
    setup, slack, server, posted = wired
    reply = fake.click(endpoint(server), posted.ts, "U0EVE", "approve")
    assert reply.status_code == 200 and reply.json()["response_type"] == "ephemeral"
    assert "U0EVE is not an allowed approver" in reply.json()["text"]
    assert fake.ephemeral[-1]["text"] == reply.json()["text"]
    assert buttons(fake.messages[posted.ts]["blocks"]) == ["approve", "reject", "open"]
    assert setup.executed() == 0 and setup.agent.pending("del-4")


def test_the_requester_cannot_approve_their_own_request_in_slack(wired, fake):
    setup, slack, server, posted = wired
    reply = fake.click(endpoint(server), posted.ts, "U0RITA", "approve")
    assert reply.json()["response_type"] == "ephemeral"
    assert "rita asked for this task and may not approve its actions; someone else must decide " \
        "it" in reply.json()["text"]
    assert setup.executed() == 0 and buttons(fake.messages[posted.ts]["blocks"])


@pytest.mark.parametrize("wired", AGENT_KINDS, indirect=True)
def test_a_decision_in_another_channel_updates_the_slack_message(wired, fake):
    setup, slack, server, posted = wired
    with client(server) as http:  # bo rejects on the dashboard
        sign_in(http, setup.app, "bo")
        page = http.get("/dashboard").text
        http.post("/dashboard/decide", data={"csrf": Forms(page).value("csrf"),
                                             "kind": "reject", "reason": "not now",
                                             "ref": Forms(page).refs()["del-4"]})
    shown = fake.messages[posted.ts]
    assert buttons(shown["blocks"]) == []
    assert "Decided by bo (rejected: not now) via dashboard" in shown["text"]
    late = fake_click_on_old_message(fake, server, _old_click(fake, posted), "U0ANA")
    assert "already decided by bo" in late.json()["text"] and setup.executed() == 0


def _old_click(fake, posted):
    """A click on the message as first posted (a stale Slack client still shows the buttons)."""
    payload = {"type": "block_actions", "user": {"id": "U0ANA"},
               "response_url": fake.response_url_prefix + posted.ts,
               "actions": [{"action_id": "approve", "value": item_ref(posted.item)}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


NOT_A_CLICK = [
    ({"type": "view_submission", "user": {"id": "U0ANA"}, "actions": []}, 400),
    ({"type": "block_actions", "user": {"id": "U0ANA"}}, 400),
    ({"type": "block_actions", "actions": [{"action_id": "approve"}]}, 400),
    ({"type": "block_actions", "user": {"id": "U0ANA"},
      "actions": [{"action_id": "approve"}, {"action_id": "reject"}]}, 400),
    ([1, 2, 3], 400),
    ({"type": "block_actions", "user": {"id": "U0ANA"},
      "actions": [{"action_id": "open", "value": "x"}]}, 200),
]


def test_signed_payloads_that_are_not_a_click_decide_nothing(wired):
    setup, slack, server, posted = wired
    for payload, status in NOT_A_CLICK:
        assert post(server, *signed(payload)).status_code == status, payload
    assert setup.executed() == 0 and setup.agent.pending("del-4")


def test_a_signed_payload_nested_too_deeply_gets_a_400_with_the_reason(wired):
    """Correctly signed, within the size limit, and nested past what Python's JSON reader can
    follow: before, a 500."""
    setup, slack, server, posted = wired
    payload = ('{"type": "block_actions", "user": {"id": "U0ANA"}, "actions": [], "x": '
               + "[" * 5000 + "]" * 5000 + "}")
    reply = post(server, *signed(urlencode({"payload": payload}).encode()))
    assert reply.status_code == 400 and "nests too deeply" in reply.json()["error"]
    assert setup.executed() == 0 and setup.agent.pending("del-4")


def test_a_signed_click_on_a_garbled_value_is_refused(wired, fake):
    setup, slack, server, posted = wired
    for value in ("not json", '["del-4"]', json.dumps(["del-4", "x", "y"]), "a" * 5000):
        payload = {"type": "block_actions", "user": {"id": "U0ANA"},
                   "actions": [{"action_id": "approve", "value": value}]}
        reply = post(server, *signed(payload))
        assert reply.status_code == 200 and "nothing" in reply.json()["text"].lower(), value
    assert post(server, *signed(b"payload=not-json&x=1")).status_code == 400
    assert post(server, *signed(b"payload={}&payload={}")).status_code == 400
    assert setup.executed() == 0


def test_follow_ups_go_only_to_slacks_own_response_urls(wired, fake):
    setup, slack, server, posted = wired
    hits = []

    async def record(request):
        hits.append(request.url.path)
        return PlainTextResponse("ok")

    with LocalServer(Starlette(routes=[Route("/{p:path}", record, methods=["POST"])]),
                     lifetime_s=30) as elsewhere:
        payload = json.loads(parse_qs(_old_click(fake, posted).decode())["payload"][0])
        payload["response_url"] = f"{elsewhere.url}/steal"  # not under the allowed prefix
        reply = post(server, *signed(payload))
    assert reply.status_code == 200 and setup.executed() == 1
    assert hits == []


@pytest.mark.parametrize("weak", ["0" * 32, "deadbeef" * 4, "0123456789abcdef" * 2, "short",
                                  "a" * 31 + "b", "my-slack-signing-secret-1234567"])
def test_a_weak_signing_secret_is_refused(tmp_path, weak):
    setup = make_setup(tmp_path, {})
    with pytest.raises(ValueError, match="Signing Secret"):
        SlackApprovals(setup.inbox, weak, setup.directory)
    SlackApprovals(setup.inbox, secrets.token_hex(16), setup.directory)  # a real one is fine


def test_posting_needs_a_client(tmp_path):
    setup = make_setup(tmp_path, {"t": "delete customer 4"})
    slack = SlackApprovals(setup.inbox, SIGNING_SECRET, setup.directory)
    with pytest.raises(ValueError, match="WebClient"):
        slack.post(setup.item("t"))


def test_text_read_as_mrkdwn_is_escaped(tmp_path):
    """The notification text and the replies are mrkdwn: a tool name, a reason or a name from
    elsewhere must not become a mention or a link there."""
    setup = make_setup(tmp_path, {"t": "delete customer 4"})
    item = setup.item("t")
    sneaky = item.model_copy(update={"request": item.request.changed(
        tool="<!channel> <https://evil|x> &")})
    body = message(sneaky, requester="rita")
    assert body["text"] == ("Approval needed: &lt;!channel&gt; &lt;https://evil|x&gt; &amp; "
                            "(high risk)")
    decided = message(sneaky, requester="rita", decided="by <@U0ANA> & <!here>")
    assert decided["text"] == "by &lt;@U0ANA&gt; &amp; &lt;!here&gt;"


def test_a_message_names_who_started_the_thread_by_default(wired, fake):
    setup, slack, server, posted = wired
    again = slack.post(setup.item("del-4"))  # no requester given
    context = [b for b in fake.messages[again.ts]["blocks"] if b["type"] == "context"]
    assert context[0]["elements"][0]["text"].startswith("requested by rita · thread del-4")
    button = [b for b in fake.messages[again.ts]["blocks"] if b["type"] == "actions"]
    assert button[0]["elements"][2]["url"].startswith(f"{server.url}/dashboard#r-")
