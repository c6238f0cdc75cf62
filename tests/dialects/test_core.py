"""The dialect core: field tables, and one stream state whatever the pair of dialects."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.dialects.anthropic import DIALECT as ANTHROPIC
from edge.dialects.common import ChatInfo
from edge.dialects.core import Dialect, Stream, stream_for
from edge.dialects.openai import DIALECT as OPENAI
from edge.errors import InvalidRequest
from edge.simulate import anthropic_wire, openai_wire
from edge.simulate.generate import answer, read_anthropic, read_openai
from edge.simulate.script import StreamParts
from hotpath.sse import SSEScanner

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "max_tokens": 10}


@pytest.mark.parametrize(
    ("dialect", "base", "field", "value", "says"),
    [
        (OPENAI, CHAT, "temperature", 2.5, "greater than the maximum of 2"),
        (OPENAI, CHAT, "temperature", "hot", "expected a number"),
        (OPENAI, CHAT, "top_p", -0.1, "less than the minimum of 0"),
        (OPENAI, CHAT, "n", 0, "less than the minimum of 1"),
        (OPENAI, CHAT, "n", True, "expected an integer"),
        (OPENAI, CHAT, "tool_choice", "sometimes", "is not one of"),
        (OPENAI, CHAT, "stop", ["a", 5], "stop[1]"),
        (OPENAI, CHAT, "top_logprobs", 21, "greater than the maximum of 20"),
        (OPENAI, CHAT, "stream", "yes", "expected a boolean"),
        (ANTHROPIC, MESSAGES, "temperature", 1.5, "greater than the maximum of 1"),
        (ANTHROPIC, MESSAGES, "top_k", -1, "less than the minimum of 0"),
        (ANTHROPIC, MESSAGES, "stop_sequences", "STOP", "expected an array of strings"),
        (ANTHROPIC, MESSAGES, "service_tier", "premium", "is not one of"),
        (ANTHROPIC, MESSAGES, "output_config", [], "expected an object"),
    ],
)
def test_field_table_names_the_parameter(
    dialect: Dialect, base: dict[str, Any], field: str, value: Any, says: str
) -> None:
    with pytest.raises(InvalidRequest) as exc:
        dialect.check_request({**base, field: value})
    assert exc.value.param is not None and exc.value.param.startswith(field)
    assert says in exc.value.message


def test_several_bad_fields_name_the_tables_first_whatever_the_bodys_order() -> None:
    for body in (
        {**CHAT, "top_p": 2, "temperature": 3},
        {"temperature": 3, **CHAT, "top_p": 2},
    ):
        with pytest.raises(InvalidRequest) as exc:
            OPENAI.check_request(body)
        assert exc.value.param == "temperature", exc.value.message


@pytest.mark.parametrize(
    ("dialect", "base", "field", "value"),
    [
        (OPENAI, CHAT, "temperature", 2),
        (OPENAI, CHAT, "temperature", 0.0),
        (OPENAI, CHAT, "tool_choice", {"type": "function", "function": {"name": "f"}}),
        (OPENAI, CHAT, "tool_choice", "required"),
        (OPENAI, CHAT, "max_tokens", None),
        (ANTHROPIC, MESSAGES, "temperature", 1),
        (ANTHROPIC, MESSAGES, "stop_sequences", ["a", "b"]),
    ],
)
def test_field_table_accepts_valid_values(
    dialect: Dialect, base: dict[str, Any], field: str, value: Any
) -> None:
    dialect.check_request({**base, field: value})


def _events(parts: StreamParts, chunk: int) -> list[tuple[bytes, bytes]]:
    raw = parts.preamble + b"".join(parts.tokens) + parts.end + parts.terminator
    scanner = SSEScanner()
    out = []
    for i in range(0, len(raw), chunk):
        out += scanner.feed(raw[i : i + chunk])
    return out


def _timeline(
    caller: Dialect, upstream: Dialect, events: list[tuple[bytes, bytes]], stream: bool
) -> list[tuple[bool, bool, bool, bool]]:
    state = stream_for(caller, upstream, ChatInfo("m", stream, True))
    seen = []
    for name, data in events:
        state.feed(name, data)
        seen.append((state.first_token, state.finished, state.complete, state.usage is not None))
    state.close()
    return seen


TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


@settings(max_examples=40, deadline=None)
@given(
    prompt=st.sampled_from(["hello", "please lookup x", "Repeat after me: a STOP b", "more"]),
    tools=st.booleans(),
    max_tokens=st.sampled_from([2, 50]),
    chunk=st.integers(1, 80),
    provider=st.sampled_from(["openai", "anthropic"]),
)
def test_one_state_for_every_pair(
    prompt: str, tools: bool, max_tokens: int, chunk: int, provider: str
) -> None:
    """What the race reads of an attempt (first token, finished, complete, usage) is the same
    event by event whether the answer is passed through, translated, streamed or folded."""
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if provider == "openai":
        if tools:
            body["tools"] = [TOOL]
        ask = read_openai({**body, "stream": True, "stream_options": {"include_usage": True}})
        parts = openai_wire.stream(answer(ask, 8), ask, "m", "chatcmpl-1", 7)
        upstream, other = OPENAI, ANTHROPIC
    else:
        if tools:
            body["tools"] = [{"name": "lookup", "input_schema": {"type": "object"}}]
        ask = read_anthropic(body)
        parts = anthropic_wire.stream(answer(ask, 8), ask, "m", "msg_1", 7)
        upstream, other = ANTHROPIC, OPENAI
    events = _events(parts, chunk)
    runs = [
        _timeline(caller, upstream, events, stream)
        for caller in (upstream, other)
        for stream in (True, False)
    ]
    assert all(run == runs[0] for run in runs)
    assert runs[0][-1][:3] == (True, True, True)


def _produced(state: Stream) -> bool:
    return state.first_token


def test_legacy_function_call_and_audio_are_first_tokens() -> None:
    for delta in (
        {"function_call": {"name": "f", "arguments": "{}"}},
        {"audio": {"id": "a1", "transcript": "hi"}},
    ):
        state = stream_for(OPENAI, OPENAI, ChatInfo("m", False))
        state.feed(
            b"", b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}'
        )
        assert not state.first_token
        state.feed(b"", orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": delta}]}))
        assert _produced(state) and state.output


def test_anthropic_thinking_is_a_first_token_when_translated_too() -> None:
    start = (
        b'{"type":"message_start","message":{"id":"msg_1","model":"m","usage":{"input_tokens":5}}}'
    )
    block = b'{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}'
    delta = b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}'
    for caller in (ANTHROPIC, OPENAI):
        state = stream_for(caller, ANTHROPIC, ChatInfo("m", True))
        for data in (start, block):
            state.feed(b"", data)
        assert not state.first_token and state.usage == {"input_tokens": 5}
        state.feed(b"", delta)
        assert _produced(state) and state.output == ["hm"]


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet="abHALT ", min_size=0, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    stops=st.lists(st.text(alphabet="abHALT ", min_size=1, max_size=5), min_size=1, max_size=3),
)
def test_stop_matching_across_chunks(text: str, cuts: list[int], stops: list[str]) -> None:
    """However the text is split into chunks, the decoder emits exactly the text before the
    earliest stop sequence and names it; without a match, all of it and the provider's end."""
    marks = sorted({c for c in cuts if 0 < c < len(text)})
    pieces = [text[i:j] for i, j in zip([0, *marks], [*marks, len(text)], strict=True)]
    decoder = OPENAI.decoder(tuple(stops))
    events = decoder.feed(b"", b'{"id":"c","model":"m","choices":[]}')
    for piece in pieces:
        chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": piece}}]}
        events += decoder.feed(b"", orjson.dumps(chunk))
    done = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events += decoder.feed(b"", orjson.dumps(done))
    got = "".join(e[1] for e in events if e[0] == "text")
    # the sequence completed first wins (smallest end; at one end, the longest)
    hits = sorted((text.find(s) + len(s), text.find(s), s) for s in stops if s in text)
    if not hits:
        assert got == text and ("finish", "stop", None) in events and not decoder.cut
    else:
        _, start, seq = hits[0]
        assert got == text[:start] and decoder.cut
        assert [e for e in events if e[0] == "finish"] == [("finish", "stop_sequence", seq)]


@settings(max_examples=300, deadline=None)
@given(
    content=st.text(max_size=30),
    logprobs=st.booleans(),
    usage=st.booleans(),
    finish=st.sampled_from([None, "stop"]),
)
def test_the_text_chunk_read_off_its_bytes_is_the_parsed_one(
    content: str, logprobs: bool, usage: bool, finish: str | None
) -> None:
    """The OpenAI decoder's hot path (a content-only chunk read without a JSON parse) gives
    the same events and the same folded answer as the general path, for any text."""
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    first = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    choice: dict[str, Any] = {
        "index": 0,
        "delta": {"content": content},
        "logprobs": {"content": []} if logprobs else None,
        "finish_reason": finish,
    }
    chunk = {**head, "choices": [choice], "usage": {"prompt_tokens": 1} if usage else None}
    data = orjson.dumps(chunk)
    fast = OPENAI.decoder()
    fast.feed(b"", orjson.dumps(first))
    got = fast.feed(b"", data)
    # a decoder's first chunk always takes the general path (it reads the answer's head)
    want = [e for e in OPENAI.decoder().feed(b"", data) if e[0] != "start"]
    assert [e[:2] for e in got] == [e[:2] for e in want]
    folded = stream_for(OPENAI, OPENAI, ChatInfo("m", False))
    for d in (orjson.dumps(first), data):
        folded.feed(b"", d)
    if finish is None:
        folded.feed(
            b"",
            orjson.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        )
    body = orjson.loads(folded.final_body())
    assert body["choices"][0]["message"]["content"] == content
