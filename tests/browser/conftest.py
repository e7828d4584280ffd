"""Fixtures for the browser tests: one headless Chromium per session, throwaway JupyterLabs."""

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
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


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium, shared by every browser test of the session."""
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


@pytest.fixture
def jupyterlab(tmp_path):
    """Factory: ``with jupyterlab(files=[...], env={...}) as server:`` starts a JupyterLab."""

    @contextmanager
    def start(files: Iterable[Path] = (), env: Mapping[str, str] | None = None):
        work_dir = tmp_path / f"jupyterlab-{len(list(tmp_path.glob('jupyterlab-*')))}"
        with JupyterLabServer(work_dir, files=files, env=env) as server:
            yield server

    return start


@pytest.fixture
def artifacts_dir() -> Path:
    """``<repo>/artifacts/screenshots``, created if missing."""
    path = REPO_ROOT / "artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
