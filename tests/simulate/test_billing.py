"""What the simulator bills per attempt, for every way an attempt can end (real sockets)."""

from __future__ import annotations

import json
import socket
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from edge.simulate.generate import input_tokens, read_anthropic, read_openai
from tests.procs import SimClient
from tests.simulate.test_faults import AN_HEADERS, HELLO, OA_HEADERS, knobs, wait_for

BILLED = ("billed_input", "billed_cache_read", "billed_cache_write", "billed_output")
NOTHING = dict.fromkeys(BILLED, 0)
ANSWER = 12  # output_tokens in tests/simulate/profile.toml
# the piece of each streamed event that carries one output token
TOKEN_MARK = {"openai": b'"delta":{"content":', "anthropic": b'"type":"content_block_delta"'}


def body(dialect: str, stream: bool = False, **extra: Any) -> dict[str, Any]:
    if dialect == "openai":
        return {"model": "gpt-4o-mini", "messages": HELLO, "stream": stream, **extra}
    return {
        "model": "claude-haiku-4-5",
        "messages": HELLO,
        "max_tokens": 100,
        "stream": stream,
        **extra,
    }


def route(dialect: str) -> tuple[str, dict[str, str]]:
    if dialect == "openai":
        return "/v1/chat/completions", OA_HEADERS
    return "/v1/messages", AN_HEADERS


def prompt_tokens(dialect: str, sent: dict[str, Any]) -> int:
    return input_tokens(read_openai(sent) if dialect == "openai" else read_anthropic(sent))


def final(sim: SimClient, count: int = 1) -> list[dict[str, Any]]:
    """The records once every one is final (the summary's ``open`` is 0)."""
    stats = wait_for(lambda: (s := sim.stats())["open"] == 0 and len(s["attempts"]) >= count and s)
    assert stats, sim.stats()
    attempts: list[dict[str, Any]] = stats["attempts"]
    assert all(a["ended_at"] is not None for a in attempts)
    return attempts


def billed(rec: dict[str, Any]) -> dict[str, int]:
    return {k: rec[k] for k in BILLED}


def raw_stream(
    port: int, path: str, sent: dict[str, Any], headers: dict[str, str]
) -> socket.socket:
    payload = json.dumps(sent).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{head}".encode()
        + b"content-length: %d\r\n\r\n" % len(payload)
        + payload
    )
    return sock


# ------------------------------------------------------------------ answered in full


def test_openai_answers_bill_what_their_usage_says(fresh_sim: SimClient) -> None:
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    chunks: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    plain: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    )
    streamed = chunks[-1].usage
    assert r.usage is not None and streamed is not None
    assert plain[-1].usage is None
    body_rec, stream_rec, plain_rec = final(fresh_sim, 3)
    for rec, usage in ((body_rec, r.usage), (stream_rec, streamed)):
        assert billed(rec) == {
            "billed_input": usage.prompt_tokens,
            "billed_cache_read": 0,
            "billed_cache_write": 0,
            "billed_output": usage.completion_tokens,
        }
        assert usage.completion_tokens == ANSWER
        assert rec["usage_sent"] and rec["input_usage_sent"] and rec["completed"]
    # billed all the same; the client just did not ask to be told
    assert billed(plain_rec) == billed(stream_rec)
    assert not plain_rec["usage_sent"] and not plain_rec["input_usage_sent"]


def test_anthropic_answers_bill_what_their_usage_says(fresh_sim: SimClient) -> None:
    an = anthropic.Anthropic(base_url=fresh_sim.url, api_key="k", max_retries=0)
    r = an.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    with an.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HELLO) as s:
        streamed = s.get_final_message()
    for rec, usage in zip(final(fresh_sim, 2), (r.usage, streamed.usage), strict=True):
        assert billed(rec) == {
            "billed_input": usage.input_tokens,
            "billed_cache_read": 0,
            "billed_cache_write": 0,
            "billed_output": usage.output_tokens,
        }
        assert usage.output_tokens == ANSWER
        assert rec["usage_sent"] and rec["input_usage_sent"] and rec["completed"]


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["malformed", "no_done", "slow_first_token"])
def test_faults_that_finish_bill_the_whole_answer(
    fresh_sim: SimClient, dialect: str, fault: str
) -> None:
    path, headers = route(dialect)
    extra = {"stream_options": {"include_usage": True}} if dialect == "openai" else {}
    sent = body(dialect, stream=True, **extra)
    r = fresh_sim.http.post(
        path, headers={**headers, **knobs(fault=fault, stall_s=0.05)}, json=sent
    )
    assert r.status_code == 200
    (rec,) = final(fresh_sim)
    assert rec["outcome"] == fault
    assert billed(rec) == {
        **NOTHING,
        "billed_input": prompt_tokens(dialect, sent),
        "billed_output": ANSWER,
    }
    assert rec["usage_sent"]


# ------------------------------------------------------------- ended early by the provider


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_cut_bills_the_tokens_before_the_cut(fresh_sim: SimClient, dialect: str) -> None:
    path, headers = route(dialect)
    extra = {"stream_options": {"include_usage": True}} if dialect == "openai" else {}
    sent = body(dialect, stream=True, **extra)
    with pytest.raises(httpx.RemoteProtocolError):
        fresh_sim.http.post(
            path, headers={**headers, **knobs(fault="cut", fault_after_tokens=5)}, json=sent
        )
    (rec,) = final(fresh_sim)
    assert (rec["outcome"], rec["completed"], rec["disconnected"]) == ("cut", False, False)
    assert billed(rec) == {
        **NOTHING,
        "billed_input": prompt_tokens(dialect, sent),
        "billed_output": 5,
    }
    assert not rec["usage_sent"]
    # Anthropic states the input in message_start; OpenAI only in the usage chunk that never came
    assert rec["input_usage_sent"] == (dialect == "anthropic")


def test_cut_non_streamed_answer_was_generated_whole_and_is_billed_whole(
    fresh_sim: SimClient,
) -> None:
    sent = body("openai")
    with pytest.raises(httpx.RemoteProtocolError):
        fresh_sim.http.post(
            "/v1/chat/completions", headers={**OA_HEADERS, **knobs(fault="cut")}, json=sent
        )
    (rec,) = final(fresh_sim)
    assert billed(rec) == {
        **NOTHING,
        "billed_input": prompt_tokens("openai", sent),
        "billed_output": ANSWER,
    }
    assert not rec["usage_sent"] and not rec["input_usage_sent"]


# ---------------------------------------------------------------- ended by the client


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_client_leaving_mid_stream_is_billed_every_token_written(
    fresh_sim: SimClient, dialect: str
) -> None:
    """The client half-closes after 3 tokens and reads what is still in flight: the
    simulator sees the close, stops, and bills exactly the tokens that reached the client."""
    path, headers = route(dialect)
    sent = body(dialect, stream=True)
    sock = raw_stream(
        fresh_sim.proc.port, path, sent, {**headers, **knobs(gap_ms=30, output_tokens=40)}
    )
    with sock:
        got = b""
        while got.count(TOKEN_MARK[dialect]) < 3:
            got += sock.recv(65536)
        sock.shutdown(socket.SHUT_WR)
        while data := sock.recv(65536):
            got += data
    received = got.count(TOKEN_MARK[dialect])
    (rec,) = final(fresh_sim)
    assert rec["disconnected"] and not rec["completed"]
    assert 3 <= received < 40
    assert billed(rec) == {
        **NOTHING,
        "billed_input": prompt_tokens(dialect, sent),
        "billed_output": received,
    }
    assert rec["billed_output"] == rec["tokens_sent"] and rec["bytes_sent"] == len(got)
    assert not rec["usage_sent"]


def test_client_closing_mid_stream_is_billed_at_least_what_it_read(fresh_sim: SimClient) -> None:
    read = 0
    with fresh_sim.http.stream(
        "POST",
        "/v1/chat/completions",
        headers={**OA_HEADERS, **knobs(gap_ms=30, output_tokens=40)},
        json=body("openai", stream=True),
    ) as resp:
        for line in resp.iter_lines():
            read += '"delta":{"content":' in line
            if read == 4:
                break
    (rec,) = final(fresh_sim)
    # tokens still in flight when the client closed were written, so billed: never fewer than read
    assert rec["disconnected"] and 4 <= rec["billed_output"] == rec["tokens_sent"] < 40


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_stall_then_the_client_gives_up(fresh_sim: SimClient, dialect: str) -> None:
    path, headers = route(dialect)
    sent = body(dialect, stream=True)
    read = 0
    with (
        pytest.raises(httpx.ReadTimeout),
        fresh_sim.http.stream(
            "POST",
            path,
            headers={**headers, **knobs(fault="stall", fault_after_tokens=4, stall_s=30)},
            json=sent,
            timeout=httpx.Timeout(5, read=0.5),
        ) as resp,
    ):
        for line in resp.iter_lines():
            read += TOKEN_MARK[dialect].decode() in line
    (rec,) = final(fresh_sim)
    assert read == 4 and rec["outcome"] == "stall" and rec["disconnected"]
    assert billed(rec) == {
        **NOTHING,
        "billed_input": prompt_tokens(dialect, sent),
        "billed_output": 4,
    }
    assert not rec["usage_sent"]
    assert rec["input_usage_sent"] == (dialect == "anthropic")


def test_abandoned_before_the_first_token_bills_the_input(fresh_sim: SimClient) -> None:
    """An Anthropic stream is accepted with message_start, which states the input."""
    sent = body("anthropic", stream=True)
    with fresh_sim.http.stream(
        "POST",
        "/v1/messages",
        headers={**AN_HEADERS, **knobs(fault="slow_first_token", stall_s=30)},
        json=sent,
    ) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:") and "message_start" in line:
                break
    (rec,) = final(fresh_sim)
    assert rec["disconnected"] and rec["input_usage_sent"] and not rec["usage_sent"]
    assert billed(rec) == {**NOTHING, "billed_input": prompt_tokens("anthropic", sent)}


def test_non_streamed_request_abandoned_while_generating_bills_nothing(
    fresh_sim: SimClient,
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        fresh_sim.http.post(
            "/v1/chat/completions",
            headers={**OA_HEADERS, **knobs(ttft_ms=30_000)},
            json=body("openai"),
            timeout=httpx.Timeout(5, read=0.3),
        )
    (rec,) = final(fresh_sim)
    assert rec["disconnected"] and billed(rec) == NOTHING and rec["status"] == 200


# ------------------------------------------------------------ rejected: nothing billed


@pytest.mark.parametrize(
    "override",
    [
        {"error_status": 429, "retry_after_s": 1},
        {"error_status": 500},
        {"error_status": 529},
        {"outage_s": 30},
        {"error_status": 400, "error_code": "context_length_exceeded"},
        {"context_window": 5},
    ],
)
def test_rejected_before_generation_bills_nothing(
    fresh_sim: SimClient, override: dict[str, Any]
) -> None:
    for dialect in ("openai", "anthropic"):
        path, headers = route(dialect)
        r = fresh_sim.http.post(path, headers={**headers, **knobs(**override)}, json=body(dialect))
        assert r.status_code >= 400
    for rec in final(fresh_sim, 2):
        assert billed(rec) == NOTHING and not rec["usage_sent"] and not rec["input_usage_sent"]
        assert rec["completed"] and rec["status"] >= 400


def test_reset_and_hang_bill_nothing(fresh_sim: SimClient) -> None:
    oa = openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers=knobs(fault="reset")
        )
    with pytest.raises(httpx.ReadTimeout):
        fresh_sim.http.post(
            "/v1/messages",
            headers={**AN_HEADERS, **knobs(fault="hang")},
            json=body("anthropic", stream=True),
            timeout=httpx.Timeout(5, read=0.3),
        )
    reset, hang = final(fresh_sim, 2)
    assert (reset["outcome"], hang["outcome"]) == ("reset", "hang")
    assert hang["disconnected"]  # the hang ends when its client gives up
    assert billed(reset) == billed(hang) == NOTHING


# ------------------------------------------------------------------------ the summary


def test_summary_totals_are_the_sums_of_the_records(fresh_sim: SimClient) -> None:
    for dialect in ("openai", "anthropic"):
        path, headers = route(dialect)
        fresh_sim.http.post(path, headers=headers, json=body(dialect))
        fresh_sim.http.post(
            path, headers={**headers, **knobs(error_status=500)}, json=body(dialect)
        )
        with pytest.raises(httpx.RemoteProtocolError):
            fresh_sim.http.post(
                path, headers={**headers, **knobs(fault="cut")}, json=body(dialect, stream=True)
            )
    attempts = final(fresh_sim, 6)
    summary = fresh_sim.stats()["by_model"]
    assert set(summary) == {"gpt-4o-mini", "claude-haiku-4-5"}
    for model, s in summary.items():
        mine = [a for a in attempts if a["model"] == model]
        assert s["open"] == 0 and s["attempts"] == 3
        for name in BILLED:
            assert s[name] == sum(a[name] for a in mine)
        assert s["billed_output"] == ANSWER + 3  # the whole answer, then 3 tokens before the cut


def test_open_counts_attempts_still_running(fresh_sim: SimClient) -> None:
    with fresh_sim.http.stream(
        "POST",
        "/v1/messages",
        headers={**AN_HEADERS, **knobs(fault="stall", fault_after_tokens=1, stall_s=30)},
        json=body("anthropic", stream=True),
    ) as resp:
        assert resp.status_code == 200
        stats = fresh_sim.stats()
        assert stats["open"] == 1 and stats["attempts"][0]["ended_at"] is None
    assert final(fresh_sim)[0]["disconnected"]
