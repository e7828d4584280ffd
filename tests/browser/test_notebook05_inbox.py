"""Notebook 05 in a real JupyterLab: approve one item in the inbox while the others stay pending;
a rejection's reason is cleared and never rides along with the next approval."""

import re
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
    open_notebook(page, live_lab.server, "notebooks/05_approval_patterns.ipynb")
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


def test_try_it_yourself_on_the_dashboard_and_by_email_then_the_servers_stop(
        page, live_lab, artifacts_dir):
    """What a learner does after Run All: the notebook's own requests, on the dashboard (signed in
    with the printed key) and through the printed email's link, in the browser; then, once the
    servers have stopped, a cell says so in one line and names the cell to re-run."""
    open_notebook(page, live_lab.server, "notebooks/05_approval_patterns.ipynb")
    run_all_cells(page, timeout_ms=120_000)
    printed = page.locator(".jp-CodeCell", has_text='"yours-1"').locator(
        ".jp-OutputArea-output").inner_text()
    dashboard, key = re.search(r"dashboard: (\S+)\s+sign in as ana with: (\S+)", printed).groups()
    approve_link = re.search(r"^Approve: +(\S+)$", printed, re.M).group(1)
    assert "token=..." not in printed  # the whole link, to open

    browser_tab = page.context.new_page()
    browser_tab.goto(dashboard)  # not signed in yet: the sign-in page
    browser_tab.get_by_label("Your sign-in key").fill(key)
    browser_tab.get_by_role("button", name="Sign in").click()
    row = browser_tab.locator("tr[data-thread=yours-1]")
    row.get_by_role("checkbox").check()
    browser_tab.get_by_role("button", name="Approve selected").click()
    expect(browser_tab.locator("#results")).to_contain_text("1 of 1 went through")
    assert browser_tab.url.endswith("/dashboard#results")  # redirected after the POST
    browser_tab.reload()  # sends no form again: the results are gone, nothing is decided twice
    expect(browser_tab.get_by_text("approval(s) waiting")).to_be_visible()
    assert browser_tab.locator("#results").count() == 0
    save_screenshot(browser_tab, artifacts_dir, "notebook05-try-it-dashboard")

    browser_tab.goto(approve_link)
    browser_tab.get_by_text("bo: approve this request?").wait_for()
    browser_tab.get_by_role("button", name="Approve").click()
    expect(browser_tab.get_by_text("Done: approved")).to_be_visible()
    save_screenshot(browser_tab, artifacts_dir, "notebook05-try-it-email-link")
    browser_tab.close()
    workdir = max(live_lab.kernel_tmp.glob("hitl-05-*"), key=lambda d: d.stat().st_mtime)
    assert last_decision(workdir, "yours-1").channel == "dashboard"
    assert last_decision(workdir, "yours-2").channel == "link"

    # The servers stop (here at once, as after their fifteen minutes): the next cell that talks
    # to them says so, in one line.
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below the last one
    page.keyboard.press("Enter")
    page.keyboard.type("stop_servers()\nservers_up()")
    page.keyboard.press("Shift+Enter")
    wait_for_output_text(page, "ServersStopped: the web app and the Slack stand-in and the SMTP "
                               "server stopped")
    shown = page.locator(".jp-OutputArea-output", has_text="ServersStopped").last.inner_text()
    assert "re-run cell 19" in shown and "Traceback" not in shown and len(shown.splitlines()) <= 2
    save_screenshot(page, artifacts_dir, "notebook05-servers-stopped")

