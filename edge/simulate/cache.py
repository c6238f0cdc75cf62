"""Prompt-cache hits and writes, decided without I/O (the clock is an argument).

``PromptCache.use`` takes a request's ``CachePoint``s (from ``prefix``) and
the time, and says how many of its input tokens are read from the cache and
how many are written to it, updating the live entries as a provider would:

- A point counts only when its prefix holds at least ``min_tokens``.
- The read is the longest point whose prefix is live (cached, not expired);
  a hit refreshes its lifetime.
- Explicit caching (Anthropic, ``writes=True``): every longer point is
  written now, and the tokens between the read and the longest point are the
  cache write. Without a breakpoint past the read, nothing is written.
- Automatic caching (OpenAI, ``writes=False``): every point is stored or
  refreshed, but nothing is billed as a write (the API has no such charge).

Entries are keyed by the prefix digest (dialect and model are in it), so
the scope is per model, per simulator instance. The store is bounded: the
least recently used entry goes first; ``clear`` empties it (``/sim/reset``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from edge.simulate.prefix import CachePoint


@dataclass(frozen=True, slots=True)
class Split:
    read: int = 0  # input tokens read from the cache
    write: int = 0  # input tokens written to the cache


NONE = Split()


class PromptCache:
    __slots__ = ("_capacity", "_live")

    def __init__(self, capacity: int = 100_000) -> None:
        self._live: OrderedDict[bytes, float] = OrderedDict()  # key -> expires at
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._live)

    def clear(self) -> None:
        self._live.clear()

    def use(
        self, points: Sequence[CachePoint], now: float, *, min_tokens: int, writes: bool
    ) -> Split:
        """Decide this request's cache read and write, and record what it leaves cached."""
        eligible = [p for p in points if p.tokens >= min_tokens]
        if not eligible:
            return NONE
        hit: CachePoint | None = None
        for p in eligible:
            expires = self._live.get(p.key)
            if expires is None:
                continue
            if expires <= now:
                del self._live[p.key]  # expired: as if never cached
            elif hit is None or p.tokens > hit.tokens:
                hit = p
        read = hit.tokens if hit is not None else 0
        for p in eligible:
            if p is hit or p.tokens > read or not writes:
                self._keep(p, now)
        if not writes:
            return Split(read, 0)
        top = max(p.tokens for p in eligible)
        return Split(read, top - read)

    def _keep(self, p: CachePoint, now: float) -> None:
        live = self._live
        live[p.key] = now + p.ttl_s
        live.move_to_end(p.key)
        while len(live) > self._capacity:
            live.popitem(last=False)
