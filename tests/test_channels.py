"""What the remote channels share: who may approve, who asked, and one decision path whatever
the channel (a decision made in one shows in the others)."""

import secrets

import pytest

from hitl_kit.approval import AlreadyDecided
from hitl_kit.cards import ApprovalCard
from hitl_kit.channels import (
    ApproverDirectory,
    Person,
    check_not_requester,
    decide,
    item_ref,
    parse_ref,
)
from hitl_kit.contract import ApprovalError
from hitl_kit.fake_slack import FakeSlack
from hitl_kit.inbox_widget import InboxWidget
from hitl_kit.slack import SlackApprovals
from hitl_kit.vocabulary import Channel

from .channel_kit import FAST, Forms, client, make_setup, sign_in


@pytest.mark.parametrize(("people", "problem"), [
    ([Person("system")], "keeps for itself"),
    ([Person("Auto")], "keeps for itself"),
    ([Person("ana"), Person("ANA")], "listed twice"),
    ([Person("ana"), Person("\u0430na")], "invisible|mixes scripts"),  # Cyrillic a
    ([Person("ace"), Person("\u0430\u0441\u0435")], "listed twice"),  # асе, all Cyrillic
    ([Person("ana"), Person("ANA")], "listed twice"),
    ([Person("rita"), Person("r\u026ata")], "listed twice"),  # a small capital I
    ([Person("s\u0443stem")], "mixes scripts"),
    ([Person("\u0405\u03a5\u0405\u03a4\u0395\u039c")], "mixes scripts"),
    ([Person("\u0405\u0423\u0405\u0422\u0415\u041c")], "keeps for itself"),  # SYSTEM, Cyrillic
    ([Person("an\u034fa")], "invisible"), ([Person("bo\ufe0f")], "invisible"),
    ([Person("\u3164")], "invisible"),
    ([Person("an\u200ba")], "invisible"),
    ([Person("ana\nbo")], "invisible"),
    ([Person("ana", email="not an address")], "not an email address"),
    ([Person("ana", email="a@x.org"), Person("bo", email="A@X.ORG")], "belongs to two"),
    ([Person("ana", slack_user_id="ana")], "not a Slack user id"),
    ([Person("ana", slack_user_id="U1"), Person("bo", slack_user_id="U1")], "not a Slack"),
    ([Person("ana", slack_user_id="U0A"), Person("bo", slack_user_id="U0A")], "belongs to two"),
    ([], "at least one person"),
])
def test_a_directory_refuses_people_it_could_not_tell_apart(people, problem):
    with pytest.raises(ValueError, match=problem):
        ApproverDirectory(people)


def test_a_directory_finds_people_by_each_channels_identity():
    people = ApproverDirectory([Person("Ana Lopez", email="ana@example.com",
                                       slack_user_id="U024BE7LH"), Person("bo")])
    assert people.by_slack_user("U024BE7LH").name == "Ana Lopez"
    assert people.by_email(" ANA@example.com ").name == "Ana Lopez"
    assert people.find("ana  LOPEZ").name == "Ana Lopez"
    assert people.by_slack_user("U0EVE") is None and people.by_email("eve@x.org") is None
    assert people.by_slack_user(None) is None and people.find(None) is None
    with pytest.raises(ApprovalError, match="'eve' is not an allowed approver; the approvers "
                                            "are Ana Lopez, bo"):
        people.require("eve")


@pytest.mark.parametrize(("approver", "requester", "same"), [
    ("rita", "rita", True), ("Rita", " RITA ", True), ("ＲＩＴＡ", "rita", True),
    ("rit\u0430", "rita", True), ("ΡΙΤΑ", "PITA", True), ("ri\u200bta", "rita", True),
    ("r\u026ata", "rita", True), ("\u0422\u041e\u041c", "Tom", True),  # ТОМ in Cyrillic
    ("rita", "\u0280ita", True),  # a small capital R: ʀita in capitals is RITA
    ("rita", "ritb", False), ("ana", "anna", False), ("ana", None, False),
])
def test_the_requester_may_not_decide_in_any_spelling(approver, requester, same):
    if same:
        with pytest.raises(ApprovalError, match="someone else must decide"):
            check_not_requester(approver, requester)
    else:
        check_not_requester(approver, requester)


@pytest.mark.parametrize("requester", ["ri\u200bta", "rit\u0430", "ri\u034fta", "rita\ufe0f",
                                       "\u3164rita"])
def test_a_requester_name_that_cannot_be_compared_stops_every_decision(requester):
    with pytest.raises(ApprovalError, match="nothing is decided through this channel"):
        check_not_requester("bo", requester)


@pytest.mark.parametrize("text", [None, 3, "", "nope", "[]", '["a","b"]', '["a","b",3]',
                                  '["a","","c"]', "[" * 2000, '{"a": 1}'])
def test_a_garbled_reference_is_refused(text):
    with pytest.raises(ApprovalError, match="not a reference"):
        parse_ref(text)


def test_decide_refuses_what_people_do_not_answer(tmp_path):
    setup = make_setup(tmp_path, {"t": "delete customer 4"})
    for kind in ("edit", "timeout", "proceed", "yes"):
        with pytest.raises(ApprovalError, match="approve or reject"):
            decide(setup.inbox, [item_ref(setup.item("t"))], kind, "ana", "", Channel.SLACK)
    assert setup.executed() == 0


def test_a_decision_in_one_channel_shows_in_every_other(tmp_path):
    """Slack decides; the dashboard, the links, the inbox widget and the card all see it, and
    none of them can decide again."""
    setup = make_setup(tmp_path, {"t": "delete customer 4"})
    signing = secrets.token_hex(16)
    item = setup.item("t")
    widget = InboxWidget(setup.inbox, approver="bo")
    card = ApprovalCard(setup.agent, "t", setup.agent.pending("t")[0], approver="bo")
    with FakeSlack(signing, lifetime_s=60) as fake:
        slack = SlackApprovals(setup.inbox, signing, setup.directory, client=fake.web_client(),
                               response_url_prefix=fake.response_url_prefix)
        setup.app.slack = slack
        with setup.app.serve(lifetime_s=60, limits=FAST) as server, client(server) as http:
            posted = slack.post(item, requester="rita")
            urls = setup.links.issue(item, requester="rita", approver="bo")
            sign_in(http, setup.app, "bo")
            stale_dashboard = http.get("/dashboard").text
            assert fake.click(f"{server.url}/slack/interactions", posted.ts, "U0ANA",
                              "approve").status_code == 200

            assert "Nothing waits for approval" in http.get("/dashboard").text
            page = http.get(urls["reject"])
            assert page.status_code == 409 and "decided by ana via slack" in page.text
            form = Forms(stale_dashboard)
            late = http.post("/dashboard/decide", data={"csrf": form.value("csrf"),
                                                        "kind": "reject",
                                                        "ref": form.refs()["t"]},
                            follow_redirects=True)
            assert "already decided by ana (approved: clicked Approve in Slack) via slack" in \
                late.text
    widget.refresh()
    assert widget.rows[0].done and "answered elsewhere" in widget.rows[0].result.value
    card.reject.click()
    assert "Not applied</b>: this request was already approved by ana" in card.status.value
    with pytest.raises(AlreadyDecided, match="ana"):
        setup.agent.resume("t", {item.interrupt_id: {"kind": "reject", "approver": "bo"}})
    claims = setup.agent.ledger.claims.listed("t")
    assert [(c.decision.approver, c.decision.kind, c.decision.channel) for c in claims] == [
        ("ana", "approve", "slack")]
    assert setup.world.calls["delete_customer"] == 1


def test_an_answer_is_bound_to_the_fingerprint_it_was_shown_with(tmp_path):
    setup = make_setup(tmp_path, {"t": "delete customer 4"})
    item = setup.item("t")
    (answer,) = decide(setup.inbox, [(item.thread_id, item.interrupt_id, "0" * 16)], "approve",
                       "ana", "", Channel.DASHBOARD)
    assert not answer.ok and answer.message.startswith("changed since you saw it")
    assert setup.executed() == 0 and setup.agent.pending("t")
    (answer,) = decide(setup.inbox, [item_ref(item)], "approve", "ana", "", Channel.DASHBOARD)
    assert answer.ok and setup.executed() == 1
