"""Breakers and fault injection end to end: a simulator, a gateway, real sockets.

The gateway runs ``resilience_policy.toml``: ``xs``, ``alt`` and ``out`` on the
simulated openai provider (``x-sim`` reaches it), their fallback ``an`` on
the anthropic provider, which is not marked simulated and so never sees the
header. Breakers keep the shipped defaults (5 failures in 30 s or >= 50% of
>= 20; cool-down 1 s doubling to 4 s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from edge.policy import load_policy
from edge.server.protocol import Request
from edge.server.relay import upstream_headers
from tests.procs import ROOT, Proc, SimClient, metric, start, start_gateway

GW_KEY = "sk-resilience"
FAIL = "error_status=503"


@pytest.fixture(scope="module")
def rs() -> Iterator[SimClient]:
    proc = start(
        ["simulate", "--port", "0", "--profile", os.path.join(ROOT, "tests/simulate/profile.toml")]
    )
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


@pytest.fixture(scope="module")
def gw(rs: SimClient) -> Iterator[Proc]:
    proc = start_gateway(
        rs.url,
        os.path.join(ROOT, "tests/server/resilience_policy.toml"),
        {"EDGE_KEYS": GW_KEY},
    )
    yield proc
    proc.stop()


def ask(gw: Proc, model: str, sim: str = "") -> httpx.Response:
    headers = {"authorization": f"Bearer {GW_KEY}"}
    if sim:
        headers["x-sim"] = sim
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
        timeout=15,
    )
    assert r.status_code == 200, r.text
    return r


def outcomes(rs: SimClient, since: int) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in rs.attempts(since=since)]


def test_upstream_headers_carry_x_sim_to_simulated_providers_only() -> None:
    policy = load_policy(os.path.join(ROOT, "tests/server/resilience_policy.toml"), {})
    assert policy.simulated == frozenset({"openai"})
    req = Request(b"POST", b"/v1/chat/completions", {b"x-sim": b"fault=cut"}, "req_1", True)
    sent = {p: dict(upstream_headers(policy.providers[p], req, 2)) for p in policy.providers}
    assert sent["openai"][b"x-sim"] == b"fault=cut"
    assert b"x-sim" not in sent["anthropic"]
    # the embedded simulator marks the providers it serves
    embedded = policy.with_base_urls({"anthropic": "http://127.0.0.1:1"}, simulated=True)
    assert embedded.providers["anthropic"].simulated and embedded.simulated == {"anthropic"}
    assert b"x-sim" in dict(upstream_headers(embedded.providers["anthropic"], req, 2))


def test_x_sim_reaches_the_simulated_provider_only(gw: Proc, rs: SimClient) -> None:
    since = rs.seq()
    assert ask(gw, "an", FAIL).headers["x-edge-model"] == "an"  # not simulated: no fault
    assert ask(gw, "xs", FAIL).headers["x-edge-model"] == "an"  # simulated: the fault, failover
    assert outcomes(rs, since) == [
        ("claude-haiku-4-5", "ok"),
        ("gpt-4o", "error"),
        ("claude-haiku-4-5", "ok"),
    ]


def test_alternating_failures_trip_the_breaker(gw: Proc, rs: SimClient) -> None:
    """Every other call fails: no streak of consecutive failures ever forms, yet the fifth
    failure within the window trips the breaker and the next call goes to the fallback."""
    since = rs.seq()
    for i in range(5):
        assert ask(gw, "alt", FAIL).headers["x-edge-model"] == "an"
        if i < 4:
            assert metric(gw, "edge_breaker_transitions_total", model="alt", to_state="open") == 0
            assert ask(gw, "alt").headers["x-edge-model"] == "alt"
    assert metric(gw, "edge_breaker_transitions_total", model="alt", to_state="open") == 1
    assert ask(gw, "alt").headers["x-edge-model"] == "an"  # open: alt is not tried
    assert [m for m, _ in outcomes(rs, since)].count("gpt-4o-mini") == 9


def test_after_an_outage_the_primary_carries_traffic_within_5_s(gw: Proc, rs: SimClient) -> None:
    """An outage of 4 s under steady traffic: served by the fallback throughout, the primary
    probed about once per open period, and back on it within 5 s of the outage's end."""
    outage_s = 4.0
    since = rs.seq()
    rs.outage("gpt-4.1-mini", outage_s)
    ends = time.monotonic() + outage_s
    back: float | None = None
    while time.monotonic() < ends + 10:
        served = ask(gw, "out").headers["x-edge-model"]
        now = time.monotonic()
        if served == "out" and now > ends:
            back = now
            break
        assert served == "an"
        time.sleep(0.05)  # steady traffic, not a wait for anything
    assert back is not None and back - ends <= 5.0, (
        f"back on the primary {back and back - ends} s after the outage"
    )
    tried = [o for m, o in outcomes(rs, since) if m == "gpt-4.1-mini"]
    failed = len(tried) - 1  # the last one served
    # five failures trip it; then one probe per open period (1 s, 2 s, 4 s...): nowhere near
    # the ~60 calls the traffic made during the outage
    assert 5 <= failed <= 5 + 4, tried
