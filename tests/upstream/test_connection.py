"""The upstream protocol without a network: flow control, reuse rules, idle deadline."""

from __future__ import annotations

import asyncio

import pytest

from edge.errors import UpstreamTimeout
from edge.upstream.connection import HIGH_WATER, UpstreamClosed, UpstreamConnection


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.paused = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def is_reading_paused(self) -> bool:
        return self.paused

    def is_closing(self) -> bool:
        return self.aborted


HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def connect(idle: float = 5.0) -> tuple[UpstreamConnection, FakeTransport]:
    conn = UpstreamConnection(("http", "x", 80), idle)
    t = FakeTransport()
    conn.connection_made(t)
    conn.send(b"POST", b"/v1/messages", [(b"host", b"x"), (b"content-length", b"2")], b"{}")
    return conn, t


def test_reading_pauses_above_high_water_and_resumes() -> None:
    async def run() -> None:
        conn, t = connect()
        assert t.written.startswith(b"POST /v1/messages HTTP/1.1\r\n")
        conn.data_received(HEAD)
        head = await conn.head()
        assert head.status_code == 200
        piece = b"x" * 65536
        for _ in range(HIGH_WATER // len(piece) + 2):
            conn.data_received(chunk(piece))
        assert t.paused
        reads = 0
        while t.is_reading_paused():
            assert await conn.read() == piece
            reads += 1
        assert reads >= 1
        conn.data_received(b"0\r\n\r\n")
        while await conn.read():
            pass
        assert conn.reusable()

    asyncio.run(run())


def test_abandoned_or_closed_connections_are_not_reusable() -> None:
    async def run() -> None:
        conn, _ = connect()
        conn.data_received(HEAD + chunk(b"part"))
        await conn.head()
        assert await conn.read() == b"part"
        assert not conn.reusable()  # response not finished
        conn.connection_lost(ConnectionResetError())
        with pytest.raises(UpstreamClosed, match="reset"):
            await conn.read()

    asyncio.run(run())


def test_idle_deadline_fails_the_read() -> None:
    async def run() -> None:
        conn, t = connect(idle=0.05)
        conn.data_received(HEAD)
        await conn.head()
        with pytest.raises(UpstreamTimeout):
            await conn.read()
        assert t.aborted

    asyncio.run(run())
