"""Rollout decisions without I/O: the statistics, the floors, advancing, the lifecycle table."""

from __future__ import annotations

import pytest

from edge.quality.rollout import (
    TRANSITIONS,
    ArmStats,
    RolloutConfig,
    bucket,
    evaluate,
    fisher_greater,
    sources,
    wilson_upper,
)

C = RolloutConfig(min_requests=50, dwell_s=60, min_samples=60)


def arm(
    n: int, ok: int, p95: float = 100.0, cost: float = 0.001, asked: int = 0, valid: int = 0
) -> ArmStats:
    return ArmStats(n, ok, p95, cost, asked, valid)


def test_fisher_and_wilson_against_known_values() -> None:
    assert fisher_greater(3, 3, 0, 3) == pytest.approx(1 / 20)  # 1 / C(6, 3)
    assert fisher_greater(0, 10, 5, 10) == pytest.approx(1.0)
    assert fisher_greater(5, 10, 0, 0) == 1.0
    assert wilson_upper(0, 0, 2.576) == 1.0
    assert 0.95 < wilson_upper(97, 100, 2.576) < 1.0


@pytest.mark.parametrize(
    ("canary", "base", "age", "action", "why"),
    [
        (arm(60, 60), arm(600, 600), 10, "hold", ""),  # not dwelt long enough
        (arm(60, 60), arm(600, 600), 61, "advance", "met"),
        (arm(55, 55), arm(600, 600), 61, "hold", ""),  # enough requests, too few samples to judge
        # a hard floor, with confidence: 80% success over 200 requests
        (arm(200, 160), arm(600, 600), 61, "rollback", "success rate"),
        (arm(200, 200, p95=4000), arm(600, 600), 61, "rollback", "P95"),
        (arm(200, 200, cost=0.05), arm(600, 600), 61, "rollback", "cost"),
        # worse than the baseline by more than the margin, and significantly
        (arm(200, 192), arm(2000, 2000), 0, "rollback", "error rate"),
        # three unlucky requests are no evidence: the baseline fails as often
        (arm(100, 97), arm(1000, 980), 61, "advance", "met"),
        # structured output: 10% invalid against none
        (
            arm(200, 200, asked=200, valid=180),
            arm(2000, 2000, asked=2000, valid=2000),
            0,
            "rollback",
            "invalid JSON",
        ),
        # the same rate difference on too few samples is held, not rolled back
        (arm(60, 60, asked=60, valid=57), arm(600, 600, asked=600, valid=590), 0, "hold", ""),
    ],
)
def test_evaluate(canary: ArmStats, base: ArmStats, age: float, action: str, why: str) -> None:
    got, reason = evaluate(C, canary, base, age, last_stage=False)
    assert got == action and why in reason


def test_the_last_stage_completes() -> None:
    assert evaluate(C, arm(60, 60), arm(0, 0), 61, last_stage=True)[0] == "complete"


def test_buckets_are_stable_and_split_traffic_as_asked() -> None:
    assert bucket("k", "req_1") == bucket("k", "req_1")
    canary = sum(bucket("k", f"req_{i}") < 1000 for i in range(20_000))
    assert 1800 < canary < 2200  # 10%


def test_the_lifecycle_table() -> None:
    assert TRANSITIONS[("running", "pause")] == "paused"
    assert set(sources("rollback")) == {"running", "paused", "completed"}
    assert ("rolled_back", "resume") not in TRANSITIONS and ("aborted", "abort") not in TRANSITIONS
