"""Every hedge is counted by how it ended: failed and breaker-skipped ones too."""

from __future__ import annotations

import asyncio

from edge.routing.breaker import Admit, BreakerConfig
from tests.routing.test_race import (
    DONE,
    FINISH,
    ROLE,
    USAGE,
    Events,
    Fake,
    World,
    finish,
    run,
    timing,
    token,
)


class Told(Events):
    """The race's events, and a signal when a hedge is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.hedged = asyncio.Event()

    def hedge(self, tier: str, outcome: str) -> None:
        super().hedge(tier, outcome)
        self.hedged.set()


def world(fakes: list[Fake], breaker: BreakerConfig | None = None) -> tuple[World, Told]:
    w = World(fakes, breaker=breaker)
    told = Told()
    w.events = w.shared.events = told
    return w, told


def test_a_hedge_that_fails_before_its_first_token_is_counted_failed() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        a = Fake("a", body=[ROLE, gate, token("late"), FINISH, USAGE, DONE])
        w, told = world([a, Fake("b", status=500)])
        race = w.race(timing(soft=0.02))
        task = asyncio.ensure_future(race.run())
        await told.hedged.wait()  # b hedged a, and failed at once
        gate.set()
        winner = await task
        await finish(race, winner)
        assert winner.call.model.name == "a" and race.hedged
        assert told.hedges == ["failed"]

    run(main)


def test_a_hedge_no_breaker_admits_is_counted_skipped() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        a = Fake("a", body=[ROLE, gate, token("late"), FINISH, USAGE, DONE])
        w, told = world([a, Fake("b")], BreakerConfig(failures=1, cooldown_s=60))
        w.breakers["b"].failure(Admit.PASS, w.shared.clock())  # b is open
        race = w.race(timing(soft=0.02))
        task = asyncio.ensure_future(race.run())
        await told.hedged.wait()
        gate.set()
        winner = await task
        await finish(race, winner)
        assert winner.call.model.name == "a" and not race.hedged and w.order() == ["a"]
        assert told.hedges == ["skipped_breaker"]

    run(main)
