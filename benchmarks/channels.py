"""The approvals web app under load, on 127.0.0.1: every pending request raced by two approvers
in two channels (ana clicks Approve in Slack, bo confirms an emailed Reject link), from C
concurrent clients. Counts who won each race, checks that every request was decided exactly
once, and times the decision requests. Bounded: a fixed number of requests and a time limit.

    .venv/bin/python benchmarks/channels.py --requests 1000 --clients 20

``bench_channels()`` gives the rows ``benchmarks/run.py`` prints.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import html
import json
import re
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from hitl_kit.approval import ApprovalAgent  # noqa: E402
from hitl_kit.channels import ApproverDirectory, Person, decide, item_ref  # noqa: E402
from hitl_kit.inbox import ApprovalInbox  # noqa: E402
from hitl_kit.links import ApprovalLinks  # noqa: E402
from hitl_kit.llm import OfflineChatModel  # noqa: E402
from hitl_kit.slack import SlackApprovals  # noqa: E402
from hitl_kit.vocabulary import Channel  # noqa: E402
from hitl_kit.web import ApprovalsApp  # noqa: E402
from hitl_kit.world import World  # noqa: E402

TASK = 'send a reply to thread 3 saying "on my way"'
PEOPLE = [Person("ana", slack_user_id="U0ANA"), Person("bo", email="bo@example.com")]
CONFIRM_FORM = re.compile(r'<form method="post" action="([^"]+)".*?name="token" value="([^"]+)"'
                          r'.*?name="csrf" value="([^"]+)"', re.S)


@dataclass
class LoadResult:
    """What a load run observed."""

    requests: int
    clients: int
    wall_s: float = 0.0
    http_requests: int = 0
    latencies_s: list[float] = field(default_factory=list)  # of each deciding request
    won: dict[str, int] = field(default_factory=lambda: {"slack": 0, "link": 0})
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    claims_per_request: dict[tuple[str, str], int] = field(default_factory=dict)
    executed: int = 0
    still_pending: int = 0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[int(p * (len(ordered) - 1))] if ordered else float("nan")

    @property
    def exactly_once(self) -> bool:
        """Every request decided by exactly one approver, the winners counted are the claims,
        the approvals ran once each and the rejections not at all."""
        return (not self.errors and self.still_pending == 0
                and len(self.claims_per_request) == self.requests
                and set(self.claims_per_request.values()) == {1}
                and sum(self.won.values()) == self.requests and self.lost == self.requests
                and self.executed == self.won["slack"])


def build(requests: int, workdir: Path):
    """An app with ``requests`` pending replies, Slack and links connected."""
    world = World()
    agent = ApprovalAgent(OfflineChatModel(), world.tools(), world=world)
    inbox = ApprovalInbox(agent)
    for i in range(requests):
        inbox.submit(TASK, f"load-{i}", requested_by="rita")
    people = ApproverDirectory(PEOPLE)
    signing = secrets.token_hex(16)
    links = ApprovalLinks(inbox, secrets.token_bytes(32), str(workdir / "claims.db"),
                          directory=people)
    slack = SlackApprovals(inbox, signing, people)
    app = ApprovalsApp(inbox, secret=secrets.token_bytes(32), directory=people, links=links,
                       slack=slack)
    return world, agent, inbox, links, app, signing


def slack_click(signing: str, ref: str) -> tuple[bytes, dict]:
    payload = {"type": "block_actions", "user": {"id": "U0ANA"},
               "actions": [{"action_id": "approve", "value": ref}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": stamp,
                  "X-Slack-Signature": SignatureVerifier(signing).generate_signature(
                      timestamp=stamp, body=body)}


async def _run(base: str, jobs: list[tuple[str, str]], signing: str, clients: int,
               result: LoadResult) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=60,
                                 limits=limits) as http:
        async def timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            reply = await http.request(method, url, **kwargs)
            result.http_requests += 1
            return reply, time.perf_counter() - started

        async def worker() -> None:
            while not queue.empty():
                channel, target = queue.get_nowait()
                try:
                    if channel == "slack":
                        body, headers = slack_click(signing, target)
                        reply, took = await timed("POST", "/slack/interactions", content=body,
                                                  headers=headers)
                        won = reply.status_code == 200 and reply.json().get("text", "") \
                            .startswith("Approved by ana")
                        ok = reply.status_code == 200
                    else:
                        page, took = await timed("GET", target)
                        found = CONFIRM_FORM.search(page.text)
                        if page.status_code == 200 and found:
                            action, token, csrf = map(html.unescape, found.groups())
                            reply, took = await timed("POST", action, data={
                                "token": token, "csrf": csrf})
                            won, ok = reply.status_code == 200, reply.status_code in (200, 409)
                        else:  # Slack won before the link was even opened
                            won, ok = False, page.status_code == 409
                    result.latencies_s.append(took)
                    if not ok:
                        result.errors.append(f"{channel}: unexpected answer")
                    elif won:
                        result.won[channel] += 1
                    else:
                        result.lost += 1
                except Exception as exc:  # counted, never hidden
                    result.errors.append(f"{channel}: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker() for _ in range(clients)))


def on_own_loop(coroutine):
    """``asyncio.run`` in a thread of its own: the caller may be inside a running event loop
    (a notebook, or a test after one that left its loop set)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def decide_under_load(requests: int = 1000, clients: int = 20, time_limit_s: float = 600.0,
                      workdir: Path | None = None) -> LoadResult:
    """Race ``requests`` pending requests through Slack and email links from ``clients``
    concurrent clients; stops at ``time_limit_s`` (counted as an error)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="hitl-load-"))
    world, agent, inbox, links, app, signing = build(requests, workdir)
    result = LoadResult(requests, clients)
    with app.serve(lifetime_s=time_limit_s + 30) as server:
        jobs = []
        for item in inbox.items():  # each race's two contenders next to each other
            url = links.issue(item, requester="rita", approver="bo")["reject"]
            jobs += [("link", url.removeprefix(server.url)), ("slack", item_ref(item))]
        started = time.perf_counter()
        try:
            on_own_loop(asyncio.wait_for(_run(server.url, jobs, signing, clients, result),
                                         time_limit_s))
        except TimeoutError:
            result.errors.append(f"stopped at the {time_limit_s:.0f} s time limit")
        result.wall_s = time.perf_counter() - started
    for claim in agent.ledger.claims.listed():
        key = (claim.thread_id, claim.interrupt_id)
        result.claims_per_request[key] = result.claims_per_request.get(key, 0) + 1
    result.executed = world.calls["send_reply"]
    result.still_pending = len(inbox.items())
    return result


def in_process_p99(count: int = 200) -> float:
    """The same decisions made one at a time in-process (``decide``), no HTTP: p99 seconds."""
    world = World()
    inbox = ApprovalInbox(ApprovalAgent(OfflineChatModel(), world.tools(), world=world))
    for i in range(count):
        inbox.submit(TASK, f"direct-{i}", requested_by="rita")
    took = []
    for item in inbox.items():
        started = time.perf_counter()
        (answer,) = decide(inbox, [item_ref(item)], "approve", "ana", "", Channel.API)
        took.append(time.perf_counter() - started)
        assert answer.ok
    took.sort()
    return took[int(0.99 * (len(took) - 1))]


def bench_channels(requests: int = 1000, clients: int = 20) -> list[dict]:
    """Rows for benchmarks/run.py."""
    direct = in_process_p99()
    load = decide_under_load(requests, clients)
    p50, p99 = load.percentile(0.5), load.percentile(0.99)
    return [{
        "figure": f"web app: {requests:,} requests each raced by a Slack click and an email "
                  f"link ({len(load.latencies_s):,} decision requests), {clients} concurrent "
                  "clients on 127.0.0.1",
        "baseline": f"one decision at a time in-process, no HTTP: p99 {direct * 1e3:.0f} ms",
        "measured": f"median {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms; "
                    f"{sum(load.won.values()):,} won (Slack {load.won['slack']:,}, link "
                    f"{load.won['link']:,}), {load.lost:,} told already decided, "
                    f"{len(load.errors)} errors, {load.wall_s:.1f} s",
        "value": f"p99 {p99 * 1e3:.0f} ms; exactly once: {'yes' if load.exactly_once else 'NO'}",
        "target": "every request decided exactly once; p99 <= 2 s",
        "met": load.exactly_once and p99 <= 2.0}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    for row in bench_channels(args.requests, args.clients):
        print(f"{row['figure']}\n  baseline: {row['baseline']}\n  measured: {row['measured']}"
              f"\n  value: {row['value']} (target {row['target']}: "
              f"{'met' if row['met'] else 'NOT met'})")


if __name__ == "__main__":
    main()
