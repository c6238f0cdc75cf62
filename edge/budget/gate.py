"""The cost gate of a chat request: who asks, on which arm, at what cost; past it, or a job.

The key is checked (a job carries its tenant instead) and the request is
planned on its arm's engine: the active policy's, or a live rollout's
candidate by a stable hash of the key and session. The key's budget then
reserves the plan's estimate (``Spend.hold``). The stronger of the
request's own cost action and the budget's wins; when the budget asks for
more than the estimate did, the request is planned again (``degrade``: on
the cheapest acceptable route). A request that ends at ``block`` is written
as a job, on disk before its ``202`` answer, and runs later; a job runs on
the cheapest route and is never blocked again.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import TYPE_CHECKING

import orjson

from edge.budget.jobs import KEPT_HEADERS, new_job_id
from edge.budget.spend import ORDER, Hold, stronger
from edge.dialects import anthropic as anthropic_dialect
from edge.errors import ServiceUnavailable
from edge.server.auth import Tenant
from edge.server.relay import JSON_HEADERS, plan_chat
from edge.state.types import StateUnavailable

if TYPE_CHECKING:
    from edge.budget.jobs import JobRunner
    from edge.budget.spend import Spend
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
        self, req: Request, proto: Sink, out: Outcome, dialect: ModuleType, job: bool = False
    ) -> tuple[Engine, Plan] | None:
        """Gate on cost (the request's estimate, the key's budget): the engine and the plan to
        answer with, or None when the request was queued as a job (and answered 202)."""
        tenant = (
            Tenant("job", None, req.headers.get(b"x-edge-tenant", b"").decode())
            if job
            else self.keys.check(req.headers.get(b"authorization"), req.headers.get(b"x-api-key"))
        )
        out.tenant = tenant.tenant
        engine = self.engines.active
        if self.engines.canary is not None and not job:
            unit = req.headers.get(b"x-edge-session", b"").decode("latin-1") or req.request_id
            out.arm = self.rollouts.arm(tenant.key_id, unit)
            if out.arm == "canary":
                engine = self.engines.canary
        plan = self._plan(engine, req, dialect, tenant, "cheapest" if job else "")
        out.tier = plan.tier.name
        hold = self.spend.hold(
            tenant.tenant, plan.decision.cost_usd, never_block=plan.tier.never_block or job
        )
        out.hold = hold
        action = stronger(plan.decision.action, hold.action)
        if ORDER[hold.action] > ORDER[plan.decision.action] and hold.action != "warn" and not job:
            # the key's budget asks for more than the request's own estimate did
            plan = self._plan(
                engine, req, dialect, tenant, "cheapest" if hold.action == "degrade" else "block"
            )
            action = stronger(plan.decision.action, hold.action)
        plan.action = action
        plan.budget_used = hold.fraction if hold.budgeted else None
        out.action = action
        self.metrics.budget_action(action, "key" if hold.action == action != "ok" else "request")
        if action == "block":
            self._enqueue(req, proto, plan, tenant, dialect, hold, out)
            return None
        plan.arm = out.arm
        return engine, plan

    def _plan(
        self, engine: Engine, req: Request, dialect: ModuleType, tenant: Tenant, force: str = ""
    ) -> Plan:
        return plan_chat(
            engine.policy,
            engine.router,
            req,
            dialect,
            tenant.tier,
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
        dialect: ModuleType,
        hold: Hold,
        out: Outcome,
    ) -> None:
        """Write the request as a job (on disk before the answer), then answer 202."""
        now = time.time()
        by_budget = hold.action == "block"
        if by_budget:
            reason = (
                f"the key's spend budget would be {hold.fraction:.0%} used; "
                "the request runs as a job when the budget period turns"
            )
            day_end = (int(now // 86400) + 1) * 86400.0
            not_before = day_end
        else:
            reason = (
                f"the estimated cost ${plan.decision.cost_usd:.4f} is over tier {plan.tier.name}'s "
                f"block threshold ${plan.tier.block_usd:g}; the request runs as a job"
            )
            not_before = now
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
        if dialect is anthropic_dialect:
            payload = {"type": "edge_job", "id": job_id, "status": "queued", "reason": reason}
        else:
            payload = {"id": job_id, "object": "edge.job", "status": "queued", "reason": reason}
        payload["location"] = location.decode()
        proto_headers = [
            *JSON_HEADERS,
            (b"location", location),
            (b"x-edge-job-id", job_id.encode()),
            (b"x-edge-budget-action", b"block"),
            (b"x-edge-tier", plan.tier.name.encode()),
            (b"x-edge-cost-estimate-usd", b"%.6f" % plan.decision.cost_usd),
        ]
        if plan.budget_used is not None:
            proto_headers.append((b"x-edge-budget-used", b"%.4f" % plan.budget_used))
        proto.respond(202, proto_headers, orjson.dumps(payload))
