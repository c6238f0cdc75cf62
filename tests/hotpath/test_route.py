"""One test body for both routing decisions, and exact twin agreement on random inputs."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.route
from hotpath import _route_py as R
from tests.hotpath.twins import twins

IMPLS, _compiled = twins("hotpath._route", R)

# name: (USD per million in, out, quality, context window)
MODELS = {
    "cheap": (0.15, 0.60, 0.970, 128_000),
    "mid": (1.00, 5.00, 0.975, 200_000),
    "smart": (3.00, 15.00, 0.990, 200_000),
    "tiny": (0.05, 0.20, 0.900, 16_000),
}
NAMES = list(MODELS)
ALL_CAPS = R.CAP_TOOLS | R.CAP_VISION | R.CAP_JSON


def table(impl: ModuleType, caps: dict[str, int] | None = None) -> Any:
    t = impl.CandidateTable(len(NAMES))
    for i, name in enumerate(NAMES):
        pin, pout, q, window = MODELS[name]
        t.set_model(i, pin, pout, q, window, (caps or {}).get(name, ALL_CAPS))
    return t


def run(impl: ModuleType, t: Any, **kw: Any) -> tuple[list[str], int, int, float]:
    order, action, max_tokens, cost, _ = run_capped(impl, t, **kw)
    return order, action, max_tokens, cost


def run_capped(impl: ModuleType, t: Any, **kw: Any) -> tuple[list[str], int, int, float, int]:
    args = {
        "pool": [0, 1, 2, 3],
        "pinned": 0,
        "strategy": R.VALUE,
        "quality_floor": 0.97,
        "p95_target_ms": 3000.0,
        "warn_usd": 0.01,
        "degrade_usd": 0.02,
        "block_usd": 0.05,
        "cap_min_usd": kw.get("degrade_usd", 0.02),
        "never_block": False,
        "degrade_mode": R.DEGRADE_MODEL,
        "input_tokens": 1000,
        "max_output": 500,
        "needs": 0,
        **kw,
    }
    order, action, max_tokens, cost, capped = impl.decide(t, **args)
    return [NAMES[i] for i in order], action, max_tokens, cost, capped


@pytest.mark.parametrize("impl", IMPLS)
class TestDecide:
    def test_value_is_the_cheapest_meeting_floor_and_target(self, impl):
        order, action, max_tokens, cost = run(impl, table(impl))
        assert order == ["cheap", "mid", "smart", "tiny"]  # tiny is under the floor: last
        assert (action, max_tokens) == (R.OK, 500)
        assert cost == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)

    def test_quality_first_for_l0(self, impl):
        assert run(impl, table(impl), strategy=R.QUALITY)[0] == ["smart", "mid", "cheap", "tiny"]

    def test_value_skips_slow_candidates_to_the_back_of_the_floor_group(self, impl):
        t = table(impl)
        t.set_health(0, R.CLOSED, 4500.0, 0.0)  # cheap is over the latency target
        t.set_health(2, R.CLOSED, 900.0, 0.0)
        assert run(impl, t)[0] == ["mid", "smart", "cheap", "tiny"]

    def test_latency_strategy_fastest_under_the_cap(self, impl):
        t = table(impl)
        for i, p95 in enumerate((800.0, 400.0, 300.0, 200.0)):
            t.set_health(i, R.CLOSED, p95, 0.0)
        order = run(impl, t, strategy=R.LATENCY, input_tokens=3000, max_output=1000)[0]
        # smart costs 0.024, over the 0.02 cap: not a candidate at all
        assert order == ["tiny", "mid", "cheap"]

    def test_capabilities_and_context_window_filter(self, impl):
        t = table(
            impl, caps={"cheap": R.CAP_JSON, "mid": ALL_CAPS, "smart": ALL_CAPS, "tiny": ALL_CAPS}
        )
        assert run(impl, t, needs=R.CAP_TOOLS)[0] == ["mid", "smart", "tiny"]
        assert run(impl, t, input_tokens=150_000, max_output=1000)[0] == ["mid", "smart"]
        assert run(impl, t, input_tokens=500_000)[0] == []

    def test_open_breakers_skipped_and_all_open_falls_back_to_least_recently_failed(self, impl):
        t = table(impl)
        t.set_health(0, R.OPEN, 0.0, 100.0)
        assert run(impl, t)[0] == ["mid", "smart", "tiny"]
        for i, failed_at in enumerate((100.0, 50.0, 75.0, 120.0)):
            t.set_health(i, R.OPEN, 0.0, failed_at)
        assert run(impl, t)[0] == ["mid", "smart", "cheap", "tiny"]

    def test_cost_actions(self, impl):
        t = table(impl)
        assert (
            run(impl, t, strategy=R.QUALITY, input_tokens=2000, max_output=300)[1] == R.WARN
        )  # smart: 0.0105
        order, action, _, cost = run(impl, t, strategy=R.QUALITY, input_tokens=4000, max_output=600)
        assert (
            action == R.DEGRADE and order[0] == "cheap"
        )  # cheapest meeting the floor moves to the front
        assert cost == pytest.approx((4000 * 0.15 + 600 * 0.60) / 1e6)
        # over the block threshold, but the cheapest meeting the floor is under it: degrade
        order, action, _, cost = run(
            impl, t, strategy=R.QUALITY, input_tokens=20000, max_output=1000
        )
        assert action == R.DEGRADE and order[0] == "cheap" and cost < 0.05
        # even the cheapest is over it: block (a tier that never blocks degrades)
        assert (
            run(impl, t, strategy=R.QUALITY, input_tokens=20000, max_output=1000, block_usd=0.003)[
                1
            ]
            == R.BLOCK
        )
        assert (
            run(
                impl,
                t,
                strategy=R.QUALITY,
                input_tokens=20000,
                max_output=1000,
                block_usd=0.003,
                never_block=True,
            )[1]
            == R.DEGRADE
        )

    def test_degrade_by_max_tokens(self, impl):
        t = table(impl)
        order, action, max_tokens, cost = run(
            impl,
            t,
            strategy=R.QUALITY,
            degrade_mode=R.DEGRADE_MAX_TOKENS,
            input_tokens=4000,
            max_output=1000,
        )
        assert order[0] == "smart" and action == R.DEGRADE
        assert max_tokens == int((0.02 * 1e6 - 4000 * 3.00) / 15.00) and cost < 0.02 + 1e-12
        # a vanishing output price: the input alone is over the threshold, no overflow on the way
        t.set_model(2, 3.00, 1e-300, 0.99, 200_000, ALL_CAPS)
        assert (
            run(
                impl,
                t,
                strategy=R.QUALITY,
                degrade_mode=R.DEGRADE_MAX_TOKENS,
                input_tokens=7000,
                max_output=1000,
            )[1]
            == R.BLOCK
        )
        t.set_model(2, 3.00, 15.00, 0.99, 200_000, ALL_CAPS)
        # no room left at all: block (or warn, on a tier that never blocks)
        assert (
            run(
                impl,
                t,
                strategy=R.QUALITY,
                degrade_mode=R.DEGRADE_MAX_TOKENS,
                input_tokens=7000,
                max_output=1000,
            )[1]
            == R.BLOCK
        )

    def test_the_cap_binds_every_candidate_after_a_degrade(self, impl):
        t = table(impl)
        # smart first (quality), over the degrade threshold: cheap serves, and behind it only
        # candidates within the cap, cheapest first; never smart, the model degraded away from
        order, action, _, cost, capped = run_capped(
            impl, t, strategy=R.QUALITY, input_tokens=4000, max_output=600
        )
        assert action == R.DEGRADE and order[0] == "cheap"
        assert "smart" not in order and capped >= 1
        assert order == ["cheap", "tiny"] or order == ["cheap", "mid", "tiny"]
        cap = max(0.02, cost)
        assert all(t.cost(NAMES.index(n), 4000, 600) <= cap for n in order)

    def test_the_cap_binds_without_a_degrade_too(self, impl):
        t = table(impl)
        # cheap is well under the 0.02 threshold; smart (0.024) would be over it
        order, action, _, _, capped = run_capped(impl, t, input_tokens=3000, max_output=1000)
        assert action == R.OK and order[0] == "cheap" and "smart" not in order and capped == 1

    def test_pinned_entries_lead_in_their_order(self, impl):
        t = table(impl)
        order = run(impl, t, pool=[2, 1, 0, 3], pinned=2, degrade_usd=1.0, block_usd=2.0)[0]
        assert order[:2] == ["smart", "mid"] and order[2:] == ["cheap", "tiny"]

    def test_a_model_listed_twice_keeps_its_first_place(self, impl):
        t = table(impl)
        assert run(impl, t, pool=[1, 0, 1, 2], pinned=1)[0] == ["mid", "cheap", "smart", "tiny"][:3]

    def test_a_warm_prompt_cache_is_priced_at_the_cache_read_price(self, impl):
        t = impl.CandidateTable(2)
        t.set_model(0, 3.00, 15.00, 0.99, 200_000, ALL_CAPS, 0.30)
        t.set_model(1, 2.50, 10.00, 0.99, 200_000, ALL_CAPS, 1.25)
        args = (R.QUALITY, 0.97, 3000.0, 0.01, 0.02, 0.05, 0.02, False, R.DEGRADE_MODEL)
        cold = impl.decide(t, [0, 1], 0, *args, 30_000, 100, 0)
        # 30k tokens cold on the first: $0.0915, over the block threshold, the second too
        assert cold[1] == R.BLOCK
        warm = impl.decide(t, [0, 1], 0, *args, 30_000, 100, 0, [28_000, 0])
        # 28k of them read from its cache: $0.0084 + 2k fresh + output, a mere warning
        expected = (2_000 * 3.00 + 28_000 * 0.30 + 100 * 15.00) / 1e6
        assert warm[0] == [0] and warm[1] == R.WARN and warm[3] == pytest.approx(expected)

    def test_any_pool_size(self, impl):
        n = 300
        t = impl.CandidateTable(n)
        for i in range(n):
            t.set_model(i, 1.0 + i, 2.0 + i, 0.99, 200_000, ALL_CAPS)
        order = impl.decide(
            t, list(range(n))[::-1], 0, R.VALUE, 0.97, 3000.0, 1.0, 1.0, 2.0, 1.0, False,
            R.DEGRADE_MODEL, 1000, 500, 0,
        )[0]  # fmt: skip
        assert order == list(range(n))  # cheapest first, all of them


def test_selector_uses_compiled_module_in_a_normal_build():
    if os.environ.get("EDGE_NO_EXTENSIONS") == "1":
        assert hotpath.route.COMPILED is False
        return
    assert _compiled is not None, "hotpath._route did not build or import: run `make build`"
    assert hotpath.route.COMPILED is True and hotpath.route.decide is _compiled.decide


_models = st.tuples(
    st.floats(0, 20),
    st.floats(0, 80),
    st.floats(0.8, 1.0),
    st.integers(1000, 300_000),
    st.integers(0, 7),
    st.sampled_from([R.CLOSED, R.OPEN]),
    st.sampled_from([0.0, 200.0, 900.0, 3000.0, 5000.0]),
    st.floats(0, 1000),
)


@settings(max_examples=500, deadline=None)
@given(
    models=st.lists(_models, min_size=1, max_size=80),
    data=st.data(),
    strategy=st.sampled_from([R.QUALITY, R.VALUE, R.LATENCY]),
    floor=st.floats(0.8, 1.0),
    thresholds=st.tuples(st.floats(0, 0.05), st.floats(0, 0.1), st.floats(0, 0.2)),
    never_block=st.booleans(),
    mode=st.sampled_from([R.DEGRADE_MODEL, R.DEGRADE_MAX_TOKENS]),
    input_tokens=st.integers(0, 200_000),
    max_output=st.integers(1, 20_000),
    needs=st.integers(0, 7),
    cap_min=st.floats(0, 0.1),
)
def test_twins_agree_exactly(
    models,
    data,
    strategy,
    floor,
    thresholds,
    never_block,
    mode,
    input_tokens,
    max_output,
    needs,
    cap_min,
) -> None:
    if _compiled is None:
        pytest.skip("hotpath._route is not built")
    pool = data.draw(st.permutations(list(range(len(models)))))
    pool += data.draw(st.lists(st.sampled_from(pool), max_size=3))  # repeats keep their first place
    pinned = data.draw(st.integers(0, len(pool)))
    cached = data.draw(
        st.none() | st.lists(st.integers(0, input_tokens), min_size=len(pool), max_size=len(pool))
    )
    results = []
    for impl in (_compiled, R):
        t = impl.CandidateTable(len(models))
        for i, (pin, pout, q, window, caps, state, p95, failed) in enumerate(models):
            t.set_model(i, pin, pout, q, window, caps, pin / 10)
            t.set_health(i, state, p95, failed)
        warn, degrade, block = sorted(thresholds)
        results.append(
            impl.decide(
                t,
                list(pool),
                pinned,
                strategy,
                floor,
                3000.0,
                warn,
                degrade,
                block,
                cap_min,
                never_block,
                mode,
                input_tokens,
                max_output,
                needs,
                cached,
            )
        )
    assert results[0] == results[1]
    # the cap binds every candidate: none is estimated above max(cap_min, the primary's cost)
    order, action, max_tokens, cost, _ = results[1]
    if order and action != R.BLOCK:
        t = R.CandidateTable(len(models))
        for i, (pin, pout, q, window, caps, *_) in enumerate(models):
            t.set_model(i, pin, pout, q, window, caps, pin / 10)
        rank = {i: r for r, i in reversed(list(enumerate(pool)))}
        cap = max(cap_min, cost)
        for i in order:
            k = cached[rank[i]] if cached else 0
            assert t.cost(i, input_tokens, max_tokens, k) <= cap
