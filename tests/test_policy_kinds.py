"""A model's ``kind``: chat or embedding, checked at the start, never crossing routes."""

from __future__ import annotations

from typing import Any

import pytest

from edge.policy import PolicyError, load_policy, parse_policy

CHAT = {
    "provider": "oa",
    "input_usd_per_mtok": 1.0,
    "output_usd_per_mtok": 2.0,
    "context_window": 9,
}
EMB = {
    "provider": "oa",
    "kind": "embedding",
    "input_usd_per_mtok": 0.02,
    "output_usd_per_mtok": 0,
    "context_window": 8192,
}


def policy(models: dict[str, Any], pool: list[str]) -> dict[str, Any]:
    return {
        "providers": {
            "oa": {"kind": "openai", "base_url": "http://x/v1"},
            "an": {"kind": "anthropic", "base_url": "http://y"},
        },
        "models": models,
        "tiers": {"L1": {"pool": pool}},
    }


def test_kinds_parse_and_default_to_chat() -> None:
    p = parse_policy(policy({"c": CHAT, "e": EMB}, ["c"]), {})
    assert p.models["c"].kind == "chat" and p.models["e"].kind == "embedding"


def test_the_shipped_policy_prices_the_embedding_models() -> None:
    p = load_policy("", {})
    small, large = p.models["text-embedding-3-small"], p.models["text-embedding-3-large"]
    assert (small.kind, small.input_usd_per_mtok, small.output_usd_per_mtok) == (
        "embedding",
        0.02,
        0.0,
    )
    assert (large.kind, large.input_usd_per_mtok) == ("embedding", 0.13)
    assert all(p.models[m].kind == "chat" for t in p.tiers.values() for m in t.pool)


@pytest.mark.parametrize(
    ("models", "pool", "message"),
    [
        ({"c": CHAT, "e": {**EMB, "kind": "vision"}}, ["c"], "models.e.kind: must be one of"),
        ({"c": CHAT, "e": {**EMB, "output_usd_per_mtok": 0.1}}, ["c"], "an embedding model's"),
        ({"c": CHAT, "e": {**EMB, "provider": "an"}}, ["c"], "needs an openai-kind provider"),
        ({"c": CHAT, "e": EMB}, ["c", "e"], "tiers.L1.pool: 'e' is an embedding model"),
        ({"c": {**CHAT, "fallbacks": ["e"]}, "e": EMB}, ["c"], "models.c.fallbacks: 'e'"),
        ({"c": CHAT, "e": {**EMB, "fallbacks": ["c"]}}, ["c"], "models.e.fallbacks: 'c'"),
        ({"c": CHAT, "e": {**EMB, "knd": "embedding"}}, ["c"], "did you mean 'kind'"),
    ],
)
def test_kind_mistakes_fail_the_start(
    models: dict[str, Any], pool: list[str], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(policy(models, pool), {})
