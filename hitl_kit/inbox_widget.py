"""The approval inbox in JupyterLab: a row per pending approval with a checkbox and its risk, and
*Approve selected* / *Reject selected* buttons that resume from their click callback.

Every text in a row is escaped and made visible (``hitl_kit.render``); a row whose tool, arguments
or task hold hidden characters says so. After each batch the reason box is cleared, so one
rejection's reason never rides along with the next approval; ``status`` keeps what the last batch
did, and ``note`` answers a click that had nothing to do (a double click, nothing ticked).
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from hitl_kit.approval import ApprovalError
from hitl_kit.audit import canonical_json
from hitl_kit.contract import Pending
from hitl_kit.inbox import ApprovalInbox, Resolution
from hitl_kit.render import (
    RISK_COLOURS,
    claim_line,
    context_html,
    escaped,
    hidden_warning,
    reveal,
)

TEXT_STYLE = "white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere"


class InboxRow(widgets.HBox):
    """One approval in the inbox widget: checkbox, risk, what and why, and its result."""

    def __init__(self, item: Pending, inbox: ApprovalInbox):
        self.item, self.inbox = item, inbox
        self.done = False
        risk = str(item.request.risk)
        colour = RISK_COLOURS.get(risk, RISK_COLOURS["high"])
        self.checkbox = widgets.Checkbox(value=False, indent=False, layout={"width": "2em"})
        self.risk = widgets.HTML(
            f"<b style='color:white;background:{colour};padding:1px 6px;border-radius:3px'>"
            f"{escaped(risk.upper())}</b>", layout={"width": "6em"})
        self.details = widgets.HTML(layout={"width": "70%"})
        self.result = widgets.HTML("", layout={"width": "25%"})
        self._describe()
        super().__init__([self.checkbox, self.risk, self.details, self.result],
                         layout={"border_bottom": "1px solid #ddd", "padding": "4px 0"})

    def _describe(self) -> None:
        request = self.item.request
        notes = []
        for text in (request.tool, canonical_json(request.args), request.task,
                     self.item.thread_id):
            notes += [n for n in reveal(text)[1] if n not in notes]
        warning = (f"<div style='color:#c62828;{TEXT_STYLE}'><b>WARNING</b>: "
                   f"{html.escape(hidden_warning(notes))}</div>" if notes else "")
        self.details.value = (
            f"{warning}<div style='{TEXT_STYLE}'><code>{escaped(request.tool)}</code> "
            f"<code>{escaped(canonical_json(request.args))}</code><br>"
            f"task: {escaped(request.task)}<br>"
            f"<small>thread {escaped(self.item.thread_id)} &middot; "
            f"{html.escape(self.inbox.when(self.item))}</small></div>{context_html(request)}")

    def update(self, item: Pending) -> None:
        self.item = item
        self._describe()

    def finish(self, message: str, ok: bool) -> None:
        self.done = True
        self.checkbox.value = False
        self.checkbox.disabled = True
        colour = "#2e7d32" if ok else "#c62828"
        self.result.value = f"<span style='color:{colour};{TEXT_STYLE}'>{escaped(message)}</span>"


class InboxWidget(widgets.VBox):
    """The inbox in JupyterLab. Tick rows, name yourself, then *Approve* or *Reject selected*."""

    def __init__(self, inbox: ApprovalInbox, approver: str = "learner"):
        self.inbox = inbox
        self.rows: list[InboxRow] = []
        labels = {"description_width": "initial"}
        self.approver = widgets.Text(value=approver, description="approver", style=labels)
        self.reason = widgets.Text(placeholder="why (sent to the agent on reject; cleared after "
                                               "each batch)", description="reason", style=labels,
                                   layout={"width": "60%"})
        self.approve_selected = widgets.Button(description="Approve selected",
                                               button_style="success", layout={"width": "auto"})
        self.reject_selected = widgets.Button(description="Reject selected",
                                              button_style="danger", layout={"width": "auto"})
        self.refresh_button = widgets.Button(description="Refresh")
        self.status = widgets.HTML()
        self.note = widgets.HTML()
        self.table = widgets.VBox()
        self._last_batch = ""
        self.approve_selected.on_click(lambda _b: self.decide("approve"))
        self.reject_selected.on_click(lambda _b: self.decide("reject"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        super().__init__([
            self.table, self.approver, self.reason,
            widgets.HBox([self.approve_selected, self.reject_selected, self.refresh_button]),
            self.status, self.note,
        ])
        self.refresh()

    def row(self, thread_id: str, tool: str | None = None) -> InboxRow:
        """The open row for a thread (and tool): handy for ticking rows from code."""
        for row in self.rows:
            if not row.done and row.item.thread_id == thread_id and tool in (
                    None, row.item.request.tool):
                return row
        raise KeyError(f"no open row for thread {thread_id!r}" + (f", tool {tool!r}" if tool
                                                                   else ""))

    def refresh(self) -> None:
        """Add rows for new approvals, update ages, and close rows answered elsewhere."""
        current = {item.key[:2]: item for item in self.inbox.items()}
        for row in self.rows:
            if row.done:
                continue
            now = current.get(row.item.key[:2])
            if now is None:
                row.finish(self._answered_elsewhere(row.item), ok=False)
            elif now.fingerprint != row.item.fingerprint:
                row.finish("changed since listed: see its new row", ok=False)
            else:
                row.update(now)
        open_keys = {row.item.key[:2] for row in self.rows if not row.done}
        self.rows += [InboxRow(item, self.inbox) for key, item in current.items()
                      if key not in open_keys]
        self.table.children = self.rows or [widgets.HTML("<i>nothing waits for approval</i>")]
        waiting = sum(not r.done for r in self.rows)
        self.status.value = f"{waiting} approval(s) waiting{self._last_batch}"

    def decide(self, kind: str) -> None:
        """What the two buttons do: answer every ticked row, then show each row's result."""
        selected = [row for row in self.rows if row.checkbox.value and not row.done]
        if not selected:
            self.note.value = "<i>nothing selected: tick the approvals to answer first</i>"
            return
        decision = {"kind": kind, "approver": self.approver.value, "reason": self.reason.value}
        try:
            results = self.inbox.resolve([(row.item, decision) for row in selected])
        except ApprovalError as exc:
            self.note.value = f"<b>refused, nothing ran</b>: {escaped(str(exc))}"
            return
        self.reason.value = ""  # a reason belongs to one batch
        self.note.value = ""
        for row, result in zip(selected, results, strict=True):
            row.finish(self._message(result), result.resumed)
        done = sum(r.resumed for r in results)
        self._last_batch = (f" &middot; last batch: {done} of {len(results)} "
                            f"{html.escape(kind)} answer(s) went through")
        self.refresh()

    def _winning_claim(self, item: Pending):
        claims = [c for c in self.inbox.agent.ledger.claims.listed(item.thread_id)
                  if c.interrupt_id == item.interrupt_id]
        return claims[-1] if claims else None

    def _message(self, result: Resolution) -> str:
        """The row's result for people: who decided, without ids or ISO timestamps."""
        if result.resumed:
            return result.message
        claim = self._winning_claim(result.item)
        if claim is not None and result.message.startswith("refused, nothing ran: already"):
            return f"not applied: already {claim_line(claim)}"
        return result.message

    def _answered_elsewhere(self, item: Pending) -> str:
        claim = self._winning_claim(item)
        return (f"answered elsewhere: {claim_line(claim)}" if claim is not None
                else "no longer pending: answered elsewhere")
