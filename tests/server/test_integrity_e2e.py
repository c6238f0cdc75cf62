"""The triangle cannot be walked around, end to end with the official SDKs.

A key's tier is an entitlement; the cap a request's gate applied binds every
attempt (a failover never goes back to the model a degrade moved away from);
key budgets are hard at every tier; a job runs when the period that blocked it
turns; a client that leaves mid-stream is billed for what it was served; and
no client gets a 202 it did not ask for.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import socket
import sqlite3
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

from tests.procs import ROOT, Proc, SimClient, metric, start_gateway

POLICY = os.path.join(ROOT, "tests/server/integrity_policy.toml")
L2, PLAIN, POOR, MONTHLY, ASYNC, BILLED, ADMIN = (
    "sk-l2",
    "sk-plain",
    "sk-poor",
    "sk-monthly",
    "sk-async",
    "sk-billed",
    "sk-admin",
)
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def state_dir() -> str:
    return tempfile.mkdtemp(prefix="edge-integrity-")


@pytest.fixture(scope="module")
def gw(sim: SimClient, state_dir: str) -> Iterator[Proc]:
    keys = [
        f"{L2}=L2@l2",
        PLAIN,
        f"{POOR}=L0@poor",
        f"{MONTHLY}=L1@monthly",
        f"{ASYNC}=LB@batch;async",
        f"{BILLED}=L1@billed",
    ]
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": ",".join(keys),
            "EDGE_ADMIN_KEY": ADMIN,
            "EDGE_JOBS_POLL_S": "0.1",
            "EDGE_STATE_DIR": state_dir,
        },
    )
    yield proc
    proc.stop()


def oa(gw: Proc, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url + "/v1", api_key=key, max_retries=0, default_headers=headers
    )


def an(gw: Proc, key: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, default_headers=headers)


def models_seen(sim: SimClient, since: int) -> list[str]:
    return [a["model"] for a in sim.attempts(since=since)]


# -- tiers are entitlements


def test_a_header_or_alias_above_the_keys_tier_is_refused_in_both_dialects(gw: Proc) -> None:
    before = metric(gw, "edge_request_errors_total", ADMIN, error_type="TierForbidden")
    with pytest.raises(openai.PermissionDeniedError) as err:
        oa(gw, L2, **{"x-edge-tier": "L0"}).chat.completions.create(model="auto", messages=HELLO)
    assert err.value.code == "tier_not_allowed" and "L2" in err.value.message
    with pytest.raises(openai.PermissionDeniedError):
        oa(gw, L2).chat.completions.create(model="L0", messages=HELLO)  # the alias, too
    with pytest.raises(anthropic.PermissionDeniedError) as aerr:
        an(gw, L2, **{"x-edge-tier": "L1"}).messages.create(
            model="auto", max_tokens=16, messages=HELLO
        )
    assert aerr.value.response.headers.get("x-should-retry") == "false"
    # its own tier, and a lower one where there is one, are fine
    raw = oa(gw, L2).chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-edge-tier"] == "L2"
    # a key without a declared tier gets the policy's default (L1) and nothing above it
    with pytest.raises(openai.PermissionDeniedError):
        oa(gw, PLAIN, **{"x-edge-tier": "L0"}).chat.completions.create(model="auto", messages=HELLO)
    raw = oa(gw, PLAIN, **{"x-edge-tier": "L2"}).chat.completions.with_raw_response.create(
        model="auto", messages=HELLO
    )
    assert raw.headers["x-edge-tier"] == "L2"
    after = metric(gw, "edge_request_errors_total", ADMIN, error_type="TierForbidden")
    assert after - before == 4


def test_an_exhausted_key_is_refused_at_l0_too(gw: Proc, sim: SimClient) -> None:
    since = sim.seq()
    # L0 never blocks on a request's own cost; a key's budget is hard all the same
    with pytest.raises(openai.RateLimitError) as err:
        oa(gw, POOR).chat.completions.create(model="auto", messages=HELLO)
    headers = err.value.response.headers
    assert headers["x-should-retry"] == "false" and int(headers["retry-after"]) > 0
    assert err.value.code == "budget_exceeded" and "day" in err.value.message
    with pytest.raises(anthropic.RateLimitError):
        an(gw, POOR).messages.create(model="auto", max_tokens=16, messages=HELLO)
    assert models_seen(sim, since) == []  # nothing reached a provider


# -- the cap binds every attempt


def test_a_degraded_request_fails_over_only_within_its_cap(gw: Proc, sim: SimClient) -> None:
    sim.outage("int-cheap-a", 30.0, 503)
    try:
        since = sim.seq()
        raw = oa(gw, PLAIN).chat.completions.with_raw_response.create(model="dear", messages=HELLO)
        assert raw.headers["x-edge-budget-action"] == "degrade"
        assert raw.headers["x-edge-model"] == "cheap-b"  # not dear, not mid
        seen = models_seen(sim, since)
        assert seen[0] == "int-cheap-a" and seen[-1] == "int-cheap-b"
        assert "int-dear" not in seen and "int-mid" not in seen
        # both cheap models down: a 503 that says so, never the dearer ones
        sim.outage("int-cheap-b", 30.0, 503)
        since = sim.seq()
        with pytest.raises(anthropic.InternalServerError) as err:
            # max_tokens 100: mid's estimate ($0.0004) stays over the cap ($0.0002)
            an(gw, PLAIN).messages.create(model="dear", max_tokens=100, messages=HELLO)
        assert err.value.status_code == 503
        assert int(err.value.response.headers["retry-after"]) >= 1
        assert "cost cap" in err.value.message
        seen = models_seen(sim, since)
        assert seen and set(seen) <= {"int-cheap-a", "int-cheap-b"}
    finally:
        sim.outage("int-cheap-a", 0.0, 503)
        sim.outage("int-cheap-b", 0.0, 503)


# -- the async path is asked for, not imposed


def jobs_of(state_dir: str, key_id_tenant: str) -> int:
    db = sqlite3.connect(os.path.join(state_dir, "edge.db"))
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM jobs WHERE tenant = ?", (key_id_tenant,)).fetchone()
    finally:
        db.close()
    return int(n)


def test_a_blocked_request_gets_a_typed_error_and_no_job(gw: Proc, state_dir: str) -> None:
    tenant = hashlib.sha256(PLAIN.encode()).hexdigest()[:12]  # a key without @TENANT
    before = jobs_of(state_dir, tenant)
    client = oa(gw, PLAIN, **{"x-edge-tier": "LB"})
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="auto", messages=HELLO)
    message = err.value.message
    assert err.value.code == "cost_over_threshold"
    assert "Prefer: respond-async" in message and "$" in message
    # a stream is refused before it starts
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=HELLO, stream=True)
    with pytest.raises(anthropic.BadRequestError):
        an(gw, PLAIN, **{"x-edge-tier": "LB"}).messages.create(
            model="auto", max_tokens=16, messages=HELLO
        )
    assert jobs_of(state_dir, tenant) == before  # nothing was queued


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_prefer_respond_async_gets_202_and_a_finished_job(gw: Proc, dialect: str) -> None:
    body: dict[str, Any]
    if dialect == "openai":
        path, body = "/v1/chat/completions", {"model": "auto", "messages": HELLO}
    else:
        path = "/v1/messages"
        body = {"model": "auto", "max_tokens": 16, "messages": HELLO}
    auth = {"authorization": f"Bearer {PLAIN}", "x-edge-tier": "LB"}
    r = httpx.post(gw.url + path, json=body, headers={**auth, "prefer": "respond-async"})
    assert r.status_code == 202 and r.headers["preference-applied"] == "respond-async"
    job_id = r.headers["x-edge-job-id"]
    deadline = time.monotonic() + 15
    while True:
        done = httpx.get(f"{gw.url}/v1/jobs/{job_id}", headers=auth)
        if done.status_code != 202 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert done.status_code == 200
    answer = done.json()
    assert (
        answer["object"] == "chat.completion"
        if dialect == "openai"
        else answer["type"] == "message"
    )


def test_an_async_key_gets_its_job_unasked(gw: Proc) -> None:
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "auto", "messages": HELLO},
        headers={"authorization": f"Bearer {ASYNC}"},
    )
    assert r.status_code == 202 and r.headers["x-edge-job-id"].startswith("job_")
    # but not for a stream, which its SDK could not read from a 202: refused before it starts
    with pytest.raises(openai.BadRequestError):
        oa(gw, ASYNC).chat.completions.create(model="auto", messages=HELLO, stream=True)


def test_a_month_blocked_job_waits_for_the_next_month(gw: Proc, state_dir: str) -> None:
    auth = {"authorization": f"Bearer {MONTHLY}"}
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "auto", "messages": HELLO},
        headers={**auth, "prefer": "respond-async"},
    )
    assert r.status_code == 202
    job = httpx.get(f"{gw.url}/v1/jobs/{r.headers['x-edge-job-id']}", headers=auth).json()
    t = time.gmtime()
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    assert job["status"] == "queued" and "month" in job["reason"]
    assert job["next_run_at"] == calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))
    # without asking: the 429 says when the month turns
    with pytest.raises(openai.RateLimitError) as err:
        oa(gw, MONTHLY).chat.completions.create(model="auto", messages=HELLO)
    assert "month" in err.value.message
    wait = int(err.value.response.headers["retry-after"])
    assert abs(time.time() + wait - job["next_run_at"]) < 5
    # an operator runs it now (cancel, retry): it reserves against its budget like any
    # request, finds it used up and waits for the month again
    assert httpx.delete(f"{gw.url}/v1/jobs/{job['id']}", headers=auth).status_code == 200
    retried = subprocess.run(
        [sys.executable, "-m", "edge.cli", "jobs", "retry", job["id"], "--state-dir", state_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert retried.returncode == 0, retried.stderr
    deadline = time.monotonic() + 10
    while True:
        again = httpx.get(f"{gw.url}/v1/jobs/{job['id']}", headers=auth).json()
        if again["status"] == "queued" and "budget" in (again["error"] or ""):
            break
        assert time.monotonic() < deadline, again
        time.sleep(0.05)
    assert again["next_run_at"] == job["next_run_at"] and again["attempts"] >= 1


# -- a client that leaves is billed


def spend_of(gw: Proc, tenant: str) -> list[dict[str, Any]]:
    r = httpx.get(gw.url + "/admin/spend", headers={"authorization": f"Bearer {ADMIN}"})
    return [row for row in r.json()["rows"] if row["tenant"] == tenant]


def test_a_client_that_leaves_mid_stream_is_billed_for_its_answer(gw: Proc) -> None:
    body = b'{"model":"auto","stream":true,"messages":[{"role":"user","content":"tell me"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + BILLED.encode() + b"\r\nx-edge-tier: LS\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(head + body)
        got = b""
        while got.count(b"data: ") < 5:  # the head and a few tokens, then leave
            got += s.recv(65536)
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in spend_of(gw, "billed") if r["kind"] == "answer"]
        if rows:
            break
        time.sleep(0.1)
    assert rows, "the departed client's answer is not in the ledger"
    (row,) = rows
    assert row["model"] == "slow" and row["output_tokens"] >= 3 and row["cost_usd"] > 0
    assert row["input_tokens"] > 0


# -- real clients, shipped policy


@pytest.fixture(scope="module")
def shipped(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(sim.url, os.path.join(ROOT, "edge/policies/default.toml"))
    yield proc
    proc.stop()


AGENT_SYSTEM = (
    "You are a coding agent working in a large repository. Read files before you edit them, "
    "run the tests after every change, keep commits small, and explain what you did. "
) * 700  # about 25k tokens
AGENT_TOOLS = [
    {
        "name": f"tool_{i}",
        "description": f"Tool number {i}: reads, edits or runs something in the workspace. " * 4,
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path"],
        },
    }
    for i in range(15)
]


def test_a_coding_agents_request_is_answered_under_the_shipped_policy(shipped: Proc) -> None:
    """LangChain / coding-agent defaults: max_tokens 64000, a 25k-token cached system prompt,
    15 tools, thinking, beta headers. Answered (never a 202), and its second turn is priced
    with the prompt cache warm."""
    client = anthropic.Anthropic(base_url=shipped.url, api_key="any", max_retries=0)
    estimates = []
    for question in ("Fix the failing test in tests/test_app.py", "Now add a regression test"):
        # the SDK insists on streaming with max_tokens this large, as coding agents do (and
        # warns that claude-opus-4-5 is deprecated: haiku, then)
        with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=64000,
            system=[{"type": "text", "text": AGENT_SYSTEM, "cache_control": {"type": "ephemeral"}}],
            tools=AGENT_TOOLS,
            thinking={"type": "enabled", "budget_tokens": 10000},
            metadata={"user_id": "agent-session-1"},
            messages=[{"role": "user", "content": question}],
            extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        ) as stream:
            message = stream.get_final_message()
            headers = stream.response.headers
        assert stream.response.status_code == 200
        assert message.type == "message" and message.content
        # thinking can only be carried by an Anthropic model: the degrade stays among them
        assert headers["x-edge-provider"] == "anthropic"
        assert float(headers["x-edge-cost-estimate-usd"]) < 0.05  # under L1's block
        estimates.append(float(headers["x-edge-cost-estimate-usd"]))
    assert estimates[1] < estimates[0] / 2  # the cached prefix is priced as a cache read


def raw_post(gw: Proc, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
    for name, value in headers:
        head += f"{name}: {value}\r\n".encode()
    head += b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_a_credential_or_tier_sent_twice_is_refused_and_prefer_lines_are_joined(gw: Proc) -> None:
    body = b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}'
    status, _ = raw_post(
        gw, [("authorization", f"Bearer {L2}"), ("authorization", f"Bearer {PLAIN}")], body
    )
    assert status == 400
    status, _ = raw_post(
        gw,
        [("authorization", f"Bearer {PLAIN}"), ("x-edge-tier", "L2"), ("x-edge-tier", "L0")],
        body,
    )
    assert status == 400
    # Prefer is a list: respond-async on its own line among others still counts (RFC 7240)
    status, data = raw_post(
        gw,
        [
            ("authorization", f"Bearer {PLAIN}"),
            ("x-edge-tier", "LB"),
            ("prefer", "respond-async"),
            ("prefer", "wait=5"),
        ],
        body,
    )
    assert status == 202 and b"preference-applied: respond-async" in data.lower()
