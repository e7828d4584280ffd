"""Smoke test: an inline ipywidgets button clicked in JupyterLab reaches the kernel."""

import secrets

import nbformat

from .jupyterlab import (
    click_widget_button,
    open_notebook,
    run_all_cells,
    save_screenshot,
    wait_for_output_text,
)

SETUP_CELL = """\
import os
from pathlib import Path

import ipywidgets as widgets
from IPython.display import display"""

BUTTON_CELL = """\
status = widgets.Label("waiting for a click")
approve = widgets.Button(description="Approve", button_style="success")


def on_approve(button):
    Path("approved.txt").write_text(os.environ["SMOKE_TOKEN"])
    status.value = "approved by click"


approve.on_click(on_approve)
display(widgets.VBox([approve, status]))"""


def write_smoke_notebook(path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python",
    }  # fmt: skip
    notebook.cells = [nbformat.v4.new_code_cell(SETUP_CELL), nbformat.v4.new_code_cell(BUTTON_CELL)]
    nbformat.write(notebook, path)
    return path


def test_clicking_an_inline_button_reaches_the_kernel(page, jupyterlab, artifacts_dir, tmp_path):
    notebook = write_smoke_notebook(tmp_path / "smoke.ipynb")
    token = secrets.token_hex(8)

    with jupyterlab(files=[notebook], env={"SMOKE_TOKEN": token}) as server:
        marker = server.root_dir / "approved.txt"
        open_notebook(page, server, notebook.name)
        run_all_cells(page)
        wait_for_output_text(page, "waiting for a click")
        assert not marker.exists()

        click_widget_button(page, "Approve")
        wait_for_output_text(page, "approved by click")
        save_screenshot(page, artifacts_dir, "smoke-approve-clicked")

        assert marker.read_text() == token, "the click did not reach the kernel"
