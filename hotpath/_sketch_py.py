"""Pure-Python twin of ``hotpath._sketch``: windowed latency quantiles (DDSketch-style).

Values fall into log-spaced buckets: bucket ``i`` holds values in
``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + alpha) / (1 - alpha)``, so
any quantile is returned within relative error ``alpha`` (1% by default) of
a value of that rank. Buckets are a dense array over ``[1e-6, 1e5]``
seconds; smaller and larger values are clamped to the ends.

The window: ``slots`` sub-sketches, each covering ``window_s / slots``
seconds of the caller's clock; a slot whose time has passed is cleared on
the next write to it, and queries merge only the slots inside the window. So
quantiles follow the last ``window_s`` seconds, not all time. Time is
passed in (``now``), never read here: tests use a fake clock.

Mergeable: ``merge`` adds another sketch's slots of the same epochs (for
workers and instances).

Invariant: the twins return equal results for every sequence of calls.
"""

from __future__ import annotations

import math
from typing import Any

MIN_VALUE = 1e-6
MAX_VALUE = 1e5


class LatencySketch:
    __slots__ = (
        "_counts",
        "_epochs",
        "_gamma_log",
        "_offset",
        "_size",
        "_slot_s",
        "_slots",
        "alpha",
    )

    def __init__(self, window_s: float = 60.0, slots: int = 6, alpha: float = 0.01) -> None:
        if not 0 < alpha < 1 or slots < 1 or window_s <= 0:
            raise ValueError("alpha must be in (0, 1), slots >= 1, window_s > 0")
        self.alpha = alpha
        self._gamma_log = math.log((1 + alpha) / (1 - alpha))
        self._offset = math.ceil(math.log(MIN_VALUE) / self._gamma_log)
        self._size = math.ceil(math.log(MAX_VALUE) / self._gamma_log) - self._offset + 1
        self._slots = slots
        self._slot_s = window_s / slots
        self._counts = [[0] * self._size for _ in range(slots)]
        self._epochs = [-1] * slots

    def _index(self, value: float) -> int:
        if value <= MIN_VALUE:
            return 0
        if value >= MAX_VALUE:
            return self._size - 1
        return math.ceil(math.log(value) / self._gamma_log) - self._offset

    def add(self, value: float, now: float) -> None:
        epoch = int(now // self._slot_s)
        slot = epoch % self._slots
        counts = self._counts[slot]
        if self._epochs[slot] != epoch:
            for i in range(self._size):
                counts[i] = 0
            self._epochs[slot] = epoch
        counts[self._index(value)] += 1

    def _live(self, now: float) -> list[int]:
        epoch = int(now // self._slot_s)
        return [s for s in range(self._slots) if 0 <= epoch - self._epochs[s] < self._slots]

    def count(self, now: float) -> int:
        return sum(sum(self._counts[s]) for s in self._live(now))

    def quantile(self, q: float, now: float) -> float:
        """The ``q`` quantile (0..1) of the values in the window; 0.0 when it is empty."""
        live = self._live(now)
        total = 0
        for s in live:
            total += sum(self._counts[s])
        if total == 0:
            return 0.0
        rank = q * (total - 1)
        seen = 0
        for i in range(self._size):
            for s in live:
                seen += self._counts[s][i]
            if seen > rank:
                return self._value(i)
        return self._value(self._size - 1)

    def _value(self, index: int) -> float:
        # the middle of the bucket in the relative sense: within alpha of any value in it
        gamma = math.exp(self._gamma_log)
        return 2.0 * math.exp((index + self._offset) * self._gamma_log) / (gamma + 1.0)

    def merge(self, other: LatencySketch) -> None:
        """Add ``other``'s counts (same shape) slot by slot, keeping the newer epoch of each slot."""
        if (other._size, other._slots, other._slot_s) != (self._size, self._slots, self._slot_s):
            raise ValueError("sketches of different shapes cannot be merged")
        for s in range(self._slots):
            mine, theirs = self._epochs[s], other._epochs[s]
            if theirs < 0 or theirs < mine:
                continue
            if theirs > mine:
                self._counts[s] = list(other._counts[s])
                self._epochs[s] = theirs
            else:
                counts = self._counts[s]
                for i, c in enumerate(other._counts[s]):
                    counts[i] += c

    def dump(self) -> dict[str, Any]:
        """The sketch as plain data (its live slots, sparse), for another process to ``load``."""
        slots = []
        for s in range(self._slots):
            if self._epochs[s] < 0:
                continue
            nonzero = {str(i): c for i, c in enumerate(self._counts[s]) if c}
            slots.append([s, self._epochs[s], nonzero])
        return {"alpha": self.alpha, "slots": self._slots, "slot_s": self._slot_s, "data": slots}

    def load(self, state: dict[str, Any]) -> None:
        """Replace the counts with a ``dump`` of a sketch of the same shape."""
        if (state["alpha"], state["slots"], state["slot_s"]) != (
            self.alpha,
            self._slots,
            self._slot_s,
        ):
            raise ValueError("the dump is of a sketch of another shape")
        self._counts = [[0] * self._size for _ in range(self._slots)]
        self._epochs = [-1] * self._slots
        for s, epoch, nonzero in state["data"]:
            if not 0 <= s < self._slots:
                raise ValueError("slot out of range")
            self._epochs[s] = epoch
            for i, c in nonzero.items():
                i = int(i)
                if not 0 <= i < self._size:
                    raise ValueError("bucket out of range")
                self._counts[s][i] = c
