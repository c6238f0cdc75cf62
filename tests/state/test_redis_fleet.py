"""Several gateway instances on one Redis: one budget, one job queue, one rollout; Redis lost
and back. Real processes, a real redis-server (started by the fixture)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest

from edge.state.redis_state import RedisState
from edge.state.types import periods
from tests.conftest import RedisServer
from tests.procs import ROOT, Proc, SimClient, start_gateway

POLICY = os.path.join(ROOT, "tests/server/cost_policy.toml")
KEY, ACME, ADMIN = "sk-cost", "sk-acme", "sk-admin"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    if redis_server.proc is None:
        redis_server.start()
    redis_server.flush()
    yield redis_server
    if redis_server.proc is None:
        redis_server.start()


def instance(sim: SimClient, redis: RedisServer, **extra: str) -> Proc:
    return start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": f"{KEY},{ACME}=K@acme",
            "EDGE_ADMIN_KEY": ADMIN,
            "EDGE_REDIS_URL": redis.url,
            "EDGE_JOBS_POLL_S": "0.1",
            **extra,
        },
    )


ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}


def post(gw: Proc, key: str, tier: str, model: str = "cheap") -> httpx.Response:
    # Prefer: respond-async lets a blocked request become a job (without it: a 400 or 429)
    headers = {"authorization": f"Bearer {key}", "x-edge-tier": tier, "prefer": "respond-async"}
    return httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": model, "messages": HELLO, "max_tokens": 20},
        headers=headers,
        timeout=20,
    )


def test_two_instances_enforce_one_budget(sim: SimClient, redis: RedisServer) -> None:
    a, b = instance(sim, redis), instance(sim, redis)
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: post(a if i % 2 else b, ACME, "K"), range(40)))
        statuses = [r.status_code for r in results]
        assert statuses.count(202) > 0 and statuses.count(200) > 0
        # every answer, from either instance, reports its share of the one budget
        shares = [float(r.headers["x-edge-budget-used"]) for r in results if r.status_code == 200]
        assert shares and all(0 < f < 1.0 for f in shares)
        time.sleep(0.6)  # settlements are written every 250 ms
        state = RedisState(redis.url)
        spent = state.spent("acme", periods(time.time())[0])
        state.close()
        # the day budget is 0.0001 USD: the fleet together stays under it (the estimates of
        # requests in flight are reserved, real costs are smaller than the estimates)
        assert 0 < spent <= 0.0001
        # the fleet's view: both instances' requests and merged latency sketches, from either
        time.sleep(1.2)  # snapshots are published every second
        answered = statuses.count(200)
        for gw in (a, b):
            admin = {"authorization": f"Bearer {ADMIN}"}
            fleet = httpx.get(
                gw.url + "/v1/edge/stats", params={"scope": "fleet"}, headers=admin
            ).json()
            assert fleet["scope"] == "fleet" and fleet["workers"] == 2
            assert fleet["tiers"]["K"]["requests"] == answered
            assert fleet["tiers"]["K"]["latency_ms"]["p95"] > 0
            assert fleet["models"]["openai/cheap"]["breaker"] == "closed"
            mine = httpx.get(gw.url + "/v1/edge/stats", headers=admin).json()
            assert mine["scope"] == "instance" and mine["tiers"]["K"]["requests"] < answered
    finally:
        a.stop()
        b.stop()


def test_a_job_accepted_by_one_instance_is_finished_by_another(
    sim: SimClient, redis: RedisServer
) -> None:
    since = sim.seq()
    a = instance(sim, redis, EDGE_JOBS_LEASE_S="1.5")
    worker = int(httpx.get(a.url + "/healthz").json()["pid"])
    r = post(a, KEY, "B", model="slowjob")
    assert r.status_code == 202
    job_id = r.headers["x-edge-job-id"]
    deadline = time.monotonic() + 10
    while not sim.attempts("slow-stream", since=since) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.attempts("slow-stream", since=since), "instance A never started the job"
    b = instance(sim, redis, EDGE_JOBS_LEASE_S="1.5")
    try:
        os.kill(worker, signal.SIGKILL)
        os.kill(a.popen.pid, signal.SIGKILL)
        a.popen.wait(10)
        a.stop()
        deadline = time.monotonic() + 20
        while True:
            done = httpx.get(
                f"{b.url}/v1/jobs/{job_id}", headers={"authorization": f"Bearer {KEY}"}
            )
            if done.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert done.status_code == 200 and done.headers["x-edge-job-status"] == "done"
        attempts = sim.attempts("slow-stream", since=since)
        assert len(attempts) == 2 and [x["completed"] for x in attempts] == [False, True]
    finally:
        b.stop()


def test_both_instances_see_one_rollout(sim: SimClient, redis: RedisServer) -> None:
    a, b = instance(sim, redis), instance(sim, redis)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as report:
            json.dump({"pass": True}, report)  # the gold gate itself is tested in tests/quality
        started = subprocess.run(
            [sys.executable, "-m", "edge.cli", "rollout", "start", "--policy", POLICY,
             "--gold-report", report.name],
            cwd=ROOT,
            env={**os.environ, "EDGE_REDIS_URL": redis.url},
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        auth = {"authorization": f"Bearer {ADMIN}"}
        seen = [httpx.get(g.url + "/admin/rollout", headers=auth).json()["rollout"] for g in (a, b)]
        assert (
            seen[0]["id"] == seen[1]["id"] and seen[0]["status"] == seen[1]["status"] == "running"
        )
        aborted = subprocess.run(
            [sys.executable, "-m", "edge.cli", "rollout", "abort"],
            cwd=ROOT,
            env={**os.environ, "EDGE_REDIS_URL": redis.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert aborted.returncode == 0
        seen = [httpx.get(g.url + "/admin/rollout", headers=auth).json()["rollout"] for g in (a, b)]
        assert seen[0]["status"] == seen[1]["status"] == "aborted"
    finally:
        a.stop()
        b.stop()


def test_redis_lost_then_back(sim: SimClient, redis: RedisServer) -> None:
    gw = instance(sim, redis)
    try:
        assert post(gw, ACME, "K").status_code == 200
        redis.stop()
        # budgets are enforced locally: the key still gets answers
        assert post(gw, ACME, "K").status_code == 200
        # a request that would become a job cannot be queued: a clear 503, not a lost job
        blocked = post(gw, KEY, "B")
        assert blocked.status_code == 503 and blocked.headers["retry-after"] == "5"
        assert "job queue cannot persist" in blocked.json()["error"]["message"]
        assert "edge_state_up 0.0" in httpx.get(gw.url + "/metrics", headers=ADMIN_AUTH).text
        redis.start()  # an empty Redis on the same port
        deadline = time.monotonic() + 10
        while "edge_state_up 1.0" not in httpx.get(gw.url + "/metrics", headers=ADMIN_AUTH).text:
            assert time.monotonic() < deadline, "the gateway did not see Redis come back"
            time.sleep(0.1)
        assert post(gw, KEY, "B").status_code == 202  # jobs are accepted again
        # what was spent during the outage was kept and written once Redis came back
        state = RedisState(redis.url)
        spent = state.spent("acme", periods(time.time())[0])
        state.close()
        assert spent > 0
        assert any('"shared state lost' in line for line in gw.lines)
    finally:
        gw.stop()


def test_an_unreachable_redis_fails_the_start(sim: SimClient) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "EDGE_SIMULATE": "auto", "EDGE_REDIS_URL": "redis://127.0.0.1:9/0",
             "EDGE_STATE_DIR": tempfile.mkdtemp()},
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert r.returncode == 2 and "EDGE_REDIS_URL" in r.stderr
