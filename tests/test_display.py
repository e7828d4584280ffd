"""What a person reads: hidden characters made visible everywhere, and no string from a model,
from data or from a person ever rendered as HTML (card, inbox, terminal; the web pages in
test_web.py)."""

from datetime import UTC, datetime
from html.parser import HTMLParser
from types import SimpleNamespace

import ipywidgets as widgets
import pytest

from hitl_kit.approval import AlreadyDecided, ApprovalError, Outcome, Pending
from hitl_kit.cards import ApprovalBoard, ApprovalCard, _countdown_html
from hitl_kit.inbox import ApprovalInbox, Resolution
from hitl_kit.inbox_widget import InboxWidget
from hitl_kit.ledger import Claim
from hitl_kit.render import claim_line, payload_rows, reveal, visible
from hitl_kit.terminal import approve_in_terminal
from hitl_kit.timeouts import Deadline

from .conftest import unchecked_decision, unchecked_pending

# -- hidden characters ------------------------------------------------------------------------

HIDDEN = [
    ("\u202e", "RIGHT-TO-LEFT OVERRIDE"), ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
    ("\u200b", "ZERO WIDTH SPACE"), ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
    ("\u00ad", "SOFT HYPHEN"), ("\u3164", "HANGUL FILLER"), ("\ufe0f", "VARIATION SELECTOR-16"),
    ("\U000e0041", "TAG LATIN CAPITAL LETTER A"), ("\u00a0", "NO-BREAK SPACE"),
    ("\u2028", "LINE SEPARATOR"), ("\x1b", "unnamed"), ("\uff44", "FULLWIDTH LATIN SMALL LETTER D"),
    ("\U0001d41d", "MATHEMATICAL BOLD SMALL D"),
]


@pytest.mark.parametrize(("char", "name"), HIDDEN, ids=[n for _, n in HIDDEN])
def test_a_hidden_character_becomes_a_marker_and_is_named(char, name):
    shown, notes = reveal(f"rita{char}")
    assert char not in shown and shown.startswith("rita\\")
    assert len(notes) == 1 and name in notes[0] and f"U+{ord(char):04X}" in notes[0]


def test_a_lookalike_letter_inside_a_latin_word_is_shown():
    shown, notes = reveal("rit\u0430 approved p\u0430yp\u0430l")  # Cyrillic a, three times
    assert shown == "rit\\u0430 approved p\\u0430yp\\u0430l"
    assert notes == ["U+0430 CYRILLIC SMALL LETTER A (looks like a Latin letter, inside a Latin "
                     "word)"]


@pytest.mark.parametrize("text", ["Привет, мир", "café crème", "東京で会議", "Ελληνικά",
                                  "plain ASCII (with 'quotes') & <tags>", "👍 done"])
def test_ordinary_text_in_any_script_is_left_alone(text):
    assert reveal(text) == (text, [])


def test_who_decided_is_shown_visibly_and_without_ids():
    claim = Claim("t", "i-123", "f" * 16, unchecked_decision("approve", "rit\u0430", "ok\u200b"),
                  "2026-11-30T10:00:00.000+00:00")
    line = claim_line(claim, now=datetime(2026, 11, 30, 10, 0, 42, tzinfo=UTC))
    assert line == "approved by rit\\u0430 42 s ago: ok\\u200b"


def test_line_breaks_are_kept_only_where_text_may_span_lines():
    assert visible("two\nlines", multiline=True) == "two\nlines"
    assert visible("one\nline") == "one\\nline"


BIDI_TASK = 'send a reply to thread 3 saying "refund \u202e0001$\u202c approved"'


def test_the_card_shows_markers_and_a_warning_line_where_the_approver_reads(agent):
    card = ApprovalBoard(agent, agent.start(BIDI_TASK, "t")).cards[0]
    rows = dict(payload_rows(card.pending.request))
    for label in ("the agent was asked", "with arguments", "if you approve"):
        assert "\\u202e" in rows[label] and "\u202e" not in rows[label], label
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in rows["WARNING"]
    assert "\u202e" not in card.details.value and "<mark>\\u202e</mark>" in card.details.value
    card.approver.value = "rit\u0430"  # refused (it mixes scripts), and shown marked in the refusal
    card.approve.click()
    shown = card.status.value + card.note.value
    assert "rit<mark>\\u0430</mark>" in shown and "\u0430" not in shown


def test_the_inbox_row_shows_markers_and_a_warning(agent):
    inbox = ApprovalInbox(agent)
    inbox.submit(BIDI_TASK, "t\u200b")
    row = InboxWidget(inbox).rows[0]
    assert "\u202e" not in row.details.value and "\u200b" not in row.details.value
    assert "WARNING" in row.details.value and "U+200B ZERO WIDTH SPACE" in row.details.value
    assert "task: send a reply" in row.details.value and "\\u202e" in row.details.value


def test_the_terminal_prints_markers_never_the_characters(agent):
    printed = []
    answers = iter(["a"])
    approve_in_terminal(agent, agent.start(BIDI_TASK, "t"), "dev", ask=lambda _: next(answers),
                        say=printed.append)
    assert not any("\u202e" in line for line in printed)
    assert any(line.strip().startswith("WARNING: hidden") for line in printed)
    assert any("if you approve" in line and "\\u202e" in line for line in printed)


# -- nothing untrusted is ever rendered as HTML -----------------------------------------------

ALLOWED_TAGS = {"div", "b", "i", "code", "small", "br", "span", "mark", "table", "tr", "th", "td",
                "pre", "details", "summary", "ul", "li", "p", "h1", "title", "meta", "form",
                "input", "button"}
ALLOWED_ATTRIBUTES = {"style", "charset", "method", "type", "name", "value", "placeholder"}
VOID = {"br", "meta", "input"}


def hostile(field: str) -> str:
    """Markup that would run or break out of its cell if it were not escaped, short enough for a
    person's name (64 characters); the field's name is in it so its text can be found."""
    return f"<script>{field}</script><img src=x onerror={field}></pre>\"'"


def shown_core(field: str) -> str:
    """The part of hostile(field) that survives JSON quoting: what must be seen as text."""
    return f"<script>{field}</script><img src=x onerror={field}></pre>"


class StrictParser(HTMLParser):
    """Records every tag, attribute, unmatched end tag and the page's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems, self.text, self.open = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        self.problems += [f"attribute {name}= on <{tag}>" for name, _ in attrs
                          if name not in ALLOWED_ATTRIBUTES]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"end tag </{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(page: str, fields: list[str], where: str) -> None:
    """No markup but the kit's own, and each hostile field shown, as text."""
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert not parser.problems and not parser.open, f"{where}: {parser.problems} {parser.open}"
    text = "".join(parser.text)
    missing = [field for field in fields if shown_core(field) not in text]
    assert not missing, f"{where}: not shown as text: {missing}"


def widget_html(widget) -> str:
    """Every HTML value in a widget tree, cards opened by a card included."""
    found = [widget.value] if isinstance(widget, widgets.HTML) else []
    for child in getattr(widget, "children", ()):
        found.append(widget_html(child))
    for card in getattr(widget, "next_cards", ()):
        found.append(widget_html(card))
    return "".join(found)


PAYLOAD_FIELDS = ["tool", "task", "args_key", "args_value", "target", "description",
                  "why_gated", "on_approve", "on_reject", "error", "expires_at"]


def hostile_pending(interrupt_id: str) -> Pending:
    return unchecked_pending(hostile_payload(), hostile("thread"), interrupt_id)


def hostile_payload() -> dict:
    return {
        "tool": hostile("tool"), "task": hostile("task"),
        "args": {hostile("args_key"): hostile("args_value")},
        "tool_call_id": "call_1", "description": hostile("description"),
        "target": {"customer": {"name": hostile("target")}},
        "reversibility": "irreversible_high", "policy": "hard_gate", "risk": "high",
        "why_gated": hostile("why_gated"), "on_approve": hostile("on_approve"),
        "on_reject": hostile("on_reject"), "error": hostile("error"),
        "expires_at": hostile("expires_at"), "fingerprint": "f" * 16,
    }


class ScriptedAgent:
    """Stands in for ApprovalAgent: answers resume() with what a test scripts, so every text a
    card can show (approver, reason, answer, refusals, new requests) can be made hostile."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def resume(self, thread_id, decision, **kwargs):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def hostile_claim(field: str) -> Claim:
    return Claim("t", "i1", "f" * 16, unchecked_decision("reject", hostile(f"{field}_approver"),
                                                      hostile(f"{field}_reason")),
                 datetime.now(UTC).isoformat())


def test_no_string_reaches_the_card_as_markup():
    follow_up = hostile_pending("i2")
    agent = ScriptedAgent(
        ApprovalError(hostile("refusal")),
        Outcome(hostile("thread"), pending=[follow_up]),  # the approval opens a new request
        Outcome(hostile("thread"), answer=hostile("answer")),
    )
    outcome = Outcome(hostile("thread"), pending=[hostile_pending("i1")])
    board = ApprovalBoard(agent, outcome, approver=hostile("approver"))
    card = board.cards[0]
    assert_inert(widget_html(board), PAYLOAD_FIELDS, "card as shown")
    card.approve.click()  # refused
    assert_inert(widget_html(board), PAYLOAD_FIELDS + ["refusal"], "card refusing")
    card.reason.value = hostile("reason")
    card.approve.click()
    card.next_cards[0].approve.click()
    assert_inert(widget_html(board), PAYLOAD_FIELDS + ["approver", "reason", "answer"],
                 "card decided")

    late = ApprovalCard(ScriptedAgent(AlreadyDecided(hostile_claim("late"))), "t",
                        hostile_pending("i3"))
    late.approve.click()
    assert_inert(widget_html(late), ["late_approver", "late_reason"], "card decided elsewhere")

    timer = SimpleNamespace(escalated_to=[hostile("escalated_to")], remaining=lambda: 3.0,
                            deadline=Deadline(5, default="escalate",
                                              escalate_to=hostile("escalate_to")))
    assert_inert(_countdown_html(timer), ["escalated_to", "escalate_to"], "countdown")

    finished = ApprovalBoard(ScriptedAgent(), Outcome(hostile("thread"), answer=hostile("final")))
    assert_inert(widget_html(finished), ["final"], "board with nothing to approve")


class ScriptedInbox:
    """Stands in for ApprovalInbox with one hostile item and scripted resolutions."""

    def __init__(self, *resolutions):
        self.resolutions = list(resolutions)
        self.item = hostile_pending("i1")
        self.pending = [self.item]
        self.agent = SimpleNamespace(ledger=SimpleNamespace(claims=SimpleNamespace(
            listed=lambda thread_id=None: [hostile_claim("ledger")])))

    def items(self):
        return list(self.pending)

    def when(self, pending):
        return hostile("when")

    def resolve(self, answers):
        result = self.resolutions.pop(0)
        if isinstance(result, Exception):
            raise result
        self.pending = []
        return [result(item, decision) for item, decision in answers]


def test_no_string_reaches_the_inbox_as_markup():
    def approved(item, decision):
        return Resolution(item, True, f"approved by {decision['approver']}: "
                                      f"{decision['reason']}", decision)

    inbox = ScriptedInbox(ApprovalError(hostile("refusal")), approved)
    widget = InboxWidget(inbox, approver=hostile("approver"))
    fields = ["tool", "task", "args_key", "args_value", "thread"]
    assert_inert(widget_html(widget), fields + PAYLOAD_FIELDS, "inbox as shown")
    widget.rows[0].checkbox.value = True
    widget.approve_selected.click()  # refused
    assert_inert(widget_html(widget), fields + ["refusal"], "inbox refusing")
    widget.reason.value = hostile("reason")
    widget.approve_selected.click()
    assert_inert(widget_html(widget), ["approver", "reason"], "inbox decided")

    def lost(item, decision):
        return Resolution(item, False, "refused, nothing ran: already decided", decision)

    elsewhere = InboxWidget(ScriptedInbox(lost))
    elsewhere.rows[0].checkbox.value = True
    elsewhere.approve_selected.click()
    assert_inert(widget_html(elsewhere), ["ledger_approver", "ledger_reason"], "inbox lost race")


def test_no_string_reaches_the_real_card_and_inbox_as_markup(agent, world):
    """The same through the real agent: the task, the model's arguments, the record a call
    touches, the approver and the reason."""
    world.update_customer(4, "name", hostile("target"))
    for task, thread, fields in [(f'send a reply to thread 3 saying "{hostile("body")}"', "t",
                                  ["body"]), ("delete customer 4", "u", ["target"])]:
        card = ApprovalBoard(agent, agent.start(task, thread)).cards[0]
        assert_inert(widget_html(card), fields, f"real card: {task}")
        card.approver.value, card.reason.value = hostile("approver"), hostile("reason")
        card.reject.click()
        assert_inert(widget_html(card), fields, f"real card decided: {task}")

    inbox = ApprovalInbox(agent)
    inbox.submit(f'send a reply to thread 3 saying "{hostile("body")}"', "v")
    inbox.submit("delete customer 4", "w")
    widget = InboxWidget(inbox, approver=hostile("approver"))
    assert_inert(widget_html(widget), ["body", "target"], "real inbox")
    widget.reason.value = hostile("reason")
    for row in widget.rows:
        row.checkbox.value = True
    widget.reject_selected.click()
    assert_inert(widget_html(widget), ["body", "target"], "real inbox decided")


# The web pages (dashboard, approval-link pages) have the same test over every page in
# tests/test_web.py::test_no_untrusted_text_reaches_a_page_as_markup.
