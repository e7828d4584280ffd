"""The local server under slow and hostile clients: each gets an answer within its timeout, the
others are served meanwhile, and stop() returns whatever the clients do."""

from __future__ import annotations

import asyncio
import contextlib
import select
import selectors
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from benchmarks.channels import on_own_loop
from hitl_kit.server import Limits, LocalServer

from .channel_kit import Forms


async def hello(request):
    return PlainTextResponse("hello")


async def echo(request):
    return PlainTextResponse(f"got {len(await request.body())} bytes")


STUCK_STARTED, STUCK_RELEASED = threading.Event(), threading.Event()


async def stuck(request):
    STUCK_STARTED.set()
    await run_in_threadpool(STUCK_RELEASED.wait, 60)  # a handler that takes far too long
    return PlainTextResponse("late")


APP = Starlette(routes=[Route("/", hello), Route("/echo", echo, methods=["POST"]),
                        Route("/stuck", stuck)])
STRICT = Limits(head_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=1, max_body_bytes=1024,
                shutdown_grace_s=1)
PATIENT = Limits(head_timeout_s=60, body_timeout_s=60, keep_alive_s=60, max_connections=2000,
                 max_connections_per_client=2000)


@pytest.fixture(scope="module")
def strict():
    with LocalServer(APP, limits=STRICT, lifetime_s=120) as server:
        yield server


@pytest.fixture(scope="module")
def patient():
    """Hostile clients here are never cut off during the test: if they could block the server,
    the others would wait for a minute and fail."""
    with LocalServer(APP, limits=PATIENT, lifetime_s=120) as server:
        yield server


HANG_S = 60  # a ceiling that only a hang reaches: every wait here ends on an event first


def connect(server, timeout=HANG_S) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def reply_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; TimeoutError when it never
    does (after the socket's timeout, a ceiling that only a hang reaches)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(reply: bytes) -> int | None:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def get(server, path="/", timeout=HANG_S) -> httpx.Response:
    return httpx.get(server.url + path, timeout=timeout, trust_env=False)


def test_an_idle_connection_is_closed_by_the_server(strict):
    """Closed by the server (recv returns), not left open: without the head timeout nothing
    would close it, and the socket's own ceiling would raise TimeoutError."""
    idle = connect(strict)
    assert reply_of(idle) == b""
    assert get(strict).text == "hello"


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(strict):
    """A byte every 50 ms never lets a per-byte idle timer expire: only a deadline for the whole
    head cuts this client off. It keeps sending (up to a ceiling only a hang reaches) until the
    server answers or closes."""
    slow = connect(strict)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (HANG_S * 20)
    cut_off = False
    try:
        for byte in head:
            slow.send(bytes([byte]))
            if select.select([slow], [], [], 0.05)[0]:  # the server answered or closed
                cut_off = True
                break
    except (BrokenPipeError, ConnectionResetError):
        cut_off = True  # cut off while still sending, as it should be
    assert cut_off, "the server let a head trickle in for a whole minute"
    assert status_of(reply_of(slow)) in (408, None)


def test_a_body_shorter_than_its_content_length_gets_408(strict):
    short = connect(strict)
    short.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly 16 bytes...")
    assert status_of(reply_of(short)) == 408


def test_an_oversized_body_is_refused_unread(strict):
    big = connect(strict)
    big.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    reply = reply_of(big)  # nothing of the body was sent: the answer came from the header
    assert status_of(reply) == 413 and b"at most 1,024" in reply
    chunked = connect(strict)
    chunked.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n")
    assert status_of(reply_of(chunked)) == 413
    fits = httpx.post(strict.url + "/echo", content=b"x" * 1024, trust_env=False)
    assert fits.text == "got 1024 bytes"


@pytest.mark.parametrize(("request_bytes", "expected"), [
    (b"BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
    (b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
    (b"DELETE /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
])
def test_odd_methods_and_malformed_requests_get_an_answer(strict, request_bytes, expected):
    sock = connect(strict)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(request_bytes)
    assert status_of(reply_of(sock)) == expected


async def many_gets(url: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(trust_env=False, timeout=20, limits=limits) as client:
        replies = await asyncio.gather(*(client.get(url) for _ in range(count)))
    return [r.status_code for r in replies]


def test_others_are_served_while_hostile_clients_hold_connections(patient):
    idle = [connect(patient) for _ in range(50)]
    half_head = connect(patient)
    half_head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    short_body = connect(patient)
    short_body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    assert get(patient, timeout=10).text == "hello"
    statuses = on_own_loop(many_gets(patient.url, 200))  # 200 at once, on top of them
    assert statuses == [200] * 200
    short_body.sendall(b"x" * 97)  # the slow client finishes: it is answered too
    reply = b""
    while b"got 100 bytes" not in reply and (chunk := short_body.recv(4096)):
        reply += chunk
    assert status_of(reply) == 200
    for sock in [*idle, half_head, short_body]:
        sock.close()


def test_a_whole_head_over_the_limit_is_refused_even_in_one_piece(strict):
    """h11 limits a head that is still arriving; one that arrives whole in a single read was
    served before (a 100 kB head, sent at once)."""
    sock = connect(strict)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    reply = reply_of(sock)
    assert status_of(reply) == 431 and b"at most 16,384" in reply
    fits = connect(strict)  # a head just under the limit is served
    fits.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
                 + b"a" * 16_000 + b"\r\n\r\n")
    assert status_of(reply_of(fits)) == 200


class Flood:
    """Idle sockets from one address (``source``, another loopback address than the other
    client's), opened up to ``count`` at once and re-opened as the server cuts them, until
    stopped or ``max_opens`` sockets were opened in all. Counts what it saw."""

    def __init__(self, port: int, source: str, count: int, max_opens: int):
        self.port, self.source, self.count, self.max_opens = port, source, count, max_opens
        self.opened = self.cut = self.refused_with_503 = 0
        self.failed_opens: list[str] = []
        self.filled = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, selector) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                            source_address=(self.source, 0))
        except OSError as exc:  # (a loaded machine): noted, and the flood goes on
            self.failed_opens.append(repr(exc))
            return
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            try:
                while len(selector.get_map()) < self.count and len(self.failed_opens) < 100:
                    self._open(selector)
                self.filled.set()
                while not self.stop.is_set() and self.opened < self.max_opens:
                    for key, _ in selector.select(timeout=0.05):
                        try:
                            data = key.fileobj.recv(4096)
                        except OSError:
                            data = b""
                        self.refused_with_503 += data.startswith(b"HTTP/1.1 503")
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
                        self.cut += 1
                        self._open(selector)  # as cut, so again
            finally:
                self.filled.set()
                for key in list(selector.get_map().values()):
                    key.fileobj.close()

    def __enter__(self) -> Flood:
        self.thread.start()
        assert self.filled.wait(60), "the flood never got its sockets open"
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)


def test_a_flood_of_idle_sockets_from_one_address_leaves_the_others_served(tmp_path):
    """600 idle sockets from 127.0.0.2, re-opened as the server cuts them, while a person on
    127.0.0.1 checks the health route, signs in and decides every pending request. Before,
    the flood took every slot and everyone, the health check included, got 503."""
    from .channel_kit import FAST, client, make_setup, sign_in
    from .test_web import decide_on_dashboard

    setup = make_setup(tmp_path)
    with setup.app.serve(lifetime_s=120, limits=FAST) as server, \
            Flood(server.port, "127.0.0.2", count=600, max_opens=5_000) as flood, \
            client(server) as http:
        health = [http.get("/healthz").status_code for _ in range(20)]
        sign_in(http, setup.app, "ana")
        page = http.get("/dashboard").text
        refs = [ref for ref in Forms(page).refs().values()]
        decided = decide_on_dashboard(http, refs, "approve", "checked")
        health += [http.get("/healthz").status_code for _ in range(20)]
    seen = (f"flood: {flood.opened} opened, {flood.cut} cut, {flood.refused_with_503} "
            f"turned away with 503, failed opens {flood.failed_opens[:3]}")
    assert health == [200] * 40, seen
    assert decided.status_code == 200, seen
    assert setup.inbox.items() == [] and setup.executed() == len(refs) == 3, seen
    # the flood was held at the limit: its sockets past it were turned away at once
    assert flood.opened >= 600 and flood.refused_with_503 > 0, seen


def test_connections_beyond_the_limit_get_503_not_a_hang():
    with LocalServer(APP, limits=Limits(max_connections=20), lifetime_s=60) as server:
        held = [connect(server) for _ in range(25)]
        reply = get(server, timeout=10)
        assert reply.status_code == 503
        for sock in held:
            sock.close()
        give_up = time.monotonic() + HANG_S  # the held sockets are closed: slots free up
        while get(server).status_code == 503 and time.monotonic() < give_up:
            time.sleep(0.05)
        assert get(server).text == "hello"


def test_stop_returns_whatever_the_clients_do():
    """A handler still running, a body half sent, an idle client: stop() returns without
    waiting for any of them (the handler is only released after), and every connection is
    closed by the server."""
    STUCK_STARTED.clear()
    STUCK_RELEASED.clear()
    server = LocalServer(APP, limits=Limits(shutdown_grace_s=1), lifetime_s=600).start()
    idle = connect(server)
    short_body = connect(server)
    short_body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    stuck = connect(server)
    stuck.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert STUCK_STARTED.wait(HANG_S), "the stuck handler never started"
        assert server.stop() is True
        assert not server.running and not STUCK_RELEASED.is_set()
        for sock in (idle, short_body, stuck):
            assert status_of(reply_of(sock)) in (None, 408, 500, 503)  # closed, not held open
        with pytest.raises(OSError):
            connect(server, timeout=HANG_S)
    finally:
        STUCK_RELEASED.set()
        for sock in (idle, short_body, stuck):
            sock.close()


def test_the_server_stops_by_itself_after_its_lifetime():
    server = LocalServer(APP, lifetime_s=0.5).start()
    assert server.wait(timeout=HANG_S) and not server.running
    with pytest.raises(OSError):
        connect(server)


def test_a_server_does_not_outlive_its_process(tmp_path):
    """A notebook kernel that exits takes its server with it (nobody called stop())."""
    script = ("from starlette.applications import Starlette\n"
              "from hitl_kit.server import LocalServer\n"
              "server = LocalServer(Starlette(), lifetime_s=None).start()\n"
              "print(server.port, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(done.stdout)), timeout=HANG_S)


def test_limits_are_checked():
    with pytest.raises(ValueError, match="lifetime_s"):
        LocalServer(APP, lifetime_s=0)
    server = LocalServer(APP, lifetime_s=5).start()
    with pytest.raises(RuntimeError, match="started already"):
        server.start()
    server.stop()
