"""The race end to end: one fault per test, real sockets, the official SDKs.

A simulator on ``race_profile.toml`` and a gateway on ``race_policy.toml``
(tier T: soft timeout 300 ms, first token 1.5 s, idle 0.8 s). Each test
asserts what the caller got, the wall time (loose upper bounds: deadlines,
not speed), and what the simulator saw: attempts, the gap between them,
disconnects.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.procs import ROOT, Proc, SimClient, metric, start, start_gateway

GW_KEY = "sk-race"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def rsim() -> Iterator[SimClient]:
    proc = start(
        [
            "simulate",
            "--port",
            "0",
            "--profile",
            os.path.join(ROOT, "tests/server/race_profile.toml"),
        ]
    )
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


@pytest.fixture(scope="module")
def gw(rsim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(
        rsim.url,
        os.path.join(ROOT, "tests/server/race_policy.toml"),
        {
            "EDGE_KEYS": GW_KEY,
            "EDGE_HEDGE_BUDGET_MIN": "1000",
            "EDGE_BREAKER_FAILURES": "3",
            "EDGE_BREAKER_COOLDOWN_S": "2",
            "EDGE_BREAKER_COOLDOWN_MAX_S": "4",
        },
    )
    yield proc
    proc.stop()


@pytest.fixture
def oa(gw: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=GW_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def an(gw: Proc) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=GW_KEY, max_retries=0) as client:
        yield client


def chat(gw: Proc, model: str, stream: bool = False, **extra: Any) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": model, "messages": HELLO, "stream": stream, **extra},
        headers={"authorization": f"Bearer {GW_KEY}"},
        timeout=20,
    )


def seen(sim: SimClient, since: int) -> list[tuple[str, str, bool, float]]:
    """(model, outcome, disconnected, arrival) of every attempt since ``since``."""
    return [
        (a["model"], a["outcome"], a["disconnected"], a["at"]) for a in sim.attempts(since=since)
    ]


# -- failover before the first byte


def test_429_with_retry_after_fails_over_and_avoids_the_model(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    t0 = time.monotonic()
    raw = oa.chat.completions.with_raw_response.create(model="r429-ra", messages=HELLO)
    took = time.monotonic() - t0
    answer = raw.parse()
    assert raw.headers["x-edge-model"] == "ok-an" and answer.model == "healthy-an"
    assert answer.choices[0].message.content and took < 1.5
    (m1, o1, _, t1), (m2, o2, _, t2) = seen(rsim, since)
    assert (m1, o1, m2, o2) == ("r429-ra", "error", "healthy-an", "ok") and t2 - t1 < 0.25
    # Retry-After: 2 -> the next requests go straight to the fallback
    for _ in range(3):
        oa.chat.completions.create(model="r429-ra", messages=HELLO)
    assert [m for m, *_ in seen(rsim, since)].count("r429-ra") == 1


def test_429_without_retry_after_fails_over_at_once(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    raw = oa.chat.completions.with_raw_response.create(model="r429", messages=HELLO)
    assert raw.headers["x-edge-model"] == "ok-an" and raw.headers["x-edge-attempts"] == "2"
    raw = oa.chat.completions.with_raw_response.create(model="r429", messages=HELLO)
    # no Retry-After: tried again on the next request
    assert [m for m, *_ in seen(rsim, since)].count("r429") == 2


def test_a_500_once_is_served_by_the_fallback_then_the_primary_is_back(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    tokens_before = metric(gw, "edge_tokens_total", model="ok-an", direction="output")
    first = oa.chat.completions.with_raw_response.create(model="e500-once", messages=HELLO)
    second = oa.chat.completions.with_raw_response.create(model="e500-once", messages=HELLO)
    # the failover's accounting is the fallback's: its model, its usage (9 tokens, not 12)
    assert (
        first.headers["x-edge-model"] == "ok-an" and first.headers["x-edge-provider"] == "anthropic"
    )
    served = first.parse()
    assert served.model == "healthy-an" and served.usage and served.usage.completion_tokens == 9
    assert metric(gw, "edge_tokens_total", model="ok-an", direction="output") == tokens_before + 9
    assert metric(gw, "edge_tokens_total", model="e500-once", direction="output") == 12
    assert second.headers["x-edge-model"] == "e500-once" and second.parse().model == "e500-once"
    assert [(m, o) for m, o, *_ in seen(rsim, since)] == [
        ("e500-once", "error"),
        ("healthy-an", "ok"),
        ("e500-once", "ok"),
    ]


def test_a_persistent_503_opens_the_breaker_and_the_primary_is_left_alone(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    for _ in range(8):
        raw = oa.chat.completions.with_raw_response.create(model="e503", messages=HELLO)
        assert raw.headers["x-edge-model"] == "ok-an"
    tried = [m for m, *_ in seen(rsim, since)].count("e503")
    assert 3 <= tried <= 4  # three trip it; at most one probe after its 2 s cool-down
    assert metric(gw, "edge_breaker_transitions_total", model="e503", to_state="open") >= 1
    assert metric(gw, "edge_attempts_total", model="e503", outcome="error") == tried


def test_a_reset_before_headers_fails_over(
    gw: Proc, rsim: SimClient, an: anthropic.Anthropic
) -> None:
    since = rsim.seq()
    msg = an.messages.create(model="reset", max_tokens=50, messages=HELLO)
    assert msg.model == "healthy-an" and msg.content[0].type == "text"
    got = [(m, o) for m, o, *_ in seen(rsim, since)]
    # a reset of a reused keep-alive connection before any byte is sent once more on a new
    # connection (the provider may have timed it out as we wrote): at most one such retry
    assert got[-1] == ("healthy-an", "ok") and got[:-1] in (
        [("reset", "reset")],
        [("reset", "reset")] * 2,
    )


def test_a_silent_provider_is_hedged_and_disconnected(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    t0 = time.monotonic()
    raw = oa.chat.completions.with_raw_response.create(model="hang", messages=HELLO)
    took = time.monotonic() - t0
    assert raw.headers["x-edge-model"] == "ok-an" and raw.headers["x-edge-hedged"] == "true"
    assert 0.3 <= took < 1.5  # the soft timeout, then the fallback's answer
    (m1, o1, _gone1, t1), (m2, o2, gone2, t2) = seen(rsim, since)
    assert (m1, o1, m2, o2) == ("hang", "hang", "healthy-an", "ok")
    assert t2 - t1 >= 0.29 and not gone2
    deadline = time.monotonic() + 5
    while not seen(rsim, since)[0][2] and time.monotonic() < deadline:
        time.sleep(0.02)  # the disconnect reaches the simulator's loop asynchronously
    assert seen(rsim, since)[0][2], "the losing attempt's connection was not closed"


def test_a_slow_first_token_loses_to_the_hedge_across_providers(
    gw: Proc, rsim: SimClient, an: anthropic.Anthropic
) -> None:
    since = rsim.seq()
    before = metric(gw, "edge_hedges_total", outcome="won")
    t0 = time.monotonic()
    with an.messages.stream(model="slow-ft", max_tokens=50, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    took = time.monotonic() - t0
    assert text and final.model == "healthy-oa" and final.stop_reason == "end_turn"
    assert took < 2.0  # not the 5 s stall
    attempts = seen(rsim, since)
    assert [(m, o) for m, o, *_ in attempts] == [
        ("slow-ft", "slow_first_token"),
        ("healthy-oa", "ok"),
    ]
    assert attempts[1][3] - attempts[0][3] >= 0.29
    assert metric(gw, "edge_hedges_total", outcome="won") == before + 1


# -- broken streams


def test_a_stream_cut_after_bytes_reached_the_client_ends_with_an_error_event(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    got = []
    with pytest.raises(openai.APIError) as err:
        for chunk in oa.chat.completions.create(model="cut", messages=HELLO, stream=True):
            got += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(got) == 3 and "before the response was complete" in err.value.message


def test_a_cut_stream_of_a_non_streaming_request_is_retried_elsewhere(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    raw = oa.chat.completions.with_raw_response.create(model="cut", messages=HELLO)
    answer = raw.parse()
    assert raw.headers["x-edge-model"] == "ok-an" and answer.model == "healthy-an"
    assert answer.choices[0].finish_reason == "stop"
    assert [(m, o) for m, o, *_ in seen(rsim, since)] == [("cut", "cut"), ("healthy-an", "ok")]


def test_a_stalled_stream_hits_the_idle_deadline(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    # streaming: three tokens, then an error event after the 0.8 s idle deadline (not the 5 s stall)
    t0 = time.monotonic()
    got = []
    with pytest.raises(openai.APIError) as err:
        for chunk in oa.chat.completions.create(model="stall", messages=HELLO, stream=True):
            got += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(got) == 3 and "nothing for 0.8 s" in err.value.message
    assert 0.8 <= time.monotonic() - t0 < 3.0
    # not streaming: nothing was sent yet, so it is raced again on the fallback
    since = rsim.seq()
    t0 = time.monotonic()
    answer = oa.chat.completions.create(model="stall", messages=HELLO)
    assert answer.model == "healthy-an" and 0.8 <= time.monotonic() - t0 < 3.0
    attempts = seen(rsim, since)
    assert [(m, o) for m, o, *_ in attempts] == [("stall", "stall"), ("healthy-an", "ok")]


def test_a_malformed_chunk_never_reaches_the_client(
    gw: Proc, rsim: SimClient, an: anthropic.Anthropic
) -> None:
    events: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err:
        for event in an.messages.create(
            model="malformed", max_tokens=50, messages=HELLO, stream=True
        ):
            events.append(event.type)
    assert events.count("content_block_delta") == 3 and "message_stop" not in events
    assert "malformed" in str(err.value.body)
    msg = an.messages.create(model="malformed", max_tokens=50, messages=HELLO)
    assert msg.model == "healthy-oa" and msg.stop_reason == "end_turn"


def test_a_stream_without_its_terminator_is_finalised_with_its_usage(
    gw: Proc, oa: openai.OpenAI, an: anthropic.Anthropic
) -> None:
    chunks = list(
        oa.chat.completions.create(
            model="nodone",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert chunks[-2].choices[0].finish_reason == "stop"
    events = list(an.messages.create(model="nodone-an", max_tokens=50, messages=HELLO, stream=True))
    assert events[-1].type == "message_stop"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.output_tokens == 12


# -- 4xx: not retried on the same model


def test_context_length_goes_to_a_larger_window(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    long = [{"role": "user", "content": "tell me about llamas " * 40}]
    answer = oa.chat.completions.create(model="small-ctx", messages=long)
    assert answer.model == "healthy-an"
    # the estimate says the prompt cannot fit small-ctx's (or small-ctx-2's) 40-token window:
    # neither is tried, the wider fallback serves at once (a provider's own context-length
    # answer moving the race to a wider model: tests/routing/test_race.py)
    assert [(m, o) for m, o, *_ in seen(rsim, since)] == [("healthy-an", "ok")]
    # past every candidate's window: the provider's 400, before any call
    since = rsim.seq()
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(
            model="small-ctx", messages=[{"role": "user", "content": "llamas " * 300_000}]
        )
    assert err.value.code == "context_length_exceeded" and seen(rsim, since) == []


def test_a_content_filter_rejection_is_returned_with_the_providers_reason(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model="filtered", messages=HELLO)
    assert "safety system" in err.value.message
    assert err.value.code == "content_policy_violation"
    assert [m for m, *_ in seen(rsim, since)] == ["filtered"]


# -- a primary down for a while


def test_a_primary_down_for_a_while_is_served_by_the_fallback_then_comes_back(
    gw: Proc, rsim: SimClient, oa: openai.OpenAI
) -> None:
    since = rsim.seq()
    rsim.outage("flap", 1.5)
    start = time.monotonic()
    served: list[tuple[float, str]] = []
    while time.monotonic() - start < 10:
        raw = oa.chat.completions.with_raw_response.create(model="flap", messages=HELLO)
        served.append((time.monotonic() - start, raw.headers["x-edge-model"]))
        if raw.headers["x-edge-model"] == "flap" and served[-1][0] > 1.5:
            break
        time.sleep(0.05)
    during = [m for t, m in served if t < 1.5]
    assert during and set(during) == {"ok-an"}  # every request answered, by the fallback
    back = [t for t, m in served if m == "flap"]
    assert back and back[0] < 1.5 + 4.5  # cool-down (2 s + jitter) and a probe after recovery
    flap = [(o, t) for m, o, _, t in seen(rsim, since) if m == "flap"]
    failed = [t for o, t in flap if o == "outage"]
    # three trip it; then only bounded probes, not one attempt per request
    assert 3 <= len(failed) <= 5 and len(failed) < len(during)


def test_hedge_and_attempt_metrics_are_exported(gw: Proc) -> None:
    text = httpx.get(gw.url + "/metrics").text
    for name in (
        "edge_hedges_total",
        "edge_attempts_total",
        "edge_breaker_state",
        "edge_breaker_transitions_total",
        "edge_hedge_waste_tokens_total",
    ):
        assert re.search(rf"^{name}\{{", text, re.M), name
    assert metric(gw, "edge_breaker_state", model="ok-an") == 0
    # a silent provider never took the request (no answer head): nothing billed, no waste;
    # a slow one did (its head came at once) and lost its race: its prompt is waste
    assert metric(gw, "edge_hedge_waste_tokens_total", model="hang", direction="input") == 0
    assert metric(gw, "edge_hedge_waste_tokens_total", model="slow-ft", direction="input") > 0
