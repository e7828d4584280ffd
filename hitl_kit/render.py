"""What a person reads: a pending request rendered as rows, and as escaped HTML.

The domain modules (approval, inbox, decisions, timeouts) import nothing from here and no widget
code; the card, the inbox widget and the web pages do. Everything that came from a model or from
data is escaped: it is shown, never rendered.
"""

from __future__ import annotations

import html
import json

RISK_COLOURS = {"low": "#2e7d32", "medium": "#ef6c00", "high": "#c62828"}


def payload_rows(payload: dict) -> list[tuple[str, str]]:
    """The payload as (label, text) rows, in the order an approver should read them."""
    def text(value) -> str:
        return value if isinstance(value, str) else json.dumps(value, default=str)

    rows = [
        ("risk", f"{payload['risk'].upper()} ({payload['reversibility']}, {payload['policy']})"),
        ("the agent was asked", payload["task"]),
        ("it wants to run", f"{payload['tool']}: {payload['description']}"),
        ("with arguments", text(payload["args"])),
        ("it would touch", text(payload["target"]) if payload.get("target") else "no record"),
        ("if you approve", payload["on_approve"]),
        ("if you reject", payload["on_reject"]),
        ("why you are asked", payload["why_gated"]),
    ]
    if payload.get("expires_at"):
        rows.append(("request expires", f"{payload['expires_at']} (an approval after that does "
                                        "not run)"))
    if payload.get("error"):
        rows.insert(0, ("previous answer refused", payload["error"]))
    return rows


def payload_table_html(payload: dict) -> str:
    """payload_rows as an HTML table, every text escaped: it came from a model or from data, so
    it is shown, never rendered (the card, the inbox and the web pages all use this)."""
    cells = "".join(
        f"<tr><th style='text-align:left;vertical-align:top;padding-right:1em'>"
        f"{html.escape(label)}</th><td><pre style='margin:0;white-space:pre-wrap'>"
        f"{html.escape(text)}</pre></td></tr>"
        for label, text in payload_rows(payload))
    return f"<table>{cells}</table>"


def context_html(payload: dict) -> str:
    """The full context folded away under a "full context" summary."""
    return f"<details><summary>full context</summary>{payload_table_html(payload)}</details>"
