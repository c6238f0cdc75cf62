"""Failed authentication slowed per peer: the delay schedule on a fake clock."""

from __future__ import annotations

from edge.server.throttle import BASE_DELAY_S, AuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_free_failures_then_doubling_delays_capped() -> None:
    clock = Clock()
    t = AuthThrottle(free=3, window_s=60.0, max_delay_s=2.0, clock=clock)
    delays = [t.failed("10.0.0.1") for _ in range(9)]
    b = BASE_DELAY_S
    assert delays == [0.0, 0.0, 0.0, b, 2 * b, 4 * b, 2.0, 2.0, 2.0]
    assert t.failed("10.0.0.2") == 0.0  # another peer is not slowed


def test_the_window_forgets() -> None:
    clock = Clock()
    t = AuthThrottle(free=1, window_s=60.0, max_delay_s=8.0, clock=clock)
    assert t.failed("p") == 0.0
    assert t.failed("p") == BASE_DELAY_S
    clock.now += 61
    assert t.failed("p") == 0.0


def test_the_table_is_bounded() -> None:
    t = AuthThrottle(free=0, window_s=60.0, max_delay_s=8.0, capacity=100, clock=Clock())
    for i in range(10_000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t) == 100
    assert t.failed("10.0.39.15") == 2 * BASE_DELAY_S  # the most recent are the ones kept
