"""``POST /v1/embeddings``: passed through to an OpenAI-kind provider, accounted like chat.

Decide, then act: ``check_embeddings`` validates the body against OpenAI's
limits and ``plan_embeddings`` picks the model and prices its estimate,
both without I/O; ``relay_embeddings`` then checks the key, reserves the
estimate against the key's budget, makes one non-streaming call through the
pooled client and answers with the provider's body as it is.

Invariants: only a model of ``kind = "embedding"`` (on an OpenAI-kind
provider, as the policy guarantees) serves this route, and no chat route
ever reaches one. One attempt, no hedging or failover: an embedding call is
short and idempotent, so a failure is the client's to retry (its SDK does).
The answer's ``usage.prompt_tokens`` is billed as a ledger row of kind
``answer``; a provider's error status is re-expressed as chat's are, a
refused provider key never reaches the caller with its text.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from edge.budget.pricing import Tokens, cost_usd
from edge.dialects import openai as openai_dialect
from edge.errors import InvalidRequest, NotFound, OverBudget, OverCostCap
from edge.policy import Model, Policy, Provider, Tier
from edge.routing.race import Charge
from edge.server.relay import (
    JSON_HEADERS,
    check_entitled,
    parse_json,
    tier_for,
    upstream_headers,
)
from hotpath.tokens import estimate_text_tokens

if TYPE_CHECKING:
    from edge.budget.spend import Spend
    from edge.server.auth import Keyring
    from edge.server.protocol import Request
    from edge.server.relay import Outcome, Sink
    from edge.upstream.pool import Pool

MAX_ITEMS = 2048  # array items per request
MAX_INPUT_TOKENS = 8192  # per input
MAX_TOTAL_TOKENS = 300_000  # per request
ENCODINGS = ("float", "base64")
# 2048 inputs x 3072 dimensions as JSON floats is about 130 MB: the largest answer possible
MAX_ANSWER_BYTES = 192 * 1024 * 1024
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')


@dataclass(frozen=True, slots=True)
class EmbeddingAsk:
    """A checked request: its model, its text inputs and the tokens it gave as ids."""

    model: str
    texts: tuple[bytes, ...]  # the string inputs, UTF-8
    token_ids: int  # how many token ids the token-array inputs hold (exact)


@dataclass(frozen=True, slots=True)
class EmbeddingPlan:
    model: Model
    provider: Provider
    tier: Tier
    input_tokens: int  # estimated (exact for token ids)
    cost_usd: float  # the estimate's price
    payload: bytes  # the upstream body


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _token_ids(item: list[Any], where: str) -> int:
    if not item:
        raise _bad(f"{where}: must not be an empty array of token ids", "input")
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item):
        raise _bad(f"{where}: token ids must be non-negative integers", "input")
    if len(item) > MAX_INPUT_TOKENS:
        raise _bad(
            f"{where}: {len(item)} tokens, more than the {MAX_INPUT_TOKENS} an input may have",
            "input",
        )
    return len(item)


def check_embeddings(body: Any) -> EmbeddingAsk:
    """The request as OpenAI would accept it, or a 400 naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body: expected a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: required, a non-empty string", "model")
    if "input" not in body:
        raise _bad("input: required", "input")
    given = body["input"]
    texts: list[bytes] = []
    ids = 0
    if isinstance(given, str):
        if not given:
            raise _bad("input: must not be an empty string", "input")
        texts.append(given.encode())
    elif isinstance(given, list):
        if not given:
            raise _bad("input: must not be an empty array", "input")
        if len(given) > MAX_ITEMS:
            raise _bad(
                f"input: {len(given)} items, more than the {MAX_ITEMS} a request may have",
                "input",
            )
        first = given[0]
        if isinstance(first, int) and not isinstance(first, bool):
            ids = _token_ids(given, "input")  # one input, as token ids
        elif isinstance(first, str):
            for i, item in enumerate(given):
                if not isinstance(item, str):
                    raise _bad(f"input[{i}]: expected a string, as the other items", "input")
                if not item:
                    raise _bad(f"input[{i}]: must not be an empty string", "input")
                texts.append(item.encode())
        elif isinstance(first, list):
            for i, item in enumerate(given):
                if not isinstance(item, list):
                    raise _bad(f"input[{i}]: expected an array of token ids", "input")
                ids += _token_ids(item, f"input[{i}]")
        else:
            raise _bad("input[0]: expected a string, a token id or an array of token ids", "input")
    else:
        raise _bad(
            "input: expected a string, an array of strings, an array of token ids or an "
            "array of token-id arrays",
            "input",
        )
    if ids > MAX_TOTAL_TOKENS:
        raise _bad(
            f"input: {ids} tokens, more than the {MAX_TOTAL_TOKENS} a request may have", "input"
        )
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise _bad(f"encoding_format: must be one of {', '.join(ENCODINGS)}", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
    ):
        raise _bad("dimensions: must be a positive integer", "dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user: must be a string", "user")
    return EmbeddingAsk(model, tuple(texts), ids)


def plan_embeddings(
    policy: Policy, body: dict[str, Any], ask: EmbeddingAsk, tier: Tier
) -> EmbeddingPlan:
    """The embedding model that serves ``ask``, its estimate and the upstream body."""
    model = policy.model_named(ask.model)
    if model is None:
        raise NotFound(
            f"The model `{ask.model}` does not exist or is not configured on this gateway.",
            param="model",
            code="model_not_found",
        )
    provider = policy.providers[model.provider]
    if provider.kind != "openai":
        raise InvalidRequest(
            f"model: `{ask.model}` is served by {provider.name!r}, an {provider.kind}-kind "
            "provider, which has no embeddings API",
            param="model",
            code="model_not_supported",
        )
    if model.kind != "embedding":
        raise NotFound(
            f"The model `{ask.model}` is not an embedding model on this gateway.",
            param="model",
            code="model_not_found",
        )
    tokens = ask.token_ids + sum(estimate_text_tokens(t, model.tokenizer) for t in ask.texts)
    estimate = tokens * model.input_usd_per_mtok / 1e6
    if estimate > tier.block_usd:
        raise OverCostCap(
            f"the estimated cost ${estimate:.4f} is over tier {tier.name}'s block threshold "
            f"${tier.block_usd:g}; send fewer inputs per request",
            code="cost_over_threshold",
        )
    payload = orjson.dumps({**body, "model": model.upstream_model})
    return EmbeddingPlan(model, provider, tier, tokens, estimate, payload)


def prompt_tokens(answer: bytes) -> int | None:
    """``usage.prompt_tokens`` of an embeddings answer, without parsing its vectors (the
    usage comes last; neither floats nor base64 can hold the key's quotes)."""
    at = answer.rfind(b'"usage"')
    if at < 0:
        return None
    found = _PROMPT_TOKENS.search(answer, at)
    return int(found.group(1)) if found else None


async def relay_embeddings(
    policy: Policy,
    keys: Keyring,
    spend: Spend,
    pool: Pool,
    req: Request,
    proto: Sink,
    out: Outcome,
) -> None:
    """Check, gate, call the provider once, answer with its body, bill its usage."""
    tenant = keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
    out.tenant = tenant.tenant
    body = parse_json(req)
    ask = check_embeddings(body)
    ceiling = tenant.ceiling(policy.default_tier)
    tier = tier_for(policy, req, ask.model, ceiling)
    check_entitled(policy, tier, ceiling)
    plan = plan_embeddings(policy, body, ask, policy.tiers[tier])
    model, provider = plan.model, plan.provider
    out.tier, out.provider, out.model = tier, provider.name, model.name
    hold = spend.hold(tenant.tenant, plan.cost_usd)
    out.hold, out.action = hold, hold.action
    if hold.action == "block":
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(hold.resets_at))
        wait = max(1, int(hold.resets_at - time.time() + 0.999))
        raise OverBudget(
            f"this key's {hold.period} budget would be {hold.fraction:.0%} used; it turns at {when}",
            code="budget_exceeded",
            headers=[(b"retry-after", b"%d" % wait)],
        )
    headers = [
        (name, b"application/json") if name == b"accept" else (name, value)
        for name, value in upstream_headers(provider, req, len(plan.payload))
    ]
    target = provider.path_prefix.encode() + b"/embeddings"
    out.attempts = 1
    async with pool.exchange(
        (provider.scheme, provider.host, provider.port), b"POST", target, headers, plan.payload
    ) as ex:
        head = await ex.head()
        raw = await ex.read_all(MAX_ANSWER_BYTES)
    for name, value in head.headers:
        if name == b"x-request-id":
            out.upstream_request_id = value.decode("latin-1")
    if head.status_code != 200:
        raise openai_dialect.error_from_upstream(head.status_code, raw, list(head.headers))
    used = prompt_tokens(raw)
    tokens = Tokens(input=plan.input_tokens if used is None else used)
    out.served_by, out.tokens = model, tokens
    out.cost_usd = cost_usd(model, tokens)
    out.charges.append(Charge(model, "answer", tokens, True))
    out.status = 200
    answer = [
        (b"x-edge-tier", tier.encode()),
        (b"x-edge-provider", provider.name.encode()),
        (b"x-edge-model", model.name.encode()),
        (b"x-edge-cost-estimate-usd", b"%.6f" % plan.cost_usd),
        (b"x-edge-cost-usd", b"%.8f" % out.cost_usd),
    ]
    if hold.action != "ok":
        answer.append((b"x-edge-budget-action", hold.action.encode()))
    if out.upstream_request_id:
        answer.append((b"x-edge-upstream-request-id", out.upstream_request_id.encode("latin-1")))
    proto.respond(200, JSON_HEADERS + answer, raw)
