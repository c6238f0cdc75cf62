"""Failed authentication, slowed per peer address: a decision table, no I/O.

The first ``free`` failures of a peer within ``window_s`` are answered at
once; each further one waits ``BASE_DELAY_S`` doubled per failure, capped at
``max_delay_s``. The caller sleeps on that connection alone (the worker
serves everyone else meanwhile). A success does not reset a peer: a client
with one valid gateway key must not be able to wipe its record while it
guesses the admin key. The table holds at most ``capacity`` peers, the least
recently failed forgotten first, so a spray of addresses costs bounded memory
(and a forgotten peer only starts its free failures again).

The peer is the TCP peer: behind a proxy every client shares the proxy's
address, and the proxy should do its own limiting.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

BASE_DELAY_S = 0.25


class AuthThrottle:
    __slots__ = ("_clock", "_peers", "capacity", "free", "max_delay_s", "window_s")

    def __init__(
        self,
        free: int,
        window_s: float,
        max_delay_s: float,
        capacity: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.window_s = window_s
        self.max_delay_s = max_delay_s
        self.capacity = capacity
        self._clock = clock
        # peer -> [start of its window, failures in it]
        self._peers: OrderedDict[str, list[float]] = OrderedDict()

    def failed(self, peer: str) -> float:
        """Record a failed authentication from ``peer``; the delay its answer gets (s)."""
        now = self._clock()
        entry = self._peers.get(peer)
        if entry is None or now - entry[0] > self.window_s:
            entry = [now, 0.0]
            self._peers[peer] = entry
        self._peers.move_to_end(peer)
        entry[1] += 1
        while len(self._peers) > self.capacity:
            self._peers.popitem(last=False)
        over = int(entry[1]) - self.free
        if over <= 0:
            return 0.0
        return min(self.max_delay_s, BASE_DELAY_S * 2.0 ** min(over - 1, 32))

    def __len__(self) -> int:
        return len(self._peers)
