"""The short SLO run (bench/slo.py --quick): a minute of locust load in CI, so a regression of
the SLO (P95 < 3 s and failures <= 1% per tier, with faults and an outage) fails the suite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT


@pytest.mark.timeout(300)
def test_the_short_slo_run_meets_the_slo() -> None:
    r = subprocess.run(
        [sys.executable, "bench/slo.py", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for tier in ("L0", "L1", "L2"):
        row = next(line for line in r.stdout.splitlines() if line.startswith(f"| {tier} |"))
        assert row.endswith("| met |"), row
        assert int(row.split("|")[2]) > 100  # the load really ran
