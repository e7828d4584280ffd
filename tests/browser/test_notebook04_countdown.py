"""Notebook 04 in a real JupyterLab: a card nobody answers counts down, then applies the default."""

import re
import time
from contextlib import closing

from hitl_kit.audit import open_readonly

from .jupyterlab import (
    open_notebook,
    run_all_cells,
    save_screenshot,
    wait_for_execution,
    wait_for_output_text,
)

SECONDS_LEFT = re.compile(r"(\d+) s left to decide")


def test_an_unanswered_card_counts_down_and_times_out(page, live_lab, artifacts_dir):
    open_notebook(page, live_lab.server, "04_timeouts_and_defaults.ipynb")
    run_all_cells(page, wait=False)
    countdown = page.locator(".jp-OutputArea-output", has_text="left to decide").first
    countdown.wait_for(timeout=90_000)
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(seen) < 2:
        found = SECONDS_LEFT.search(countdown.inner_text() if countdown.count() else "")
        if found:
            seen.add(int(found.group(1)))
        time.sleep(0.3)
    assert len(seen) >= 2, f"the countdown did not move: {seen}"
    save_screenshot(page, artifacts_dir, "notebook04-countdown-running")

    # The card settles ("deadline passed"); the notebook's own late click is then refused and the
    # card says who decided: the system, by default.
    wait_for_output_text(page, "deadline passed", timeout_ms=30_000)
    wait_for_output_text(page, "nobody decided within 5 s; rejected by default")
    page.get_by_text("deadline passed").first.scroll_into_view_if_needed()
    save_screenshot(page, artifacts_dir, "notebook04-countdown-timed-out")
    wait_for_execution(page, timeout_ms=90_000)

    (audit_db,) = live_lab.kernel_tmp.glob("hitl-04-*/audit.db")
    with closing(open_readonly(audit_db)) as db:
        rows = db.execute("SELECT decision, approver_id, outcome FROM audit_log WHERE "
                          "session_id = 'countdown-1' AND event = 'resolved'").fetchall()
    assert rows == [("timed-out", "system", "not_executed")]
