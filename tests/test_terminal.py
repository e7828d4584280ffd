"""The terminal approver, driven through stdin like a developer would drive it: the command line's
own code with stdin replaced, and once as a real process with a pipe."""

import io
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hitl_kit.__main__ import main
from hitl_kit.world import World

from .conftest import ROOT


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    def run_with(task, answers):
        monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
        code = main(["run", task, "--approver", "dev", "--world", str(tmp_path / "world.db")])
        return SimpleNamespace(returncode=code, stdout=capsys.readouterr().out), \
            World(str(tmp_path / "world.db"))

    return run_with


def test_approve_through_a_real_pipe_executes(tmp_path):
    world_db = tmp_path / "world.db"
    result = subprocess.run(
        [sys.executable, "-m", "hitl_kit", "run", "Delete the test customer record",
         "--approver", "dev", "--world", str(world_db)],
        input="a\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Test Customer" in result.stdout and "HIGH" in result.stdout  # context shown first
    assert [c["id"] for c in World(str(world_db)).rows("customers")] == [1, 2, 4]


def test_reject_sends_the_reason_and_runs_nothing(run):
    result, world = run("Delete the test customer record", "r\nstill used by QA\n")
    assert result.returncode == 0
    assert "Rejected by dev: still used by QA" in result.stdout
    assert len(world.rows("customers")) == 4


def test_unclear_answer_asks_again(run):
    result, world = run("delete customer 4", "yes please\na\n")
    assert "please answer a, r or e" in result.stdout
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]


def test_edit_then_approve(run):
    result, world = run("delete customer 4", 'e\n{"customer_id": 2}\na\n')
    assert result.returncode == 0
    assert [c["id"] for c in world.rows("customers")] == [1, 3, 4]


def test_edit_that_is_not_json_sends_nothing(run):
    result, world = run("delete customer 4", "e\n{customer 2}\nr\nno\n")
    assert "not JSON" in result.stdout and "nothing was sent" in result.stdout
    assert len(world.rows("customers")) == 4


def test_no_answer_runs_nothing_and_says_what_becomes_of_the_request(run):
    result, world = run("delete customer 4", "")
    assert result.returncode == 1 and len(world.rows("customers")) == 4
    assert "stays pending" not in result.stdout  # in memory only: it would not be true
    assert "ends with it" in result.stdout


def test_with_a_state_folder_the_request_stays_pending_and_resume_answers_it(
        tmp_path, monkeypatch, capsys):
    state = str(tmp_path / "state")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["run", "delete customer 4", "--approver", "dev", "--state", state]) == 1
    assert "stays pending" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\n"))
    assert main(["resume", "--state", state, "--approver", "dev"]) == 0
    assert [c["id"] for c in World(str(tmp_path / "state" / "world.db")).rows("customers")] \
        == [1, 2, 3]
    assert main(["resume", "--state", state]) == 0
    assert "nothing is waiting" in capsys.readouterr().out


def test_read_only_task_asks_nothing(run):
    result, _ = run("read the inbox", "")
    assert result.returncode == 0 and "approve, reject or edit" not in result.stdout
