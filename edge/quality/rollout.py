"""Progressive rollout of a candidate policy, with automatic rollback.

A rollout stages a candidate policy beside the active one. Requests are
assigned to an arm by a stable hash (the key and the ``x-edge-session``
header, else the request id): the canary gets ``STAGES[stage]`` percent.
Every worker records each request's outcome per arm (batched into the state
backend); once a second one worker at a time (a ``BEGIN IMMEDIATE``
transaction) runs ``evaluate`` on the current stage's figures:

- rollback at once when the canary breaches a hard floor with confidence
  (its success rate's Wilson upper bound under the floor, its P95 over the
  target, its mean cost over the cap) or is worse than the baseline by more
  than the margin with a one-sided Fisher exact test under ``alpha``
  (errors, and invalid JSON where JSON was asked for); never before both
  arms have ``min_samples`` requests: not on three unlucky requests;
- advance when the canary has ``min_requests`` requests in the stage (and at
  least ``min_samples``: a stage passes only once it could have failed) and
  the stage is ``dwell_s`` old; after the last stage the rollout is ``completed``
  (the candidate serves everything until promoted or aborted).

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
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(slots=True)
class ArmStats:
    n: int = 0
    ok: int = 0
    p95_ms: float = 0.0
    mean_cost: float = 0.0
    json_asked: int = 0
    json_valid: int = 0

    @classmethod
    def of(cls, rows: list[tuple[Any, ...]]) -> ArmStats:
        if not rows:
            return cls()
        lat = sorted(r[1] for r in rows)
        return cls(
            len(rows),
            sum(r[0] for r in rows),
            lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            sum(r[2] for r in rows) / len(rows),
            sum(r[3] for r in rows),
            sum(r[3] and r[4] for r in rows),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.n,
            "success_rate": self.ok / self.n if self.n else None,
            "p95_ms": self.p95_ms,
            "cost_per_1k_usd": self.mean_cost * 1000,
            "json_asked": self.json_asked,
            "json_valid_rate": self.json_valid / self.json_asked if self.json_asked else None,
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


def evaluate(
    c: RolloutConfig, canary: ArmStats, base: ArmStats, stage_age_s: float, last_stage: bool
) -> tuple[str, str]:
    """(``hold`` | ``advance`` | ``complete`` | ``rollback``, the reason)."""
    if canary.n >= c.min_samples:
        if wilson_upper(canary.ok, canary.n, c.z) < c.success_floor:
            return (
                "rollback",
                f"success rate {canary.ok / canary.n:.1%} under the floor {c.success_floor:.0%}",
            )
        if canary.p95_ms > c.p95_target_ms:
            return (
                "rollback",
                f"P95 {canary.p95_ms:.0f} ms over the target {c.p95_target_ms:.0f} ms",
            )
        if canary.mean_cost > c.cost_cap_usd:
            return (
                "rollback",
                f"cost per request ${canary.mean_cost:.4f} over the cap ${c.cost_cap_usd}",
            )
        if base.n >= c.min_samples:
            err_c, err_b = canary.n - canary.ok, base.n - base.ok
            worse = err_c / canary.n - err_b / base.n
            if worse > c.margin and fisher_greater(err_c, canary.n, err_b, base.n) < c.alpha:
                return "rollback", f"error rate {worse:+.1%} over the baseline"
            bad_c = canary.json_asked - canary.json_valid
            bad_b = base.json_asked - base.json_valid
            if canary.json_asked and base.json_asked:
                worse = bad_c / canary.json_asked - bad_b / base.json_asked
                p = fisher_greater(bad_c, canary.json_asked, bad_b, base.json_asked)
                if worse > c.margin and p < c.alpha:
                    return "rollback", f"invalid JSON {worse:+.1%} over the baseline (p={p:.2g})"
    # a stage passes only once it could have failed: it needs the samples a rollback needs
    if canary.n >= max(c.min_requests, c.min_samples) and stage_age_s >= c.dwell_s:
        return ("complete" if last_stage else "advance"), "stage requirements met"
    return "hold", ""


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
        self.quality: Callable[[str, str, str], float | None] = lambda tier, task, model: None

    @property
    def percent(self) -> int:
        live = self.live
        if live is None:
            return 0
        if live["status"] in ("completed", "promoted"):
            return 100
        return int(self.config.stages[live["stage"]])

    def load(self) -> dict[str, Any] | None:
        self.live = self.state.live_rollout()
        return self.live

    def arm(self, key_id: str, unit: str) -> str:
        pct = self.percent
        if pct <= 0:
            return "baseline"
        if pct >= 100:
            return "canary"
        return "canary" if bucket(key_id, unit) < pct * 100 else "baseline"

    def record(
        self, arm: str, ok: bool, latency_ms: float, cost: float, json_asked: bool, json_ok: bool
    ) -> None:
        live = self.live
        if live is None:
            return
        outcome = "ok" if ok else "error"
        self.counts[(arm, outcome)] = self.counts.get((arm, outcome), 0) + 1
        self._events.append(
            (live["id"], live["stage"], arm, time.time(), int(ok), latency_ms, cost,
             int(json_asked), int(json_asked and json_ok))
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
            if live is None or live["status"] != "running":
                state.commit()
                self.live = live
                return
            canary = ArmStats.of(state.rollout_events(live["id"], live["stage"], "canary"))
            base = ArmStats.of(state.rollout_events(live["id"], live["stage"], "baseline"))
            last = live["stage"] >= len(self.config.stages) - 1
            action, reason = evaluate(
                self.config, canary, base, now - live["stage_started_at"], last
            )
            if action == "rollback":
                report = orjson.dumps(
                    {
                        "stage_percent": self.config.stages[live["stage"]],
                        "reason": reason,
                        "canary": canary.as_dict(),
                        "baseline": base.as_dict(),
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
            if self.on_rollback is not None:
                self.on_rollback(reason.split(" ")[0] if reason else "breach")
        elif action in ("advance", "complete"):
            self.log.event("warning", f"rollout {action}", rollout=live["id"], stage=live["stage"])
        self.live = state.live_rollout()


def status(state: State, config: RolloutConfig) -> dict[str, Any]:
    """The latest rollout and its current stage's figures per arm."""
    r = state.last_rollout()
    if r is None:
        return {"rollout": None}
    stage = r["stage"]
    out = {k: v for k, v in r.items() if k not in ("policy_text", "report")}
    out["stage_percent"] = (
        (100 if r["status"] in ("completed", "promoted") else config.stages[stage])
        if r["status"] not in ("rolled_back", "aborted")
        else 0
    )
    out["arms"] = {
        arm: ArmStats.of(state.rollout_events(r["id"], stage, arm)).as_dict()
        for arm in ("baseline", "canary")
    }
    out["report"] = orjson.loads(r["report"]) if r["report"] else None
    return {"rollout": out}
