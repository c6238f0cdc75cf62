"""Prompt-cache decisions on a fake clock (no sockets, no sleeps)."""

from __future__ import annotations

from edge.simulate.cache import PromptCache, Split
from edge.simulate.prefix import CachePoint

FIVE_MIN = 300.0


def point(tokens: int, name: str = "p", ttl_s: float = FIVE_MIN) -> CachePoint:
    return CachePoint(tokens, f"{name}:{tokens}".encode(), ttl_s)


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_anthropic_write_then_read_then_expiry() -> None:
    cache, clock = PromptCache(), FakeClock()
    bp = [point(1500)]
    assert cache.use(bp, clock(), min_tokens=1024, writes=True) == Split(read=0, write=1500)
    clock.advance(299)
    assert cache.use(bp, clock(), min_tokens=1024, writes=True) == Split(read=1500, write=0)
    # the hit refreshed the lifetime: 299 s after it, still live; 300 s after the last use, gone
    clock.advance(299)
    assert cache.use(bp, clock(), min_tokens=1024, writes=True) == Split(read=1500, write=0)
    clock.advance(300)
    assert cache.use(bp, clock(), min_tokens=1024, writes=True) == Split(read=0, write=1500)


def test_one_hour_breakpoints_outlive_five_minute_ones() -> None:
    cache, clock = PromptCache(), FakeClock()
    bp = [point(2000, "long", ttl_s=3600.0)]
    cache.use(bp, clock(), min_tokens=1024, writes=True)
    clock.advance(1800)
    assert cache.use(bp, clock(), min_tokens=1024, writes=True).read == 2000


def test_prefix_below_the_minimum_is_never_cached() -> None:
    cache, clock = PromptCache(), FakeClock()
    short = [point(1500)]
    for _ in range(2):
        assert cache.use(short, clock(), min_tokens=2048, writes=True) == Split()
    assert len(cache) == 0


def test_longest_cached_breakpoint_is_read_and_the_rest_written() -> None:
    cache, clock = PromptCache(), FakeClock()
    tools, system, history = point(1100, "a"), point(3000, "a"), point(5000, "a")
    assert cache.use([tools, system], clock(), min_tokens=1024, writes=True) == Split(0, 3000)
    # a conversation that grew: the system prefix is read, the new history written
    got = cache.use([tools, system, history], clock(), min_tokens=1024, writes=True)
    assert got == Split(read=3000, write=2000)
    assert cache.use([tools, system, history], clock(), min_tokens=1024, writes=True) == Split(
        5000, 0
    )
    # a breakpoint shorter than the minimum is skipped, the others still count
    assert cache.use([point(10), history], clock(), min_tokens=1024, writes=True) == Split(5000, 0)


def test_a_later_breakpoint_that_is_cached_wins_over_an_earlier_one() -> None:
    cache, clock = PromptCache(), FakeClock()
    cache.use([point(4000, "b")], clock(), min_tokens=1024, writes=True)
    got = cache.use([point(1200, "b"), point(4000, "b")], clock(), min_tokens=1024, writes=True)
    assert got == Split(read=4000, write=0)


def test_openai_is_automatic_and_never_bills_a_write() -> None:
    cache, clock = PromptCache(), FakeClock()
    first = [point(t, "o") for t in (1024, 1152, 1280, 1408)]
    assert cache.use(first, clock(), min_tokens=1024, writes=False) == Split(0, 0)
    assert cache.use(first, clock(), min_tokens=1024, writes=False) == Split(1408, 0)
    # a longer prompt with the same start reads the longest prefix seen before
    longer = [*first, point(1536, "o"), point(1664, "o")]
    assert cache.use(longer, clock(), min_tokens=1024, writes=False) == Split(1408, 0)
    assert cache.use(longer, clock(), min_tokens=1024, writes=False) == Split(1664, 0)
    clock.advance(FIVE_MIN)
    assert cache.use(longer, clock(), min_tokens=1024, writes=False) == Split(0, 0)


def test_store_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache, clock = PromptCache(capacity=2), FakeClock()
    a, b, c = point(2000, "a"), point(2000, "b"), point(2000, "c")
    cache.use([a], clock(), min_tokens=1024, writes=True)
    cache.use([b], clock(), min_tokens=1024, writes=True)
    cache.use([a], clock(), min_tokens=1024, writes=True)  # a is used again: b is now the oldest
    cache.use([c], clock(), min_tokens=1024, writes=True)
    assert len(cache) == 2
    assert cache.use([a], clock(), min_tokens=1024, writes=True).read == 2000
    assert cache.use([b], clock(), min_tokens=1024, writes=True) == Split(0, 2000)


def test_clear_forgets_everything() -> None:
    cache, clock = PromptCache(), FakeClock()
    cache.use([point(2000)], clock(), min_tokens=1024, writes=True)
    cache.clear()
    assert cache.use([point(2000)], clock(), min_tokens=1024, writes=True) == Split(0, 2000)
