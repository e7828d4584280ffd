"""The terminal approver, driven through stdin like a developer would drive it."""

import subprocess
import sys

from .conftest import ROOT


def run(task, answers, tmp_path):
    world = tmp_path / "world.db"
    result = subprocess.run(
        [sys.executable, "-m", "hitl_kit", "run", task, "--approver", "dev", "--world", str(world)],
        input=answers, capture_output=True, text=True, cwd=ROOT, timeout=120)
    from hitl_kit.world import World

    return result, World(str(world))


def test_approve_at_the_prompt_executes(tmp_path):
    result, world = run("Delete the test customer record", "a\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Test Customer" in result.stdout and "HIGH" in result.stdout  # context shown first
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]


def test_reject_sends_the_reason_and_runs_nothing(tmp_path):
    result, world = run("Delete the test customer record", "r\nstill used by QA\n", tmp_path)
    assert result.returncode == 0
    assert "Rejected by dev: still used by QA" in result.stdout
    assert len(world.rows("customers")) == 4


def test_unclear_answer_asks_again(tmp_path):
    result, world = run("delete customer 4", "yes please\na\n", tmp_path)
    assert "please answer a, r or e" in result.stdout
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]


def test_edit_then_approve(tmp_path):
    result, world = run("delete customer 4", 'e\n{"customer_id": 2}\na\n', tmp_path)
    assert result.returncode == 0
    assert [c["id"] for c in world.rows("customers")] == [1, 3, 4]


def test_no_answer_leaves_it_pending_and_runs_nothing(tmp_path):
    result, world = run("delete customer 4", "", tmp_path)
    assert result.returncode == 1
    assert "stays pending" in result.stdout and len(world.rows("customers")) == 4


def test_read_only_task_asks_nothing(tmp_path):
    result, _ = run("read the inbox", "", tmp_path)
    assert result.returncode == 0 and "approve, reject or edit" not in result.stdout
