"""Admission per tier: order, shedding and deadlines on a fake clock; the async waiting on
real futures (no sleeps: every step waits on an observable condition)."""

from __future__ import annotations

import asyncio

import pytest

from edge.errors import Shed
from edge.server.admission import (
    Admission,
    AdmissionConfig,
    AdmissionQueue,
    Entry,
    IllegalMove,
    Phase,
    TierLimits,
)

FAR = 1e9  # a start-by no test reaches


def make(
    max_in_flight: int = 2,
    max_queued: int = 10,
    priority: bool = True,
    **tiers: TierLimits,
) -> AdmissionQueue:
    limits = {
        "L0": TierLimits(rank=0),
        "L1": TierLimits(rank=1),
        "L2": TierLimits(rank=2),
    }
    limits.update(tiers)
    return AdmissionQueue(AdmissionConfig(max_in_flight, max_queued, priority), limits)


def arrive(q: AdmissionQueue, tier: str, now: float = 0.0, start_by: float = FAR) -> Entry:
    entry, displaced = q.arrive(tier, start_by, now)
    assert not displaced
    return entry


def test_room_admits_at_once_and_a_full_worker_queues() -> None:
    q = make()
    a, b = arrive(q, "L2"), arrive(q, "L2")
    assert a.phase is Phase.ADMITTED and b.phase is Phase.ADMITTED
    c = arrive(q, "L0")
    assert c.phase is Phase.QUEUED
    assert q.in_flight == {"L0": 0, "L1": 0, "L2": 2} and q.queued["L0"] == 1


def test_a_freed_slot_goes_to_the_highest_tier_first_whatever_the_arrival_order() -> None:
    q = make()
    running = [arrive(q, "L2"), arrive(q, "L2")]
    waiting = [arrive(q, "L2", 1.0), arrive(q, "L1", 2.0), arrive(q, "L0", 3.0)]
    order = []
    for r in running:
        order += [e.tier for e in q.release(r, 4.0)]
    done = q.release(q_first_admitted(waiting), 5.0)
    order += [e.tier for e in done]
    assert order == ["L0", "L1", "L2"]
    assert waiting[2].waited == 1.0  # L0 arrived at 3, admitted at 4


def q_first_admitted(entries: list[Entry]) -> Entry:
    return next(e for e in entries if e.phase is Phase.ADMITTED)


def test_fifo_serves_in_arrival_order_and_preempts_nobody() -> None:
    q = make(max_queued=2, priority=False)
    running = [arrive(q, "L0"), arrive(q, "L0")]
    first, second = arrive(q, "L2", 1.0), arrive(q, "L1", 2.0)
    late, displaced = q.arrive("L0", FAR, 3.0)
    assert late.phase is Phase.SHED and late.reason == "queue_full" and not displaced
    assert [e.tier for e in q.release(running[0], 4.0)] == ["L2"]
    assert first.phase is Phase.ADMITTED and second.phase is Phase.QUEUED


def test_a_full_waiting_room_sheds_l2_first_then_l1_and_l0_last() -> None:
    q = make(max_queued=2)
    arrive(q, "L0"), arrive(q, "L0")
    l2a, l2b = arrive(q, "L2", 1.0), arrive(q, "L2", 2.0)
    l1, shed = q.arrive("L1", FAR, 3.0)
    assert l1.phase is Phase.QUEUED and shed == [l2b]  # the newest L2 goes first
    assert l2b.reason == "preempted"
    l0a, shed = q.arrive("L0", FAR, 4.0)
    assert shed == [l2a]
    l0b, shed = q.arrive("L0", FAR, 5.0)
    assert shed == [l1]  # no L2 left: the L1 makes way
    l0c, shed = q.arrive("L0", FAR, 6.0)
    assert not shed and l0c.phase is Phase.SHED and l0c.reason == "queue_full"
    l2c, shed = q.arrive("L2", FAR, 7.0)  # a lower tier never displaces a higher one
    assert not shed and l2c.reason == "queue_full"
    assert l0a.phase is Phase.QUEUED and l0b.phase is Phase.QUEUED


def test_a_tier_cap_binds_that_tier_only() -> None:
    q = make(max_in_flight=3, L2=TierLimits(rank=2, max_in_flight=1, max_queued=1))
    assert arrive(q, "L2").phase is Phase.ADMITTED
    waiting = arrive(q, "L2")
    assert waiting.phase is Phase.QUEUED
    over, _ = q.arrive("L2", FAR, 0.0)
    assert over.phase is Phase.SHED and over.reason == "queue_full"  # its own queue is full
    assert arrive(q, "L1").phase is Phase.ADMITTED  # the worker has room for other tiers
    assert arrive(q, "L0").phase is Phase.ADMITTED


def test_a_request_that_cannot_start_in_time_is_shed_at_once() -> None:
    q = make(max_in_flight=1)
    # teach it a service time of 1 s
    first = arrive(q, "L1", 0.0)
    q.release(first, 1.0)
    assert q.service_s("L1") == 1.0
    arrive(q, "L1", 1.0)
    queued = arrive(q, "L1", 1.0, start_by=10.0)
    assert queued.phase is Phase.QUEUED
    # two ahead of it (one running, one queued): ~2 s of waiting, and it must start within 1.5
    late, _ = q.arrive("L1", 2.5, 1.0)
    assert late.phase is Phase.SHED and late.reason == "deadline"
    gone, _ = q.arrive("L1", 0.5, 1.0)  # its deadline already passed
    assert gone.reason == "deadline"
    assert q.queued["L1"] == 1
    assert q.retry_after_s("L1") == 2


def test_a_queued_request_past_its_start_by_is_shed_when_it_passes() -> None:
    q = make(max_in_flight=1)
    arrive(q, "L0", 0.0)
    waiting = arrive(q, "L1", 0.0, start_by=3.0)
    assert q.next_expiry() == 3.0
    assert q.expire(2.9) == []
    assert q.expire(3.0) == [waiting]
    assert waiting.reason == "deadline" and q.queued["L1"] == 0
    assert q.next_expiry() is None


def test_a_queued_request_that_leaves_frees_its_place() -> None:
    q = make(max_in_flight=1)
    running = arrive(q, "L0")
    waiting = arrive(q, "L1")
    assert q.release(waiting, 1.0) == []
    assert waiting.phase is Phase.LEFT and q.total_queued == 0
    assert q.release(running, 2.0) == []
    with pytest.raises(IllegalMove):
        waiting.move(Phase.ADMITTED)


class Spy(AdmissionQueue):
    """Sets ``parked`` once ``want`` requests wait: the tests' observable condition."""

    def __init__(self, base: AdmissionQueue, want: int) -> None:
        super().__init__(base.config, base.tiers)
        self.want = want
        self.parked = asyncio.Event()

    def arrive(self, tier: str, start_by: float, now: float) -> tuple[Entry, list[Entry]]:
        out = super().arrive(tier, start_by, now)
        if self.total_queued >= self.want:
            self.parked.set()
        return out


class Events:
    def __init__(self) -> None:
        self.waits: list[tuple[str, float]] = []
        self.sheds: list[tuple[str, str]] = []

    def admitted(self, tier: str, waited_s: float) -> None:
        self.waits.append((tier, waited_s))

    def shed(self, tier: str, reason: str) -> None:
        self.sheds.append((tier, reason))


def test_waiting_requests_are_woken_in_priority_order_and_a_preempted_one_gets_a_429() -> None:
    async def scenario() -> None:
        events = Events()
        spy = Spy(make(max_in_flight=1, max_queued=2), want=2)
        adm = Admission(spy, events)
        running = await adm.enter("L2", FAR)
        order: list[str] = []

        async def one(tier: str) -> None:
            entry = await adm.enter(tier, FAR)
            order.append(tier)
            adm.leave(entry)

        tasks = [asyncio.create_task(one("L2")), asyncio.create_task(one("L1"))]
        await spy.parked.wait()
        l0 = asyncio.create_task(one("L0"))  # takes the L2's place
        with pytest.raises(Shed) as shed:
            await tasks[0]
        assert shed.value.status == 429
        assert (b"retry-after", b"1") in shed.value.headers
        adm.leave(running)
        await asyncio.gather(tasks[1], l0)
        assert order == ["L0", "L1"]
        assert events.sheds == [("L2", "preempted")]
        assert adm.queue.total_in_flight == 0

    asyncio.run(scenario())


def test_a_waiter_cancelled_after_the_hand_over_passes_the_slot_on() -> None:
    async def scenario() -> None:
        spy = Spy(make(max_in_flight=1), want=2)
        adm = Admission(spy, Events())
        running = await adm.enter("L1", FAR)
        first = asyncio.create_task(adm.enter("L0", FAR))
        second = asyncio.create_task(adm.enter("L1", FAR))
        await spy.parked.wait()
        adm.leave(running)  # the slot is handed to the L0 waiter...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        entry = await second
        assert entry.phase is Phase.ADMITTED and adm.queue.total_in_flight == 1
        adm.leave(entry)
        assert adm.queue.total_in_flight == 0

    asyncio.run(scenario())
