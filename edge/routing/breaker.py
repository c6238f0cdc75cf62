"""Circuit breakers per (provider, model): a state machine kept as data.

    CLOSED --trip--> OPEN --cooldown--> HALF_OPEN --recover--> CLOSED
                       ^                    |
                       +-----probe_failed---+

- CLOSED counts consecutive failures; ``failures`` of them within
  ``window_s`` (the streak restarts when its first failure is older) trip it.
  A success resets the streak. Failures are connect errors, timeouts, 5xx,
  529 and 429; a 400 is the request's fault and never counts.
- OPEN refuses traffic for a cool-down that doubles on every trip that
  follows a failed probe, capped at ``cooldown_max_s``; a little jitter keeps
  workers from probing in step.
- HALF_OPEN admits at most ``probes`` attempts at once from real traffic
  (the router sends everything else to fallbacks); ``successes`` successful
  probes close it, one failed probe opens it again.

A 429 with ``Retry-After`` also makes the model unavailable for the stated
time (``avoid``); a later, longer one extends it, never shortens it.

Nothing here does I/O or reads a clock of its own: ``now`` is passed in, so
every transition is tested with a fake clock. ``on_transition`` is called on
every state change (the router's table, the log and the metrics listen).
"""

from __future__ import annotations

import random
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
    failures: int = 5
    window_s: float = 30.0
    cooldown_s: float = 15.0
    cooldown_max_s: float = 120.0
    probes: int = 1
    successes: int = 2
    jitter: float = 0.1  # the cool-down is stretched by up to this fraction
    enabled: bool = True


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
        "streak",
        "streak_start",
        "trips",
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
        self.streak = 0
        self.streak_start = 0.0
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
        else:  # CLOSED
            self.trips = 0
            self.streak = 0
        if self.on_transition is not None:
            self.on_transition(self.key, old, new, now)

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
            self.streak = 0

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
        if self.streak == 0 or now - self.streak_start > self.config.window_s:
            self.streak, self.streak_start = 1, now
        else:
            self.streak += 1
        if self.streak >= self.config.failures:
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
