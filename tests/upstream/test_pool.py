"""The pool without a network: hand-over to live waiters, one deadline, saturation, and the
one retry of a reused connection the provider closed before answering.

Connections are real ``UpstreamConnection`` protocols on fake transports; a
transport answers each request from a script, so nothing here sleeps to let
something happen.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from edge.errors import PoolSaturated
from edge.upstream.connection import UpstreamClosed, UpstreamConnection
from edge.upstream.pool import Origin, Pool

ORIGIN: Origin = ("http", "provider", 80)
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
# what a connection does when a request is written on it: answer, or close without a byte
Script = Callable[[UpstreamConnection, int], None]


def answer(conn: UpstreamConnection, n: int) -> None:
    conn.data_received(OK)


class Transport(asyncio.Transport):
    def __init__(self, conn: UpstreamConnection, pool: FakePool) -> None:
        super().__init__()
        self.conn = conn
        self.pool = pool
        self.requests = 0
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.requests += 1
        n = self.requests
        asyncio.get_running_loop().call_soon(self.pool.script, self.conn, n)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    close = abort

    def is_closing(self) -> bool:
        return self.aborted


class FakePool(Pool):
    """A pool whose connections are made in memory, each answering by ``script``."""

    def __init__(self, max_per_host: int, connect_timeout: float = 5.0) -> None:
        super().__init__(
            max_per_host=max_per_host, connect_timeout=connect_timeout, read_timeout=5.0, idle_s=60
        )
        self.script: Script = answer
        self.made: list[UpstreamConnection] = []

    async def _connect(self, origin: Origin) -> UpstreamConnection:
        conn = UpstreamConnection(origin, 5.0)
        conn.connection_made(Transport(conn, self))
        self.made.append(conn)
        self.opened += 1
        return conn


async def finish(conn: UpstreamConnection) -> None:
    """One complete exchange on ``conn``: afterwards it may go back to the pool."""
    conn.send(b"POST", b"/", [(b"content-length", b"0")], b"")
    assert (await conn.head()).status_code == 200
    while await conn.read():
        pass
    assert conn.reusable()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def held_slots(pool: Pool) -> int:
    """Slots counted as taken, less the idle ones: what callers hold (or are connecting)."""
    return pool._count.get(ORIGIN, 0) - len(pool._idle.get(ORIGIN, []))


def test_a_slot_freed_for_a_cancelled_waiter_goes_to_the_next_one() -> None:
    async def main() -> None:
        pool = FakePool(max_per_host=1, connect_timeout=1.0)
        holder = await pool.acquire(ORIGIN)
        first = asyncio.create_task(pool.acquire(ORIGIN))
        second = asyncio.create_task(pool.acquire(ORIGIN))
        await settle()
        pool.discard(holder)  # the slot is handed to ``first``...
        first.cancel()  # ...which leaves before it runs: it must pass the slot on
        async with asyncio.timeout(0.5):  # well inside the deadline: no wake-up was lost
            conn = await second
        assert conn is pool.made[-1] and not conn.closed
        assert first.cancelled()
        assert pool._count[ORIGIN] == 1 and not pool._waiters[ORIGIN]

    asyncio.run(main())


def test_a_returned_connection_goes_to_the_waiter_not_to_a_newcomer() -> None:
    async def main() -> None:
        pool = FakePool(max_per_host=1)
        holder = await pool.acquire(ORIGIN)
        await finish(holder)
        waiter = asyncio.create_task(pool.acquire(ORIGIN))
        await settle()
        pool.release(holder)
        newcomer = asyncio.create_task(pool.acquire(ORIGIN))  # asks before the waiter runs
        assert await waiter is holder  # the waiter's, once, with no second wait
        await settle()
        assert not newcomer.done()  # the newcomer waits its turn
        pool.discard(holder)
        assert await newcomer is pool.made[-1]
        assert pool.opened == 2 and pool.reused == 1

    asyncio.run(main())


def test_waiting_for_the_pool_is_saturation_within_one_deadline() -> None:
    async def main() -> None:
        pool = FakePool(max_per_host=1, connect_timeout=0.05)
        await pool.acquire(ORIGIN)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(PoolSaturated):
            await pool.acquire(ORIGIN)
        assert 0.05 <= loop.time() - start < 0.5
        assert pool.saturated == {ORIGIN: 1} and pool.stats()["saturated_total"] == 1
        assert not pool._waiters[ORIGIN] and pool._count[ORIGIN] == 1

    asyncio.run(main())


@pytest.mark.parametrize("seed", range(8))
def test_cancellation_storm_loses_no_slot_and_every_live_waiter_is_served(seed: int) -> None:
    """Many waiters, random cancellations (some right after a slot was handed to them), random
    returns and discards: no slot is lost, the limit holds, every waiter left standing gets a
    connection long before the deadline."""

    async def main() -> None:
        rng = random.Random(seed)
        limit, waiters = 4, 120
        pool = FakePool(max_per_host=limit, connect_timeout=2.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        held: list[UpstreamConnection] = [await pool.acquire(ORIGIN) for _ in range(limit)]
        tasks = [asyncio.create_task(pool.acquire(ORIGIN)) for _ in range(waiters)]
        await settle()
        cancelled: set[asyncio.Task[UpstreamConnection]] = set()
        collected: set[asyncio.Task[UpstreamConnection]] = set()

        def pending() -> list[asyncio.Task[UpstreamConnection]]:
            return [t for t in tasks if not t.done() and t not in cancelled]

        while pending() or held:
            roll = rng.random()
            if held and (roll < 0.6 or not pending()):
                conn = held.pop(rng.randrange(len(held)))
                if rng.random() < 0.5 and not conn.closed:
                    await finish(conn)
                    pool.release(conn)
                else:
                    pool.discard(conn)
                if rng.random() < 0.5 and pending():
                    # the oldest waiter was just handed it: cancel that one before it runs
                    victim = pending()[0]
                    victim.cancel()
                    cancelled.add(victim)
            elif pending():
                victim = rng.choice(pending())
                victim.cancel()
                cancelled.add(victim)
            await settle()
            for t in tasks:
                if t.done() and t not in collected and not t.cancelled():
                    collected.add(t)
                    held.append(t.result())  # any exception (saturation) fails the test here
            assert pool._count[ORIGIN] <= limit
            assert held_slots(pool) == len(held)  # every taken slot is held by a live caller
            if pending():  # nobody waits beside a free slot or an idle connection
                assert pool._count[ORIGIN] == limit and not pool._idle.get(ORIGIN)
                assert len(held) == limit
        assert loop.time() - start < pool.connect_timeout
        assert all(t.done() for t in tasks)
        # a cancelled waiter ends cancelled, even when a connection was handed to it first (it
        # passed it on): a caller that has gone must not go on with a connection
        assert all(t.cancelled() for t in cancelled) and not collected & cancelled
        assert len(collected) + len(cancelled) == waiters
        assert pool._count[ORIGIN] == len(pool._idle.get(ORIGIN, []))
        assert not pool._waiters[ORIGIN]

    asyncio.run(main())


def test_a_reused_connection_closed_before_answering_is_sent_again_on_a_new_one() -> None:
    async def main() -> None:
        pool = FakePool(max_per_host=2)
        first = await pool.acquire(ORIGIN)
        await finish(first)
        pool.release(first)

        def closes_reused(conn: UpstreamConnection, n: int) -> None:
            if conn is first:
                conn.connection_lost(ConnectionResetError())  # the keep-alive race
            else:
                conn.data_received(OK)

        pool.script = closes_reused
        ex = await pool.exchange(ORIGIN, b"POST", b"/", [(b"content-length", b"0")], b"").open()
        head = await ex.head()
        assert head.status_code == 200 and await ex.read_all() == b"ok"
        ex.close()
        assert pool.retried == 1 and pool.opened == 2 and pool.reused == 1
        assert pool._count[ORIGIN] == 1 and pool._idle[ORIGIN] == [pool.made[1]]

    asyncio.run(main())


@pytest.mark.parametrize("case", ["new_connection", "after_a_byte", "second_failure"])
def test_no_retry_when_the_failure_is_the_providers(case: str) -> None:
    """Only a reused connection that failed before any byte is sent again, and only once."""

    async def main() -> None:
        pool = FakePool(max_per_host=2)
        if case != "new_connection":
            conn = await pool.acquire(ORIGIN)
            await finish(conn)
            pool.release(conn)

        def fails(conn: UpstreamConnection, n: int) -> None:
            if case == "after_a_byte":
                conn.data_received(b"HTTP/1.1 2")
            conn.connection_lost(None)

        pool.script = fails
        ex = await pool.exchange(ORIGIN, b"POST", b"/", [(b"content-length", b"0")], b"").open()
        with pytest.raises(UpstreamClosed):
            await ex.head()
        ex.close()
        assert pool.retried == (1 if case == "second_failure" else 0)
        assert pool._count.get(ORIGIN, 0) == 0

    asyncio.run(main())
