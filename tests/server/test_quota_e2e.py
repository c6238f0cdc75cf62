"""Quota awareness through a real gateway and the simulator's quotas: the providers' headers
steer a request to another candidate before the provider's 429, in both dialects, and hold
one that has nowhere else to go until the reset; with awareness off, the 429s are spent."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.procs import ROOT, Proc, SimClient, metric, start_gateway

POLICY = os.path.join(ROOT, "tests/server/quota_policy.toml")
HELLO = [{"role": "user", "content": "Hello there, gateway"}]


@pytest.fixture(scope="module")
def aware(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(sim.url, POLICY)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def unaware(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(sim.url, POLICY, {"EDGE_ADMISSION_QUOTA_AWARE": "off"})
    yield proc
    proc.stop()


def ask(gw: Proc, model: str, anthropic: bool = False) -> httpx.Response:
    if anthropic:
        return httpx.post(
            gw.url + "/v1/messages",
            headers={"anthropic-version": "2023-06-01"},
            json={"model": model, "max_tokens": 64, "messages": HELLO},
        )
    return httpx.post(gw.url + "/v1/chat/completions", json={"model": model, "messages": HELLO})


def served_by(gw: Proc, model: str, n: int, anthropic: bool = False) -> list[str]:
    out = []
    for _ in range(n):
        r = ask(gw, model, anthropic)
        assert r.status_code == 200, r.text
        out.append(r.headers["x-edge-model"])
    return out


@pytest.mark.parametrize(("model", "fallback", "anthropic"), [
    ("quota-oa", "claude-haiku-4-5", False),
    ("quota-an", "gpt-4o-mini", True),
])  # fmt: skip
def test_a_spent_quota_steers_to_another_candidate_before_the_providers_429(
    fresh_sim: SimClient, aware: Proc, model: str, fallback: str, anthropic: bool
) -> None:
    assert served_by(aware, model, 5, anthropic) == [model] * 3 + [fallback] * 2
    outcomes = fresh_sim.stats(model)["by_model"][model]["outcomes"]
    assert outcomes == {"ok": 3}  # the provider never had to say no
    assert metric(aware, "edge_quota_avoided_total", model=model, action="steered") >= 2
    assert metric(aware, "edge_quota_remaining", model=model, kind="requests") == 0


def test_without_awareness_the_providers_429s_are_spent(
    fresh_sim: SimClient, unaware: Proc
) -> None:
    assert served_by(unaware, "quota-oa", 5) == ["quota-oa"] * 3 + ["claude-haiku-4-5"] * 2
    outcomes = fresh_sim.stats("quota-oa")["by_model"]["quota-oa"]["outcomes"]
    assert outcomes.get("quota", 0) >= 1  # the failover came after the provider's 429


def test_nowhere_else_to_go_holds_until_the_reset(fresh_sim: SimClient, aware: Proc) -> None:
    before = metric(aware, "edge_quota_avoided_total", model="quota-1s", action="held")
    assert served_by(aware, "quota-1s", 3) == ["quota-1s"] * 3
    outcomes = fresh_sim.stats("quota-1s")["by_model"]["quota-1s"]["outcomes"]
    assert outcomes == {"ok": 3}
    assert metric(aware, "edge_quota_avoided_total", model="quota-1s", action="held") >= before + 1
