"""Keep-alive connection pool to the providers, and one request's exchange.

Per origin (scheme, host, port): idle connections are reused most recent
first, at most ``max_per_host`` exist at once (a request beyond it waits for
one, bounded by the connect timeout), idle ones older than ``idle_s`` are
dropped. TLS for https origins with the system trust store and SNI.

``Exchange`` is the only way the gateway talks to a provider::

    async with pool.exchange(provider_origin, b"POST", path, headers, body) as ex:
        head = await ex.head()
        while chunk := await ex.read(): ...

Leaving the block returns the connection to the pool only if the response
was read to its end (and the provider allows keep-alive); otherwise (a
failure mid-response, cancellation, an abandoned stream) the connection is
closed at once. Cleanup is synchronous, so it survives
cancellation.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from types import TracebackType

from edge.errors import UpstreamError, UpstreamTimeout
from edge.upstream.connection import ResponseHead, UpstreamConnection

Origin = tuple[str, str, int]


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
        self._waiters: dict[Origin, deque[asyncio.Future[None]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._ca_file = ca_file
        self.opened = 0
        self.reused = 0
        self.discarded = 0

    def stats(self) -> dict[str, int]:
        return {
            "open": sum(self._count.values()),
            "idle": sum(len(v) for v in self._idle.values()),
            "opened_total": self.opened,
            "reused_total": self.reused,
            "discarded_total": self.discarded,
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

    async def acquire(self, origin: Origin) -> UpstreamConnection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_s:
                self.reused += 1
                return conn
            self._drop(conn)
        if self._count.get(origin, 0) >= self.max_per_host:
            await self._wait_for_slot(origin)
            return await self.acquire(origin)
        self._count[origin] = self._count.get(origin, 0) + 1
        try:
            return await self._connect(origin)
        except BaseException:
            self._release_slot(origin)
            raise

    async def _wait_for_slot(self, origin: Origin) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(origin, deque())
        queue.append(fut)
        try:
            await asyncio.wait_for(fut, self.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(
                f"no connection to {origin[1]} free within {self.connect_timeout:g} s"
            ) from None
        finally:
            if fut in queue:
                queue.remove(fut)

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
        self._idle.setdefault(conn.key, []).append(conn)
        self._notify(conn.key)

    def discard(self, conn: UpstreamConnection) -> None:
        """Close a connection that must not be reused (abandoned, failed)."""
        self.discarded += 1
        conn.close()
        self._release_slot(conn.key)

    def _drop(self, conn: UpstreamConnection) -> None:
        conn.close()
        self._release_slot(conn.key)

    def _release_slot(self, origin: Origin) -> None:
        self._count[origin] = max(0, self._count.get(origin, 0) - 1)
        self._notify(origin)

    def _notify(self, origin: Origin) -> None:
        queue = self._waiters.get(origin)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return

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
        self.complete = False

    async def open(self) -> Exchange:
        """Take a connection and send the request."""
        self._conn = await self._pool.acquire(self._origin)
        try:
            self._conn.send(
                self._method, self._target, self._headers, self._body, self._idle_timeout
            )
        except BaseException:
            self.close()
            raise
        return self

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
        if self._conn is None:
            raise UpstreamError("the exchange is closed")
        return await self._conn.head()

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
