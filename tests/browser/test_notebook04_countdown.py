"""Notebook 04 in a real JupyterLab: a card nobody answers counts down, then applies the default
and keeps saying so; its cell, run again, gives a new card that a click decides in time."""

from contextlib import closing

from playwright.sync_api import expect

from hitl_kit.audit import open_readonly

from .jupyterlab import (
    open_notebook,
    run_all_cells,
    save_screenshot,
    wait_for_execution,
    wait_for_output_text,
)

# Every "N s left to decide" the page ever shows, in order, recorded by the browser itself as the
# widget redraws (no polling from here, so a busy machine cannot make the test miss a value).
RECORD_COUNTDOWN_JS = r"""() => {
    const seen = window.hitlCountdown = [];
    const note = () => {
        for (const el of document.querySelectorAll('.jp-OutputArea-output .widget-html')) {
            const found = el.textContent.match(/(\d+) s left to decide/);
            if (found && seen[seen.length - 1] !== found[1]) seen.push(found[1]);
        }
    };
    new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
                                                       characterData: true});
}"""


def test_an_unanswered_card_counts_down_and_times_out(page, live_lab, artifacts_dir):
    open_notebook(page, live_lab.server, "notebooks/04_timeouts_and_defaults.ipynb")
    page.evaluate(RECORD_COUNTDOWN_JS)
    run_all_cells(page, wait=False)
    countdown = page.locator(".jp-OutputArea-output", has_text="left to decide").first
    countdown.wait_for(timeout=90_000)
    save_screenshot(page, artifacts_dir, "notebook04-countdown-running")

    # The card settles ("deadline passed") and says who decided: the system, by default. The
    # notebook's own late decision afterwards is refused and leaves that headline in view.
    wait_for_output_text(page, "deadline passed", timeout_ms=120_000)
    shown = page.evaluate("window.hitlCountdown")
    assert len(shown) >= 2 and shown == sorted(shown, key=int, reverse=True), \
        f"the countdown did not count down: {shown}"
    assert int(shown[0]) > 5, f"a person got {shown[0]} s to read the card and decide"
    wait_for_output_text(page, "nobody decided within 30 s")
    page.get_by_text("deadline passed").first.scroll_into_view_if_needed()
    save_screenshot(page, artifacts_dir, "notebook04-countdown-timed-out")
    wait_for_execution(page, timeout_ms=90_000)
    card_cell = page.locator(".jp-CodeCell", has_text="run = next(countdown_runs)")
    expect(card_cell.get_by_text("Timed out, rejected by default")).to_be_visible()
    assert resolved("countdown-1", live_lab) == [("timed-out", "system", "not_executed")]

    # Run the card's cell again: a new request on a new thread, and a click in time decides it.
    card_cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    approve = card_cell.locator(".jp-OutputArea-output button.widget-button", has_text="Approve")
    expect(card_cell.get_by_text("left to decide")).to_be_visible(timeout=30_000)
    approve.click()
    expect(card_cell.get_by_text("Approved by learner")).to_be_visible(timeout=30_000)
    card_cell.scroll_into_view_if_needed()
    save_screenshot(page, artifacts_dir, "notebook04-card-cell-run-again")
    assert resolved("countdown-2", live_lab) == [("approved", "learner", "success")]


def resolved(thread_id, live_lab):
    (audit_db,) = live_lab.kernel_tmp.glob("hitl-04-*/audit.db")
    with closing(open_readonly(audit_db)) as db:
        return db.execute("SELECT decision, approver_id, outcome FROM audit_log WHERE "
                          "session_id = ? AND event = 'resolved'", (thread_id,)).fetchall()
