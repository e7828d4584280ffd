"""A local web server for the kit's apps: uvicorn on 127.0.0.1, in a background thread, that no
slow or hostile client can hold up and that always stops.

``LocalServer(app)`` serves any ASGI app (the approvals app of ``hitl_kit.web``, the stand-in
for Slack of ``hitl_kit.fake_slack``) on a free port of 127.0.0.1. What each client gets:

* a client that connects and sends nothing, or sends its request head a byte at a time, is cut
  off after ``head_timeout_s`` (``408`` when it had started a request);
* a body slower than ``body_timeout_s`` gets ``408``; a body over ``max_body_bytes`` gets ``413``,
  refused unread when its ``Content-Length`` says so;
* a request head over ``max_head_bytes`` gets ``431`` (``400`` while it is still arriving);
* an idle keep-alive connection is closed after ``keep_alive_s``; more than ``max_connections``
  at once get ``503``, and so do more than ``max_connections_per_client`` from one address (so
  one client holding or re-opening hundreds of idle sockets leaves the others served); a
  malformed request ``400``; a method a route does not take ``405``.

All of it runs on one event loop, so a client that waits never blocks the others. The server
stops on ``stop()`` (returning within ``shutdown_grace_s`` and a little more, whatever clients
are doing), on leaving a ``with`` block, after ``lifetime_s``, and when the process exits (the
notebook kernel included).

    >>> from starlette.applications import Starlette
    >>> with LocalServer(Starlette(), lifetime_s=30) as server:
    ...     server.url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import socket
import threading
import time
import weakref
from dataclasses import dataclass

import uvicorn
from starlette.datastructures import Headers
from uvicorn.protocols.http.h11_impl import H11Protocol


def _plain_reply(status: str, text: str) -> bytes:
    """A whole HTTP/1.1 reply that closes the connection, written before h11 is involved."""
    body = f"{text}\n".encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


REQUEST_TIMEOUT = _plain_reply("408 Request Timeout", "the request did not arrive in time")
TOO_MANY_FROM_YOU = _plain_reply(
    "503 Service Unavailable", "too many connections from your address at once; close some "
    "and try again")


@dataclass(frozen=True)
class Limits:
    """How long a client may take and how much it may send."""

    head_timeout_s: float = 5.0  # request line and headers, from connecting or the last answer
    body_timeout_s: float = 5.0  # the whole body, from the end of the head
    keep_alive_s: float = 5.0  # an idle connection between requests
    max_body_bytes: int = 64 * 1024  # forms and Slack payloads are a few kB
    max_head_bytes: int = 16 * 1024
    max_connections: int = 512  # open at once; more get 503
    max_connections_per_client: int = 64  # from one address at once (browsers open about 6)
    shutdown_grace_s: float = 2.0  # requests running at stop() may finish within this


DEFAULT_LIMITS = Limits()


class _GuardedH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request head and a limit on the
    connections one client address holds at once."""

    _head_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None  # the client address this connection is counted against

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        per_client = self.config.connections_per_client
        if per_client.get(address, 0) >= self.config.limits.max_connections_per_client:
            # Out of uvicorn's count at once: a flood of refused sockets, each waiting for its
            # close to be processed, must not fill the server-wide limit and turn others away.
            self.connections.discard(self)
            transport.write(TOO_MANY_FROM_YOU)
            transport.close()
            return
        per_client[address] = per_client.get(address, 0) + 1
        self._counted = address
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        if self._counted is not None:
            per_client = self.config.connections_per_client
            per_client[self._counted] -= 1
            if not per_client[self._counted]:
                del per_client[self._counted]
            self._counted = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a whole head arrived: the app has the request now
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None
                                                or self.cycle.response_complete):
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.config.head_timeout_s, self._head_too_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the app is answering; the body deadline is the app side's
        if self.conn.trailing_data[0]:  # part of a request came: say why it is cut off
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class BodyGuard:
    """ASGI middleware: the whole body read first, within a size and a time limit, then handed
    to the app. The app never waits on a client."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = _head_size(scope)
        if head > self.limits.max_head_bytes:  # arrived whole: h11 only limits a partial head
            return await _refuse(send, 431, f"the request head is {head:,} bytes; at most "
                                            f"{self.limits.max_head_bytes:,} are accepted")
        length = Headers(scope=scope).get("content-length")
        if length is not None and int(length) > self.limits.max_body_bytes:
            return await _refuse(send, 413, f"the body is {int(length):,} bytes; at most "
                                            f"{self.limits.max_body_bytes:,} are accepted")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    size += len(message.get("body", b""))
                    if size > self.limits.max_body_bytes:
                        return await _refuse(send, 413, "the body is too large; at most "
                                                        f"{self.limits.max_body_bytes:,} bytes")
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            return await _refuse(send, 408, "the body did not arrive in time")
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def _head_size(scope) -> int:
    """The request head's size as sent: request line, header lines, the blank line."""
    target = len(scope.get("raw_path") or b"") + (len(scope["query_string"]) + 1
                                                  if scope.get("query_string") else 0)
    line = len(scope["method"]) + 1 + target + len(" HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


async def _refuse(send, status: int, text: str) -> None:
    body = f"{text}\n".encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body))
                                                            .encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _QuietCancellations(logging.Filter):
    """Requests cut off by stop() are expected: no traceback for them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


logging.getLogger("uvicorn.error").addFilter(_QuietCancellations())


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stop_at: float | None):
        super().__init__(config)
        self.stop_at = stop_at

    async def on_tick(self, counter: int) -> bool:
        if self.stop_at is not None and time.monotonic() >= self.stop_at:
            self.should_exit = True
        return await super().on_tick(counter)


_RUNNING: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # the kernel or interpreter is exiting: no server outlives it
    for server in list(_RUNNING):
        server.stop()


class ServersStopped(RuntimeError):
    """What ``require_running`` raises: in a notebook, one line that says what to do, not a
    connection error's traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead
        return [f"{type(self).__name__}: {self}"]


def require_running(servers: dict, restart: str) -> None:
    """Check that each named server (anything with ``running``) still runs before talking to it;
    ``ServersStopped`` names the ones that stopped and says ``restart``.

    >>> from starlette.applications import Starlette
    >>> with LocalServer(Starlette(), lifetime_s=30) as server:
    ...     require_running({"web app": server}, restart="start it again")
    >>> require_running({"web app": server}, restart="start it again")
    Traceback (most recent call last):
    ...
    hitl_kit.server.ServersStopped: the web app stopped (servers stop by themselves after their lifetime): start it again
    """  # noqa: E501
    stopped = [name for name, server in servers.items() if not server.running]
    if stopped:
        raise ServersStopped(f"the {' and the '.join(stopped)} stopped (servers stop by themselves "
                             f"after their lifetime): {restart}")


class LocalServer:
    """``app`` served on 127.0.0.1 in a background thread until ``stop()``, the end of a
    ``with`` block, ``lifetime_s`` (None: no limit) or the process exit."""

    def __init__(self, app, *, lifetime_s: float | None = 600.0, limits: Limits = DEFAULT_LIMITS):
        if lifetime_s is not None and not lifetime_s > 0:
            raise ValueError("lifetime_s is a positive number of seconds, or None")
        self.limits, self.lifetime_s = limits, lifetime_s
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            BodyGuard(app, limits), http=_GuardedH11, ws="none", lifespan="off",
            loop="asyncio", log_config=None, log_level="error", access_log=False,
            server_header=False, proxy_headers=False,
            timeout_keep_alive=max(1, round(limits.keep_alive_s)),
            limit_concurrency=limits.max_connections,
            timeout_graceful_shutdown=max(1, round(limits.shutdown_grace_s)),
            h11_max_incomplete_event_size=limits.max_head_bytes)
        config.head_timeout_s = limits.head_timeout_s
        config.limits = limits
        config.connections_per_client = {}  # client address -> connections open (one loop)
        self._server: _Server | None = None
        self._config = config
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("this server was started already; make a new one")
        stop_at = None if self.lifetime_s is None else time.monotonic() + self.lifetime_s
        self._server = _Server(self._config, stop_at)
        self._thread = threading.Thread(target=self._server.run, args=([self._socket],),
                                        name=f"hitl-kit server :{self.port}", daemon=True)
        self._thread.start()
        give_up = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > give_up:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        _RUNNING.add(self)
        return self

    def __enter__(self) -> LocalServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server stopped (by itself or not); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def stop(self) -> bool:
        """Stop serving: running requests get ``shutdown_grace_s`` to finish, then the server
        closes every connection. Returns True once stopped (it does not wait on clients)."""
        _RUNNING.discard(self)
        if self._server is None or self._thread is None:
            self._socket.close()
            return True
        self._server.should_exit = True
        self._thread.join(self.limits.shutdown_grace_s + 1.5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(2)
        self._socket.close()
        return not self._thread.is_alive()
