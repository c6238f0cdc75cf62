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
import contextlib
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
from edge.budget.jobs import JobRunner, JobSettings, post_webhook
from edge.budget.settle import settle
from edge.budget.spend import Spend
from edge.dialects import anthropic as anthropic_dialect
from edge.dialects import openai as openai_dialect
from edge.dialects import responses as responses_dialect
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
    UnsupportedMediaType,
    UpgradeRequired,
    UpstreamStatus,
    render,
)
from edge.observe.fleet import Fleet
from edge.observe.log import Log
from edge.observe.metrics import Metrics, StateView
from edge.observe.stats import fleet_stats
from edge.policy import Model, Policy
from edge.quality.engines import Engines
from edge.quality.feedback import Feedback
from edge.quality.rollout import RolloutConfig, Rollouts, TierFloor
from edge.quality.rollout import status as rollout_status
from edge.quality.schedule import (
    GoldSchedule,
    model_floors,
    policy_digest,
    run_gold_subprocess,
    version_of,
)
from edge.routing.quota import Quotas
from edge.server.admission import Admission, AdmissionQueue, TierLimits
from edge.server.auth import Keyring
from edge.server.deadline import client_deadline
from edge.server.embeddings import relay_embeddings
from edge.server.jsonlimits import FORWARDABLE_DEPTH, too_deep
from edge.server.protocol import (
    ConnectionTracker,
    EdgeProtocol,
    Request,
    is_json,
    request_id_for,
)
from edge.server.relay import (
    ANTHROPIC,
    JSON_HEADERS,
    OPENAI,
    RESPONSES,
    Capture,
    Outcome,
    Sink,
    parse_json,
    relay_chat,
    relay_count_tokens,
    relay_input_tokens,
)
from edge.server.throttle import AuthThrottle
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
    b"/v1/responses": "chat",
    b"/v1/responses/input_tokens": "count_tokens",
    b"/v1/embeddings": "embeddings",
}
DASHBOARD = (resources.files("edge.server") / "dashboard.html").read_bytes()


# routes whose last segment is an id
ID_PATHS = (b"/v1/jobs/", b"/v1/models/", b"/v1/responses/")


def route_label(path: bytes, routes: dict[bytes, Any]) -> str:
    """A bounded label for a request path: the route's, else ``other``."""
    if path in routes:
        return path.decode()
    for prefix in ID_PATHS:
        if path.startswith(prefix):
            return prefix.decode() + "{id}"
    return "other"


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


def routed_headers(out: Outcome) -> list[tuple[bytes, bytes]]:
    """The gateway headers an error answer carries once the request was routed: its tier, the
    model that failed it (the one served, else the last one tried, else the primary) and its
    rollout arm, so a failure can be traced to the tier, model and policy that made it."""
    if not out.tier:
        return []
    headers = [(b"x-edge-tier", out.tier.encode())]
    model = out.model if out.model != "-" else ""
    if not model and out.path:
        model = out.path[-1].rsplit(":", 2)[0]
    if not model and out.candidates:
        model = out.candidates[0]
    if model:
        headers.append((b"x-edge-model", model.encode()))
    if out.arm:
        headers.append((b"x-edge-rollout-arm", out.arm.encode()))
    return headers


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
        self.throttle = AuthThrottle(
            settings.auth_failures, settings.auth_window_s, settings.auth_delay_max_s
        )
        bodies = tracker.bodies
        self.metrics.watch_bodies(lambda: (bodies.used, bodies.read, len(bodies.waiting)))
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
        # the event loop's handle waits a few milliseconds at most (a busy lock: StateBusy);
        # the job runner's own handle may wait longer, in its thread
        self.state = open_state(
            settings.state_dir,
            settings.redis_url,
            settings.redis_wait_ms if settings.redis_url else settings.state_wait_ms,
        )
        self.spend = Spend(policy, self.state, pending_max=settings.spend_pending_max)
        self.spend.on_change = self._state_changed
        self.spend.on_drop = lambda n: log.event(
            "error",
            "spend kept for the state dropped: EDGE_SPEND_PENDING_MAX aggregates exceeded",
            dropped=n,
        )
        self.jobs = JobRunner(
            open_state(settings.state_dir, settings.redis_url),
            self.run_job,
            JobSettings(
                concurrency=settings.jobs_concurrency,
                rate_per_s=settings.jobs_rate,
                max_attempts=settings.jobs_max_attempts,
                lease_s=settings.jobs_lease_s,
                retention_s=settings.jobs_retention_s,
                poll_s=settings.jobs_poll_s,
                backoff_s=settings.jobs_backoff_s,
                webhook_attempts=settings.jobs_webhook_attempts,
                webhook_backoff_s=settings.jobs_webhook_backoff_s,
            ),
            log,
            policy.webhook_url,
            post_webhook,
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
                holdback_percent=policy.rollout.holdback_percent,
                # each tier judged by its own floors: the active policy's, not the candidate's
                floors={
                    name: TierFloor(t.p95_target_ms, t.degrade_usd, t.quality_floor)
                    for name, t in policy.tiers.items()
                },
            ),
            log,
            self.metrics.rollback,
        )
        self.engines = Engines(settings, policy, self.metrics, log, self.rollouts)
        # answer records are written on a thread of their own, with a handle of their own
        self.feedback = Feedback(
            self.state,
            lambda: self.policy.quality,
            writer=open_state(settings.state_dir, settings.redis_url),
        )
        self.feedback.on_accept = lambda: self.engines.watch_quality(
            self.state, time.monotonic(), force=True
        )
        self.router = self.engines.active.router  # the active policy's, for the worker's life
        self.gold_schedule = self._gold_schedule(settings, policy, log)
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
        self.metrics.watch_state(
            lambda: StateView(
                self.spend.available,
                self.spend.errors,
                self.spend.busy,
                self.spend.pending,
                self.spend.aggregated,
                self.spend.dropped,
            )
        )
        self.fleet = Fleet(
            self.metrics, self.state, settings.metrics_dir, self.spend, log, self._gauges
        )
        self.routes: dict[bytes, dict[bytes, Route]] = {
            b"/v1/chat/completions": {b"POST": self.chat_completions},
            b"/v1/messages": {b"POST": self.messages},
            b"/v1/messages/count_tokens": {b"POST": self.count_tokens},
            b"/v1/responses": {b"POST": self.responses, b"GET": self.responses_socket},
            b"/v1/responses/input_tokens": {b"POST": self.input_tokens},
            b"/v1/embeddings": {b"POST": self.embeddings},
            b"/v1/models": {b"GET": self.models},
            b"/healthz": {b"GET": self.healthz},
            b"/readyz": {b"GET": self.readyz},
            b"/metrics": {b"GET": self.prometheus},
            b"/admin/spend": {b"GET": self.admin_spend},
            b"/admin/rollout": {b"GET": self.admin_rollout},
            b"/v1/edge/stats": {b"GET": self.edge_stats},
            b"/dashboard": {b"GET": self.dashboard},
            b"/v1/edge/feedback": {b"POST": self.edge_feedback},
        }

    def start_refresh(self, loop: asyncio.AbstractEventLoop, every_s: float = 1.0) -> None:
        """Copy live latency figures into the routing table every ``every_s`` seconds."""

        def tick() -> None:
            self.engines.refresh(time.monotonic())
            self._check_state()
            self.engines.watch_gold()
            self.engines.watch_rollout(self.spend.available)
            if self.spend.available:
                self.feedback.tick(time.time())
                self.engines.watch_quality(self.state, time.monotonic())
            if self.gold_schedule is not None and self.spend.available:
                self.gold_schedule.tick()
            self.fleet.publish()
            self._refresh = loop.call_later(every_s, tick)

        self.engines.watch_gold()
        self.engines.watch_rollout(self.spend.available)
        self.engines.watch_quality(self.state, time.monotonic())

        self._refresh = loop.call_later(every_s, tick)

    def _gold_schedule(self, settings: Settings, policy: Policy, log: Log) -> GoldSchedule | None:
        """The scheduled gold run (``EDGE_GOLD_EVERY``; 0: none): ``llm-edge gold run`` on
        the active policy in a subprocess, its regressions counted and sent to the webhook."""
        if settings.gold_every_s <= 0:
            return None
        try:
            with open(policy.source, "rb") as f:
                digest = policy_digest(f.read())
        except OSError:
            digest = policy_digest(policy.source)
        out_dir = os.path.join(settings.state_dir, "gold")
        floors = model_floors(
            {n: t.pool for n, t in policy.tiers.items()},
            {n: t.quality_floor for n, t in policy.tiers.items()},
        )
        return GoldSchedule(
            self.state,
            settings.gold_every_s,
            digest,
            lambda trigger, why: run_gold_subprocess(settings.policy, out_dir),
            log,
            floors=floors,
            before=lambda: {m: g.score for m, g in self.engines.gold.items()},
            on_done=self._gold_done,
        )

    async def _gold_done(self, outcome: Any) -> None:
        """A scheduled gold run ended: counted; a regression also goes to the policy's
        webhook (``jobs.webhook_url``), retried with the job webhooks' backoff."""
        self.metrics.gold_run(outcome.trigger, outcome.verdict, sorted(outcome.models))
        url = self.policy.webhook_url
        if outcome.verdict != "regression" or not url:
            return
        payload = {
            "type": "gold.regression",
            "trigger": outcome.trigger,
            "why": outcome.why,
            "failures": outcome.failures,
            "models": outcome.models,
            "at": time.time(),
        }
        s = self.settings
        for attempt in range(1, s.jobs_webhook_attempts + 1):
            try:
                await post_webhook(url, payload)
                return
            except ConnectionError as exc:
                self.log.event("warning", "gold webhook failed", attempt=attempt, error=str(exc))
            if attempt < s.jobs_webhook_attempts:
                await asyncio.sleep(s.jobs_webhook_backoff_s * 2 ** (attempt - 1))

    def _gauges(self, m: Metrics) -> None:
        """The gauges read from shared figures: on this worker's metrics, and on a merged view."""
        m.watch_jobs(self._job_counts)
        m.watch_quality(self._quality_rows, lambda: self.engines.gold_ages(time.time()))
        m.watch_rollout(lambda: (self.rollouts.percent, self.rollouts.counts))
        m.watch_quota(lambda: self.quotas.figures(time.monotonic()))

    def _quality_rows(self) -> list[tuple[str, str, str, str, float, float]]:
        out = []
        for r in self.engines.scores:
            for source, ev in r.evidence.items():
                out.append((r.tier, r.task, r.model, source, ev.mean, ev.n))
            out.append((r.tier, r.task, r.model, "hybrid", r.hybrid, 0.0))
        return out

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
        if self.gold_schedule is not None:
            await self.gold_schedule.close()
        self.spend.flush()
        self.rollouts.flush()
        with contextlib.suppress(StateUnavailable):  # else lost with the worker
            self.feedback.close()
        self.fleet.publish()  # a worker's counts outlive it: counters never go backwards
        self.state.close()
        self.jobs.state.close()
        if self.feedback.handle is not None:
            self.feedback.handle.close()

    def stop_refresh(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()

    def protocol(self) -> EdgeProtocol:
        return EdgeProtocol(
            self.settings, self.tracker, self.handle, self.protocol_error, self.check_head
        )

    def check_head(self, req: Request, peer: str) -> tuple[EdgeError, float] | None:
        """Before a body is read, what is refused anyway: a body for an unknown route or
        method, a keyed route without a valid gateway key (slowed after repeated failures
        from ``peer``), a body that is not JSON. The error and the delay of its answer."""
        headers = req.headers
        announced = b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"
        try:
            if announced:
                self._route(req)  # a 404 or 405 need not read what it will not use
            keyed = req.path in self.routes or req.path.startswith(ID_PATHS)
            if not keyed or req.path in KEYLESS or req.path.startswith(ADMIN_PATHS):
                return None  # unknown (a 404 later), health, the admin routes (their own key)
            if req.path == b"/v1/responses" and b"upgrade" in headers:
                return None  # a WebSocket handshake: its 426 tells nothing, and comes at once
            try:
                self.keys.check(headers.get(b"authorization"), headers.get(b"x-api-key"))
            except Unauthorized as err:
                return err, self._auth_failed(req, peer)
            if req.method == b"POST" and not is_json(headers):
                raise UnsupportedMediaType("Content-Type must be application/json")
        except EdgeError as err:
            return err, 0.0
        return None

    def _auth_failed(self, req: Request, peer: str) -> float:
        """Count a failed authentication; the delay its answer gets."""
        delay = self.throttle.failed(peer.rpartition(":")[0] or peer)
        credential = "admin" if req.path.startswith(ADMIN_PATHS) else "gateway"
        self.metrics.auth_failed(route_label(req.path, self.routes), credential, delay > 0)
        return delay

    def _route(self, req: Request) -> Route:
        methods = self.routes.get(req.path)
        if methods is None and req.path.startswith(b"/v1/jobs/"):
            methods = {b"GET": self.job, b"DELETE": self.job}
        if methods is None and req.path.startswith(b"/v1/models/"):
            methods = {b"GET": self.model}
        if methods is None and req.path.startswith(b"/v1/responses/"):
            methods = {b"GET": self.stored_response, b"DELETE": self.stored_response}
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
        return route

    # -- the boundary

    async def handle(self, req: Request, proto: EdgeProtocol) -> None:
        out = Outcome(dialect=dialect_of(req))
        if out.dialect == "anthropic":  # the Anthropic SDK reads its request id from `request-id`
            proto.extra_headers = [(b"request-id", req.request_id.encode())]
        self.metrics.in_flight += 1
        try:
            route = self._route(req)
            await route(req, proto, out)
        except EdgeError as err:
            out.status, out.error = err.status_code(), type(err).__name__
            if isinstance(err, Unauthorized) and not proto.started:
                delay = self._auth_failed(req, proto.peer)
                if delay:
                    await asyncio.sleep(delay)  # this connection alone waits
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
                self.render_error(err, req, proto, routed_headers(out))
        except StateUnavailable as exc:
            self.spend.down(exc)
            unavailable = ServiceUnavailable(
                "the shared state is unavailable; retry later", headers=[(b"retry-after", b"5")]
            )
            out.status, out.error = 503, "StateUnavailable"
            if not proto.started:
                self.render_error(unavailable, req, proto, routed_headers(out))
        except asyncio.CancelledError:
            out.status, out.error = 499, "ClientDisconnected"
            raise
        except ConnectionError:
            out.status, out.error = 499, "ClientDisconnected"
            proto.close()
        except orjson.JSONEncodeError:
            # a body orjson parsed (up to 1024 levels) but cannot write again (254): the
            # caller's JSON nests too deeply to be forwarded
            deep = too_deep(FORWARDABLE_DEPTH, "the most the gateway can forward")
            out.status, out.error = 400, type(deep).__name__
            if not proto.started:
                self.render_error(deep, req, proto)
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

    def render_error(
        self,
        err: EdgeError,
        req: Request | None,
        proto: EdgeProtocol,
        routed: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        dialect = dialect_of(req)
        rid = req.request_id if req is not None else request_id_for({})
        status, headers, body = render(err, dialect, rid)
        headers = JSON_HEADERS + headers + (routed or [])
        if req is None:
            headers.append((b"x-request-id", rid.encode()))
        elif dialect == "anthropic" and all(n != b"request-id" for n, _ in proto.extra_headers):
            headers.append((b"request-id", rid.encode()))  # an error answered before the handler
        proto.respond(status, headers, body)

    def protocol_error(self, err: EdgeError, req: Request | None, proto: EdgeProtocol) -> None:
        """An error the connection itself answers (framing, limits, deadlines): rendered like
        any, and logged, since no handler ran for it."""
        self.render_error(err, req, proto)
        self.metrics.error("protocol", dialect_of(req), type(err).__name__)
        self.log.request(
            id=req.request_id if req is not None else None,
            method=req.method.decode("latin-1") if req is not None else None,
            target=req.path.decode("latin-1") if req is not None else None,
            status=err.status_code(),
            error=type(err).__name__,
            peer=proto.peer,
        )

    def _account(self, req: Request, out: Outcome, job: bool = False) -> None:
        """Settle, record and count one request (``job``: one run of an async job)."""
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
        # the figures the request's own engine routes on: a canary learns from its traffic
        canary = self.engines.canary
        router = canary.router if out.arm == "canary" and canary is not None else self.router
        if out.ttft is not None and out.model != "-":
            router.record_ttft(out.model, out.ttft, now)
        cost = settle(out, req.request_id, now, self.spend, self.metrics, router)
        if out.status == 200 and out.key_digest and operation == "chat":
            # the answer's record, for feedback and the hybrid score (written in a batch)
            self.feedback.record(
                req.request_id, out.key_digest, out.tier, out.task, out.model, out.arm, out.online
            )
        if self.gold_schedule is not None and out.state is not None and out.status == 200:
            answered = getattr(out.state, "answered_model", "")
            if answered:  # a provider's model version, for the scheduled gold run
                self.gold_schedule.saw(
                    out.model, version_of(answered, getattr(out.state, "fingerprint", ""))
                )
        if out.arm:
            self.rollouts.record(
                out.arm,
                out.status == 200,  # only an answer is a success: a 202 queued a job
                duration * 1000.0,
                cost,
                out.json_asked,
                out.json_valid,
                out.tier,
                out.task,
                out.model,
            )
        if job:  # a job's run, counted apart: a retried job must not look like more requests
            self.metrics.job_run(out.tier, out.status)
        else:
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
        if out.tier and operation == "chat" and out.status != 202 and not job:
            # the tiers' triangle is chat's: embeddings' latency would blur its P95
            self.metrics.observe_stats(
                out.tier,
                out.provider,
                out.model,
                out.status == 200,
                duration,
                out.ttft,
            )
        if out.error and not job:
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
            rescue=out.rescue or None,
        )

    # -- routes

    async def chat_completions(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        await self._chat(req, proto, out, OPENAI)

    async def messages(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        await self._chat(req, proto, out, ANTHROPIC)

    # -- the Responses API

    async def responses(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """``POST /v1/responses``: a stored conversation put before the input
        (``previous_response_id``, the key's own only), then answered as chat is, then kept
        unless ``store`` is false."""
        out.dialect = "responses"
        tenant = self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        body = parse_json(req)
        responses_dialect.check_request(body)
        previous = body.get("previous_response_id")
        if previous is not None:
            stored = self._stored(previous, tenant.key_id, "previous_response_id")
            history = orjson.loads(stored.input_items)
            body = responses_dialect.continued(body, history, orjson.loads(stored.body)["output"])
            req.body = orjson.dumps(body)
        await self._chat(req, proto, out, RESPONSES)
        self._keep(body, tenant.key_id, out)

    def _stored(self, response_id: str, key_id: str, param: str | None = None) -> Any:
        stored = self.state.get_response(response_id, time.time())
        if stored is None or (not self.keys.open and stored.key_id != key_id):
            # another key's answer is as unknown as one never made
            raise NotFound(f"Response with id '{response_id}' not found.", param=param)
        return stored

    def _keep(self, body: dict[str, Any], key_id: str, out: Outcome) -> None:
        """Store a served Responses answer with the conversation it answered (``store`` is
        the API's default); a state backend that is down loses it, never the answer."""
        if out.status != 200 or body.get("store") is False:
            return
        answer = out.state.answer_object() if out.state is not None else None
        if not answer or not answer.get("id"):
            return
        try:
            self.state.put_response(
                answer["id"],
                key_id,
                time.time() + self.settings.responses_retention_s,
                orjson.dumps(responses_dialect.input_items(body)),
                orjson.dumps(answer),
            )
        except StateUnavailable as exc:
            self.spend.down(exc)

    async def stored_response(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """``GET /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``, ``DELETE
        /v1/responses/{id}``: a stored answer of the caller's key."""
        tenant = self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        rest = unquote(req.path[len(b"/v1/responses/") :].decode("latin-1"))
        response_id, _, tail = rest.partition("/")
        if tail not in ("", "input_items") or (tail and req.method != b"GET"):
            raise NotFound(f"Unknown request URL: {req.method.decode()} {req.path.decode()}")
        stored = self._stored(response_id, tenant.key_id)
        if req.method == b"DELETE":
            self.state.delete_response(response_id)
            body = {"id": response_id, "object": "response.deleted", "deleted": True}
            proto.respond(200, JSON_HEADERS, orjson.dumps(body))
            return
        if not tail:
            proto.respond(200, JSON_HEADERS, stored.body)
            return
        items = responses_dialect.listed_items(orjson.loads(stored.input_items), response_id)
        query = parse_qs(req.query.decode("latin-1"))
        page = responses_dialect.items_page(
            items,
            order=query.get("order", ["desc"])[0],
            limit=query.get("limit", ["20"])[0],
            after=query.get("after", [""])[0],
        )
        proto.respond(200, JSON_HEADERS, orjson.dumps(page))

    async def responses_socket(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """``GET /v1/responses``: only ever a WebSocket handshake (Codex), refused with a 426 so
        the client falls back to HTTP at once."""
        if b"upgrade" in req.headers:
            raise UpgradeRequired(
                "WebSocket is not supported on this gateway: use POST /v1/responses "
                "(with stream=true for events)",
                code="websocket_not_supported",
            )
        raise MethodNotAllowed("GET is not allowed here; use POST", headers=[(b"allow", b"POST")])

    async def input_tokens(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        await relay_input_tokens(self.policy, req, proto, out)

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
        dialect = {"anthropic": ANTHROPIC, "responses": RESPONSES}.get(job["dialect"], OPENAI)
        out = Outcome(dialect=dialect.NAME)
        sink = Capture()
        try:
            await self._chat(req, sink, out, dialect, job_tier=job["tier"])
            if dialect is RESPONSES:  # its body holds the whole conversation already
                self._keep(orjson.loads(job["body"]), job["key_id"], out)
        except EdgeError as err:
            out.status, out.error = err.status_code(), type(err).__name__
            status, extra, body = render(err, dialect.ERRORS, job["id"])
            return status, JSON_HEADERS + extra + routed_headers(out), body
        finally:
            self._account(req, out, job=True)
        return sink.status, sink.headers, sink.body

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

    async def edge_feedback(self, req: Request, proto: EdgeProtocol, out: Outcome) -> None:
        """``POST /v1/edge/feedback``: a score on one of the caller's own answers."""
        tenant = self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        body = await self.feedback.submit(self.keys.digest(tenant), parse_json(req))
        out.status = 200
        proto.respond(200, JSON_HEADERS, orjson.dumps(body))

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
            scores=[
                {
                    "tier": r.tier,
                    "task": r.task,
                    "model": r.model,
                    "prior": r.prior,
                    "hybrid": r.hybrid,
                    "sources": {
                        s: {"score": e.mean, "samples": e.n} for s, e in r.evidence.items()
                    },
                }
                for r in self.engines.scores
            ],
        )
        body["scope"] = "fleet" if scope == "fleet" and self.fleet.shared else "instance"
        if self.gold_schedule is not None:
            body["gold_schedule"] = self.gold_schedule.view()
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
