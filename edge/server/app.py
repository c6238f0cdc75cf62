"""The gateway of one worker: route table, the error boundary, logs and metrics.

``Gateway.handle`` is the only place an ``EdgeError`` becomes a response:
handlers raise, this renders the error in the caller's dialect (chosen by
path: ``/v1/messages*`` and ``/v1/models`` with ``anthropic-version`` speak
Anthropic, everything else OpenAI). Every request ends in exactly one access
log line and one metrics observation, however it ended.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Awaitable, Callable

import orjson

import hotpath.http
import hotpath.sse
from edge.dialects import anthropic as anthropic_dialect
from edge.dialects import openai as openai_dialect
from edge.errors import Dialect, EdgeError, MethodNotAllowed, NotFound, render
from edge.observe.log import Log
from edge.observe.metrics import Metrics
from edge.policy import Policy
from edge.routing.breaker import BreakerConfig, State
from edge.routing.decide import Router
from edge.routing.race import HedgeBudget, Shared
from edge.server.auth import Keyring
from edge.server.protocol import ConnectionTracker, EdgeProtocol, Request, request_id_for
from edge.server.relay import JSON_HEADERS, Outcome, plan_chat, relay_chat, relay_count_tokens
from edge.settings import Settings
from edge.upstream.pool import Pool

Route = Callable[[Request, EdgeProtocol, Outcome], Awaitable[None]]


class RaceEvents:
    """What races report, into the metrics and the routing sketches."""

    def __init__(self, metrics: Metrics, router: Router) -> None:
        self.metrics = metrics
        self.router = router

    def attempt(self, provider: str, model: str, outcome: str) -> None:
        self.metrics.attempt(provider, model, outcome)

    def hedge(self, tier: str, outcome: str) -> None:
        self.metrics.hedge(tier, outcome)

    def waste(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
        self.metrics.waste(provider, model, input_tokens, output_tokens)

    def censored_ttft(self, model: str, seconds: float, now: float) -> None:
        self.router.record_ttft(model, seconds, now)


def dialect_of(req: Request | None) -> Dialect:
    if req is None:
        return "openai"
    if req.path.startswith(b"/v1/messages"):
        return "anthropic"
    if req.path == b"/v1/models" and b"anthropic-version" in req.headers:
        return "anthropic"
    return "openai"


class Gateway:
    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        keys: Keyring,
        log: Log,
        tracker: ConnectionTracker,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.keys = keys
        self.log = log
        self.tracker = tracker
        self.metrics = Metrics()
        self.pool = Pool(
            max_per_host=settings.upstream_max_per_host,
            connect_timeout=settings.upstream_connect_timeout_s,
            read_timeout=settings.upstream_read_timeout_s,
            idle_s=settings.upstream_idle_s,
            ca_file=settings.upstream_ca_file,
        )
        self.metrics.watch_pool(self.pool.stats)
        self.router = Router(
            policy,
            breaker_config=BreakerConfig(
                failures=settings.breaker_failures,
                window_s=settings.breaker_window_s,
                cooldown_s=settings.breaker_cooldown_s,
                cooldown_max_s=settings.breaker_cooldown_max_s,
                probes=settings.breaker_probes,
                successes=settings.breaker_successes,
                enabled=settings.breakers,
            ),
        )
        self.router.listeners.append(self._breaker_moved)
        self.metrics.watch_breakers(
            lambda: [
                (policy.models[name].provider, name, int(b.state))
                for name, b in self.router.breakers.by_model.items()
            ]
        )
        self.race = Shared(
            self.router.breakers,
            HedgeBudget(settings.hedge_budget_percent / 100.0, settings.hedge_budget_min),
            RaceEvents(self.metrics, self.router),
        )
        self._refresh: asyncio.TimerHandle | None = None
        self._health = orjson.dumps(
            {
                "status": "ok",
                "pid": os.getpid(),
                "compiled": {"sse": hotpath.sse.COMPILED, "http": hotpath.http.COMPILED},
            }
        )
        self.created = int(time.time())
        self.routes: dict[bytes, dict[bytes, Route]] = {
            b"/v1/chat/completions": {b"POST": self.chat_completions},
            b"/v1/messages": {b"POST": self.messages},
            b"/v1/messages/count_tokens": {b"POST": self.count_tokens},
            b"/v1/models": {b"GET": self.models},
            b"/healthz": {b"GET": self.healthz},
            b"/readyz": {b"GET": self.readyz},
            b"/metrics": {b"GET": self.prometheus},
        }

    def start_refresh(self, loop: asyncio.AbstractEventLoop, every_s: float = 1.0) -> None:
        """Copy live latency figures into the routing table every ``every_s`` seconds."""

        def tick() -> None:
            self.router.refresh(time.monotonic())
            self._refresh = loop.call_later(every_s, tick)

        self._refresh = loop.call_later(every_s, tick)

    def _breaker_moved(self, model: str, old: State, new: State, now: float) -> None:
        provider = self.policy.models[model].provider
        self.metrics.breaker_transition(provider, model, old.name.lower(), new.name.lower())
        self.log.event(
            "warning" if new is State.OPEN else "info",
            "breaker",
            provider=provider,
            model=model,
            from_state=old.name.lower(),
            to_state=new.name.lower(),
        )

    def stop_refresh(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()

    def protocol(self) -> EdgeProtocol:
        return EdgeProtocol(self.settings, self.tracker, self.handle, self.render_error)

    # -- the boundary

    async def handle(self, req: Request, proto: EdgeProtocol) -> None:
        out = Outcome(dialect=dialect_of(req))
        if out.dialect == "anthropic":  # the Anthropic SDK reads its request id from `request-id`
            proto.extra_headers = [(b"request-id", req.request_id.encode())]
        self.metrics.in_flight += 1
        try:
            methods = self.routes.get(req.path)
            if methods is None:
                raise NotFound(
                    f"Unknown request URL: {req.method.decode('latin-1')} {req.path.decode('latin-1')}",
                    code="unknown_url",
                )
            route = methods.get(req.method)
            if route is None:
                allow = b", ".join(methods)
                raise MethodNotAllowed(
                    f"{req.method.decode('latin-1')} is not allowed here; use {allow.decode()}",
                    headers=[(b"allow", allow)],
                )
            await route(req, proto, out)
        except EdgeError as err:
            out.status, out.error = err.status_code(), type(err).__name__
            if proto.started:
                proto.abort_stream()
            else:
                self.render_error(err, req, proto)
        except asyncio.CancelledError:
            out.status, out.error = 499, "ClientDisconnected"
            raise
        except ConnectionError:
            out.status, out.error = 499, "ClientDisconnected"
            proto.close()
        except Exception as exc:
            out.status, out.error = 500, type(exc).__name__
            self.log.error(
                "unhandled error",
                request_id=req.request_id,
                error=repr(exc),
                trace=traceback.format_exc(limit=8),
            )
            if proto.started:
                proto.abort_stream()
            else:
                self.render_error(EdgeError("internal error in the gateway"), req, proto)
        finally:
            self.metrics.in_flight -= 1
            self._account(req, out)

    def render_error(self, err: EdgeError, req: Request | None, proto: EdgeProtocol) -> None:
        dialect = dialect_of(req)
        rid = req.request_id if req is not None else request_id_for({})
        status, headers, body = render(err, dialect, rid)
        headers = JSON_HEADERS + headers
        if req is None:
            headers.append((b"x-request-id", rid.encode()))
        proto.respond(status, headers, body)

    def _account(self, req: Request, out: Outcome) -> None:
        if req.path not in (b"/v1/chat/completions", b"/v1/messages", b"/v1/messages/count_tokens"):
            return
        now = time.monotonic()
        duration = now - req.received_at
        if out.ttft is not None and out.model != "-":
            self.router.record_ttft(out.model, out.ttft, now)
        self.metrics.observe(out.dialect, out.provider, out.model, out.status, duration, out.ttft)
        if out.error:
            self.metrics.error(out.dialect, out.error)
        self.metrics.add_tokens(out.provider, out.model, out.prompt_tokens, out.completion_tokens)
        self.log.request(
            id=req.request_id,
            tier=out.tier or None,
            attempts=out.attempts or None,
            hedged=out.hedged or None,
            dialect=out.dialect,
            provider=out.provider,
            model=out.model,
            stream=out.stream,
            status=out.status,
            error=out.error or None,
            latency_ms=round(duration * 1000, 2),
            ttft_ms=round(out.ttft * 1000, 2) if out.ttft is not None else None,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            upstream_request_id=out.upstream_request_id or None,
        )

    # -- routes

    async def chat_completions(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        tenant = self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        plan = plan_chat(
            self.policy,
            self.router,
            req,
            openai_dialect,
            tenant.tier,
            max_attempts=self.settings.max_attempts,
            hedging=self.settings.hedging,
        )
        await relay_chat(self.race, self.pool, self.policy, plan, req, proto, out)

    async def messages(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        tenant = self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        plan = plan_chat(
            self.policy,
            self.router,
            req,
            anthropic_dialect,
            tenant.tier,
            max_attempts=self.settings.max_attempts,
            hedging=self.settings.hedging,
        )
        await relay_chat(self.race, self.pool, self.policy, plan, req, proto, out)

    async def count_tokens(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        await relay_count_tokens(self.policy, self.pool, req, proto, out)

    async def models(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        names = sorted(self.policy.models)
        if dialect_of(req) == "anthropic":
            body = anthropic_dialect.models_body(names)
        else:
            owners = {n: self.policy.models[n].provider for n in names}
            body = openai_dialect.models_body(names, owners, self.created)
        proto.respond(200, JSON_HEADERS, body)

    async def healthz(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        proto.respond(200, JSON_HEADERS, self._health)

    async def readyz(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        if self.tracker.draining:
            proto.respond(503, JSON_HEADERS, b'{"status":"draining"}')
        else:
            proto.respond(
                200,
                JSON_HEADERS,
                orjson.dumps({"status": "ready", "simulated": sorted(self.policy.simulated)}),
            )

    async def prometheus(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        proto.respond(
            200,
            [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
            self.metrics.render(),
        )
