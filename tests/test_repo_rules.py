"""Rules of the kit itself: clean notebooks, CI runs the README's command, the path is complete."""

import json
import re

import pytest

from .conftest import ROOT

NOTEBOOKS = sorted(p for d in ("notebooks", "drills", "solutions")
                   for p in (ROOT / d).glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear them before committing"


def readme_command(label: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {label} -->\s*```(?:sh|bash)?\n(.+?)\n```", readme, re.S)
    assert match, f"README has no command marked <!-- {label} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_command("test-command")
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_lab_command_is_the_kits_launcher():
    assert readme_command("lab-command").endswith("&& .venv/bin/python -m hitl_kit lab")


def test_every_drill_has_a_solution_and_is_on_the_path():
    drills = sorted(p.name for p in (ROOT / "drills").glob("*.ipynb"))
    assert drills == sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    start_here = (ROOT / "notebooks" / "00_start_here.ipynb").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in drills + [p.name for p in (ROOT / "notebooks").glob("*.ipynb")]:
        stem = name.removesuffix(".ipynb")
        assert stem in readme, f"README does not mention {stem}"
        if not stem.startswith("00"):
            assert stem in start_here, f"00_start_here does not mention {stem}"

