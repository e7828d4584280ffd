"""Fixtures for the browser tests: one headless Chromium per session, throwaway JupyterLabs."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from .jupyterlab import CHROMIUM_ARGS, JupyterLabServer, chromium_path, require_browser

BROWSER_TESTS_DIR = Path(__file__).parent
REPO_ROOT = BROWSER_TESTS_DIR.parents[1]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in headless Chromium (apt-get install chromium)"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if BROWSER_TESTS_DIR in item.path.parents:
            item.add_marker(pytest.mark.browser)


def pytest_runtest_setup(item):
    if item.get_closest_marker("browser"):
        require_browser()


@pytest.fixture(scope="package")
def browser():
    """A headless Debian Chromium, shared by every browser test. Package-scoped: Playwright's
    sync API keeps an event loop running in the main thread while it is open, which would break
    every later test that runs one of its own (asyncio.run), so it closes with the package."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(chromium_path()), args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page in its own browser context, closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


@dataclass
class LiveLab:
    """A JupyterLab serving the notebooks as a learner has them: their own copy, made as the
    kit's launcher makes it (``notebooks/``, ``drills/``, ``solutions/`` under the root).
    ``kernel_tmp`` holds the temp folders its kernels make (TMPDIR), so a test can open the
    databases a notebook wrote."""

    server: JupyterLabServer
    kernel_tmp: Path


@pytest.fixture(scope="package")
def live_lab(tmp_path_factory):
    """One server for every browser scenario; nobody clicks for the learner here."""
    from hitl_kit.lab import WORK_ENV, prepare_work_dir

    require_browser()
    work_dir = tmp_path_factory.mktemp("live-lab")
    kernel_tmp = work_dir / "kernel-tmp"
    kernel_tmp.mkdir()
    server = JupyterLabServer(work_dir / "lab", env={"HITL_KIT_UNATTENDED": "0",
                                                     "TMPDIR": str(kernel_tmp)})
    prepare_work_dir(server.root_dir)
    server.env[WORK_ENV] = str(server.root_dir)  # the kernels' self-checks read this copy
    with server:
        yield LiveLab(server, kernel_tmp)


@pytest.fixture
def artifacts_dir() -> Path:
    """``<repo>/artifacts/screenshots``, created if missing."""
    path = REPO_ROOT / "artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
