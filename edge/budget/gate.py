"""The cost gate of a chat request: who asks, in which tier, at what cost; past it, or not.

The key is checked (a job carries its tenant and tier instead) and the
request is planned on its arm's engine (the active policy's, or a live
rollout's candidate by a stable hash of the key and session) within the
key's entitlement: its tier is the highest it may use. The key's budget then
reserves the plan's estimate (``Spend.hold``), hard at every tier. Then:

- the budget is used up: a 429 that says when its period turns, or, when
  the client asked for async (``Prefer: respond-async``, or an async key),
  a job scheduled for that moment; a job that meets it waits again;
- the budget asks for a cheaper route (``degrade``): planned again on the
  cheapest acceptable one;
- the request's own estimate is over its tier's block threshold: a 400 that
  names the estimate, the threshold and how to opt in, or a job when asked;
- otherwise the plan goes to the relay, its cap binding every attempt.

Nobody gets a 202 they did not ask for: the SDKs take any 2xx for an answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from edge.budget.jobs import KEPT_HEADERS, Deferred, new_job_id
from edge.budget.spend import ORDER, Hold, stronger
from edge.errors import OverBudget, OverCostCap, ServiceUnavailable
from edge.quality.tasks import task_of
from edge.server.auth import Tenant
from edge.server.relay import JSON_HEADERS, plan_chat
from edge.state.types import StateUnavailable

if TYPE_CHECKING:
    from edge.budget.jobs import JobRunner
    from edge.budget.spend import Spend
    from edge.dialects.core import Dialect
    from edge.observe.metrics import Metrics
    from edge.quality.engines import Engine, Engines
    from edge.quality.rollout import Rollouts
    from edge.server.auth import Keyring
    from edge.server.protocol import Request
    from edge.server.relay import Outcome, Plan, Sink
    from edge.settings import Settings
    from edge.state.types import State


class Gate:
    """The cost gate of one worker, in front of the relay; a job comes through it again."""

    def __init__(
        self,
        settings: Settings,
        keys: Keyring,
        engines: Engines,
        rollouts: Rollouts,
        spend: Spend,
        state: State,
        jobs: JobRunner,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.engines = engines
        self.rollouts = rollouts
        self.spend = spend
        self.state = state
        self.jobs = jobs
        self.metrics = metrics

    def admit(
        self,
        req: Request,
        proto: Sink,
        out: Outcome,
        dialect: Dialect,
        job_tier: str | None = None,
    ) -> tuple[Engine, Plan] | None:
        """Gate on entitlement and cost: the engine and the plan to answer with, or None when
        the request was queued as a job (and answered 202). ``job_tier``: a queued job runs
        now, in the tier it was queued in (raises ``Deferred`` while its budget is used up)."""
        job = job_tier is not None
        engine = self.engines.active
        if job:
            tenant = Tenant("job", job_tier, req.headers.get(b"x-edge-tenant", b"").decode())
            ceiling = None  # checked when it was queued
        else:
            tenant = self.keys.check(
                req.headers.get(b"authorization"), req.headers.get(b"x-api-key")
            )
            ceiling = tenant.ceiling(engine.policy.default_tier)
        out.tenant = tenant.tenant
        if not job:  # whose answer it is, and its task label (feedback, the hybrid score)
            out.key_digest = self.keys.digest(tenant)
            out.task = task_of(engine.policy.quality.tasks, req.headers.get(b"x-edge-task"))
        if self.engines.canary is not None and not job:
            unit = req.headers.get(b"x-edge-session", b"").decode("latin-1") or req.request_id
            out.arm = self.rollouts.arm(tenant.key_id, unit)
            if out.arm == "canary":
                engine = self.engines.canary
        plan = self._plan(engine, req, dialect, tenant, ceiling, "cheapest" if job else "")
        out.tier = plan.tier.name
        hold = self.spend.hold(
            tenant.tenant, plan.decision.cost_usd, overdraft=plan.tier.never_block
        )
        out.hold = hold
        if hold.action == "block":
            self._over_budget(req, proto, plan, tenant, dialect, hold, out, job)
            return None  # queued until the period turns (anything else raised)
        action = stronger(plan.decision.action, hold.action)
        if hold.action == "degrade" and ORDER["degrade"] > ORDER[plan.decision.action] and not job:
            # the key's budget asks for a cheaper route than the request's own estimate did
            plan = self._plan(engine, req, dialect, tenant, ceiling, "cheapest")
            action = stronger(plan.decision.action, hold.action)
        plan.action = action
        plan.budget_used = hold.fraction if hold.budgeted else None
        out.action = action
        self.metrics.budget_action(action, "key" if hold.action == action != "ok" else "request")
        if action == "block":  # the request's own estimate, over its tier's block threshold
            d, tier = plan.decision, plan.tier
            if not self._asks_async(req, tenant, plan):
                raise OverCostCap(
                    f"the estimated cost ${d.cost_usd:.4f} is over tier {tier.name}'s block "
                    f"threshold ${tier.block_usd:g}; send the header `Prefer: respond-async` to "
                    "run it as an async job (202, then GET /v1/jobs/{id}), or lower max_tokens, "
                    "name a cheaper model or use a cheaper tier",
                    code="cost_over_threshold",
                )
            reason = (
                f"the estimated cost ${d.cost_usd:.4f} is over tier {tier.name}'s block "
                f"threshold ${tier.block_usd:g}; the request runs as a job"
            )
            self._enqueue(req, proto, plan, tenant, dialect, out, time.time(), reason)
            return None
        plan.arm = out.arm
        return engine, plan

    def _over_budget(
        self,
        req: Request,
        proto: Sink,
        plan: Plan,
        tenant: Tenant,
        dialect: Dialect,
        hold: Hold,
        out: Outcome,
        job: bool,
    ) -> None:
        """The key's budget is used up for its day or month: whatever the tier, nothing runs
        before it turns. A job waits for it; a request asked to be one becomes one."""
        out.action = plan.action = "block"
        plan.budget_used = hold.fraction
        self.metrics.budget_action("block", "key")
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(hold.resets_at))
        reason = (
            f"this key's {hold.period} budget would be {hold.fraction:.0%} used; it turns at {when}"
        )
        if job:
            raise Deferred(hold.resets_at, reason)
        if self._asks_async(req, tenant, plan):
            self._enqueue(req, proto, plan, tenant, dialect, out, hold.resets_at, reason)
            return
        wait = max(1, int(hold.resets_at - time.time() + 0.999))
        raise OverBudget(
            f"{reason}; send the header `Prefer: respond-async` to queue the request until then",
            code="budget_exceeded",
            headers=[(b"retry-after", b"%d" % wait)],
        )

    @staticmethod
    def _asks_async(req: Request, tenant: Tenant, plan: Plan) -> bool:
        """``Prefer: respond-async`` (RFC 7240; parameters ignored), or a key declared async
        for a request that is not a stream (a streaming client cannot read a 202's body: its
        SDK would yield nothing)."""
        if prefers_async(req.headers.get(b"prefer", b"")):
            return True
        return tenant.async_jobs and not plan.info.stream

    def _plan(
        self,
        engine: Engine,
        req: Request,
        dialect: Dialect,
        tenant: Tenant,
        ceiling: str | None,
        force: str = "",
    ) -> Plan:
        return plan_chat(
            engine.policy,
            engine.router,
            req,
            dialect,
            tenant.tier,
            ceiling=ceiling,
            max_attempts=self.settings.max_attempts,
            hedging=self.settings.hedging,
            force=force,
        )

    def _enqueue(
        self,
        req: Request,
        proto: Sink,
        plan: Plan,
        tenant: Tenant,
        dialect: Dialect,
        out: Outcome,
        not_before: float,
        reason: str,
    ) -> None:
        """Write the request as a job (on disk before the answer), then answer 202."""
        now = time.time()
        body = dict(plan.body)
        body["stream"] = False
        body.pop("stream_options", None)
        headers = {
            k.decode(): v.decode("latin-1") for k, v in req.headers.items() if k in KEPT_HEADERS
        }
        if tenant.tenant:
            headers["x-edge-tenant"] = tenant.tenant
        job_id = new_job_id()
        try:
            self.state.put_job(
                {
                    "id": job_id,
                    "created_at": now,
                    "updated_at": now,
                    "status": "queued",
                    "tenant": tenant.tenant,
                    "key_id": tenant.key_id,
                    "tier": plan.tier.name,
                    "dialect": dialect.NAME,
                    "path": req.path.decode(),
                    "headers": orjson.dumps(headers).decode(),
                    "body": orjson.dumps(body),
                    "reason": reason,
                    "next_run_at": not_before,
                }
            )
        except StateUnavailable as exc:
            self.spend.down(exc)
            raise ServiceUnavailable(
                "the request is over its cost threshold and would be queued as a job, but the "
                "job queue cannot persist it right now; retry later",
                headers=[(b"retry-after", b"5")],
            ) from None
        self.jobs.poke()
        out.status = 202
        location = f"/v1/jobs/{job_id}".encode()
        payload: dict[str, object]
        if dialect.NAME == "anthropic":
            payload = {"type": "edge_job", "id": job_id, "status": "queued", "reason": reason}
        else:
            payload = {"id": job_id, "object": "edge.job", "status": "queued", "reason": reason}
        payload["location"] = location.decode()
        payload["next_run_at"] = int(not_before)
        proto_headers = [
            *JSON_HEADERS,
            (b"location", location),
            (b"vary", b"prefer"),
            (b"x-edge-job-id", job_id.encode()),
            (b"x-edge-budget-action", b"block"),
            (b"x-edge-tier", plan.tier.name.encode()),
            (b"x-edge-cost-estimate-usd", b"%.6f" % plan.decision.cost_usd),
        ]
        if plan.budget_used is not None:
            proto_headers.append((b"x-edge-budget-used", b"%.4f" % plan.budget_used))
        if prefers_async(req.headers.get(b"prefer", b"")):
            proto_headers.append((b"preference-applied", b"respond-async"))
        proto.respond(202, proto_headers, orjson.dumps(payload))


def prefers_async(prefer: bytes) -> bool:
    """Whether a ``Prefer`` header holds the ``respond-async`` preference."""
    for token in prefer.split(b","):
        if token.split(b";", 1)[0].strip().lower() == b"respond-async":
            return True
    return False
