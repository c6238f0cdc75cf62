"""The official SDKs against the simulated providers, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import anthropic
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.procs import SimClient

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA},
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA},
    {
        "name": "get_time",
        "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
]
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture
def oa(sim: SimClient) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.openai_base, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def an(sim: SimClient) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


# ------------------------------------------------------------------ OpenAI


def test_openai_non_streaming_answer_usage_and_request_id(oa: openai.OpenAI) -> None:
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert r.usage is not None
    assert r.usage.completion_tokens == 12  # the profile's output_tokens
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r._request_id is not None and r._request_id.startswith("req_")


def test_openai_answers_are_deterministic_and_stream_matches(oa: openai.OpenAI) -> None:
    a = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    b = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert a.choices[0].message.content == b.choices[0].message.content
    other = oa.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert other.choices[0].message.content != a.choices[0].message.content
    chunks: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == a.choices[0].message.content
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_openai_async_stream_with_include_usage(sim: SimClient) -> None:
    async def run() -> tuple[str, list[openai.types.chat.ChatCompletionChunk]]:
        client = openai.AsyncOpenAI(base_url=sim.openai_base, api_key="sk-test", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        await client.close()
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks

    text, chunks = asyncio.run(run())
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert text


def test_openai_async_non_streaming(sim: SimClient) -> None:
    async def run() -> openai.types.chat.ChatCompletion:
        async with openai.AsyncOpenAI(
            base_url=sim.openai_base, api_key="sk-test", max_retries=0
        ) as client:
            return await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    r = asyncio.run(run())
    assert r.choices[0].message.content and r.usage is not None


def test_openai_tool_call_named_in_prompt(oa: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "Use get_weather for Paris please."}]
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=OPENAI_TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
    # the round trip ends in text
    follow = [
        *msgs,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    r2 = oa.chat.completions.create(model="gpt-4o-mini", messages=follow, tools=OPENAI_TOOLS)
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content


def test_openai_parallel_and_forced_tool_calls_streamed(oa: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "call get_time and then get_weather"}]
    stream = oa.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, tools=OPENAI_TOOLS, stream=True
    )
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                if tc.function and tc.function.name:
                    names[tc.index] = tc.function.name
                args[tc.index] = args.get(tc.index, "") + (
                    (tc.function and tc.function.arguments) or ""
                )
            finish = choice.finish_reason or finish
    assert names == {0: "get_time", 1: "get_weather"}
    assert finish == "tool_calls"
    jsonschema.validate(json.loads(args[1]), WEATHER_SCHEMA)
    single = oa.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, tools=OPENAI_TOOLS, parallel_tool_calls=False
    )
    assert len(single.choices[0].message.tool_calls or []) == 1
    forced = oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls or []] == ["get_weather"]
    none = oa.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, tools=OPENAI_TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"


def test_openai_json_schema_and_json_object(oa: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "score", "tags"],
    }
    r = oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema, "strict": True},
        },
    )
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), schema)
    r = oa.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


def test_openai_stop_sequence_and_max_tokens(oa: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "Repeat after me: alpha beta STOP gamma"}]
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert r.choices[0].message.content == "alpha beta STOP gamma"
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, stop=["STOP"])
    assert r.choices[0].message.content == "alpha beta "
    assert r.choices[0].finish_reason == "stop"
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_openai_models_list(oa: openai.OpenAI) -> None:
    ids = [m.id for m in oa.models.list()]
    assert "gpt-4o-mini" in ids and "flaky-503" in ids


def test_openai_bad_request_names_the_field(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert err.value.status_code == 400
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "messages"


# --------------------------------------------------------------- Anthropic


def test_anthropic_non_streaming_answer_usage_and_request_id(an: anthropic.Anthropic) -> None:
    m = an.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    assert m.type == "message" and m.role == "assistant"
    assert m.id.startswith("msg_")
    assert m.model == "claude-haiku-4-5"
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.content[0].type == "text" and m.content[0].text
    assert m.usage.output_tokens == 12
    assert m.usage.input_tokens > 0
    assert m._request_id is not None and m._request_id.startswith("req_")


def test_anthropic_stream_helper_matches_non_streaming(an: anthropic.Anthropic) -> None:
    whole = an.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    with an.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.content[0].text == text
    assert final.usage.output_tokens == 12
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.stop_reason == "end_turn"


def test_anthropic_raw_event_sequence(an: anthropic.Anthropic) -> None:
    events = list(
        an.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds.count("content_block_delta") == 12


def test_anthropic_async_stream_and_create(sim: SimClient) -> None:
    async def run() -> tuple[str, anthropic.types.Message]:
        async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="k", max_retries=0) as client:
            async with client.messages.stream(
                model="claude-haiku-4-5", max_tokens=50, messages=HELLO
            ) as s:
                text = "".join([t async for t in s.text_stream])
            m = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=50, messages=HELLO
            )
            return text, m

    text, m = asyncio.run(run())
    assert text == m.content[0].text


def test_anthropic_tool_use_round_trip(an: anthropic.Anthropic) -> None:
    msgs: list[dict[str, object]] = [
        {"role": "user", "content": "what's the weather? use get_weather"}
    ]
    m = an.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=msgs, tools=ANTHROPIC_TOOLS
    )
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert (
        block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    )
    jsonschema.validate(block.input, WEATHER_SCHEMA)
    msgs += [
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "21C"}],
        },
    ]
    m2 = an.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=msgs, tools=ANTHROPIC_TOOLS
    )
    assert m2.stop_reason == "end_turn" and m2.content[0].type == "text"


def test_anthropic_streamed_tool_use_accumulates(an: anthropic.Anthropic) -> None:
    with an.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=200,
        messages=HELLO,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use"
    jsonschema.validate(final.content[0].input, WEATHER_SCHEMA)


def test_anthropic_stop_sequences_and_max_tokens(an: anthropic.Anthropic) -> None:
    msgs = [{"role": "user", "content": "Repeat after me: one two END three"}]
    m = an.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=msgs, stop_sequences=["END"]
    )
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "END"
    assert m.content[0].text == "one two "
    m = an.messages.create(model="claude-haiku-4-5", max_tokens=2, messages=HELLO)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def test_anthropic_structured_output(an: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
        "required": ["ok", "n"],
    }
    m = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=HELLO,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    jsonschema.validate(json.loads(m.content[0].text), schema)


def test_anthropic_count_tokens_matches_usage(an: anthropic.Anthropic) -> None:
    system = "You are terse."
    counted = an.messages.count_tokens(
        model="claude-haiku-4-5", system=system, messages=HELLO, tools=ANTHROPIC_TOOLS
    )
    m = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        system=system,
        messages=HELLO,
        tools=ANTHROPIC_TOOLS,
    )
    assert counted.input_tokens == m.usage.input_tokens > 0


def test_anthropic_models_list(an: anthropic.Anthropic) -> None:
    ids = [m.id for m in an.models.list()]
    assert "claude-haiku-4-5" in ids


def test_anthropic_missing_max_tokens_is_400(sim: SimClient) -> None:
    r = sim.http.post(
        "/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={"model": "claude-haiku-4-5", "messages": HELLO},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert r.headers["request-id"].startswith("req_")
