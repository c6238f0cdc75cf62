"""A request's needs in either dialect, and the models that can carry them."""

from __future__ import annotations

from edge.policy import load_policy
from edge.routing.capabilities import KIND_DEFAULTS, bits, names_of, needs_of
from edge.routing.decide import Router

HELLO = [{"role": "user", "content": "hi"}]


def test_needs_of_each_kind_of_request() -> None:
    cases = [
        ({"messages": HELLO}, "openai", []),
        ({"messages": HELLO, "tools": [{"type": "function", "function": {"name": "f"}}]}, "openai", ["tools"]),
        ({"messages": HELLO, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "anthropic", ["server_tools"]),
        ({"messages": HELLO, "thinking": {"type": "enabled", "budget_tokens": 2048}}, "anthropic", ["thinking"]),
        ({"messages": HELLO, "thinking": {"type": "disabled"}}, "anthropic", []),
        ({"messages": HELLO, "top_k": 5}, "anthropic", ["top_k"]),
        ({"messages": HELLO, "stop": list("abcde")}, "openai", ["stop_many"]),
        ({"messages": HELLO, "stop_sequences": list("abcde")}, "anthropic", []),
        ({"messages": HELLO, "stop": list("abcd")}, "openai", []),
        ({"messages": HELLO, "n": 2, "logprobs": True, "seed": 1}, "openai", ["logprobs", "n", "seed"]),
        ({"messages": HELLO, "response_format": {"type": "json_object"}}, "openai", ["json"]),
        ({"messages": HELLO, "output_format": {"type": "json_schema", "schema": {}}}, "anthropic", ["json"]),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "anthropic", ["vision"]),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "anthropic", ["documents"]),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]}, "anthropic", ["prompt_cache"]),
        ({"messages": [*HELLO, {"role": "assistant", "content": "The answer is"}]}, "anthropic", ["prefill"]),
        ({"messages": [*HELLO, {"role": "assistant", "content": "earlier turn"}]}, "openai", []),
    ]  # fmt: skip
    for body, dialect, want in cases:
        assert sorted(names_of(needs_of(body, dialect))) == sorted(want), body


def test_kind_defaults_and_the_policy_override() -> None:
    policy = load_policy("", {})
    assert policy.models["gpt-4o"].capabilities == bits(KIND_DEFAULTS["openai"])
    assert policy.models["claude-haiku-4-5"].capabilities == bits(KIND_DEFAULTS["anthropic"])


def test_every_route_keeps_only_models_that_can_carry_the_request() -> None:
    policy = load_policy("", {})
    router = Router(policy)
    thinking = needs_of({"messages": HELLO, "thinking": {"type": "enabled"}}, "anthropic")
    for tier in ("L0", "L1", "L2"):
        d = router.decide(policy.tiers[tier], None, [b"hi"], 1, thinking, 512)
        assert d.order and all(m.provider == "anthropic" for m in d.order)
    n2 = needs_of({"messages": HELLO, "n": 3}, "openai")
    d = router.decide(policy.tiers["L1"], None, [b"hi"], 1, n2, 512)
    assert d.order and all(m.provider == "openai" for m in d.order)
    # a degrade never lands on a model that cannot carry it: force the cheapest
    d = router.decide(policy.tiers["L0"], None, [b"hi"], 1, thinking, 512, force="cheapest")
    assert d.order and all(m.provider == "anthropic" for m in d.order)
