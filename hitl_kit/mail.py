"""Email: the approval request as an email with approve / reject links, sent over SMTP.

* ``approval_email`` builds the message with the standard library's ``email`` package: a plain
  text part and an HTML part (``multipart/alternative``) with the request's full context and
  the two links. Everything from a model or from data is made visible, and escaped in the HTML;
  the subject is fixed words and the tool's name on one line, so no header can be injected.
* ``MailApprovals.ask`` issues the links (``hitl_kit.links``) to an approver of the directory,
  builds the email to their address and sends it with ``smtplib``.
* ``LocalMailServer`` is a real SMTP server (``aiosmtpd``) on 127.0.0.1 that keeps what it
  receives, so the whole flow runs offline; it stops by itself like the web server.

A link in the email opens a confirm page on the web app (``hitl_kit.web``); only its button
decides. Mail scanners that open every link therefore decide nothing.

To send real mail, point ``MailApprovals`` at your SMTP relay (``smtp=("smtp.example.com",
587)``, with ``starttls=True`` and ``login=(user, password)``) and serve the web app where
approvers can reach it.

Limits: one email per approver per request; no retries when the relay is down (``ask`` raises).
"""

from __future__ import annotations

import atexit
import email
import email.policy
import html
import smtplib
import threading
import weakref
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from aiosmtpd.controller import Controller

from hitl_kit.channels import ApproverDirectory
from hitl_kit.contract import Pending
from hitl_kit.links import ApprovalLinks
from hitl_kit.render import payload_rows, visible

LOCAL_HOSTNAME = "hitl-kit.localhost"  # said in HELO/EHLO; no DNS lookup of this machine
MAX_SUBJECT_CHARS = 120
DEFAULT_SENDER = f"hitl-kit approvals <approvals@{LOCAL_HOSTNAME}>"


def approval_email(item: Pending, urls: dict[str, str], *, sender: str, recipient: str,
                   recipient_name: str, requester: str) -> EmailMessage:
    """The approval request for ``recipient``: text and HTML parts, the two links in both."""
    risk = str(item.request.risk).upper()
    subject = visible(f"Approval needed ({risk} risk): {item.request.tool}")
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = subject[:MAX_SUBJECT_CHARS]
    message["From"] = sender
    message["To"] = formataddr((recipient_name, recipient))
    message["Message-ID"] = make_msgid(domain=LOCAL_HOSTNAME)
    message["Auto-Submitted"] = "auto-generated"
    rows = payload_rows(item.request)
    intro = (f"{visible(requester)}'s agent asks to run {visible(item.request.tool)} "
             f"(thread {visible(item.thread_id)}). You are asked as {recipient_name}.")
    note = ("Opening a link shows the request and a button; nothing is decided until you press "
            "it. Each link works once, and only until it expires.")
    text = [intro, ""] + [f"{label:>20}: {value}" for label, value in rows] + [
        "", f"Approve: {urls['approve']}", f"Reject:  {urls['reject']}", "", note]
    message.set_content("\n".join(text))
    cells = "".join(f"<tr><th align='left' valign='top'>{html.escape(label)}</th>"
                    f"<td><pre style='margin:0;white-space:pre-wrap'>{html.escape(value)}</pre>"
                    f"</td></tr>" for label, value in rows)
    message.add_alternative(
        f"<html><body><p>{html.escape(intro)}</p><table>{cells}</table>"
        f"<p><a href=\"{html.escape(urls['approve'])}\">Approve</a> &middot; "
        f"<a href=\"{html.escape(urls['reject'])}\">Reject</a></p>"
        f"<p><small>{html.escape(note)}</small></p></body></html>", subtype="html")
    return message


def send(message: EmailMessage, host: str, port: int, *, starttls: bool = False,
         login: tuple[str, str] | None = None, timeout: float = 10.0) -> None:
    """Send ``message`` through the SMTP server at host:port."""
    with smtplib.SMTP(host, port, local_hostname=LOCAL_HOSTNAME, timeout=timeout) as smtp:
        if starttls:
            smtp.starttls()
        if login is not None:
            smtp.login(*login)
        smtp.send_message(message)


class MailApprovals:
    """Approval requests by email: links from ``links``, addresses from ``directory``."""

    def __init__(self, links: ApprovalLinks, directory: ApproverDirectory, *,
                 smtp: tuple[str, int], sender: str = DEFAULT_SENDER, starttls: bool = False,
                 login: tuple[str, str] | None = None):
        self.links, self.directory, self.smtp, self.sender = links, directory, smtp, sender
        self.starttls, self.login = starttls, login

    def ask(self, item: Pending, *, requester: str, approver: str) -> EmailMessage:
        """Email ``approver`` the request with their own approve and reject links."""
        person = self.directory.require(approver)
        if person.email is None:
            raise ValueError(f"{person.name} has no email address in the directory")
        urls = self.links.issue(item, requester=requester, approver=person.name)
        message = approval_email(item, urls, sender=self.sender, recipient=person.email,
                                 recipient_name=person.name, requester=requester)
        send(message, *self.smtp, starttls=self.starttls, login=self.login)
        return message


# -- a local SMTP server --------------------------------------------------------------------------

class _Keep:
    """aiosmtpd handler: keep every message received, parsed."""

    def __init__(self, received: list[EmailMessage], arrived: threading.Condition):
        self.received, self.arrived = received, arrived

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                          policy=email.policy.default)
        with self.arrived:
            self.received.append(parsed)
            self.arrived.notify_all()
        return "250 Message accepted"


class _Controller(Controller):
    def _trigger_server(self):  # bound to port 0: learn the port the system chose
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


_RUNNING: weakref.WeakSet[LocalMailServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


class LocalMailServer:
    """An SMTP server on 127.0.0.1 that keeps what it receives (``received``), for the kit's
    notebook and tests. Stops on ``stop()``, a ``with`` block, ``lifetime_s`` or process exit."""

    def __init__(self, *, lifetime_s: float = 600.0, max_message_bytes: int = 1_000_000,
                 idle_timeout_s: float = 30.0):
        self.received: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self._controller = _Controller(
            _Keep(self.received, self._arrived), hostname="127.0.0.1", port=0,
            server_hostname=LOCAL_HOSTNAME, ready_timeout=10,
            data_size_limit=max_message_bytes, timeout=idle_timeout_s)
        self.lifetime_s = lifetime_s
        self._timer: threading.Timer | None = None
        self._stopped = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self._controller.port

    def start(self) -> LocalMailServer:
        self._controller.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        _RUNNING.add(self)
        return self

    def __enter__(self) -> LocalMailServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._controller._thread is not None

    def stop(self) -> None:
        _RUNNING.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        with self._stopped:
            if self._controller._thread is not None:
                self._controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The messages received, once there are at least ``count`` (or after ``timeout``)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)
