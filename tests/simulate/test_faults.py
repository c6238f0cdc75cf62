"""Every latency and fault knob, observed from a client and from /sim/stats."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.procs import SimClient

OA_HEADERS = {"authorization": "Bearer sk-test"}
AN_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
HELLO = [{"role": "user", "content": "Hello there"}]


def knobs(**values: Any) -> dict[str, str]:
    return {"x-sim": ",".join(f"{k}={v}" for k, v in values.items())}


def oa_body(stream: bool = False, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": HELLO, "stream": stream}


def an_body(stream: bool = False, model: str = "claude-haiku-4-5") -> dict[str, Any]:
    return {"model": model, "messages": HELLO, "max_tokens": 100, "stream": stream}


def timed_events(resp: httpx.Response, t0: float) -> Iterator[tuple[float, str, str]]:
    """(seconds since t0, event name, data) for each SSE event of a streamed response."""
    name, data = "", list[str]()
    for line in resp.iter_lines():
        if line == "":
            if data:
                yield time.monotonic() - t0, name, "\n".join(data)
            name, data = "", []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()


# uvloop's timers tick in milliseconds and count from the loop iteration's start, so a
# gap between two writes may come out a hair shorter than asked: gaps get this slack
TIMER_SLACK_S = 0.005


def content_times(events: list[tuple[float, str, str]]) -> list[float]:
    """Arrival times of events that carry answer content, in either dialect."""
    out = []
    for t, _name, data in events:
        if data == "[DONE]":
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if obj.get("type") == "content_block_delta" or (
            obj.get("choices") and obj["choices"][0]["delta"].get("content")
        ):
            out.append(t)
    return out


def wait_for(pred: Any, timeout: float = 5.0) -> Any:
    """Poll until ``pred()`` returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "oa_error", "an_error", "an_type"),
    [
        (500, openai.InternalServerError, anthropic.InternalServerError, "api_error"),
        (503, openai.InternalServerError, anthropic.InternalServerError, "api_error"),
        (529, openai.InternalServerError, anthropic.OverloadedError, "overloaded_error"),
        (429, openai.RateLimitError, anthropic.RateLimitError, "rate_limit_error"),
    ],
)
def test_error_status_in_each_dialect(
    fresh_sim: SimClient,
    status: int,
    oa_error: type[openai.APIStatusError],
    an_error: type[anthropic.APIStatusError],
    an_type: str,
) -> None:
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
    with pytest.raises(oa_error) as oe:
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers=knobs(error_status=status)
        )
    assert oe.value.status_code == status
    assert isinstance(oe.value.body, dict) and {"message", "type", "param", "code"} <= set(
        oe.value.body
    )
    assert oe.value.request_id and oe.value.request_id.startswith("req_")
    an = anthropic.Anthropic(base_url=fresh_sim.url, api_key="k", max_retries=0)
    with pytest.raises(an_error) as ae:
        an.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=HELLO,
            extra_headers=knobs(error_status=status),
        )
    assert ae.value.status_code == status
    assert ae.value.body["type"] == "error" and ae.value.body["error"]["type"] == an_type
    seen = fresh_sim.attempts()
    assert [(a["dialect"], a["outcome"], a["status"]) for a in seen] == [
        ("openai", "error", status),
        ("anthropic", "error", status),
    ]


def test_retry_after_is_sent_only_when_asked(fresh_sim: SimClient) -> None:
    with_ra = fresh_sim.http.post(
        "/v1/chat/completions",
        headers={**OA_HEADERS, **knobs(error_status=429, retry_after_s=2)},
        json=oa_body(),
    )
    assert with_ra.status_code == 429 and with_ra.headers["retry-after"] == "2"
    without = fresh_sim.http.post(
        "/v1/messages", headers={**AN_HEADERS, **knobs(error_status=429)}, json=an_body()
    )
    assert without.status_code == 429 and "retry-after" not in without.headers
    assert without.json()["error"]["type"] == "rate_limit_error"


def test_fault_chosen_by_model_name(fresh_sim: SimClient) -> None:
    r = fresh_sim.http.post(
        "/v1/chat/completions", headers=OA_HEADERS, json=oa_body(model="flaky-503")
    )
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "server_error"
    ok = fresh_sim.http.post("/v1/chat/completions", headers=OA_HEADERS, json=oa_body())
    assert ok.status_code == 200


def test_error_rate_is_a_fraction_of_attempts(fresh_sim: SimClient) -> None:
    statuses = [
        fresh_sim.http.post(
            "/v1/chat/completions",
            headers={**OA_HEADERS, **knobs(error_status=500, error_rate=0.3)},
            json=oa_body(),
        ).status_code
        for _ in range(300)
    ]
    failed = statuses.count(500)
    assert statuses.count(200) + failed == 300
    assert 50 <= failed <= 130  # 90 expected; bounds are > 4 sigma wide


def test_error_count_fails_first_attempts_and_sdk_retry_gap_is_visible(
    fresh_sim: SimClient,
) -> None:
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=2)
    r = oa.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers=knobs(error_status=500, error_count=1)
    )
    assert r.choices[0].message.content
    first, second = fresh_sim.attempts()
    assert (first["outcome"], first["status"], first["retry_count"]) == ("error", 500, "0")
    assert (second["outcome"], second["status"], second["retry_count"]) == ("ok", 200, "1")
    assert second["at"] - first["at"] >= 0.3  # the SDK's own backoff (0.375-0.5 s)


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_context_length_and_content_policy_400s(fresh_sim: SimClient, dialect: str) -> None:
    if dialect == "openai":
        oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError) as e1:
            oa.chat.completions.create(
                model="gpt-4o-mini",
                messages=HELLO,
                extra_headers=knobs(error_status=400, error_code="context_length_exceeded"),
            )
        assert e1.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as e2:
            oa.chat.completions.create(
                model="gpt-4o-mini",
                messages=HELLO,
                extra_headers=knobs(error_status=400, error_code="content_policy"),
            )
        assert e2.value.code == "content_policy_violation"
    else:
        an = anthropic.Anthropic(base_url=fresh_sim.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as e3:
            an.messages.create(
                model="claude-haiku-4-5",
                max_tokens=5,
                messages=HELLO,
                extra_headers=knobs(error_status=400, error_code="context_length_exceeded"),
            )
        assert "prompt is too long" in e3.value.message
        with pytest.raises(anthropic.BadRequestError) as e4:
            an.messages.create(
                model="claude-haiku-4-5",
                max_tokens=5,
                messages=HELLO,
                extra_headers=knobs(error_status=400, error_code="content_policy"),
            )
        assert "content filtering" in e4.value.message


def test_prompt_larger_than_context_window_is_rejected(fresh_sim: SimClient) -> None:
    r = fresh_sim.http.post(
        "/v1/chat/completions", headers={**OA_HEADERS, **knobs(context_window=5)}, json=oa_body()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


# ----------------------------------------------------------- connection faults


def _raw_request(port: int, body: dict[str, Any], headers: dict[str, str]) -> socket.socket:
    payload = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + head.encode()
        + b"content-length: %d\r\n\r\n" % len(payload)
        + payload
    )
    return sock


def test_reset_before_headers_is_a_tcp_reset(fresh_sim: SimClient) -> None:
    sock = _raw_request(fresh_sim.proc.port, oa_body(), {**OA_HEADERS, **knobs(fault="reset")})
    with sock, pytest.raises(ConnectionResetError):
        sock.recv(1024)
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers=knobs(fault="reset")
        )
    assert [a["outcome"] for a in fresh_sim.attempts()] == ["reset", "reset"]
    assert all(a["bytes_sent"] == 0 for a in fresh_sim.attempts())


def test_hang_sends_nothing_and_records_the_disconnect(fresh_sim: SimClient) -> None:
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            fresh_sim.url + "/v1/chat/completions",
            headers={**OA_HEADERS, **knobs(fault="hang")},
            json=oa_body(),
            timeout=httpx.Timeout(5, read=0.3),
        )
    assert time.monotonic() - t0 >= 0.3
    rec = wait_for(lambda: [a for a in fresh_sim.attempts() if a["disconnected"]])
    assert (
        rec
        and rec[0]["outcome"] == "hang"
        and rec[0]["bytes_sent"] == 0
        and not rec[0]["completed"]
    )


def test_outage_then_healthy(fresh_sim: SimClient) -> None:
    statuses: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = fresh_sim.http.post(
            "/v1/chat/completions", headers={**OA_HEADERS, **knobs(outage_s=0.4)}, json=oa_body()
        )
        statuses.append(r.status_code)
        if r.status_code == 200:
            break
        time.sleep(0.05)  # pacing of the poll, not a synchronisation
    assert statuses[-1] == 200 and set(statuses[:-1]) == {503}
    attempts = fresh_sim.attempts()
    assert attempts[-1]["at"] >= 0.4
    assert all(a["at"] < 0.4 and a["outcome"] == "outage" for a in attempts[:-1])


def test_outage_with_status_zero_resets_connections(fresh_sim: SimClient) -> None:
    sock = _raw_request(
        fresh_sim.proc.port, oa_body(), {**OA_HEADERS, **knobs(outage_s=30, outage_status=0)}
    )
    with sock, pytest.raises(ConnectionResetError):
        sock.recv(1024)


# ---------------------------------------------------------------- latency


def test_ttft_gap_and_length_knobs(fresh_sim: SimClient) -> None:
    t0 = time.monotonic()
    with fresh_sim.http.stream(
        "POST",
        "/v1/chat/completions",
        headers={**OA_HEADERS, **knobs(ttft_ms=250, gap_ms=40, output_tokens=5)},
        json=oa_body(stream=True),
    ) as resp:
        headers_at = time.monotonic() - t0
        times = content_times(list(timed_events(resp, t0)))
    assert headers_at < times[0] - 0.2  # headers come at once; the first token waits
    assert len(times) == 5
    assert times[0] >= 0.25
    assert times[-1] - times[0] >= 4 * 0.04 - TIMER_SLACK_S
    t0 = time.monotonic()
    r = fresh_sim.http.post(
        "/v1/chat/completions",
        headers={**OA_HEADERS, **knobs(ttft_ms=200, gap_ms=10, output_tokens=6)},
        json=oa_body(),
    )
    assert time.monotonic() - t0 >= 0.2 + 5 * 0.01
    assert r.json()["usage"]["completion_tokens"] == 6


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_slow_first_token(fresh_sim: SimClient, dialect: str) -> None:
    path, headers, body = (
        ("/v1/chat/completions", OA_HEADERS, oa_body(True))
        if dialect == "openai"
        else ("/v1/messages", AN_HEADERS, an_body(True))
    )
    t0 = time.monotonic()
    with fresh_sim.http.stream(
        "POST", path, headers={**headers, **knobs(fault="slow_first_token", stall_s=0.8)}, json=body
    ) as resp:
        assert resp.status_code == 200
        events = list(timed_events(resp, t0))
    times = content_times(events)
    assert times[0] >= 0.8
    assert times[-1] - times[0] < 0.5
    if dialect == "anthropic":  # message_start is not held back
        assert events[0][1] == "message_start" and events[0][0] < 0.5


def test_stall_mid_stream(fresh_sim: SimClient) -> None:
    t0 = time.monotonic()
    with fresh_sim.http.stream(
        "POST",
        "/v1/messages",
        headers={**AN_HEADERS, **knobs(fault="stall", fault_after_tokens=2, stall_s=0.8)},
        json=an_body(True),
    ) as resp:
        events = list(timed_events(resp, t0))
    times = content_times(events)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[1] >= 0.8 - TIMER_SLACK_S  # between token 2 and 3
    assert max(gaps[:1] + gaps[2:]) < 0.4
    assert events[-1][1] == "message_stop"
    assert fresh_sim.attempts()[0]["outcome"] == "stall" and fresh_sim.attempts()[0]["completed"]


def test_cut_stream_by_model_name(fresh_sim: SimClient) -> None:
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
    got: list[str] = []
    stream = oa.chat.completions.create(model="cut-after-2", messages=HELLO, stream=True)
    with pytest.raises(openai.APIConnectionError) as err:
        for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert (
        "incomplete" in repr(err.value.__cause__).lower()
        or "peer closed" in repr(err.value.__cause__).lower()
    )
    assert len([g for g in got if g]) == 2
    rec = fresh_sim.attempts()[0]
    assert (rec["outcome"], rec["tokens_sent"], rec["completed"]) == ("cut", 2, False)


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_one_malformed_chunk(fresh_sim: SimClient, dialect: str) -> None:
    path, headers, body = (
        ("/v1/chat/completions", OA_HEADERS, oa_body(True))
        if dialect == "openai"
        else ("/v1/messages", AN_HEADERS, an_body(True))
    )
    with fresh_sim.http.stream(
        "POST",
        path,
        headers={**headers, **knobs(fault="malformed", fault_after_tokens=3)},
        json=body,
    ) as resp:
        events = list(timed_events(resp, time.monotonic()))
    bad = []
    for i, (_t, _n, data) in enumerate(events):
        if data == "[DONE]":
            continue
        try:
            json.loads(data)
        except ValueError:
            bad.append(i)
    assert len(bad) == 1
    assert len(content_times(events[: bad[0]])) == 3
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
    if dialect == "openai":
        with pytest.raises(json.JSONDecodeError):
            list(
                oa.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=HELLO,
                    stream=True,
                    extra_headers=knobs(fault="malformed"),
                )
            )


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_stream_without_terminator(fresh_sim: SimClient, dialect: str) -> None:
    path, headers, body = (
        ("/v1/chat/completions", OA_HEADERS, oa_body(True))
        if dialect == "openai"
        else ("/v1/messages", AN_HEADERS, an_body(True))
    )
    with fresh_sim.http.stream(
        "POST", path, headers={**headers, **knobs(fault="no_done")}, json=body
    ) as resp:
        events = list(timed_events(resp, time.monotonic()))
    datas = [d for _t, _n, d in events]
    if dialect == "openai":
        assert "[DONE]" not in datas
        assert json.loads(datas[-1])["choices"][0]["finish_reason"] == "stop"
    else:
        assert "message_stop" not in [n for _t, n, _d in events]
        assert events[-1][1] == "message_delta"
    assert fresh_sim.attempts()[0]["completed"]


def test_client_disconnect_mid_stream_is_recorded(fresh_sim: SimClient) -> None:
    with fresh_sim.http.stream(
        "POST",
        "/v1/messages",
        headers={**AN_HEADERS, **knobs(gap_ms=50, output_tokens=40)},
        json=an_body(True),
    ) as resp:
        for line in resp.iter_lines():
            if "content_block_delta" in line:
                break
    rec = wait_for(lambda: [a for a in fresh_sim.attempts() if a["disconnected"]])
    assert rec, fresh_sim.attempts()
    a = rec[0]
    assert not a["completed"] and a["bytes_sent"] > 0 and 1 <= a["tokens_sent"] < 40


def test_invalid_override_is_a_400(fresh_sim: SimClient) -> None:
    r = fresh_sim.http.post(
        "/v1/chat/completions", headers={**OA_HEADERS, **knobs(fault="explode")}, json=oa_body()
    )
    assert r.status_code == 400 and "fault" in r.json()["error"]["message"]
    r = fresh_sim.http.post(
        "/v1/chat/completions", headers={**OA_HEADERS, "x-sim": "nonsense=1"}, json=oa_body()
    )
    assert r.status_code == 400 and "nonsense" in r.json()["error"]["message"]
