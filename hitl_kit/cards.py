"""Approval cards for JupyterLab: the payload, readable, with Approve / Reject / Edit buttons.

Clicking resumes the graph from the button's callback; no cell ever blocks waiting for a click
(a running cell would hold back the very click it waits for). Everything that came from the model
or from data is escaped and made visible (``hitl_kit.render``), so a payload containing HTML
shows as text and a hidden character shows as a ``\\u202e`` marker under a warning.

A card's ``status`` keeps what its decision did; a second click, or a late one, is answered on the
``note`` line below it and never replaces that result. When one card of a turn is decided while
others of the same turn still wait, its status says which and where; once the turn finishes, every
card of it shows the outcome.

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

from hitl_kit.approval import AlreadyDecided, ApprovalAgent, ApprovalError, Outcome
from hitl_kit.contract import Pending
from hitl_kit.render import (
    PRE_STYLE,
    RISK_COLOURS,
    claim_line,
    escaped,
    payload_table_html,
)
from hitl_kit.timeouts import DECIDED, PROCEEDED, TIMED_OUT, ApprovalTimer, DeadlineWatcher
from hitl_kit.vocabulary import Channel

TICK_S = 0.25  # how often a countdown is redrawn
LABELS = {"description_width": "initial"}  # "edit args" and "approver" on one line each
VERBS = {"approve": "Approved", "reject": "Rejected", "edit": "Edited"}


def unattended() -> bool:
    """True when nobody is there to click (the test suite, a CI run)."""
    return os.environ.get("HITL_KIT_UNATTENDED") == "1"


def _countdown_html(timer: ApprovalTimer) -> str:
    handed = f" (now with {escaped(timer.escalated_to[-1])})" if timer.escalated_to else ""
    return (f"<b>{math.ceil(timer.remaining())} s</b> left to decide{handed}; then: "
            f"{html.escape(timer.deadline.describe())}")


def _edit_box_rows(text: str) -> int:
    return min(12, max(2, len(text) // 70 + 1 + text.count("\n")))


class ApprovalCard(widgets.VBox):
    """One pending approval. ``approve`` / ``reject`` / ``edit`` are the buttons; ``status`` shows
    what the decision did, ``note`` answers later clicks; with a ``watcher``, ``countdown`` shows
    the time left and ``ticker`` is the thread redrawing it."""

    def __init__(self, agent: ApprovalAgent, thread_id: str, pending: Pending,
                 approver: str = "learner", watcher: DeadlineWatcher | None = None,
                 board: ApprovalBoard | None = None, path: tuple[int, ...] = (0,),
                 parent: ApprovalCard | None = None):
        self.agent, self.thread_id, self.pending = agent, thread_id, pending
        self.watcher, self.board, self.path, self.parent = watcher, board, path, parent
        self.timer = watcher.timer_for(pending) if watcher is not None else None
        self.outcome: Outcome | None = None
        self.next_cards: list[ApprovalCard] = []
        self._headline = ""
        self._lock = threading.Lock()
        request = pending.request
        risk = str(request.risk)
        colour = RISK_COLOURS.get(risk, RISK_COLOURS["high"])
        self.header = widgets.HTML(
            f"<div style='border-left:6px solid {colour};padding-left:8px'>"
            f"<b style='color:{colour}'>{escaped(risk.upper())} RISK</b> &middot; "
            f"approval needed for <code>{escaped(request.tool)}</code></div>")
        self.details = widgets.HTML(payload_table_html(request))
        self.approver = widgets.Text(value=approver, description="approver", style=LABELS)
        self.reason = widgets.Text(placeholder="why (sent to the agent on reject)",
                                   description="reason", style=LABELS,
                                   layout={"width": "95%"})
        args_text = json.dumps(request.args, ensure_ascii=False)
        self.edited_args = widgets.Textarea(value=args_text, description="edit args",
                                            rows=_edit_box_rows(args_text), style=LABELS,
                                            layout={"width": "95%"})
        self.approve = widgets.Button(description="Approve", button_style="success")
        self.reject = widgets.Button(description="Reject", button_style="danger")
        self.edit = widgets.Button(description="Edit and resubmit", button_style="warning",
                                   layout={"width": "auto"})
        self.status = widgets.HTML("<i>waiting for your decision</i>")
        self.note = widgets.HTML("")
        self.countdown = widgets.HTML(_countdown_html(self.timer) if self.timer else "")
        self.output = widgets.Output()
        self.approve.on_click(lambda _b: self.decide("approve"))
        self.reject.on_click(lambda _b: self.decide("reject"))
        self.edit.on_click(lambda _b: self.decide("edit"))
        super().__init__([
            self.header, self.details, self.approver, self.reason, self.edited_args,
            widgets.HBox([self.approve, self.reject, self.edit]), self.countdown, self.status,
            self.note, self.output,
        ], layout={"border": f"1px solid {colour}", "padding": "6px", "margin": "6px 0"})
        self.ticker: threading.Thread | None = None
        if self.timer is not None:
            self.ticker = threading.Thread(target=self._count_down, daemon=True,
                                           name=f"countdown {pending.interrupt_id}")
            self.ticker.start()

    @property
    def decided(self) -> bool:
        """This card's own decision went through."""
        return self.outcome is not None

    @property
    def settled(self) -> bool:
        """Nothing more can be decided here: this card decided, or someone (a timer) did."""
        return bool(self._headline)

    def decide(self, kind: str) -> None:
        """What a click does: resume the thread with this card's decision, once."""
        with self._lock:
            if self.settled:
                self.note.value = ("<i>this click changed nothing: the decision above stands</i>")
                return
            decision = {"kind": kind, "approver": self.approver.value,
                        "reason": self.reason.value, "fingerprint": self.pending.fingerprint}
            if kind == "edit":
                try:
                    decision["args"] = json.loads(self.edited_args.value)
                except json.JSONDecodeError as exc:
                    self.note.value = (f"<b>not sent</b>: edited args are not JSON "
                                       f"({html.escape(str(exc))})")
                    return
            try:
                outcome = self.agent.resume(self.thread_id,
                                            {self.pending.interrupt_id: decision},
                                            channel=Channel.CARD)
            except AlreadyDecided as exc:
                self._lock_buttons()
                self._settle(f"<b>Not applied</b>: this request was already "
                             f"{escaped(claim_line(exc.claim))}")
                return
            except ApprovalError as exc:
                self.note.value = f"<b>refused, nothing ran</b>: {escaped(str(exc))}"
                return
            if kind == "approve" and any(p.interrupt_id == self.pending.interrupt_id
                                         and p.fingerprint == self.pending.fingerprint
                                         for p in outcome.pending):
                # One approval of several (two-person rule): recorded, still waiting.
                approvals = self.agent.approvals(self.thread_id, self.pending.interrupt_id,
                                                 self.pending.fingerprint)
                needed = self.pending.request.approvals_needed
                self.note.value = (f"<b>{len(approvals)} of {needed} approvals</b> ("
                                   f"{escaped(', '.join(a.approver for a in approvals))}): "
                                   "waiting for another, different approver")
                return
            self.outcome = outcome
            self._lock_buttons()
            self.note.value = ""
            headline = f"<b>{VERBS[kind]} by {escaped(decision['approver'])}</b>"
            if decision["reason"]:
                headline += f": {escaped(decision['reason'])}"
            self._settle(headline, outcome)

    def _lock_buttons(self) -> None:
        for button in (self.approve, self.reject, self.edit):
            button.disabled = True

    def _settle(self, headline_html: str, outcome: Outcome | None = None) -> None:
        """Show how this card was settled, and where its thread stands."""
        self._headline = headline_html
        if outcome is None:
            self.status.value = headline_html
            return
        self._add_cards_for(outcome)
        for card in self._turn_cards():
            if card.settled:
                card.show_thread(outcome)

    def show_thread(self, outcome: Outcome) -> None:
        """The headline, then what the thread is waiting for now, or how it ended."""
        if outcome.paused:
            where = [f"{escaped(p.request.tool)} ({self._where(p)})" for p in outcome.pending]
            line = (f"this turn still waits for {len(where)} approval(s): {', '.join(where)}; "
                    "nothing in it runs before they are answered")
        else:
            line = (f"the turn finished:<pre style='{PRE_STYLE}'>"
                    f"{escaped(outcome.answer or '', multiline=True)}</pre>")
        self.status.value = f"{self._headline}<br>{line}"

    def _where(self, pending: Pending) -> str:
        card = self._card_showing(pending)
        if card is None:
            return "not shown here"
        return "its card is above" if card.path < self.path else "its card is below"

    def _turn_cards(self) -> list[ApprovalCard]:
        """Every card of this thread's turn: the board's, and the cards they opened."""
        top = self
        while top.parent is not None:
            top = top.parent
        roots = self.board.cards if self.board is not None else [top]
        found, stack = [], list(reversed(roots))
        while stack:
            card = stack.pop()
            found.append(card)
            stack.extend(reversed(card.next_cards))
        return found

    def _card_showing(self, pending: Pending) -> ApprovalCard | None:
        return next((c for c in self._turn_cards()
                     if c.pending.interrupt_id == pending.interrupt_id and not c.settled), None)

    def _add_cards_for(self, outcome: Outcome) -> None:
        """A new card, below this one, for each pending approval no card shows yet."""
        for pending in outcome.pending:
            if self._card_showing(pending) is None:
                card = ApprovalCard(self.agent, self.thread_id, pending, self.approver.value,
                                    self.watcher, self.board,
                                    self.path + (len(self.next_cards),), parent=self)
                self.next_cards.append(card)
                self.output.append_display_data(card)

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
            headline += f" (approver: system): {escaped(claim.decision.reason)}"
            self._settle(headline, timer.outcome)  # no outcome: applied by another process
        elif timer.state == DECIDED and claim is not None:
            self._lock_buttons()
            self.countdown.value = ""
            if not self.settled:
                self._settle(f"<b>Already decided</b>: {escaped(claim_line(claim))}")
        else:  # cancelled or failed: nothing was applied, the request is still open
            self.countdown.value = f"<i>no deadline any more ({html.escape(timer.state)})</i>"
            if timer.error:
                self.note.value = f"<b>{escaped(timer.error)}</b>"


class ApprovalBoard(widgets.VBox):
    """Every pending approval of an outcome as cards; the final answer when nothing is pending.
    With a ``watcher``, the thread is watched and each card counts down to its deadline."""

    def __init__(self, agent: ApprovalAgent, outcome: Outcome, approver: str = "learner",
                 watcher: DeadlineWatcher | None = None):
        if watcher is not None:
            watcher.watch(outcome)
        self.cards: list[ApprovalCard] = []
        for n, pending in enumerate(outcome.pending):
            self.cards.append(ApprovalCard(agent, outcome.thread_id, pending, approver, watcher,
                                           board=self, path=(n,)))
        children = self.cards or [widgets.HTML(
            f"<b>Nothing to approve</b>: finished without a human.<pre style='{PRE_STYLE}'>"
            f"{escaped(outcome.answer or '', multiline=True)}</pre>")]
        super().__init__(children)

