"""plan_chat without I/O: the review's edge cases of entitlement, output limits and the first
candidate that can carry a request."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from edge.budget.settle import settle
from edge.dialects.anthropic import DIALECT as anthropic_dialect
from edge.dialects.openai import DIALECT as openai_dialect
from edge.errors import InvalidRequest, TierForbidden
from edge.observe.metrics import Metrics
from edge.policy import load_policy
from edge.routing.decide import Router
from edge.server.protocol import Request
from edge.server.relay import Outcome, check_entitled, plan_chat

POLICY = load_policy("", {})
HELLO = [{"role": "user", "content": "hi"}]


def request(body: dict[str, Any], path: bytes = b"/v1/chat/completions", **headers: str) -> Request:
    hdrs = {b"content-type": b"application/json"}
    hdrs.update({k.encode(): v.encode() for k, v in headers.items()})
    req = Request(b"POST", path, hdrs, "req-test", True)
    req.body = orjson.dumps(body)
    return req


def test_both_openai_output_limits_are_checked_and_lowered_together() -> None:
    router = Router(POLICY)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_completion_tokens": 5}
    with pytest.raises(InvalidRequest, match="max_tokens"):
        plan_chat(POLICY, router, request({**body, "max_tokens": 10**9}), openai_dialect)
    capped = openai_dialect.with_max_tokens({**body, "max_tokens": 900}, 64)
    assert capped["max_tokens"] == capped["max_completion_tokens"] == 64
    # an Anthropic body's limit is its max_tokens alone: an OpenAI field changes nothing
    plan = plan_chat(
        POLICY,
        router,
        request(
            {"model": "claude-haiku-4-5", "messages": HELLO, "max_tokens": 60000,
             "max_completion_tokens": 1},
            b"/v1/messages",
        ),
        anthropic_dialect,
    )  # fmt: skip
    assert plan.decision.max_tokens == POLICY.tiers["L1"].expected_output_tokens


def test_a_key_tier_the_serving_policy_lacks_is_refused_never_let_through() -> None:
    with pytest.raises(TierForbidden):
        check_entitled(POLICY, "L0", "gold")
    check_entitled(POLICY, "L2", "L1")
    with pytest.raises(TierForbidden):
        check_entitled(POLICY, "L0", "L1")


def test_the_first_candidate_that_can_carry_the_request_goes_first() -> None:
    router = Router(POLICY)
    # an Anthropic-only field no capability names: L1's first choice is an OpenAI model,
    # whose translation refuses the field; it is passed over for the Anthropic candidate
    body = {
        "model": "auto",
        "max_tokens": 50,
        "messages": HELLO,
        "output_config": {"effort": "low"},
    }
    plan = plan_chat(POLICY, router, request(body, b"/v1/messages"), anthropic_dialect)
    assert plan.first.model.provider == "anthropic"
    assert plan.candidates[0] is plan.first.model


def test_an_answer_cut_by_its_own_max_tokens_teaches_nothing() -> None:
    router = Router(POLICY)
    spend: Any = type("S", (), {"settle": lambda *a: None})()
    model = POLICY.models["gpt-4o-mini"]
    for output, ceiling in ((1, 1), (7, 7), (40, 0), (30, 100)):
        out = Outcome("openai", status=200, tier="L1", served_by=model, ceiling=ceiling)
        out.tokens = dataclasses.replace(out.tokens, output=output)
        settle(out, "r", 0.0, spend, Metrics(), router)
    learned = router.output[("L1", "gpt-4o-mini")]
    assert learned.count(0.0) == 2  # the two that ended by themselves


def test_betas_pass_refuse_or_stay_behind_by_the_providers_policy() -> None:
    from edge.server.relay import betas_for

    anthropic = POLICY.providers["anthropic"]
    asked = b"prompt-caching-2024-07-31, claude-code-20250219,interleaved-thinking-2025-05-14"
    assert (
        betas_for(anthropic, asked) == b"prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
    )
    with pytest.raises(InvalidRequest, match="web-search-2025-03-05"):
        betas_for(anthropic, b"prompt-caching-2024-07-31,web-search-2025-03-05")
    assert betas_for(anthropic, b"") == b""


def test_a_refused_beta_is_a_400_before_any_call() -> None:
    router = Router(POLICY)
    body = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": HELLO}
    req = request(body, b"/v1/messages", **{"anthropic-beta": "code-execution-2025-08-25"})
    with pytest.raises(InvalidRequest, match="code-execution"):
        plan_chat(POLICY, router, req, anthropic_dialect)
