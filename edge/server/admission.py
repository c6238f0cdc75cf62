"""Admission per tier: who is served, who waits and who is shed when a worker is full.

Capacity is the worker's ``[admission] max_in_flight`` (shared by every tier; 0
is no worker limit) and each tier's own ``max_in_flight`` cap (0: none). A
request that finds room starts at once; one that does not waits in its tier's
queue, and each freed slot goes to the first waiting request whose tier has
room: the highest tier's oldest (``priority = true``), or the oldest of all
(``priority = false``: the tiers alike, FIFO). Nothing running is ever
stopped to make room; what a higher tier takes is a place in the queue:

- a tier's queue holds at most its ``max_queued``: an arrival past that is
  shed (``queue_full``);
- the worker's queues together hold at most ``[admission] max_queued``: an
  arrival at a full waiting room takes the place of the newest request of the
  lowest tier below its own (shed, ``preempted``), and is shed itself only
  when none is below it. So L2 is shed first, then L1, and L0 is not shed
  while a lower tier holds a place;
- a request must start by its ``start_by`` (its tier's ``max_queue_ms`` and
  its deadlines less the tier's typical service time, computed by the
  caller): one that cannot, by the wait predicted from the queue ahead of it
  and the recent service times, is shed at once (``deadline``), never after
  waiting; one whose prediction was wrong is shed when ``start_by`` passes.

``AdmissionQueue`` decides, without I/O and on an injected clock (the
tests drive it with a fake one); ``Admission`` does the waiting on asyncio
futures and one timer, and turns a shed into the caller's 429 (``Shed``).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from edge.errors import Shed


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """The worker's shared limits (policy ``[admission]``, ``EDGE_ADMISSION_<KEY>``)."""

    max_in_flight: int = 0  # requests served at once by a worker, every tier together; 0: no limit
    max_queued: int = 256  # requests waiting in a worker, every tier together
    priority: bool = True  # false: every tier alike, first come first served (no preemption)
    quota_aware: bool = True  # steer and hold on the providers' rate-limit headers


@dataclass(frozen=True, slots=True)
class TierLimits:
    """One tier's part (its policy keys ``max_in_flight``, ``max_queued``, ``max_queue_ms``)."""

    rank: int  # 0 is the highest tier (L0)
    max_in_flight: int = 0  # 0: bounded by the worker's limit alone
    max_queued: int = 64
    max_queue_s: float = 10.0


class Phase(IntEnum):
    QUEUED = 0
    ADMITTED = 1
    SHED = 2
    LEFT = 3  # withdrawn from the queue, or done after being admitted


# the only moves an entry makes; anything else is a bug in the queue
MOVES = {
    Phase.QUEUED: (Phase.ADMITTED, Phase.SHED, Phase.LEFT),
    Phase.ADMITTED: (Phase.LEFT,),
    Phase.SHED: (),
    Phase.LEFT: (),
}


class IllegalMove(RuntimeError):
    pass


class Entry:
    """One request's place: queued, admitted, shed (with a reason) or gone."""

    __slots__ = ("admitted_at", "arrived", "phase", "reason", "seq", "start_by", "tier", "waiter")

    def __init__(self, tier: str, seq: int, arrived: float, start_by: float) -> None:
        self.tier = tier
        self.seq = seq
        self.arrived = arrived
        self.start_by = start_by
        self.phase = Phase.QUEUED
        self.reason = ""
        self.admitted_at = 0.0
        self.waiter: asyncio.Future[None] | None = None

    def move(self, to: Phase) -> None:
        if to not in MOVES[self.phase]:
            raise IllegalMove(f"admission entry: {self.phase.name} -> {to.name}")
        self.phase = to

    @property
    def shed(self) -> bool:
        return self.phase is Phase.SHED

    @property
    def waited(self) -> float:
        return self.admitted_at - self.arrived


class AdmissionQueue:
    """The decisions (see the module docstring); every method takes ``now``."""

    def __init__(
        self, config: AdmissionConfig, tiers: dict[str, TierLimits], alpha: float = 0.2
    ) -> None:
        self.config = config
        self.tiers = tiers
        # whether anything is capped (read on every request; the limits are fixed per queue)
        self.limited = bool(config.max_in_flight) or any(t.max_in_flight for t in tiers.values())
        self.in_flight = dict.fromkeys(tiers, 0)
        self.queued = dict.fromkeys(tiers, 0)
        self.total_in_flight = 0
        self.total_queued = 0
        self._queues: dict[str, deque[Entry]] = {t: deque() for t in tiers}
        # tiers in the order a freed slot looks at them (priority: L0 first)
        self._order = sorted(tiers, key=lambda t: tiers[t].rank)
        self._deadlines: list[tuple[float, int, Entry]] = []
        self._seq = 0
        self._alpha = alpha
        self._service: dict[str, float] = dict.fromkeys(tiers, 0.0)  # EWMA, seconds
        self._any_service = 0.0

    # -- figures

    def service_s(self, tier: str) -> float:
        """The tier's recent time from admission to release (0 until one is known)."""
        return self._service.get(tier, 0.0)

    def _prio(self, tier: str) -> int:
        return self.tiers[tier].rank if self.config.priority else 0

    def _room(self, tier: str) -> bool:
        cap = self.tiers[tier].max_in_flight
        if cap and self.in_flight[tier] >= cap:
            return False
        worker = self.config.max_in_flight
        return not (worker and self.total_in_flight >= worker)

    def predicted_wait(self, tier: str) -> float:
        """Seconds a request of ``tier`` arriving now would wait: the requests that would be
        served before it, over the slots they share, at the recent service time."""
        svc = self._any_service
        if not svc:
            return 0.0
        cap = self.tiers[tier].max_in_flight
        worker = self.config.max_in_flight
        if cap and (not worker or cap < worker or self.in_flight[tier] >= cap):
            ahead, slots = self.queued[tier], cap  # its own cap binds: only its tier is ahead
        else:
            mine = self._prio(tier)
            ahead = sum(n for t, n in self.queued.items() if self._prio(t) <= mine)
            slots = worker or max(1, self.total_in_flight)
        return (ahead + 1) * svc / max(1, slots)

    def retry_after_s(self, tier: str) -> int:
        """What a shed request is told: about when a place may be free, 1..60 s."""
        return max(1, min(60, math.ceil(self.predicted_wait(tier))))

    # -- decisions

    def arrive(self, tier: str, start_by: float, now: float) -> tuple[Entry, list[Entry]]:
        """A request of ``tier`` that must start by ``start_by``: its entry (admitted, queued
        or shed) and the entries it took the place of (shed, ``preempted``)."""
        self._seq += 1
        entry = Entry(tier, self._seq, now, start_by)
        if self._room(tier):
            self._admit(entry, now)
            return entry, []
        if start_by <= now or now + self.predicted_wait(tier) > start_by:
            self._shed(entry, "deadline")
            return entry, []
        if self.queued[tier] >= self.tiers[tier].max_queued:
            self._shed(entry, "queue_full")
            return entry, []
        displaced: list[Entry] = []
        if self.total_queued >= self.config.max_queued:
            victim = self._victim(tier)
            if victim is None:
                self._shed(entry, "queue_full")
                return entry, []
            self._drop(victim)
            self._shed(victim, "preempted")
            displaced.append(victim)
        self._queues[tier].append(entry)
        self.queued[tier] += 1
        self.total_queued += 1
        heapq.heappush(self._deadlines, (start_by, entry.seq, entry))
        return entry, displaced

    def release(self, entry: Entry, now: float) -> list[Entry]:
        """An admitted request is done (or a queued one left): the entries admitted in its
        place."""
        if entry.phase is Phase.QUEUED:
            self._drop(entry)
            entry.move(Phase.LEFT)
            return self._pump(now)
        if entry.phase is not Phase.ADMITTED:
            return []
        entry.move(Phase.LEFT)
        self.in_flight[entry.tier] -= 1
        self.total_in_flight -= 1
        took = max(0.0, now - entry.admitted_at)
        a = self._alpha
        old = self._service[entry.tier]
        self._service[entry.tier] = took if not old else old + a * (took - old)
        self._any_service = (
            took if not self._any_service else self._any_service + a * (took - self._any_service)
        )
        return self._pump(now)

    def expire(self, now: float) -> list[Entry]:
        """Queued entries past their ``start_by``: shed (``deadline``)."""
        out = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, entry = heapq.heappop(self._deadlines)
            if entry.phase is Phase.QUEUED:
                self._drop(entry)
                self._shed(entry, "deadline")
                out.append(entry)
        return out

    def next_expiry(self) -> float | None:
        while self._deadlines and self._deadlines[0][2].phase is not Phase.QUEUED:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    # -- the moves

    def _admit(self, entry: Entry, now: float) -> None:
        entry.move(Phase.ADMITTED)
        entry.admitted_at = now
        self.in_flight[entry.tier] += 1
        self.total_in_flight += 1

    def _shed(self, entry: Entry, reason: str) -> None:
        entry.move(Phase.SHED)
        entry.reason = reason

    def _drop(self, entry: Entry) -> None:
        """Out of its queue (it stays in the deadline heap until popped: lazily)."""
        self._queues[entry.tier].remove(entry)
        self.queued[entry.tier] -= 1
        self.total_queued -= 1

    def _victim(self, tier: str) -> Entry | None:
        """The newest entry of the lowest tier strictly below ``tier``, if any."""
        if not self.config.priority:
            return None
        mine = self.tiers[tier].rank
        for t in reversed(self._order):
            if self.tiers[t].rank <= mine:
                return None
            if self._queues[t]:
                return self._queues[t][-1]
        return None

    def _pump(self, now: float) -> list[Entry]:
        """Give free slots to waiting entries, in order, while any tier with room waits."""
        admitted = []
        while self.total_queued:
            pick: Entry | None = None
            for t in self._order:
                q = self._queues[t]
                if not q or not self._room(t):
                    continue
                if self.config.priority:
                    pick = q[0]
                    break
                if pick is None or q[0].seq < pick.seq:
                    pick = q[0]
            if pick is None:
                break
            self._queues[pick.tier].popleft()
            self.queued[pick.tier] -= 1
            self.total_queued -= 1
            self._admit(pick, now)
            admitted.append(pick)
        return admitted


class AdmissionEvents(Protocol):
    def admitted(self, tier: str, waited_s: float) -> None: ...

    def shed(self, tier: str, reason: str) -> None: ...


REASONS = {
    "queue_full": "its queue is full",
    "preempted": "its place in the queue went to a request of a higher tier",
    "deadline": "it could not start in time to meet its deadline",
}


class Admission:
    """The worker's admission: ``await enter(...)`` returns an admitted entry or raises
    ``Shed`` (a 429 with ``retry-after``); ``leave`` when the request is done."""

    def __init__(
        self,
        queue: AdmissionQueue,
        events: AdmissionEvents,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.events = events
        self.clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.queue.limited

    async def enter(self, tier: str, start_by: float) -> Entry:
        q = self.queue
        now = self.clock()
        entry, displaced = q.arrive(tier, start_by, now)
        self._wake(displaced)
        if entry.phase is Phase.ADMITTED:
            self.events.admitted(tier, 0.0)
            return entry
        if entry.phase is Phase.SHED:
            raise self._refusal(entry)
        entry.waiter = asyncio.get_running_loop().create_future()
        self._arm()
        try:
            await entry.waiter
        except asyncio.CancelledError:
            # the client left while waiting, or just after a slot was handed over: pass it on
            self._wake(q.release(entry, self.clock()))
            raise
        if entry.shed:  # (read through a property: the phase changed while it waited)
            raise self._refusal(entry)
        return entry

    def leave(self, entry: Entry) -> None:
        self._wake(self.queue.release(entry, self.clock()))

    def _refusal(self, entry: Entry) -> Shed:
        self.events.shed(entry.tier, entry.reason)
        wait = self.queue.retry_after_s(entry.tier)
        return Shed(
            f"tier {entry.tier} is over capacity and this request was shed: "
            f"{REASONS.get(entry.reason, entry.reason)}; retry after {wait} s",
            code="tier_overloaded",
            headers=[(b"retry-after", b"%d" % wait)],
        )

    def _wake(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if entry.phase is Phase.ADMITTED:
                self.events.admitted(entry.tier, entry.waited)
            waiter = entry.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._arm()

    def _arm(self) -> None:
        """One timer, at the earliest ``start_by`` of the queue."""
        at = self.queue.next_expiry()
        if at is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, at - self.clock()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._wake(self.queue.expire(self.clock()))
