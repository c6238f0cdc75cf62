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
    fail(b, 10.5)  # the streak started at 0 is older than 10 s: it restarts here
    fail(b, 11.0)
    assert state_of(b) is State.CLOSED and b.streak == 2
    fail(b, 12.0)
    assert state_of(b) is State.OPEN


def test_a_success_resets_the_streak() -> None:
    b, _ = make()
    fail(b, 0.0, 2)
    b.success(b.admit(0.5), 0.5)
    fail(b, 1.0, 2)
    assert state_of(b) is State.CLOSED


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
    config = BreakerConfig(failures=1, cooldown_s=10.0, jitter=0.1)
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
