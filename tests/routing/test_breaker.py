"""Every breaker transition, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import random

import pytest

from edge.routing.breaker import (
    TRANSITIONS,
    Admit,
    Breaker,
    BreakerConfig,
    IllegalTransition,
    State,
)

CONFIG = BreakerConfig(
    failures=3, window_s=10.0, cooldown_s=5.0, cooldown_max_s=18.0, probes=1, successes=2, jitter=0
)


class Recorder:
    def __init__(self) -> None:
        self.moves: list[tuple[str, State, State, float]] = []

    def __call__(self, key: str, old: State, new: State, now: float) -> None:
        self.moves.append((key, old, new, now))


def make(config: BreakerConfig = CONFIG) -> tuple[Breaker, Recorder]:
    rec = Recorder()
    return Breaker("m", config, rec, random.Random(1)), rec


def state_of(b: Breaker) -> State:
    """The state, read through a call (mypy would narrow ``b.state`` after an assert)."""
    return b.state


def fail(b: Breaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        b.failure(b.admit(now) if state_of(b) is State.CLOSED else Admit.PASS, now)


def test_consecutive_failures_within_the_window_trip_it() -> None:
    b, rec = make()
    fail(b, 0.0, 2)
    assert state_of(b) is State.CLOSED
    fail(b, 1.0)
    assert state_of(b) is State.OPEN
    assert rec.moves == [("m", State.CLOSED, State.OPEN, 1.0)]
    assert b.admit(1.5) is Admit.DENY


def test_failures_spread_wider_than_the_window_do_not_trip_it() -> None:
    b, _ = make()
    fail(b, 0.0, 2)
    fail(b, 10.5)  # the failures at 0 are older than 10 s by the third one
    fail(b, 11.0)
    assert state_of(b) is State.CLOSED
    fail(b, 12.0)
    assert state_of(b) is State.OPEN


def test_failures_need_not_be_consecutive() -> None:
    """A model failing every other call trips on its failures within the window."""
    b, rec = make(BreakerConfig(jitter=0))  # the default rule: 5 failures within 30 s
    now = 0.0
    for i in range(9):
        admit = b.admit(now)
        if i % 2:
            b.success(admit, now)
        else:
            b.failure(admit, now)
        now += 0.5
    assert state_of(b) is State.OPEN and len(rec.moves) == 1


def traffic(config: BreakerConfig, pattern: str, span_s: float) -> tuple[Breaker, list[float]]:
    """Verdicts spread evenly over ``span_s`` (``x`` a failure, ``.`` a success) while a new
    breaker admits them; the breaker and the times at which it tripped."""
    b, rec = make(config)
    step = span_s / len(pattern)
    for i, mark in enumerate(pattern):
        now = i * step
        admit = b.admit(now)
        if admit is Admit.DENY:
            continue
        if mark == "x":
            b.failure(admit, now)
        else:
            b.success(admit, now)
    return b, [move[3] for move in rec.moves if move[2] is State.OPEN]


HALF = "x.x.xx.x.x.xx..x.xx.x.x."  # 13 failures in 24 attempts, never more than 2 in a row


def test_thirteen_failures_in_twenty_four_attempts_over_five_seconds_trip_it() -> None:
    assert HALF.count("x") == 13 and len(HALF) == 24
    assert traffic(BreakerConfig(jitter=0), HALF, 5.0)[1]  # the defaults: on the 5th failure
    rate_only = BreakerConfig(failures=0, jitter=0)  # the rate rule alone
    b, trips = traffic(rate_only, HALF, 5.0)
    assert len(trips) == 1 and trips[0] >= 19 * 5.0 / 24  # not before 20 verdicts
    assert b.window.totals(trips[0])[0] >= 20


def test_a_failure_rate_under_the_threshold_or_the_minimum_does_not_trip_it() -> None:
    rate_only = BreakerConfig(failures=0, jitter=0)
    assert not traffic(rate_only, "x.." * 8, 5.0)[1]  # 8 of 24: a third
    assert not traffic(rate_only, "x" * 19, 5.0)[1]  # every call failed, but only 19 verdicts


def test_the_rate_forgets_verdicts_older_than_the_window() -> None:
    b, _ = make(BreakerConfig(failures=0, window_s=10.0, min_attempts=4, jitter=0))
    for t in (0.0, 0.1, 0.2):
        b.failure(b.admit(t), t)
    assert state_of(b) is State.CLOSED
    for t in (10.5, 10.6, 10.7):
        b.success(b.admit(t), t)
    b.failure(b.admit(10.8), 10.8)  # 1 of 4 in the window: the early failures are gone
    assert state_of(b) is State.CLOSED


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("outage_s", [3.0, 17.0, 61.0])
def test_an_outage_costs_one_probe_per_open_period_and_recovery_is_seen_within_5_s(
    seed: int, outage_s: float
) -> None:
    """Traffic every 50 ms through an outage and after it, on the default configuration."""
    b = Breaker("m", BreakerConfig(), None, random.Random(seed))
    probes_by_period: dict[int, int] = {}
    during = 0
    served_after: float | None = None
    now = 0.0
    while served_after is None and now < outage_s + 30:
        admit = b.admit(now)
        if admit is not Admit.DENY:
            if admit is Admit.PROBE:
                probes_by_period[b.trips] = probes_by_period.get(b.trips, 0) + 1
            if now < outage_s:
                during += 1
                b.failure(admit, now)
            else:
                b.success(admit, now)
                served_after = now
        now = round(now + 0.05, 2)
    assert served_after is not None and served_after - outage_s <= 5.0
    assert probes_by_period and max(probes_by_period.values()) <= 1
    # the outage saw its first five failures, then at most one probe per open period
    assert during <= 5 + sum(probes_by_period.values())
    assert during < 5 + outage_s / BreakerConfig().cooldown_s


def test_cooldown_then_half_open_admits_bounded_probes_and_successes_close_it() -> None:
    b, rec = make()
    fail(b, 0.0, 3)
    assert b.admit(4.9) is Admit.DENY  # still cooling down
    first = b.admit(5.0)
    assert first is Admit.PROBE and b.state is State.HALF_OPEN
    assert b.admit(5.0) is Admit.DENY  # one probe at a time; others go to fallbacks
    b.success(first, 5.2)
    assert state_of(b) is State.HALF_OPEN  # one success is not enough
    second = b.admit(5.3)
    assert second is Admit.PROBE
    b.success(second, 5.4)
    assert state_of(b) is State.CLOSED
    assert [(m[1], m[2]) for m in rec.moves] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    assert b.admit(5.5) is Admit.PASS


def test_a_failed_probe_reopens_with_a_longer_capped_cooldown() -> None:
    b, _ = make()
    fail(b, 0.0, 3)
    assert b.open_until == pytest.approx(5.0)
    now = 5.0
    for expected in (10.0, 18.0, 18.0):  # 5, 10, 20 -> capped at 18
        probe = b.admit(now)
        assert probe is Admit.PROBE
        b.failure(probe, now)
        assert state_of(b) is State.OPEN
        assert b.open_until - now == pytest.approx(expected)
        now = b.open_until
    probe = b.admit(now)
    b.success(probe, now)
    b.success(b.admit(now), now)
    assert state_of(b) is State.CLOSED and b.trips == 0  # a recovery resets the growth
    fail(b, now + 1, 3)
    assert b.open_until - (now + 1) == pytest.approx(5.0)


def test_a_probe_released_without_verdict_frees_its_slot() -> None:
    b, _ = make()
    fail(b, 0.0, 3)
    probe = b.admit(6.0)
    assert b.admit(6.0) is Admit.DENY
    b.release(probe)  # it lost a hedge race: no verdict
    assert state_of(b) is State.HALF_OPEN and b.admit(6.1) is Admit.PROBE


def test_failures_of_attempts_admitted_before_the_trip_are_not_counted_twice() -> None:
    b, rec = make()
    admitted = [b.admit(0.0) for _ in range(5)]
    for a in admitted:
        b.failure(a, 0.1)
    assert state_of(b) is State.OPEN and len(rec.moves) == 1


def test_retry_after_avoids_the_model_and_is_extended_never_shortened() -> None:
    b, _ = make()
    b.failure(b.admit(0.0), 0.0, retry_after_s=4.0)
    assert b.admit(3.9) is Admit.DENY
    b.failure(Admit.PASS, 1.0, retry_after_s=1.0)  # a shorter one later does not shorten it
    assert b.admit(3.9) is Admit.DENY
    assert b.admit(4.0) is Admit.PASS
    b.failure(Admit.PASS, 4.0, retry_after_s=10.0)
    assert b.admit(13.9) is Admit.DENY


def test_the_cooldown_jitter_stays_within_its_fraction() -> None:
    config = BreakerConfig(failures=1, cooldown_s=10.0, cooldown_max_s=20.0, jitter=0.1)
    for seed in range(20):
        b = Breaker("m", config, None, random.Random(seed))
        b.failure(b.admit(0.0), 0.0)
        assert 10.0 <= b.open_until <= 11.0


def test_a_disabled_breaker_admits_everything() -> None:
    b, _ = make(BreakerConfig(failures=1, enabled=False))
    fail(b, 0.0, 5)
    assert b.admit(0.1) is Admit.PASS and b.state is State.CLOSED


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", ["trip", "cooldown", "recover", "probe_failed"])
def test_the_table_is_the_whole_machine(state: State, event: str) -> None:
    b, rec = make()
    b.state = state
    if (state, event) in TRANSITIONS:
        b._move(event, 1.0)
        assert state_of(b) is TRANSITIONS[(state, event)]
        assert rec.moves == [("m", state, b.state, 1.0)]
    else:
        with pytest.raises(IllegalTransition):
            b._move(event, 1.0)
        assert state_of(b) is state and not rec.moves
