"""Relay one chat request to its provider and the answer back, in the caller's dialect.

Decide, then act: the request is checked and its upstream call built without
I/O (``plan_chat``); then ``relay_chat`` streams from the provider. The
client's response does not start until the first content token has arrived
(events before it are held back), so that an error before that point is still
a clean error status in the caller's dialect, and later a failover. After
bytes reached the client, a failure ends the stream with a dialect-correct
error event: a truncated answer is never presented as complete.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from edge.budget.pricing import Tokens, cost_usd, split_usage
from edge.budget.spend import Hold
from edge.dialects import anthropic as anthropic_dialect
from edge.dialects import openai as openai_dialect
from edge.dialects.common import NEEDS_JSON, ChatInfo, StreamState, estimate_inputs
from edge.dialects.translate import TranslatingStream
from edge.errors import InvalidRequest, MalformedJSON, NotFound, UnsupportedMediaType, UpstreamError
from edge.policy import ALIASES, Model, Policy, Provider, Tier
from edge.routing.decide import Decision, Router
from edge.routing.race import Attempt, Call, Race, Shared, Timing
from hotpath.tokens import estimate_request_tokens

if TYPE_CHECKING:
    from edge.server.protocol import EdgeProtocol, Request
    from edge.upstream.pool import Exchange, Pool

USER_AGENT = b"llm-edge/0.1"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
JSON_HEADERS = [(b"content-type", b"application/json")]


class Sink(Protocol):
    """Where an answer goes: the client's connection, or a job's result."""

    started: bool

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None: ...

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    async def send(self, data: bytes) -> None: ...

    def end(self) -> None: ...


class Capture:
    """A ``Sink`` that keeps a whole answer (jobs run non-streaming)."""

    def __init__(self) -> None:
        self.started = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.started = True
        self.status, self.headers, self.parts = status, headers, [body]

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.status, self.headers = status, headers

    async def send(self, data: bytes) -> None:
        self.parts.append(data)

    def end(self) -> None:
        pass

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


@dataclass(slots=True)
class Outcome:
    """What happened to one request, for the access log and metrics."""

    dialect: str
    provider: str = "-"
    model: str = "-"
    status: int = 0
    error: str = ""
    ttft: float | None = None
    stream: bool = False
    upstream_request_id: str = ""
    attempts: int = 0
    hedged: bool = False
    tier: str = ""
    tokens: Tokens = field(default_factory=Tokens)  # the serving attempt's real usage, by kind
    cost_usd: float = 0.0  # and its price
    served_by: Model | None = None
    wasted: list[tuple[Model, int, int]] = field(default_factory=list)
    tenant: str = ""
    hold: Hold | None = None
    action: str = "ok"  # the cost action taken: ok | warn | degrade | block
    arm: str = ""  # the rollout arm that served it
    json_asked: bool = False
    json_valid: bool = False


@dataclass(slots=True)
class Plan:
    info: ChatInfo
    body: dict[str, Any]
    dialect: ModuleType  # the caller's
    tier: Tier
    decision: Decision
    candidates: list[Model]  # the order to try them: the primary, then hedges and fallbacks
    first: Call  # the primary's call, built (and so validated) before any I/O
    max_attempts: int = 3
    hedging: bool = True
    action: str = (
        ""  # the final cost action (the request's and the key budget's); "" = the decision's
    )
    budget_used: float | None = None  # projected share of the key's budget, when it has one
    arm: str = ""  # baseline | canary while a rollout is live
    needs: int = 0  # capability bits the request needs (tools, vision, JSON)

    @property
    def timing(self) -> Timing:
        t = self.tier
        return Timing(
            t.soft_timeout_ms / 1000.0,
            t.first_token_timeout_ms / 1000.0,
            t.idle_timeout_ms / 1000.0,
            t.total_timeout_ms / 1000.0,
            self.max_attempts,
            self.hedging,
        )


def parse_json(req: Request) -> Any:
    ctype = req.headers.get(b"content-type", b"")
    if not ctype.split(b";", 1)[0].strip().lower() == b"application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from None


def upstream_headers(provider: Provider, req: Request, body_len: int) -> list[tuple[bytes, bytes]]:
    host = provider.host if provider.port in (80, 443) else f"{provider.host}:{provider.port}"
    headers = [
        (b"host", host.encode()),
        (b"content-type", b"application/json"),
        (b"accept", b"text/event-stream"),
        (b"user-agent", USER_AGENT),
        (b"x-request-id", req.request_id.encode()),
        (b"content-length", b"%d" % body_len),
    ]
    key = provider.api_key.value.encode()
    if provider.kind == "anthropic":
        version = req.headers.get(b"anthropic-version") or provider.anthropic_version.encode()
        headers += [(b"x-api-key", key), (b"anthropic-version", version)]
        beta = req.headers.get(b"anthropic-beta")
        if beta:
            headers.append((b"anthropic-beta", beta))
    else:
        headers.append((b"authorization", b"Bearer " + key))
    return headers


def tier_for(policy: Policy, req: Request, key_tier: str | None) -> str:
    """The request's tier: the ``x-edge-tier`` header, else the key's default, else the policy's."""
    asked = req.headers.get(b"x-edge-tier")
    if asked is not None:
        name = asked.decode("latin-1")
        if name not in policy.tiers:
            raise InvalidRequest(
                f"x-edge-tier: unknown tier {name!r}; configured: {', '.join(sorted(policy.tiers))}",
                param="x-edge-tier",
            )
        return name
    if key_tier and key_tier in policy.tiers:
        return key_tier
    return policy.default_tier


def resolve_model(policy: Policy, name: str, tier: str) -> Model:
    """A configured model, or a route alias (``auto``, ``L0``..) resolved through its tier.

    An alias resolves to the first model of the tier's pool: the model whose
    defaults (max_tokens) the estimate uses; the decision then orders the pool.
    """
    if name in ALIASES and (name == "auto" or name in policy.tiers):
        pool = policy.tiers[tier].pool
        if not pool:
            raise NotFound(
                f"tier {tier} has no models in its pool", param="model", code="model_not_found"
            )
        name = pool[0]
    model = policy.models.get(name)
    if model is None:
        raise NotFound(
            f"The model `{name}` does not exist or is not configured on this gateway.",
            param="model",
            code="model_not_found",
        )
    return model


_DIALECTS: dict[str, ModuleType] = {"openai": openai_dialect, "anthropic": anthropic_dialect}


def plan_chat(
    policy: Policy,
    router: Router,
    req: Request,
    dialect: ModuleType,
    key_tier: str | None = None,
    *,
    max_attempts: int = 3,
    hedging: bool = True,
    force: str = "",
) -> Plan:
    """Everything about the upstream calls, decided before any I/O."""
    body = parse_json(req)
    info: ChatInfo = dialect.check_request(body)
    tier = tier_for(policy, req, key_tier)
    if info.model in ALIASES and info.model in policy.tiers:
        tier = info.model  # a tier alias as the model ("L0") names the tier itself
    first = resolve_model(policy, info.model, tier)  # the named model, or the alias's first in pool
    named = None if info.model in ALIASES else first
    parts, messages, needs, max_out = estimate_inputs(body)
    tier_ = policy.tiers[tier]
    expected = max_out or router.expected_output(tier_, named)
    decision = router.decide(tier_, named, parts, messages, needs, expected, force)
    if decision.degraded.startswith("max_tokens="):
        body = with_max_tokens(body, dialect, decision.max_tokens)
    candidates = decision.order or [first]
    call = build_call(policy, req, dialect, info, body, candidates[0])
    return Plan(
        info,
        body,
        dialect,
        policy.tiers[tier],
        decision,
        candidates,
        call,
        max_attempts,
        hedging,
        needs=needs,
    )


def with_max_tokens(body: dict[str, Any], dialect: ModuleType, max_tokens: int) -> dict[str, Any]:
    """The request with its output capped (a degrade by max_tokens)."""
    out = dict(body)
    if dialect is anthropic_dialect or "max_tokens" in out:
        out["max_tokens"] = max_tokens
    else:
        out["max_completion_tokens"] = max_tokens
    return out


def build_call(
    policy: Policy,
    req: Request,
    dialect: ModuleType,
    info: ChatInfo,
    body: dict[str, Any],
    model: Model,
) -> Call:
    """The upstream request for one candidate, translated when its provider speaks the other
    dialect; raises ``InvalidRequest`` when the candidate cannot honour the request."""
    provider = policy.providers[model.provider]
    upstream = _DIALECTS[provider.kind]
    if upstream is dialect:
        payload: bytes = dialect.upstream_body(body, model.upstream_model)
    else:
        canonical = dialect.to_canonical(body, provider.kind)
        if upstream is anthropic_dialect:
            out = anthropic_dialect.from_canonical(
                canonical, model.upstream_model, model.default_max_tokens
            )
        else:
            out = openai_dialect.from_canonical(canonical, model.upstream_model)
        payload = orjson.dumps(out)
    path = b"/chat/completions" if provider.kind == "openai" else b"/v1/messages"
    target = provider.path_prefix.encode() + path
    return Call(
        model,
        provider,
        target,
        upstream_headers(provider, req, len(payload)),
        payload,
        upstream,
        _stream_state(dialect, upstream, info),
    )


def _stream_state(dialect: ModuleType, upstream: ModuleType, info: ChatInfo) -> StreamState:
    if upstream is not dialect:
        return TranslatingStream(
            upstream.NAME, dialect.NAME, stream=info.stream, include_usage=info.include_usage
        )
    if dialect is anthropic_dialect:
        return anthropic_dialect.AnthropicStream(stream=info.stream)
    return openai_dialect.OpenAIStream(stream=info.stream, include_usage=info.include_usage)


def answer_headers(plan: Plan, winner: Attempt, race: Race) -> list[tuple[bytes, bytes]]:
    d = plan.decision
    call = winner.call
    out = [
        (b"x-edge-cost-estimate-usd", b"%.6f" % d.cost_usd),
        (b"x-edge-tier", plan.tier.name.encode()),
        (b"x-edge-provider", call.provider.name.encode()),
        (b"x-edge-model", call.model.name.encode()),
        (b"x-edge-hedged", b"true" if race.hedged else b"false"),
        (b"x-edge-attempts", b"%d" % len(race.attempts)),
    ]
    action = plan.action or d.action
    if action != "ok":
        out.append((b"x-edge-budget-action", action.encode()))
    if d.degraded:
        out.append((b"x-edge-degraded", d.degraded.encode()))
    if plan.budget_used is not None:
        out.append((b"x-edge-budget-used", b"%.4f" % plan.budget_used))
    if plan.arm:
        out.append((b"x-edge-rollout-arm", plan.arm.encode()))
    if winner.upstream_id:
        out.append((b"x-edge-upstream-request-id", winner.upstream_id.encode("latin-1")))
    return out


def _served(out: Outcome, winner: Attempt) -> None:
    """The serving attempt's usage split by kind and priced, once for the header, the log,
    the metrics and the ledger (a broken stream is billed for what it produced)."""
    out.tokens = split_usage(winner.state.usage)
    out.cost_usd = cost_usd(winner.call.model, out.tokens)


async def relay_chat(
    shared: Shared,
    pool: Pool,
    policy: Policy,
    plan: Plan,
    req: Request,
    proto: Sink,
    out: Outcome,
) -> None:
    """Race the candidates to a first token, then stream the winner's answer to the client.

    A non-streaming client has seen nothing until the answer is whole, so a
    winner that breaks later is raced again from the start on the candidates
    left; a streaming client has, so its stream ends with an error event."""
    out.stream, out.tier = plan.info.stream, plan.tier.name

    async def connect(call: Call, idle_timeout_s: float) -> Exchange:
        p = call.provider
        ex = pool.exchange(
            (p.scheme, p.host, p.port),
            b"POST",
            call.target,
            call.headers,
            call.body,
            idle_timeout_s,
        )
        return await ex.open()

    def prepare(model: Model) -> Call:
        return build_call(policy, req, plan.dialect, plan.info, plan.body, model)

    race = Race(
        shared,
        plan.candidates,
        prepare,
        connect,
        plan.timing,
        tier=plan.tier.name,
        input_tokens=plan.decision.input_tokens,
        started=req.received_at,
        first_call=plan.first,
    )
    loop = asyncio.get_running_loop()
    try:
        while True:
            winner = await race.run()
            _note(out, winner, race, req)
            timer = loop.call_later(max(0.0, race.deadline - shared.clock()), winner.expire)
            try:
                if plan.info.stream:
                    await _stream(plan, race, winner, proto, out)
                    return
                while not winner.ended:
                    await winner.step()
                answer = winner.state.final_body()
            except UpstreamError as err:
                race.broke(winner, err)
                continue  # nothing reached the client yet: race again on the candidates left
            except BaseException:
                race.abandoned(winner)
                raise
            finally:
                timer.cancel()
            race.finished(winner)
            _served(out, winner)
            out.status = 200
            if plan.needs & NEEDS_JSON:
                out.json_asked, out.json_valid = True, json_answer_ok(answer, plan.dialect)
            headers = answer_headers(plan, winner, race)
            headers.append((b"x-edge-cost-usd", b"%.8f" % out.cost_usd))
            proto.respond(200, JSON_HEADERS + headers, answer)
            return
    finally:
        out.attempts, out.hedged, out.wasted = len(race.attempts), race.hedged, race.wasted


def json_answer_ok(body: bytes, dialect: ModuleType) -> bool:
    """Whether a structured-output answer's text is JSON (the rollout's online quality signal)."""
    try:
        obj = orjson.loads(body)
        if dialect is anthropic_dialect:
            text = "".join(
                b.get("text", "") for b in obj.get("content", []) if b.get("type") == "text"
            )
        else:
            text = obj["choices"][0]["message"]["content"] or ""
        orjson.loads(text)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return False
    return True


def _note(out: Outcome, winner: Attempt, race: Race, req: Request) -> None:
    out.provider, out.model = winner.call.provider.name, winner.call.model.name
    out.served_by = winner.call.model
    out.upstream_request_id = winner.upstream_id
    if winner.first_token_at is not None and winner.state.first_token:
        out.ttft = winner.first_token_at - req.received_at


async def _stream(plan: Plan, race: Race, winner: Attempt, proto: Sink, out: Outcome) -> None:
    state = winner.state
    proto.start(200, SSE_HEADERS + answer_headers(plan, winner, race))
    await proto.send(winner.take_held())
    try:
        while not winner.ended:
            piece = await winner.step()
            if piece:
                await proto.send(piece)
    except UpstreamError as err:
        # bytes reached the client: no retry, and never a clean end on a truncated answer
        race.broke(winner, err)
        _served(out, winner)
        out.status, out.error = 502, type(err).__name__
        await proto.send(state.error_event(err))
        proto.end()
        return
    race.finished(winner)
    _served(out, winner)
    out.status = 200
    proto.end()


async def relay_count_tokens(
    policy: Policy, pool: Pool, req: Request, proto: EdgeProtocol, out: Outcome
) -> None:
    body = parse_json(req)
    info = anthropic_dialect.check_request(body, count_only=True)
    model = policy.models.get(info.model)
    if model is None:
        raise NotFound(
            f"model: {info.model} is not configured on this gateway",
            param="model",
            code="model_not_found",
        )
    provider = policy.providers[model.provider]
    out.provider, out.model = provider.name, model.name
    if provider.kind != "anthropic":
        # No count endpoint on this provider: answer from the local estimate.
        out.status = 200
        proto.respond(
            200, JSON_HEADERS, b'{"input_tokens":%d}' % estimate_input_tokens(body, model)
        )
        return
    payload = anthropic_dialect.count_body(body, model.upstream_model)
    headers = upstream_headers(provider, req, len(payload))
    target = provider.path_prefix.encode() + b"/v1/messages/count_tokens"
    async with pool.exchange(
        (provider.scheme, provider.host, provider.port), b"POST", target, headers, payload
    ) as ex:
        head = await ex.head()
        raw = await ex.read_all()
    if head.status_code != 200:
        raise anthropic_dialect.error_from_upstream(head.status_code, raw, list(head.headers))
    out.status = 200
    proto.respond(200, JSON_HEADERS, raw)


def estimate_input_tokens(body: dict[str, Any], model: Model) -> int:
    """The compiled estimator's count (cl100k_base units) in the model's own tokens."""
    parts, messages, _, _ = estimate_inputs(body)
    return max(1, estimate_request_tokens(parts, messages, model.token_factor))
