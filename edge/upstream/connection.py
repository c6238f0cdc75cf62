"""One HTTP/1.1 connection to a provider: an asyncio protocol and a response decoder.

The protocol moves bytes and keeps a small buffer of body chunks. Requests
are serialised here (the gateway builds every header itself, so there is
nothing to parse on the way out); responses are decoded by
``hotpath.http.ResponseDecoder`` (compiled; its pure twin runs on h11).
Invariants:

- Reading pauses while more than ``HIGH_WATER`` bytes wait for the consumer
  (a slow client slows the provider's socket, not our memory) and resumes
  below ``LOW_WATER``.
- A connection goes back to the pool only when the response was complete
  and keep-alive; anything else closes it. So a response abandoned half-read
  (a cancelled hedge, a client that left) never poisons the pool.
- No read waits forever: an idle deadline (no byte for ``idle_timeout`` s)
  fails the pending read with ``UpstreamTimeout``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from edge.errors import UpstreamError, UpstreamTimeout
from hotpath.http import HTTPDecodeError, ResponseDecoder

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class UpstreamClosed(UpstreamError):
    """The provider closed or reset the connection mid-exchange."""


@dataclass(slots=True)
class ResponseHead:
    status_code: int
    headers: list[tuple[bytes, bytes]]


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_buffered",
        "_chunks",
        "_deadline",
        "_default_idle",
        "_done",
        "_error",
        "_head",
        "_idle_timeout",
        "_loop",
        "_read_paused",
        "_timer",
        "_waiter",
        "_write_waiter",
        "answered",
        "closed",
        "decoder",
        "idle_since",
        "key",
        "reused",
        "transport",
    )

    def __init__(self, key: tuple[str, str, int], idle_timeout: float) -> None:
        self.key = key
        self.decoder: ResponseDecoder | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False  # it served an exchange before this one
        self.answered = False  # a byte of this exchange's response arrived
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._idle_timeout = idle_timeout
        self._default_idle = idle_timeout
        self._head: asyncio.Future[ResponseHead] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        d = self.decoder
        if d is None or self._done:
            self._fail(UpstreamError("provider sent bytes outside of a response"))
            self.close()
            return
        self.answered = True
        self._deadline = self._loop.time() + self._idle_timeout
        try:
            d.feed(data)
        except HTTPDecodeError as exc:
            self._fail(UpstreamError(f"provider sent an invalid HTTP response: {exc}"))
            self.close()
            return
        self._advance(d)

    def eof_received(self) -> bool | None:
        d = self.decoder
        if d is not None and not self._done:
            try:
                d.feed_eof()
            except HTTPDecodeError:
                self._fail(
                    UpstreamClosed(
                        "provider closed the connection before the response was complete"
                    )
                )
                return None
            self._advance(d)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if not self._done:
            reason = "reset" if isinstance(exc, ConnectionResetError) else "closed"
            self._fail(
                UpstreamClosed(f"provider {reason} the connection before the response was complete")
            )
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_waiter = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)
        self._write_waiter = None

    # -- the decoded response

    def _advance(self, d: ResponseDecoder) -> None:
        head = self._head
        if head is not None and not head.done() and d.head_done:
            head.set_result(ResponseHead(d.status, d.headers))
        body = d.take_body()
        if body:
            self._chunks.append(body)
            self._buffered += len(body)
            if self._buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
                self._read_paused = True
                self.transport.pause_reading()
        if d.complete:
            self._done = True
            self._cancel_timer()
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved: nobody may be awaiting it any more
        self._wake()

    # -- deadlines: one lazy timer, pushed forward by arriving bytes

    def _arm(self) -> None:
        self._deadline = self._loop.time() + self._idle_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self._done or self.closed:
            return
        if self._loop.time() >= self._deadline:
            self._fail(UpstreamTimeout(f"provider sent nothing for {self._idle_timeout:g} s"))
            self.close()
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_idle)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the exchange, driven by the pool's Exchange

    def send(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        idle_timeout: float | None = None,
    ) -> None:
        """Write the whole request at once; the response head is awaited with ``head()``.

        ``idle_timeout`` replaces the connection's idle deadline for this exchange."""
        assert self.transport is not None
        self._idle_timeout = self._default_idle if idle_timeout is None else idle_timeout
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if b"\n" in value or b"\r" in value:
                raise UpstreamError(
                    f"refusing to send header {name.decode('latin-1')} with a line break"
                )
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        self.decoder = ResponseDecoder(method)
        self._head = self._loop.create_future()
        self._arm()
        self.transport.write(b"".join(parts))

    async def head(self) -> ResponseHead:
        assert self._head is not None
        if self._error is not None and not self._head.done():
            raise self._error
        return await self._head

    async def read(self) -> bytes:
        """The next body chunk; ``b""`` once the response is complete."""
        while not self._chunks:
            if self._done:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._read_paused and self._buffered < LOW_WATER and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        d = self.decoder
        return (
            not self.closed
            and self._error is None
            and self._done
            and d is not None
            and d.keep_alive
        )

    def recycle(self) -> None:
        """Reset for the next exchange on the same connection."""
        self.decoder = None
        self._head = None
        self._done = False
        self._chunks.clear()
        self._buffered = 0
        self.reused = True
        self.answered = False

    def close(self) -> None:
        """Tear the connection down at once; unsent and unread bytes are dropped."""
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
