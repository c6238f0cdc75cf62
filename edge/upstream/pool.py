"""Keep-alive connection pool to the providers, and one request's exchange.

Per origin (scheme, host, port): idle connections are reused most recent
first, at most ``max_per_host`` exist at once, idle ones older than
``idle_s`` are dropped. TLS for https origins with the system trust store
and SNI.

Waiting for the pool (every connection of the origin busy) is the
gateway's own saturation, not the provider's failure: it ends in
``PoolSaturated`` (never a breaker verdict) after one deadline,
``connect_timeout`` from the first call, however the wait goes. Invariants
of the wait:

- A freed slot or a returned connection is handed to the oldest live
  waiter directly (``_grant``); it is never left for whoever asks next, so
  a newcomer cannot overtake a waiter and no wake-up is spent on a waiter
  that is no longer there.
- A waiter that leaves (cancelled, or at its deadline) after the hand-over
  passes what it was given on to the next waiter (or back to the pool):
  no slot is ever lost, however many waiters are cancelled around it.
- While anyone waits, ``_count`` is at ``max_per_host`` and the idle list is
  empty; a slot goes back to the count only when nobody waits.

``Exchange`` is the only way the gateway talks to a provider::

    async with pool.exchange(provider_origin, b"POST", path, headers, body) as ex:
        head = await ex.head()
        while chunk := await ex.read(): ...

A reused connection that the provider closed before any byte of the
response (the keep-alive race: it timed the connection out as we sent) is
retried once on a new connection; only the new connection's failure is the
provider's. Leaving the block returns the connection to the pool only if
the response was read to its end (and the provider allows keep-alive);
otherwise (a failure mid-response, cancellation, an abandoned stream) the
connection is closed at once. Cleanup is synchronous, so it survives
cancellation.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from types import TracebackType

from edge.errors import PoolSaturated, UpstreamError, UpstreamTimeout
from edge.upstream.connection import ResponseHead, UpstreamClosed, UpstreamConnection

Origin = tuple[str, str, int]
# what a waiter is handed: a ready connection, or None for a slot to connect on
Grant = UpstreamConnection | None


class Pool:
    def __init__(
        self,
        *,
        max_per_host: int,
        connect_timeout: float,
        read_timeout: float,
        idle_s: float,
        ca_file: str = "",
    ) -> None:
        self.max_per_host = max_per_host
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_s = idle_s
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._count: dict[Origin, int] = {}
        self._waiters: dict[Origin, deque[asyncio.Future[Grant]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._ca_file = ca_file
        self.opened = 0
        self.reused = 0
        self.discarded = 0
        self.retried = 0  # reused connections found closed before the answer: sent again
        self.saturated: dict[Origin, int] = {}  # waits that ran out, per origin

    def stats(self) -> dict[str, int]:
        return {
            "open": sum(self._count.values()),
            "idle": sum(len(v) for v in self._idle.values()),
            "waiting": sum(len(q) for q in self._waiters.values()),
            "opened_total": self.opened,
            "reused_total": self.reused,
            "discarded_total": self.discarded,
            "retried_total": self.retried,
            "saturated_total": sum(self.saturated.values()),
        }

    def exchange(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        idle_timeout: float | None = None,
    ) -> Exchange:
        return Exchange(self, origin, method, target, headers, body, idle_timeout)

    async def acquire(self, origin: Origin, *, fresh: bool = False) -> UpstreamConnection:
        """A connection to ``origin``: an idle one (unless ``fresh``), a new one in a free
        slot, or the first one freed within the deadline (else ``PoolSaturated``)."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not fresh and not conn.closed and now - conn.idle_since < self.idle_s:
                self.reused += 1
                return conn
            conn.close()  # its slot is ours: connect anew in it
            return await self._connect_in_slot(origin)
        if self._count.get(origin, 0) < self.max_per_host:
            self._count[origin] = self._count.get(origin, 0) + 1
            return await self._connect_in_slot(origin)
        # one deadline for the whole wait, however many hand-overs it takes
        grant = await self._wait(origin, asyncio.get_running_loop().time() + self.connect_timeout)
        if grant is not None:
            if not fresh and not grant.closed:
                self.reused += 1
                return grant
            grant.close()
        return await self._connect_in_slot(origin)

    async def _connect_in_slot(self, origin: Origin) -> UpstreamConnection:
        """Connect in a slot already counted as ours; a failure gives the slot back."""
        try:
            return await self._connect(origin)
        except BaseException:
            self._release_slot(origin)
            raise

    async def _wait(self, origin: Origin, deadline: float) -> Grant:
        fut: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(origin, deque())
        queue.append(fut)
        try:
            async with asyncio.timeout_at(deadline):
                return await fut
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self._pass_on(origin, fut.result())  # handed over as we left: next in line
            else:
                fut.cancel()
                if fut in queue:
                    queue.remove(fut)
            if isinstance(exc, TimeoutError):
                self.saturated[origin] = self.saturated.get(origin, 0) + 1
                raise PoolSaturated(
                    f"all {self.max_per_host} connections to {origin[1]} stayed busy for "
                    f"{self.connect_timeout:g} s"
                ) from None
            raise

    def _grant(self, origin: Origin, grant: Grant) -> bool:
        """Hand ``grant`` to the oldest live waiter; False when nobody waits."""
        queue = self._waiters.get(origin)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(grant)
                return True
        return False

    def _pass_on(self, origin: Origin, grant: Grant) -> None:
        if grant is None:
            self._release_slot(origin)
        else:
            self._keep(grant)

    def _keep(self, conn: UpstreamConnection) -> None:
        """A reusable connection: to a waiter, else to the idle list."""
        if conn.closed:
            self._drop(conn)
        elif not self._grant(conn.key, conn):
            self._idle.setdefault(conn.key, []).append(conn)

    async def _connect(self, origin: Origin) -> UpstreamConnection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ctx = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
                if self._ca_file:
                    self._ssl.load_verify_locations(self._ca_file)
            ctx = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(
                    lambda: UpstreamConnection(origin, self.read_timeout),
                    host,
                    port,
                    ssl=ctx,
                    server_hostname=host if ctx else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to {host}:{port} timed out after {self.connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamError(f"TLS with {host}:{port} failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        self.opened += 1
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it."""
        if not conn.reusable():
            self.discard(conn)
            return
        conn.recycle()
        conn.idle_since = time.monotonic()
        self._keep(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """Close a connection that must not be reused (abandoned, failed)."""
        self.discarded += 1
        self._drop(conn)

    def _drop(self, conn: UpstreamConnection) -> None:
        conn.close()
        self._release_slot(conn.key)

    def _release_slot(self, origin: Origin) -> None:
        if not self._grant(origin, None):
            self._count[origin] = max(0, self._count.get(origin, 0) - 1)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._count.clear()


class Exchange:
    """One request to a provider; see the module docstring."""

    __slots__ = (
        "_body",
        "_conn",
        "_headers",
        "_idle_timeout",
        "_method",
        "_origin",
        "_pool",
        "_retried",
        "_target",
        "complete",
    )

    def __init__(
        self,
        pool: Pool,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        idle_timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._method = method
        self._target = target
        self._headers = headers
        self._body = body
        self._idle_timeout = idle_timeout
        self._conn: UpstreamConnection | None = None
        self._retried = False
        self.complete = False

    async def open(self) -> Exchange:
        """Take a connection and send the request."""
        self._send(await self._pool.acquire(self._origin))
        return self

    def _send(self, conn: UpstreamConnection) -> UpstreamConnection:
        self._conn = conn
        try:
            conn.send(self._method, self._target, self._headers, self._body, self._idle_timeout)
        except BaseException:
            self.close()
            raise
        return conn

    def close(self) -> None:
        """Back to the pool if the response was read to its end (an error answer too), else closed."""
        conn = self._conn
        self._conn = None
        if conn is None:
            return
        if self.complete:
            self._pool.release(conn)
        else:
            self._pool.discard(conn)

    async def __aenter__(self) -> Exchange:
        return await self.open()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def head(self) -> ResponseHead:
        conn = self._conn
        if conn is None:
            raise UpstreamError("the exchange is closed")
        try:
            return await conn.head()
        except UpstreamClosed:
            if self._retried or not conn.reused or conn.answered:
                raise
        # a kept-alive connection the provider had closed before answering (it timed it out
        # as we sent): no verdict on the provider; once more, on a new connection
        self._retried = True
        self._pool.retried += 1
        self._conn = None
        self._pool.discard(conn)
        return await self._send(await self._pool.acquire(self._origin, fresh=True)).head()

    async def read(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise UpstreamError("the exchange is closed")
        chunk = await conn.read()
        if not chunk:
            self.complete = True
        return chunk

    async def read_all(self, limit: int = 8 * 1024 * 1024) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                raise UpstreamError("provider response too large")
            parts.append(chunk)
        return b"".join(parts)
