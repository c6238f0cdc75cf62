"""One test body for both routing decisions, and exact twin agreement on random inputs."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.route
from hotpath import _route_py as R

try:
    _compiled: ModuleType | None = importlib.import_module("hotpath._route")
except ImportError:
    _compiled = None

IMPLS = [pytest.param(R, id="pure")]
IMPLS.append(
    pytest.param(_compiled, id="compiled")
    if _compiled is not None
    else pytest.param(
        None, id="compiled", marks=pytest.mark.skip(reason="hotpath._route is not built")
    )
)

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
    args = {
        "pool": [0, 1, 2, 3],
        "strategy": R.VALUE,
        "quality_floor": 0.97,
        "p95_target_ms": 3000.0,
        "warn_usd": 0.01,
        "degrade_usd": 0.02,
        "block_usd": 0.05,
        "never_block": False,
        "degrade_mode": R.DEGRADE_MODEL,
        "input_tokens": 1000,
        "max_output": 500,
        "needs": 0,
        **kw,
    }
    order, action, max_tokens, cost = impl.decide(t, **args)
    return [NAMES[i] for i in order], action, max_tokens, cost


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
        # smart costs 0.024 >= 0.02 cap: behind every candidate under the cap
        assert order == ["tiny", "mid", "cheap", "smart"]

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
        assert run(impl, t, strategy=R.QUALITY, input_tokens=20000, max_output=1000)[1] == R.BLOCK
        assert (
            run(impl, t, strategy=R.QUALITY, input_tokens=20000, max_output=1000, never_block=True)[
                1
            ]
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
    models=st.lists(_models, min_size=1, max_size=16),
    data=st.data(),
    strategy=st.sampled_from([R.QUALITY, R.VALUE, R.LATENCY]),
    floor=st.floats(0.8, 1.0),
    thresholds=st.tuples(st.floats(0, 0.05), st.floats(0, 0.1), st.floats(0, 0.2)),
    never_block=st.booleans(),
    mode=st.sampled_from([R.DEGRADE_MODEL, R.DEGRADE_MAX_TOKENS]),
    input_tokens=st.integers(0, 200_000),
    max_output=st.integers(1, 20_000),
    needs=st.integers(0, 7),
)
def test_twins_agree_exactly(
    models, data, strategy, floor, thresholds, never_block, mode, input_tokens, max_output, needs
) -> None:
    if _compiled is None:
        pytest.skip("hotpath._route is not built")
    pool = data.draw(st.permutations(list(range(len(models)))))
    results = []
    for impl in (_compiled, R):
        t = impl.CandidateTable(len(models))
        for i, (pin, pout, q, window, caps, state, p95, failed) in enumerate(models):
            t.set_model(i, pin, pout, q, window, caps)
            t.set_health(i, state, p95, failed)
        warn, degrade, block = sorted(thresholds)
        results.append(
            impl.decide(
                t,
                list(pool),
                strategy,
                floor,
                3000.0,
                warn,
                degrade,
                block,
                never_block,
                mode,
                input_tokens,
                max_output,
                needs,
            )
        )
    assert results[0] == results[1]
