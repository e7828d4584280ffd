"""Notebook 02 in a real JupyterLab: a person clicks Approve and Reject on the inline cards."""

import sqlite3
from contextlib import closing

import nbformat
from playwright.sync_api import expect

from hitl_kit.audit import open_readonly

from .jupyterlab import (
    open_notebook,
    run_all_cells,
    save_screenshot,
    wait_for_output_text,
    widget_button,
)


def card(page, tool):
    """The approval card for ``tool`` (the innermost box that names it)."""
    return page.locator(".jp-OutputArea-output .widget-vbox",
                        has_text=f"approval needed for {tool}").last


def world_rows(kernel_tmp, sql):
    (world_db,) = kernel_tmp.glob("hitl-02-demo-*/world.db")
    with closing(sqlite3.connect(f"file:{world_db}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def resolved_rows(kernel_tmp):
    (audit_db,) = kernel_tmp.glob("hitl-02-demo-*/audit.db")
    with closing(open_readonly(audit_db)) as db:
        return db.execute("SELECT action_type, decision, approver_id, outcome, reason "
                          "FROM audit_log WHERE event = 'resolved' ORDER BY seq").fetchall()


def test_approve_and_reject_on_the_cards_resume_the_graph(page, live_lab, artifacts_dir):
    open_notebook(page, live_lab.server, "notebooks/02_interrupt_and_resume.ipynb")
    run_all_cells(page)
    wait_for_output_text(page, "waiting for your decision")
    customer_ids = "SELECT id FROM customers ORDER BY id"
    assert (3,) in world_rows(live_lab.kernel_tmp, customer_ids)  # nothing ran before the click

    # Approve with a fast double click: the delete runs once, the card locks and keeps showing
    # the outcome (the second click is answered on its own line), the trail has one row.
    delete_card = card(page, "delete_customer")
    delete_card.locator("button.widget-button", has_text="Approve").dblclick()
    wait_for_output_text(page, "Approved by learner")
    expect(delete_card.get_by_text("changed nothing")).to_be_visible(timeout=15_000)
    expect(delete_card.get_by_text("Approved by learner")).to_be_visible()
    page.get_by_text("Approved by learner").first.scroll_into_view_if_needed()
    save_screenshot(page, artifacts_dir, "notebook02-approve")
    assert widget_button(page, "Approve").first.is_disabled()
    assert (3,) not in world_rows(live_lab.kernel_tmp, customer_ids)
    deletes = [r for r in resolved_rows(live_lab.kernel_tmp) if r[0] == "delete_customer"
               and r[2] == "learner"]
    assert deletes == [("delete_customer", "approved", "learner", "success", None)]

    # Reject with a reason: nothing runs, and the reason reaches the agent.
    delete_thread = card(page, "delete_thread")
    delete_thread.locator("input[placeholder^='why']").fill("keep the deals thread")
    delete_thread.locator("button.widget-button", has_text="Reject").click()
    card(page, "send_reply").locator("button.widget-button", has_text="Approve").click()
    wait_for_output_text(page, "Rejected by learner: keep the deals thread")
    page.get_by_text("Rejected by learner: keep").first.scroll_into_view_if_needed()
    save_screenshot(page, artifacts_dir, "notebook02-reject")
    assert (2,) in world_rows(live_lab.kernel_tmp, "SELECT id FROM threads")
    assert ("delete_thread", "rejected", "learner", "not_executed", "keep the deals thread") in \
        resolved_rows(live_lab.kernel_tmp)


XSS_CELLS = [
    """from hitl_kit.approval import ApprovalAgent
from hitl_kit.cards import ApprovalBoard
from hitl_kit.llm import get_chat_model
from hitl_kit.world import World

world = World()
agent = ApprovalAgent(get_chat_model(), world.tools(), world=world)""",
    """task = ('send a reply to thread 3 saying "<img src=x onerror=window.pwned=1>'
        '<script>window.pwned=2</script>"')
ApprovalBoard(agent, agent.start(task, "xss"))""",
]


def test_payload_html_renders_as_text_and_runs_no_script(page, live_lab, artifacts_dir):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in XSS_CELLS]
    nbformat.write(notebook, live_lab.server.root_dir / "xss.ipynb")
    open_notebook(page, live_lab.server, "xss.ipynb")
    run_all_cells(page)
    wait_for_output_text(page, "waiting for your decision")
    shown = card(page, "send_reply")
    assert "<img src=x onerror=window.pwned=1>" in shown.inner_text()
    assert shown.locator("img").count() == 0 and shown.locator("script").count() == 0
    shown.locator("button.widget-button", has_text="Approve").click()
    wait_for_output_text(page, "Approved by learner")
    save_screenshot(page, artifacts_dir, "xss-payload-as-text")
    assert page.evaluate("() => window.pwned") is None
    assert card(page, "send_reply").locator("img").count() == 0
