"""Approval cards for JupyterLab: the payload, readable, with Approve / Reject / Edit buttons.

Clicking resumes the graph from the button's callback; no cell ever blocks waiting for a click
(a running cell would hold back the very click it waits for). Everything that came from the model
or from data is escaped, so a payload containing HTML shows as text.

When the notebook runs unattended (the test suite sets ``HITL_KIT_UNATTENDED=1``), it presses
the buttons itself with ``Button.click()``, which runs the same callbacks as a real click.
"""

from __future__ import annotations

import html
import json
import os
import threading

import ipywidgets as widgets

from hitl_kit.approval import ApprovalAgent, ApprovalError, Outcome, Pending, payload_rows

RISK_COLOURS = {"low": "#2e7d32", "medium": "#ef6c00", "high": "#c62828"}


def unattended() -> bool:
    """True when nobody is there to click (the test suite, a CI run)."""
    return os.environ.get("HITL_KIT_UNATTENDED") == "1"


def _escaped_rows(payload: dict) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;vertical-align:top;padding-right:1em'>"
        f"{html.escape(label)}</th><td><pre style='margin:0;white-space:pre-wrap'>"
        f"{html.escape(text)}</pre></td></tr>"
        for label, text in payload_rows(payload)
    )
    return f"<table>{cells}</table>"


class ApprovalCard(widgets.VBox):
    """One pending approval. ``approve`` / ``reject`` / ``edit`` are the buttons."""

    def __init__(self, agent: ApprovalAgent, thread_id: str, pending: Pending,
                 approver: str = "learner"):
        self.agent, self.thread_id, self.pending = agent, thread_id, pending
        self.outcome: Outcome | None = None
        self.next_cards: list[ApprovalCard] = []
        self._lock = threading.Lock()
        payload = pending.payload
        risk = payload["risk"]
        colour = RISK_COLOURS.get(risk, RISK_COLOURS["high"])
        self.header = widgets.HTML(
            f"<div style='border-left:6px solid {colour};padding-left:8px'>"
            f"<b style='color:{colour}'>{html.escape(risk.upper())} RISK</b> &middot; "
            f"approval needed for <code>{html.escape(payload['tool'])}</code></div>")
        self.details = widgets.HTML(_escaped_rows(payload))
        self.approver = widgets.Text(value=approver, description="approver")
        self.reason = widgets.Text(placeholder="why (sent to the agent on reject)",
                                   description="reason")
        self.edited_args = widgets.Textarea(value=json.dumps(payload["args"]),
                                            description="edit args", layout={"width": "60%"})
        self.approve = widgets.Button(description="Approve", button_style="success")
        self.reject = widgets.Button(description="Reject", button_style="danger")
        self.edit = widgets.Button(description="Edit and resubmit", button_style="warning")
        self.status = widgets.HTML("<i>waiting for your decision</i>")
        self.output = widgets.Output()
        self.approve.on_click(lambda _b: self.decide("approve"))
        self.reject.on_click(lambda _b: self.decide("reject"))
        self.edit.on_click(lambda _b: self.decide("edit"))
        super().__init__([
            self.header, self.details, self.approver, self.reason, self.edited_args,
            widgets.HBox([self.approve, self.reject, self.edit]), self.status, self.output,
        ], layout={"border": f"1px solid {colour}", "padding": "6px", "margin": "6px 0"})

    @property
    def decided(self) -> bool:
        return self.outcome is not None

    def decide(self, kind: str) -> None:
        """What a click does: resume the thread with this card's decision, once."""
        with self._lock:
            if self.decided:
                self._say("<b>already decided</b>: this card's decision stands.")
                return
            decision = {"kind": kind, "approver": self.approver.value,
                        "reason": self.reason.value}
            if kind == "edit":
                try:
                    decision["args"] = json.loads(self.edited_args.value)
                except json.JSONDecodeError as exc:
                    self._say(f"<b>not sent</b>: edited args are not JSON "
                              f"({html.escape(str(exc))})")
                    return
            try:
                outcome = self.agent.resume(self.thread_id,
                                            {self.pending.interrupt_id: decision})
            except ApprovalError as exc:
                self._say(f"<b>refused, nothing ran</b>: {html.escape(str(exc))}")
                return
            self.outcome = outcome
            for button in (self.approve, self.reject, self.edit):
                button.disabled = True
        self._show(kind, decision["approver"], outcome)

    def _say(self, message_html: str) -> None:
        self.status.value = message_html

    def _show(self, kind: str, approver: str, outcome: Outcome) -> None:
        verb = {"approve": "Approved", "reject": "Rejected", "edit": "Edited"}[kind]
        lines = [f"<b>{verb} by {html.escape(approver)}</b>"]
        if outcome.paused:
            lines.append(f"{len(outcome.pending)} approval(s) now pending below")
        else:
            lines.append(f"<pre style='white-space:pre-wrap'>{html.escape(outcome.answer or '')}"
                         "</pre>")
        self._say("<br>".join(lines))
        shown = {c.pending.interrupt_id for c in self.next_cards}
        for pending in outcome.pending:
            if pending.interrupt_id not in shown and not _shown_elsewhere(self, pending):
                card = ApprovalCard(self.agent, self.thread_id, pending, self.approver.value)
                self.next_cards.append(card)
                self.output.append_display_data(card)


def _shown_elsewhere(card: ApprovalCard, pending: Pending) -> bool:
    siblings = getattr(card, "siblings", [])
    return any(s.pending.interrupt_id == pending.interrupt_id and not s.decided for s in siblings)


class ApprovalBoard(widgets.VBox):
    """Every pending approval of an outcome as cards; the final answer when nothing is pending."""

    def __init__(self, agent: ApprovalAgent, outcome: Outcome, approver: str = "learner"):
        self.cards = [ApprovalCard(agent, outcome.thread_id, p, approver)
                      for p in outcome.pending]
        for card in self.cards:
            card.siblings = self.cards
        children = self.cards or [widgets.HTML(
            "<b>Nothing to approve</b>: finished without a human.<pre style='white-space:"
            f"pre-wrap'>{html.escape(outcome.answer or '')}</pre>")]
        super().__init__(children)
