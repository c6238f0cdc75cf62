"""Figures that tell the truth, through real gateways: job runs apart from requests, error
answers that name their tier and model, the state's reachability from two workers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.procs import ROOT, Proc, SimClient, metric, start_gateway

POLICY = os.path.join(ROOT, "tests/server/integrity_policy.toml")
KEY, ADMIN = "sk-figures", "sk-figures-admin"
HELLO = [{"role": "user", "content": "hi"}]
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def gw(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(
        sim.url,
        POLICY,
        {"EDGE_KEYS": f"{KEY}=L0", "EDGE_ADMIN_KEY": ADMIN, "EDGE_JOBS_POLL_S": "0.1"},
        workers=2,
    )
    yield proc
    proc.stop()


def until(check: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def test_a_jobs_runs_are_counted_apart_from_requests(gw: Proc) -> None:
    served = metric(gw, "edge_requests_total", ADMIN, tier="LB", status="200")
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "auto", "messages": HELLO},
        headers={**AUTH, "x-edge-tier": "LB", "prefer": "respond-async"},
    )
    assert r.status_code == 202
    job = r.headers["x-edge-job-id"]
    until(lambda: httpx.get(f"{gw.url}/v1/jobs/{job}", headers=AUTH).status_code == 200)
    until(lambda: metric(gw, "edge_job_runs_total", ADMIN, tier="LB", status="200") == 1.0)
    # each worker publishes its counts once a second: wait until the scrape has both workers'
    until(lambda: metric(gw, "edge_requests_total", ADMIN, tier="LB", status="202") == 1.0)
    assert metric(gw, "edge_requests_total", ADMIN, tier="LB", status="200") == served
    admin = {"authorization": f"Bearer {ADMIN}"}
    until(
        lambda: (
            httpx.get(gw.url + "/v1/edge/stats", headers=admin).json()["job_runs"] == {"LB:200": 1}
        )
    )


def test_an_error_answer_names_its_tier_and_model(gw: Proc, sim: SimClient) -> None:
    sim.outage("int-cheap-a", 30)
    sim.outage("int-cheap-b", 30)
    try:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "auto", "messages": HELLO},
            headers={**AUTH, "x-edge-tier": "L2"},
        )
    finally:
        sim.reset()
    assert r.status_code >= 500, r.text
    assert r.headers["x-edge-tier"] == "L2"
    assert r.headers["x-edge-model"] in ("cheap-a", "cheap-b")
    assert "x-request-id" in r.headers


def test_state_up_is_exported_with_two_workers(gw: Proc) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    until(lambda: httpx.get(gw.url + "/v1/edge/stats", headers=admin).json()["workers"] == 2)
    text = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    assert "edge_state_up 1.0" in text, text[:400]
