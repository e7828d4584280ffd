"""Crash safety: a process SIGKILLed at each point between a decision and its effect, then
recovered from another process. Nothing lost, nothing stuck, nothing done twice.

Each trial forks this (already imported) test process. The child builds its own agent on the
trial's files and runs a start or a resume with a hook at the crash point. Half the trials block
the child at the point and kill it there; the other half let it run on and kill it after a
random delay of up to a few milliseconds, so the kill lands anywhere after the point. The parent,
with fresh connections, runs ``recover()``, finishes what is left as a person would, and checks
the invariants. Counts go to the fault-suite summary, computed from what each trial observed.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import random
import select
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

import pytest

from hitl_kit.approval import ApprovalAgent, ApprovalError
from hitl_kit.audit import AuditTrail
from hitl_kit.ledger import DecisionLedger, RunJournal
from hitl_kit.llm import OfflineChatModel
from hitl_kit.policy import ActionPolicy
from hitl_kit.postgres_audit import PostgresAuditTrail
from hitl_kit.timeouts import DECIDED, TIMED_OUT, Deadline, DeadlineWatcher
from hitl_kit.world import World

from .conftest import AGENT_KINDS, agent_of_kind, tally

TRIALS = int(os.environ.get("HITL_KIT_CRASH_TRIALS", "20"))  # per point and backend
# The middleware runs the same gate and execute steps (hitl_kit.graph.decide, run_decided) at
# LangChain's hooks: its trials check where the hooks put them, in a fifth of the time.
TRIALS_OF = {"graph": TRIALS, "middleware": max(2, TRIALS // 5)}
THREAD = "crash"
TASK = "deploy the billing service version {} to prod"
BLOCK_S = 30.0  # how long a blocked child waits to be killed (it always is, long before)


class CrashPoint:
    """Where the child is killed: ``phase`` is what it was doing (start or resume), ``install``
    patches the hook in (called in the child only), ``kinds`` the agents that have the point."""

    def __init__(self, name: str, phase: str, install, kinds=AGENT_KINDS):
        self.name, self.phase, self.install, self.kinds = name, phase, install, kinds

    def __repr__(self) -> str:
        return self.name


def _after(cls, method: str, reached, when=lambda *a, **k: True):
    original = getattr(cls, method)

    def patched(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if when(*args, **kwargs):
            reached()
        return result

    setattr(cls, method, patched)


def _before(cls, method: str, reached, when=lambda *a, **k: True):
    original = getattr(cls, method)

    def patched(self, *args, **kwargs):
        if when(*args, **kwargs):
            reached()
        return original(self, *args, **kwargs)

    setattr(cls, method, patched)


def _inside_the_tool(reached):
    original = World.deploy_to_prod

    @functools.wraps(original)
    def deploy(self, *args, **kwargs):
        result = original(self, *args, **kwargs)  # written, inside the action's transaction
        reached()
        return result

    World.deploy_to_prod = deploy


def _after_append(reached, when):
    for trail_class in (AuditTrail, PostgresAuditTrail):  # whichever the backend uses
        _after(trail_class, "append", reached, when)


POINTS = [
    CrashPoint("after the claim, before the resume", "resume",
               lambda reached: _after(DecisionLedger, "claim_and_take_turn", reached)),
    CrashPoint("inside the tool, before its commit", "resume", _inside_the_tool),
    CrashPoint("after the tool's commit, before the checkpoint", "resume",
               lambda reached: _before(RunJournal, "finished", reached,
                                       lambda _thread, _call, tool, *a, **k:
                                       tool == "deploy_to_prod")),
    CrashPoint("after the resolved audit row", "resume",
               lambda reached: _after_append(reached,
                                             lambda entry: entry["event"] == "resolved"
                                             and entry["action_type"] == "deploy_to_prod")),
    CrashPoint("in plan, during the model call", "start",
               lambda reached: _before(OfflineChatModel, "_generate", reached)),
    CrashPoint("in the middleware's after_model, the call classified, its request not saved",
               "start", lambda reached: _after(ActionPolicy, "classify", reached),
               kinds=("middleware",)),
    CrashPoint("after the proposed audit row", "start",
               lambda reached: _after_append(reached,
                                             lambda entry: entry["event"] == "proposed")),
]


def make(backend, folder, kind: str) -> tuple[World, ApprovalAgent]:
    world = World(str(folder / "world.db"))
    agent = agent_of_kind(kind)(OfflineChatModel(), world.tools(), world=world,
                                checkpointer=backend.checkpointer(folder),
                                ledger=backend.ledger(folder), audit=backend.audit(folder))
    return world, agent


def close(world: World, agent: ApprovalAgent) -> None:
    """Close every connection to the trial's files before forking: SQLite's locks are per
    process, so a child must never share an inherited open file with its parent."""
    world.close()
    agent.ledger.close()
    agent.audit.close()
    conn = getattr(agent.graph.checkpointer, "conn", None)
    if conn is not None:
        conn.close()


def run_child(work, block: bool, hooks) -> tuple[int, bool]:
    """Fork; the child installs ``hooks(reached)`` and runs ``work()``; the parent kills it at
    the point (``block``) or a random moment after it. Returns the child's pid and whether the
    point was reached."""
    read_end, write_end = os.pipe()
    gc.freeze()  # the child's garbage collector would otherwise copy every page it walks
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            gc.disable()
            os.close(read_end)
            signal.alarm(int(BLOCK_S))  # a child nobody kills must not outlive the test

            def reached():
                os.write(write_end, b"!")
                if block:
                    time.sleep(BLOCK_S)

            hooks(reached)
            work()
            os.write(write_end, b"E")  # finished: wait to be killed like the others
            time.sleep(BLOCK_S)
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    gc.unfreeze()
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], BLOCK_S)
        signal_byte = os.read(read_end, 1) if ready else b""
        if not block:
            time.sleep(random.uniform(0, 0.004))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
    assert os.WIFSIGNALED(status), f"the child exited on its own (status {status}): it failed"
    return pid, signal_byte == b"!"


def finish_as_a_person(agent: ApprovalAgent) -> None:
    """What is still open after recovery gets answered, as a person would."""
    for _ in range(5):
        outcome = agent.outcome(THREAD)
        if not outcome.paused:
            return
        with contextlib.suppress(ApprovalError):  # e.g. decided meanwhile: look again
            agent.resume(THREAD, {p.interrupt_id: {"kind": "approve", "approver": "bo"}
                                  for p in outcome.pending})


def prepared(backend, phase: str, kind: str, tmp_path_factory) -> object:
    """The state every trial of a phase starts from, made once: fresh stores, and for a resume
    the task already paused for approval."""
    key = (backend.name, phase, kind)
    if key not in _PREPARED:
        folder = tmp_path_factory.mktemp(f"template-{backend.name}-{phase}-{kind}")
        world, agent = make(backend, folder, kind)
        if phase == "resume":
            assert agent.start(TASK.format(VERSION), THREAD).paused
        close(world, agent)
        _PREPARED[key] = folder
    return _PREPARED[key]


_PREPARED: dict = {}
VERSION = "5.0"


@pytest.fixture
def trial_folder(tmp_path):
    """Where the trials keep their files: in memory (/dev/shm) when there is one. A SIGKILL
    does not lose what a process wrote to the OS, so this tests the same crash, without paying
    for the fsyncs that closing a database costs on a disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="hitl-crash-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(("agent_kind", "point"), [(k, p) for p in POINTS for k in p.kinds],
                         ids=[f"{k}-{p.name}" for p in POINTS for k in p.kinds])
def test_sigkill_at_each_point_then_recover(backend, agent_kind, trial_folder, tmp_path_factory,
                                            point, fault_counts):
    tally = {"trials": 0, "point reached": 0, "approvals lost": 0, "stuck threads": 0,
             "double side effects": 0, "audit rows != side effects": 0, "verify failed": 0,
             "recovered by recover()": 0}
    template = prepared(backend, point.phase, agent_kind, tmp_path_factory)
    for trial in range(TRIALS_OF[agent_kind]):
        folder = trial_folder / f"t{trial}"
        backend.copy(template, folder)

        def work(folder=folder):
            _, child = make(backend, folder, agent_kind)
            if point.phase == "resume":
                child.resume(THREAD, {"kind": "approve", "approver": "ana"})
            else:
                child.start(TASK.format(VERSION), THREAD)

        _, reached = run_child(work, block=trial % 2 == 0, hooks=point.install)

        world, agent = make(backend, folder, agent_kind)  # another process's view
        recovered = agent.recover()
        try:
            agent.outcome(THREAD)
        except ApprovalError:  # killed before the task was saved at all: it never started
            agent.start(TASK.format(VERSION), THREAD)
        finish_as_a_person(agent)
        outcome = agent.outcome(THREAD)
        deployed = [d for d in world.rows("deployments") if d["version"] == VERSION]
        resolved = [r for r in agent.audit.rows() if r["event"] == "resolved"
                    and r["action_type"] == "deploy_to_prod"]
        ana_claimed = any(c.decision.approver == "ana" for c in agent.ledger.claims.listed(THREAD))
        tally["trials"] += 1
        tally["point reached"] += reached
        tally["recovered by recover()"] += bool(recovered)
        tally["stuck threads"] += outcome.paused or bool(outcome.interrupted)
        tally["approvals lost"] += ana_claimed and [r["approver_id"] for r in resolved] != ["ana"]
        tally["double side effects"] += len(deployed) > 1
        tally["audit rows != side effects"] += (
            len([r for r in resolved if r["outcome"] == "success"]) != len(deployed)
            or len(resolved) != 1)
        tally["verify failed"] += not agent.audit.verify().ok
        close(world, agent)
        backend.discard(folder)
    for name, count in tally.items():
        fault_counts[f"crash {point.name} [{backend.name}, {agent_kind}]: {name}"] = count
    assert tally["point reached"] > 0, "the hook never fired: the crash point moved"
    bad = {k: tally[k] for k in ("approvals lost", "stuck threads", "double side effects",
                                 "audit rows != side effects", "verify failed")}
    assert not any(bad.values()), bad


def test_restart_with_deadlines_pending_applies_each_default_once(backend, agent_kind, tmp_path,
                                                                   fault_counts):
    """Twelve requests with deadlines (half pass while the process is dead, half later); the
    process is killed; a new one recovers and re-arms from the stored times. Each default is
    applied exactly once, whoever applies it: the restarted process, or (on a machine so busy
    that a deadline passed before the kill landed) the old one, finished by ``recover()``."""
    world, agent = make(backend, tmp_path, agent_kind)
    for n in range(12):
        assert agent.start(TASK.format(f"6.{n}"), f"d{n}").paused
    close(world, agent)
    seconds = {f"d{n}": (0.2 if n % 2 == 0 else 2.5) for n in range(12)}

    def work():
        _, child = make(backend, tmp_path, agent_kind)
        watcher = DeadlineWatcher(child, {"hard_gate": Deadline(60)})
        for thread_id, wait in seconds.items():
            watcher.deadlines["hard_gate"] = Deadline(wait)
            watcher.watch(child.outcome(thread_id))
        os.write(_armed[1], b"!")

    _armed = os.pipe()
    try:
        run_child(work, block=False, hooks=lambda reached: None)
        assert os.read(_armed[0], 1) == b"!", "the child never armed its timers"
    finally:
        for end in _armed:
            os.close(end)
    world, agent = make(backend, tmp_path, agent_kind)
    short = [p.deadline_at for p in agent.ledger.index.listed() if seconds[p.thread_id] < 1]
    while time.time() <= max(short, default=0):  # until the short deadlines have passed
        time.sleep(max(short) - time.time() + 0.01)
    recovered = agent.recover()
    watcher = DeadlineWatcher(agent, {"hard_gate": Deadline(600)})  # stored times win
    timers = watcher.rearm()
    all_settled = watcher.wait(120)  # the stored times are seconds away, Deadline(600) is not
    timed_out = [r for r in agent.audit.rows()
                 if r["event"] == "resolved" and r["decision"] == "timed-out"]
    per_thread = [sum(r["session_id"] == t for r in timed_out) for t in seconds]
    restarted_applied = sum(t.state == TIMED_OUT for t in timers)
    label = f"restart with 12 deadlines pending [{backend.name}, {agent_kind}]"
    tally(fault_counts, label, **{
        "defaults applied by the restarted process": restarted_applied,
        "defaults the old process applied before the kill":
            sum(n > 0 for n in per_thread) - restarted_applied,
        "of those, finished by recover()": len(recovered),
        "requests with no default applied": per_thread.count(0),
        "requests with a default applied twice": sum(n > 1 for n in per_thread),
        "deploys run": world.count("deployments")})
    assert all_settled, [(t.thread_id, t.state) for t in timers if not t.done.is_set()]
    assert per_thread == [1] * 12, dict(zip(seconds, per_thread, strict=True))
    assert world.count("deployments") == 0
    assert all(t.state in (TIMED_OUT, DECIDED) for t in timers), [t.state for t in timers]
    assert not any(agent.outcome(t).paused for t in seconds)
