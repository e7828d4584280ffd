"""The local server under slow and hostile clients: each gets an answer within its timeout, the
others are served meanwhile, and stop() returns whatever the clients do."""

import asyncio
import contextlib
import select
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
PATIENT = Limits(head_timeout_s=60, body_timeout_s=60, keep_alive_s=60, max_connections=2000)


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
