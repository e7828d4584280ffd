"""A learner's work never breaks the test command: the launcher gives them their own copy of the
notebooks, drills and solutions (``my-work/``, kept out of git), and everything they run, save,
autosave and solve lands there.

The test plays a learner on a fresh copy of the repository (its tracked files, committed in a new
git repository): it makes the learner's copy as ``python -m hitl_kit lab`` does, solves every
drill there and runs one of them (saved with its outputs, as JupyterLab saves), runs notebook 00,
and leaves outputs in every other notebook as JupyterLab's autosave would. Then, in that repository,
the rules that read the kit's notebooks must still pass, git must see nothing changed, and the
self-check must see the learner's solved drills."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hitl_kit import lab

from .conftest import ROOT

HANG_S = 600  # a ceiling only a hang reaches


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != lab.WORK_ENV}  # its default place
    environ.update(PYTHONPATH=str(cwd), **env)  # the copy's own hitl_kit
    return subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=HANG_S)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """The repository's tracked files as they are now, committed in a fresh git repository."""
    clone = tmp_path_factory.mktemp("fresh-clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        if (ROOT / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, clone / rel)
    for git in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=kit", "-c", "user.email=kit@example.com", "commit", "-qm",
                 "fresh clone"]):
        subprocess.run(["git", *git], cwd=clone, check=True, capture_output=True)
    return clone


def execute(path: Path) -> None:
    """Run a notebook top to bottom in a kernel and save it with its outputs, as a learner's
    JupyterLab does (a drill's self-check included)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=HANG_S, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)


def autosaved(path: Path) -> None:
    """Outputs in every code cell, as JupyterLab's autosave writes them after a run."""
    notebook = json.loads(path.read_text())
    for n, cell in enumerate(c for c in notebook["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = n + 1
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]}]
    path.write_text(json.dumps(notebook, indent=1) + "\n")


@pytest.fixture(scope="module")
def learner_session(repository) -> Path:
    prepared = run([sys.executable, "-c", "from hitl_kit.lab import prepare_work_dir; "
                                          "print(len(prepare_work_dir()))"], repository)
    assert prepared.returncode == 0, prepared.stderr
    work = repository / "my-work"
    for drill in sorted((work / "drills").glob("*.ipynb")):
        shutil.copyfile(work / "solutions" / drill.name, drill)  # what a learner ends up with
        autosaved(drill)  # their self-check runs the code itself; the outputs are what matter
    execute(work / "drills" / "02_gate_with_interrupt.ipynb")  # one solved drill, run for real
    execute(work / "notebooks" / "00_start_here.ipynb")
    for rest in sorted(p for d in ("notebooks", "solutions") for p in (work / d).glob("*.ipynb")
                       if p.name != "00_start_here.ipynb"):
        autosaved(rest)
    tried = work / "notebooks" / "05_approval_patterns.ipynb"  # a learner's own scratch cell
    notebook = json.loads(tried.read_text())
    notebook["cells"].append({"cell_type": "code", "execution_count": 99, "id": "mine",
                              "metadata": {}, "outputs": [],
                              "source": ["import os;  x=1  # trying something " + "." * 90]})
    tried.write_text(json.dumps(notebook, indent=1) + "\n")
    return repository


def test_the_learners_work_lands_in_their_copy_and_git_sees_no_change(learner_session):
    work = learner_session / "my-work"
    solved = json.loads((work / "drills" / "01_classify_email_actions.ipynb").read_text())
    assert any(c.get("outputs") for c in solved["cells"] if c["cell_type"] == "code")
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], learner_session)
    assert status.stdout == "", "the learner's session changed the kit's files:\n" + status.stdout


def test_the_self_check_sees_the_learners_solved_drills(learner_session):
    checked = run([sys.executable, "-m", "hitl_kit", "check"], learner_session)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("my-work/drills/") == 4 and "not attempted" not in checked.stdout


def test_the_repo_rules_and_the_linter_still_pass(learner_session):
    linted = run([sys.executable, "-m", "ruff", "check", "."], learner_session)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    rules = run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
                 "tests/test_repo_rules.py", "-k", "not sigint", "tests/test_learner_path.py",
                 "tests/test_selfcheck.py::test_every_pristine_drill_is_not_attempted",
                 "tests/test_selfcheck.py::test_the_drills_as_committed_pass_the_linter"],
                learner_session)
    assert rules.returncode == 0, rules.stdout[-3000:] + rules.stderr[-2000:]
    # Everything at the top but the kit's own test folders (collected above, and slow to
    # collect): a learner's copy in there would be picked up as tests.
    collected = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist",
                     "--ignore=tests", "--ignore=notebooks", "--ignore=solutions", "."],
                    learner_session)
    assert collected.returncode == 0 and "my-work" not in collected.stdout, collected.stdout[-2000:]
