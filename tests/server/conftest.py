from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.procs import ROOT, Proc, SimClient, start_gateway

POLICY = os.path.join(ROOT, "tests/server/policy.toml")
GW_KEY = "sk-gw-test"  # the policy's default tier (L1) and below
GW_KEY_L0 = "sk-gw-test-l0"  # entitled to L0


@pytest.fixture(scope="session")
def gateway(sim: SimClient) -> Iterator[Proc]:
    """One gateway (one worker) in front of the session simulator, key-protected."""
    proc = start_gateway(
        sim.url,
        POLICY,
        {"EDGE_KEYS": f"{GW_KEY},{GW_KEY_L0}=L0", "EDGE_UPSTREAM_READ_TIMEOUT_S": "2"},
    )
    yield proc
    proc.stop()
