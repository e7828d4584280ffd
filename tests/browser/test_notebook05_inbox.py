"""Notebook 05 in a real JupyterLab: approve one item in the inbox while the others stay pending;
a rejection's reason is cleared and never rides along with the next approval."""

import sqlite3
from pathlib import Path

from playwright.sync_api import expect

from hitl_kit.approval import ApprovalAgent, durable_checkpointer
from hitl_kit.inbox import ApprovalInbox
from hitl_kit.llm import OfflineChatModel
from hitl_kit.world import World

from .jupyterlab import (
    open_notebook,
    run_all_cells,
    save_screenshot,
    wait_for_output_text,
    widget_button,
)


def pending_threads(workdir: Path) -> set[str]:
    """What the kernel's checkpointer holds as pending, read by a second process's inbox."""
    agent = ApprovalAgent(OfflineChatModel(), World().tools(),
                          checkpointer=durable_checkpointer(str(workdir / "checkpoints.db")))
    return {item.thread_id for item in ApprovalInbox(agent).items()}


def replies_sent(workdir: Path) -> int:
    with sqlite3.connect(f"file:{workdir / 'world-async.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM outbox WHERE subject LIKE 'Re:%'").fetchone()[0]


def test_approve_one_inbox_item_while_others_stay_pending(page, live_lab, artifacts_dir):
    open_notebook(page, live_lab.server, "05_approval_patterns.ipynb")
    run_all_cells(page)
    approve_selected = widget_button(page, "Approve selected")
    approve_selected.wait_for()
    (workdir,) = live_lab.kernel_tmp.glob("hitl-05-*")
    before = pending_threads(workdir)
    assert {"mixed", "key-account", "mass"} <= before
    sent_before = replies_sent(workdir)

    row_of(page, "thread mixed").locator("input[type=checkbox]").check()
    approve_selected.click()
    wait_for_output_text(page, "approved by learner")
    page.get_by_text("approved by learner").first.scroll_into_view_if_needed()
    save_screenshot(page, artifacts_dir, "notebook05-inbox-approve-one")

    assert pending_threads(workdir) == before - {"mixed"}
    assert replies_sent(workdir) == sent_before + 1

    # Reject one with a reason: the reason box is empty afterwards, and the next approval is
    # recorded without it.
    reason = page.locator(".jp-OutputArea-output input[placeholder^='why']").last
    reason.fill("key account, keep it")
    row_of(page, "key-account").locator("input[type=checkbox]").check()
    widget_button(page, "Reject selected").click()
    wait_for_output_text(page, "rejected by learner")
    expect(reason).to_have_value("")
    row_of(page, "thread mass").locator("input[type=checkbox]").check()
    approve_selected.click()
    expect(row_of(page, "thread mass")).to_contain_text("approved by learner", timeout=30_000)
    save_screenshot(page, artifacts_dir, "notebook05-inbox-reason-cleared")
    assert last_decision(workdir, "key-account").reason == "key account, keep it"
    assert last_decision(workdir, "mass").reason == ""


def row_of(page, text):
    return page.locator(".jp-OutputArea-output .widget-hbox", has_text=text).first


def last_decision(workdir: Path, thread_id: str):
    agent = ApprovalAgent(OfflineChatModel(), World().tools(),
                          checkpointer=durable_checkpointer(str(workdir / "checkpoints.db")))
    return agent.outcome(thread_id).decisions[-1].decision
