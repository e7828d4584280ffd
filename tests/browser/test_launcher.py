"""The README's learn command in a real browser: the kit's launcher opens notebook 00 with the
repository as root, so a drill opens from the file browser, and the news pop-up stays away."""

import contextlib
import urllib.request

import pytest
from playwright.sync_api import expect

from ..test_repo_rules import readme_command
from .conftest import REPO_ROOT
from .jupyterlab import LauncherServer, save_screenshot


def launcher_args() -> list[str]:
    """What the README runs after installing: ``.venv/bin/python -m hitl_kit lab``."""
    python, *args = readme_command("lab-command").split("&&")[-1].split()
    assert python == ".venv/bin/python", f"the learn command runs {python}, not the venv's python"
    return args


@pytest.fixture
def no_new_checkpoints():
    """JupyterLab saves a checkpoint of each notebook it opens: remove the ones this test made in
    the repository (the learner's own checkpoints stay)."""
    before = set(REPO_ROOT.glob("*/.ipynb_checkpoints/*"))
    yield
    for made in set(REPO_ROOT.glob("*/.ipynb_checkpoints/*")) - before:
        made.unlink()
        with contextlib.suppress(OSError):
            made.parent.rmdir()  # only when it is empty


def test_the_launcher_opens_start_here_and_a_drill_from_the_file_browser(
        page, tmp_path, artifacts_dir, no_new_checkpoints):
    with LauncherServer(tmp_path, REPO_ROOT, launcher_args()) as server:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(server.url("api/contents/drills"), timeout=10) as listing:
            assert listing.status == 200  # drills/ is inside the served root

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
