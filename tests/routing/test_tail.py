"""The tail budget: per-tier hedge budgets from the policy, and attempts past their
first-token deadline replaced rather than waited on (fake upstreams, see test_race)."""

from __future__ import annotations

import asyncio
import os
import tomllib
from typing import Any

import pytest

from edge.policy import PolicyError, env_names, load_policy, parse_policy
from edge.routing.breaker import Admit, Breaker, BreakerConfig, Breakers, State
from edge.routing.race import HedgeBudget, HedgeBudgets
from edge.settings import unknown_names
from tests.procs import ROOT
from tests.routing.test_race import ANSWER, HANG, ROLE, Fake, World, finish, run, timing

SHIPPED = os.path.join(ROOT, "edge/policies/default.toml")


def shipped() -> dict[str, Any]:
    with open(SHIPPED, "rb") as f:
        return tomllib.load(f)


# -- the policy


def test_each_tier_has_a_hedge_budget_and_the_critical_tier_the_largest() -> None:
    tiers = load_policy(SHIPPED, {}).tiers
    assert tiers["L0"].hedge_budget_percent > tiers["L1"].hedge_budget_percent
    assert tiers["L1"].hedge_budget_percent > tiers["L2"].hedge_budget_percent


def test_a_tier_without_the_key_takes_its_rank_default_or_the_process_setting() -> None:
    data = shipped()
    for t in data["tiers"].values():
        t.pop("hedge_budget_percent", None)
    by_rank = parse_policy(data, {}).tiers
    assert [by_rank[n].hedge_budget_percent for n in ("L0", "L1", "L2")] == [25.0, 15.0, 8.0]
    flat = parse_policy(data, {"EDGE_HEDGE_BUDGET_PERCENT": "12"}).tiers
    assert {t.hedge_budget_percent for t in flat.values()} == {12.0}


def test_a_tier_budget_is_overridden_from_the_environment() -> None:
    env = {"EDGE_L2_HEDGE_BUDGET_PERCENT": "1.5"}
    policy = load_policy(SHIPPED, env)
    assert policy.tiers["L2"].hedge_budget_percent == 1.5
    assert unknown_names(env, env_names(policy)) == []
    typo = {"EDGE_L2_HEDGE_BUDGET_PERCNT": "1"}
    assert unknown_names(typo, env_names(policy)) == [
        "EDGE_L2_HEDGE_BUDGET_PERCNT (did you mean EDGE_L2_HEDGE_BUDGET_PERCENT?)"
    ]


def test_a_mistyped_or_out_of_range_budget_fails_the_start() -> None:
    data = shipped()
    data["tiers"]["L0"]["hedge_budget_percnt"] = 20
    with pytest.raises(PolicyError, match="did you mean 'hedge_budget_percent'"):
        parse_policy(data, {})
    with pytest.raises(PolicyError, match="EDGE_L0_HEDGE_BUDGET_PERCENT"):
        load_policy(SHIPPED, {"EDGE_L0_HEDGE_BUDGET_PERCENT": "150"})


# -- budgets per tier


def test_one_tier_spending_its_budget_leaves_another_tiers_alone() -> None:
    budgets = HedgeBudgets()
    l0 = budgets.for_tier("L0", 0.5, 0)
    l2 = budgets.for_tier("L2", 0.0, 0)
    for _ in range(10):
        l0.note_request(100.0)
        l2.note_request(100.0)
    assert not l2.try_spend(100.0)
    assert [l0.try_spend(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert budgets.for_tier("L0", None, None) is l0
    assert budgets.for_tier("L0", 0.9, None).ratio == 0.9  # a reloaded policy's figure


def test_a_race_draws_on_its_own_tiers_budget() -> None:
    async def main() -> None:
        w = World([Fake("a", body=[ROLE, HANG]), Fake("b")], budget=HedgeBudget(0.0, 0))
        spent = w.shared.budgets.for_tier("L1", None, None)
        race = w.race(timing(soft=0.02))
        winner = await race.run()
        assert race.budget is spent and not race.hedged and winner.kind == "failover"

    run(main)


# -- replaced, not waited on


def test_a_hedged_pair_past_its_deadline_gets_a_fresh_attempt_of_the_same_model() -> None:
    async def main() -> None:
        # a stalls; its hedge b is slow too; with no other candidate left, a is replaced by a
        # fresh attempt of its own model (a stall belongs to the attempt), which answers
        a1 = Fake("a", body=[ROLE, HANG])
        a2 = Fake("a")
        b = Fake("b", body=[ROLE, HANG], hang_head=False)
        w = World([a1, a2, b], providers={"a": "p", "b": "q"})
        race = w.race(timing(soft=0.02, first_token=0.08))
        winner = await race.run()
        assert w.order() == ["a", "b", "a"]
        assert winner.call.model.name == "a" and winner.kind == "failover"
        assert a1.closed and b.closed  # the stalled one at its deadline, the rival lost
        assert ("a", "timeout") in w.events.attempts and ("b", "lost") in w.events.attempts
        await finish(race, winner)
        kinds = sorted(c.kind for c in race.charges)
        assert kinds == ["answer", "waste", "waste"]  # every attempt billed once

    run(main)


def test_a_hedged_pair_is_not_replaced_beyond_max_attempts() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        a = Fake("a", body=[ROLE, gate, *ANSWER[1:]])
        b = Fake("b", body=[ROLE, HANG])
        w = World([a, b], providers={"a": "p", "b": "q"})
        race = w.race(timing(soft=0.02, first_token=0.06, attempts=2))
        task = asyncio.ensure_future(race.run())
        await b.reached_hang.wait()
        await asyncio.sleep(0.12)  # both past their first-token deadlines; no attempt left
        assert w.order() == ["a", "b"] and not a.closed and not b.closed
        gate.set()
        winner = await task
        assert winner.call.model.name == "a"

    run(main)


def test_with_the_budget_spent_a_lone_late_attempt_is_replaced_by_the_next_candidate() -> None:
    async def main() -> None:
        w = World(
            [Fake("a", body=[ROLE, HANG]), Fake("b")],
            budget=HedgeBudget(0.0, 0),
            providers={"a": "p", "b": "q"},
        )
        race = w.race(timing(soft=0.02, first_token=0.06))
        winner = await race.run()
        assert w.events.hedges == ["skipped_budget"] and not race.hedged
        assert winner.call.model.name == "b" and w.fakes["a"].closed

    run(main)


# -- a replaced attempt is slow, not failed


def state(b: Breaker) -> State:
    return b.state  # read through a call: mypy narrows the attribute across calls that move it


def test_slow_attempts_trip_by_rate_never_by_count() -> None:
    b = Breakers(["m"], BreakerConfig(failures=5, window_s=30, failure_rate=0.5, min_attempts=20))[
        "m"
    ]
    now = 100.0
    for i in range(40):  # 8 of 40 replaced: the tail of a healthy model
        if i % 5 == 0:
            b.slow(b.admit(now), now)
        else:
            b.success(b.admit(now), now)
        now += 0.05
    assert state(b) is State.CLOSED  # five failures in two seconds would have tripped it
    for _ in range(40):  # slow on every attempt: that is an outage of a kind
        b.slow(b.admit(now), now)
        now += 0.05
    assert state(b) is State.OPEN


def test_a_slow_probe_fails() -> None:
    b = Breakers(["m"], BreakerConfig(failures=1, cooldown_s=1.0, jitter=0.0))["m"]
    b.failure(b.admit(0.0), 0.0)
    assert state(b) is State.OPEN
    admit = b.admit(2.0)
    assert admit is Admit.PROBE and state(b) is State.HALF_OPEN
    b.slow(admit, 2.5)
    assert state(b) is State.OPEN
