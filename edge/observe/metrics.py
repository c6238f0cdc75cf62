"""Prometheus metrics and stats of the gateway, every worker's together.

The request path only bumps plain integers in dicts (no locks, no label
lookups in prometheus-client); a collector turns them into Prometheus
families when ``/metrics`` is scraped. Each worker writes a ``snapshot`` of
its counters, histograms and latency sketches to the run's metrics
directory every second; the worker that answers ``/metrics`` or
``/v1/edge/stats`` ``absorb``s the others' (a dead worker's counts stay: a
counter never goes backwards) into a fresh ``Metrics`` and renders that. Names follow Prometheus conventions
(base units, ``_total``, ``_seconds``); labels are bounded: dialect,
provider and model come from the policy (an unknown model is ``-``),
status is the HTTP status the request ended with.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edge.budget.pricing import Tokens
from hotpath.sketch import LatencySketch

SKETCH_WINDOW_S, SKETCH_SLOTS = 300.0, 10
# a worker's snapshot older than this (it publishes every second) is a dead worker's: its
# counters still count, its gauges no longer do
GAUGE_TTL_S = 5.0
SERIES_LABELS = ["operation", "dialect", "tier", "provider", "model"]
# (attribute, family, help, labels): every plain counter, exported the same way
COUNTER_FAMILIES = (
    ("requests", "edge_requests", "Requests answered", [*SERIES_LABELS, "status"]),
    (
        "errors",
        "edge_request_errors",
        "Requests that ended in an error",
        ["operation", "dialect", "error_type"],
    ),
    ("tokens", "edge_tokens", "Tokens by direction", ["provider", "model", "direction"]),
    (
        "attempts",
        "edge_attempts",
        "Upstream attempts by how they ended",
        ["provider", "model", "outcome"],
    ),
    (
        "hedges",
        "edge_hedges",
        "Hedges by how they ended (won, lost, failed, cancelled, replaced; skipped_budget: the "
        "tier's hedge budget was spent, skipped_breaker: no candidate's breaker admitted one)",
        ["tier", "outcome"],
    ),
    (
        "rescues",
        "edge_rescues",
        "Streams broken after their first byte, by how the rescue ended (continued, "
        "restarted: completed on a fallback; the others ended with an error event)",
        ["tier", "outcome"],
    ),
    (
        "saturations",
        "edge_pool_saturated",
        "Attempts that found every gateway connection to the provider busy until the wait's "
        "deadline (the gateway's saturation, never a breaker failure)",
        ["provider"],
    ),
    (
        "waste_tokens",
        "edge_hedge_waste_tokens",
        "Tokens of attempts that did not serve the answer (lost, cancelled, failed)",
        ["provider", "model", "direction"],
    ),
    (
        "transitions",
        "edge_breaker_transitions",
        "Circuit breaker state changes",
        ["provider", "model", "from_state", "to_state"],
    ),
    (
        "costs",
        "edge_cost_usd",
        "Real cost of answers from provider usage, USD",
        ["provider", "model", "tier"],
    ),
    (
        "actions",
        "edge_budget_actions",
        "Cost actions taken (scope: the request's estimate, or the key's budget)",
        ["action", "scope"],
    ),
    ("jobs_done", "edge_jobs_finished", "Async jobs finished", ["outcome"]),
    (
        "job_runs",
        "edge_job_runs",
        "Runs of async jobs by tier and the HTTP status they ended with (a retried job runs "
        "more than once; never counted in edge_requests_total)",
        ["tier", "status"],
    ),
    (
        "auth_failures",
        "edge_auth_failures",
        "Failed authentications (credential: gateway key or admin key)",
        ["route", "credential"],
    ),
    (
        "auth_delays",
        "edge_auth_delayed",
        "Failed authentications answered late (repeated failures from one peer address)",
        ["route"],
    ),
    (
        "quota_avoided",
        "edge_quota_avoided",
        "Upstream calls not made because the model's provider quota could not cover them "
        "(action: steered to another candidate, held until the reset, shed with a 429)",
        ["model", "action"],
    ),
    (
        "sheds",
        "edge_shed",
        "Requests shed by admission with a 429 (reason: queue_full, preempted, deadline, quota)",
        ["tier", "reason"],
    ),
    ("rollbacks", "edge_rollout_rollbacks", "Automatic rollout rollbacks", ["reason"]),
    (
        "gold_runs",
        "edge_gold_runs",
        "Scheduled gold runs (trigger: schedule, policy, model; verdict: pass, regression, error)",
        ["trigger", "verdict"],
    ),
    (
        "gold_regressions",
        "edge_gold_regressions",
        "Models a scheduled gold run found under their floor (they were not before)",
        ["model"],
    ),
)
# what a worker shares with the others: the exported counters and the stats' per-tier counts
COUNTERS = (*(f[0] for f in COUNTER_FAMILIES), "tier_requests")

# OpenTelemetry GenAI duration buckets, extended to two minutes: LLM calls are slow.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
    120.0,
)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    60.0,
)

# Time waited for an admission slot: most requests wait 0 (the first bucket).
QUEUE_BUCKETS = (0.0, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
HIST_BUCKETS = {"duration": DURATION_BUCKETS, "ttft": TTFT_BUCKETS, "queue_wait": QUEUE_BUCKETS}


class StateView(NamedTuple):
    """The state backend as a worker sees it (``edge.budget.spend.Spend``)."""

    up: bool
    errors: int
    busy: int = 0
    pending: int = 0
    aggregated: int = 0
    dropped: int = 0


class Hist:
    """A classic histogram: per-bucket counts (not cumulative), sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class Metrics:
    def __init__(self) -> None:
        # (operation, dialect, tier, provider, model[, status]): the OpenTelemetry GenAI
        # attributes (operation, provider, model, error type) plus the gateway's dialect and tier
        self.requests: dict[tuple[str, ...], int] = {}
        self.errors: dict[tuple[str, ...], int] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.duration: dict[tuple[str, ...], Hist] = {}
        self.ttft: dict[tuple[str, ...], Hist] = {}
        self.attempts: dict[tuple[str, str, str], int] = {}
        self.hedges: dict[tuple[str, str], int] = {}
        self.rescues: dict[tuple[str, str], int] = {}
        self.saturations: dict[tuple[str], int] = {}
        self.waste_tokens: dict[tuple[str, str, str], int] = {}
        self.transitions: dict[tuple[str, str, str, str], int] = {}
        self.costs: dict[tuple[str, str, str], float] = {}
        self.actions: dict[tuple[str, str], int] = {}
        self.jobs_done: dict[tuple[str], int] = {}
        self.job_runs: dict[tuple[str, str], int] = {}
        self.auth_failures: dict[tuple[str, str], int] = {}
        self.auth_delays: dict[tuple[str], int] = {}
        self.sheds: dict[tuple[str, str], int] = {}
        self.quota_avoided: dict[tuple[str, str], int] = {}
        self._quota: Callable[[], list[tuple[str, str, int]]] | None = None
        self.queue_wait: dict[tuple[str, ...], Hist] = {}  # by (tier,)
        self._admission: Callable[[], dict[str, tuple[int, int]]] | None = None
        self.admission_totals: dict[str, list[int]] = {}  # absorbed: tier -> [in flight, queued]
        self._jobs: Callable[[], dict[str, int]] | None = None
        # (tier, task, model, source, score, samples) rows; model -> age of its gold score
        self._quality: Callable[[], list[tuple[str, str, str, str, float, float]]] | None = None
        self._gold_age: Callable[[], dict[str, float]] | None = None
        self._rollout: Callable[[], tuple[float, dict[tuple[str, str], int]]] | None = None
        self.rollbacks: dict[tuple[str], int] = {}
        self.gold_runs: dict[tuple[str, str], int] = {}
        self.gold_regressions: dict[tuple[str], int] = {}
        self._state: Callable[[], StateView] | None = None
        # the state backend as every absorbed worker saw it: up only when every live one reaches
        # it; errors and the spend figures summed (None: nobody told)
        self.state_totals: StateView | None = None
        self.tier_requests: dict[tuple[str, str], int] = {}
        # latency and TTFT sketches by ("tier", tier) and ("model", provider, model): the stats'
        # quantiles, mergeable across workers and hosts, so their slots follow the wall clock
        # (``clock``): each host's monotonic clock starts at its own boot, and a merge keeps
        # only the newer epoch of a slot
        self.latency: dict[tuple[str, ...], LatencySketch] = {}
        self.first_token: dict[tuple[str, ...], LatencySketch] = {}
        # another worker's gauges, summed (pool) or at their most open (breakers), when absorbed
        self.pool_totals: dict[str, int] = {}
        self.bodies_totals: list[int] = [0, 0, 0]
        self._bodies: Callable[[], tuple[int, int, int]] | None = None
        self.breaker_worst: dict[tuple[str, str], int] = {}
        self.clock: Callable[[], float] = time.time
        self.workers = 1
        self.in_flight = 0
        self._pool: Callable[[], dict[str, int]] | None = None
        self._breakers: Callable[[], list[tuple[str, str, int]]] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    def observe(
        self,
        operation: str,
        dialect: str,
        tier: str,
        provider: str,
        model: str,
        status: int,
        duration: float,
        ttft: float | None,
    ) -> None:
        series = (operation, dialect, tier or "-", provider, model)
        key = (*series, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.duration.get(series)
        if hist is None:
            hist = self.duration[series] = Hist(DURATION_BUCKETS)
        hist.observe(duration)
        if ttft is not None:
            hist = self.ttft.get(series)
            if hist is None:
                hist = self.ttft[series] = Hist(TTFT_BUCKETS)
            hist.observe(ttft)

    def observe_stats(
        self,
        tier: str,
        provider: str,
        model: str,
        ok: bool,
        duration: float,
        ttft: float | None,
    ) -> None:
        """A synchronous chat request's outcome in the stats' per-tier counts and sketches (on
        the wall clock: see ``clock``)."""
        now = self.clock()
        key = (tier, "ok" if ok else "error")
        self.tier_requests[key] = self.tier_requests.get(key, 0) + 1
        for series in (("tier", tier), ("model", provider, model)):
            _sketch(self.latency, series).add(duration, now)
            if ttft is not None:
                _sketch(self.first_token, series).add(ttft, now)

    # -- across workers

    def body_figures(self) -> tuple[int, int, int]:
        """Request body bytes reserved and read within the body budget, and bodies waiting."""
        if self._bodies is not None:
            return self._bodies()
        reserved, read, waiting = self.bodies_totals
        return reserved, read, waiting

    def pool_figures(self) -> dict[str, int] | None:
        return self._pool() if self._pool is not None else (self.pool_totals or None)

    def breaker_figures(self) -> list[tuple[str, str, int]]:
        if self._breakers is not None:
            return self._breakers()
        return [(p, m, st) for (p, m), st in self.breaker_worst.items()]

    def state_figures(self) -> StateView | None:
        """The state backend as this worker sees it, or as the absorbed workers saw it."""
        return self._state() if self._state is not None else self.state_totals

    def snapshot(self) -> dict[str, object]:
        state = self.state_figures()
        return {
            "at": time.time(),  # the gauges below are current only while this is recent
            "state": list(state) if state is not None else None,
            "counters": {
                name: [[list(k), v] for k, v in getattr(self, name).items()] for name in COUNTERS
            },
            "hists": {
                name: [[list(k), h.counts, h.total] for k, h in getattr(self, name).items()]
                for name in HIST_BUCKETS
            },
            "sketches": {
                name: [[list(k), sk.dump()] for k, sk in getattr(self, name).items()]
                for name in ("latency", "first_token")
            },
            "in_flight": self.in_flight,
            "pool": self.pool_figures(),
            "bodies": list(self.body_figures()),
            "breakers": self.breaker_figures(),
            "admission": self.admission_figures(),
        }

    def absorb(self, snap: dict[str, Any], live: bool = True) -> None:
        """Add another worker's snapshot (counters, histograms, sketches; in-flight and pools
        summed, breakers at their most open, the state up only if up for every worker). A
        worker that is not ``live`` (its snapshot is older than ``GAUGE_TTL_S``: it died)
        adds its counts only: its gauges tell of a process that no longer exists."""
        for name, rows in snap["counters"].items():
            target = getattr(self, name)
            for key, value in rows:
                target[tuple(key)] = target.get(tuple(key), 0) + value
        for name, rows in snap["hists"].items():
            target = getattr(self, name)
            for key, counts, total in rows:
                hist = target.get(tuple(key))
                if hist is None:
                    hist = target[tuple(key)] = Hist(HIST_BUCKETS[name])
                hist.counts = [a + b for a, b in zip(hist.counts, counts, strict=True)]
                hist.total += total
        for name, rows in snap["sketches"].items():
            target = getattr(self, name)
            for key, dump in rows:
                other = LatencySketch(window_s=SKETCH_WINDOW_S, slots=SKETCH_SLOTS)
                other.load(dump)
                _sketch(target, tuple(key)).merge(other)
        state = snap.get("state")
        if state is not None:
            theirs = StateView(*state)
            mine = self.state_totals
            self.state_totals = StateView(
                (mine is None or mine.up) and (theirs.up or not live),
                theirs.errors + (mine.errors if mine else 0),
                theirs.busy + (mine.busy if mine else 0),
                (theirs.pending if live else 0) + (mine.pending if mine else 0),
                theirs.aggregated + (mine.aggregated if mine else 0),
                theirs.dropped + (mine.dropped if mine else 0),
            )
        if not live:
            return
        self.in_flight += snap["in_flight"]
        for i, v in enumerate(snap.get("bodies") or ()):
            self.bodies_totals[i] += v
        for k, v in (snap.get("pool") or {}).items():
            self.pool_totals[k] = self.pool_totals.get(k, 0) + v
        for p, m, st in snap.get("breakers", []):
            self.breaker_worst[(p, m)] = max(self.breaker_worst.get((p, m), 0), st)
        for tier, (running, waiting) in (snap.get("admission") or {}).items():
            both = self.admission_totals.setdefault(tier, [0, 0])
            both[0] += running
            both[1] += waiting

    # -- admission

    def admitted(self, tier: str, waited_s: float) -> None:
        hist = self.queue_wait.get((tier,))
        if hist is None:
            hist = self.queue_wait[(tier,)] = Hist(QUEUE_BUCKETS)
        hist.observe(waited_s)

    def shed(self, tier: str, reason: str) -> None:
        key = (tier, reason)
        self.sheds[key] = self.sheds.get(key, 0) + 1

    def avoided(self, model: str, action: str) -> None:
        key = (model, action)
        self.quota_avoided[key] = self.quota_avoided.get(key, 0) + 1

    def watch_quota(self, view: Callable[[], list[tuple[str, str, int]]]) -> None:
        """Export each model's remaining provider quota (as last told), read at scrape time."""
        self._quota = view

    def watch_admission(self, view: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """Export each tier's requests in flight and queued, read at scrape time."""
        self._admission = view

    def admission_figures(self) -> dict[str, tuple[int, int]]:
        if self._admission is not None:
            return self._admission()
        return {t: (v[0], v[1]) for t, v in self.admission_totals.items()}

    def error(self, operation: str, dialect: str, error_type: str) -> None:
        key = (operation, dialect, error_type)
        self.errors[key] = self.errors.get(key, 0) + 1

    def add_tokens(self, provider: str, model: str, t: Tokens) -> None:
        for direction, n in (
            ("input", t.input),
            ("cache_read", t.cache_read),
            ("cache_write", t.cache_write),
            ("output", t.output),
        ):
            if n:
                key = (provider, model, direction)
                self.tokens[key] = self.tokens.get(key, 0) + n

    def cost(self, provider: str, model: str, tier: str, usd: float) -> None:
        if usd:
            key = (provider, model, tier)
            self.costs[key] = self.costs.get(key, 0.0) + usd

    def budget_action(self, action: str, scope: str) -> None:
        if action != "ok":
            key = (action, scope)
            self.actions[key] = self.actions.get(key, 0) + 1

    def job_finished(self, outcome: str) -> None:
        self.jobs_done[(outcome,)] = self.jobs_done.get((outcome,), 0) + 1

    def job_run(self, tier: str, status: int) -> None:
        """One run of an async job (apart from the synchronous requests)."""
        key = (tier or "-", str(status))
        self.job_runs[key] = self.job_runs.get(key, 0) + 1

    def rollback(self, reason: str) -> None:
        self.rollbacks[(reason,)] = self.rollbacks.get((reason,), 0) + 1

    def gold_run(self, trigger: str, verdict: str, models: list[str]) -> None:
        """A scheduled gold run ended (``models``: those it found regressed)."""
        self.gold_runs[(trigger, verdict)] = self.gold_runs.get((trigger, verdict), 0) + 1
        for model in models:
            self.gold_regressions[(model,)] = self.gold_regressions.get((model,), 0) + 1

    def watch_rollout(self, view: Callable[[], tuple[float, dict[tuple[str, str], int]]]) -> None:
        """Export the rollout's stage and per-arm outcomes, read at scrape time."""
        self._rollout = view

    def watch_state(self, view: Callable[[], StateView]) -> None:
        """Export whether the shared state backend is reachable and what waits for it, read at
        scrape time."""
        self._state = view

    def watch_quality(
        self,
        scores: Callable[[], list[tuple[str, str, str, str, float, float]]],
        gold_age: Callable[[], dict[str, float]],
    ) -> None:
        """Export the quality scores per (tier, task, model, source) with their sample counts,
        and the age of each model's gold score, read at scrape time."""
        self._quality = scores
        self._gold_age = gold_age

    def watch_jobs(self, counts: Callable[[], dict[str, int]]) -> None:
        """Export the job queue by status, read at scrape time."""
        self._jobs = counts

    def attempt(self, provider: str, model: str, outcome: str) -> None:
        key = (provider, model, outcome)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if outcome == "saturated":
            self.saturations[(provider,)] = self.saturations.get((provider,), 0) + 1

    def hedge(self, tier: str, outcome: str) -> None:
        key = (tier, outcome)
        self.hedges[key] = self.hedges.get(key, 0) + 1

    def rescue(self, tier: str, outcome: str) -> None:
        key = (tier, outcome)
        self.rescues[key] = self.rescues.get(key, 0) + 1

    def waste(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
        for direction, n in (("input", input_tokens), ("output", output_tokens)):
            if n:
                key = (provider, model, direction)
                self.waste_tokens[key] = self.waste_tokens.get(key, 0) + n

    def breaker_transition(self, provider: str, model: str, old: str, new: str) -> None:
        key = (provider, model, old, new)
        self.transitions[key] = self.transitions.get(key, 0) + 1

    def watch_breakers(self, states: Callable[[], list[tuple[str, str, int]]]) -> None:
        """Export each breaker's state (0 closed, 1 half-open, 2 open), read at scrape time."""
        self._breakers = states

    def auth_failed(self, route: str, credential: str, delayed: bool) -> None:
        key = (route, credential)
        self.auth_failures[key] = self.auth_failures.get(key, 0) + 1
        if delayed:
            self.auth_delays[(route,)] = self.auth_delays.get((route,), 0) + 1

    def watch_bodies(self, view: Callable[[], tuple[int, int, int]]) -> None:
        """Export the request body budget's use, read at scrape time."""
        self._bodies = view

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        """Export the upstream pool's figures, read at scrape time."""
        self._pool = stats

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _sketch(table: dict[tuple[str, ...], LatencySketch], key: tuple[str, ...]) -> LatencySketch:
    sk = table.get(key)
    if sk is None:
        sk = table[key] = LatencySketch(window_s=SKETCH_WINDOW_S, slots=SKETCH_SLOTS)
    return sk


class _Collector(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        for attr, name, doc, labels in COUNTER_FAMILIES:
            counter = CounterMetricFamily(name, doc, labels=labels)
            for key, n in getattr(m, attr).items():
                counter.add_metric(list(key), n)
            yield counter
        for name, doc, series in (
            ("edge_request_duration_seconds", "Time from request to last byte", m.duration),
            (
                "edge_time_to_first_token_seconds",
                "Time from request to first content token",
                m.ttft,
            ),
        ):
            fam = HistogramMetricFamily(name, doc, labels=SERIES_LABELS)
            for skey, hist in series.items():
                fam.add_metric(list(skey), hist.cumulative(), hist.total)
            yield fam
        waits = HistogramMetricFamily(
            "edge_admission_queue_seconds",
            "Time a request waited for an admission slot (0: admitted at once)",
            labels=["tier"],
        )
        for skey, hist in m.queue_wait.items():
            waits.add_metric(list(skey), hist.cumulative(), hist.total)
        yield waits
        running = GaugeMetricFamily(
            "edge_admission_in_flight", "Requests admitted and being served", labels=["tier"]
        )
        waiting = GaugeMetricFamily(
            "edge_admission_queued", "Requests waiting for an admission slot", labels=["tier"]
        )
        for tier, (n_running, n_waiting) in sorted(m.admission_figures().items()):
            running.add_metric([tier], n_running)
            waiting.add_metric([tier], n_waiting)
        yield running
        yield waiting
        if m._quota is not None:
            left = GaugeMetricFamily(
                "edge_quota_remaining",
                "A model's provider quota left as its last answer told this worker, until the "
                "reset (kind: requests, tokens, input_tokens, output_tokens)",
                labels=["model", "kind"],
            )
            for model, kind, n in m._quota():
                left.add_metric([model, kind], n)
            yield left
        if m._jobs is not None:
            depth = GaugeMetricFamily("edge_jobs", "Async jobs by status", labels=["status"])
            by_status = m._jobs()
            for status in ("queued", "running", "done", "failed", "cancelled"):
                depth.add_metric([status], by_status.get(status, 0))
            yield depth
        v = m.state_figures()
        if v is not None:
            yield GaugeMetricFamily(
                "edge_state_up",
                "1 when the state backend (SQLite or Redis) answers",
                value=int(v.up),
            )
            yield CounterMetricFamily(
                "edge_state_errors", "Calls the state backend failed", value=v.errors
            )
            yield CounterMetricFamily(
                "edge_state_busy",
                "Calls that found the state busy past EDGE_STATE_WAIT_MS (skipped or retried)",
                value=v.busy,
            )
            yield GaugeMetricFamily(
                "edge_spend_pending_rows",
                "Settlements and ledger rows waiting for the state, aggregates included",
                value=v.pending,
            )
            yield CounterMetricFamily(
                "edge_spend_aggregated_rows",
                "Waiting settlements and ledger rows folded into aggregates (totals kept)",
                value=v.aggregated,
            )
            yield CounterMetricFamily(
                "edge_spend_dropped_rows",
                "Aggregates dropped past EDGE_SPEND_PENDING_MAX (spend not written)",
                value=v.dropped,
            )
        if m._rollout is not None:
            percent, arms = m._rollout()
            yield GaugeMetricFamily(
                "edge_rollout_stage_percent",
                "Share of traffic on the rollout's canary",
                value=percent,
            )
            arm_requests = CounterMetricFamily(
                "edge_rollout_arm_requests", "Requests per rollout arm", labels=["arm", "outcome"]
            )
            for (arm, outcome), n in arms.items():
                arm_requests.add_metric([arm, outcome], n)
            yield arm_requests
        if m._quality is not None:
            quality = GaugeMetricFamily(
                "edge_quality_score",
                "Quality score per tier, task and model: each source's measured mean (gold, "
                "online checks, human feedback) and their hybrid (task all: what the tier routes on)",
                labels=["tier", "task", "model", "source"],
            )
            samples = GaugeMetricFamily(
                "edge_quality_samples",
                "Observations behind each source's score (gold cases, checked answers, feedbacks)",
                labels=["tier", "task", "model", "source"],
            )
            for tier, task, model, source, score, n in m._quality():
                quality.add_metric([tier, task, model, source], score)
                if source != "hybrid":
                    samples.add_metric([tier, task, model, source], n)
            yield quality
            yield samples
        if m._gold_age is not None:
            age = GaugeMetricFamily(
                "edge_quality_gold_age_seconds",
                "Seconds since each model's kept gold score was measured",
                labels=["model"],
            )
            for model, seconds in sorted(m._gold_age().items()):
                age.add_metric([model], seconds)
            yield age
        states = GaugeMetricFamily(
            "edge_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=["provider", "model"],
        )
        for provider, model, state in m.breaker_figures():
            states.add_metric([provider, model], state)
        yield states
        yield GaugeMetricFamily(
            "edge_requests_in_flight", "Requests being served", value=m.in_flight
        )
        reserved, read, bodies_waiting = m.body_figures()
        body_bytes = GaugeMetricFamily(
            "edge_request_body_bytes",
            "Request body bytes in the workers' body budgets: reserved, and read so far",
            labels=["state"],
        )
        body_bytes.add_metric(["reserved"], reserved)
        body_bytes.add_metric(["read"], read)
        yield body_bytes
        yield GaugeMetricFamily(
            "edge_request_bodies_waiting",
            "Requests whose body waits for room in the body budget (not read meanwhile)",
            value=bodies_waiting,
        )
        s = m.pool_figures()
        if s is not None:
            conns = GaugeMetricFamily(
                "edge_upstream_connections", "Upstream connections", labels=["state"]
            )
            conns.add_metric(["open"], s["open"])
            conns.add_metric(["idle"], s["idle"])
            yield conns
            events = CounterMetricFamily(
                "edge_upstream_connection_events",
                "Upstream connections opened, reused, discarded, and requests sent again on a "
                "new connection (a reused one closed before answering)",
                labels=["event"],
            )
            for event in ("opened", "reused", "discarded", "retried"):
                events.add_metric([event], s.get(f"{event}_total", 0))
            yield events
