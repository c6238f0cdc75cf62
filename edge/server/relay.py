"""Relay one chat request to its provider and the answer back, in the caller's dialect.

Decide, then act: the request is checked and its upstream call built without
I/O (``plan_chat``); then ``relay_chat`` streams from the provider. The
client's response does not start until the first content token has arrived
(events before it are held back), so that an error before that point is still
a clean error status in the caller's dialect, and later a failover. After
bytes reached the client, a failure is rescued where the tier allows it: a
fallback continues the answer from the delivered text (``_rescue``,
``edge.routing.rescue``); otherwise, or when that fails, the stream ends with
a dialect-correct error event: a truncated answer is never presented as
complete.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from edge.budget.media import media_tokens
from edge.budget.pricing import Tokens
from edge.budget.prompt_cache import MIN_TOKENS as MIN_CACHED
from edge.budget.prompt_cache import Prefix, prefix_of
from edge.budget.spend import Hold
from edge.dialects import anthropic as anthropic_dialect
from edge.dialects import openai as openai_dialect
from edge.dialects import responses as responses_dialect
from edge.dialects.common import ChatInfo, StreamState, estimate_inputs, output_ceilings
from edge.dialects.core import Dialect, Stream, stream_for
from edge.errors import (
    EdgeError,
    InvalidRequest,
    MalformedJSON,
    NotFound,
    ServiceUnavailable,
    Shed,
    TierForbidden,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamTimeout,
)
from edge.policy import ALIASES, Model, Policy, Provider, Tier
from edge.quality.online import check_answer, parses
from edge.routing.capabilities import PARAMS, names_of, needs_of
from edge.routing.decide import Decision, Router
from edge.routing.quota import Quotas
from edge.routing.race import Attempt, Call, Charge, Race, Shared, Timing, Upstream
from edge.routing.rescue import (
    BROKEN,
    CONTINUED,
    DISABLED,
    NOT_TEXT,
    UNALIGNED,
    UNAVAILABLE,
    Continuation,
    Splice,
    Unaligned,
    continuation,
    usage_of,
)
from edge.server.deadline import ClientDeadline
from edge.server.jsonlimits import check_counts
from hotpath.route import CAP_JSON, CAP_PREFILL
from hotpath.tokens import estimate_request_tokens, estimate_text_tokens

if TYPE_CHECKING:
    from edge.server.protocol import EdgeProtocol, Request
    from edge.upstream.connection import ResponseHead
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
    tokens: Tokens = field(default_factory=Tokens)  # the serving attempt's usage, by kind
    cost_usd: float = 0.0  # and its price
    served_by: Model | None = None
    charges: list[Charge] = field(default_factory=list)  # every attempt's row, the answer's too
    tenant: str = ""
    hold: Hold | None = None
    action: str = "ok"  # the cost action taken: ok | warn | degrade | block
    arm: str = ""  # the rollout arm that served it
    candidates: list[str] = field(default_factory=list)  # the models it could be served by
    path: list[str] = field(default_factory=list)  # its attempts, "model:end:phase"
    cap_usd: float = 0.0  # the cap on every attempt's estimate
    ceiling: int = 0  # the output limit the request set (0: none): an answer that reached it
    # was cut, and teaches nothing about how long answers are
    json_asked: bool = False
    json_valid: bool = False
    state: StreamState | None = None  # the answer's stream state (a Responses answer is kept)
    key_digest: str = ""  # the gateway key's SHA-256 digest (hex): whose answer it is
    task: str = ""  # the request's task label (edge/quality/tasks.py)
    online: str = ""  # the online checks' verdict on the answer: "ok" or the failed check
    rescue: str = ""  # how a rescue after the first byte ended (edge.routing.rescue), if any


@dataclass(slots=True)
class Plan:
    info: ChatInfo
    body: dict[str, Any]
    dialect: Dialect  # the caller's
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
    needs: int = 0  # capability bits the request needs (edge.routing.capabilities)
    prefixes: list[Prefix] = field(default_factory=list)  # its cacheable prompt prefixes
    router: Router | None = None  # told which models took the prefixes
    client: ClientDeadline | None = None  # the client's own deadline (jobs: none)
    quotas: Quotas | None = None  # the worker's provider quotas, when it steers by them

    @property
    def timing(self) -> Timing:
        """The tier's deadlines, or the client's where they are shorter: a read timeout bounds
        a non-streamed answer whole and each gap of a stream."""
        t = self.tier
        soft, first = t.soft_timeout_ms / 1000.0, t.first_token_timeout_ms / 1000.0
        idle, total = t.idle_timeout_ms / 1000.0, t.total_timeout_ms / 1000.0
        c = self.client
        if c is not None:
            if c.total_s is not None:
                total = min(total, c.total_s)
            if c.read_s is not None:
                if self.info.stream:
                    idle = min(idle, c.read_s)
                else:
                    total = min(total, c.read_s)
            if min(first, total) < first:
                first = total
            if first <= soft:
                soft = first / 2  # a hedge still needs time to win
        return Timing(
            soft,
            first,
            idle,
            total,
            self.max_attempts,
            self.hedging,
            t.hedge_budget_percent / 100.0,
        )

    def first_token_by(self, timing: Timing) -> float | None:
        """Seconds from arrival by which a stream's first token must reach the client (the
        client's read timeout: the gateway sends nothing before it), or None; ``timing`` is
        the plan's (worked out once by the caller)."""
        c = self.client
        if c is None or c.read_s is None or not self.info.stream:
            return None
        return min(c.read_s, timing.total_timeout_s)

    def start_within(self, timing: Timing) -> float:
        """Seconds from arrival within which the request must have been answered (a stream:
        begun), counted against by any wait before its first attempt."""
        first = self.first_token_by(timing)
        total = timing.total_timeout_s
        return total if first is None else min(total, first)


def parse_json(req: Request) -> Any:
    ctype = req.headers.get(b"content-type", b"")
    if not ctype.split(b";", 1)[0].strip().lower() == b"application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        body = orjson.loads(req.body)  # measured before (jsonlimits): its expansion is bounded
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from None
    check_counts(body, req.limits)
    return body


def upstream_headers(provider: Provider, req: Request, body_len: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"host", provider.host_header),
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
        beta = betas_for(provider, req.headers.get(b"anthropic-beta", b""))
        if beta:
            headers.append((b"anthropic-beta", beta))
    else:
        headers.append((b"authorization", b"Bearer " + key))
    if provider.simulated:
        # fault injection per request, end to end; a real provider never sees the header
        sim = req.headers.get(b"x-sim")
        if sim is not None:
            headers.append((b"x-sim", sim))
    return headers


def betas_for(provider: Provider, asked: bytes) -> bytes:
    """The ``anthropic-beta`` value to forward: the betas the provider's policy passes; a
    refused one is a 400 naming it (on a route, the race passes the candidate over); any
    other is not forwarded (a beta can turn on billed tools, or need state the gateway does
    not keep)."""
    if not asked:
        return b""
    kept = []
    for raw in asked.decode("latin-1").split(","):
        name = raw.strip()
        if not name:
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in provider.betas_refuse):
            raise InvalidRequest(
                f"anthropic-beta: {name} is not allowed through this gateway (it is refused by "
                f"the policy of provider {provider.name}: providers.{provider.name}.betas)",
                param="anthropic-beta",
            )
        if any(fnmatch.fnmatchcase(name, p) for p in provider.betas_pass):
            kept.append(name)
    return ",".join(kept).encode()


def tier_for(policy: Policy, req: Request, asked_model: str, key_tier: str | None) -> str:
    """The request's tier: the ``x-edge-tier`` header or a tier alias as the model, else the
    key's tier, else the policy's default (an unknown tier in the header is a 400)."""
    asked = req.headers.get(b"x-edge-tier")
    if asked is not None:
        name = asked.decode("latin-1")
        if name not in policy.tiers:
            raise InvalidRequest(
                f"x-edge-tier: unknown tier {name!r}; configured: {', '.join(sorted(policy.tiers))}",
                param="x-edge-tier",
            )
        if asked_model in ALIASES and asked_model in policy.tiers and asked_model != name:
            raise InvalidRequest(
                f"model {asked_model!r} names a tier, and x-edge-tier names another ({name!r})",
                param="model",
            )
        return name
    if asked_model in ALIASES and asked_model in policy.tiers:
        return asked_model  # a tier alias as the model ("L0") names the tier itself
    if key_tier and key_tier in policy.tiers:
        return key_tier
    return policy.default_tier


def check_entitled(policy: Policy, tier: str, ceiling: str | None) -> None:
    """A key's tier is the highest it may use: an equal or lower tier is fine, a higher one is
    a 403 (``ceiling`` None: the gateway runs without keys, on loopback)."""
    if ceiling is None:
        return
    if ceiling not in policy.tiers:
        # the policy serving it (a rollout's candidate) lacks the key's tier: never fail open
        raise TierForbidden(
            f"this key's tier {ceiling} is not in the policy serving the request",
            param="x-edge-tier",
            code="tier_not_allowed",
        )
    if policy.tiers[tier].rank < policy.tiers[ceiling].rank:
        raise TierForbidden(
            f"this key may use tier {ceiling} and lower tiers, not {tier}; "
            "ask the operator for a key with a higher tier",
            param="x-edge-tier",
            code="tier_not_allowed",
        )


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
    model = policy.model_named(name)
    if model is None:
        raise NotFound(
            f"The model `{name}` does not exist or is not configured on this gateway.",
            param="model",
            code="model_not_found",
        )
    if model.kind != "chat":
        raise NotFound(
            f"The model `{name}` is an {model.kind} model, not a chat model: "
            "use POST /v1/embeddings",
            param="model",
            code="model_not_found",
        )
    return model


OPENAI: Dialect = openai_dialect.DIALECT
ANTHROPIC: Dialect = anthropic_dialect.DIALECT
# the dialect each provider kind speaks
RESPONSES: Dialect = responses_dialect.DIALECT
_DIALECTS: dict[str, Dialect] = {"openai": OPENAI, "anthropic": ANTHROPIC}


def plan_chat(
    policy: Policy,
    router: Router,
    req: Request,
    dialect: Dialect,
    key_tier: str | None = None,
    *,
    ceiling: str | None = None,
    max_attempts: int = 3,
    hedging: bool = True,
    force: str = "",
) -> Plan:
    """Everything about the upstream calls, decided before any I/O: the tier (within the
    key's entitlement), the limits the provider would enforce, the candidates that can carry
    the request within its cost cap, the first call."""
    body = parse_json(req)
    info: ChatInfo = dialect.check_request(body)
    tier = tier_for(policy, req, info.model, key_tier)
    check_entitled(policy, tier, ceiling)
    first = resolve_model(policy, info.model, tier)  # the named model, or the alias's first in pool
    named = None if info.model in ALIASES else first
    parts, messages, media = estimate_inputs(body)
    ceilings = output_ceilings(body, dialect.NAME)
    max_out = min(ceilings) if ceilings else None
    needs = needs_of(body, dialect.NAME)
    tier_ = policy.tiers[tier]
    input_tokens = router.estimate(parts, messages, media)
    check_limits(
        router.limits(tier_, named), named, needs, ceilings, input_tokens, dialect.LIMIT_PARAM
    )
    expected = router.expected_output(tier_, named, max_out)
    prefixes = prefix_of(body, _o200k) if input_tokens >= MIN_CACHED else []
    decision = router.decide(
        tier_,
        named,
        parts,
        messages,
        needs,
        expected,
        force,
        input_tokens=input_tokens,
        prefixes=prefixes,
        now=time.monotonic() if prefixes else 0.0,
    )
    if not decision.order:
        raise InvalidRequest(
            f"no model of tier {tier} can carry this request (it needs: "
            f"{', '.join(names_of(needs)) or 'nothing special'}) within the context window",
            param="model",
        )
    if decision.degraded.startswith("max_tokens="):
        body = dialect.with_max_tokens(body, decision.max_tokens)
    call, candidates = first_call(policy, req, dialect, info, body, decision.order, named)
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
        prefixes=prefixes,
        router=router,
    )


def first_call(
    policy: Policy,
    req: Request,
    dialect: Dialect,
    info: ChatInfo,
    body: dict[str, Any],
    order: list[Model],
    named: Model | None,
) -> tuple[Call, list[Model]]:
    """The first candidate's call, built before any I/O. On a route (``auto``, a tier), a
    candidate whose translation refuses something in the request (a parameter or block the
    capability table does not name) is passed over for the next that can carry it; only when
    none can is the refusal the answer. A model the client named answers for itself, as its
    provider would."""
    refusal: InvalidRequest | None = None
    for i, model in enumerate(order):
        try:
            return build_call(policy, req, dialect, info, body, model), order[i:]
        except InvalidRequest as exc:
            if model is named:
                raise
            refusal = refusal or exc
    assert refusal is not None
    raise refusal


# The estimate errs by a few percent; only a request surely past a limit is refused before the
# call (the provider's own context-length answer moves the rest to a wider model).
WINDOW_MARGIN = 1.10


def check_limits(
    limits: tuple[int, int],
    named: Model | None,
    needs: int,
    ceilings: list[int],
    input_tokens: int,
    limit: str = "max_tokens",
) -> None:
    """The 400s a provider would give, before any call: max_tokens past every candidate's
    output limit, a prompt surely past every candidate's context window, a named model that
    cannot carry what the request needs. (Within them, each candidate's own limits decide
    whether it is tried: ``Router.decide``, ``build_call``.)"""
    top_out, window = limits
    for max_tokens in ceilings:
        if max_tokens < 1:
            raise InvalidRequest(
                f"max_tokens: {max_tokens} is not a valid value; it must be at least 1",
                param=limit,
            )
        if max_tokens > top_out:
            who = f"model {named.name} or its fallbacks" if named is not None else "this tier"
            raise InvalidRequest(
                f"max_tokens: {max_tokens} > {top_out}, which is the maximum allowed number of "
                f"output tokens for {who}",
                param=limit,
            )
    if input_tokens > window * WINDOW_MARGIN:
        raise InvalidRequest(
            f"prompt is too long: about {input_tokens} tokens > {window} maximum "
            "(this model's maximum context length)",
            param="input" if limit == "max_output_tokens" else "messages",
            code="context_length_exceeded",
        )
    if named is not None and needs & ~named.capabilities:
        missing = names_of(needs & ~named.capabilities)
        raise InvalidRequest(
            f"{PARAMS[missing[0]]}: not supported by model {named.name} (it cannot carry "
            f"{', '.join(missing)}); name another model, or `auto` to let the tier choose",
            param=PARAMS[missing[0]],
        )


def build_call(
    policy: Policy,
    req: Request,
    dialect: Dialect,
    info: ChatInfo,
    body: dict[str, Any],
    model: Model,
) -> Call:
    """The upstream request for one candidate, translated when its provider speaks the other
    dialect; raises ``InvalidRequest`` when the candidate cannot honour the request."""
    provider = policy.providers[model.provider]
    # the caller's dialect when the provider serves it as it is, else the provider's own
    upstream = dialect if provider.kind == dialect.KIND else _DIALECTS[provider.kind]
    asked = max(output_ceilings(body, dialect.NAME), default=0)
    if asked > model.max_output_tokens:
        # a ceiling above this candidate's own limit: its limit (the answer's finish reason
        # still says when it was reached)
        body = dialect.with_max_tokens(body, model.max_output_tokens)
    if upstream is dialect:
        payload: bytes = dialect.upstream_body(body, model.upstream_model)
    else:
        try:
            canonical = dialect.to_canonical(body, provider.kind)
            out = upstream.from_canonical(canonical, model.upstream_model, model.default_max_tokens)
            payload = orjson.dumps(out)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # a shape the field checks let through and the translation cannot read: the
            # caller's to fix, never a 500 (the checks should name it: tests fuzz for this)
            raise InvalidRequest(
                f"the request cannot be translated for the {provider.kind} provider that "
                f"serves {model.name}: {type(exc).__name__} reading a field of an unexpected "
                "shape"
            ) from None
    target = provider.path_prefix.encode() + upstream.UPSTREAM_PATH
    return Call(
        model,
        provider,
        target,
        upstream_headers(provider, req, len(payload)),
        payload,
        upstream,
        stream_for(dialect, upstream, info),
    )


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
    if d.cap_usd > 0:
        out.append((b"x-edge-cost-cap-usd", b"%.6f" % d.cap_usd))
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


def _served(out: Outcome, race: Race) -> None:
    """The answer's row, once for the header, the log, the metrics and the ledger (see
    ``edge.routing.account``: a broken or abandoned answer is billed for what it produced;
    a rescued one adds its rescue's row)."""
    answer = race.answer()
    if answer is not None:
        out.tokens, out.cost_usd = answer.tokens, answer.cost_usd
        for charge in race.charges:
            if charge.kind == "rescue":
                t, u = out.tokens, charge.tokens
                out.tokens = Tokens(
                    t.input + u.input,
                    t.cache_read + u.cache_read,
                    t.cache_write + u.cache_write,
                    t.output + u.output,
                )
                out.cost_usd += charge.cost_usd


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
    out.candidates = [m.name for m in plan.candidates]
    out.cap_usd = plan.decision.cap_usd
    out.ceiling = min(output_ceilings(plan.body, plan.dialect.NAME), default=0)

    quotas = plan.quotas
    need_in, need_out = plan.decision.input_tokens, plan.decision.max_tokens
    reserve = plan.tier.quota_reserve

    async def connect(call: Call, idle_timeout_s: float) -> Upstream:
        p = call.provider
        ex = pool.exchange(
            (p.scheme, p.host, p.port),
            b"POST",
            call.target,
            call.headers,
            call.body,
            idle_timeout_s,
        )
        if quotas is None:
            return await ex.open()
        name = call.model.name
        counted = name in reserved  # counted in flight when it was chosen
        if counted:
            reserved.remove(name)
        metered = Metered(ex, quotas, name, need_in, need_out, shared.clock, counted)
        try:
            await ex.open()
        except BaseException:
            metered.close()
            raise
        return metered

    # no attempt or hedge starts that cannot answer in time: the time left before the answer
    # (a stream: its first token) is due must exceed the model's typical time to first token
    timing = plan.timing  # (worked out once: a property would build it at every use)
    start_within = plan.start_within(timing)
    due = req.received_at + start_within
    late: list[str] = []

    def fits(model: Model) -> bool:
        need = plan.router.typical_ttft_s(model.name) if plan.router is not None else 0.0
        return due - shared.clock() > need

    def prepare(model: Model) -> Call:
        if not fits(model):
            late.append(model.name)
            raise UpstreamTimeout(f"{model.name}: no time left to answer before the deadline")
        if quotas is not None and quotas.room(
            model.name, need_in, need_out, reserve, shared.clock()
        ):
            quotas.on_avoid(model.name, "steered")
            raise Shed(f"{model.name}: its provider quota is spent until the reset")
        return build_call(policy, req, plan.dialect, plan.info, plan.body, model)

    candidates, first = plan.candidates, plan.first
    reserved: list[str] = []  # chosen and counted in flight, not connected yet
    if quotas is not None:
        if quotas.known(candidates):  # (the common case, none known: no coroutine to run)
            candidates, first = await within_quota(plan, policy, req, shared.clock, start_within)
        # counted now, not when its attempt connects: requests held for the same reset wake
        # together, and each must see the ones before it
        quotas.sent(first.model.name, need_in, need_out)
        reserved.append(first.model.name)

    race = Race(
        shared,
        candidates,
        prepare,
        connect,
        timing,
        tier=plan.tier.name,
        input_tokens=plan.decision.input_tokens,
        started=req.received_at,
        first_call=first if fits(first.model) else None,
        capped=plan.decision.capped,
        cap_usd=plan.decision.cap_usd,
    )
    first_by = plan.first_token_by(timing)

    async def run() -> Attempt:
        try:
            if first_by is None:
                return await race.run()
            async with asyncio.timeout(max(0.0, req.received_at + first_by - shared.clock())):
                return await race.run()
        except TimeoutError:
            raise UpstreamTimeout(
                f"no first token within the client's read timeout ({first_by:g} s after the "
                "request, the gateway's margin taken off)"
            ) from None
        except ServiceUnavailable:
            if late and not race.attempts:
                raise UpstreamTimeout(
                    f"the request's deadline ({start_within:g} s) leaves no time for "
                    f"any candidate ({', '.join(late)})"
                ) from None
            raise

    loop = asyncio.get_running_loop()
    try:
        while True:
            winner = await run()
            _note(out, winner, race, req)
            timer = loop.call_later(max(0.0, race.deadline - shared.clock()), winner.expire)
            try:
                if plan.info.stream:
                    await _stream(plan, race, winner, proto, out, policy, req)
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
            _served(out, race)
            out.status = 200
            _check_online(out, plan, policy, winner)
            headers = answer_headers(plan, winner, race)
            headers.append((b"x-edge-cost-usd", b"%.8f" % out.cost_usd))
            proto.respond(200, JSON_HEADERS + headers, answer)
            return
    finally:
        if quotas is not None:
            for name in reserved:  # chosen but never connected: no longer in flight
                quotas.answered(name, need_in, need_out, None, shared.clock())
        out.attempts, out.hedged, out.charges = len(race.attempts), race.hedged, race.charges
        out.path = race.path
        _served(out, race)
        if plan.prefixes and plan.router is not None:
            now = time.monotonic()
            for charge in race.charges:  # each provider that took the request caches its prefix
                plan.router.sent(charge.model, plan.prefixes, now)


class Metered:
    """An upstream exchange whose answer's head tells the model's quota; until then (or
    until it fails) it counts as in flight against that quota."""

    __slots__ = ("clock", "ex", "model", "need_in", "need_out", "pending", "quotas", "read")

    def __init__(
        self,
        ex: Exchange,
        quotas: Quotas,
        model: str,
        need_in: int,
        need_out: int,
        clock: Callable[[], float],
        counted: bool = False,
    ) -> None:
        self.ex, self.quotas, self.model, self.clock = ex, quotas, model, clock
        self.read = ex.read  # (the exchange's own: no coroutine in between for every chunk)
        self.need_in, self.need_out = need_in, need_out
        self.pending = True
        if not counted:
            quotas.sent(model, need_in, need_out)

    def _answered(self, headers: list[tuple[bytes, bytes]] | None) -> None:
        if self.pending:
            self.pending = False
            self.quotas.answered(self.model, self.need_in, self.need_out, headers, self.clock())

    async def head(self) -> ResponseHead:
        try:
            head = await self.ex.head()
        except BaseException:
            self._answered(None)
            raise
        self._answered(head.headers)
        return head

    def close(self) -> None:
        self._answered(None)
        self.ex.close()


async def within_quota(
    plan: Plan, policy: Policy, req: Request, clock: Callable[[], float], start_within: float
) -> tuple[list[Model], Call]:
    """The candidates whose provider quota can take this request, and the first one's call.
    When none can, the request is held until the earliest reset if that comes within its
    tier's ``max_queue_ms`` and its deadline, else shed with a 429 that says when (a call that would only earn the provider's
    429 is never made). A tier's ``quota_reserve`` leaves that share of each quota to higher
    tiers, so lower tiers are held first."""
    quotas = plan.quotas
    assert quotas is not None
    if not quotas.known(plan.candidates):
        return plan.candidates, plan.first  # no candidate's quota is known: nothing to steer by
    d, tier = plan.decision, plan.tier
    # held no longer than the tier lets a request wait for a slot, nor past its deadline
    due = req.received_at + min(start_within, tier.max_queue_ms / 1000.0)
    primary = plan.candidates[0].name
    held = False
    while True:
        now = clock()
        waits = [
            quotas.room(m.name, d.input_tokens, d.max_tokens, tier.quota_reserve, now)
            for m in plan.candidates
        ]
        ok = [m for m, w in zip(plan.candidates, waits, strict=True) if not w]
        if ok:
            if ok[0] is plan.first.model:
                return ok, plan.first
            quotas.on_avoid(primary, "steered")
            try:
                call, order = first_call(policy, req, plan.dialect, plan.info, plan.body, ok, None)
            except InvalidRequest:
                return plan.candidates, plan.first  # none of them can carry it: as decided
            return order, call
        wait = min(waits)
        if now + wait >= due:
            quotas.on_avoid(primary, "shed")
            quotas.on_shed(tier.name, "quota")
            seconds = max(1, int(wait + 0.999))
            raise Shed(
                f"the provider quota of every model that can serve tier {tier.name} is spent "
                f"until its reset in {wait:.1f} s, past this request's deadline; retry after "
                f"{seconds} s",
                code="provider_quota",
                headers=[(b"retry-after", b"%d" % seconds)],
            )
        if not held:
            held = True
            quotas.on_avoid(primary, "held")
        await asyncio.sleep(wait)  # until the reset: held, not refused


def _check_online(out: Outcome, plan: Plan, policy: Policy, winner: Attempt) -> None:
    """The online checks' verdict on a whole answer, streamed or not (edge/quality/online.py),
    and, when JSON was asked, whether its text is JSON (the rollout's signal)."""
    state = winner.state
    text = "".join(state.text)
    json_asked = bool(plan.needs & CAP_JSON)
    out.online = check_answer(
        text,
        ["".join(args) for args in state.tool_args],
        state.finish,
        json_asked,
        policy.quality.online_checks,
    )
    if json_asked:
        out.json_asked, out.json_valid = True, parses(text)


def _note(out: Outcome, winner: Attempt, race: Race, req: Request) -> None:
    out.provider, out.model = winner.call.provider.name, winner.call.model.name
    out.served_by = winner.call.model
    out.state = winner.state
    out.upstream_request_id = winner.upstream_id
    if winner.first_token_at is not None and winner.state.first_token:
        out.ttft = winner.first_token_at - req.received_at


async def _stream(
    plan: Plan, race: Race, winner: Attempt, proto: Sink, out: Outcome, policy: Policy, req: Request
) -> None:
    state = winner.state
    proto.start(200, SSE_HEADERS + answer_headers(plan, winner, race))
    await proto.send(winner.take_held())
    try:
        while not winner.ended:
            piece = await winner.step()
            if piece:
                await proto.send(piece)
    except UpstreamError as err:
        # bytes reached the client: no retry from the start, and never a clean end on a
        # truncated answer; a rescue continues it, or the stream ends with an error event
        await proto.send(winner.unsent)
        race.delivered(winner, err)
        failed = await _rescue(plan, race, winner, err, proto, out, policy, req)
        if failed is not None:
            out.status, out.error = 502, type(failed).__name__
            await proto.send(state.error_event(failed))
        proto.end()
        return
    race.finished(winner)
    out.status = 200
    _check_online(out, plan, policy, winner)
    proto.end()


async def _rescue(
    plan: Plan,
    race: Race,
    broken: Attempt,
    err: UpstreamError,
    proto: Sink,
    out: Outcome,
    policy: Policy,
    req: Request,
) -> UpstreamError | None:
    """Continue a streamed answer that broke after its first byte on a fallback, as the
    message the client is reading (``edge.routing.rescue``). None when the answer was
    completed; else the error whose event ends the stream."""
    state = broken.state
    outcome = _rescuable(plan, race, state)
    if outcome:
        out.rescue = outcome
        race.rescued(outcome)
        return err
    assert isinstance(state, Stream)
    delivered = "".join(state.text)
    charge = race.charges[-1]  # the broken attempt's row, just settled
    before = usage_of(charge.tokens)
    dialect = plan.dialect
    splices: dict[int, Splice] = {}

    def prepare(model: Model, prefill: bool) -> Call:
        provider = policy.providers[model.provider]
        upstream = _DIALECTS[provider.kind]
        if provider.kind == "anthropic" and not model.capabilities & CAP_PREFILL:
            prefill = False  # the policy knows it answers a prefill with a 400: start over
        writer = state.resume()
        assert writer is not None
        try:
            canonical = dialect.to_canonical(plan.body, provider.kind)
            if canonical.json_mode and provider.kind == "anthropic":
                # its JSON comes through a forced tool, which a text prefill cannot continue
                raise InvalidRequest("a JSON answer cannot be continued on an Anthropic model")
            if prefill:
                left = (canonical.max_tokens - before.output) if canonical.max_tokens else None
                canonical = continuation(canonical, delivered, left)
            if canonical.max_tokens is not None:
                canonical.max_tokens = min(canonical.max_tokens, model.max_output_tokens)
            payload = orjson.dumps(
                upstream.from_canonical(canonical, model.upstream_model, model.default_max_tokens)
            )
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            raise InvalidRequest(f"the request cannot be continued on {model.name}") from exc
        # Anthropic takes no prefill that ends in whitespace (from_canonical strips it)
        sent = delivered.rstrip() if provider.kind == "anthropic" else delivered
        splice = Splice(delivered, sent if prefill else None)
        stops = tuple(canonical.stop) if provider.kind == "openai" else ()
        stream = Stream(
            dialect,
            upstream.decoder(stops),
            Continuation(writer, splice, before, dialect.error_event),
            aggregate=False,
        )
        splices[id(stream)] = splice
        return Call(
            model,
            provider,
            provider.path_prefix.encode() + upstream.UPSTREAM_PATH,
            upstream_headers(provider, req, len(payload)),
            payload,
            upstream,
            stream,
            # the delivered text goes back as the prefill: input the estimate has to count
            estimate_text_tokens(sent.encode(), "o200k") if prefill else 0,
        )

    try:
        attempt = await race.rescue(prepare)
    except UpstreamError as exc:
        out.rescue = UNALIGNED if isinstance(exc, Unaligned) else UNAVAILABLE
        race.rescued(out.rescue)
        return err
    except EdgeError:
        out.rescue = UNAVAILABLE
        race.rescued(out.rescue)
        return err
    loop = asyncio.get_running_loop()
    timer = loop.call_later(max(0.0, race.deadline - race.shared.clock()), attempt.expire)
    try:
        await proto.send(attempt.take_held())
        while not attempt.ended:
            piece = await attempt.step()
            if piece:
                await proto.send(piece)
    except UpstreamError as again:
        await proto.send(attempt.unsent)
        race.delivered(attempt, again)
        out.rescue = UNALIGNED if isinstance(again, Unaligned) else BROKEN
        race.rescued(out.rescue)
        return again
    except BaseException:
        race.abandoned(attempt)
        raise
    finally:
        timer.cancel()
    race.finished(attempt)
    out.rescue = splices[id(attempt.state)].mode or CONTINUED
    race.rescued(out.rescue)
    out.status = 200
    return None


def _rescuable(plan: Plan, race: Race, state: StreamState) -> str:
    """Why a broken stream cannot be rescued ("" when it can)."""
    if plan.tier.rescue != "continue":
        return DISABLED
    if not isinstance(state, Stream):
        return UNAVAILABLE
    if state.mixed:
        return NOT_TEXT  # a tool call (or thinking) half delivered: no text prefill continues it
    if state.finished or state.resume() is None or race.shared.clock() >= race.deadline:
        return UNAVAILABLE
    return ""


async def relay_count_tokens(
    policy: Policy, pool: Pool, req: Request, proto: EdgeProtocol, out: Outcome
) -> None:
    body = parse_json(req)
    info = anthropic_dialect.check_request(body, count_only=True)
    model = policy.model_named(info.model)
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


async def relay_input_tokens(
    policy: Policy, req: Request, proto: EdgeProtocol, out: Outcome
) -> None:
    """``POST /v1/responses/input_tokens``: the gateway's estimate in the model's tokenizer
    family (a route alias counts with its tier's first model)."""
    body = parse_json(req)
    if isinstance(body, dict) and "input" not in body:
        body = {**body, "input": []}  # every field is optional in the API but the model
    info = RESPONSES.check_request(body)
    model = resolve_model(policy, info.model, tier_for(policy, req, info.model, None))
    out.provider, out.model, out.status = model.provider, model.name, 200
    count = estimate_input_tokens(body, model)
    proto.respond(
        200, JSON_HEADERS, b'{"object":"response.input_tokens","input_tokens":%d}' % count
    )


def _o200k(data: bytes) -> int:
    return estimate_text_tokens(data, "o200k")


def estimate_input_tokens(body: dict[str, Any], model: Model) -> int:
    """The compiled estimator's count in the model's own tokenizer family."""
    parts, messages, media = estimate_inputs(body)
    family = model.tokenizer
    tokens = estimate_request_tokens(parts, messages, model.token_factor, family)
    return max(1, tokens + sum(media_tokens(block, family) for block in media))
