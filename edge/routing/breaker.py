"""Circuit breakers per (provider, model): a state machine kept as data.

    CLOSED --trip--> OPEN --cooldown--> HALF_OPEN --recover--> CLOSED
                       ^                    |
                       +-----probe_failed---+

- CLOSED keeps the verdicts of the last ``window_s`` seconds and trips on
  either rule: ``failures`` failures within the window, consecutive or not
  (the times of the last ``failures`` failures are kept exactly), or a
  failure rate of at least ``failure_rate`` over at least ``min_attempts``
  verdicts in the window (counted in ``BUCKETS`` buckets of
  ``window_s / BUCKETS``). A model failing every other call trips as surely
  as one failing every call. Failures are connect errors, timeouts, 5xx,
  529 and 429; a 400 is the request's fault and never counts, nor does the
  gateway's own saturation (race.classify).
- OPEN refuses traffic for a short cool-down (``cooldown_s``, seconds) that
  doubles on every failed probe, capped at ``cooldown_max_s`` and stretched
  by up to ``jitter`` so workers do not probe in step. The cap is what
  bounds the time from a provider's recovery to its first probe: with the
  defaults (1 s doubling to 4 s, +10%) a recovered model is probed within
  4.4 s, while an outage costs it one attempt per open period.
- HALF_OPEN admits at most ``probes`` attempts at once from real traffic
  (the router sends everything else to fallbacks); ``successes`` successful
  probes close it, one failed probe opens it again. So an open period ends
  in at most ``probes`` verdicts (one, by default).

A 429 with ``Retry-After`` also makes the model unavailable for the stated
time (``avoid``); a later, longer one extends it, never shortens it.

Nothing here does I/O or reads a clock of its own: ``now`` is passed in, so
every transition is tested with a fake clock. ``on_transition`` is called on
every state change (the router's table, the log and the metrics listen).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class State(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class IllegalTransition(RuntimeError):
    """An event that has no move from the breaker's current state."""


# The only moves there are; anything else is a bug and raises.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.CLOSED, "trip"): State.OPEN,
    (State.OPEN, "cooldown"): State.HALF_OPEN,
    (State.HALF_OPEN, "recover"): State.CLOSED,
    (State.HALF_OPEN, "probe_failed"): State.OPEN,
}


class Admit(IntEnum):
    DENY = 0
    PASS = 1  # closed: a normal attempt
    PROBE = 2  # half-open: one of the bounded probes; its verdict decides the state


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The policy's ``[breakers]`` table (docs/CONFIG.md), and the process switch."""

    failures: int = 5  # failures within the window that trip it (0: this rule is off)
    window_s: float = 30.0
    failure_rate: float = 0.5  # ... or this share of failed verdicts (1.0: only all failed)
    min_attempts: int = 20  # ... over at least this many verdicts in the window
    cooldown_s: float = 1.0
    cooldown_max_s: float = 4.0
    probes: int = 1
    successes: int = 2
    jitter: float = 0.1  # the cool-down is stretched by up to this fraction
    enabled: bool = True


BUCKETS = 30  # the rate rule's resolution: window_s / BUCKETS


class Window:
    """Verdicts over the last ``window_s`` seconds: the last failures' times (exact, for the
    count rule) and attempts and failures per bucket (for the rate rule)."""

    __slots__ = ("_attempts", "_failed", "_last", "_width", "failure_times")

    def __init__(self, config: BreakerConfig) -> None:
        self._width = config.window_s / BUCKETS
        self._attempts = [0] * BUCKETS
        self._failed = [0] * BUCKETS
        self._last = 0  # the absolute index of the newest bucket
        self.failure_times: deque[float] = deque(maxlen=max(1, config.failures))

    def _slot(self, now: float) -> int:
        index = int(now / self._width)
        if index > self._last:
            if index - self._last >= BUCKETS:
                self._attempts = [0] * BUCKETS
                self._failed = [0] * BUCKETS
            else:
                for i in range(self._last + 1, index + 1):
                    self._attempts[i % BUCKETS] = 0
                    self._failed[i % BUCKETS] = 0
            self._last = index
        return self._last % BUCKETS  # a verdict from the past lands in the newest bucket

    def record(self, now: float, failed: bool, counted: bool = True) -> None:
        """One verdict; ``counted``: a failure the count rule sees too (not a slow attempt)."""
        slot = self._slot(now)
        self._attempts[slot] += 1
        if failed:
            self._failed[slot] += 1
            if counted:
                self.failure_times.append(now)

    def totals(self, now: float) -> tuple[int, int]:
        """(attempts, failures) in the window."""
        self._slot(now)
        return sum(self._attempts), sum(self._failed)

    def clear(self) -> None:
        self._attempts = [0] * BUCKETS
        self._failed = [0] * BUCKETS
        self.failure_times.clear()


Listener = Callable[[str, State, State, float], None]


class Breaker:
    __slots__ = (
        "avoid_until",
        "config",
        "key",
        "last_failure",
        "on_transition",
        "open_until",
        "probe_successes",
        "probes_in_flight",
        "rng",
        "state",
        "trips",
        "window",
    )

    def __init__(
        self,
        key: str,
        config: BreakerConfig,
        on_transition: Listener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.key = key
        self.config = config
        self.on_transition = on_transition
        self.rng = rng or random.Random()
        self.state = State.CLOSED
        self.window = Window(config)
        self.trips = 0  # consecutive trips without a recovery: grows the cool-down
        self.open_until = 0.0
        self.probes_in_flight = 0
        self.probe_successes = 0
        self.last_failure = 0.0
        self.avoid_until = 0.0

    # -- the table

    def _move(self, event: str, now: float) -> None:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise IllegalTransition(f"breaker {self.key}: no move {event!r} from {self.state.name}")
        old, self.state = self.state, new
        if new is State.OPEN:
            self.trips += 1
            base = min(
                self.config.cooldown_s * 2 ** (self.trips - 1),
                self.config.cooldown_max_s,
            )
            self.open_until = now + base * (1.0 + self.config.jitter * self.rng.random())
        elif new is State.HALF_OPEN:
            self.probes_in_flight = 0
            self.probe_successes = 0
        else:  # CLOSED: the outage's verdicts must not trip it again
            self.trips = 0
            self.window.clear()
        if self.on_transition is not None:
            self.on_transition(self.key, old, new, now)

    def _should_trip(self, now: float) -> bool:
        c = self.config
        times = self.window.failure_times
        if c.failures and len(times) >= c.failures and now - times[0] <= c.window_s:
            return True
        attempts, failed = self.window.totals(now)
        return attempts >= c.min_attempts and failed >= c.failure_rate * attempts

    # -- what the race asks and tells

    def tick(self, now: float) -> None:
        """Move an OPEN breaker whose cool-down has passed to HALF_OPEN."""
        if self.state is State.OPEN and now >= self.open_until:
            self._move("cooldown", now)

    def admit(self, now: float) -> Admit:
        if not self.config.enabled:
            return Admit.PASS
        if now < self.avoid_until:
            return Admit.DENY
        self.tick(now)
        if self.state is State.CLOSED:
            return Admit.PASS
        if self.state is State.HALF_OPEN and self.probes_in_flight < self.config.probes:
            self.probes_in_flight += 1
            return Admit.PROBE
        return Admit.DENY

    def success(self, admit: Admit, now: float) -> None:
        if admit is Admit.PROBE:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            if self.state is State.HALF_OPEN:
                self.probe_successes += 1
                if self.probe_successes >= self.config.successes:
                    self._move("recover", now)
        elif self.state is State.CLOSED:
            self.window.record(now, False)

    def failure(self, admit: Admit, now: float, retry_after_s: float = 0.0) -> None:
        self.last_failure = now
        if retry_after_s > 0:
            self.avoid_until = max(self.avoid_until, now + retry_after_s)
        if not self.config.enabled:
            return
        if admit is Admit.PROBE:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            if self.state is State.HALF_OPEN:
                self._move("probe_failed", now)
            return
        if self.state is not State.CLOSED:
            return  # a failure of an attempt admitted before the trip: already counted
        self.window.record(now, True)
        if self._should_trip(now):
            self._move("trip", now)

    def slow(self, admit: Admit, now: float) -> None:
        """An attempt replaced at its first-token deadline: a failure for the rate rule only.

        A share of slow attempts is the tail of a healthy model (at 20 requests a second,
        an 8% stall rate is five in three seconds): the count rule would keep such a model
        open and push its traffic onto the rest. A model slow on most of its attempts still
        trips by rate, and a slow probe fails."""
        self.last_failure = now
        if not self.config.enabled:
            return
        if admit is Admit.PROBE:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            if self.state is State.HALF_OPEN:
                self._move("probe_failed", now)
            return
        if self.state is not State.CLOSED:
            return
        self.window.record(now, True, counted=False)
        if self._should_trip(now):
            self._move("trip", now)

    def release(self, admit: Admit) -> None:
        """An admitted attempt ended without a verdict (it lost a race, the client left)."""
        if admit is Admit.PROBE:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)


class Breakers:
    """One breaker per model name (a model belongs to one provider)."""

    def __init__(
        self,
        names: list[str],
        config: BreakerConfig,
        on_transition: Listener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.by_model = {n: Breaker(n, config, on_transition, rng) for n in names}

    def __getitem__(self, model: str) -> Breaker:
        return self.by_model[model]

    def tick(self, now: float) -> None:
        for b in self.by_model.values():
            b.tick(now)
