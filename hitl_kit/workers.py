"""Many workers deciding at once: the production shape of an approval service.

In production several processes decide: web dashboards, chat webhooks, timer services, agent
workers, on several hosts. ``decide_in_workers`` plays that out on one machine: it forks
``workers`` processes (after imports, so they start in milliseconds), each opens **its own**
stores (its own connection pool), and all of them race to answer the same pending approvals.
The ledger lets exactly one decision win each request; the others are told who won. After the
race each worker runs ``recover()``, as a restarted service would::

    >>> reports = decide_in_workers(url, folder, ["t0", "t1"], workers=8)   # doctest: +SKIP
    >>> sum(len(r.won) for r in reports)                                    # doctest: +SKIP
    2

``victim`` / ``hook``: the worker numbered ``victim`` runs ``hook(reached)`` first; when the code
it patched calls ``reached()``, that worker is killed with SIGKILL on the spot (a crash
mid-resume), and another worker's ``recover()`` finishes what it left.

Limits: POSIX only (``os.fork``); the caller closes its own connections to the stores before
calling (a child must never share a connection with its parent).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class WorkerReport:
    """What one worker did: the threads it won (and how long each winning ``resume`` took, in
    seconds), how many attempts found another winner, the threads its ``recover()`` finished,
    or that it was killed."""

    worker: int
    won: list[str] = field(default_factory=list)
    took: list[float] = field(default_factory=list)
    lost: int = 0
    refused: int = 0  # attempts refused for another reason (e.g. finished meanwhile)
    recovered: list[str] = field(default_factory=list)
    killed: bool = False
    error: str = ""


def approve_or_reject(worker: int, pending) -> dict:
    """The default answer: even workers approve, odd ones reject, bound to what was shown."""
    kind = "approve" if worker % 2 == 0 else "reject"
    return {"kind": kind, "approver": f"worker-{worker}", "fingerprint": pending.fingerprint}


def decide_in_workers(url: str, folder, thread_ids: list[str], *, workers: int = 8,
                      answer: Callable[[int, object], dict] = approve_or_reject,
                      victim: int | None = None, hook: Callable | None = None,
                      timeout: float = 120) -> tuple[list[WorkerReport], float]:
    """Fork ``workers`` processes that all try to decide every pending approval of
    ``thread_ids`` (each starting at another place in the list); then each runs ``recover()``.
    ``url`` and ``folder`` are what ``hitl_kit.backends.open_stores`` takes (the demo world is
    ``folder/world.db``). Returns the reports, in worker order, and the seconds from the start
    signal until the last worker finished deciding."""
    children = [_fork_worker(n, url, str(folder), thread_ids, workers, answer,
                             hook if n == victim else None, timeout) for n in range(workers)]
    reports = [WorkerReport(n) for n in range(workers)]
    try:
        for child in children:
            child.expect("ready", timeout)
        started = time.perf_counter()
        for child in children:
            child.tell(b"g")
        passed: set[int] = set()
        while len(passed) + sum(r.killed for r in reports) < workers:
            deciding = {n: child for n, child in enumerate(children)
                        if n not in passed and not reports[n].killed}
            for n, line in _lines(deciding, timeout):
                if line == "reached":
                    children[n].kill()
                    reports[n].killed = True
                elif line == "passed":
                    passed.add(n)
                elif line.startswith("failed"):
                    raise RuntimeError(f"worker {n} failed: {line}")
        took = time.perf_counter() - started
        for n in sorted(passed):
            children[n].tell(b"s")
        for n in sorted(passed):
            found = json.loads(children[n].expect("{", timeout))
            reports[n] = WorkerReport(n, **found)
    finally:
        for child in children:
            child.close()
    return reports, took


class _Child:
    def __init__(self, pid: int, to_child: int, from_child: int):
        self.pid, self._to, self._from, self._buffer = pid, to_child, from_child, b""

    def tell(self, byte: bytes) -> None:
        os.write(self._to, byte)

    def lines(self) -> list[str]:
        chunk = os.read(self._from, 65536)
        if not chunk:
            return ["failed: it exited"]
        self._buffer += chunk
        *done, self._buffer = self._buffer.split(b"\n")
        return [line.decode() for line in done]

    def expect(self, start: str, timeout: float) -> str:
        while True:
            if not select.select([self._from], [], [], timeout)[0]:
                raise TimeoutError(f"worker {self.pid} said nothing for {timeout:g} s")
            for line in self.lines():
                if line.startswith(start):
                    return line
                if line.startswith("failed"):
                    raise RuntimeError(f"worker {self.pid} {line}")

    def kill(self) -> None:
        """SIGKILL, then reap it: until then the process is a zombie, which still counts as
        alive to anyone who checks whether its pid exists (the ledger does, for a stale turn)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def close(self) -> None:
        self.kill()
        for fd in (self._to, self._from):
            with contextlib.suppress(OSError):
                os.close(fd)


def _lines(children: dict[int, _Child], timeout: float):
    """The lines the children in ``children`` (by worker number) have written."""
    by_fd = {child._from: n for n, child in children.items()}
    ready, _, _ = select.select(list(by_fd), [], [], timeout)
    if not ready:
        raise TimeoutError(f"no worker said anything for {timeout:g} s")
    for fd in ready:
        n = by_fd[fd]
        for line in children[n].lines():
            yield n, line


def _fork_worker(n, url, folder, thread_ids, workers, answer, hook, timeout) -> _Child:
    from_parent, to_child = os.pipe()  # (read end, write end)
    from_child, to_parent = os.pipe()
    gc.freeze()  # the child's garbage collector would otherwise copy every page it walks
    pid = os.fork()
    if pid == 0:  # the child: never returns to the caller
        code = 0
        try:
            gc.disable()
            os.close(to_child)
            os.close(from_child)
            signal.alarm(int(timeout) + 30)  # a worker nobody stops must not outlive the run
            _work(n, url, folder, thread_ids, workers, answer, hook, from_parent, to_parent)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(to_parent, f"failed: {exc!r}\n".replace("\n", " ").encode() + b"\n")
            code = 3
        os._exit(code)
    gc.unfreeze()
    os.close(from_parent)
    os.close(to_parent)
    return _Child(pid, to_child, from_child)


def _work(n, url, folder, thread_ids, workers, answer, hook, from_parent, to_parent) -> None:
    from hitl_kit.approval import AlreadyDecided, ApprovalAgent, ApprovalError
    from hitl_kit.backends import open_stores
    from hitl_kit.llm import OfflineChatModel
    from hitl_kit.world import World

    def say(text: str) -> None:
        os.write(to_parent, text.encode() + b"\n")

    if hook is not None:
        def reached() -> None:
            say("reached")
            time.sleep(3600)  # killed here

        hook(reached)
    world = World(os.path.join(folder, "world.db"))
    stores = open_stores(url, folder=folder, durable=False)
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world, **stores.for_agent())
    say("ready")
    os.read(from_parent, 1)  # go
    report = WorkerReport(n)
    start = n * len(thread_ids) // workers
    wanted = set(thread_ids)
    # What is pending, from the ledger's index (one query, as an inbox lists it); by the time a
    # worker gets to a request another may have decided it: the ledger tells it who.
    pending = [r for r in agent.ledger.index.listed() if r.thread_id in wanted]
    order = {t: i for i, t in enumerate(thread_ids[start:] + thread_ids[:start])}
    # A thread whose worker died mid-resume is finished first, by the resume that finds it
    # (or by the sweep's recover()): the agent tells what it recovered, wherever it did.
    agent.on_recovered.append(lambda found: report.recovered.append(found.thread_id)
                              if found.applied or found.continued_from else None)
    for request in sorted(pending, key=lambda r: order[r.thread_id]):
        try:
            began = time.perf_counter()
            agent.resume(request.thread_id, {request.interrupt_id: answer(n, request)})
            report.took.append(time.perf_counter() - began)
            report.won.append(request.thread_id)
        except AlreadyDecided:
            report.lost += 1
        except ApprovalError:
            report.refused += 1
    say("passed")
    os.read(from_parent, 1)  # sweep
    agent.recover()
    say(json.dumps({k: v for k, v in vars(report).items() if k != "worker"}))
    stores.close()
    world.close()
