"""Approval cards: readable, escaped, resumed from the button callback, decided once."""

import re

import pytest

from hitl_kit.cards import ApprovalBoard, ApprovalCard

XSS = '<img src=x onerror="alert(1)">'


def paused_card(agent, task="Delete the test customer record", thread="t", approver="ana"):
    outcome = agent.start(task, thread)
    assert outcome.paused
    return ApprovalCard(agent, thread, outcome.pending[0], approver=approver)


def test_card_shows_the_context_and_risk(agent):
    card = paused_card(agent)
    assert "HIGH RISK" in card.header.value and "delete_customer" in card.header.value
    for text in ("Delete the test customer record", "Test Customer", "irreversible_high",
                 "if you approve", "if you reject"):
        assert text in card.details.value


def test_approve_click_resumes_executes_and_locks_the_card(agent, world):
    card = paused_card(agent)
    card.approve.click()
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]
    assert all(b.disabled for b in (card.approve, card.reject, card.edit))
    assert "Approved by ana" in card.status.value and "delete_customer" in card.status.value


def test_second_click_runs_nothing_more_and_keeps_the_result_in_view(agent, world):
    card = paused_card(agent, task="delete customer 4")
    card.approve.click()
    result = card.status.value
    card.approve.click()  # a double click
    card.reject.click()
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]
    assert card.status.value == result and "Approved by ana" in result
    assert "changed nothing" in card.note.value
    assert agent.outcome("t").decisions[-1].verdict == "approved"


def test_reject_click_runs_nothing_and_sends_the_reason(agent, world):
    card = paused_card(agent)
    card.reason.value = "QA still needs it"
    card.reject.click()
    assert len(world.rows("customers")) == 4
    assert "Rejected by ana" in card.status.value and "QA still needs it" in card.status.value


def test_edit_shows_a_new_card_for_the_edited_call(agent, world):
    card = paused_card(agent)
    card.edited_args.value = '{"customer_id": 4}'
    card.edit.click()
    assert len(card.next_cards) == 1
    follow_up = card.next_cards[0]
    assert "Alan Turing" in follow_up.details.value
    follow_up.approve.click()
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]


@pytest.mark.parametrize(("args", "message"), [("{not json", "not JSON"),
                                               ('{"customer_id": "x"}', "invalid")])
def test_bad_edit_is_refused_and_the_card_stays_open(agent, world, args, message):
    card = paused_card(agent)
    card.edited_args.value = args
    card.edit.click()
    assert message in card.note.value
    assert not card.approve.disabled and len(world.rows("customers")) == 4
    card.approve.click()
    assert len(world.rows("customers")) == 3


def test_missing_approver_is_refused(agent, world):
    card = paused_card(agent, approver="")
    card.approve.click()
    assert "approver" in card.note.value and len(world.rows("customers")) == 4


def test_payload_html_renders_as_text(agent):
    card = paused_card(agent, task=f'send a reply to thread 3 saying "{XSS}"')
    html_shown = card.header.value + card.details.value
    assert "<img" not in html_shown
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html_shown


def test_outcome_text_is_escaped_too(agent):
    card = paused_card(agent, task=f'send a reply to thread 3 saying "{XSS}"')
    card.approve.click()
    assert "<img" not in card.status.value and "&lt;img" in card.status.value


def test_board_gives_one_card_per_pending_approval(agent, world):
    outcome = agent.start('delete thread 2; send a reply to thread 3 saying "ok"', "t")
    board = ApprovalBoard(agent, outcome)
    assert len(board.cards) == 2
    board.cards[1].approve.click()
    assert "still waits for 1 approval(s): delete_thread (its card is above)" in \
        board.cards[1].status.value
    assert board.cards[1].next_cards == []  # the other one already has its own card
    board.cards[0].reject.click()
    assert world.count("outbox") == 1 and world.count("threads") == 4
    for card in board.cards:  # both say how the turn ended; neither still says "waits"
        assert "the turn finished" in card.status.value and "waits" not in card.status.value
        assert "send_reply" in card.status.value


def test_board_without_pending_shows_the_answer(agent):
    board = ApprovalBoard(agent, agent.start("read the inbox", "t"))
    assert board.cards == [] and "Nothing to approve" in board.children[0].value


def test_first_card_of_a_turn_points_below_to_what_still_waits(agent):
    board = ApprovalBoard(agent, agent.start('delete thread 2; send a reply to thread 3 saying '
                                             '"ok"', "t"))
    board.cards[0].approve.click()
    assert "send_reply (its card is below)" in board.cards[0].status.value


def test_an_edit_opens_its_card_below_and_says_so(agent):
    card = paused_card(agent)
    card.edited_args.value = '{"customer_id": 4}'
    card.edit.click()
    assert "delete_customer (its card is below)" in card.status.value
    card.next_cards[0].reject.click()
    assert "the turn finished" in card.status.value  # the edited card's answer reaches it too


def test_long_arguments_fit_the_edit_box_and_labels_stay_on_one_line(agent):
    body = "a long reply that keeps going " * 12
    card = paused_card(agent, task=f'send a reply to thread 3 saying "{body.strip()}"')
    assert card.edited_args.rows >= 5 and card.edited_args.layout.width == "95%"
    assert card.edited_args.style.description_width == "initial"
    assert "overflow-wrap:anywhere" in card.details.value and "word-break:normal" in \
        card.details.value
    assert "white-space:nowrap" in card.details.value  # the label column never wraps


def test_a_late_click_after_a_timeout_keeps_the_headline(agent, world):
    from hitl_kit.timeouts import Deadline, DeadlineWatcher

    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(60)})
    board = ApprovalBoard(agent, agent.start("delete customer 4", "t"), watcher=watcher)
    card = board.cards[0]
    card.timer.expire_now()
    card.ticker.join(timeout=60)
    headline = card.status.value
    said = headline.split("<br>")[0]  # the headline, before the turn's own answer
    assert "Timed out" in said and said.count("rejected by default") == 1, said
    card.approve.click()
    assert card.status.value == headline and "changed nothing" in card.note.value
    assert len(world.rows("customers")) == 4


def test_a_decision_made_elsewhere_reads_as_a_person_would_say_it(agent):
    card = paused_card(agent)
    agent.resume("t", {"kind": "reject", "approver": "bo", "reason": "not yet"})
    card.approve.click()
    shown = card.status.value
    assert re.search(r"Not applied.*rejected by bo (just now|\d+ s ago): not yet", shown), shown
    assert card.pending.interrupt_id not in shown and not re.search(r"\d{4}-\d\d-\d\dT", shown)
