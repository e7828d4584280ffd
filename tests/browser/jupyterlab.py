"""Start a throwaway JupyterLab and drive it with Playwright in headless Chromium.

Usage in a test (fixtures come from ``tests/browser/conftest.py``)::

    def test_something(browser, jupyterlab, artifacts_dir):
        with jupyterlab(files=[NOTEBOOK], env={"MY_VAR": "1"}) as server:
            page = browser.new_page()
            open_notebook(page, server, NOTEBOOK.name)
            run_all_cells(page)
            click_widget_button(page, "Approve")
            wait_for_output_text(page, "approved")
            save_screenshot(page, artifacts_dir, "something")
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENABLE_HINT = (
    "browser tests need Chromium at /usr/bin/chromium; enable them with "
    "`apt-get update && apt-get install -y chromium` (never `playwright install`)"
)
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"
WIDGET_BUTTON = ".jp-OutputArea-output button.widget-button"
OUTPUT_AREA = ".jp-OutputArea-output"
BUSY_PROMPT_JS = """() => [...document.querySelectorAll('.jp-InputPrompt')]
    .every(prompt => !prompt.textContent.includes('*'))"""


# --- Is a browser available? ---------------------------------------------------------------


def chromium_path() -> Path | None:
    """Return the Debian Chromium binary, or None when it is not installed."""
    return CHROMIUM_PATH if CHROMIUM_PATH.exists() else None


def browser_available() -> bool:
    """True when Chromium and the Playwright package are both installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return chromium_path() is not None


def require_browser() -> None:
    """Skip the calling test without a browser; under CI=true, fail it instead."""
    import pytest

    if browser_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {ENABLE_HINT}", pytrace=False)
    pytest.skip(ENABLE_HINT)


# --- The server ----------------------------------------------------------------------------


def free_port() -> int:
    """Ask the OS for a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLabServer:
    """A JupyterLab on 127.0.0.1 serving a throwaway root dir; use it as a context manager.

    ``work_dir`` holds ``root/`` (the served dir, with ``files`` copied in), ``jupyter/`` (config,
    data, runtime and IPython dirs, kept outside the root) and ``server.log``. ``env`` is added to
    the server's environment, which every kernel inherits.
    """

    def __init__(
        self,
        work_dir: Path,
        files: Iterable[Path] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60,
    ):
        self.work_dir = Path(work_dir)
        self.root_dir = self.work_dir / "root"
        self.jupyter_dir = self.work_dir / "jupyter"
        self.log_path = self.work_dir / "server.log"
        self.files = [Path(f) for f in files]
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "lab") -> str:
        """Full URL of a server path, token included."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def log(self) -> str:
        """Everything the server has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> JupyterLabServer:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc is not None:
            exc.add_note(f"--- JupyterLab log ({self.log_path}) ---\n{self.log()}")

    def start(self) -> None:
        """Prepare the dirs, launch JupyterLab and wait until it answers."""
        self._prepare()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self._command(), env=self._environment(), cwd=self.root_dir,
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Terminate the server (it shuts its kernels down), then kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def _prepare(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        for source in self.files:
            shutil.copy(source, self.root_dir / source.name)
        self._write_page_config()

    def _command(self) -> list[str]:
        lab_dir = self.jupyter_dir / "lab"
        return [
            sys.executable, "-m", "jupyter", "lab",
            "--no-browser", "--allow-root",
            f"--port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.disable_check_xsrf=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for what the UI hides
            f"--LabApp.workspaces_dir={lab_dir / 'workspaces'}",
            f"--LabApp.user_settings_dir={lab_dir / 'user-settings'}",
        ]  # fmt: skip

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        for name, sub_dir in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("IPYTHONDIR", "ipython"),
        ]:
            env[name] = str(self.jupyter_dir / sub_dir)
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # silence a debugpy warning in the log
        return env

    def _write_page_config(self) -> None:
        """Disable the news pop-up, which the command-line flags alone leave on, and the
        notebook's windowing."""
        labconfig = self.jupyter_dir / "config" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        page_config = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
        (labconfig / "page_config.json").write_text(json.dumps(page_config, indent=2))
        # JupyterLab detaches cells scrolled out of view; a test reading a card that Run All has
        # scrolled past would find nothing. Keep every cell in the page.
        notebook_settings = self.jupyter_dir / "lab" / "user-settings" / "@jupyterlab" / \
            "notebook-extension"
        notebook_settings.mkdir(parents=True, exist_ok=True)
        (notebook_settings / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"}))

    def _wait_until_answering(self) -> None:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {self.process.returncode}:\n{self.log()}"
                )
            try:
                with no_proxy.open(self.url("api/status"), timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"JupyterLab did not answer within {self.startup_timeout} s:\n{self.log()}"
        )


class LauncherServer(JupyterLabServer):
    """JupyterLab started by the kit's launcher, as the README starts it (``launcher_args``, e.g.
    ``["-m", "hitl_kit", "lab"]``), in the repository itself, plus the port, token and
    no-browser overrides the launcher accepts for tests. Only Jupyter's own config, data and
    runtime dirs are redirected (by environment) to ``work_dir``; nothing else is prepared."""

    def __init__(self, work_dir: Path, repo_root: Path, launcher_args: list[str], **kwargs):
        super().__init__(work_dir, **kwargs)
        self.root_dir = Path(repo_root)
        self.launcher_args = list(launcher_args)

    def _prepare(self) -> None:
        pass

    def _command(self) -> list[str]:
        return [sys.executable, *self.launcher_args, f"--port={self.port}",
                f"--token={self.token}", "--no-browser"]


# --- Page helpers (Playwright sync API) ----------------------------------------------------


def open_notebook(page, server: JupyterLabServer, name: str, timeout_ms: float = 60_000) -> None:
    """Open ``name`` (relative to the server root) in a workspace of its own, so notebooks other
    tests opened on the same server are not restored beside it; wait for its kernel to be idle."""
    workspace = f"w{secrets.token_hex(4)}"
    page.goto(server.url(f"lab/workspaces/{workspace}/tree/{name}") + "&reset")
    wait_for_kernel_idle(page, timeout_ms)


def wait_for_kernel_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the status bar reads "Python 3 (ipykernel) | Idle".

    The notebook toolbar's indicator says idle before the kernel session exists; the status bar
    does not, so this is the wait to use before running cells.
    """
    from playwright.sync_api import expect

    statusbar = page.locator("#jp-main-statusbar")
    expect(statusbar).to_contain_text(KERNEL_IDLE, timeout=timeout_ms)


def run_all_cells(page, timeout_ms: float = 60_000, wait: bool = True) -> None:
    """Run > Run All Cells, then (unless ``wait`` is False) wait for execution to finish."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('li.lm-Menu-item[data-command="runmenu:run-all"]').click()
    if wait:
        wait_for_execution(page, timeout_ms)


def wait_for_execution(page, timeout_ms: float = 60_000) -> None:
    """Wait until no cell prompt shows ``[*]`` and the kernel is idle again.

    Queued cells show ``[*]`` as soon as Run All is clicked, so this does not return early.
    """
    page.wait_for_function(BUSY_PROMPT_JS, timeout=timeout_ms)
    wait_for_kernel_idle(page, timeout_ms)


def widget_button(page, text: str):
    """Locator for the ipywidgets button labelled ``text`` inside a cell's output."""
    return page.locator(WIDGET_BUTTON, has_text=text)


def click_widget_button(page, text: str, timeout_ms: float = 30_000) -> None:
    """Click the output-area widget button labelled ``text``."""
    widget_button(page, text).click(timeout=timeout_ms)


def wait_for_output_text(page, text: str, timeout_ms: float = 30_000) -> None:
    """Wait until some cell output area shows ``text``."""
    from playwright.sync_api import expect

    output = page.locator(OUTPUT_AREA, has_text=text).first
    expect(output).to_be_visible(timeout=timeout_ms)


def save_screenshot(page, artifacts_dir: Path, name: str) -> Path:
    """Save a full-page PNG as ``<artifacts_dir>/<name>.png`` and return its path."""
    path = Path(artifacts_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
