"""Approval cards for JupyterLab: the payload, readable, with Approve / Reject / Edit buttons.

Clicking resumes the graph from the button's callback; no cell ever blocks waiting for a click
(a running cell would hold back the very click it waits for). Everything that came from the model
or from data is escaped, so a payload containing HTML shows as text.

When the notebook runs unattended (the test suite sets ``HITL_KIT_UNATTENDED=1``), it presses
the buttons itself with ``Button.click()``, which runs the same callbacks as a real click.

With a ``DeadlineWatcher`` (``hitl_kit.timeouts``) a card counts down to its request's deadline
and, when the default is applied, shows it and locks. A background thread drives the countdown
and writes only into the card's own widgets, so no cell blocks and nothing lands in another
cell's output.
"""

from __future__ import annotations

import html
import json
import math
import os
import threading

import ipywidgets as widgets

from hitl_kit.approval import (
    AlreadyDecided,
    ApprovalAgent,
    ApprovalError,
    Outcome,
    Pending,
)
from hitl_kit.render import RISK_COLOURS, payload_table_html
from hitl_kit.timeouts import DECIDED, PROCEEDED, TIMED_OUT, ApprovalTimer, DeadlineWatcher

TICK_S = 0.25  # how often a countdown is redrawn


def unattended() -> bool:
    """True when nobody is there to click (the test suite, a CI run)."""
    return os.environ.get("HITL_KIT_UNATTENDED") == "1"


def _countdown_html(timer: ApprovalTimer) -> str:
    handed = f" (now with {html.escape(timer.escalated_to[-1])})" if timer.escalated_to else ""
    return (f"<b>{math.ceil(timer.remaining())} s</b> left to decide{handed}; then: "
            f"{html.escape(timer.deadline.describe())}")


class ApprovalCard(widgets.VBox):
    """One pending approval. ``approve`` / ``reject`` / ``edit`` are the buttons; with a
    ``watcher``, ``countdown`` shows the time left and ``ticker`` is the thread redrawing it."""

    def __init__(self, agent: ApprovalAgent, thread_id: str, pending: Pending,
                 approver: str = "learner", watcher: DeadlineWatcher | None = None):
        self.agent, self.thread_id, self.pending = agent, thread_id, pending
        self.watcher = watcher
        self.timer = watcher.timer_for(thread_id, pending) if watcher is not None else None
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
        self.details = widgets.HTML(payload_table_html(payload))
        self.approver = widgets.Text(value=approver, description="approver")
        self.reason = widgets.Text(placeholder="why (sent to the agent on reject)",
                                   description="reason")
        self.edited_args = widgets.Textarea(value=json.dumps(payload["args"]),
                                            description="edit args", layout={"width": "60%"})
        self.approve = widgets.Button(description="Approve", button_style="success")
        self.reject = widgets.Button(description="Reject", button_style="danger")
        self.edit = widgets.Button(description="Edit and resubmit", button_style="warning")
        self.status = widgets.HTML("<i>waiting for your decision</i>")
        self.countdown = widgets.HTML(_countdown_html(self.timer) if self.timer else "")
        self.output = widgets.Output()
        self.approve.on_click(lambda _b: self.decide("approve"))
        self.reject.on_click(lambda _b: self.decide("reject"))
        self.edit.on_click(lambda _b: self.decide("edit"))
        super().__init__([
            self.header, self.details, self.approver, self.reason, self.edited_args,
            widgets.HBox([self.approve, self.reject, self.edit]), self.countdown, self.status,
            self.output,
        ], layout={"border": f"1px solid {colour}", "padding": "6px", "margin": "6px 0"})
        self.ticker: threading.Thread | None = None
        if self.timer is not None:
            self.ticker = threading.Thread(target=self._count_down, daemon=True,
                                           name=f"countdown {pending.interrupt_id}")
            self.ticker.start()

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
                        "reason": self.reason.value, "fingerprint": self.pending.fingerprint}
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
            except AlreadyDecided as exc:
                self._lock_buttons()
                self._say(f"<b>not applied</b>: {html.escape(str(exc))}")
                return
            except ApprovalError as exc:
                self._say(f"<b>refused, nothing ran</b>: {html.escape(str(exc))}")
                return
            self.outcome = outcome
            self._lock_buttons()
        verb = {"approve": "Approved", "reject": "Rejected", "edit": "Edited"}[kind]
        self._show(f"<b>{verb} by {html.escape(decision['approver'])}</b>", outcome)

    def _lock_buttons(self) -> None:
        for button in (self.approve, self.reject, self.edit):
            button.disabled = True

    def _say(self, message_html: str) -> None:
        self.status.value = message_html

    def _count_down(self) -> None:
        """The ticker thread: redraw the countdown until the timer settles, then show how."""
        while not self.timer.wait(TICK_S):
            self.countdown.value = _countdown_html(self.timer)
        with self._lock:  # a click being handled finishes first
            self._show_settled(self.timer)

    def _show_settled(self, timer: ApprovalTimer) -> None:
        claim = timer.claim
        if self.decided:
            self.countdown.value = "<i>decided before the deadline</i>"
        elif timer.state in (TIMED_OUT, PROCEEDED):
            self._lock_buttons()
            self.countdown.value = "<b>deadline passed</b>"
            headline = ("<b>Timed out</b>, rejected by default" if timer.state == TIMED_OUT
                        else "<b>Proceeded</b> without a human")
            headline += f" (approver: system): {html.escape(claim.reason)}"
            if timer.outcome is None:  # applied by another process
                self._say(headline)
            else:
                self._show(headline, timer.outcome)
        elif timer.state == DECIDED and claim is not None:
            self._lock_buttons()
            self.countdown.value = ""
            self._say(f"<b>already decided</b> by {html.escape(claim.describe())}")
        else:  # cancelled or failed: nothing was applied, the request is still open
            self.countdown.value = f"<i>no deadline any more ({html.escape(timer.state)})</i>"
            if timer.error:
                self._say(f"<b>{html.escape(timer.error)}</b>")

    def _show(self, headline_html: str, outcome: Outcome) -> None:
        lines = [headline_html]
        if outcome.paused:
            lines.append(f"{len(outcome.pending)} approval(s) now pending below")
        else:
            lines.append(f"<pre style='white-space:pre-wrap'>{html.escape(outcome.answer or '')}"
                         "</pre>")
        self._say("<br>".join(lines))
        shown = {c.pending.interrupt_id for c in self.next_cards}
        for pending in outcome.pending:
            if pending.interrupt_id not in shown and not _shown_elsewhere(self, pending):
                card = ApprovalCard(self.agent, self.thread_id, pending, self.approver.value,
                                    self.watcher)
                self.next_cards.append(card)
                self.output.append_display_data(card)


def _shown_elsewhere(card: ApprovalCard, pending: Pending) -> bool:
    siblings = getattr(card, "siblings", [])
    return any(s.pending.interrupt_id == pending.interrupt_id and not s.decided for s in siblings)


class ApprovalBoard(widgets.VBox):
    """Every pending approval of an outcome as cards; the final answer when nothing is pending.
    With a ``watcher``, the thread is watched and each card counts down to its deadline."""

    def __init__(self, agent: ApprovalAgent, outcome: Outcome, approver: str = "learner",
                 watcher: DeadlineWatcher | None = None):
        if watcher is not None:
            watcher.watch(outcome)
        self.cards = [ApprovalCard(agent, outcome.thread_id, p, approver, watcher)
                      for p in outcome.pending]
        for card in self.cards:
            card.siblings = self.cards
        children = self.cards or [widgets.HTML(
            "<b>Nothing to approve</b>: finished without a human.<pre style='white-space:"
            f"pre-wrap'>{html.escape(outcome.answer or '')}</pre>")]
        super().__init__(children)
