"""The learner's copy in a real JupyterLab: a notebook opened and connected to its kernel is not
marked modified (JupyterLab writes the kernel's description into a notebook that lacks it, and
then shows it as changed, and autosaves it, before the learner typed anything)."""

import json
import urllib.request

import pytest

from .jupyterlab import open_notebook, save_screenshot

# One of each folder: every copy carries the same kernel description (tests/test_cli.py checks
# that for all of them), so these three stand for the rest.
OPENED = ["notebooks/00_start_here.ipynb", "drills/01_classify_email_actions.ipynb",
          "solutions/04_timeout_default.ipynb"]


# Whether the notebook is modified once JupyterLab has written what its kernel told it (the kernel
# description and the language) into it: its own handlers for those answers run before this one.
MODIFIED_ONCE_CONNECTED_JS = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.sessionContext.ready;
    const kernel = panel.sessionContext.session.kernel;
    await kernel.info;
    await kernel.spec;
    await new Promise(resolve => setTimeout(resolve, 0));
    return panel.context.model.dirty;
}"""


@pytest.mark.parametrize("name", OPENED)
def test_a_notebook_of_the_copy_opens_unmodified(page, live_lab, artifacts_dir, name):
    before = (live_lab.server.root_dir / name).read_bytes()
    open_notebook(page, live_lab.server, name)
    assert page.evaluate(MODIFIED_ONCE_CONNECTED_JS) is False, \
        "JupyterLab marked the notebook modified on opening it"
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current")
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or "")
    save_screenshot(page, artifacts_dir, f"opened-unmodified-{name.replace('/', '-')}")
    shut_down_kernels(live_lab.server)
    assert (live_lab.server.root_dir / name).read_bytes() == before


def shut_down_kernels(server) -> None:
    """End the sessions this test started (each opened notebook runs a kernel)."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with no_proxy.open(server.url("api/sessions"), timeout=60) as listing:
        sessions = json.loads(listing.read())
    for session in sessions:
        request = urllib.request.Request(server.url(f"api/sessions/{session['id']}"),
                                         method="DELETE")
        no_proxy.open(request, timeout=60).close()
