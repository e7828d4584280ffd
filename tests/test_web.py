"""The approvals web app over HTTP: the dashboard and the approval-link pages, each decision once,
every form protected, no untrusted text ever rendered as markup."""

import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest

from hitl_kit.approval import ApprovalAgent
from hitl_kit.channels import Person
from hitl_kit.contract import ApprovalError
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.llm import OfflineChatModel
from hitl_kit.web import ApprovalsApp, templates
from hitl_kit.world import World

from .channel_kit import FAST, Forms, client, make_setup, message_of, results, sign_in
from .conftest import AGENT_KINDS, ROOT


@pytest.fixture
def setup(tmp_path, request):
    """The channels on the kit's graph, or on the agent kind a test names (``indirect``)."""
    return make_setup(tmp_path, kind=getattr(request, "param", "graph"))


@pytest.fixture
def served(setup):
    with setup.app.serve(lifetime_s=60, limits=FAST) as server, client(server) as http:
        yield setup, server, http


def decide_on_dashboard(http, refs, kind, reason="", csrf=None, **headers):
    page = http.get("/dashboard").text
    data = {"csrf": csrf if csrf is not None else Forms(page).value("csrf"), "kind": kind,
            "reason": reason, "ref": refs}
    return http.post("/dashboard/decide", data=data, headers=headers, follow_redirects=True)


# -- signing in -----------------------------------------------------------------------------------

def test_the_dashboard_needs_a_valid_sign_in_key(served):
    setup, server, http = served
    assert http.get("/dashboard").headers["location"] == "/login"
    assert http.get("/").headers["location"] == "/dashboard"
    refused = http.post("/login", data={"key": "guessed"})
    assert refused.status_code == 403 and "not valid" in refused.text
    with pytest.raises(ValueError, match="not an allowed approver"):
        setup.app.sign_in_key("eve")
    sign_in(http, setup.app, "ana")
    page = http.get("/dashboard")
    assert page.status_code == 200 and "signed in as <b>ana</b>" in page.text
    cookie = page.request.headers["cookie"]
    assert "hitl_session=" in cookie


def test_signing_out_ends_the_session(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    session = http.cookies["hitl_session"]
    csrf = Forms(http.get("/dashboard").text).value("csrf")
    assert http.post("/logout", data={"csrf": csrf}).headers["location"] == "/login"
    http.cookies.set("hitl_session", session)  # the old cookie, kept by someone
    assert http.get("/dashboard").headers["location"] == "/login"


def test_a_session_cookie_cannot_be_made_up(served):
    setup, server, http = served
    http.cookies.set("hitl_session", "ana")
    assert http.get("/dashboard").status_code == 303
    other = ApprovalsApp(setup.inbox, secret=secrets.token_bytes(32), directory=setup.directory)
    http.cookies.set("hitl_session", other._session_signer.dumps("some-session"))
    assert http.get("/dashboard").status_code == 303


# -- the dashboard --------------------------------------------------------------------------------

def test_the_dashboard_lists_every_pending_request_with_its_context(tmp_path):
    setup = make_setup(tmp_path)
    deadline = datetime.now(UTC) + timedelta(minutes=7)
    setup.app.inbox = ApprovalInbox(setup.agent, deadline_of=lambda p: deadline
                                    if p.thread_id == "reply" else None)
    with setup.app.serve(lifetime_s=60, limits=FAST) as server, client(server) as http:
        sign_in(http, setup.app, "ana")
        page = http.get("/dashboard").text
    assert "3 approval(s) waiting" in page
    assert set(Forms(page).refs()) == {"del-4", "del-2", "reply"}
    for text in ("HIGH", "MEDIUM", "delete_customer", "send_reply", "delete customer 4",
                 "by rita", "thread del-4", "waiting ", "deadline in 6 min",
                 "it would touch", "&#34;plan&#34;: &#34;", "if you approve", "if you reject",
                 "why you are asked", "full context"):
        assert text in page, text


@pytest.mark.parametrize("setup", AGENT_KINDS, indirect=True)
def test_bulk_approve_and_reject_give_one_result_per_request(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    refs = Forms(http.get("/dashboard").text).refs()
    reply = decide_on_dashboard(http, [refs["del-4"], refs["reply"]], "approve", "checked")
    assert reply.status_code == 200
    assert results(reply.text) == {
        "del-4": "ok: approved by ana; thread finished",
        "reply": "ok: approved by ana; thread finished"}
    assert "2 of 2 went through" in reply.text and "1 approval(s) waiting" in reply.text
    decided = setup.agent.outcome("del-4").decisions[-1]
    assert (decided.decision.approver, decided.decision.reason, decided.decision.channel) == (
        "ana", "checked", "dashboard")
    reply = decide_on_dashboard(http, [refs["del-2"]], "reject", "not this one")
    assert results(reply.text) == {"del-2": "ok: rejected by ana; thread finished"}
    assert setup.world.calls["delete_customer"] == 1 and setup.world.calls["send_reply"] == 1
    assert "Nothing waits for approval" in reply.text


def test_submitting_the_same_form_twice_decides_nothing_twice(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    page = http.get("/dashboard").text
    form = {"csrf": Forms(page).value("csrf"), "kind": "approve", "reason": "",
            "ref": list(Forms(page).refs().values())}
    first = http.post("/dashboard/decide", data=form, follow_redirects=True)
    second = http.post("/dashboard/decide", data=form, follow_redirects=True)  # a double click
    assert all(r.startswith("ok:") for r in results(first.text).values())
    assert set(results(second.text)) == {"del-4", "del-2", "reply"}
    for outcome in results(second.text).values():
        assert outcome.startswith("refused: already decided by ana (approved) via dashboard")
    assert setup.executed() == 3


def test_deciding_redirects_to_the_dashboard_and_a_reload_decides_nothing(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    page = http.get("/dashboard").text
    form = {"csrf": Forms(page).value("csrf"), "kind": "approve", "reason": "",
            "ref": [Forms(page).refs()["del-4"]]}
    posted = http.post("/dashboard/decide", data=form)
    assert posted.status_code == 303 and posted.headers["location"] == "/dashboard#results"
    shown = http.get("/dashboard")
    assert results(shown.text) == {"del-4": "ok: approved by ana; thread finished"}
    reloaded = http.get("/dashboard")  # what a browser's reload of that page sends
    assert results(reloaded.text) == {} and "Last action" not in reloaded.text
    assert setup.executed() == 1 and "2 approval(s) waiting" in reloaded.text
    other = client(server)  # another approver's session never sees ana's results
    sign_in(other, setup.app, "bo")
    assert results(other.get("/dashboard").text) == {}


def test_a_request_without_a_requester_says_who_asked_is_not_recorded(tmp_path):
    setup = make_setup(tmp_path, {"t": "delete customer 4"}, requester=None)
    with setup.app.serve(lifetime_s=60, limits=FAST) as server, client(server) as http:
        sign_in(http, setup.app, "ana")
        page = http.get("/dashboard").text
    assert "who asked is not recorded" in page and "by nobody" not in page


def test_the_dashboard_shows_times_as_people_read_them(tmp_path):
    """No ISO timestamp with microseconds: the request's expiry reads as a time and how far."""
    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, approval_ttl=3600)
    setup = make_setup(tmp_path, {"t": "delete customer 4"}, world=world)
    setup.app.inbox = ApprovalInbox(agent)
    setup.app.inbox.submit("delete customer 2", "ttl")
    with setup.app.serve(lifetime_s=60, limits=FAST) as server, client(server) as http:
        sign_in(http, setup.app, "ana")
        page = http.get("/dashboard").text
    assert re.search(r"request expires</th><td><pre>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                     r"\(in (59 min|1 h)\)", page), page
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", page) and not re.search(r"\dT\d\d:", page)


def test_a_request_decided_in_another_channel_says_who_decided(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    refs = Forms(http.get("/dashboard").text).refs()
    setup.inbox.reject([setup.item("del-4")], "bo", "keep them")  # meanwhile, in Jupyter
    assert "del-4" not in Forms(http.get("/dashboard").text).refs()
    reply = decide_on_dashboard(http, [refs["del-4"], refs["del-2"]], "approve")
    assert results(reply.text)["del-4"].startswith(
        "refused: already decided by bo (rejected: keep them) via inbox")
    assert not re.search(r"\d\dT\d\d:", reply.text), "a person reads no ISO timestamps"
    assert results(reply.text)["del-2"].startswith("ok: approved by ana")
    assert setup.world.calls["delete_customer"] == 1


@pytest.mark.parametrize("setup", AGENT_KINDS, indirect=True)
def test_a_request_whose_record_changed_is_refused_and_shown_again(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    refs = Forms(http.get("/dashboard").text).refs()
    setup.world.update_customer(4, "plan", "enterprise")  # after ana looked
    reply = decide_on_dashboard(http, [refs["del-4"]], "approve")
    assert results(reply.text)["del-4"].startswith("refused: refused, nothing ran: what it "
                                                   "would touch changed")
    assert setup.world.calls["delete_customer"] == 0
    new_ref = Forms(reply.text).refs()["del-4"]
    assert new_ref != refs["del-4"] and "enterprise" in reply.text
    stale = decide_on_dashboard(http, [refs["del-4"]], "approve")  # the old page, again
    assert results(stale.text)["del-4"].startswith("refused: changed since you saw it")
    assert setup.world.calls["delete_customer"] == 0
    assert results(decide_on_dashboard(http, [new_ref], "approve").text)["del-4"].startswith(
        "ok: approved by ana")  # what ana now saw


def test_the_requester_cannot_approve_on_the_dashboard(served):
    setup, server, http = served
    sign_in(http, setup.app, "rita")
    refs = Forms(http.get("/dashboard").text).refs()
    reply = decide_on_dashboard(http, [refs["del-4"]], "approve")
    assert results(reply.text)["del-4"] == (
        "refused: refused, nothing ran: rita asked for this task and may not approve its "
        "actions; someone else must decide it; nothing was applied")
    assert setup.executed() == 0


def test_the_requester_in_any_spelling_cannot_approve(tmp_path):
    spellings = ["RITA", "ＲＩＴＡ", "r\u026ata", "\u0280ita"]
    setup = make_setup(tmp_path, {})
    for unusable in ("rit\u0430", "rita\u200b"):  # a requester is a name that can be compared
        with pytest.raises(ApprovalError, match="mixes scripts|invisible"):
            setup.inbox.submit("delete customer 1", "refused", requested_by=unusable)
    for n, requested_by in enumerate(spellings):
        setup.inbox.submit(f"delete customer {n + 1}", f"t{n}", requested_by=requested_by)
    with setup.app.serve(lifetime_s=60, limits=FAST) as server, client(server) as http:
        sign_in(http, setup.app, "rita")
        refs = Forms(http.get("/dashboard").text).refs()
        reply = decide_on_dashboard(http, list(refs.values()), "approve")
    outcomes = results(reply.text)
    assert len(outcomes) == len(spellings)
    assert all(o.startswith("refused: refused, nothing ran") and "someone else must decide"
               in o for o in outcomes.values()), outcomes
    assert setup.executed() == 0


def test_bad_dashboard_posts_are_refused_and_decide_nothing(served):
    setup, server, http = served
    sign_in(http, setup.app, "ana")
    refs = list(Forms(http.get("/dashboard").text).refs().values())
    assert decide_on_dashboard(http, refs, "approve", csrf="").status_code == 403
    assert decide_on_dashboard(http, refs, "approve", csrf="forged.token").status_code == 403
    other = client(server)
    sign_in(other, setup.app, "bo")
    bos_csrf = Forms(other.get("/dashboard").text).value("csrf")
    assert decide_on_dashboard(http, refs, "approve", csrf=bos_csrf).status_code == 403
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"referer": "http://evil.example/x"}, {"sec-fetch-site": "cross-site"},
                    {"sec-fetch-site": "same-site", "origin": server.url}):
        assert decide_on_dashboard(http, refs, "approve", **headers).status_code == 403
    same = decide_on_dashboard(http, [], "approve", **{"sec-fetch-site": "same-origin"})
    assert same.status_code == 400  # let through to the form's own checks
    assert decide_on_dashboard(http, refs, "edit").status_code == 400
    assert decide_on_dashboard(http, [], "approve").status_code == 400
    assert decide_on_dashboard(http, ['["x","y"]'], "approve").status_code == 400
    too_long = decide_on_dashboard(http, refs[:1], "reject", "x" * 5000)
    assert too_long.status_code == 400 and "keep it under 2,000" in too_long.text
    assert http.post("/dashboard/decide", data={"ref": refs}).status_code == 403
    assert client(server).post("/dashboard/decide", data={"ref": refs}).status_code == 401
    assert setup.executed() == 0 and len(setup.inbox.items()) == 3


# -- approval links -------------------------------------------------------------------------------

def link_urls(setup, thread_id="del-4", approver="ana"):
    return setup.links.issue(setup.item(thread_id), requester="rita", approver=approver)


def confirm_form(page: str) -> dict:
    forms = Forms(page)
    return {"action": forms.forms[-1]["action"], "token": forms.value("token"),
            "csrf": forms.value("csrf")}


def test_opening_a_link_shows_a_confirm_page_and_decides_nothing(served):
    setup, server, http = served
    url = link_urls(setup)["approve"]
    assert url.startswith(f"{server.url}/links/ZGVsLTQ.")  # base64url of the thread id
    for _ in range(3):  # a mail scanner, a preview, the approver: all only look
        page = http.get(url)
        assert page.status_code == 200
    assert http.head(url).status_code == 200
    assert "ana: approve this request?" in page.text and "Asked for by <b>rita</b>" in page.text
    assert "it would touch" in page.text and 'id="confirm"' in page.text
    assert setup.executed() == 0 and len(setup.inbox.items()) == 3


@pytest.mark.parametrize("setup", AGENT_KINDS, indirect=True)
def test_the_confirm_button_decides_once(served):
    setup, server, http = served
    page = http.get(link_urls(setup)["approve"]).text
    form = confirm_form(page)
    done = http.post(form["action"], data={**form, "reason": "checked with sales"})
    assert done.status_code == 200 and message_of(done.text) == ("approved by ana; thread "
                                                                 "finished")
    decided = setup.agent.outcome("del-4").decisions[-1]
    assert (decided.decision.approver, decided.decision.reason, decided.decision.channel) == (
        "ana", "checked with sales", "link")
    again = http.post(form["action"], data=form)
    assert again.status_code == 409 and "already used: approved by ana" in again.text
    assert setup.world.calls["delete_customer"] == 1


def test_a_post_that_did_not_come_from_the_confirm_page_is_refused(served):
    setup, server, http = served
    del4, del2 = (confirm_form(http.get(link_urls(setup, t)["approve"]).text)
                  for t in ("del-4", "del-2"))
    for form, headers in [({**del4, "csrf": ""}, {}), ({**del4, "csrf": del2["csrf"]}, {}),
                          ({**del4, "csrf": "x.y"}, {}),
                          (del4, {"origin": "https://evil.example"}),
                          (del4, {"referer": "https://evil.example/page"})]:
        reply = http.post(del4["action"], data=form, headers=headers)
        assert reply.status_code == 403, (form, headers)
    wrong_address = http.post(del2["action"], data=del4)
    assert wrong_address.status_code == 403 and "another request" in wrong_address.text
    assert setup.executed() == 0
    assert http.post(del4["action"], data=del4).status_code == 200  # the real one still works


def test_bad_links_get_a_page_saying_why(served):
    setup, server, http = served
    url = link_urls(setup)["approve"]
    address, token = url.split("?token=")
    body, mac = token.rsplit(".", 1)
    for broken, status in [(f"{address}?token={body}.", 403), (f"{address}?token={body}", 403),
                           (f"{address}?token=", 400), (address, 400),
                           (f"{address}?token={body}.{mac[:-2]}", 403)]:
        reply = http.get(broken)
        assert reply.status_code == status and "Refused, nothing ran" in reply.text, broken
    setup.inbox.approve([setup.item("del-4")], "bo")
    gone = http.get(url)
    assert gone.status_code == 409 and "decided by bo via inbox" in gone.text


def test_a_link_page_for_a_server_without_links_is_not_found(tmp_path):
    setup = make_setup(tmp_path, {})
    app = ApprovalsApp(setup.inbox, secret=secrets.token_bytes(32), directory=setup.directory)
    with app.serve(lifetime_s=30, limits=FAST) as server, client(server) as http:
        assert http.get("/links/x.y?token=a.b").status_code == 404
        assert http.post("/slack/interactions", content=b"").status_code == 404


# -- what every page promises ---------------------------------------------------------------------

def test_every_page_forbids_framing_scripts_referrers_and_caching(served):
    setup, server, http = served
    pages = [http.get("/login"), http.get(link_urls(setup)["approve"]), http.get("/nowhere")]
    sign_in(http, setup.app, "ana")
    pages.append(http.get("/dashboard"))
    for page in pages:
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy  # no script may run at all
        assert page.headers["referrer-policy"] == "no-referrer"  # link tokens are in URLs
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text


def test_hidden_characters_are_shown_on_the_pages(tmp_path):
    setup = make_setup(tmp_path, {"bidi": 'send a reply to thread 3 saying "ok\u202e\u200b"'},
                       requester="rita")
    with setup.app.serve(lifetime_s=30, limits=FAST) as server, client(server) as http:
        confirm = http.get(link_urls(setup, "bidi")["approve"]).text
        sign_in(http, setup.app, "ana")
        dashboard = http.get("/dashboard").text
    for page in (confirm, dashboard):
        assert "\u202e" not in page and "\u200b" not in page
        assert "ok\\u202e\\u200b" in page and "WARNING" in page


def unescaped_output(env, source: str) -> list[str]:
    """Where a template would print text unescaped, read from its parsed form (so ``|safe``,
    ``| safe``, ``{% filter safe %}`` and ``{% autoescape false %}`` are all found)."""
    from jinja2 import nodes

    found = []
    for node in env.parse(source).find_all((nodes.Filter, nodes.FilterBlock, nodes.MarkSafe,
                                            nodes.MarkSafeIfAutoescape,
                                            nodes.ScopedEvalContextModifier)):
        if isinstance(node, nodes.FilterBlock):
            names = [f.name for f in node.filter.find_all(nodes.Filter)] + [node.filter.name]
        else:
            names = [getattr(node, "name", None)]
        if "safe" in names:
            found.append(f"line {node.lineno}: the safe filter")
        elif isinstance(node, nodes.MarkSafe | nodes.MarkSafeIfAutoescape):
            found.append(f"line {node.lineno}: marked safe")
        elif isinstance(node, nodes.ScopedEvalContextModifier) and any(
                k.key == "autoescape" and not (isinstance(k.value, nodes.Const) and k.value.value)
                for k in node.options):
            found.append(f"line {node.lineno}: autoescape turned off")
    return found


@pytest.mark.parametrize("source", ["{{ x|safe }}", "{{ x | safe }}", "{{ x|e|safe }}",
                                    "{% filter safe %}{{ x }}{% endfilter %}",
                                    "{% filter upper|safe %}{{ x }}{% endfilter %}",
                                    "{% autoescape false %}{{ x }}{% endautoescape %}",
                                    "{% autoescape flag %}{{ x }}{% endautoescape %}"])
def test_unescaped_output_is_found_however_it_is_spelt(source):
    assert unescaped_output(templates(), source)


def test_the_templates_escape_everything():
    env = templates()
    assert env.autoescape is True or env.autoescape("x.html")
    assert not unescaped_output(env, "{{ x|e }}{% autoescape true %}{{ y }}{% endautoescape %}")
    for name in env.list_templates():
        assert unescaped_output(env, env.loader.get_source(env, name)[0]) == [], name


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "main", "b", "i",
                "form", "input", "button", "span", "h1", "p", "a", "label", "code", "div",
                "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "pre", "details",
                "summary", "small"}
ALLOWED_ATTRIBUTES = {"charset", "name", "content", "lang", "class", "method", "action", "type",
                      "value", "id", "href", "autocomplete", "required", "maxlength",
                      "placeholder", "data-thread", "aria-label"}


def hostile(field: str) -> str:
    """Markup that would run if it were not escaped; short enough for a name (64 characters)."""
    return f"<script>{field}</script><img src=x onerror={field}>\"'"


class Inert(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"<{tag}>")
        self.problems += [f"{name}= on <{tag}>" for name, _ in attrs
                          if name not in ALLOWED_ATTRIBUTES]

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(page: str, fields: list[str], where: str) -> None:
    parser = Inert()
    parser.feed(page)
    assert not parser.problems, f"{where}: {parser.problems}"
    text = "".join(parser.text)
    missing = [f for f in fields if f"<script>{f}</script><img src=x onerror={f}>" not in text]
    assert not missing, f"{where}: not shown as text: {missing}"


def test_no_untrusted_text_reaches_a_page_as_markup(tmp_path):
    """Thread id, task, arguments, the record touched, requester, approver and reason: each
    hostile, on the dashboard, its results, and every link page."""
    setup = make_setup(tmp_path, {}, people=[Person(hostile("approver")), Person("bo")])
    setup.world.update_customer(4, "name", hostile("target"))
    setup.inbox.submit(f'send a reply to thread 3 saying "{hostile("body")}"',
                       hostile("thread"), requested_by=hostile("requester"))
    setup.inbox.submit("delete customer 4", "del-4", requested_by=hostile("requester"))
    approver = setup.directory.names[0]
    with setup.app.serve(lifetime_s=30, limits=FAST) as server, client(server) as http:
        item = setup.item(hostile("thread"))
        urls = setup.links.issue(item, requester=hostile("requester"), approver=approver)
        confirm = http.get(urls["approve"]).text
        assert_inert(confirm, ["body", "approver", "requester"], "link confirm page")
        form = confirm_form(confirm)
        done = http.post(form["action"], data={**form, "reason": hostile("reason")}).text
        assert_inert(done, ["approver"], "link done page")
        used = http.post(form["action"], data=form).text
        assert_inert(used, ["approver"], "link used page")
        target_url = setup.links.issue(setup.item("del-4"), requester="x",
                                       approver=approver)["reject"]
        assert_inert(http.get(target_url).text, ["target"], "link page with a target")

        sign_in(http, setup.app, "bo")
        setup.inbox.submit(f'send a reply to thread 1 saying "{hostile("body2")}"',
                           hostile("thread2"), requested_by=hostile("requester"))
        page = http.get("/dashboard").text
        assert_inert(page, ["thread2", "body2", "requester", "target"], "dashboard")
        refs = Forms(page).refs()
        decided = decide_on_dashboard(http, [refs[hostile("thread2")]], "reject",
                                      hostile("reason2")).text
        assert_inert(decided, ["thread2"], "dashboard results")
        again = decide_on_dashboard(http, [refs[hostile("thread2")]], "approve").text
        assert_inert(again, ["thread2", "reason2"], "dashboard, decided before")
        link_gone = http.get(urls["reject"]).text
        assert_inert(link_gone, [], "link of a decided request")


def test_a_hostile_tool_name_and_payload_are_text_on_the_dashboard(tmp_path):
    """What the real model cannot name (a tool, its description, the gate's texts), through an
    index entry written as a hostile model or a bug could."""
    setup = make_setup(tmp_path, {"t": "delete customer 4"})
    [request] = setup.agent.ledger.index.listed("t")
    fields = ["tool", "description", "why_gated", "on_approve", "on_reject", "problem"]
    changed = request.request.changed(**{f: hostile(f) for f in fields},
                                      args={hostile("key"): hostile("value")})
    setup.agent.ledger.index.sync("t", [])
    setup.agent.ledger.index.sync("t", [request.model_copy(update={"request": changed})])
    with setup.app.serve(lifetime_s=30, limits=FAST) as server, client(server) as http:
        sign_in(http, setup.app, "ana")
        page = http.get("/dashboard").text
    assert_inert(page, fields, "dashboard with a hostile payload")
    assert re.search(r"&lt;script&gt;key&lt;/script&gt;", page)


def test_secrets_of_the_web_app_are_checked(setup):
    for weak in (bytes(32), b"\x01\x02" * 16, b"short"):
        with pytest.raises(ValueError, match="secrets.token_bytes"):
            ApprovalsApp(setup.inbox, secret=weak, directory=setup.directory)


def test_the_link_address_is_url_safe_for_any_thread_id(tmp_path):
    setup = make_setup(tmp_path, {"a/b?c#d e": "delete customer 4"})
    with setup.app.serve(lifetime_s=30, limits=FAST) as server, client(server) as http:
        url = link_urls(setup, "a/b?c#d e")["approve"]
        assert urllib.parse.urlsplit(url).path.count("/") == 2
        form = confirm_form(http.get(url).text)
        assert http.post(form["action"], data=form).status_code == 200
    assert setup.executed() == 1


def test_the_serve_command_runs_the_app_until_ctrl_c():
    process = subprocess.Popen([sys.executable, "-m", "hitl_kit", "serve", "--minutes", "5",
                                "--approver", "ana"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OPENAI_API_KEY": ""})
    try:
        first = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/dashboard \(3 waiting", first).group(1)
        key = re.search(r"sign-in key for ana: (\S+)", process.stdout.readline()).group(1)
        link = re.search(r"approval link for ana \(\w+\): (\S+)",
                         process.stdout.readline()).group(1)
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
            assert http.post("/login", data={"key": key}).status_code == 303
            assert "3 approval(s) waiting" in http.get("/dashboard").text
            assert http.get(link).status_code == 200
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0 and "stopping" in process.stdout.read()
    finally:
        process.kill()


def test_a_long_queue_lists_its_most_urgent_requests_first(served, monkeypatch):
    setup, server, http = served
    monkeypatch.setattr("hitl_kit.web.MAX_LISTED", 2)
    sign_in(http, setup.app, "ana")
    page = http.get("/dashboard").text
    assert "3 approval(s) waiting" in page and "Showing the first 2" in page
    shown = set(Forms(page).refs())
    assert len(shown) == 2 and "reply" not in shown  # the medium-risk one waits below the fold


def test_a_request_for_another_host_is_refused(served):
    """A page on evil.example whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing."""
    setup, server, http = served
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example"):
        assert http.get("/login", headers={"host": host}).status_code == 400
    assert http.get("/login", headers={"host": f"localhost:{server.port}"}).status_code == 200
    assert http.get("/login").status_code == 200
