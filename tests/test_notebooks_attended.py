"""Run All with a person at the keyboard who has not clicked anything yet, as a newcomer does:
every notebook with cards runs top to bottom without an error (cards wait for their click; a
cell that reads a decision handles "not decided yet"). nbval runs the same notebooks unattended,
where they press their own buttons."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .conftest import ROOT

# The notebooks whose cells behave differently with a person there (they ask
# hitl_kit.cards.unattended(), or show progress with notebook_progress(), which does); 07 needs a
# PostgreSQL server and no card waits in it.
ATTENDED = ["00_start_here", "02_interrupt_and_resume", "04_timeouts_and_defaults",
            "05_approval_patterns", "08_who_approves", "09_review"]
HANG_S = 600  # a ceiling only a hang reaches


def test_the_list_covers_every_notebook_that_asks_whether_someone_is_there():
    asks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")
                  if "unattended()" in p.read_text() or "notebook_progress()" in p.read_text())
    assert sorted([*ATTENDED, "07_to_production"]) == asks


@pytest.mark.parametrize("name", ATTENDED)
def test_run_all_before_any_click_raises_nothing(name, tmp_path):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    env = {**os.environ, "HITL_KIT_UNATTENDED": "0", "TMPDIR": str(tmp_path)}
    client = NotebookClient(notebook, timeout=HANG_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        pytest.fail(f"{name}, run by a person who has not clicked yet:\n{error}", pytrace=False)
