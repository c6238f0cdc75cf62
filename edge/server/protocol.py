"""The client-facing HTTP/1.1 protocol: h11 parses, this class does the rest.

h11 parses every request (it reads untrusted bytes; a hand-written parser
would be a liability). Responses are ours: status line, headers and framing
are written here, which saves h11's validation of headers the gateway
composed itself (values that come from outside, like an upstream request
id, are checked for line breaks before they are written). Because h11 is
not told about the response, each request cycle gets a fresh h11
connection, fed with whatever pipelined bytes the previous one held back.

Limits and timers a public ingress needs:

- head bytes over ``max_header_bytes`` -> 431; body over ``max_body_bytes``
  (by Content-Length up front, or counted for chunked bodies) -> 413.
- deadlines: the head must arrive within ``header_timeout_s`` of its first
  byte and the body within ``body_timeout_s`` (408: a slowloris client is
  cut off); an idle keep-alive connection closes after
  ``keepalive_timeout_s``. No deadline while a response streams: the
  upstream side owns that.
- flow control: ``send`` waits while the client's socket buffer is full, so
  a slow reader slows the relay (and through it the provider's socket);
  while a request is in flight, pipelined bytes are buffered up to a cap,
  then reading pauses.
- request bodies are buffered within a per-worker budget
  (``max_buffered_bytes``, ``BodyBudget``): a body announced by its
  Content-Length is read only once its whole length is reserved; until then
  its connection is not read (FIFO; 503 with ``retry-after`` if the wait
  outlasts ``body_timeout_s``). A chunked body reserves as it arrives and is
  answered 503 when the budget is spent: waiting with a partial body could
  deadlock partial bodies against each other. Bodies of GET, HEAD, DELETE and
  OPTIONS are read and dropped: no route of the gateway reads them.
- a JSON body is measured while it arrives and once whole, before anyone
  parses it (``jsonlimits``): too many items or too deep is a 400 naming the
  limit, usually after the first few hundred kilobytes of a hostile body.
- a client that disconnects cancels its handler task; the handler's cleanup
  closes the upstream connection.
- an error answer is followed by a lingering close (FIN, discard input,
  close), so the kernel does not reset the answer away.

Malformed HTTP gets a 400 (431 where h11 hints it) and the connection
closes; the process keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
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
from edge.server.jsonlimits import BodyScan, JsonLimits, measure

if TYPE_CHECKING:
    from edge.settings import Settings

PIPELINE_CAP = 64 * 1024
# methods whose bodies no route reads: read (within max_body_bytes) and dropped
BODYLESS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})
DEFAULT_LIMITS = JsonLimits()
_ID_OK = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_REASONS: dict[int, bytes] = {529: b"Site Overloaded"}


def _reason(status: int) -> bytes:
    phrase = _REASONS.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        _REASONS[status] = phrase
    return phrase


class Request:
    __slots__ = (
        "body",
        "headers",
        "keep_alive",
        "limits",
        "method",
        "path",
        "query",
        "received_at",
        "request_id",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: dict[bytes, bytes],
        request_id: str,
        keep_alive: bool,
    ) -> None:
        self.method = method
        q = target.find(b"?")
        self.path = target if q < 0 else target[:q]
        self.query = b"" if q < 0 else target[q + 1 :]
        self.headers = headers
        self.body = b""
        self.request_id = request_id
        self.keep_alive = keep_alive
        self.received_at = time.monotonic()
        self.limits = DEFAULT_LIMITS  # the worker's, set by the protocol


def is_json(headers: dict[bytes, bytes]) -> bool:
    ctype = headers.get(b"content-type", b"")
    return ctype.split(b";", 1)[0].strip().lower() == b"application/json"


# Fields that carry one value: sent twice, the request is refused (RFC 9110 5.3 lets only
# list-valued fields repeat; the rest are joined with commas)
SINGLE_HEADERS = frozenset(
    {
        b"authorization", b"x-api-key", b"x-edge-tier", b"content-type", b"host",
        b"anthropic-version", b"x-request-id", b"x-edge-session", b"x-edge-tenant",
    }
)  # fmt: skip


def request_id_for(headers: dict[bytes, bytes]) -> str:
    """The client's own ``x-request-id`` when it is sane, else a new one: ``req_``, the
    milliseconds since the epoch (12 hex digits), 48 random bits. Time-ordered, so the answer
    records keyed by it (edge/quality/feedback.py) are appended, not scattered over their
    index (a random id costs SQLite a page write per record once the table is large)."""
    given = headers.get(b"x-request-id")
    if given and len(given) <= 128 and all(c in _ID_OK for c in given):
        return given.decode("ascii")
    global _ID_MS, _ID_PREFIX
    ms = time.time_ns() // 1_000_000
    if ms != _ID_MS:  # (formatted once a millisecond, not once a request)
        _ID_MS, _ID_PREFIX = ms, f"req_{ms:012x}"
    return _ID_PREFIX + os.urandom(6).hex()


_ID_MS, _ID_PREFIX = -1, ""


Handler = Callable[[Request, "EdgeProtocol"], Coroutine[Any, Any, None]]
ErrorRenderer = Callable[[EdgeError, Request | None, "EdgeProtocol"], None]
# checks a request head (and the peer's address) before its body is read: None, or the error
# and how long its answer waits (repeated failed keys from one peer are slowed)
HeadCheck = Callable[[Request, str], tuple[EdgeError, float] | None]


class BodyBudget:
    """Request body bytes one worker buffers at once. A reservation that does not fit waits
    in FIFO order; ``give`` returns the waiters it admits (the caller wakes them)."""

    __slots__ = ("capacity", "read", "used", "waiting")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0  # reserved
        self.read = 0  # of which read so far (what the worker actually holds)
        self.waiting: deque[tuple[EdgeProtocol, int]] = deque()

    def take(self, n: int) -> bool:
        """Reserve a whole body; False when it must wait (behind earlier waiters too)."""
        if self.waiting or self.used + n > self.capacity:
            return False
        self.used += n
        return True

    def grow(self, n: int) -> bool:
        """More bytes of a body of unknown length: now or never."""
        if self.used + n > self.capacity:
            return False
        self.used += n
        return True

    def wait(self, conn: EdgeProtocol, n: int) -> None:
        self.waiting.append((conn, n))

    def cancel(self, conn: EdgeProtocol) -> None:
        for i, (c, _) in enumerate(self.waiting):
            if c is conn:
                del self.waiting[i]
                return

    def give(self, n: int) -> list[tuple[EdgeProtocol, int]]:
        self.used -= n
        admitted = []
        while self.waiting and self.used + self.waiting[0][1] <= self.capacity:
            conn, size = self.waiting.popleft()
            self.used += size
            admitted.append((conn, size))
        return admitted


class ConnectionTracker:
    """Live connections of one worker, for limits and graceful drain, and its body budget."""

    def __init__(self, max_buffered_bytes: int = 64 * 1024 * 1024) -> None:
        self.connections: set[EdgeProtocol] = set()
        self.draining = False
        self.idle_event = asyncio.Event()
        self.bodies = BodyBudget(max_buffered_bytes)

    def busy(self) -> int:
        return sum(1 for c in self.connections if c.in_flight)

    def drain(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their response."""
        self.draining = True
        for conn in list(self.connections):
            if not conn.in_flight:
                conn.close()
        self.check_idle()

    def check_idle(self) -> None:
        if self.draining and self.busy() == 0:
            self.idle_event.set()


class EdgeProtocol(asyncio.Protocol):
    __slots__ = (
        "_body_parts",
        "_body_size",
        "_check_head",
        "_chunked",
        "_conn",
        "_drain_waiter",
        "_half_closed",
        "_handler",
        "_head_timer",
        "_held",
        "_held_body",
        "_keep_body",
        "_limits",
        "_lingering",
        "_loop",
        "_over_limit",
        "_paused_reading",
        "_peer",
        "_render_error",
        "_reserved",
        "_response_done",
        "_scan",
        "_settings",
        "_task",
        "_timer",
        "_tracker",
        "_waiting",
        "_write_timer",
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
        check_head: HeadCheck | None = None,
    ) -> None:
        self._settings = settings
        self._tracker = tracker
        self._handler = handler
        self._render_error = render_error
        self._check_head = check_head
        self._loop = asyncio.get_running_loop()
        self._conn = self._new_parser()
        self.transport: asyncio.Transport | None = None
        self._peer = ""
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._held: bytes | None = None  # pipelined bytes waiting for the client to read
        self._half_closed = False  # the client sent EOF after its request: close after it
        self._paused_reading = False
        self._head_timer = False
        self._lingering = False
        self._over_limit = False
        self._body_size = 0
        self._body_parts: list[bytes] = []
        self._chunked = False
        self._response_done = False
        self._keep_body = True
        self._reserved = 0  # bytes of the body budget this connection holds
        self._held_body = 0  # of which read
        # its head is read; its body is not read now (it waits for the budget, or its refusal
        # waits out a failed-auth delay)
        self._waiting = False
        self._scan: BodyScan | None = None
        self._limits = JsonLimits(
            settings.max_json_items,
            settings.max_json_depth,
            settings.max_messages,
            settings.max_tools,
        )
        self.request: Request | None = None
        self.in_flight = False
        self.started = False
        self.closed = False
        self.bytes_sent = 0
        self.extra_headers: list[tuple[bytes, bytes]] = []

    def _new_parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._settings.max_header_bytes)

    # -- asyncio callbacks

    @property
    def peer(self) -> str:
        """The client's address, for the log of an error no handler saw."""
        return self._peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        name = transport.get_extra_info("peername")
        self._peer = f"{name[0]}:{name[1]}" if isinstance(name, tuple) and len(name) >= 2 else ""
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
        if self._held is not None:
            self._held += data  # a read already under way when reading paused
            return
        try:
            self._conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if self._waiting:
            return  # a read under way when reading paused: h11 keeps it for later
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
        if self.in_flight and not self._lingering:
            # a client that half-closed after its whole request (shutdown(SHUT_WR)) still reads:
            # answer it, then close (HTTP/1.1 allows it; curl and proxies do it)
            self._half_closed = True
            return True
        return None  # the client is gone (or done after an error): close, cancelling any handler

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._waiting:
            self._waiting = False
            self._tracker.bodies.cancel(self)
        self._release()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._tracker.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._tracker.check_idle()

    def pause_writing(self) -> None:
        """The client is not reading what was written: streams wait, pipelined requests wait,
        and a client that reads nothing for the write timeout loses the connection (it must
        not hold a slot, or memory, for ever)."""
        self._drain_waiter = self._loop.create_future()
        self._write_timer = self._loop.call_later(
            self._settings.write_timeout_s, self._on_write_timeout
        )

    def resume_writing(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._drain_waiter = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._held is not None and not self.closed:
            held, self._held = self._held, None
            self._next_cycle(held)

    def _on_write_timeout(self) -> None:
        self._write_timer = None
        if self._drain_waiter is not None and self.transport is not None:
            self.transport.abort()  # nothing more can reach this client: free the slot now

    # -- reading requests

    def _process(self) -> None:
        conn = self._conn
        while not self.closed and not self._lingering:
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
                size = len(ev.data)
                self._body_size += size
                if self._body_size > self._settings.max_body_bytes:
                    self._fail(
                        PayloadTooLarge(
                            f"request body exceeds {self._settings.max_body_bytes} bytes"
                        )
                    )
                    return
                if not self._keep_body:
                    continue
                if self._chunked_body():
                    if not self._tracker.bodies.grow(size):
                        self._fail(_budget_spent())
                        return
                    self._reserved += size
                chunk = bytes(ev.data)
                self._body_parts.append(chunk)
                self._held_body += size
                self._tracker.bodies.read += size
                if self._scan is not None and (err := self._scan.feed(chunk, self._body_parts)):
                    self._fail(err)
                    return
            elif isinstance(ev, h11.EndOfMessage):
                self._dispatch()
                return
            elif isinstance(ev, h11.ConnectionClosed):
                self.close()
                return

    def _on_head(self, ev: h11.Request) -> bool:
        headers: dict[bytes, bytes] = {}
        size = len(ev.target) + 16
        twice = b""
        # h11's Headers is a Sequence whose iteration calls __getitem__ per header; its own list
        # of (raw name, lowercased name, value) is read directly (the version in constraints.txt
        # has it; another version without it is iterated)
        full = getattr(ev.headers, "_full_items", None)
        pairs = [(n, v) for _, n, v in full] if full is not None else ev.headers
        for name, value in pairs:
            if name in headers:
                if name in SINGLE_HEADERS:
                    twice = twice or name
                else:  # a list-valued field sent on several lines: one comma-joined value
                    value = headers[name] + b", " + value
            headers[name] = value
            size += len(name) + len(value) + 4
        conn_tokens = headers.get(b"connection", b"").lower()
        if ev.http_version == b"1.1":
            keep_alive = b"close" not in conn_tokens
        else:
            keep_alive = b"keep-alive" in conn_tokens
        if b"transfer-encoding" in headers and b"content-length" in headers:
            # framed two ways (a smuggling attempt behind a proxy that trusts the length):
            # answered by Transfer-Encoding as h11 reads it, then the connection closes
            # (RFC 9112 6.1)
            keep_alive = False
        self.request = Request(ev.method, ev.target, headers, request_id_for(headers), keep_alive)
        self._head_timer = False
        self._body_size = 0
        self._body_parts = []
        if self._over_limit:
            self._fail(
                ServiceUnavailable(
                    "the gateway is at its connection limit; retry shortly",
                    headers=[(b"retry-after", b"1")],
                )
            )
            return False
        if twice:
            # a proxy that checks the first of two credentials or tiers would see something
            # else than this gateway: refuse rather than pick one
            self._fail(
                InvalidRequest(
                    f"the {twice.decode('latin-1')} header appears more than once",
                    param=twice.decode("latin-1"),
                )
            )
            return False
        if size > self._settings.max_header_bytes:
            # h11 only bounds a head that is still incomplete; one that arrived whole is measured here
            self._fail(
                HeadersTooLarge(f"request head exceeds {self._settings.max_header_bytes} bytes")
            )
            return False
        refused = self._check_head(self.request, self.peer) if self._check_head else None
        if refused is not None:
            # a request that will be refused anyway is refused before its body is read: a
            # client without a key cannot make the gateway buffer max_body_bytes for it
            err, delay = refused
            if delay > 0:
                # nothing more is read meanwhile; the worker serves everyone else
                self._waiting = True
                self._pause()
                self._arm(delay, lambda: self._fail(err))
            else:
                self._fail(err)
            return False
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._settings.max_body_bytes:
            self._fail(
                PayloadTooLarge(f"request body exceeds {self._settings.max_body_bytes} bytes")
            )
            return False
        self.request.limits = self._limits
        self._keep_body = ev.method not in BODYLESS
        self._scan = BodyScan(self._limits) if self._keep_body and is_json(headers) else None
        if (
            self._keep_body
            and not self._chunked_body()
            and length is not None
            and length.isdigit()
            and int(length) > 0
        ):
            if not self._tracker.bodies.take(int(length)):
                # the worker buffers as many bodies as it may: this one is not read until
                # its whole length fits (so a body once started always completes)
                self._waiting = True
                self._tracker.bodies.wait(self, int(length))
                self._pause()
                self._arm(self._settings.body_timeout_s, self._on_budget_timeout)
                return False
            self._reserved = int(length)
        self._read_body()
        return True

    def _read_body(self) -> None:
        self._arm(self._settings.body_timeout_s, self._on_body_timeout)
        if self._conn.they_are_waiting_for_100_continue:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _chunked_body(self) -> bool:
        req = self.request
        return req is not None and b"transfer-encoding" in req.headers

    def _admitted(self) -> None:
        """The budget now holds this connection's body: read it."""
        if self.closed or not self._waiting:
            return
        self._waiting = False
        self._read_body()
        if self._paused_reading:
            self._paused_reading = False
            assert self.transport is not None
            self.transport.resume_reading()
        self._process()

    def _release(self) -> None:
        if self._held_body:
            self._tracker.bodies.read -= self._held_body
            self._held_body = 0
        if self._reserved:
            reserved, self._reserved = self._reserved, 0
            for conn, size in self._tracker.bodies.give(reserved):
                conn._reserved = size  # its own from now: released however it ends
                self._loop.call_soon(conn._admitted)

    def _pause(self) -> None:
        if not self._paused_reading:
            self._paused_reading = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _dispatch(self) -> None:
        self._cancel_timer()
        req = self.request
        assert req is not None
        parts = self._body_parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._body_parts = []
        if self._scan is not None and (err := measure(req.body, self._limits)):
            req.body = b""
            self._fail(err)  # before anyone expands it
            return
        self.in_flight = True
        self.started = False
        self._response_done = False
        self.bytes_sent = 0
        self._task = self._loop.create_task(self._run(req))

    async def _run(self, req: Request) -> None:
        try:
            await self._handler(req, self)
        finally:
            self._task = None
            self._finish_cycle(req)

    def _finish_cycle(self, req: Request) -> None:
        self.in_flight = False
        self.request = None
        self.extra_headers = []
        req.body = b""
        self._release()
        if self.closed:
            return
        if (
            not self._response_done
            or not req.keep_alive
            or self._tracker.draining
            or self._half_closed
        ):
            self.close()
            self._tracker.check_idle()
            return
        trailing = bytes(self._conn.trailing_data[0])
        self._conn = self._new_parser()
        if self._drain_waiter is not None:
            # the last answer is still unread: serve no pipelined request until it is, so a
            # client that sends and never reads cannot pile answers up in memory
            self._held = trailing
            self._pause()
            return
        self._next_cycle(trailing)

    def _next_cycle(self, trailing: bytes) -> None:
        # a new request cycle: an error answered from its head must be written (it was
        # skipped as "already started" on a reused connection)
        self.started = False
        self._response_done = False
        if self._paused_reading:
            self._paused_reading = False
            assert self.transport is not None
            self.transport.resume_reading()
        self._arm(self._settings.keepalive_timeout_s, self._on_idle_timeout)
        if trailing:
            self._head_timer = True
            self._arm(self._settings.header_timeout_s, self._on_head_timeout)
            try:
                self._conn.receive_data(trailing)
            except h11.RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            self._process()

    # -- writing responses (used by handlers)

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], framing: bytes) -> bytes:
        req = self.request
        closing = req is None or not req.keep_alive or self._tracker.draining
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
        for name, value in headers:
            if b"\n" in value or b"\r" in value:
                continue  # never let an outside value split the response
            parts += (name, b": ", value, b"\r\n")
        for name, value in self.extra_headers:
            parts += (name, b": ", value, b"\r\n")
        if req is not None:
            parts += (b"x-request-id: ", req.request_id.encode(), b"\r\n")
        if closing and b"connection" not in {n for n, _ in self.extra_headers}:
            parts.append(b"connection: close\r\n")
        parts += (framing, b"\r\n")
        return b"".join(parts)

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole response with Content-Length."""
        if self.closed or self.started:
            return
        self.started = True
        self._response_done = True
        self._write(self._head(status, headers, b"content-length: %d\r\n" % len(body)) + body)

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Begin a streamed response; then ``send`` and ``end``."""
        self.started = True
        req = self.request
        # HTTP/1.0 has no chunked encoding: the stream ends with the connection
        self._chunked = req is not None and req.keep_alive
        if req is not None and not self._chunked:
            req.keep_alive = False
        framing = b"transfer-encoding: chunked\r\n" if self._chunked else b""
        self._write(self._head(status, headers, framing))

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("client disconnected")
        if data:
            self._write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
        if self._drain_waiter is not None:
            await self._drain_waiter

    def end(self) -> None:
        if self._chunked:
            self._write(b"0\r\n\r\n")
        self._response_done = True

    def abort_stream(self) -> None:
        """End a streamed response without its terminating chunk: the client sees a truncated body."""
        self.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
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
        self._body_parts = []
        if self._waiting:
            self._waiting = False
            self._tracker.bodies.cancel(self)
        if not self.in_flight:
            self._release()
        if not self.in_flight and not self.started:
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
        if exc.error_status_hint == 431:
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

    def _on_budget_timeout(self) -> None:
        self._timer = None
        if self._waiting:
            self._fail(_budget_spent())

    def _on_body_timeout(self) -> None:
        self._timer = None
        if not self.in_flight:
            self._fail(
                RequestTimeout(
                    f"request body not received within {self._settings.body_timeout_s:g} s"
                )
            )


def _budget_spent() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the gateway is buffering as many request bodies as it may; retry shortly",
        headers=[(b"retry-after", b"1")],
    )
