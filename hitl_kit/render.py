"""What a person reads: a pending request rendered as rows, and as escaped HTML.

The domain modules (approval, inbox, decisions, timeouts) import nothing from here and no widget
code; the card, the inbox widget, the terminal and the web pages do. Two rules hold for every
text that came from a model, from data or from another person:

* it is **escaped**: shown, never rendered as HTML;
* it is **visible**: a character a reader cannot see or cannot tell apart from another (a bidi
  override such as U+202E, a zero-width space, a Cyrillic ``а`` inside a Latin word, a
  full-width letter) is shown as a ``\\u202e`` marker, and the request gets a warning line that
  names each one. What runs contains those characters; the approver must be able to see them.

``visible(text)`` and ``reveal(text)`` are the one place this is done; every channel uses them.
Which characters a reader cannot see, and which letters disguise a word, is
``hitl_kit.identity``'s rule (``hidden_characters``, ``mixed_script_letters``): the same rule that
refuses such characters in a person's name.
"""

from __future__ import annotations

import functools
import html
import json
import re
import unicodedata
from datetime import UTC, datetime

from hitl_kit.identity import hidden_characters, mixed_script_letters

RISK_COLOURS = {"low": "#2e7d32", "medium": "#ef6c00", "high": "#c62828"}
SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")  # anything but printable ASCII
_WORD = re.compile(r"\w+")
_MARKER = re.compile(r"\\(?:u[0-9a-f]{4}|U[0-9a-f]{8}|[ntr])")
_CLEAN = re.compile(r"[\x20-\x7e]*")


@functools.lru_cache(maxsize=4096)
def _looks_like(char: str) -> str | None:
    """A full-width or styled variant of a plain letter or digit (``Ｒ``, ``𝐝``): a name may be
    spelt with it (it is the same person), but a reader should see it is not the plain one."""
    if unicodedata.category(char)[0] in "LN":
        plain = unicodedata.normalize("NFKC", char)
        if plain != char and plain.isascii() and plain.isalnum():
            return f"looks like {plain!r}"
    return None


def _marker(char: str) -> str:
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def reveal(text: str, multiline: bool = False) -> tuple[str, list[str]]:
    """``text`` with every hidden or look-alike character replaced by its ``\\uXXXX`` marker, and
    one description per distinct character found (empty when there was nothing to show).
    Line breaks are kept when ``multiline``; elsewhere they are shown as ``\\n``.

    >>> reveal("delete customer 3\\u202e")
    ('delete customer 3\\\\u202e', ['U+202E RIGHT-TO-LEFT OVERRIDE (bidi control: reorders the text around it)'])
    """  # noqa: E501
    text = str(text)
    if _CLEAN.fullmatch(text):
        return text, []
    marked = {at: why for at, why in hidden_characters(text)
              if not (multiline and text[at] == "\n")}
    for found in _NOT_PLAIN.finditer(text):
        why = _looks_like(found.group())
        if why:
            marked.setdefault(found.start(), why)
    for word in _WORD.finditer(text):
        for at, why in mixed_script_letters(word.group()):
            marked.setdefault(word.start() + at, why)
    if not marked:
        return text, []
    pieces, found_chars, last = [], {}, 0
    for i in sorted(marked):
        char = text[i]
        pieces += [text[last:i], _marker(char)]
        last = i + 1
        found_chars.setdefault(char, marked[i])
    pieces.append(text[last:])
    notes = [f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')} ({why})"
             for c, why in found_chars.items()]
    return "".join(pieces), notes


def visible(text: str, multiline: bool = False) -> str:
    """``reveal(text)`` without the descriptions: what to show a person."""
    return reveal(text, multiline)[0]


def hidden_warning(notes: list[str]) -> str:
    """The warning line for a request whose texts held hidden or look-alike characters."""
    return ("hidden or look-alike characters, shown as \\u markers; what runs contains them: "
            + "; ".join(notes))


def payload_rows(request) -> list[tuple[str, str]]:
    """The request (an ``ApprovalRequest``) as (label, text) rows, in the order an approver
    should read them; every text made visible, with a warning row first when any held hidden
    characters."""
    def text(value) -> str:
        return value if isinstance(value, str) else json.dumps(value, default=str,
                                                              ensure_ascii=False)

    rows = [
        ("risk", f"{str(request.risk).upper()} ({request.reversibility}, {request.policy})"),
        ("the agent was asked", text(request.task)),
        ("it wants to run", f"{request.tool}: {request.description}"),
        ("with arguments", text(request.args)),
        ("it would touch", text(request.target) if request.target else "no record"),
        ("if you approve", text(request.on_approve)),
        ("if you reject", text(request.on_reject)),
        ("why you are asked", text(request.why_gated)),
    ]
    if request.raised_by:
        rows.insert(1, ("raised by", "; ".join(map(text, request.raised_by))))
    if request.provenance:
        read = ", ".join(text(p["source"]) for p in request.provenance)
        rows.insert(2, ("it had read", read))
    for source in request.provenance:
        if source.get("suspicious") and source.get("quote"):
            rows.insert(3, ("READ THIS FIRST", f"{text(source['source'])} says: "
                                               f"\"{text(source['quote'])}\""))
    if request.may_decide or request.approvals_needed > 1:
        who = " or ".join(request.may_decide or []) or "any approver"
        needed = request.approvals_needed
        rows.append(("who may approve", who + (f"; {needed} different people must approve"
                                               if needed > 1 else "")))
    if request.requested_by:
        rows.append(("asked for by", f"{text(request.requested_by)} (who may not approve it)"))
    if request.edited_by:
        rows.append(("arguments edited by", text(request.edited_by)))
    if request.expires_at:
        rows.append(("request expires", f"{moment(text(request.expires_at))} (an approval "
                                        "after that does not run)"))
    if request.problem:  # the call cannot run as proposed: edit or reject only
        rows.insert(0, ("CANNOT BE APPROVED", text(request.problem)))
    if request.error:
        rows.insert(0, ("previous answer refused", text(request.error)))
    shown, notes = [], []
    for label, value in rows:
        value, found = reveal(value)
        shown.append((label, value))
        notes += [note for note in found if note not in notes]
    if notes:
        shown.insert(0, ("WARNING", hidden_warning(notes)))
    return shown


def escaped(text: str, multiline: bool = False) -> str:
    """Any untrusted text for HTML: made visible, then escaped; its markers highlighted."""
    shown, notes = reveal(text, multiline)
    return _highlight(html.escape(shown)) if notes else html.escape(shown)


def _highlight(escaped_text: str) -> str:
    return _MARKER.sub(lambda m: f"<mark>{m.group()}</mark>", escaped_text)


PRE_STYLE = ("margin:0;white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere;"
             "font-family:var(--jp-code-font-family, monospace)")


def payload_table_html(request) -> str:
    """payload_rows as an HTML table, every text escaped: it came from a model or from data, so
    it is shown, never rendered (the card, the inbox and the web pages all use this)."""
    rows = payload_rows(request)
    warned = bool(rows) and rows[0][0] == "WARNING"
    cells = []
    for label, text in rows:
        value = html.escape(text)
        colour = ""
        if label == "WARNING":
            colour = ";color:#c62828;font-weight:bold"
        elif warned:
            value = _highlight(value)
        cells.append(
            f"<tr><th style='text-align:left;vertical-align:top;padding-right:1em;"
            f"white-space:nowrap{colour}'>{html.escape(label)}</th>"
            f"<td><pre style='{PRE_STYLE}{colour}'>{value}</pre></td></tr>")
    return f"<table style='table-layout:auto;width:100%'>{''.join(cells)}</table>"


def context_html(request) -> str:
    """The full context folded away under a "full context" summary."""
    return f"<details><summary>full context</summary>{payload_table_html(request)}</details>"


def _as_datetime(when: str | datetime) -> datetime:
    parsed = datetime.fromisoformat(when) if isinstance(when, str) else when
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _span(seconds: float) -> str | None:
    """'5 min', '2 s'; None under a second."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return None


def ago(when: str | datetime, now: datetime | None = None) -> str:
    """'just now', '2 s ago', '5 min ago' for an ISO timestamp or a datetime."""
    seconds = max(0.0, ((now or datetime.now(UTC)) - _as_datetime(when)).total_seconds())
    span = _span(seconds)
    return f"{span} ago" if span else "just now"


def moment(when: str | datetime, now: datetime | None = None) -> str:
    """A point in time for people: to the second in UTC, and how far it is from now (an ISO
    timestamp's microseconds and offset are for machines). Text that is not a timestamp is
    returned as it is.

    >>> moment("2026-12-06T19:00:10.727826+00:00", now=datetime(2026, 12, 6, 18, 0, tzinfo=UTC))
    '2026-12-06 19:00:10 UTC (in 1 h)'
    >>> moment("2026-12-06T17:55:00+00:00", now=datetime(2026, 12, 6, 18, 0, tzinfo=UTC))
    '2026-12-06 17:55:00 UTC (5 min ago)'
    """
    try:
        when = _as_datetime(when).astimezone(UTC)
    except (TypeError, ValueError):
        return str(when)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    span = _span(abs(seconds))
    relative = "now" if span is None else f"in {span}" if seconds > 0 else f"{span} ago"
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({relative})"


def claim_line(claim, now: datetime | None = None) -> str:
    """Who decided and how, for people: 'approved by ana 2 s ago: looks right' (no ids, no ISO
    timestamps). ``claim`` is a ``hitl_kit.ledger.Claim``."""
    decision = claim.decision
    who = ("by the system" if decision.approver == "system"
           else f"by {visible(decision.approver)}")
    because = f": {visible(decision.reason)}" if decision.reason else ""
    return f"{decision.kind.past} {who} {ago(claim.decided_at, now)}{because}"
