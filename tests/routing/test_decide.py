"""The Router on the shipped policy: aliases, named models, capabilities, live latency."""

from __future__ import annotations

import pytest

from edge.policy import load_policy
from edge.routing.decide import Router

POLICY = load_policy("", {})
HELLO = [b"You are helpful.", b"What is the capital of France?"]


def names(decision: object) -> list[str]:
    return [m.name for m in decision.order]  # type: ignore[attr-defined]


def test_alias_takes_the_tiers_strategy() -> None:
    r = Router(POLICY)
    l1 = r.decide(POLICY.tiers["L1"], None, HELLO, 2, 0, 512)
    assert names(l1)[0] == "gpt-4o-mini"  # value: the cheapest that meets the 0.97 floor
    l0 = r.decide(POLICY.tiers["L0"], None, HELLO, 2, 0, 512)
    assert names(l0)[0] == "claude-sonnet-4-6"  # quality first
    assert l1.action == "ok" and l1.input_tokens > 10 and 0 < l1.cost_usd < 0.001


def test_named_model_first_then_its_fallbacks() -> None:
    r = Router(POLICY)
    d = r.decide(POLICY.tiers["L1"], POLICY.models["gpt-4.1-mini"], HELLO, 2, 0, 512)
    assert names(d)[:2] == ["gpt-4.1-mini", "claude-haiku-4-5"]
    assert set(names(d)) == {"gpt-4.1-mini", "claude-haiku-4-5", "gpt-4o-mini"}


def test_live_latency_moves_a_slow_model_back() -> None:
    r = Router(POLICY)
    for i in range(50):
        r.record_ttft("gpt-4o-mini", 4.5, now=float(i))  # over the 3 s target
    r.refresh(now=50.0)
    assert names(r.decide(POLICY.tiers["L1"], None, HELLO, 2, 0, 512))[0] == "gpt-4.1-mini"


def test_cost_actions_are_reported() -> None:
    r = Router(POLICY)
    huge = [b"word " * 40000]
    # gpt-4o would cost $0.14 (over L1's $0.05 block): the cheapest meeting the floor serves
    d = r.decide(POLICY.tiers["L1"], POLICY.models["gpt-4o"], huge, 1, 0, 4096)
    assert d.action == "degrade" and d.degraded == "model" and names(d)[0] == "gpt-4o-mini"
    assert "gpt-4o" not in names(d) and all(
        r.table.cost(r.index[n], d.input_tokens, 4096) <= d.cap_usd for n in names(d)
    )
    # even the cheapest is over it: block
    huger = [b"word " * 400_000]
    d = r.decide(POLICY.tiers["L1"], POLICY.models["gpt-4.1"], huger, 1, 0, 4096)
    assert d.action == "block"
    assert r.decide(POLICY.tiers["L2"], None, [b"hi"], 1, 0, 16).action == "ok"


def test_token_factor_scales_the_input_cost() -> None:
    import dataclasses

    haiku = POLICY.models["claude-haiku-4-5"]
    scaled = dataclasses.replace(
        POLICY, models={**POLICY.models, haiku.name: dataclasses.replace(haiku, token_factor=1.5)}
    )
    plain = Router(POLICY).decide(POLICY.tiers["L1"], haiku, HELLO, 2, 0, 0)
    more = Router(scaled).decide(scaled.tiers["L1"], scaled.models[haiku.name], HELLO, 2, 0, 0)
    assert plain.input_tokens == more.input_tokens
    assert more.cost_usd == pytest.approx(plain.cost_usd * 1.5)
