"""What a learner reads: for one mutant per check, the flaw in one line, then the evidence, then
a hint for that flaw; and no message anywhere is a traceback."""

import re

import pytest

from hitl_kit.course.checks import get_drill
from hitl_kit.course.selfcheck import FAIL, Flaw

from . import DRILL_KEYS, mutants_of, report_of

# (drill, mutant): the message's first line, and how its hint begins. One row per check.
MESSAGES = {
    ("drill1", "misspelt-class"): (
        "1 of the ten actions lacks a known class and policy", "Each of the ten actions needs"),
    ("drill1", "policy-contradicts-class"): (
        "a policy contradicts its action's class", "The class decides the policy"),
    ("drill1", "over-gating-a-read"): (
        "actions the user can undo (or that change nothing) wait for a human",
        "Gating what the user can undo is over-gating"),
    ("drill1", "a-send-left-ungated"): (
        "a message that leaves the mailbox is sent without a human",
        "Once a reply or an unsubscribe request has left"),
    ("drill1", "contact-behind-a-soft-gate"): (
        "a change the user can undo (a contact, a mail rule, a calendar event) waits for a human",
        "These change only the user's own address book"),
    ("drill1", "deletion-behind-a-soft-gate"): (
        "a permanent deletion can happen without a human saying yes",
        "A soft gate runs the action when nobody rejects it in time"),
    ("drill1", "hard-gate-for-everything"): (
        "policy_for disagrees with EMAIL_TABLE for 'read_inbox'",
        "For an action in the table, return the policy"),
    ("drill1", "lower-cases-the-name"): (
        "policy_for lets an action nobody classified run without a hard gate",
        "Compare names exactly: no .lower()"),
    ("drill1", "outside-reply-behind-a-soft-gate"): (
        "with EMAIL_RULES, a reply to someone@vendor.example gets 'soft_gate', not a hard gate",
        "One rule for send_reply over target.thread.sender_domain"),
    ("drill1", "greater-or-equal-for-greater"): (
        "a rule raises the call at its threshold, where it does not hold",
        "Each operator exactly as written: 10 > 10"),
    ("drill1", "last-rule-wins"): (
        "two rules hold and the call does not get the higher class",
        "The call's class is the highest of the action's class and every rule that holds"),
    ("drill1", "fails-closed-to-the-rules-class"): (
        "a rule that cannot be evaluated raises the call only to the rule's class",
        "Fail closed means the top class"),
    ("drill1", "no-explanation"): (
        "raised_by is empty although a rule raised the call",
        "Return the rules that raised the call with the policy"),
    ("drill1", "unknown-action-gets-the-rules-class"): (
        "a rule gives an action nobody classified a class of its own",
        "Rules raise an action's class; an unknown action has none to raise"),
    ("drill2", "reads-by-prefix"): (
        "needs_approval lets a tool nobody classified run without a human",
        "List the reads and answer False for exactly those names"),
    ("drill2", "asks-for-everything"): (
        "'read customer 2' paused, but it only reads", "Call interrupt() only when"),
    ("drill2", "payload-without-arguments"): (
        "the approver's payload does not say what would run",
        "interrupt() takes the payload the human sees"),
    ("drill2", "review-runs-the-call-too"): (
        "one approval ran delete_customer 2 times", "Only execute runs the call"),
    ("drill2", "normalises-the-decision-word"): (
        "the call ran although the answer was 'APPROVED', not the exact word",
        "Return the human's answer unchanged as the decision"),
    ("drill2", "rebuilds-the-answer"): (
        "the human's answer is not kept as given", "Return what interrupt() gave back as it is"),
    ("drill2", "a-rejection-sticks-to-the-thread"): (
        "after a rejection, the next task on the same thread does not ask",
        "Every proposed call gets its own interrupt()"),
    ("drill2", "remembers-approvals-globally"): (
        "an approval given on one thread lets the same call run on another",
        "Don't remember approvals in a module-level dict or set"),
    ("drill2", "own-memory-saver"): (
        "your graph keeps its checkpoints somewhere other than the checkpointer it was given",
        "builder.compile(checkpointer=checkpointer): use the argument"),
    ("drill3", "datetime-column-type"): (
        "a column that holds text is not a TEXT column", "Declare each of the ten columns TEXT"),
    ("drill3", "nullable-approver"): (
        "a row without who, what, when or how it ended can be stored",
        "Add NOT NULL to approver_id"),
    ("drill3", "check-ignores-case"): (
        "a value outside the allowed list can be stored", "Compare exactly: CHECK (decision IN"),
    ("drill3", "update-trigger-on-some-columns"): (
        "a stored row can be changed or removed",
        "One BEFORE UPDATE trigger on the whole table (not UPDATE OF some columns)"),
    ("drill3", "retention-delete"): (
        "log_action runs statements that change or remove rows",
        "One INSERT INTO audit_log (...) VALUES (?, ...) with parameters"),
    ("drill3", "positional-values-out-of-order"): (
        "session_id is not stored as given", "Match each value to its column by name"),
    ("drill3", "local-offset-kept"): (
        "a timestamp is not ISO 8601 in UTC with an offset, or is another moment",
        "datetime.now(UTC).isoformat() for timestamp"),
    ("drill3", "error-names-no-field"): (
        "an entry with a field missing is not refused clearly",
        "Before the INSERT, compare the entry's keys with ENTRY_FIELDS"),
    ("drill3", "no-commit"): (
        "the audit row is lost when the caller rolls back", "End log_action with conn.commit()"),
    ("drill4", "timer-in-milliseconds"): (
        "nobody answered, and the thread is still paused after the 0.1 s deadline",
        "threading.Timer takes seconds"),
    ("drill4", "timer-never-cancelled"): (
        "the timer still fired after the approval was decided", "Cancel the timer in decide()"),
    ("drill4", "check-then-set-without-a-lock"): (
        "two callers at the same instant both decided",
        "A flag alone is not enough: both threads can read 'not decided yet'"),
    ("drill4", "timer-in-a-module-variable"): (
        "approvals alive at the same time share state",
        "Keep each approval's flag, lock, timer and config on the instance"),
    ("drill4", "decided-threads-on-the-class"): (
        "a thread paused again could not be decided by its new approval",
        "An approval is one pause of one thread"),
    ("drill4", "async-deadline-cancels-itself"): (
        "nobody answered, and the thread is still paused after the 0.1 s deadline",
        "After the sleep, await self.time_out()"),
    ("drill4", "async-deadline-never-cancelled"): (
        "the deadline task still called time_out() after the approval was decided",
        "Cancel the deadline task in decide()"),
    ("drill4", "async-flag-set-after-await"): (
        "two callers at the same instant both decided",
        "Every await is a point where another coroutine runs"),
    ("drill4", "async-one-lock-for-every-approval"): (
        "deciding one approval waits for another approval's slow resume",
        "Don't hold an asyncio.Lock shared by every approval"),
}
# The flaws of the mistakes this kit's batch of issue 22 is about, as (drill, mutant, check):
# each message names the flaw (never what the kit's given code did with it), then its hint.
NAMED = {
    ("drill1", "namespace-cut-off",
     "policy_for fails closed for every action not in the table"): (
        "policy_for lets an action nobody classified run without a hard gate",
        "Compare the whole name: don't cut a prefix"),
    ("drill2", "decision-as-a-string",
     "an approval runs the call exactly once, even if sent twice"): (
        "the given `execute` failed on what your review returned",
        "execute reads state['decision'] as a dict"),
    ("drill2", "review-renamed", "read-only tasks and tasks with no call finish without pausing"):
        ("your notebook defines `review_node`, the check looks for `review`",
         "Rename `review_node` to `review`"),
    ("drill2", "reads-recorded-as-approved",
     "read-only tasks and tasks with no call finish without pausing"): (
        "the decision recorded for 'read customer 2' is not an auto-approval by 'auto'",
        "The record must say nobody was asked"),
    ("drill3", "temp-triggers", "no statement can change or remove a stored row"): (
        "a stored row can be changed or removed from any other connection: the triggers are TEMP",
        "CREATE TRIGGER, not CREATE TEMP TRIGGER"),
    ("drill3", "local-now-labelled-utc", "timestamps are ISO 8601 in UTC with an offset"): (
        "a timestamp is not ISO 8601 in UTC with an offset, or is another moment",
        "datetime.now(UTC).isoformat() for timestamp"),
    ("drill4", "resumes-with-the-bare-decision",
     "an answer in time wins, keeps its reason, and the timer never fires"): (
        "the given `gate` failed on what your code resumed the graph with",
        "The gate reads answer['decision']"),
    ("drill4", "time-out-holds-the-lock",
     "an answer in time wins, keeps its reason, and the timer never fires"): (
        "time_out() after decide('approved', 'ana', 'looks right') waits forever: it waits for "
        "a lock its own thread already holds", "A threading.Lock taken twice by the same thread"),
    ("drill4", "deadline-on-the-local-clock",
     "no answer within N seconds (or a deadline already due): rejected, logged as timed-out by "
     "system"): ("nobody answered, and the thread is still paused after the 0.1 s deadline",
                 "A deadline is a duration"),
    ("drill4", "timer-started-before-the-object-is-ready",
     "no answer within N seconds (or a deadline already due): rejected, logged as timed-out by "
     "system"): ("a deadline already due (0 s) never timed out",
                 "Start the timer last in __init__"),
    ("drill4", "async-blocking-invoke",
     "asyncio: no answer within N seconds (or a deadline already due): rejected by system"): (
        "your coroutine calls the graph's blocking invoke", "A coroutine must never wait"),
    ("drill4", "async-event-wait",
     "asyncio: no answer within N seconds (or a deadline already due): rejected by system"): (
        "your coroutine blocks the event loop", "A coroutine must never wait"),
}
LABEL = re.compile(r"^  (tried|got|expected|also): +\S|^ {12}\S")


def test_one_row_per_check():
    checks = {(key, chk.name) for key in DRILL_KEYS for chk in get_drill(key).checks}
    shown = set()
    for key, mutant_id in MESSAGES:
        report, _ = report_of(key, mutant_id)
        failed = [r.check.name for r in report.results if r.status == FAIL]
        assert len(failed) == 1, (mutant_id, failed)  # a mutant only this check catches
        shown.add((key, failed[0]))
    assert shown == checks


@pytest.mark.parametrize(("key", "mutant_id"), list(MESSAGES), ids=lambda v: str(v))
def test_the_flaw_then_the_evidence_then_its_hint(key, mutant_id):
    flaw, hint = MESSAGES[key, mutant_id]
    report, _ = report_of(key, mutant_id)
    result = next(r for r in report.results if r.status == FAIL)
    first, *evidence = result.message.splitlines()
    assert first == flaw
    assert evidence and all(LABEL.match(line) for line in evidence), result.message
    assert any(line.startswith("  got:") for line in evidence)
    assert (result.hint or result.check.hint).startswith(hint)
    shown = str(report)  # as printed: the message, then the hint, under the check's name
    at = shown.index(result.check.name)
    assert shown.index(flaw, at) < shown.index("hint: " + hint, at)


@pytest.mark.parametrize(("key", "mutant_id", "check"), list(NAMED),
                         ids=[f"{key}-{mutant_id}" for key, mutant_id, _ in NAMED])
def test_the_mistake_is_named_not_what_the_given_code_did(key, mutant_id, check):
    flaw, hint = NAMED[key, mutant_id, check]
    report, _ = report_of(key, mutant_id)
    result = next(r for r in report.results if r.check.name == check)
    assert result.status == FAIL, str(report)
    assert result.message.splitlines()[0] == flaw, result.message
    assert (result.hint or result.check.hint).startswith(hint), result.hint


def test_a_renamed_entry_point_is_named_once():
    """One missing name fails every check that needs it: the report says it once, in full."""
    report, _ = report_of("drill2", "review-renamed")
    shown = str(report)
    failed = [r for r in report.results if r.status == FAIL]
    assert len(failed) > 1 and "not attempted" not in shown.lower()
    assert shown.count("`review_node` is defined, `review` is not") == 1, shown
    assert shown.count("the check looks for `review` (as above)") == len(failed) - 1, shown


@pytest.mark.parametrize("key", DRILL_KEYS)
def test_no_message_is_a_traceback(key):
    for mutant in mutants_of(key):
        report, _ = report_of(key, mutant.id)
        for result in report.results:
            if result.status == FAIL:
                assert "Traceback" not in result.message and 'File "' not in result.message
                assert "\n" not in result.message.splitlines()[0]
                assert result.hint or result.check.hint


def test_flaw_lays_its_evidence_out_under_the_line():
    flaw = Flaw("the flaw", tried="a\nb", got="c", hint="h")
    assert flaw.message() == "the flaw\n  tried:    a\n            b\n  got:      c"
