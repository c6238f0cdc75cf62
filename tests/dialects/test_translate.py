"""Translation between the dialects: table tests for each mapping and a round-trip property."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.dialects import anthropic, openai
from edge.dialects.anthropic import DIALECT as ANTHROPIC
from edge.dialects.canonical import (
    JSON_TOOL,
    TO_ANTHROPIC_STOP,
    TO_OPENAI_FINISH,
    ChatRequest,
    Message,
    Part,
    Tool,
    Usage,
    from_anthropic_stop,
    from_openai_finish,
)
from edge.dialects.common import ChatInfo
from edge.dialects.core import stream_for
from edge.dialects.openai import DIALECT as OPENAI
from edge.errors import InvalidRequest


def oa_req(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


# ------------------------------------------------------------ finish reasons


@pytest.mark.parametrize(
    ("anthropic_reason", "openai_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "length"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "length"),  # unknown: never reported as a clean stop
    ],
)
def test_anthropic_stop_reasons_to_openai(anthropic_reason: str, openai_reason: str) -> None:
    assert TO_OPENAI_FINISH[from_anthropic_stop(anthropic_reason)] == openai_reason


@pytest.mark.parametrize(
    ("openai_reason", "anthropic_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "max_tokens"),
    ],
)
def test_openai_finish_reasons_to_anthropic(openai_reason: str, anthropic_reason: str) -> None:
    assert TO_ANTHROPIC_STOP[from_openai_finish(openai_reason)] == anthropic_reason


# ------------------------------------------------------------ requests


def test_system_and_developer_messages_become_the_anthropic_system() -> None:
    body = oa_req(
        messages=[
            {"role": "system", "content": "A"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "B"}]},
        ]
    )
    out = anthropic.from_canonical(openai.to_canonical(body, "anthropic"), "claude", 1000)
    assert out["system"] == "A\n\nB"
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert out["max_tokens"] == 1000  # the policy's default when the client set none
    assert out["stream"] is True


def test_tool_calls_and_results_gathered_into_one_user_turn() -> None:
    body = oa_req(
        messages=[
            {"role": "user", "content": "weather in A and B?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city":"A"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city":"B"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sun"},
            {"role": "tool", "tool_call_id": "c2", "content": "rain"},
            {"role": "user", "content": "and so?"},
        ],
        tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    out = anthropic.from_canonical(openai.to_canonical(body, "anthropic"), "claude", 100)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "A"}},
        {"type": "tool_use", "id": "c2", "name": "w", "input": {"city": "B"}},
    ]
    last = out["messages"][2]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert [b.get("tool_use_id") for b in last[:2]] == ["c1", "c2"]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["tools"] == [{"name": "w", "description": "", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("openai_choice", "anthropic_choice"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "w"}}, {"type": "tool", "name": "w"}),
    ],
)
def test_tool_choice_both_ways(openai_choice: Any, anthropic_choice: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]
    out = anthropic.from_canonical(
        openai.to_canonical(oa_req(tools=tools, tool_choice=openai_choice), "anthropic"), "c", 10
    )
    assert out["tool_choice"] == anthropic_choice
    back = openai.from_canonical(anthropic.to_canonical(out, "openai"), "gpt")
    assert back["tool_choice"] == openai_choice


def test_images_url_and_base64_both_ways() -> None:
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    out = anthropic.from_canonical(
        openai.to_canonical(oa_req(messages=[{"role": "user", "content": parts}]), "anthropic"),
        "c",
        10,
    )
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
    ]
    back = openai.from_canonical(anthropic.to_canonical(out, "openai"), "gpt")
    assert back["messages"][0]["content"] == parts


def test_stop_user_temperature_and_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = oa_req(
        stop="END",
        user="u-1",
        temperature=0.5,
        top_p=0.9,
        max_completion_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    out = anthropic.from_canonical(openai.to_canonical(body, "anthropic"), "c", 10)
    assert out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "u-1"}
    assert (out["temperature"], out["top_p"], out["max_tokens"]) == (0.5, 0.9, 64)
    assert out["tools"] == [
        {"name": JSON_TOOL, "description": "Respond with the JSON output.", "input_schema": schema}
    ]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    back = openai.from_canonical(
        anthropic.to_canonical(
            {
                "model": "c",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "output_config": {"format": {"type": "json_schema", "schema": schema}},
            },
            "openai",
        ),
        "gpt",
    )
    assert back["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (oa_req(n=3), "n"),
        (oa_req(logprobs=True), "logprobs"),
        (oa_req(top_logprobs=2), "top_logprobs"),
        (oa_req(presence_penalty=0.5), "presence_penalty"),
        (oa_req(temperature=1.7), "temperature"),
        (oa_req(stop=["  "]), "stop"),
        (
            oa_req(
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
            ),
            "messages[0].content[0]",
        ),
        (oa_req(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0]"),
        (
            oa_req(
                response_format={"type": "json_object"},
                tools=[{"type": "function", "function": {"name": "w"}}],
            ),
            "response_format",
        ),
    ],
)
def test_what_anthropic_cannot_honour_is_rejected_naming_it(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        anthropic.from_canonical(openai.to_canonical(body, "anthropic"), "c", 10)
    assert err.value.param == param


def test_neutral_defaults_are_accepted() -> None:
    anthropic.from_canonical(
        openai.to_canonical(
            oa_req(n=1, logprobs=False, presence_penalty=0, store=False, metadata={"a": "b"}),
            "anthropic",
        ),
        "c",
        10,
    )


def test_stop_sequences_are_matched_by_the_gateway_not_sent() -> None:
    """Any number of sequences (OpenAI takes 4): the provider gets none, the decoder matches."""
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "stop_sequences": list("abcde"),
    }
    out = openai.from_canonical(anthropic.to_canonical(body, "openai"), "gpt")
    assert "stop" not in out


def test_what_openai_cannot_honour_is_rejected() -> None:
    base = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    for extra, param in (
        ({"top_k": 3}, "top_k"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ):
        with pytest.raises(InvalidRequest) as err:
            openai.from_canonical(anthropic.to_canonical({**base, **extra}, "openai"), "gpt")
        assert err.value.param == param
    with pytest.raises(InvalidRequest):
        anthropic.to_canonical(
            {
                **base,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            "openai",
        )


def test_usage_rule_counts_cached_tokens_in_the_prompt() -> None:
    u = Usage(input=100, output=20, cache_read=30, cache_write=10, provider={"input_tokens": 100})
    assert u.prompt == 140
    s = stream_for(OPENAI, ANTHROPIC, ChatInfo("m", False, False))
    for name, body in [
        (
            b"message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "c",
                    "usage": {
                        "input_tokens": 100,
                        "cache_read_input_tokens": 30,
                        "cache_creation_input_tokens": 10,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        (
            b"content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            b"content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "ok"},
            },
        ),
        (
            b"message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        ),
        (b"message_stop", {"type": "message_stop"}),
    ]:
        s.feed(name, orjson.dumps(body))
    s.close()
    usage = orjson.loads(s.final_body())["usage"]
    assert (
        usage["prompt_tokens"] == 140
        and usage["completion_tokens"] == 20
        and usage["total_tokens"] == 160
    )
    assert usage["prompt_tokens_details"] == {"cached_tokens": 30}
    assert usage["provider_usage"]["cache_creation_input_tokens"] == 10


def test_openai_usage_seen_by_an_anthropic_client() -> None:
    s = stream_for(ANTHROPIC, OPENAI, ChatInfo("m", False, False))
    chunks = [
        {
            "id": "chatcmpl-9",
            "model": "g",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}
            ],
        },
        {
            "id": "chatcmpl-9",
            "model": "g",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
        {
            "id": "chatcmpl-9",
            "model": "g",
            "choices": [],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 5,
                "total_tokens": 55,
                "prompt_tokens_details": {"cached_tokens": 20},
            },
        },
    ]
    for c in chunks:
        s.feed(b"", orjson.dumps(c))
    s.feed(b"", b"[DONE]")
    s.close()
    body = orjson.loads(s.final_body())
    assert body["id"] == "msg_9" and body["model"] == "g" and body["stop_reason"] == "end_turn"
    assert (
        body["usage"]["input_tokens"] == 30
        and body["usage"]["cache_read_input_tokens"] == 20
        and body["usage"]["output_tokens"] == 5
    )


def test_anthropic_stream_holds_message_delta_until_usage() -> None:
    s = stream_for(ANTHROPIC, OPENAI, ChatInfo("m", True, False))
    out = s.feed(
        b"",
        orjson.dumps(
            {
                "id": "c",
                "model": "g",
                "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}],
            }
        ),
    )
    assert b"message_start" in out and b"text_delta" in out
    out = s.feed(
        b"",
        orjson.dumps(
            {
                "id": "c",
                "model": "g",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            }
        ),
    )
    assert b"content_block_stop" in out and b"message_delta" not in out
    out = s.feed(
        b"",
        orjson.dumps(
            {
                "id": "c",
                "model": "g",
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        ),
    )
    assert (
        b'"stop_reason":"max_tokens"' in out
        and b'"output_tokens":1' in out
        and out.endswith(b'{"type":"message_stop"}\n\n')
    )
    assert s.feed(b"", b"[DONE]") == b"" and s.close() == b""


# ------------------------------------------------------------ round trip

_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12
)
_image = st.one_of(
    st.builds(
        lambda u: Part("image", url="https://img.example/" + u),
        st.from_regex(r"[a-z]{1,8}\.png", fullmatch=True),
    ),
    st.builds(
        lambda d: Part("image", media_type="image/png", data=d),
        st.from_regex(r"[A-Za-z0-9+/]{4,16}=", fullmatch=True),
    ),
)
_args = st.dictionaries(
    st.sampled_from(["a", "b", "city"]), st.one_of(st.integers(0, 9), _text), max_size=2
).map(lambda d: orjson.dumps(d).decode())


@st.composite
def canonical_requests(draw: st.DrawFn) -> ChatRequest:
    tools = draw(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), unique=True, max_size=3))
    messages: list[Message] = []
    turns = draw(st.integers(0, 2))
    pending_calls: list[str] = []
    for t in range(turns):
        user: list[Part] = [
            Part("tool_result", call_id=c, result=[Part("text", text=draw(_text))])
            for c in pending_calls
        ]
        user += draw(
            st.lists(
                st.one_of(st.builds(lambda x: Part("text", text=x), _text), _image),
                min_size=1,
                max_size=2,
            )
        )
        messages.append(Message("user", user))
        assistant: list[Part] = []
        if draw(st.booleans()):
            assistant.append(Part("text", text=draw(_text)))
        pending_calls = []
        if tools and draw(st.booleans()):
            for k in range(draw(st.integers(1, 2))):
                call_id = f"call_{t}_{k}"
                pending_calls.append(call_id)
                assistant.append(
                    Part(
                        "tool_call",
                        call_id=call_id,
                        name=draw(st.sampled_from(tools)),
                        arguments=draw(_args),
                    )
                )
        if not assistant:
            assistant.append(Part("text", text=draw(_text)))
        messages.append(Message("assistant", assistant))
    last: list[Part] = [
        Part("tool_result", call_id=c, result=[Part("text", text=draw(_text))])
        for c in pending_calls
    ]
    messages.append(Message("user", [*last, Part("text", text=draw(_text))]))
    req = ChatRequest(model="m", messages=messages, system=draw(st.one_of(st.just(""), _text)))
    req.tools = [
        Tool(
            n,
            draw(st.one_of(st.just(""), _text)),
            {"type": "object", "properties": {"a": {"type": "string"}}},
        )
        for n in tools
    ]
    if tools:
        req.tool_choice = draw(st.sampled_from(["auto", "required", "none", "named"]))
        if req.tool_choice == "named":
            req.tool_name = draw(st.sampled_from(tools))
        req.parallel_tool_calls = req.tool_choice == "none" or draw(st.booleans())
    req.max_tokens = draw(st.integers(1, 4096))
    req.temperature = draw(st.one_of(st.none(), st.floats(0, 1)))
    req.top_p = draw(st.one_of(st.none(), st.floats(0.1, 1)))
    req.stop = draw(
        st.lists(_text.filter(str.strip), max_size=4)
    )  # Anthropic rejects whitespace-only stops
    req.user = draw(st.one_of(st.just(""), _text))
    req.stream = True
    req.include_usage = True
    return req


@settings(max_examples=300, deadline=None)
@given(req=canonical_requests())
def test_round_trip_openai_anthropic_openai(req: ChatRequest) -> None:
    oa1 = openai.from_canonical(req, "m")
    c1 = openai.to_canonical(orjson.loads(orjson.dumps(oa1)), "anthropic")
    an = anthropic.from_canonical(c1, "m", 4096)
    c2 = anthropic.to_canonical(orjson.loads(orjson.dumps(an)), "openai")
    oa2 = openai.from_canonical(c2, "m")
    assert oa2 == oa1
    c2.include_usage = (
        c1.include_usage
    )  # Anthropic has no include_usage; the gateway always asks for usage
    assert c2 == c1
