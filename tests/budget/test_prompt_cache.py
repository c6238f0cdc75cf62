"""Prompt-cache prefixes: what a provider holds, priced as cache reads (no I/O, a fake clock)."""

from __future__ import annotations

from typing import Any

from edge.budget.prompt_cache import MIN_TOKENS, PrefixMemory, prefix_of
from edge.policy import load_policy
from edge.routing.decide import Router
from hotpath.tokens import OVER_BASE, estimate_text_tokens

SYSTEM = "You are a careful coding agent. Follow the repository's conventions. " * 400
TOOLS = [
    {"name": f"tool_{i}", "description": "does a thing " * 20, "input_schema": {"type": "object"}}
    for i in range(15)
]


def agent_turn(question: str, *, ttl: str | None = None) -> dict[str, Any]:
    mark: dict[str, Any] = {"type": "ephemeral"}
    if ttl:
        mark["ttl"] = ttl
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": mark}],
        "tools": TOOLS,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": question, "cache_control": mark}],
            }
        ],
    }


def test_breakpoints_give_prefixes_longest_first_and_short_prompts_none() -> None:
    prefixes = prefix_of(agent_turn("fix the bug"), estimate_text_tokens)
    assert [p.explicit for p in prefixes] == [True, True]  # the question's, the system's
    assert prefixes[0].tokens > prefixes[1].tokens >= MIN_TOKENS
    assert prefix_of({"messages": [{"role": "user", "content": "hi"}]}, estimate_text_tokens) == []


def test_the_system_prompt_stays_warm_while_the_last_breakpoint_moves() -> None:
    memory = PrefixMemory()
    first = prefix_of(agent_turn("fix the bug"), estimate_text_tokens)
    assert memory.cached("sonnet", True, first, now=0.0) == 0  # cold
    memory.sent("sonnet", True, first, now=0.0)
    again = prefix_of(agent_turn("now add a test"), estimate_text_tokens)
    system_only = first[1].tokens
    assert memory.cached("sonnet", True, again, now=60.0) == system_only
    assert memory.cached("haiku", True, again, now=60.0) == 0  # another model: its own cache
    assert memory.cached("sonnet", True, again, now=301.0) == 0  # the 5-minute lifetime passed


def test_a_one_hour_breakpoint_and_hits_renew_the_lifetime() -> None:
    memory = PrefixMemory()
    turn = prefix_of(agent_turn("q", ttl="1h"), estimate_text_tokens)
    memory.sent("m", True, turn, now=0.0)
    assert memory.cached("m", True, turn, now=3000.0) == turn[0].tokens
    memory.sent("m", True, turn, now=3000.0)
    assert memory.cached("m", True, turn, now=6000.0) == turn[0].tokens


def test_openai_caches_automatically_in_128_token_steps_anthropic_only_breakpoints() -> None:
    body = {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "first question"},
        ]
    }
    (auto,) = prefix_of(body, estimate_text_tokens)
    assert not auto.explicit and auto.tokens % 128 == 0 and auto.tokens >= MIN_TOKENS
    memory = PrefixMemory()
    memory.sent("gpt", False, [auto], now=0.0)
    memory.sent("claude", True, [auto], now=0.0)
    assert memory.cached("gpt", False, [auto], now=10.0) == auto.tokens
    assert memory.cached("claude", True, [auto], now=10.0) == 0


def test_memory_is_bounded() -> None:
    memory = PrefixMemory(capacity=10)
    for i in range(50):
        body = {
            "messages": [
                {"role": "user", "content": SYSTEM + str(i)},
                {"role": "user", "content": "x"},
            ]
        }
        memory.sent(f"m{i}", False, prefix_of(body, estimate_text_tokens), now=0.0)
    assert len(memory._until) == 10


def test_the_router_prices_a_warm_prefix_at_the_cache_read_price() -> None:
    policy = load_policy("", {})
    router = Router(policy)
    body = agent_turn("fix the bug")
    prefixes = prefix_of(body, estimate_text_tokens)
    parts = [SYSTEM.encode(), b"fix the bug"]
    sonnet, tier = policy.models["claude-sonnet-4-6"], policy.tiers["L0"]
    cold = router.decide(tier, sonnet, parts, 1, 0, 512, prefixes=prefixes, now=0.0)
    router.sent(sonnet, prefixes, now=0.0)
    warm = router.decide(tier, sonnet, parts, 1, 0, 512, prefixes=prefixes, now=10.0)
    cached = prefixes[0].tokens
    factor = OVER_BASE[sonnet.tokenizer]  # the estimate is in o200k tokens; Claude counts more
    saved = cached * factor * (sonnet.input_usd_per_mtok - sonnet.cached_input_usd_per_mtok) / 1e6
    assert abs((cold.cost_usd - warm.cost_usd) - saved) < 1e-9
