"""``/v1/edge/stats``: the quality-latency-cost triangle as JSON, per tier and per model.

Computed from the fleet's metrics (every worker's counters and mergeable
latency sketches over the last five minutes, on wall-clock slots), the state backend (spend by
key today, the rollout), the breakers, and what the worker hands in: its
policy, the router's quality scores, the hybrid quality rows, the job counts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edge.quality.rollout import status as rollout_status
from edge.state.types import StateUnavailable, periods
from hotpath.sketch import LatencySketch

if TYPE_CHECKING:
    from edge.observe.metrics import Metrics
    from edge.policy import Policy
    from edge.quality.rollout import RolloutConfig
    from edge.state.types import State

BREAKER_NAMES = {0: "closed", 1: "half_open", 2: "open"}
# hedges that were never sent: not in a tier's hedge rate
SKIPPED = ("skipped_budget", "skipped_breaker")
# attempt outcomes that judge nothing: it lost a race, or its request ended without it
NEUTRAL = ("lost", "cancelled")


def _quantiles(sk: LatencySketch | None, now: float) -> dict[str, float | None]:
    if sk is None or not sk.count(now):
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{int(q * 100)}": round(sk.quantile(q, now) * 1000.0, 2) for q in (0.5, 0.95, 0.99)}


def fleet_stats(
    m: Metrics,
    policy: Policy,
    state: State,
    rollouts: RolloutConfig,
    *,
    quality: dict[str, float],
    jobs: dict[str, int],
    state_available: bool,
    scores: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    now = m.clock()  # the sketches' slots are wall-clock slots (edge/observe/metrics.py)
    tiers: dict[str, Any] = {}
    for name, tier in policy.tiers.items():
        ok = m.tier_requests.get((name, "ok"), 0)
        n = ok + m.tier_requests.get((name, "error"), 0)
        cost = sum(v for (_, _, t), v in m.costs.items() if t == name)
        hedges = sum(v for (t, o), v in m.hedges.items() if t == name and o not in SKIPPED)
        tiers[name] = {
            "requests": n,
            "success_rate": ok / n if n else None,
            "latency_ms": _quantiles(m.latency.get(("tier", name)), now),
            "ttft_ms": _quantiles(m.first_token.get(("tier", name)), now),
            "cost_per_1k_usd": cost / n * 1000 if n else None,
            "hedge_rate": hedges / n if n else None,
            "slo": {
                "p95_target_ms": tier.p95_target_ms,
                "quality_floor": tier.quality_floor,
                "cost_cap_usd": tier.degrade_usd,
            },
        }
    models: dict[str, Any] = {}
    breakers = {(p, mo): st for p, mo, st in m.breaker_figures()}
    for (_, _, _, provider, model, status), count in m.requests.items():
        if model == "-":
            continue
        row = models.setdefault(
            f"{provider}/{model}",
            {"provider": provider, "model": model, "requests": 0, "ok": 0, "tokens": {}},
        )
        row["requests"] += count
        row["ok"] += count if status == "200" else 0
    attempts: dict[tuple[str, str], list[int]] = {}  # (provider, model) -> [judged, ok]
    for (provider, model, outcome), count in m.attempts.items():
        if model == "-":
            continue
        models.setdefault(
            f"{provider}/{model}",
            {"provider": provider, "model": model, "requests": 0, "ok": 0, "tokens": {}},
        )
        if outcome not in NEUTRAL:
            both = attempts.setdefault((provider, model), [0, 0])
            both[0] += count
            both[1] += count if outcome == "ok" else 0
    for row in models.values():
        p, mo, n = row["provider"], row["model"], row["requests"]
        cost = sum(v for (pp, mm, _), v in m.costs.items() if (pp, mm) == (p, mo))
        # served: of the requests this model answered for, the share answered whole; attempt:
        # of every attempt on it that ended in a verdict, the share that succeeded (a model that
        # fails 5 attempts of 6 and serves the sixth is served 1.0, attempted 1/6)
        row["success_rate"] = row["served_success_rate"] = row.pop("ok") / n if n else None
        judged, ok = attempts.get((p, mo), (0, 0))
        row["attempts"] = judged
        row["attempt_success_rate"] = ok / judged if judged else None
        row["latency_ms"] = _quantiles(m.latency.get(("model", p, mo)), now)
        row["ttft_ms"] = _quantiles(m.first_token.get(("model", p, mo)), now)
        row["cost_per_1k_usd"] = cost / n * 1000 if n else None
        row["tokens"] = {d: v for (pp, mm, d), v in m.tokens.items() if (pp, mm) == (p, mo)}
        row["breaker"] = BREAKER_NAMES.get(breakers.get((p, mo), 0), "closed")
        row["quality_score"] = quality.get(mo)
    for (p, mo), st in breakers.items():  # models that have served nothing yet still show
        models.setdefault(
            f"{p}/{mo}",
            {"provider": p, "model": mo, "requests": 0, "success_rate": None,
             "served_success_rate": None, "attempts": 0, "attempt_success_rate": None,
             "breaker": BREAKER_NAMES.get(st, "closed"), "quality_score": quality.get(mo)},
        )  # fmt: skip
    spend: dict[str, float] = {}
    rollout = None
    try:
        for row in state.spend_report(periods(time.time())[0][4:]):
            if row["kind"] == "answer":
                spend[row["tenant"] or "-"] = spend.get(row["tenant"] or "-", 0.0) + row["cost_usd"]
        rollout = rollout_status(state, rollouts)["rollout"]
    except StateUnavailable:
        pass  # the shared state is down: the live figures above still stand
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "workers": m.workers,
        "window_s": 300,
        "tiers": tiers,
        "models": dict(sorted(models.items())),
        "hedges": {f"{t}:{o}": v for (t, o), v in m.hedges.items()},
        "budget_actions": {f"{a}:{s}": v for (a, s), v in m.actions.items()},
        "spend_today_by_key_usd": spend,
        "jobs": jobs,
        # every run of an async job, apart from the synchronous requests above (a job retried
        # three times runs three times, and is one job)
        "job_runs": {f"{t}:{st}": v for (t, st), v in m.job_runs.items()},
        "state_available": state_available,
        "quality": scores or [],
        "rollout": None
        if rollout is None
        else {k: rollout.get(k) for k in ("id", "status", "stage_percent", "arms", "reason")},
    }
