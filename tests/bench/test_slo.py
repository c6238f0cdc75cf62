"""The short SLO run (bench/slo.py --quick) in the suite: 45 s of locust load with faults and an
outage through real sockets. What it asserts is behaviour, not time: every tier is served and
nothing is lost (failures <= 1% per tier). The P95 target is a benchmark verdict (``make bench``
exits non-zero when a tier misses it), never a timed assertion here: on a shared 2-core CI
machine a latency figure measures the neighbours as much as the gateway."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT


@pytest.mark.timeout(300)
def test_the_short_slo_run_serves_every_tier_and_loses_nothing() -> None:
    r = subprocess.run(
        [sys.executable, "bench/slo.py", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = r.stdout + r.stderr
    # 0: the SLO was met; 1: a tier missed it (a verdict the table shows); anything else crashed
    assert r.returncode in (0, 1), out
    for tier in ("L0", "L1", "L2"):
        row = next(line for line in r.stdout.splitlines() if line.startswith(f"| {tier} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) > 100, row  # the load really ran
        assert float(cells[2].rstrip("%")) <= 1.0, row  # answered or failed cleanly, not lost
        p50, p95, p99 = (float(x) for x in cells[3].split("/"))
        assert 0 < p50 <= p95 <= p99, row  # the figures are real measurements
