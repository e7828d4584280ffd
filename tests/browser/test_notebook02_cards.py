"""Notebook 02 in a real JupyterLab: a person clicks Approve or Reject on the inline card."""

import sqlite3
from pathlib import Path

import nbformat

from hitl_kit.audit import open_readonly

from .jupyterlab import (
    open_notebook,
    run_all_cells,
    save_screenshot,
    wait_for_output_text,
    widget_button,
)

NOTEBOOK_02 = Path(__file__).resolve().parents[2] / "notebooks" / "02_interrupt_and_resume.ipynb"
LIVE = {"HITL_KIT_UNATTENDED": "0"}  # a person is there: the notebook must not click for them


def live_env(tmp_path):
    """The kernel makes its temp dirs under tmp_path, so the test can open its databases."""
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    return kernel_tmp, {**LIVE, "TMPDIR": str(kernel_tmp)}


def customer_ids(kernel_tmp):
    (world_db,) = kernel_tmp.glob("hitl-02-demo-*/world.db")
    with sqlite3.connect(f"file:{world_db}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT id FROM customers ORDER BY id")]


def audit_rows(kernel_tmp):
    (audit_db,) = kernel_tmp.glob("hitl-02-demo-*/audit.db")
    with open_readonly(audit_db) as db:
        return db.execute("SELECT action_type, event, decision, approver_id, outcome, reason "
                          "FROM audit_log ORDER BY seq").fetchall()


def first_card(page):
    return page.locator(".jp-OutputArea-output .widget-vbox", has_text="approval needed for").first


def test_clicking_approve_resumes_the_graph(page, jupyterlab, artifacts_dir, tmp_path):
    kernel_tmp, env = live_env(tmp_path)
    with jupyterlab(files=[NOTEBOOK_02], env=env) as server:
        open_notebook(page, server, NOTEBOOK_02.name)
        run_all_cells(page)
        wait_for_output_text(page, "waiting for your decision")
        assert 3 in customer_ids(kernel_tmp)  # the gated delete did not run before the click

        widget_button(page, "Approve").first.click()
        wait_for_output_text(page, "Approved by learner")
        page.get_by_text("Approved by learner").first.scroll_into_view_if_needed()
        save_screenshot(page, artifacts_dir, "notebook02-approve")

        assert widget_button(page, "Approve").first.is_disabled()
        assert 3 not in customer_ids(kernel_tmp)
        assert ("delete_customer", "resolved", "approved", "learner", "success", None) in \
            audit_rows(kernel_tmp)


def test_clicking_reject_runs_nothing_and_tells_the_agent(page, jupyterlab, artifacts_dir,
                                                          tmp_path):
    kernel_tmp, env = live_env(tmp_path)
    with jupyterlab(files=[NOTEBOOK_02], env=env) as server:
        open_notebook(page, server, NOTEBOOK_02.name)
        run_all_cells(page)
        wait_for_output_text(page, "waiting for your decision")

        card = first_card(page)
        card.locator("input[placeholder^='why']").fill("QA still uses this record")
        card.locator("button.widget-button", has_text="Reject").click()
        wait_for_output_text(page, "Rejected by learner: QA still uses this record")
        page.get_by_text("Rejected by learner").first.scroll_into_view_if_needed()
        save_screenshot(page, artifacts_dir, "notebook02-reject")

        assert 3 in customer_ids(kernel_tmp)
        assert ("delete_customer", "resolved", "rejected", "learner", "not_executed",
                "QA still uses this record") in audit_rows(kernel_tmp)


XSS_CELLS = [
    """from hitl_kit.approval import ApprovalAgent
from hitl_kit.cards import ApprovalBoard
from hitl_kit.llm import get_chat_model
from hitl_kit.world import World

world = World()
agent = ApprovalAgent(get_chat_model(), world.tools(), world=world)""",
    """task = ('send a reply to thread 3 saying "<img src=x onerror=\\"window.pwned=1\\">'
        '<script>window.pwned=2</script>"')
ApprovalBoard(agent, agent.start(task, "xss"))""",
]


def test_payload_html_renders_as_text_and_runs_no_script(page, jupyterlab, artifacts_dir,
                                                         tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in XSS_CELLS]
    path = tmp_path / "xss.ipynb"
    nbformat.write(notebook, path)
    with jupyterlab(files=[path], env=LIVE) as server:
        open_notebook(page, server, path.name)
        run_all_cells(page)
        wait_for_output_text(page, "waiting for your decision")
        card = first_card(page)
        assert '<img src=x onerror="window.pwned=1">' in card.inner_text()
        assert card.locator("img").count() == 0 and card.locator("script").count() == 0
        widget_button(page, "Approve").first.click()
        wait_for_output_text(page, "Approved by learner")
        save_screenshot(page, artifacts_dir, "xss-payload-as-text")
        assert page.evaluate("() => window.pwned") is None
        assert first_card(page).locator("img").count() == 0
