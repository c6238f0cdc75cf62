"""Cost gating end to end: warn, degrade (model, max_tokens), block into a job, key budgets.

One gateway on ``cost_policy.toml`` (a tier per action) in front of the
session simulator; the official SDKs as clients, ``with_raw_response`` where
the headers matter.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.procs import ROOT, Proc, SimClient, start_gateway

POLICY = os.path.join(ROOT, "tests/server/cost_policy.toml")
KEY, ACME, OTHER, ADMIN = "sk-cost", "sk-acme", "sk-other", "sk-admin"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def state_dir() -> str:
    return tempfile.mkdtemp(prefix="edge-cost-")


@pytest.fixture(scope="module")
def gw(sim: SimClient, state_dir: str) -> Iterator[Proc]:
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": f"{KEY},{ACME}=K@acme,{OTHER}",
            "EDGE_ADMIN_KEY": ADMIN,
            "EDGE_STATE_DIR": state_dir,
            "EDGE_JOBS_POLL_S": "0.1",
            "EDGE_JOBS_BACKOFF_S": "0.2",
        },
    )
    yield proc
    proc.stop()


def oa(gw: Proc, key: str = KEY, tier: str = "W") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url + "/v1", api_key=key, max_retries=0, default_headers={"x-edge-tier": tier}
    )


def an(gw: Proc, tier: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.url,
        api_key=KEY,
        max_retries=0,
        default_headers={"x-edge-tier": tier, **headers},
    )


ASYNC = {"prefer": "respond-async"}  # RFC 7240: a blocked request may become a job


def wait_job(gw: Proc, job_id: str, key: str = KEY, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{gw.url}/v1/jobs/{job_id}", headers={"authorization": f"Bearer {key}"})
        if r.status_code != 202 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_warn_only_flags_the_answer(gw: Proc) -> None:
    with oa(gw, tier="W") as client:
        raw = client.chat.completions.with_raw_response.create(model="cheap", messages=HELLO)
    assert raw.headers["x-edge-budget-action"] == "warn" and "x-edge-degraded" not in raw.headers
    assert raw.parse().model == "gpt-4o-mini"
    assert float(raw.headers["x-edge-cost-estimate-usd"]) > 0


def test_degrade_switches_to_the_cheapest_model_meeting_the_floor(gw: Proc) -> None:
    with oa(gw, tier="D") as client:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
        named = client.chat.completions.with_raw_response.create(model="pricey", messages=HELLO)
    for r in (raw, named):
        assert r.headers["x-edge-budget-action"] == "degrade"
        assert r.headers["x-edge-degraded"] == "model"
        assert r.headers["x-edge-model"] == "cheap" and r.parse().model == "gpt-4o-mini"


def test_degrade_by_max_tokens_caps_the_output(gw: Proc) -> None:
    with oa(gw, tier="M") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="long", messages=HELLO, max_tokens=1000
        )
    answer = raw.parse()
    cap = int(raw.headers["x-edge-degraded"].removeprefix("max_tokens="))
    assert 64 <= cap < 1000 and raw.headers["x-edge-budget-action"] == "degrade"
    # the simulated model would say 200 tokens: the cap cut it
    assert answer.usage and answer.usage.completion_tokens == cap
    assert answer.choices[0].finish_reason == "length"


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "responses"])
def test_block_queues_a_job_that_completes_in_the_callers_dialect(gw: Proc, dialect: str) -> None:
    raw: Any
    if dialect == "responses":
        raw = httpx.post(
            gw.url + "/v1/responses",
            json={"model": "cheap", "input": "hi", "stream": True},
            headers={"authorization": f"Bearer {KEY}", "x-edge-tier": "B", **ASYNC},
        )
        headers, body = raw.headers, raw.json()
    elif dialect == "openai":
        # a streaming request: the job's answer is the whole (non-streaming) completion
        raw = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "cheap", "messages": HELLO, "stream": True},
            headers={"authorization": f"Bearer {KEY}", "x-edge-tier": "B", **ASYNC},
        )
        headers, body = raw.headers, raw.json()
    else:
        with an(gw, "B", **ASYNC) as client:
            raw = client.messages.with_raw_response.create(
                model="cheap", max_tokens=50, messages=HELLO
            )
        headers, body = raw.headers, raw.http_response.json()
    assert raw.status_code == 202 and headers["x-edge-budget-action"] == "block"
    job_id = headers["x-edge-job-id"]
    assert headers["location"] == f"/v1/jobs/{job_id}"
    assert (
        body["id"] == job_id and body["status"] == "queued" and "block threshold" in body["reason"]
    )
    done = wait_job(gw, job_id)
    assert done.status_code == 200 and done.headers["x-edge-job-status"] == "done"
    if dialect == "responses":
        answer = done.json()
        assert answer["object"] == "response" and answer["output"][0]["content"][0]["text"]
        # kept like any Responses answer (store is the API's default): a chain can go on from it
        auth = {"authorization": f"Bearer {KEY}"}
        kept = httpx.get(f"{gw.url}/v1/responses/{answer['id']}", headers=auth)
        assert kept.status_code == 200 and kept.json()["output"] == answer["output"]
    elif dialect == "openai":
        answer = done.json()
        assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    else:
        answer = done.json()
        assert answer["type"] == "message" and answer["content"][0]["type"] == "text"
    # another key cannot read it
    other = httpx.get(f"{gw.url}/v1/jobs/{job_id}", headers={"authorization": f"Bearer {OTHER}"})
    assert other.status_code == 404


def test_a_job_whose_provider_fails_is_retried_with_backoff(
    gw: Proc, sim: SimClient, state_dir: str
) -> None:
    since = sim.seq()
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "failing", "messages": HELLO},
        headers={"authorization": f"Bearer {KEY}", "x-edge-tier": "BF", **ASYNC},
    )
    assert r.status_code == 202
    done = wait_job(gw, r.headers["x-edge-job-id"])
    assert done.status_code == 200 and done.headers["x-edge-job-status"] == "done"
    outcomes = [a["outcome"] for a in sim.attempts("fail-four", since=since)]
    # the first run's three attempts fail; after the backoff the second run succeeds
    assert outcomes == ["error", "error", "error", "error", "ok"]
    assert '"attempts": 2' in cli("jobs", "show", r.headers["x-edge-job-id"], state_dir=state_dir)


def test_a_tier_that_never_blocks_answers_now(gw: Proc) -> None:
    with oa(gw, tier="L0") as client:
        raw = client.chat.completions.with_raw_response.create(model="cheap", messages=HELLO)
    assert raw.status_code == 200 and raw.headers["x-edge-budget-action"] == "degrade"


def test_a_queued_job_can_be_cancelled(gw: Proc, state_dir: str) -> None:
    # a job whose budget period has not turned yet stays queued: cancel it
    with oa(gw, key=ACME, tier="K") as client:
        for _ in range(40):
            raw = client.chat.completions.with_raw_response.create(
                model="cheap", messages=HELLO, max_tokens=20, extra_headers=ASYNC
            )
            if raw.status_code == 202:
                break
    assert raw.status_code == 202, "the budget never blocked"
    job_id = raw.headers["x-edge-job-id"]
    auth = {"authorization": f"Bearer {ACME}"}
    r = httpx.get(f"{gw.url}/v1/jobs/{job_id}", headers=auth)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert "budget" in r.json()["reason"]
    r = httpx.delete(f"{gw.url}/v1/jobs/{job_id}", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = httpx.delete(f"{gw.url}/v1/jobs/{job_id}", headers=auth)
    assert again.status_code == 400
    out = cli("jobs", "show", job_id, state_dir=state_dir)
    assert '"status": "cancelled"' in out
    assert f"{job_id} queued again" in cli("jobs", "retry", job_id, state_dir=state_dir)
    assert job_id in cli("jobs", "list", state_dir=state_dir)
    # an operator's retry runs it now; it reserves against its key's budget like any request
    # (tests/server/test_integrity_e2e.py: a job whose budget is still used up waits again)
    done = wait_job(gw, job_id, key=ACME)
    assert done.status_code in (200, 202)


def cli(*args: str, state_dir: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", *args, "--state-dir", state_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_key_budget_holds_under_concurrent_requests(gw: Proc) -> None:
    """acme's day budget is 0.0001 USD, about seven requests' estimates: concurrent requests
    cannot all pass on the same headroom, and the real spend never exceeds it."""

    def one(_: int) -> tuple[int, str]:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "cheap", "messages": HELLO, "max_tokens": 20},
            headers={"authorization": f"Bearer {ACME}", "x-edge-tier": "K"},
            timeout=20,
        )
        return r.status_code, r.headers.get("x-edge-budget-action", "ok")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(40)))
    statuses = [s for s, _ in results]
    # past the budget: 429s (no job: the client did not ask for one)
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    assert set(statuses) <= {200, 429}
    actions = {a for s, a in results if s == 200}
    assert actions & {"warn", "degrade"}  # the thresholds before the block were crossed
    spend = httpx.get(gw.url + "/admin/spend", headers={"authorization": f"Bearer {ADMIN}"}).json()[
        "rows"
    ]
    acme = sum(r["cost_usd"] for r in spend if r["tenant"] == "acme" and r["kind"] == "answer")
    assert 0 < acme <= 0.0001


def test_admin_spend_needs_the_admin_key_and_reports_by_key_tier_provider_model(
    gw: Proc, state_dir: str
) -> None:
    with oa(gw, tier="W") as client:
        client.chat.completions.create(model="cheap", messages=HELLO)
    assert httpx.get(gw.url + "/admin/spend").status_code == 401
    assert (
        httpx.get(gw.url + "/admin/spend", headers={"authorization": f"Bearer {KEY}"}).status_code
        == 401
    )
    rows = httpx.get(gw.url + "/admin/spend", headers={"authorization": f"Bearer {ADMIN}"}).json()[
        "rows"
    ]
    mine = [r for r in rows if r["tier"] == "W" and r["model"] == "cheap"]
    assert mine and mine[0]["provider"] == "openai" and mine[0]["cost_usd"] > 0
    assert mine[0]["output_tokens"] >= 12 and mine[0]["tenant"] != "acme"
    out = cli("spend", state_dir=state_dir)
    assert "cheap" in out and "total" in out
    # /metrics too is for the admin key when one is set
    assert httpx.get(gw.url + "/metrics").status_code == 401
    metrics = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    assert 'edge_cost_usd_total{model="cheap",provider="openai",tier="W"}' in metrics
    assert 'edge_budget_actions_total{action="block",scope="request"}' in metrics
    assert 'edge_jobs{status="done"}' in metrics
