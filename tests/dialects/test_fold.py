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

from edge.dialects.anthropic import AnthropicStream
from edge.dialects.common import StreamBroken
from edge.dialects.openai import OpenAIStream
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
    state = OpenAIStream(stream=False, include_usage=False)
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
    state = AnthropicStream(stream=False)
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
    plain = OpenAIStream(stream=True, include_usage=False)
    out = b"".join(plain.feed(n, d) for n, d in events(raw, 1000)) + plain.close()
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    asked = OpenAIStream(stream=True, include_usage=True)
    out = b"".join(asked.feed(n, d) for n, d in events(raw, 1000))
    assert out == raw  # passed through byte for byte
    assert asked.usage is not None and asked.usage["completion_tokens"] == 3


def test_missing_terminator_is_finalised_and_a_cut_is_an_error() -> None:
    ask = read_openai(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    parts = openai_wire.stream(answer(ask, 3), ask, "m", "c", 1)
    s = OpenAIStream(stream=True, include_usage=False)
    for n, d in events(parts.preamble + b"".join(parts.tokens) + parts.end, 50):
        s.feed(n, d)
    assert s.close() == b"data: [DONE]\n\n"
    cut = OpenAIStream(stream=True, include_usage=False)
    for n, d in events(b"".join(parts.tokens[:2]), 50):
        cut.feed(n, d)
    with pytest.raises(StreamBroken):
        cut.close()
    an = AnthropicStream(stream=True)
    with pytest.raises(StreamBroken):
        an.feed(
            b"error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        )
    with pytest.raises(StreamBroken):
        OpenAIStream(stream=True, include_usage=False).feed(b"", b"{not json")
