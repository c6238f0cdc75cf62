"""One HTTP/1.1 connection to a provider: an asyncio protocol around h11.

The protocol moves bytes and keeps a small buffer of body chunks; the
request/response logic is h11's. Invariants:

- Reading pauses while more than ``HIGH_WATER`` bytes wait for the consumer
  (a slow client slows the provider's socket, not our memory) and resumes
  below ``LOW_WATER``.
- A connection goes back to the pool only when both sides finished the
  exchange cleanly (h11 says DONE/DONE); anything else closes it. So a
  response abandoned half-read (a cancelled hedge, a client that left) never
  poisons the pool.
- No read waits forever: an idle deadline (no byte for ``idle_timeout`` s)
  fails the pending read with ``UpstreamTimeout``.
"""

from __future__ import annotations

import asyncio
from collections import deque

import h11

from edge.errors import UpstreamError, UpstreamTimeout

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class UpstreamClosed(UpstreamError):
    """The provider closed or reset the connection mid-exchange."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_buffered",
        "_chunks",
        "_deadline",
        "_done",
        "_error",
        "_head",
        "_idle_timeout",
        "_loop",
        "_read_paused",
        "_timer",
        "_waiter",
        "_write_waiter",
        "closed",
        "h11",
        "idle_since",
        "key",
        "reused",
        "transport",
    )

    def __init__(self, key: tuple[str, str, int], idle_timeout: float) -> None:
        self.key = key
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._idle_timeout = idle_timeout
        self._head: asyncio.Future[h11.Response] | None = None
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
        self._deadline = self._loop.time() + self._idle_timeout
        try:
            self.h11.receive_data(data)
            self._pump()
        except h11.RemoteProtocolError as exc:
            self._fail(UpstreamError(f"provider sent invalid HTTP: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        try:
            self.h11.receive_data(b"")
            self._pump()
        except h11.RemoteProtocolError:
            self._fail(
                UpstreamClosed("provider closed the connection before the response was complete")
            )
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

    # -- events from h11

    def _pump(self) -> None:
        conn = self.h11
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                break
            if isinstance(ev, h11.Data):
                chunk = bytes(ev.data)
                self._chunks.append(chunk)
                self._buffered += len(chunk)
            elif isinstance(ev, h11.Response):
                if self._head is not None and not self._head.done():
                    self._head.set_result(ev)
            elif isinstance(ev, h11.EndOfMessage):
                self._done = True
                self._cancel_timer()
                break
            elif isinstance(ev, h11.ConnectionClosed):
                if not self._done:
                    self._fail(
                        UpstreamClosed(
                            "provider closed the connection before the response was complete"
                        )
                    )
                break
        if self._buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
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

    # -- deadlines

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

    # -- the exchange, used by the pool's Exchange

    def send(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Write the whole request at once; the response head is awaited with ``head()``."""
        assert self.transport is not None
        conn = self.h11
        out = conn.send(h11.Request(method=method, target=target, headers=headers))
        data = conn.send(h11.Data(data=body)) if body else b""
        end = conn.send(h11.EndOfMessage())
        self._head = self._loop.create_future()
        self._arm()
        self.transport.write(b"".join((out or b"", data or b"", end or b"")))

    async def head(self) -> h11.Response:
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
        return (
            not self.closed
            and self._error is None
            and self.h11.our_state is h11.DONE
            and self.h11.their_state is h11.DONE
        )

    def recycle(self) -> None:
        """Reset for the next exchange on the same connection."""
        self.h11.start_next_cycle()
        self._head = None
        self._done = False
        self._chunks.clear()
        self._buffered = 0
        self.reused = True

    def close(self) -> None:
        """Tear the connection down at once; unsent and unread bytes are dropped."""
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
