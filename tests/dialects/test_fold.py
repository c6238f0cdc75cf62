"""Folding a provider's stream gives the body the provider would have returned.

The simulated providers render one ``Answer`` both ways (a body and a stream);
the gateway's fold of the stream must equal the body, for text, tool calls,
JSON output, stop sequences and length cuts, in both dialects.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.dialects.anthropic import DIALECT as ANTHROPIC
from edge.dialects.common import ChatInfo, StreamBroken
from edge.dialects.core import stream_for
from edge.dialects.openai import DIALECT as OPENAI
from edge.simulate import anthropic_wire, openai_wire
from edge.simulate.generate import answer, read_anthropic, read_openai
from edge.simulate.script import StreamParts
from hotpath.sse import SSEScanner

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]


def events(raw: bytes, chunk: int) -> list[tuple[bytes, bytes]]:
    scanner = SSEScanner()
    out = []
    for i in range(0, len(raw), chunk):
        out += scanner.feed(raw[i : i + chunk])
    return out


def sse_of(parts: StreamParts) -> bytes:
    return parts.preamble + b"".join(parts.tokens) + parts.end + parts.terminator


prompts = st.sampled_from(
    [
        "hello",
        "please lookup x",
        "call weather and lookup",
        "Repeat after me: a b STOP c d",
        "tell me more",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    prompt=prompts,
    tools=st.booleans(),
    json_mode=st.booleans(),
    stop=st.booleans(),
    max_tokens=st.sampled_from([None, 2, 50]),
    chunk=st.integers(1, 64),
    parallel=st.booleans(),
)
def test_openai_fold_equals_body(
    prompt: str,
    tools: bool,
    json_mode: bool,
    stop: bool,
    max_tokens: int | None,
    chunk: int,
    parallel: bool,
) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": prompt}],
        "parallel_tool_calls": parallel,
    }
    if tools:
        body["tools"] = TOOLS
    if json_mode:
        body["response_format"] = {"type": "json_object"}
    if stop:
        body["stop"] = ["STOP"]
    if max_tokens:
        body["max_tokens"] = max_tokens
    ask = read_openai({**body, "stream": True, "stream_options": {"include_usage": True}})
    ans = answer(ask, 8)
    expected = orjson.loads(openai_wire.completion(ans, "m", "chatcmpl-1", 7))
    state = stream_for(OPENAI, OPENAI, ChatInfo("m", False, False))
    for name, data in events(sse_of(openai_wire.stream(ans, ask, "m", "chatcmpl-1", 7)), chunk):
        assert state.feed(name, data) == b""
    assert state.close() == b""
    assert orjson.loads(state.final_body()) == expected


@settings(max_examples=60, deadline=None)
@given(
    prompt=prompts,
    tools=st.booleans(),
    stop=st.booleans(),
    max_tokens=st.sampled_from([2, 50]),
    chunk=st.integers(1, 64),
)
def test_anthropic_fold_equals_body(
    prompt: str, tools: bool, stop: bool, max_tokens: int, chunk: int
) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if tools:
        body["tools"] = [
            {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
            for t in TOOLS
        ]
    if stop:
        body["stop_sequences"] = ["STOP"]
    ask = read_anthropic(body)
    ans = answer(ask, 8)
    expected = orjson.loads(anthropic_wire.completion(ans, "m", "msg_1", 7))
    state = stream_for(ANTHROPIC, ANTHROPIC, ChatInfo("m", False))
    for name, data in events(sse_of(anthropic_wire.stream(ans, ask, "m", "msg_1", 7)), chunk):
        assert state.feed(name, data) == b""
    assert state.close() == b""
    assert orjson.loads(state.final_body()) == expected


def test_openai_relay_strips_usage_unless_asked() -> None:
    ask = read_openai(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    raw = sse_of(openai_wire.stream(answer(ask, 3), ask, "m", "c", 1))
    plain = stream_for(OPENAI, OPENAI, ChatInfo("m", True, False))
    out = b"".join(plain.feed(n, d) for n, d in events(raw, 1000)) + plain.close()
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    asked = stream_for(OPENAI, OPENAI, ChatInfo("m", True, True))
    out = b"".join(asked.feed(n, d) for n, d in events(raw, 1000))
    assert out == raw  # passed through byte for byte
    assert asked.usage is not None and asked.usage["completion_tokens"] == 3


def test_missing_terminator_is_finalised_and_a_cut_is_an_error() -> None:
    ask = read_openai(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    parts = openai_wire.stream(answer(ask, 3), ask, "m", "c", 1)
    s = stream_for(OPENAI, OPENAI, ChatInfo("m", True, False))
    for n, d in events(parts.preamble + b"".join(parts.tokens) + parts.end, 50):
        s.feed(n, d)
    assert s.close() == b"data: [DONE]\n\n"
    cut = stream_for(OPENAI, OPENAI, ChatInfo("m", True, False))
    for n, d in events(b"".join(parts.tokens[:2]), 50):
        cut.feed(n, d)
    with pytest.raises(StreamBroken):
        cut.close()
    an = stream_for(ANTHROPIC, ANTHROPIC, ChatInfo("m", True))
    with pytest.raises(StreamBroken):
        an.feed(
            b"error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        )
    with pytest.raises(StreamBroken):
        stream_for(OPENAI, OPENAI, ChatInfo("m", True, False)).feed(b"", b"{not json")


def _fold(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    state = stream_for(OPENAI, OPENAI, ChatInfo("m", False, False))
    for chunk in chunks:
        state.feed(b"", orjson.dumps(chunk))
    state.feed(b"", b"[DONE]")
    body: dict[str, Any] = orjson.loads(state.final_body())
    return body


def _chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": None, **extra}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }


def test_openai_fold_keeps_every_chunks_logprobs_audio_and_annotations() -> None:
    lp = lambda t: {"content": [{"token": t, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}  # noqa: E731
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hel"}, logprobs=lp("Hel")),
        _chunk({"content": "lo"}, logprobs=lp("lo")),
        _chunk({"annotations": [{"type": "url_citation", "url_citation": {"url": "u"}}]}),
        _chunk({"audio": {"id": "a1", "transcript": "Hel", "data": "AAA"}}),
        _chunk({"audio": {"transcript": "lo", "data": "BBB", "expires_at": 9}}),
        {**_chunk({}), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    choice = _fold(chunks)["choices"][0]
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["Hel", "lo"]
    message = choice["message"]
    assert message["content"] == "Hello"
    assert message["annotations"] == [{"type": "url_citation", "url_citation": {"url": "u"}}]
    assert message["audio"] == {
        "id": "a1",
        "data": "AAABBB",
        "transcript": "Hello",
        "expires_at": 9,
    }


def test_openai_fold_keeps_a_legacy_function_call_and_it_is_a_first_token() -> None:
    state = stream_for(OPENAI, OPENAI, ChatInfo("m", False, False))
    seen = []
    for delta in ({"role": "assistant", "content": None}, {"function_call": {"name": "lookup"}}):
        state.feed(b"", orjson.dumps(_chunk(delta)))
        seen.append(state.first_token)
    assert seen == [False, True]  # the call's first delta is the first token
    for piece in ('{"q":', '"x"}'):
        state.feed(b"", orjson.dumps(_chunk({"function_call": {"arguments": piece}})))
    end = {**_chunk({}), "choices": [{"index": 0, "delta": {}, "finish_reason": "function_call"}]}
    state.feed(b"", orjson.dumps(end))
    state.feed(b"", b"[DONE]")
    choice = orjson.loads(state.final_body())["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "lookup", "arguments": '{"q":"x"}'}
    assert choice["message"]["content"] is None
