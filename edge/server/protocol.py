"""The client-facing HTTP/1.1 protocol: h11 on a raw asyncio protocol.

h11 parses; this class moves bytes, keeps the limits and timers a public
ingress needs, and runs one handler task per request:

- head bytes over ``max_header_bytes`` -> 431; body over ``max_body_bytes``
  (by Content-Length up front, or counted for chunked bodies) -> 413; both
  then close the connection.
- deadlines: the head must arrive within ``header_timeout_s`` and the body
  within ``body_timeout_s`` (408 and close: a slowloris client is cut off);
  an idle keep-alive connection closes after ``keepalive_timeout_s``. There
  is no deadline while a response streams: the upstream side owns that.
- flow control: ``send`` waits while the client's socket buffer is full, so a
  slow reader slows the relay (and through it, the provider's socket); while
  a request is in flight, further pipelined bytes are buffered up to a cap,
  then reading pauses.
- a client that disconnects cancels its handler task; the handler's cleanup
  closes the upstream connection.

Malformed HTTP gets a 400 (431 where h11 hints it) and the connection closes;
the process keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11

from edge.errors import (
    EdgeError,
    HeadersTooLarge,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from edge.settings import Settings

PIPELINE_CAP = 64 * 1024
_ID_OK = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class Request:
    __slots__ = ("body", "headers", "method", "path", "query", "received_at", "request_id")

    def __init__(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], request_id: str
    ) -> None:
        self.method = method
        q = target.find(b"?")
        self.path = target if q < 0 else target[:q]
        self.query = b"" if q < 0 else target[q + 1 :]
        self.headers = headers
        self.body = b""
        self.request_id = request_id
        self.received_at = time.monotonic()


def request_id_for(headers: dict[bytes, bytes]) -> str:
    """The client's own ``x-request-id`` when it is sane, else a new one."""
    given = headers.get(b"x-request-id")
    if given and len(given) <= 128 and all(c in _ID_OK for c in given):
        return given.decode("ascii")
    return "req_" + os.urandom(12).hex()


def _reason(status: int) -> bytes:
    phrase = _REASONS.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        _REASONS[status] = phrase
    return phrase


def _raw_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _reason(status))]
    lines += [name + b": " + value for name, value in headers if name != b"connection"]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_REASONS: dict[int, bytes] = {529: b"Site Overloaded"}

Handler = Callable[[Request, "EdgeProtocol"], Coroutine[Any, Any, None]]
ErrorRenderer = Callable[[EdgeError, Request | None, "EdgeProtocol"], None]


class ConnectionTracker:
    """Live connections of one worker, for limits and graceful drain."""

    def __init__(self) -> None:
        self.connections: set[EdgeProtocol] = set()
        self.draining = False
        self.idle_event = asyncio.Event()

    def busy(self) -> int:
        return sum(1 for c in self.connections if c.in_flight)

    def drain(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their response."""
        self.draining = True
        for conn in list(self.connections):
            if not conn.in_flight:
                conn.close()
        self._check_idle()

    def _check_idle(self) -> None:
        if self.draining and self.busy() == 0:
            self.idle_event.set()


class EdgeProtocol(asyncio.Protocol):
    __slots__ = (
        "_body_size",
        "_conn",
        "_drain_waiter",
        "_handler",
        "_head_timer",
        "_lingering",
        "_loop",
        "_over_limit",
        "_paused_reading",
        "_render_error",
        "_settings",
        "_task",
        "_timer",
        "_tracker",
        "bytes_sent",
        "closed",
        "extra_headers",
        "in_flight",
        "request",
        "started",
        "transport",
    )

    def __init__(
        self,
        settings: Settings,
        tracker: ConnectionTracker,
        handler: Handler,
        render_error: ErrorRenderer,
    ) -> None:
        self._settings = settings
        self._tracker = tracker
        self._handler = handler
        self._render_error = render_error
        self._loop = asyncio.get_running_loop()
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_header_bytes)
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._head_timer = False
        self._lingering = False
        self._over_limit = False
        self._body_size = 0
        self.request: Request | None = None
        self.in_flight = False
        self.started = False
        self.closed = False
        self.bytes_sent = 0
        self.extra_headers: list[tuple[bytes, bytes]] = []

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        tracker = self._tracker
        if len(tracker.connections) >= self._settings.max_connections or tracker.draining:
            # answered with a 503 as soon as its request head arrives (or closed after 1 s)
            self._over_limit = True
            self._arm(1.0, self.close)
            return
        tracker.connections.add(self)
        self._arm(self._settings.keepalive_timeout_s, self._on_idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent; discard what the client still sends until it closes
        try:
            self._conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if self.in_flight:
            if len(self._conn.trailing_data[0]) > PIPELINE_CAP and not self._paused_reading:
                self._paused_reading = True
                assert self.transport is not None
                self.transport.pause_reading()
            return
        if self.request is None and not self._head_timer:
            # the first bytes of a head: its deadline starts now and is never extended
            self._head_timer = True
            self._arm(self._settings.header_timeout_s, self._on_head_timeout)
        self._process()

    def eof_received(self) -> bool | None:
        return None  # the client is gone (or done after an error): close, cancelling any handler

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._tracker.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._tracker._check_idle()

    def pause_writing(self) -> None:
        self._drain_waiter = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._drain_waiter = None

    # -- reading requests

    def _process(self) -> None:
        conn = self._conn
        while not self.closed:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if isinstance(ev, h11.Request):
                if not self._on_head(ev):
                    return
            elif isinstance(ev, h11.Data):
                self._body_size += len(ev.data)
                if self._body_size > self._settings.max_body_bytes:
                    self._fail(
                        PayloadTooLarge(
                            f"request body exceeds {self._settings.max_body_bytes} bytes"
                        )
                    )
                    return
                assert self.request is not None
                self.request.body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                self._dispatch()
                return
            elif isinstance(ev, h11.ConnectionClosed):
                self.close()
                return

    def _on_head(self, ev: h11.Request) -> bool:
        headers: dict[bytes, bytes] = {}
        size = len(ev.target) + 16
        for name, value in ev.headers:
            headers[name] = value
            size += len(name) + len(value) + 4
        self.request = Request(ev.method, ev.target, headers, request_id_for(headers))
        if self._over_limit:
            self._fail(
                ServiceUnavailable(
                    "the gateway is at its connection limit; retry shortly",
                    headers=[(b"retry-after", b"1")],
                )
            )
            return False
        if size > self._settings.max_header_bytes:
            # h11 only bounds a head that is still incomplete; one that arrived whole is measured here
            self._fail(
                HeadersTooLarge(f"request head exceeds {self._settings.max_header_bytes} bytes")
            )
            return False
        self._head_timer = False
        self._body_size = 0
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._settings.max_body_bytes:
            self._fail(
                PayloadTooLarge(f"request body exceeds {self._settings.max_body_bytes} bytes")
            )
            return False
        self._arm(self._settings.body_timeout_s, self._on_body_timeout)
        if self._conn.they_are_waiting_for_100_continue:
            self._write(self._conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        return True

    def _dispatch(self) -> None:
        self._cancel_timer()
        req = self.request
        assert req is not None
        self.in_flight = True
        self.started = False
        self.bytes_sent = 0
        self._task = self._loop.create_task(self._run(req))

    async def _run(self, req: Request) -> None:
        try:
            await self._handler(req, self)
        finally:
            self._task = None
            self._finish_cycle()

    def _finish_cycle(self) -> None:
        self.in_flight = False
        self.request = None
        self.extra_headers = []
        conn = self._conn
        if self.closed:
            return
        if (
            conn.our_state is h11.MUST_CLOSE
            or conn.our_state is not h11.DONE
            or conn.their_state is not h11.DONE
        ):
            self.close()
            return
        if self._tracker.draining:
            self.close()
            self._tracker._check_idle()
            return
        conn.start_next_cycle()
        if self._paused_reading:
            self._paused_reading = False
            assert self.transport is not None
            self.transport.resume_reading()
        self._arm(self._settings.keepalive_timeout_s, self._on_idle_timeout)
        if conn.trailing_data[0]:
            self._head_timer = True
            self._arm(self._settings.header_timeout_s, self._on_head_timeout)
            self._process()

    # -- writing responses (used by handlers)

    def _base_headers(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        req = self.request
        out = list(headers)
        if req is not None:
            out.append((b"x-request-id", req.request_id.encode()))
        out += self.extra_headers
        if self._tracker.draining:
            out.append((b"connection", b"close"))
        return out

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole response with Content-Length."""
        if self.closed:
            return
        self.started = True
        conn = self._conn
        hs = self._base_headers(headers)
        hs.append((b"content-length", b"%d" % len(body)))
        try:
            head = conn.send(h11.Response(status_code=status, headers=hs, reason=_reason(status)))
            data = conn.send(h11.Data(data=body)) if body else b""
            end = conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # h11 will not answer a request it could not parse: write the error by hand and close
            self._write(_raw_response(status, hs, body))
            self.close()
            return
        self._write(b"".join((head or b"", data or b"", end or b"")))

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Begin a streamed (chunked) response; then ``send`` and ``end``."""
        self.started = True
        if self.closed:
            return
        out = self._conn.send(
            h11.Response(
                status_code=status, headers=self._base_headers(headers), reason=_reason(status)
            )
        )
        self._write(out)

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("client disconnected")
        self._write(self._conn.send(h11.Data(data=data)))
        if self._drain_waiter is not None:
            await self._drain_waiter

    def end(self) -> None:
        if not self.closed:
            self._write(self._conn.send(h11.EndOfMessage()))

    def abort_stream(self) -> None:
        """End a streamed response without its terminating chunk: the client sees a truncated body."""
        self.close()

    def _write(self, data: bytes | None) -> None:
        if data and self.transport is not None and not self.closed:
            self.bytes_sent += len(data)
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    # -- errors and timers

    def _fail(self, err: EdgeError) -> None:
        """Answer an error that ends the connection (limits, timeouts, bad framing)."""
        self._cancel_timer()
        if not self.in_flight and self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.extra_headers = [(b"connection", b"close")]
            self._render_error(err, self.request, self)
        self._linger()

    def _linger(self) -> None:
        """Close after an error answer without resetting it away.

        Closing a socket with unread request bytes makes the kernel send RST,
        which can destroy the error response before the client reads it. So:
        send FIN, discard what still arrives, close on the client's EOF or
        after a short grace period.
        """
        transport = self.transport
        if transport is None or self.closed:
            return
        if self._lingering or not transport.can_write_eof():
            self.close()
            return
        self._lingering = True
        transport.write_eof()
        self._arm(2.0, self.close)

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint
        if status == 431:
            self._fail(
                HeadersTooLarge(f"request head exceeds {self._settings.max_header_bytes} bytes")
            )
        else:
            self._fail(InvalidRequest(f"malformed HTTP request: {exc}"))

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_idle_timeout(self) -> None:
        self._timer = None
        if not self.in_flight:
            self.close()

    def _on_head_timeout(self) -> None:
        self._timer = None
        if not self.in_flight:
            self._fail(
                RequestTimeout(
                    f"request head not received within {self._settings.header_timeout_s:g} s"
                )
            )

    def _on_body_timeout(self) -> None:
        self._timer = None
        if not self.in_flight:
            self._fail(
                RequestTimeout(
                    f"request body not received within {self._settings.body_timeout_s:g} s"
                )
            )
