"""Prices by token kind, and the policy's price and budget checks."""

from __future__ import annotations

import pytest

from edge.budget.pricing import Tokens, cost_usd, split_usage
from edge.policy import Model, PolicyError, parse_policy


def test_usage_of_either_provider_is_priced_by_kind() -> None:
    m = Model("m", "p", 2.0, 8.0, 0.5, 2.5, 0.9, 1000, 100, 100, (), "m")
    oa = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    an = {
        "input_tokens": 600,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 200,
        "output_tokens": 100,
    }
    assert split_usage(oa) == Tokens(600, 400, 0, 100)
    assert split_usage(an) == Tokens(600, 400, 200, 100)
    assert cost_usd(m, split_usage(oa)) == pytest.approx((600 * 2 + 400 * 0.5 + 100 * 8) / 1e6)
    assert cost_usd(m, split_usage(an)) == pytest.approx(
        (600 * 2 + 400 * 0.5 + 200 * 2.5 + 100 * 8) / 1e6
    )
    assert split_usage(None) == Tokens()
    # the Responses API: input_tokens holds the cached part, as prompt_tokens does
    resp = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 0},
        "output_tokens": 100,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 1100,
    }
    assert split_usage(resp) == Tokens(600, 400, 0, 100)
    assert cost_usd(m, split_usage(resp)) == cost_usd(m, split_usage(oa))
    assert split_usage({"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}) == Tokens(
        10, 0, 0, 2
    )


BASE = {
    "providers": {"p": {"kind": "openai", "base_url": "http://x/v1"}},
    "models": {
        "m": {
            "provider": "p",
            "input_usd_per_mtok": 1.0,
            "output_usd_per_mtok": 2.0,
            "context_window": 1000,
        }
    },
    "tiers": {"L1": {"pool": ["m"]}},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"models": {"m": {"provider": "p", "input_usd_per_mtok": 1.0, "context_window": 9}}},
            "models.m.output_usd_per_mtok: required",
        ),
        ({"budgets": {"acme": {"warn": 0.5}}}, "budgets.acme: set day_usd, month_usd or both"),
        (
            {"budgets": {"acme": {"day_usd": 1.0, "warn": 0.9, "degrade": 0.5}}},
            "budgets.acme: thresholds",
        ),
        ({"tiers": {"L1": {"pool": ["m"], "degrade_mode": "cheaper"}}}, "tiers.L1.degrade_mode"),
        (
            {"tiers": {"L1": {"pool": ["m"], "warn_usd": 0.5, "block_usd": 0.1}}},
            "tiers.L1: thresholds",
        ),
        ({"jobs": {"webhook_url": "ftp://x"}}, "jobs.webhook_url"),
    ],
)
def test_price_and_budget_mistakes_fail_the_start(change: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy({**BASE, **change}, {})


def test_budgets_and_never_block_parse() -> None:
    p = parse_policy(
        {
            **BASE,
            "budgets": {"acme": {"day_usd": 5.0}, "default": {"month_usd": 50.0}},
            "tiers": {"L1": {"pool": ["m"], "never_block": True}},
        },
        {"EDGE_L1_NEVER_BLOCK": "false"},
    )
    assert p.tiers["L1"].never_block is False  # the environment wins
    acme, someone = p.budget_for("acme"), p.budget_for("someone")
    assert acme is not None and acme.day_usd == 5.0
    assert someone is not None and someone.month_usd == 50.0 and someone.tenant == "default"
