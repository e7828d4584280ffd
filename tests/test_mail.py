"""Email: the approval email through a real local SMTP server, its link clicked as a person (and
as a mail scanner) would."""

import email
import email.policy
import re
import smtplib
import socket
import time
from email.message import EmailMessage

import pytest

from hitl_kit.channels import Person
from hitl_kit.mail import LocalMailServer, MailApprovals, approval_email, send

from .channel_kit import FAST, Forms, client, make_setup, message_of
from .conftest import unchecked_pending


@pytest.fixture(scope="module")
def mailbox():
    with LocalMailServer(lifetime_s=300) as server:
        yield server


@pytest.fixture
def emailed(tmp_path, mailbox):
    """del-4 emailed to ana; the web app serving its links."""
    setup = make_setup(tmp_path, {"del-4": "delete customer 4"})
    mailer = MailApprovals(setup.links, setup.directory, smtp=mailbox.address)
    with setup.app.serve(lifetime_s=60, limits=FAST) as server:
        count = len(mailbox.received)
        sent = mailer.ask(setup.item("del-4"), requester="rita", approver="ana")
        received = mailbox.wait_for(count + 1)[count]
        yield setup, server, sent, received


def links_in(message: EmailMessage) -> dict[str, str]:
    text = message.get_body(("plain",)).get_content()
    return {action.lower(): url for action, url in re.findall(r"^(Approve|Reject): +(\S+)\r?$",
                                                              text, re.M)}


def test_the_email_arrives_with_text_and_html_parts_and_both_links(emailed):
    setup, server, sent, received = emailed
    assert received["To"] == "ana <ana@example.com>"
    assert received["Subject"] == "Approval needed (HIGH risk): delete_customer"
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",)).get_content()
    page = received.get_body(("html",)).get_content()
    urls = links_in(received)
    assert set(urls) == {"approve", "reject"}
    for url in urls.values():
        assert url.startswith(f"{server.url}/links/") and url.replace("&", "&amp;") in page
    for row in ("the agent was asked: delete customer 4", "it would touch", "if you approve",
                "rita's agent asks to run delete_customer", "nothing is decided until you"):
        assert row in text
    assert "<th align='left' valign='top'>it would touch</th>" in page
    assert setup.executed() == 0


def test_clicking_the_link_shows_a_confirm_page_and_its_button_decides(emailed):
    setup, server, sent, received = emailed
    with client(server) as http:
        page = http.get(links_in(received)["approve"])
        assert page.status_code == 200 and setup.executed() == 0
        form = Forms(page.text)
        done = http.post(form.forms[-1]["action"], data={
            "token": form.value("token"), "csrf": form.value("csrf"), "reason": "fine"})
    assert done.status_code == 200 and message_of(done.text) == "approved by ana; thread finished"
    decided = setup.agent.outcome("del-4").decisions[-1]
    assert (decided.decision.approver, decided.decision.channel) == ("ana", "link")
    assert setup.world.calls["delete_customer"] == 1


def test_a_mail_scanner_that_opens_every_link_decides_nothing(emailed):
    setup, server, sent, received = emailed
    with client(server) as http:
        for url in list(links_in(received).values()) * 3:
            assert http.get(url).status_code == 200
            assert http.head(url).status_code == 200
    assert setup.executed() == 0 and setup.agent.pending("del-4")


def hostile(field: str) -> str:
    return f"<script>{field}</script>\r\nBcc: evil@example.net\r\n\u202e"


def test_untrusted_text_injects_no_header_and_no_markup():
    payload = {"tool": hostile("tool"), "task": hostile("task"), "args": {"x": hostile("arg")},
               "target": {"name": hostile("target")}, "description": "d", "risk": "high",
               "reversibility": "irreversible_high", "policy": "hard_gate",
               "why_gated": "w", "on_approve": hostile("approve"), "on_reject": "r",
               "fingerprint": "f" * 16}
    item = unchecked_pending(payload, hostile("thread"))
    urls = {"approve": "http://127.0.0.1/links/x?token=a&b", "reject": "http://x/\"><script>"}
    message = approval_email(item, urls, sender="kit <k@example.com>",
                             recipient="ana@example.com", recipient_name="ana",
                             requester=hostile("requester"))
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed.keys() == ["Subject", "From", "To", "Message-ID", "Auto-Submitted",
                             "MIME-Version", "Content-Type"]  # no Bcc slipped in
    assert parsed["Subject"] == ("Approval needed (HIGH risk): <script>tool</script>\\r\\nBcc: "
                                 "evil@example.net\\r\\n\\u202e")
    page = message.get_body(("html",)).get_content()
    assert "<script>" not in page and "\u202e" not in page
    for field in ("tool", "task", "target", "requester", "thread", "approve"):
        assert f"&lt;script&gt;{field}&lt;/script&gt;" in page, field
    assert 'href="http://x/&quot;&gt;&lt;script&gt;"' in page
    assert "\\u202e" in message.get_body(("plain",)).get_content()


def test_emails_go_only_to_allowed_approvers_who_did_not_ask(tmp_path, mailbox):
    setup = make_setup(tmp_path, {"t": "delete customer 4"},
                       people=[Person("ana", email="ana@example.com"), Person("bo")])
    mailer = MailApprovals(setup.links, setup.directory, smtp=mailbox.address)
    count = len(mailbox.received)
    for approver, problem in [("eve", "not an allowed approver"), ("bo", "no email address"),
                              ("ana", "someone else must decide")]:
        with pytest.raises(ValueError, match=problem):
            mailer.ask(setup.item("t"), requester="ana" if approver == "ana" else "rita",
                       approver=approver)
    assert len(mailbox.received) == count


def test_the_mail_server_refuses_what_is_too_big():
    with LocalMailServer(max_message_bytes=10_000, lifetime_s=600) as server:
        big = EmailMessage()
        big["From"], big["To"], big["Subject"] = "a@example.com", "b@example.com", "big"
        big.set_content("x" * 50_000)
        with pytest.raises(smtplib.SMTPException):
            send(big, *server.address)
        assert server.received == []


def test_the_mail_server_stops_by_itself():
    with LocalMailServer(lifetime_s=0.5) as server:
        give_up = time.monotonic() + 60  # a ceiling only a server that never stops reaches
        while server.running and time.monotonic() < give_up:
            time.sleep(0.05)
        assert not server.running
        with pytest.raises(OSError):
            socket.create_connection(server.address, timeout=60)
