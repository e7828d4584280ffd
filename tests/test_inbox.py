"""The approval inbox: pending approvals across threads, answered one by one or in bulk.

The tests of a queue that outlives its agent or its process take ``backend`` and run on SQLite
and on PostgreSQL; the rest use the in-memory default."""

from datetime import UTC, datetime, timedelta

import pytest

from hitl_kit.approval import ApprovalError
from hitl_kit.backends import open_stores
from hitl_kit.contract import Pending
from hitl_kit.inbox import ApprovalInbox, stored_deadline
from hitl_kit.inbox_widget import InboxWidget
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World

from .conftest import agent_of_kind, forked

XSS = "<img src=x onerror=alert(1)>"
TASKS = {
    "del-4": "delete customer 4",
    "del-thread": "delete thread 2",
    "reply": 'send a reply to thread 3 saying "see you"',
    "read": "read the inbox",
}


@pytest.fixture
def agent(world, agent_kind):
    """The agent of each kind on the world, with the offline model and MemorySaver."""
    return agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world)


@pytest.fixture
def inbox(agent):
    box = ApprovalInbox(agent)
    for thread_id, task in TASKS.items():
        box.submit(task, thread_id)
    return box


def executed(world):
    """How many gated actions really ran (the read-only task ran its read at submit)."""
    return sum(world.calls[tool] for tool in ("delete_customer", "delete_thread", "send_reply"))


def by_thread(items):
    return {item.thread_id: item for item in items}


def test_submit_returns_while_paused_and_the_inbox_lists_every_thread(inbox, world):
    items = inbox.items()
    assert sorted(i.thread_id for i in items) == ["del-4", "del-thread", "reply"]
    assert executed(world) == 0 and world.calls["read_inbox"] == 1
    item = by_thread(items)["del-4"]
    request = item.request
    assert (request.task, request.tool, request.args, request.risk) == (
        "delete customer 4", "delete_customer", {"customer_id": 4}, "high")
    assert timedelta(0) <= datetime.now(UTC) - item.asked() < timedelta(seconds=30)
    assert inbox.deadline_of(item) is None and inbox.when(item).startswith("waiting ")
    assert [i.request.risk for i in items] == ["high", "high", "medium"]  # highest risk first
    row = next(r for r in inbox.rows() if r["thread"] == "reply")
    assert row["args"] == '{"body":"see you","thread_id":3}' and row["time_left_s"] is None


def test_parallel_calls_on_one_thread_are_separate_items(agent):
    box = ApprovalInbox(agent)
    box.submit('archive thread 1; delete thread 2; send a reply to thread 3 saying "ok"', "t")
    items = box.items()
    assert sorted(i.request.tool for i in items) == ["delete_thread", "send_reply"]
    assert len({i.interrupt_id for i in items}) == 2


def test_age_and_deadline_come_from_the_clock_and_sort_first(agent):
    asked = datetime.now(UTC)
    deadline = asked + timedelta(minutes=5)
    box = ApprovalInbox(agent, clock=lambda: asked + timedelta(minutes=2),
                        deadline_of=lambda p: deadline if p.thread_id == "c" else None)
    box.submit("delete customer 4", "a")
    box.submit('send a reply to thread 3 saying "x"', "c")
    items = box.items()
    assert [i.thread_id for i in items] == ["c", "a"]  # a deadline outranks a higher risk
    assert box.rows()[0]["time_left_s"] == 180.0
    assert "deadline in 3 min" in box.when(items[0])  # a 5 min deadline, listed 2 min later
    assert box.rows()[1]["age_s"] >= 119
    late = ApprovalInbox(agent, clock=lambda: asked + timedelta(minutes=9),
                         deadline_of=lambda p: asked + timedelta(minutes=5))
    assert "deadline passed 4 min ago" in late.when(late.items()[0])


def test_the_stored_deadline_is_the_armed_timer_else_the_expiry(agent):
    pending = agent.start("delete customer 4", "t").pending[0]
    assert stored_deadline(pending) is None
    expiring = pending.model_copy(update={"request": pending.request.changed(
        expires_at="2030-01-02T03:04:05+00:00")})
    assert stored_deadline(expiring) == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    armed = expiring.model_copy(update={"deadline_at": 1893456000.0})
    assert stored_deadline(armed) == datetime(2030, 1, 1, tzinfo=UTC)


def test_bulk_approve_runs_each_once_and_reports_per_item(inbox, world):
    results = inbox.approve(inbox.items(), "ana", "checked")
    assert [r.resumed for r in results] == [True, True, True]
    assert {r.item.thread_id: r.message for r in results}["del-4"] == (
        "approved by ana; thread finished")
    assert (world.calls["delete_customer"], world.calls["delete_thread"],
            world.calls["send_reply"]) == (1, 1, 1)
    assert inbox.items() == []
    assert all(r.outcome.decisions[-1].decision.approver == "ana" for r in results)


def test_one_bad_item_neither_hides_nor_undoes_the_others(inbox, agent, world, monkeypatch):
    items = by_thread(inbox.items())
    agent.resume("del-thread", {"kind": "reject", "approver": "bo"})  # decided elsewhere
    real_resume = agent.resume

    def flaky_resume(thread_id, decisions, **kwargs):
        if thread_id == "reply":
            raise RuntimeError("mail server down")
        return real_resume(thread_id, decisions, **kwargs)

    monkeypatch.setattr(agent, "resume", flaky_resume)
    results = inbox.approve([items["del-thread"], items["reply"], items["del-4"]], "ana")
    report = {r.item.thread_id: (r.resumed, r.message) for r in results}
    assert report["del-thread"][0] is False
    assert report["del-thread"][1].startswith("refused, nothing ran: ")
    assert report["reply"] == (False, "failed: RuntimeError: mail server down")
    assert report["del-4"] == (True, "approved by ana; thread finished")
    assert (world.calls["delete_customer"], world.calls["delete_thread"],
            world.calls["send_reply"]) == (1, 0, 0)
    assert [i.thread_id for i in inbox.items()] == ["reply"]  # the failed one still waits


def test_bulk_reject_runs_nothing_and_tells_the_agent_why(inbox, world):
    items = inbox.items()
    results = inbox.reject(items, "bo", "not today")
    assert all(r.resumed for r in results)
    assert executed(world) == 0
    assert all("not today" in r.outcome.answer for r in results)


@pytest.mark.parametrize("bad", ["no approver", "duplicate", "not an item", "empty",
                                 "bad edit"])
def test_malformed_answers_are_refused_before_anything_runs(inbox, world, bad):
    items = inbox.items()
    good = {"kind": "approve", "approver": "ana"}
    answers = {
        "no approver": [(i, {"kind": "approve", "approver": " "}) for i in items],
        "duplicate": [(items[0], good), (items[1], good), (items[0], good)],
        "not an item": [(items[0], good), (("del-4", items[1].interrupt_id), good)],
        "empty": [],
        "bad edit": [(items[0], good), (items[1], {"kind": "edit", "approver": "ana",
                                                   "args": {"customer_id": "four"}})],
    }[bad]
    with pytest.raises(ApprovalError):
        inbox.resolve(answers)
    assert executed(world) == 0
    assert len(inbox.items()) == 3


def test_an_answer_is_bound_to_the_arguments_the_reviewer_saw(agent, world):
    box = ApprovalInbox(agent)
    box.submit("delete customer 4", "t")
    seen = box.items()[0]
    agent.resume("t", {"kind": "edit", "approver": "bo", "args": {"customer_id": 1}})
    [result] = box.approve([seen], "ana")  # the edit asked again, under a new interrupt
    assert not result.resumed and result.message.startswith("refused, nothing ran: ")
    now = box.items()[0]
    other_args = now.model_copy(update={"request": now.request.changed(
        args={"customer_id": 2})})
    [result] = box.approve([other_args], "ana")  # same interrupt, not what is pending
    assert not result.resumed and "another version of the request" in result.message
    assert world.calls["delete_customer"] == 0
    [result] = box.approve([now], "ana")
    assert result.resumed and [c["id"] for c in world.rows("customers")] == [2, 3, 4]


def test_on_decided_hears_each_resumed_thread_and_a_failing_callback_changes_nothing(
        inbox, world):
    heard = []
    inbox.on_decided(heard.append)
    items = by_thread(inbox.items())
    inbox.approve([items["del-4"]], "ana")
    inbox.approve([items["del-4"]], "ana")  # refused: no callback
    assert [(r.item.thread_id, r.outcome.paused) for r in heard] == [("del-4", False)]

    def broken(_resolution):
        raise ValueError("pager offline")

    inbox.on_decided(broken)
    [result] = inbox.reject([items["reply"]], "ana", "no")
    assert result.resumed and "callback failed: ValueError: pager offline" in result.message
    assert [r.item.thread_id for r in heard] == ["del-4", "reply"]  # others still called
    inbox.on_decided(broken, remove=True)
    inbox.on_decided(heard.append, remove=True)
    inbox.approve([items["del-thread"]], "ana")
    assert len(heard) == 2 and world.calls["delete_thread"] == 1


def test_a_durable_queue_is_found_by_a_new_agent_on_the_same_store(backend, tmp_path, world,
                                                                   agent_kind):
    def agent():
        return agent_of_kind(agent_kind)(OfflineChatModel(), world.tools(), world=world,
                                         checkpointer=backend.checkpointer(tmp_path),
                                         ledger=backend.ledger(tmp_path))

    first = ApprovalInbox(agent())
    first.submit("delete customer 4", "a")
    first.submit("delete thread 2", "b")
    second = ApprovalInbox(agent())
    assert [i.key for i in second.items()] == [i.key for i in first.items()]


def queue_step(step: str, folder: str, url: str, kind: str) -> dict:
    """One process's part: "ask" pauses three tasks; "decide" approves two of them twice."""
    world = World(folder + "/world.db")
    stores = open_stores(url, folder=folder, durable=False)
    agent = agent_of_kind(kind)(OfflineChatModel(), world.tools(), world=world,
                                **stores.for_agent())
    inbox = ApprovalInbox(agent)
    if step == "ask":
        for thread_id, task in [("a", "delete customer 4"), ("b", "delete customer 2"),
                                ("c", 'send a reply to thread 3 saying "hi"')]:
            inbox.submit(task, thread_id)
        return {"pending": len(inbox.items())}
    heard = []
    inbox.on_decided(lambda r: heard.append(r.item.thread_id))
    listed = inbox.items()
    chosen = [i for i in listed if i.thread_id in ("a", "b")]
    first = inbox.approve(chosen, "ana")
    again = inbox.approve(chosen, "ana")
    return {"listed": sorted(i.thread_id for i in listed),
            "first": [r.resumed for r in first], "again": [r.resumed for r in again],
            "heard": heard, "left": [i.thread_id for i in inbox.items()]}


def test_the_queue_survives_a_restart_and_each_approval_runs_once(backend, tmp_path, agent_kind):
    url = backend.url(tmp_path)

    def run(step):  # each step in a process of its own, which ends with it
        return forked(lambda: queue_step(step, str(tmp_path), url, agent_kind))

    assert run("ask") == {"pending": 3}  # process A paused three tasks and exited
    assert run("decide") == {"listed": ["a", "b", "c"], "first": [True, True],
                             "again": [False, False], "heard": ["a", "b"], "left": ["c"]}

    assert [c["id"] for c in World(str(tmp_path / "world.db")).rows("customers")] == [1, 3]
    trail = backend.audit(tmp_path)
    resolved = [(r["session_id"], r["action_type"], r["decision"], r["outcome"])
                for r in trail.rows() if r["event"] == "resolved"]
    assert sorted(resolved) == [("a", "delete_customer", "approved", "success"),
                                ("b", "delete_customer", "approved", "success")]
    assert trail.verify().ok


# -- the widget -----------------------------------------------------------------------------------

def widget_html(widget: InboxWidget) -> str:
    return " ".join(w.value for row in widget.rows
                    for w in (row.risk, row.details, row.result)) + widget.status.value


def test_the_widget_approves_the_ticked_rows_on_click(inbox, world):
    widget = InboxWidget(inbox, approver="ana")
    assert len(widget.rows) == 3 and "3 approval(s) waiting" in widget.status.value
    assert "HIGH" in widget.row("del-4").risk.value
    widget.row("del-4").checkbox.value = True
    widget.row("reply").checkbox.value = True
    widget.approve_selected.click()
    assert (world.calls["delete_customer"], world.calls["send_reply"],
            world.calls["delete_thread"]) == (1, 1, 0)
    done = [r for r in widget.rows if r.done]
    assert sorted(r.item.thread_id for r in done) == ["del-4", "reply"]
    assert all("approved by ana" in r.result.value and r.checkbox.disabled for r in done)
    assert "1 approval(s) waiting" in widget.status.value
    widget.approve_selected.click()  # nothing ticked now
    assert "nothing selected" in widget.note.value
    assert world.calls["delete_customer"] == 1


def test_the_widget_rejects_with_a_reason_and_refuses_a_nameless_approver(inbox, world):
    widget = InboxWidget(inbox)
    widget.approver.value = ""
    widget.row("del-4").checkbox.value = True
    widget.approve_selected.click()
    assert "refused, nothing ran" in widget.note.value and world.calls["delete_customer"] == 0
    widget.approver.value = "bo"
    widget.reason.value = "still needed"
    widget.reject_selected.click()
    assert "rejected by bo" in next(r for r in widget.rows if r.done).result.value
    assert world.calls["delete_customer"] == 0
    assert inbox.agent.outcome("del-4").decisions[-1].decision.reason == "still needed"


def test_the_widget_closes_rows_answered_elsewhere_and_adds_new_ones(agent, world):
    box = ApprovalInbox(agent)
    box.submit("delete customer 4", "a")
    widget = InboxWidget(box)
    agent.resume("a", {"kind": "reject", "approver": "bo"})  # the terminal, a link, a card...
    box.submit("delete thread 2", "b")
    widget.row("a").checkbox.value = True
    widget.refresh_button.click()
    old = widget.rows[0]
    assert old.done and "answered elsewhere" in old.result.value and not old.checkbox.value
    assert widget.row("b").item.request.tool == "delete_thread"
    widget.approve_selected.click()  # the ticked row was closed: nothing is selected
    assert "nothing selected" in widget.note.value and world.calls["delete_customer"] == 0


def test_the_widget_escapes_everything_from_the_payload(agent):
    box = ApprovalInbox(agent)
    box.submit(f'send a reply to thread 3 saying "{XSS}"', f"t{XSS}")
    widget = InboxWidget(box)
    [item] = box.items()
    assert item.request.args["body"] == XSS  # the request really carries the markup
    shown = widget_html(widget)
    assert "<img" not in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown
    widget.rows[0].checkbox.value = True
    widget.approve_selected.click()
    assert "<img" not in widget_html(widget)


def test_items_are_plain_data(inbox):
    item = inbox.items()[0]
    assert isinstance(item, Pending)
    assert item.key == (item.thread_id, item.interrupt_id, item.request.fingerprint)
    assert str(inbox.approve([item], "ana")[0]).startswith(
        f"{item.thread_id} {item.request.tool}: ")
