"""The approvals dashboard and an approval link in headless Chromium: sign in, read the context,
approve two requests in bulk with a reason, lose a race to another channel, confirm a link."""

from ..channel_kit import FAST, make_setup
from .jupyterlab import save_screenshot

XSS = "<img src=x onerror=alert(1)>"
TASKS = {"cleanup": "delete customer 4", "old": "delete customer 2",
         "reply": f'send a reply to thread 3 saying "{XSS}"'}


def test_sign_in_read_decide_in_bulk_and_confirm_a_link(page, tmp_path, artifacts_dir):
    setup = make_setup(tmp_path, TASKS)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with setup.app.serve(lifetime_s=120, limits=FAST) as server:
        page.goto(f"{server.url}/dashboard")
        page.get_by_label("Your sign-in key").fill(setup.app.sign_in_key("ana"))
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("3 approval(s) waiting").wait_for()
        assert page.locator("table.items > tbody > tr").count() == 3

        reply_row = page.locator("tr[data-thread=reply]")
        assert XSS in reply_row.inner_text()  # the model's text, shown as text
        cleanup_row = page.locator("tr[data-thread=cleanup]")
        cleanup_row.get_by_text("full context").click()
        assert cleanup_row.get_by_text("it would touch").is_visible()
        assert "by rita" in cleanup_row.inner_text() and "HIGH" in cleanup_row.inner_text()
        save_screenshot(page, artifacts_dir, "dashboard-pending")

        cleanup_row.get_by_role("checkbox").check()
        reply_row.get_by_role("checkbox").check()
        page.get_by_label("Reason").fill("checked with the account owner")
        page.get_by_role("button", name="Approve selected").click()
        results = page.locator("#results")
        results.wait_for()
        assert "2 of 2 went through" in results.inner_text()
        assert results.locator("li.ok").count() == 2
        assert page.locator("table.items > tbody > tr").count() == 1
        assert setup.world.calls["delete_customer"] == 1 and setup.world.calls["send_reply"] == 1
        decided = setup.agent.outcome("cleanup").decisions[-1]
        assert (decided.decision.approver, decided.decision.reason, decided.decision.channel) == (
            "ana", "checked with the account owner", "dashboard")

        page.locator("tr[data-thread=old]").get_by_role("checkbox").check()
        setup.inbox.reject([setup.item("old")], "bo", "still a customer")  # bo, elsewhere
        page.get_by_role("button", name="Approve selected").click()
        page.get_by_text("0 of 1 went through").wait_for()
        lost = page.locator("#results li.refused").inner_text()
        assert "already decided by bo (rejected: still a customer) via inbox" in lost
        assert setup.world.calls["delete_customer"] == 1
        save_screenshot(page, artifacts_dir, "dashboard-results")

        # The results page is the dashboard itself (redirected to after the POST): a reload
        # fetches it again, sends no form, and the results are gone.
        assert page.url == f"{server.url}/dashboard#results"
        page.reload()
        page.get_by_text("approval(s) waiting").wait_for()
        assert page.locator("#results").count() == 0 and dialogs == []
        assert setup.world.calls["delete_customer"] == 1 and setup.world.calls["send_reply"] == 1

        setup.inbox.submit("delete customer 1", "key-account", requested_by="rita")
        link = setup.links.issue(setup.item("key-account"), requester="rita",
                                 approver="bo")["reject"]
        page.goto(link)
        page.get_by_text("bo: reject this request?").wait_for()
        assert setup.agent.pending("key-account")  # opening the link decided nothing
        page.get_by_label("Reason").fill("that is our biggest customer")
        page.get_by_role("button", name="Reject").click()
        page.get_by_text("Done: rejected").wait_for()
        assert "rejected by bo" in page.locator("#message").inner_text()
        page.goto(link)  # the link again (the back button reloads it too: pages are not cached)
        page.get_by_text("Refused, nothing ran").wait_for()
        assert "already used" in page.locator("#message").inner_text()
        save_screenshot(page, artifacts_dir, "link-used-twice")
    assert dialogs == []  # no script ever ran
    assert setup.agent.outcome("key-account").decisions[-1].decision.channel == "link"
