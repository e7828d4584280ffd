"""The approval inbox in JupyterLab: a row per pending approval with a checkbox and its risk, and
*Approve selected* / *Reject selected* buttons that resume from their click callback."""

from __future__ import annotations

import html

import ipywidgets as widgets

from hitl_kit.approval import ApprovalError
from hitl_kit.audit import canonical_json
from hitl_kit.inbox import ApprovalInbox, InboxItem
from hitl_kit.render import RISK_COLOURS, context_html


class InboxRow(widgets.HBox):
    """One approval in the inbox widget: checkbox, risk, what and why, and its result."""

    def __init__(self, item: InboxItem):
        self.item = item
        self.done = False
        colour = RISK_COLOURS.get(item.risk, RISK_COLOURS["high"])
        payload = item.payload
        self.checkbox = widgets.Checkbox(value=False, indent=False, layout={"width": "2em"})
        self.risk = widgets.HTML(
            f"<b style='color:white;background:{colour};padding:1px 6px;border-radius:3px'>"
            f"{html.escape(item.risk.upper())}</b>", layout={"width": "6em"})
        self.details = widgets.HTML(layout={"width": "70%"})
        self.result = widgets.HTML("", layout={"width": "25%"})
        self._describe(payload)
        super().__init__([self.checkbox, self.risk, self.details, self.result],
                         layout={"border_bottom": "1px solid #ddd", "padding": "4px 0"})

    def _describe(self, payload: dict) -> None:
        self.details.value = (
            f"<code>{html.escape(self.item.tool)}</code> "
            f"<code>{html.escape(canonical_json(payload['args']))}</code><br>"
            f"task: {html.escape(str(payload.get('task', '')))}<br>"
            f"<small>thread {html.escape(self.item.thread_id)} &middot; "
            f"{html.escape(self.item.when())}</small>{context_html(payload)}")

    def update(self, item: InboxItem) -> None:
        self.item = item
        self._describe(item.payload)

    def finish(self, message: str, ok: bool) -> None:
        self.done = True
        self.checkbox.value = False
        self.checkbox.disabled = True
        colour = "#2e7d32" if ok else "#c62828"
        self.result.value = f"<span style='color:{colour}'>{html.escape(message)}</span>"


class InboxWidget(widgets.VBox):
    """The inbox in JupyterLab. Tick rows, name yourself, then *Approve* or *Reject selected*."""

    def __init__(self, inbox: ApprovalInbox, approver: str = "learner"):
        self.inbox = inbox
        self.rows: list[InboxRow] = []
        self.approver = widgets.Text(value=approver, description="approver")
        self.reason = widgets.Text(placeholder="why (sent to the agent on reject)",
                                   description="reason")
        self.approve_selected = widgets.Button(description="Approve selected",
                                               button_style="success")
        self.reject_selected = widgets.Button(description="Reject selected",
                                              button_style="danger")
        self.refresh_button = widgets.Button(description="Refresh")
        self.status = widgets.HTML()
        self.table = widgets.VBox()
        self.approve_selected.on_click(lambda _b: self.decide("approve"))
        self.reject_selected.on_click(lambda _b: self.decide("reject"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        super().__init__([
            self.table, self.approver, self.reason,
            widgets.HBox([self.approve_selected, self.reject_selected, self.refresh_button]),
            self.status,
        ])
        self.refresh()

    def row(self, thread_id: str, tool: str | None = None) -> InboxRow:
        """The open row for a thread (and tool): handy for ticking rows from code."""
        for row in self.rows:
            if not row.done and row.item.thread_id == thread_id and tool in (None, row.item.tool):
                return row
        raise KeyError(f"no open row for thread {thread_id!r}" + (f", tool {tool!r}" if tool
                                                                   else ""))

    def refresh(self) -> None:
        """Add rows for new approvals, update ages, and close rows answered elsewhere."""
        current = {item.key: item for item in self.inbox.items()}
        for row in self.rows:
            if row.done:
                continue
            now = current.get(row.item.key)
            if now is None:
                row.finish("no longer pending: answered elsewhere", ok=False)
            elif now.fingerprint != row.item.fingerprint:
                row.finish("changed since listed: see its new row", ok=False)
            else:
                row.update(now)
        open_keys = {row.item.key for row in self.rows if not row.done}
        self.rows += [InboxRow(item) for key, item in current.items() if key not in open_keys]
        self.table.children = self.rows or [widgets.HTML("<i>nothing waits for approval</i>")]
        waiting = sum(not r.done for r in self.rows)
        self.status.value = f"{waiting} approval(s) waiting"

    def decide(self, kind: str) -> None:
        """What the two buttons do: answer every ticked row, then show each row's result."""
        selected = [row for row in self.rows if row.checkbox.value and not row.done]
        if not selected:
            self.status.value = "<b>nothing selected</b>: tick the approvals to answer first"
            return
        decision = {"kind": kind, "approver": self.approver.value, "reason": self.reason.value}
        try:
            results = self.inbox.resolve([(row.item, decision) for row in selected])
        except ApprovalError as exc:
            self.status.value = f"<b>refused, nothing ran</b>: {html.escape(str(exc))}"
            return
        for row, result in zip(selected, results, strict=True):
            row.finish(result.message, result.resumed)
        self.refresh()
        done = sum(r.resumed for r in results)
        self.status.value += (f" &middot; last action: {done} of {len(results)} "
                              f"{html.escape(kind)} answer(s) went through")
