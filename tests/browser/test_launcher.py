"""The README's learn command in a real browser: the kit's launcher makes the learner's copy and
opens notebook 00 in it, a drill opens from the file browser, the package is one click away, and
the news pop-up stays away. (The suite points HITL_KIT_WORK at a temporary folder, which the
launcher inherits: the test never writes into the repository.)"""

import json
import os
import urllib.request
from pathlib import Path

from playwright.sync_api import expect

from hitl_kit.lab import WORK_ENV

from ..test_repo_rules import readme_command
from .conftest import REPO_ROOT
from .jupyterlab import LauncherServer, save_screenshot


def launcher_args() -> list[str]:
    """What the README runs after installing: ``.venv/bin/python -m hitl_kit lab``."""
    python, *args = readme_command("lab-command").split("&&")[-1].split()
    assert python == ".venv/bin/python", f"the learn command runs {python}, not the venv's python"
    return args


def test_the_launcher_opens_start_here_and_a_drill_from_the_file_browser(
        page, tmp_path, artifacts_dir):
    work = Path(os.environ[WORK_ENV])
    with LauncherServer(tmp_path, REPO_ROOT, launcher_args()) as server:
        assert (work / "drills" / "01_classify_email_actions.ipynb").is_file()  # the copy
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(server.url("api/contents"), timeout=60) as listing:
            served = {item["name"] for item in json.loads(listing.read())["content"]}
        assert {"notebooks", "drills", "solutions", "hitl_kit"} <= served  # the copy is the root

        page.goto(f"{server.base_url}/?token={server.token}")  # what the printed link opens
        expect(page.locator(".jp-RenderedMarkdown h1", has_text="00 · Start here")).to_be_visible(
            timeout=60_000)

        page.locator(".jp-BreadCrumbs-home").click()  # the file browser, at the root
        page.locator(".jp-DirListing-item", has_text="drills").dblclick()
        page.locator(".jp-DirListing-item", has_text="01_classify_email_actions.ipynb").dblclick()
        drill_title = page.locator(".jp-RenderedMarkdown h1",
                                   has_text="Drill 1: classify the email assistant")
        expect(drill_title).to_be_visible(timeout=30_000)
        save_screenshot(page, artifacts_dir, "launcher-drill-from-file-browser")
        assert page.get_by_text("official Jupyter news").count() == 0, "the news pop-up showed"
