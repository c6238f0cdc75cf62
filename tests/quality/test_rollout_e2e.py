"""Rollouts end to end: a gateway, real traffic, ``llm-edge rollout``, shortened stages.

Stage timings are shortened by environment (0.3 s dwell, 60 samples per arm
before a stage can pass or roll back); the stages stay 1, 10, 50, 100, so
the 1% stage takes about 6,000 requests.
Traffic is structured-output requests on tier L1 with fixed request ids, so
arm assignment and the simulated models' answers are the same on every run.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import ROOT, Proc, SimClient, start, start_gateway

HERE = Path(__file__).parent
POLICY = str(HERE / "policy.toml")
KEY, ADMIN = "sk-roll", "sk-roll-admin"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def qsim() -> Iterator[SimClient]:
    proc = start(["simulate", "--port", "0", "--profile", str(HERE / "profile.toml")])
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


def sim_env(qsim: SimClient) -> dict[str, str]:
    return {
        "EDGE_SIMULATE": "off",
        "OPENAI_API_KEY": "sk-up",
        "ANTHROPIC_API_KEY": "sk-up",
        "EDGE_OPENAI_BASE_URL": qsim.url + "/v1",
        "EDGE_ANTHROPIC_BASE_URL": qsim.url,
    }


def gateway(qsim: SimClient, state_dir: str, dwell_s: str = "0.3") -> Proc:
    return start_gateway(
        qsim.url,
        POLICY,
        {
            "EDGE_KEYS": f"{KEY}=L0",
            "EDGE_ADMIN_KEY": ADMIN,
            "EDGE_STATE_DIR": state_dir,
            "EDGE_ROLLOUT_MIN_REQUESTS": "5",
            "EDGE_ROLLOUT_DWELL_S": dwell_s,
            "EDGE_ROLLOUT_MIN_SAMPLES": "60",
        },
    )


def rollout(qsim: SimClient, state_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "rollout", *args, "--state-dir", state_dir],
        cwd=ROOT,
        env={**os.environ, **sim_env(qsim)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def status(gw: Proc) -> dict[str, Any]:
    r = httpx.get(gw.url + "/admin/rollout", headers={"authorization": f"Bearer {ADMIN}"})
    r.raise_for_status()
    out: dict[str, Any] = r.json()["rollout"]
    return out


_seq = itertools.count()


def structured(gw: Proc, client: httpx.Client) -> httpx.Response:
    n = next(_seq)
    return client.post(
        gw.url + "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": f"Classify ticket {n}: the parcel is late."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "c", "schema": SCHEMA},
            },
        },
        headers={
            "authorization": f"Bearer {KEY}",
            "x-request-id": f"roll-{n}",
            "x-edge-tier": "L1",
        },
        timeout=20,
    )


def drive(gw: Proc, until: Any, cap: int = 16000) -> tuple[list[httpx.Response], dict[str, Any]]:
    """Send traffic in batches until ``until(status)`` holds (or ``cap`` requests)."""
    sent: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    with httpx.Client(limits=limits) as client, concurrent.futures.ThreadPoolExecutor(32) as pool:
        while len(sent) < cap:
            sent += list(pool.map(lambda _: structured(gw, client), range(500)))
            time.sleep(0.1)
            now = status(gw)
            if until(now):
                return sent, now
    return sent, status(gw)


def test_a_candidate_that_breaks_json_is_rolled_back_at_an_early_stage(qsim: SimClient) -> None:
    state_dir = tempfile.mkdtemp(prefix="edge-roll-")
    gw = gateway(qsim, state_dir)
    try:
        started = rollout(
            qsim, state_dir, "start", "--policy", str(HERE / "candidate_breaker.toml")
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "PASS" in started.stdout  # the gold set passed: only live traffic shows the flaw
        sent, now = drive(gw, lambda s: s["status"] != "running")
        assert now["status"] == "rolled_back", now
        assert now["report"]["stage_percent"] in (1, 10)  # an early stage
        # its invalid JSON, or first the hybrid score the online JSON checks pulled under the floor
        guard = now["report"]["reason"].split(" ")[0]
        assert guard in ("invalid", "quality") and now["report"]["tier"] == "L1", now["report"]
        assert now["report"]["canary"]["json_valid_rate"] < 1.0
        assert now["report"]["baseline"]["json_valid_rate"] == 1.0
        assert all(r.status_code == 200 for r in sent)  # every request was answered
        metrics = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
        assert f'edge_rollout_rollbacks_total{{reason="{guard}"}}' in metrics
        assert "edge_rollout_stage_percent 0" in metrics
        # after the rollback every request is the baseline's again
        time.sleep(1.2)
        with httpx.Client() as client:
            after = [structured(gw, client) for _ in range(30)]
        assert {r.headers.get("x-edge-model") for r in after} == {"good"}
        assert all("x-edge-rollout-arm" not in r.headers for r in after)
    finally:
        gw.stop()


def test_a_candidate_as_good_as_the_baseline_reaches_every_request(qsim: SimClient) -> None:
    state_dir = tempfile.mkdtemp(prefix="edge-roll-")
    gw = gateway(qsim, state_dir)
    try:
        started = rollout(qsim, state_dir, "start", "--policy", str(HERE / "candidate_same.toml"))
        assert started.returncode == 0, started.stdout + started.stderr
        seen: set[int] = set()

        def done(s: dict[str, Any]) -> bool:
            seen.add(s["stage_percent"])
            return bool(s["status"] != "running")

        sent, now = drive(gw, done)
        assert now["status"] == "completed", now
        assert 1 in seen  # it began at 1% (the stages between may pass within one batch)
        assert all(r.status_code == 200 for r in sent)
        with httpx.Client() as client:
            after = [structured(gw, client) for _ in range(100)]
        arms = [r.headers["x-edge-rollout-arm"] for r in after]
        assert arms.count("canary") > 80  # all but the baseline's holdback (5%) until promoted
        promoted = rollout(qsim, state_dir, "promote")
        assert promoted.returncode == 0 and "completed -> promoted" in promoted.stdout
    finally:
        gw.stop()


def test_a_restart_mid_rollout_resumes_at_the_same_stage(qsim: SimClient) -> None:
    state_dir = tempfile.mkdtemp(prefix="edge-roll-")
    gw = gateway(qsim, state_dir, dwell_s="3600")  # stage 1 holds
    try:
        started = rollout(qsim, state_dir, "start", "--policy", str(HERE / "candidate_same.toml"))
        assert started.returncode == 0, started.stderr
        sent, before = drive(gw, lambda s: s["arms"]["canary"]["requests"] >= 3, cap=2000)
        arms_before = {  # requests before the gateway's first look at the rollout have no arm
            r.request.headers["x-request-id"]: r.headers["x-edge-rollout-arm"]
            for r in sent
            if "x-edge-rollout-arm" in r.headers
        }
        assert "canary" in arms_before.values() and "baseline" in arms_before.values()
    finally:
        gw.stop()
    gw = gateway(qsim, state_dir, dwell_s="3600")
    try:
        deadline = time.monotonic() + 5
        with httpx.Client() as probe:
            while "x-edge-rollout-arm" not in structured(gw, probe).headers:
                assert time.monotonic() < deadline, "the restarted gateway does not serve it"
                time.sleep(0.1)
        after = status(gw)
        assert after["id"] == before["id"] and after["status"] == "running"
        assert after["stage_percent"] == before["stage_percent"] == 1
        # the same request ids land in the same arms as before the restart
        with httpx.Client() as client:
            for rid, arm in list(arms_before.items())[:50]:
                n = int(rid.split("-")[1])
                r = client.post(
                    gw.url + "/v1/chat/completions",
                    json={"model": "auto", "messages": [{"role": "user", "content": f"again {n}"}]},
                    headers={"authorization": f"Bearer {KEY}", "x-request-id": rid},
                )
                assert r.headers["x-edge-rollout-arm"] == arm
        paused = rollout(qsim, state_dir, "pause")
        assert paused.returncode == 0 and "running -> paused" in paused.stdout
        aborted = rollout(qsim, state_dir, "abort")
        assert aborted.returncode == 0 and "paused -> aborted" in aborted.stdout
    finally:
        gw.stop()
