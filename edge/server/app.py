"""The gateway of one worker: its parts built and wired, the route table, the error boundary.

The parts do their work in their own packages: the cost gate and job
submission (``budget/gate.py``), settlement (``budget/settle.py``), the
policies served (``quality/engines.py``), the fleet's metrics
(``observe/fleet.py``); this module builds them, ticks them and routes to
them.

``Gateway.handle`` is the only place an ``EdgeError`` becomes a response:
handlers raise, this renders the error in the caller's dialect (chosen by
path: ``/v1/messages*`` and ``/v1/models`` with ``anthropic-version`` speak
Anthropic, everything else OpenAI). Every request ends in exactly one access
log line and one metrics observation, however it ended.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

import hotpath.http
import hotpath.sse
from edge.budget.gate import Gate
from edge.budget.jobs import JobRunner, JobSettings
from edge.budget.settle import settle
from edge.budget.spend import Spend
from edge.dialects import anthropic as anthropic_dialect
from edge.dialects import openai as openai_dialect
from edge.dialects.core import Dialect
from edge.errors import (
    EdgeError,
    ErrorDialect,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UpstreamStatus,
    render,
)
from edge.observe.fleet import Fleet
from edge.observe.log import Log
from edge.observe.metrics import Metrics
from edge.observe.stats import fleet_stats
from edge.policy import Model, Policy
from edge.quality.engines import Engines
from edge.quality.rollout import RolloutConfig, Rollouts
from edge.quality.rollout import status as rollout_status
from edge.routing.quota import Quotas
from edge.server.admission import Admission, AdmissionQueue, TierLimits
from edge.server.auth import Keyring
from edge.server.deadline import client_deadline
from edge.server.embeddings import relay_embeddings
from edge.server.protocol import ConnectionTracker, EdgeProtocol, Request, request_id_for
from edge.server.relay import (
    ANTHROPIC,
    JSON_HEADERS,
    OPENAI,
    Capture,
    Outcome,
    Sink,
    relay_chat,
    relay_count_tokens,
)
from edge.settings import Settings
from edge.state import open_state
from edge.state.types import StateUnavailable, periods
from edge.upstream.pool import Pool

Route = Callable[[Request, EdgeProtocol, Outcome], Awaitable[None]]
ADMIN_PATHS = (b"/admin/", b"/metrics", b"/v1/edge/stats", b"/dashboard")
KEYLESS = frozenset({b"/healthz", b"/readyz"})
# the routes accounted (metrics, ledger, access log) and their operation label
OPERATIONS = {
    b"/v1/chat/completions": "chat",
    b"/v1/messages": "chat",
    b"/v1/messages/count_tokens": "count_tokens",
    b"/v1/embeddings": "embeddings",
}
DASHBOARD = (resources.files("edge.server") / "dashboard.html").read_bytes()


def admission_for(policy: Policy, metrics: Metrics) -> Admission:
    """The worker's admission queue, from the policy's ``[admission]`` table and tier keys."""
    tiers = {
        name: TierLimits(t.rank, t.max_in_flight, t.max_queued, t.max_queue_ms / 1000.0)
        for name, t in policy.tiers.items()
    }
    return Admission(AdmissionQueue(policy.admission, tiers), metrics)


def dialect_of(req: Request | None) -> ErrorDialect:
    if req is None:
        return "openai"
    if req.path.startswith(b"/v1/messages"):
        return "anthropic"
    if req.path.startswith(b"/v1/models") and b"anthropic-version" in req.headers:
        return "anthropic"  # the Anthropic SDK always sends it
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
        self._admin_digest = hashlib.sha256(settings.admin_key.encode()).digest()
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
        self._refresh: asyncio.TimerHandle | None = None
        self._health = orjson.dumps(
            {
                "status": "ok",
                "pid": os.getpid(),
                "compiled": {"sse": hotpath.sse.COMPILED, "http": hotpath.http.COMPILED},
            }
        )
        self.created = int(time.time())
        self.state = open_state(settings.state_dir, settings.redis_url)
        self.spend = Spend(policy, self.state)
        self.spend.on_change = self._state_changed
        self.jobs = JobRunner(
            self.state,
            self.run_job,
            JobSettings(
                concurrency=settings.jobs_concurrency,
                rate_per_s=settings.jobs_rate,
                max_attempts=settings.jobs_max_attempts,
                lease_s=settings.jobs_lease_s,
                retention_s=settings.jobs_retention_s,
                poll_s=settings.jobs_poll_s,
                backoff_s=settings.jobs_backoff_s,
            ),
            log,
            policy.webhook_url,
            self._notify,
            self.metrics.job_finished,
            lambda: self.spend.available,
        )
        self.rollouts = Rollouts(
            self.state,
            RolloutConfig(
                stages=settings.stages,
                min_requests=settings.rollout_min_requests,
                dwell_s=settings.rollout_dwell_s,
                min_samples=settings.rollout_min_samples,
                success_floor=settings.rollout_success_floor,
                p95_target_ms=settings.rollout_p95_ms,
                cost_cap_usd=settings.rollout_cost_cap_usd,
                margin=settings.rollout_margin,
                alpha=settings.rollout_alpha,
            ),
            log,
            self.metrics.rollback,
        )
        self.engines = Engines(settings, policy, self.metrics, log, self.rollouts)
        self.router = self.engines.active.router  # the active policy's, for the worker's life
        self.gate = Gate(
            settings,
            keys,
            self.engines,
            self.rollouts,
            self.spend,
            self.state,
            self.jobs,
            self.metrics,
        )
        self.metrics.watch_breakers(
            lambda: [
                (policy.models[name].provider, name, int(b.state))
                for name, b in self.router.breakers.by_model.items()
            ]
        )
        self.admission = admission_for(policy, self.metrics)
        self.quotas = Quotas(self.metrics.avoided, self.metrics.shed)
        queue = self.admission.queue
        self.metrics.watch_admission(
            lambda: {t: (queue.in_flight[t], queue.queued[t]) for t in queue.tiers}
        )
        self._gauges(self.metrics)
        self.metrics.watch_state(lambda: (self.spend.available, self.spend.errors))
        self.fleet = Fleet(
            self.metrics, self.state, settings.metrics_dir, self.spend, log, self._gauges
        )
        self.routes: dict[bytes, dict[bytes, Route]] = {
            b"/v1/chat/completions": {b"POST": self.chat_completions},
            b"/v1/messages": {b"POST": self.messages},
            b"/v1/messages/count_tokens": {b"POST": self.count_tokens},
            b"/v1/embeddings": {b"POST": self.embeddings},
            b"/v1/models": {b"GET": self.models},
            b"/healthz": {b"GET": self.healthz},
            b"/readyz": {b"GET": self.readyz},
            b"/metrics": {b"GET": self.prometheus},
            b"/admin/spend": {b"GET": self.admin_spend},
            b"/admin/rollout": {b"GET": self.admin_rollout},
            b"/v1/edge/stats": {b"GET": self.edge_stats},
            b"/dashboard": {b"GET": self.dashboard},
        }

    def start_refresh(self, loop: asyncio.AbstractEventLoop, every_s: float = 1.0) -> None:
        """Copy live latency figures into the routing table every ``every_s`` seconds."""

        def tick() -> None:
            self.engines.refresh(time.monotonic())
            self._check_state()
            self.engines.watch_gold()
            self.engines.watch_rollout(self.spend.available)
            self.fleet.publish()
            self._refresh = loop.call_later(every_s, tick)

        self.engines.watch_gold()
        self.engines.watch_rollout(self.spend.available)

        self._refresh = loop.call_later(every_s, tick)

    def _gauges(self, m: Metrics) -> None:
        """The gauges read from shared figures: on this worker's metrics, and on a merged view."""
        m.watch_jobs(self._job_counts)
        m.watch_quality(lambda: self.router.quality)
        m.watch_rollout(lambda: (self.rollouts.percent, self.rollouts.counts))
        m.watch_quota(lambda: self.quotas.figures(time.monotonic()))

    def _job_counts(self) -> dict[str, int]:
        if not self.spend.available:
            return {}
        try:
            return self.state.job_counts()
        except StateUnavailable as exc:
            self.spend.down(exc)
            return {}

    def _state_changed(self, available: bool, why: str) -> None:
        if available:
            self.log.event("warning", "shared state is back: budgets and jobs are shared again")
        else:
            self.log.event(
                "error",
                "shared state lost: budgets enforced locally, no new jobs, spend kept to re-sync",
                error=why,
            )

    def _check_state(self) -> None:
        """While the shared state is down, look for it once a tick (and write what waited)."""
        if not self.spend.available:
            try:
                self.state.ping()
            except StateUnavailable:
                return
            self.spend.up()
            self.spend.flush()

    def start_jobs(self) -> None:
        self.jobs.start()

    async def close(self) -> None:
        """Stop the job runner (running jobs go back to their leases) and write the ledger."""
        await self.jobs.stop()
        self.spend.flush()
        self.rollouts.flush()
        self.fleet.publish()  # a worker's counts outlive it: counters never go backwards
        self.state.close()

    def stop_refresh(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()

    def protocol(self) -> EdgeProtocol:
        return EdgeProtocol(
            self.settings, self.tracker, self.handle, self.protocol_error, self.check_head
        )

    def check_head(self, req: Request) -> EdgeError | None:
        """Before a body is read: a request to a keyed route without a valid gateway key."""
        keyed = req.path in self.routes or req.path.startswith((b"/v1/jobs/", b"/v1/models/"))
        if not keyed or req.path in KEYLESS or req.path.startswith(ADMIN_PATHS):
            return None  # unknown (a 404 later), health, the admin routes (their own key)
        try:
            self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        except Unauthorized as err:
            return err
        return None

    # -- the boundary

    async def handle(self, req: Request, proto: EdgeProtocol) -> None:
        out = Outcome(dialect=dialect_of(req))
        if out.dialect == "anthropic":  # the Anthropic SDK reads its request id from `request-id`
            proto.extra_headers = [(b"request-id", req.request_id.encode())]
        self.metrics.in_flight += 1
        try:
            methods = self.routes.get(req.path)
            if methods is None and req.path.startswith(b"/v1/jobs/"):
                methods = {b"GET": self.job, b"DELETE": self.job}
            if methods is None and req.path.startswith(b"/v1/models/"):
                methods = {b"GET": self.model}
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
            if isinstance(err, UpstreamStatus) and err.detail:
                self.log.event(
                    "error",
                    "a provider refused the gateway's credentials",
                    request_id=req.request_id,
                    status=err.upstream_status,
                    detail=err.detail,
                )
            if proto.started:
                proto.abort_stream()
            else:
                self.render_error(err, req, proto)
        except StateUnavailable as exc:
            self.spend.down(exc)
            unavailable = ServiceUnavailable(
                "the shared state is unavailable; retry later", headers=[(b"retry-after", b"5")]
            )
            out.status, out.error = 503, "StateUnavailable"
            if not proto.started:
                self.render_error(unavailable, req, proto)
        except asyncio.CancelledError:
            out.status, out.error = 499, "ClientDisconnected"
            raise
        except ConnectionError:
            out.status, out.error = 499, "ClientDisconnected"
            proto.close()
        except orjson.JSONEncodeError:
            # a body orjson parsed (up to 1024 levels) but cannot write again (254): the
            # caller's JSON nests too deeply to be forwarded
            too_deep = InvalidRequest("request body: JSON nested more than 254 levels deep")
            out.status, out.error = 400, "InvalidRequest"
            if not proto.started:
                self.render_error(too_deep, req, proto)
            else:
                proto.abort_stream()
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
        elif dialect == "anthropic" and all(n != b"request-id" for n, _ in proto.extra_headers):
            headers.append((b"request-id", rid.encode()))  # an error answered before the handler
        proto.respond(status, headers, body)

    def protocol_error(self, err: EdgeError, req: Request | None, proto: EdgeProtocol) -> None:
        """An error the connection itself answers (framing, limits, deadlines): rendered like
        any, and logged, since no handler ran for it."""
        self.render_error(err, req, proto)
        self.log.request(
            id=req.request_id if req is not None else None,
            method=req.method.decode("latin-1") if req is not None else None,
            target=req.path.decode("latin-1") if req is not None else None,
            status=err.status_code(),
            error=type(err).__name__,
            peer=proto.peer,
        )

    def _account(self, req: Request, out: Outcome) -> None:
        operation = OPERATIONS.get(req.path)
        if operation is None:
            # every other route gets its line too (a failed admin key above all: brute force
            # must be visible), and its errors counted
            if out.error:
                other = "admin" if req.path.startswith(ADMIN_PATHS) else "other"
                self.metrics.error(other, out.dialect, out.error)
            self.log.request(
                id=req.request_id,
                method=req.method.decode("latin-1"),
                target=req.path.decode("latin-1"),
                status=out.status or 200,
                error=out.error or None,
                latency_ms=round((time.monotonic() - req.received_at) * 1000, 2),
            )
            return
        now = time.monotonic()
        duration = now - req.received_at
        if out.ttft is not None and out.model != "-":
            self.router.record_ttft(out.model, out.ttft, now)
        cost = settle(out, req.request_id, now, self.spend, self.metrics, self.router)
        if out.arm:
            self.rollouts.record(
                out.arm,
                out.status in (200, 202),
                duration * 1000.0,
                cost,
                out.json_asked,
                out.json_valid,
            )
        self.metrics.observe(
            operation,
            out.dialect,
            out.tier,
            out.provider,
            out.model,
            out.status,
            duration,
            out.ttft,
        )
        if out.tier and operation == "chat" and out.status != 202:
            # the tiers' triangle is chat's: embeddings' latency would blur its P95
            self.metrics.observe_stats(
                out.tier,
                out.provider,
                out.model,
                out.status == 200,
                duration,
                out.ttft,
                now,
            )
        if out.error:
            self.metrics.error(operation, out.dialect, out.error)
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
            prompt_tokens=out.tokens.prompt,
            completion_tokens=out.tokens.output,
            cost_usd=round(cost, 8) if cost else None,
            budget_action=out.action if out.action != "ok" else None,
            tenant=out.tenant or None,
            upstream_request_id=out.upstream_request_id or None,
            candidates=out.candidates or None,
            attempts_path=out.path or None,
            cap_usd=round(out.cap_usd, 8) if out.cap_usd else None,
        )

    # -- routes

    async def chat_completions(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        await self._chat(req, proto, out, OPENAI)

    async def messages(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        await self._chat(req, proto, out, ANTHROPIC)

    async def _chat(
        self,
        req: Request,
        proto: Sink,
        out: Outcome,
        dialect: Dialect,
        job_tier: str | None = None,
    ) -> None:
        """Gate on entitlement and cost, then answer, or queue a job (when asked to)."""
        client = None if job_tier is not None else client_deadline(req.headers)  # jobs: none
        passed = self.gate.admit(req, proto, out, dialect, job_tier)
        if passed is None:
            return  # queued as a job: answered 202
        engine, plan = passed
        plan.client = client
        if self.policy.admission.quota_aware and job_tier is None:
            plan.quotas = self.quotas  # jobs run later, at their own pace: no holding for them
        tier = plan.tier
        if (
            job_tier is not None
            or not self.admission.enabled
            or tier.name not in self.admission.queue.tiers
        ):
            # jobs have their own pace (EDGE_JOBS_*); a canary policy's own tier is not queued
            await relay_chat(engine.race, self.pool, engine.policy, plan, req, proto, out)
            return
        now = time.monotonic()
        # time queued counts against the tier's deadlines: a request must start early enough
        # to be served in its tier's usual time before its total deadline
        start_by = min(
            now + tier.max_queue_ms / 1000.0,
            req.received_at
            + plan.timing.total_timeout_s
            - self.admission.queue.service_s(tier.name),
        )
        entry = await self.admission.enter(tier.name, start_by)
        try:
            await relay_chat(engine.race, self.pool, engine.policy, plan, req, proto, out)
        finally:
            self.admission.leave(entry)

    # -- jobs

    async def run_job(self, job: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run a queued request now, non-streaming, in its tier, on the cheapest acceptable
        route; ``Deferred`` while its key's budget is used up."""
        headers = {k.encode(): v.encode("latin-1") for k, v in orjson.loads(job["headers"]).items()}
        headers[b"content-type"] = b"application/json"
        req = Request(b"POST", job["path"].encode(), headers, job["id"], False)
        req.body = job["body"]
        dialect = ANTHROPIC if job["dialect"] == "anthropic" else OPENAI
        out = Outcome(dialect=dialect.NAME)
        sink = Capture()
        try:
            await self._chat(req, sink, out, dialect, job_tier=job["tier"])
        except EdgeError as err:
            out.status, out.error = err.status_code(), type(err).__name__
            status, extra, body = render(err, dialect.ERRORS, job["id"])
            return status, JSON_HEADERS + extra, body
        finally:
            self._account(req, out)
        return sink.status, sink.headers, sink.body

    async def _notify(self, url: str, payload: dict[str, Any]) -> None:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                await client.post(url, json=payload)
        except httpx.HTTPError as exc:
            self.log.event("warning", "job webhook failed", url=url, error=str(exc))

    async def job(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """``GET /v1/jobs/{id}``: status, or the answer once done; ``DELETE``: cancel."""
        tenant = self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        job_id = req.path[len(b"/v1/jobs/") :].decode("latin-1")
        job = self.state.get_job(job_id)
        if job is None or (not self.keys.open and job["key_id"] != tenant.key_id):
            raise NotFound(f"no job {job_id}", code="job_not_found")
        if req.method == b"DELETE":
            if not self.state.cancel_job(job_id, time.time()):
                raise InvalidRequest(
                    f"job {job_id} is {job['status']}; only queued or running jobs can be cancelled"
                )
            job = self.state.get_job(job_id) or job
        head = [(b"x-edge-job-id", job_id.encode()), (b"x-edge-job-status", job["status"].encode())]
        if job["status"] in ("done", "failed"):
            kept = [
                (k.encode(), v.encode("latin-1")) for k, v in orjson.loads(job["result_headers"])
            ]
            proto.respond(job["result_status"], kept + head, job["result_body"])
            return
        body = {
            "id": job_id,
            "object": "edge.job",
            "status": job["status"],
            "reason": job["reason"],
            "created_at": int(job["created_at"]),
            "attempts": job["attempts"],
            "error": job["error"],
            "next_run_at": int(job["next_run_at"]),
        }
        if job["dialect"] == "anthropic":
            body = {"type": "edge_job", **{k: v for k, v in body.items() if k != "object"}}
        status = 200 if job["status"] == "cancelled" else 202
        extra = [] if status == 200 else [(b"retry-after", b"1")]
        proto.respond(status, JSON_HEADERS + head + extra, orjson.dumps(body))

    async def admin_spend(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """Spend by tenant, tier, provider, model and kind since ``?since=YYYY-MM-DD`` (today)."""
        self._admin(req)
        self.spend.flush()
        query = parse_qs(req.query.decode("latin-1"))
        since = query.get("since", [periods(time.time())[0][4:]])[0]
        proto.respond(
            200,
            JSON_HEADERS,
            orjson.dumps({"since": since, "rows": self.state.spend_report(since)}),
        )

    async def edge_stats(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """The triangle per tier and per provider/model, for operators and the dashboard. It
        tells spend per tenant: behind the admin key, or open only on a gateway without keys
        (which serves loopback alone)."""
        if self.settings.admin_key or not self.keys.open:
            self._admin(req)
        self.spend.flush()
        self.rollouts.flush()
        scope = parse_qs(req.query.decode("latin-1")).get("scope", ["instance"])[0]
        body = fleet_stats(
            self.fleet.merged(instances=scope == "fleet"),
            self.policy,
            self.state,
            self.rollouts.config,
            quality=self.router.quality,
            jobs=self._job_counts(),
            state_available=self.spend.available,
        )
        body["scope"] = "fleet" if scope == "fleet" and self.fleet.shared else "instance"
        proto.respond(200, [*JSON_HEADERS, (b"cache-control", b"no-store")], orjson.dumps(body))

    async def dashboard(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """One self-contained page (no CDN) that polls /v1/edge/stats."""
        proto.respond(
            200,
            [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")],
            DASHBOARD,
        )

    async def admin_rollout(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """The latest rollout: status, stage, its arms' figures, a rollback's report."""
        self._admin(req)
        self.rollouts.flush()
        body = rollout_status(self.state, self.rollouts.config)
        proto.respond(200, JSON_HEADERS, orjson.dumps(body))

    def _admin(self, req: Request) -> None:
        want = self.settings.admin_key
        if not want:
            raise Forbidden("admin routes are off: set EDGE_ADMIN_KEY to use them")
        auth = req.headers.get(b"authorization", b"")
        given = (
            auth[7:].strip()
            if auth[:7].lower() == b"bearer "
            else req.headers.get(b"x-api-key", b"")
        )
        # digests of equal length: the comparison tells nothing of the key's length either
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self._admin_digest):
            raise Unauthorized("invalid admin key", code="invalid_api_key")

    async def embeddings(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        await relay_embeddings(
            self.engines.active.policy, self.keys, self.spend, self.pool, req, proto, out
        )

    async def count_tokens(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        await relay_count_tokens(self.policy, self.pool, req, proto, out)

    async def models(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """The policy's models in the route's dialect (Anthropic: paged by its cursors, and only
        the chat models: the Messages API has no embeddings)."""
        self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        policy = self.policy
        names = sorted(policy.models)
        if dialect_of(req) == "anthropic":
            names = [n for n in names if policy.models[n].kind == "chat"]
            query = parse_qs(req.query.decode("latin-1"))
            try:
                limit = int(query.get("limit", ["20"])[0])
            except ValueError:
                limit = 0
            if not 1 <= limit <= 1000:
                raise InvalidRequest("limit: must be an integer from 1 to 1000", param="limit")
            body = anthropic_dialect.models_body(
                [(n, self._created_at(policy.models[n])) for n in names],
                limit,
                query.get("after_id", [""])[0],
                query.get("before_id", [""])[0],
            )
        else:
            body = openai_dialect.models_body(
                [(n, policy.models[n].provider, self._created(policy.models[n])) for n in names]
            )
        proto.respond(200, JSON_HEADERS, body)

    async def model(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """``GET /v1/models/{id}``: a model by its name or alias (a dated id), as asked."""
        self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        model_id = unquote(req.path[len(b"/v1/models/") :].decode("latin-1"))
        model = self.policy.model_named(model_id)
        if model is not None and model.kind != "chat" and dialect_of(req) == "anthropic":
            model = None  # the Messages API has no embeddings
        if model is None:
            raise NotFound(
                f"model: {model_id} is not configured on this gateway",
                param="model",
                code="model_not_found",
            )
        if dialect_of(req) == "anthropic":
            obj = anthropic_dialect.model_object(model_id, self._created_at(model))
        else:
            obj = openai_dialect.model_object(model_id, model.provider, self._created(model))
        proto.respond(200, JSON_HEADERS, orjson.dumps(obj))

    def _created(self, model: Model) -> int:
        """A model's release day (unix seconds), else when this gateway started."""
        if model.released:
            return calendar.timegm(time.strptime(model.released, "%Y-%m-%d"))
        return self.created

    def _created_at(self, model: Model) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._created(model)))

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
        """Every worker's metrics; with an admin key set, only for it (the figures tell cost
        totals, traffic and error types: Prometheus sends it as a bearer token)."""
        if self.settings.admin_key:
            self._admin(req)
        proto.respond(
            200,
            [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
            self.fleet.merged().render(),
        )
