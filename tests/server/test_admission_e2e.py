"""Admission through a real gateway: a full worker sheds with a 429 in the caller's dialect,
``retry-after`` set, and counts it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.procs import Proc, SimClient, metric, start_gateway
from tests.server.conftest import GW_KEY, POLICY

HELLO = [{"role": "user", "content": "Hello there, gateway"}]


@pytest.fixture(scope="module")
def full_gateway(sim: SimClient) -> Iterator[Proc]:
    """One slot per worker and no waiting room: a second request at once is shed."""
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": GW_KEY,
            "EDGE_ADMISSION_MAX_IN_FLIGHT": "1",
            "EDGE_ADMISSION_MAX_QUEUED": "0",
        },
    )
    yield proc
    proc.stop()


@pytest.fixture
def occupied(full_gateway: Proc) -> Iterator[None]:
    """The worker's only slot held by a slow stream (its first chunk proves it is admitted)."""
    with (
        httpx.Client(base_url=full_gateway.url, timeout=10.0) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {GW_KEY}"},
            json={"model": "slow-oa", "messages": HELLO, "stream": True},
        ) as r,
    ):
        assert r.status_code == 200
        chunks = r.iter_bytes()  # held: a dropped iterator would close the stream
        next(chunks)
        yield
    # the gateway notices the close at its next write: wait until the slot is free again
    until(lambda: metric(full_gateway, "edge_admission_in_flight", tier="L1") == 0)


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll an observable condition of the gateway (its metrics) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_openai_caller_gets_an_openai_429_with_retry_after(
    full_gateway: Proc, occupied: None
) -> None:
    before = metric(full_gateway, "edge_shed_total", tier="L1", reason="queue_full")

    with (
        openai.OpenAI(base_url=full_gateway.url + "/v1", api_key=GW_KEY, max_retries=0) as client,
        pytest.raises(openai.RateLimitError) as exc,
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    err = exc.value
    assert err.status_code == 429
    assert int(err.response.headers["retry-after"]) >= 1
    body = err.response.json()
    assert body["error"]["type"] == "requests" and body["error"]["code"] == "tier_overloaded"
    assert "tier L1 is over capacity" in body["error"]["message"]
    assert metric(full_gateway, "edge_shed_total", tier="L1", reason="queue_full") == before + 1


def test_anthropic_caller_gets_an_anthropic_429(full_gateway: Proc, occupied: None) -> None:
    with (
        anthropic.Anthropic(base_url=full_gateway.url, api_key=GW_KEY, max_retries=0) as client,
        pytest.raises(anthropic.RateLimitError) as exc,
    ):
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=HELLO)
    body = exc.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in exc.value.response.headers


def test_the_slot_comes_back_after_the_request_ends(full_gateway: Proc) -> None:
    r = httpx.post(
        full_gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {GW_KEY}"},
        json={"model": "gpt-4o-mini", "messages": HELLO},
    )
    assert r.status_code == 200
    assert metric(full_gateway, "edge_admission_in_flight", tier="L1") == 0
