"""Progressive rollout of a candidate policy, with automatic rollback, guarded per tier.

A rollout stages a candidate policy beside the active one. Requests are
assigned to an arm by a stable hash (the key and the ``x-edge-session``
header, else the request id): the canary gets ``STAGES[stage]`` percent; at
the last stage (100) a baseline holdback (the policy's
``rollout.holdback_percent``, 5 by default) stays on the active policy until
the rollout is promoted, so the comparison never loses its baseline. Every
worker records each request's outcome per arm, with its tier, task label and
serving model (batched into the state backend); once a second one worker at
a time (a ``BEGIN IMMEDIATE`` transaction, a Redis lock) runs ``judge`` on
the current stage's figures, segment by segment: every tier, and every task
label of a tier with ``min_samples`` canary requests. In each segment
(``breach``), against that tier's own floors (``TierFloor``: the active
policy's P95 target, cost cap and quality floor) and the baseline's
same-segment figures:

- its success rate's Wilson upper bound under the floor (only an answered
  request is a success: a 202 that queued a job is not), its P95 over the
  tier's target, its mean cost over the tier's cap, its hybrid quality (the
  request-weighted score of the models that answered) under the tier's floor
  where the baseline's is not as low;
- worse than the baseline: errors or invalid JSON (where JSON was asked for)
  by more than the margin with a one-sided Fisher exact test under
  ``alpha``; P95 or cost per request over ``RATIO`` times the baseline's
  (and P95 by more than ``P95_SLACK_MS``); hybrid quality under the
  baseline's by more than the margin;

never in a segment before its canary has ``min_samples`` requests (and its
baseline too, for a comparison): not on three unlucky requests. A breach in
any segment rolls the rollout back. A stage advances when the canary has
``min_requests`` requests in the stage (and at least ``min_samples``: a stage
passes only once it could have failed), the stage is ``dwell_s`` old, and
every tier seen in the stage has ``min_samples`` canary requests: a tier with
too few holds the stage, it does not pass it. After the last stage the
rollout is ``completed`` (the candidate serves all but the holdback until
promoted or aborted), still guarded.

Pause freezes the stage (the canary keeps its share, and the guards keep
judging it: a paused rollout can still roll back, never advance); moving the
share to 0 would hide a regression rather than stop it, and is what abort is
for.

Lifecycle (``TRANSITIONS``)::

    running --pause--> paused --resume--> running
    running --advance--> running | completed --promote--> promoted
    running|paused|completed --rollback--> rolled_back
    running|paused|completed|promoted --abort--> aborted

Rollout state lives in the state backend, so every worker sees the same
stage and the same rollback, and a restart resumes where it was.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from edge.observe.log import Log
from edge.state.types import ControllerBusy, State

STAGES = (1, 10, 50, 100)
TRANSITIONS: dict[tuple[str, str], str] = {
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "advance"): "running",
    ("running", "complete"): "completed",
    ("completed", "promote"): "promoted",
    ("running", "promote"): "promoted",
    ("running", "rollback"): "rolled_back",
    ("paused", "rollback"): "rolled_back",
    ("completed", "rollback"): "rolled_back",
    ("running", "abort"): "aborted",
    ("paused", "abort"): "aborted",
    ("completed", "abort"): "aborted",
    ("promoted", "abort"): "aborted",
}


def sources(event: str) -> tuple[str, ...]:
    """The statuses an event may move a rollout from."""
    return tuple(s for (s, e) in TRANSITIONS if e == event)


# a canary's P95 or cost per request judged worse than the baseline's past RATIO times it
# (and a P95 by more than P95_SLACK_MS: milliseconds of loopback jitter are no regression)
RATIO, P95_SLACK_MS = 1.5, 250.0
GUARDED = ("running", "paused", "completed")  # the statuses whose canary serves traffic
NO_TASK_LABELS = ("", "none")  # requests without a task label: judged with their tier


# the hybrid quality score of (tier, task, model), if it has one (``task="all"``: the tier's)
Quality = Callable[[str, str, str], "float | None"]


@dataclass(frozen=True, slots=True)
class TierFloor:
    """A tier's own floors, from the active policy (0: none)."""

    p95_target_ms: float
    cost_cap_usd: float  # the tier's degrade_usd: the most a request should cost
    quality_floor: float = 0.0


@dataclass(frozen=True, slots=True)
class RolloutConfig:
    stages: tuple[int, ...] = STAGES
    min_requests: int = 200  # canary requests a stage needs before it can advance
    dwell_s: float = 600.0  # and its minimum age
    min_samples: int = 100  # per arm, before any comparison or floor may roll back
    success_floor: float = 0.97
    p95_target_ms: float = 3000.0
    cost_cap_usd: float = 0.02
    margin: float = 0.02
    alpha: float = 0.01  # one-sided test level for "worse than the baseline"
    z: float = 2.576  # the Wilson bound's confidence for the hard success floor
    holdback_percent: float = 5.0  # of traffic kept on the baseline at the last stage
    floors: Mapping[str, TierFloor] = field(default_factory=dict)  # by tier

    def floor(self, tier: str) -> TierFloor:
        """The tier's floors; a tier the active policy does not have gets the process's."""
        return self.floors.get(tier) or TierFloor(self.p95_target_ms, self.cost_cap_usd)


@dataclass(slots=True)
class ArmStats:
    n: int = 0
    ok: int = 0
    p95_ms: float = 0.0
    mean_cost: float = 0.0
    json_asked: int = 0
    json_valid: int = 0
    quality: float | None = None  # the mean hybrid score of the models that answered

    @classmethod
    def of(cls, rows: list[tuple[Any, ...]], quality: Quality | None = None) -> ArmStats:
        """The figures of outcome rows (ok, latency_ms, cost_usd, json_asked, json_valid[,
        tier, task, model]); ``quality``: the hybrid score of (tier, task, model)."""
        if not rows:
            return cls()
        lat = sorted(r[1] for r in rows)
        scores = []
        if quality is not None:
            for r in rows:
                if r[0] and len(r) >= 8 and r[7]:
                    tier, task, model = r[5], r[6], r[7]
                    q = quality(tier, task, model) if task not in NO_TASK_LABELS else None
                    q = quality(tier, "all", model) if q is None else q
                    if q is not None:
                        scores.append(q)
        return cls(
            len(rows),
            sum(r[0] for r in rows),
            lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            sum(r[2] for r in rows) / len(rows),
            sum(r[3] for r in rows),
            sum(r[3] and r[4] for r in rows),
            sum(scores) / len(scores) if scores else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.n,
            "success_rate": self.ok / self.n if self.n else None,
            "p95_ms": self.p95_ms,
            "cost_per_1k_usd": self.mean_cost * 1000,
            "json_asked": self.json_asked,
            "json_valid_rate": self.json_valid / self.json_asked if self.json_asked else None,
            "quality": self.quality,
        }


def wilson_upper(k: int, n: int, z: float) -> float:
    if n == 0:
        return 1.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def fisher_greater(bad_c: int, n_c: int, bad_b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that the canary's bad rate exceeds the baseline's."""
    total_bad, n = bad_c + bad_b, n_c + n_b
    if n_c == 0 or n_b == 0 or total_bad == 0:
        return 1.0

    def log_comb(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    denominator = log_comb(n, n_c)
    p = 0.0
    for k in range(bad_c, min(n_c, total_bad) + 1):
        p += math.exp(log_comb(total_bad, k) + log_comb(n - total_bad, n_c - k) - denominator)
    return min(1.0, p)


def breach(c: RolloutConfig, canary: ArmStats, base: ArmStats, floor: TierFloor) -> str:
    """Why one segment's canary must be rolled back ("" when it need not): its tier's floors,
    then the baseline's figures of the same segment."""
    if canary.n < c.min_samples:
        return ""
    if wilson_upper(canary.ok, canary.n, c.z) < c.success_floor:
        return f"success rate {canary.ok / canary.n:.1%} under the floor {c.success_floor:.0%}"
    if floor.p95_target_ms and canary.p95_ms > floor.p95_target_ms:
        return f"P95 {canary.p95_ms:.0f} ms over the target {floor.p95_target_ms:.0f} ms"
    if floor.cost_cap_usd and canary.mean_cost > floor.cost_cap_usd:
        return f"cost per request ${canary.mean_cost:.4f} over the cap ${floor.cost_cap_usd:g}"
    compared = base.n >= c.min_samples
    if (
        floor.quality_floor
        and canary.quality is not None
        and canary.quality < floor.quality_floor
        and not (compared and base.quality is not None and base.quality <= canary.quality)
    ):
        return f"quality {canary.quality:.3f} under the floor {floor.quality_floor:g}"
    if not compared:
        return ""
    err_c, err_b = canary.n - canary.ok, base.n - base.ok
    worse = err_c / canary.n - err_b / base.n
    if worse > c.margin and fisher_greater(err_c, canary.n, err_b, base.n) < c.alpha:
        return f"error rate {worse:+.1%} over the baseline"
    bad_c = canary.json_asked - canary.json_valid
    bad_b = base.json_asked - base.json_valid
    if canary.json_asked and base.json_asked:
        worse = bad_c / canary.json_asked - bad_b / base.json_asked
        p = fisher_greater(bad_c, canary.json_asked, bad_b, base.json_asked)
        if worse > c.margin and p < c.alpha:
            return f"invalid JSON {worse:+.1%} over the baseline (p={p:.2g})"
    if canary.p95_ms > max(base.p95_ms * RATIO, base.p95_ms + P95_SLACK_MS):
        return f"P95 {canary.p95_ms:.0f} ms over the baseline's {base.p95_ms:.0f} ms"
    if canary.mean_cost > base.mean_cost * RATIO and canary.mean_cost > 0:
        return f"cost per request ${canary.mean_cost:.5f} over the baseline's ${base.mean_cost:.5f}"
    if (
        canary.quality is not None
        and base.quality is not None
        and canary.quality < base.quality - c.margin
    ):
        return f"quality {canary.quality:.3f} under the baseline's {base.quality:.3f}"
    return ""


def evaluate(
    c: RolloutConfig,
    canary: ArmStats,
    base: ArmStats,
    stage_age_s: float,
    last_stage: bool,
    floor: TierFloor | None = None,
) -> tuple[str, str]:
    """One segment alone: (``hold`` | ``advance`` | ``complete`` | ``rollback``, the reason)."""
    why = breach(c, canary, base, floor or TierFloor(c.p95_target_ms, c.cost_cap_usd))
    if why:
        return "rollback", why
    # a stage passes only once it could have failed: it needs the samples a rollback needs
    if canary.n >= max(c.min_requests, c.min_samples) and stage_age_s >= c.dwell_s:
        return ("complete" if last_stage else "advance"), "stage requirements met"
    return "hold", ""


@dataclass(slots=True)
class Verdict:
    action: str  # hold | advance | complete | rollback
    reason: str
    segment: tuple[str, str] = ("", "")  # the (tier, task) that breached ("all": the tier)
    canary: ArmStats = field(default_factory=ArmStats)  # that segment's figures
    baseline: ArmStats = field(default_factory=ArmStats)
    tiers: dict[str, dict[str, Any]] = field(default_factory=dict)  # every tier's figures


def _split(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    """Rows by (tier, "all") and by (tier, task) for labelled tasks."""
    out: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        tier, task = (r[5], r[6]) if len(r) >= 7 else ("", "")
        out.setdefault((tier, "all"), []).append(r)
        if task not in NO_TASK_LABELS:
            out.setdefault((tier, task), []).append(r)
    return out


def judge(
    c: RolloutConfig,
    canary_rows: list[tuple[Any, ...]],
    base_rows: list[tuple[Any, ...]],
    stage_age_s: float,
    last_stage: bool,
    quality: Quality | None = None,
) -> Verdict:
    """The current stage, every tier and task label on its own: a breach in any one rolls
    back; every tier seen must have its samples before the stage passes."""
    canary_by, base_by = _split(canary_rows), _split(base_rows)
    segments = sorted(set(canary_by) | set(base_by), key=lambda s: (s[0], s[1] != "all", s[1]))
    tiers: dict[str, dict[str, Any]] = {}
    short = ""
    figures = []
    for seg in segments:
        tier, task = seg
        canary = ArmStats.of(canary_by.get(seg, []), quality)
        base = ArmStats.of(base_by.get(seg, []), quality)
        figures.append((seg, canary, base))
        if task == "all":
            tiers[tier or "-"] = {"canary": canary.as_dict(), "baseline": base.as_dict()}
            if canary.n < c.min_samples and not short:
                short = (
                    f"tier {tier or '-'} has {canary.n} canary requests of the "
                    f"{c.min_samples} a stage needs"
                )
    for seg, canary, base in figures:
        tier, task = seg
        why = breach(c, canary, base, c.floor(tier))
        if why:
            where = f"tier {tier or '-'}" + ("" if task == "all" else f", task {task}")
            return Verdict("rollback", f"{why} in {where}", seg, canary, base, tiers)
    pooled = len(canary_rows)
    if pooled >= max(c.min_requests, c.min_samples) and stage_age_s >= c.dwell_s:
        if short:  # a tier with too few samples holds the stage rather than passing it
            return Verdict("hold", short, tiers=tiers)
        return Verdict(
            "complete" if last_stage else "advance", "stage requirements met", tiers=tiers
        )
    return Verdict("hold", "", tiers=tiers)


def bucket(key_id: str, unit: str) -> int:
    """A stable 0..9999 bucket for an assignment unit (a session, else a request)."""
    digest = hashlib.blake2b(f"{key_id}\x00{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


class Rollouts:
    """One worker's view of the live rollout, its outcome buffer and the controller."""

    FLUSH_S = 0.25

    def __init__(
        self,
        state: State,
        config: RolloutConfig,
        log: Log,
        on_rollback: Callable[[str], None] | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.log = log
        self.on_rollback = on_rollback
        self.live: dict[str, Any] | None = None
        self.counts: dict[tuple[str, str], int] = {}
        self._events: list[tuple[Any, ...]] = []
        # the hybrid quality score of (tier, task, model) (``task="all"``: the tier's), set by
        # the worker's Engines: for guards that judge quality (edge/quality/hybrid.py)
        self.quality: Quality = lambda tier, task, model: None

    @property
    def percent(self) -> float:
        """The canary's share of traffic: its stage's, less the baseline holdback at the last
        stage (running, paused or completed); all of it once promoted."""
        live = self.live
        if live is None:
            return 0.0
        return share(self.config, live)

    def load(self) -> dict[str, Any] | None:
        self.live = self.state.live_rollout()
        return self.live

    def arm(self, key_id: str, unit: str) -> str:
        pct = self.percent
        if pct <= 0:
            return "baseline"
        if pct >= 100:
            return "canary"
        return "canary" if bucket(key_id, unit) < int(pct * 100) else "baseline"

    def record(
        self,
        arm: str,
        ok: bool,
        latency_ms: float,
        cost: float,
        json_asked: bool,
        json_ok: bool,
        tier: str = "",
        task: str = "",
        model: str = "",
    ) -> None:
        """One request's outcome on its arm (``ok``: answered; a 202 is not), with the tier,
        task label and model the guards judge it by."""
        live = self.live
        if live is None:
            return
        outcome = "ok" if ok else "error"
        self.counts[(arm, outcome)] = self.counts.get((arm, outcome), 0) + 1
        self._events.append(
            (live["id"], live["stage"], arm, time.time(), int(ok), latency_ms, cost,
             int(json_asked), int(json_asked and json_ok), tier, task, model)
        )  # fmt: skip

    def flush(self) -> None:
        if self._events:
            events, self._events = self._events, []
            try:
                self.state.add_rollout_events(events)
            except Exception:
                self._events = (events + self._events)[-100_000:]  # written when the state is back
                raise

    def control(self, now: float) -> None:
        """Evaluate the live rollout's current stage and act (one worker at a time)."""
        self.flush()
        state = self.state
        try:
            state.begin()
        except ControllerBusy:
            return  # another instance's turn; ours comes at the next tick
        try:
            live = state.live_rollout()
            if live is None or live["status"] not in GUARDED:
                state.commit()
                self.live = live
                return
            last = live["stage"] >= len(self.config.stages) - 1
            verdict = judge(
                self.config,
                state.rollout_events(live["id"], live["stage"], "canary"),
                state.rollout_events(live["id"], live["stage"], "baseline"),
                now - live["stage_started_at"],
                last,
                self.quality,
            )
            action, reason = verdict.action, verdict.reason
            if live["status"] != "running" and action != "rollback":
                action = "hold"  # paused or completed: guarded, never moved on
            if action == "rollback":
                report = orjson.dumps(
                    {
                        "stage_percent": share(self.config, live),
                        "reason": reason,
                        "tier": verdict.segment[0],
                        "task": verdict.segment[1],
                        "canary": verdict.canary.as_dict(),
                        "baseline": verdict.baseline.as_dict(),
                        "tiers": verdict.tiers,
                    }
                ).decode()
                state.move_rollout(
                    live["id"],
                    sources("rollback"),
                    "rolled_back",
                    now,
                    reason=reason,
                    report=report,
                )
            elif action == "advance":
                state.move_rollout(
                    live["id"], ("running",), "running", now, stage=live["stage"] + 1
                )
            elif action == "complete":
                state.move_rollout(live["id"], ("running",), "completed", now)
            state.commit()
        except BaseException:
            state.rollback()
            raise
        if action == "rollback":
            self.log.event(
                "error", "rollout rolled back", rollout=live["id"], reason=reason, report=report
            )
            if self.on_rollback is not None:  # the guard's first word: success, P95, ...
                self.on_rollback(reason.split(" ")[0] if reason else "breach")
        elif action in ("advance", "complete"):
            self.log.event("warning", f"rollout {action}", rollout=live["id"], stage=live["stage"])
        self.live = state.live_rollout()


def share(config: RolloutConfig, r: dict[str, Any]) -> float:
    """A rollout's canary share of traffic, in percent."""
    if r["status"] == "promoted":
        return 100.0
    if r["status"] not in GUARDED:
        return 0.0
    stage = len(config.stages) - 1 if r["status"] == "completed" else r["stage"]
    pct = float(config.stages[min(stage, len(config.stages) - 1)])
    if stage >= len(config.stages) - 1 and pct >= 100:
        pct -= config.holdback_percent  # the baseline's holdback, until promoted
    return pct


def status(state: State, config: RolloutConfig) -> dict[str, Any]:
    """The latest rollout and its current stage's figures per arm, and per tier."""
    r = state.last_rollout()
    if r is None:
        return {"rollout": None}
    stage = r["stage"]
    out = {k: v for k, v in r.items() if k not in ("policy_text", "report")}
    out["stage_percent"] = share(config, r)
    rows = {arm: state.rollout_events(r["id"], stage, arm) for arm in ("baseline", "canary")}
    out["arms"] = {arm: ArmStats.of(rows[arm]).as_dict() for arm in rows}
    out["tiers"] = judge(config, rows["canary"], rows["baseline"], 0.0, False).tiers
    out["report"] = orjson.loads(r["report"]) if r["report"] else None
    return {"rollout": out}
