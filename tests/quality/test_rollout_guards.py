"""Rollout guards per tier and task, without I/O: each tier by its own floors and the baseline's
same-tier figures, holds for thin tiers, the holdback, pause and completion still guarded."""

from __future__ import annotations

import tempfile
from typing import Any

from edge.observe.log import Log
from edge.quality.rollout import RolloutConfig, Rollouts, TierFloor, judge, share
from edge.state.embedded import EmbeddedState

FLOORS = {
    "L0": TierFloor(p95_target_ms=2000, cost_cap_usd=0.05, quality_floor=0.97),
    "L1": TierFloor(p95_target_ms=3000, cost_cap_usd=0.02, quality_floor=0.9),
}
C = RolloutConfig(min_requests=100, dwell_s=60, min_samples=40, floors=FLOORS)


def rows(
    n: int,
    tier: str,
    ok: bool = True,
    task: str = "none",
    model: str = "m",
    lat: float = 100.0,
    cost: float = 0.001,
    json_ok: bool | None = None,
) -> list[tuple[Any, ...]]:
    asked = json_ok is not None
    return [
        (int(ok), lat, cost, int(asked), int(bool(json_ok)), tier, task, model) for _ in range(n)
    ]


def mix(l0: list[tuple[Any, ...]], l1_n: int = 900) -> list[tuple[Any, ...]]:
    return l0 + rows(l1_n, "L1")


def test_a_candidate_that_breaks_only_l0_is_rolled_back_though_its_pooled_figures_pass() -> None:
    canary = mix(rows(45, "L0", ok=False))  # L0 is 5% of traffic, every L0 request fails
    base = mix(rows(45, "L0"))
    pooled = sum(r[0] for r in canary) / len(canary)
    assert pooled > 0.95  # pooled, it would have passed a 95% floor
    v = judge(C, canary, base, 61, False)
    assert v.action == "rollback" and v.segment == ("L0", "all")
    assert v.reason.startswith("success rate 0.0% under the floor") and "tier L0" in v.reason
    assert v.tiers["L1"]["canary"]["success_rate"] == 1.0


def test_each_tier_has_its_own_p95_target() -> None:
    slow = rows(45, "L0", lat=2500.0)  # within L1's 3 s, over L0's 2 s
    v = judge(C, mix(slow), mix(rows(45, "L0", lat=2500.0)), 61, False)
    assert v.action == "rollback" and v.reason.startswith("P95 2500 ms over the target 2000 ms")


def test_a_tier_with_too_few_samples_holds_the_stage() -> None:
    v = judge(C, mix(rows(10, "L0")), mix(rows(10, "L0")), 61, False)
    assert v.action == "hold" and "tier L0 has 10 canary requests of the 40" in v.reason
    assert judge(C, mix(rows(40, "L0")), mix(rows(40, "L0")), 61, False).action == "advance"


def test_a_candidate_worse_only_on_one_task_is_rolled_back() -> None:
    def arm(valid_checkout: bool) -> list[tuple[Any, ...]]:
        return (
            rows(300, "L1", task="tagging", json_ok=True)
            + rows(60, "L1", task="checkout", json_ok=valid_checkout)
            + rows(300, "L1", task="checkout", json_ok=True)
            + rows(5000, "L1", task="tagging", json_ok=True)
        )

    canary, base = arm(False), arm(True)
    # the tier pooled: 60 bad of 5,660, within the margin; the task alone: 60 of 360
    v = judge(C, canary, base, 61, False)
    assert v.action == "rollback" and v.segment == ("L1", "checkout"), v.reason
    assert "invalid JSON" in v.reason and "task checkout" in v.reason


def test_quality_is_judged_against_the_tiers_floor_and_the_baseline() -> None:
    scores = {("L0", "all", "good"): 0.99, ("L0", "all", "weak"): 0.9}

    def q(tier: str, task: str, model: str) -> float | None:
        return scores.get((tier, task, model))

    canary = mix(rows(45, "L0", model="weak"))
    v = judge(C, canary, mix(rows(45, "L0", model="good")), 61, False, q)
    assert v.action == "rollback" and v.reason.startswith("quality 0.900 under the floor 0.97")
    # both arms as weak: not the candidate's doing
    assert judge(C, canary, canary, 61, False, q).action == "advance"


def test_cost_and_p95_against_the_baseline() -> None:
    dear = mix(rows(45, "L0", cost=0.004))
    v = judge(C, dear, mix(rows(45, "L0", cost=0.001)), 61, False)
    assert (
        v.action == "rollback"
        and v.reason.startswith("cost per request")
        and "baseline" in v.reason
    )
    slow = mix(rows(45, "L0", lat=900.0))
    v = judge(C, slow, mix(rows(45, "L0", lat=300.0)), 61, False)
    assert v.action == "rollback" and "over the baseline's 300 ms" in v.reason


def test_the_last_stage_keeps_a_holdback_until_promotion() -> None:
    live = {"status": "running", "stage": 3}
    assert share(C, live) == 95.0
    assert share(C, {**live, "status": "completed"}) == 95.0
    assert share(C, {**live, "status": "paused"}) == 95.0
    assert share(C, {**live, "status": "promoted"}) == 100.0
    assert share(C, {"status": "running", "stage": 1}) == 10.0
    assert share(C, {**live, "status": "rolled_back"}) == 0.0


def rollout_in(status: str, stage: int = 0) -> tuple[Rollouts, EmbeddedState]:
    state = EmbeddedState(tempfile.mkdtemp(prefix="edge-guards-"))
    state.put_rollout(
        {
            "id": "ro_1",
            "created_at": 1.0,
            "updated_at": 1.0,
            "status": status,
            "policy_path": "/p.toml",
            "policy_text": "",
            "stage": stage,
            "stage_started_at": 0.0,
            "gold": "",
        }
    )
    return Rollouts(state, C, Log("error")), state


def test_a_paused_rollout_is_still_guarded_and_never_advances() -> None:
    ro, state = rollout_in("paused")
    ro.load()
    for r in mix(rows(45, "L0")):
        ro.record("canary", bool(r[0]), r[1], r[2], False, False, r[5], r[6], r[7])
        ro.record("baseline", bool(r[0]), r[1], r[2], False, False, r[5], r[6], r[7])
    ro.control(1000.0)
    live = state.live_rollout()
    assert live is not None and live["status"] == "paused" and live["stage"] == 0
    for _ in range(45):
        ro.record("canary", False, 100.0, 0.001, False, False, "L0", "none", "m")
    ro.control(1001.0)
    last = state.last_rollout()
    assert last is not None and last["status"] == "rolled_back" and "tier L0" in last["reason"]


def test_a_completed_rollout_is_still_guarded_by_its_holdback() -> None:
    ro, state = rollout_in("completed", stage=3)
    ro.load()
    assert ro.percent == 95.0
    for r in mix(rows(45, "L0")):
        ro.record("baseline", True, r[1], r[2], False, False, r[5], r[6], r[7])
        ro.record("canary", r[5] != "L0", r[1], r[2], False, False, r[5], r[6], r[7])
    ro.control(1000.0)
    last = state.last_rollout()
    assert last is not None and last["status"] == "rolled_back"
