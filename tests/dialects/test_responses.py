"""The Responses dialect without sockets: request checks, translation to the canonical request,
the pass-through relay (fed the simulator's own bytes), the Encoder's event sequence."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from edge.dialects import anthropic, responses
from edge.dialects.canonical import LENGTH, STOP, TOOL_CALLS, Answer, Usage
from edge.dialects.common import ChatInfo, StreamBroken
from edge.dialects.core import Stream, stream_for
from edge.errors import InvalidRequest, UpstreamError
from edge.simulate import anthropic_wire, responses_wire
from edge.simulate.generate import answer, read_anthropic, read_responses

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def frames(raw: bytes) -> list[tuple[bytes, bytes]]:
    """SSE bytes as (event name, data) pairs."""
    out = []
    for frame in raw.split(b"\n\n"):
        if not frame:
            continue
        name, data = b"", b""
        for line in frame.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:]
            elif line.startswith(b"data: "):
                data = line[6:]
        out.append((name, data))
    return out


def events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for name, data in frames(raw):
        obj = json.loads(data)
        assert obj["type"] == name.decode()
        out.append(obj)
    return out


def passed(stream: bool, previous: str | None = None) -> Stream:
    """The state of a Responses request served by an OpenAI-kind provider as it is."""
    echo = {"previous_response_id": previous}
    info = ChatInfo("m", stream, echo=echo)
    return stream_for(responses.DIALECT, responses.DIALECT, info)


def sim_stream(body: dict[str, Any], output_tokens: int = 6) -> tuple[bytes, bytes]:
    """What the simulator streams for ``body``, and its non-streamed body."""
    ask = read_responses(body)
    ans = answer(ask, output_tokens)
    rid = "resp_" + "ab" * 24
    parts = responses_wire.stream(ans, ask, ask.model, rid, 7)
    raw = parts.preamble + b"".join(parts.tokens) + parts.end + parts.terminator
    return raw, responses_wire.completion(ans, ask, ask.model, rid, 7)


# ------------------------------------------------------------ checks


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": [5]}, "input[0]"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
        ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"model": "m", "input": [{"type": "bogus"}]}, "input[0].type"),
        ({"model": "m", "input": "x", "tools": {}}, "tools"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "x", "tools": [{**WEATHER, "parameters": 5}]}, "tools[0].parameters"),
        ({"model": "m", "input": "x", "tool_choice": "any"}, "tool_choice"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema"),
        ({"model": "m", "input": "x", "max_output_tokens": "9"}, "max_output_tokens"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"model": "m", "input": "x", "metadata": {"k": 5}}, "metadata"),
        ({"model": "m", "input": "x", "store": "yes"}, "store"),
        ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
        ({"model": "m", "input": "x", "include": "reasoning"}, "include"),
        ({"model": "m", "input": "x", "background": True}, "background"),
        ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
        ({"model": "m", "input": "x", "previous_response_id": 5}, "previous_response_id"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_parameter(body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as exc:
        responses.check_request(body)
    assert exc.value.param == param


def test_a_codex_shaped_request_passes() -> None:
    body = {
        "model": "gpt-4o-mini",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "env"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
        ],
        "tools": [WEATHER, {"type": "web_search"}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "sess-1",
        "text": {"verbosity": "low"},
    }  # fmt: skip
    info = responses.check_request(body)
    assert info.model == "gpt-4o-mini" and info.stream


def test_upstream_body_streams_and_never_names_our_conversation() -> None:
    body = {"model": "alias", "input": "x", "previous_response_id": "resp_1", "store": False}
    out = orjson.loads(responses.upstream_body(body, "gpt-4o-mini-2024-07-18"))
    assert out == {"model": "gpt-4o-mini-2024-07-18", "input": "x", "store": False, "stream": True}


def test_continued_puts_the_stored_conversation_first() -> None:
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]}
    ]
    output = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b"}]}
    ]
    body = {"model": "m", "input": "c", "instructions": "new", "previous_response_id": "resp_1"}
    out = responses.continued(body, history, output)
    assert out["input"] == [*history, *output, *responses.input_items({"input": "c"})]
    assert out["instructions"] == "new" and body["input"] == "c"


# ------------------------------------------------------------ translation


def test_to_canonical_maps_items_tools_and_format() -> None:
    body = {
        "model": "claude-haiku-4-5",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "max_output_tokens": 300,
        "temperature": 0.5,
        "reasoning": {"effort": "low"},
        "metadata": {"k": "v"},
        "store": True,
    }  # fmt: skip
    req = responses.to_canonical(body, "anthropic")
    assert req.system == "Be brief.\n\nUse tools."
    assert [m.role for m in req.messages] == ["user", "assistant", "user"]
    assert [p.kind for p in req.messages[0].parts] == ["text", "image"]
    assert req.messages[0].parts[1].media_type == "image/png"
    assert req.messages[1].parts[0].call_id == "call_1"
    assert req.messages[2].parts[0].kind == "tool_result"
    assert req.messages[2].parts[0].result[0].text == "18C"
    assert req.tools[0].name == "get_weather" and req.tool_choice == "named"
    assert not req.parallel_tool_calls and req.max_tokens == 300 and req.temperature == 0.5
    out = anthropic.from_canonical(req, "claude-haiku-4-5", 1024)
    assert out["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}  # fmt: skip
    read_anthropic(out)  # what an Anthropic provider accepts

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fmt = {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}}
    req = responses.to_canonical({"model": "m", "input": "x", "text": fmt}, "anthropic")
    assert (req.json_mode, req.json_schema, req.json_name) == ("schema", schema, "thing")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"tool_choice": {"type": "allowed_tools", "tools": []}}, "tool_choice"),
    ],
)  # fmt: skip
def test_what_cannot_be_translated_is_a_400_naming_it(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        responses.to_canonical({"model": "m", "input": "x", **extra}, "anthropic")
    assert exc.value.param == param


# ------------------------------------------------------------ pass-through


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "Hello there"},
        {"model": "m", "input": "Use get_weather for Rome", "tools": [WEATHER]},
    ],
)
def test_pass_through_relays_the_providers_bytes_and_folds_its_answer(
    body: dict[str, Any],
) -> None:
    raw, whole = sim_stream(body)
    relay = passed(True)
    out = b"".join(relay.feed(n, d) for n, d in frames(raw)) + relay.close()
    assert out == raw
    assert relay.first_token and relay.finished and relay.complete
    assert relay.usage == orjson.loads(whole)["usage"]
    fold = passed(False)
    assert b"".join(fold.feed(n, d) for n, d in frames(raw)) == b""
    fold.close()
    assert orjson.loads(fold.final_body()) == orjson.loads(whole)


def test_pass_through_stream_cut_before_completed_is_broken_and_fails_typed() -> None:
    raw, _ = sim_stream({"model": "m", "input": "Hello there"})
    relay = passed(True)
    sent = [relay.feed(n, d) for n, d in frames(raw)[:-2]]
    assert relay.first_token and not relay.complete
    with pytest.raises(StreamBroken):
        relay.close()
    failed = events(relay.error_event(UpstreamError("provider went away")))[0]
    last = events(b"".join(sent))[-1]
    assert failed["type"] == "response.failed"
    assert failed["sequence_number"] == last["sequence_number"] + 1
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "provider went away"}


def test_provider_failure_events_end_the_attempt() -> None:
    relay = passed(True)
    failed = {"type": "response.failed", "response": {"error": {"code": "x", "message": "boom"}}}
    with pytest.raises(StreamBroken, match="boom"):
        relay.feed(b"response.failed", orjson.dumps(failed))
    with pytest.raises(StreamBroken, match="bad"):
        relay.feed(b"error", b'{"type":"error","code":null,"message":"bad","param":null}')


def test_decoder_reads_the_simulators_stream_as_canonical_events() -> None:
    raw, whole = sim_stream({"model": "m", "input": "Use get_weather for Rome", "tools": [WEATHER]})  # fmt: skip
    decoder, folded = responses.Decoder(), Answer()
    for name, data in frames(raw):
        for ev in decoder.feed(name, data):
            folded.apply(ev)
    call = orjson.loads(whole)["output"][0]
    assert folded.finish == TOOL_CALLS
    assert folded.tool_calls[0]["id"] == call["call_id"]
    assert "".join(folded.tool_calls[0]["arguments"]) == call["arguments"]
    assert folded.usage is not None and folded.usage.output == orjson.loads(whole)["usage"]["output_tokens"]  # fmt: skip


# ------------------------------------------------------------ encoder


def translate(body: dict[str, Any], output_tokens: int = 6) -> list[dict[str, Any]]:
    """The simulator's Anthropic stream for ``body`` through the Decoder and the Encoder."""
    req = responses.to_canonical(body, "anthropic")
    upstream = anthropic.from_canonical(req, "claude-haiku-4-5", 64)
    ask = read_anthropic(upstream)
    ans = answer(ask, output_tokens)
    parts = anthropic_wire.stream(ans, ask, "claude-haiku-4-5", "msg_01abc", 0)
    raw = parts.preamble + b"".join(parts.tokens) + parts.end + parts.terminator
    decoder, encoder = anthropic.Decoder(), responses.Encoder(responses.echo_of(body), 5)
    out = b"".join(encoder.encode(ev) for n, d in frames(raw) for ev in decoder.feed(n, d))
    return events(out + encoder.close())


def test_encoder_writes_the_text_turn_in_order_with_usage() -> None:
    got = translate({"model": "claude-haiku-4-5", "input": "Hello there", "metadata": {"a": "b"}})
    kinds = [e["type"] for e in got]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]  # fmt: skip
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    final = got[-1]["response"]
    text = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    assert final["output"][0]["content"][0]["text"] == text
    assert final["id"] == "resp_01abc" and final["metadata"] == {"a": "b"}
    usage = final["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    added = got[2]["item"]
    assert added["status"] == "in_progress" and added["content"] == []


def test_encoder_writes_function_calls_as_items() -> None:
    got = translate({"model": "m", "input": "Use get_weather for Rome", "tools": [WEATHER]})
    added = [e for e in got if e["type"] == "response.output_item.added"]
    assert [a["item"]["type"] for a in added] == ["function_call"]
    assert added[0]["item"]["arguments"] == "" and added[0]["item"]["call_id"].startswith("toolu_")
    done = next(e for e in got if e["type"] == "response.function_call_arguments.done")
    deltas = "".join(e["delta"] for e in got if e["type"] == "response.function_call_arguments.delta")  # fmt: skip
    assert done["arguments"] == deltas and json.loads(deltas)["city"]
    final = got[-1]
    assert final["type"] == "response.completed"
    assert final["response"]["output"][0]["arguments"] == deltas


def test_a_cut_answer_is_incomplete_and_render_agrees() -> None:
    got = translate({"model": "m", "input": "Hello", "max_output_tokens": 3}, output_tokens=20)
    final = got[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    folded = Answer(id="msg_01abc", model="m", text=["a", "b"], finish=LENGTH, usage=Usage(5, 3))
    body = responses.render(folded, 5, responses.echo_of({"model": "m", "input": "x"}))
    assert body["status"] == "incomplete" and body["usage"]["total_tokens"] == 8
    assert body["output"][0]["content"][0]["text"] == "ab"


def test_encoder_failure_is_typed_and_numbered() -> None:
    enc = responses.Encoder(responses.echo_of({"model": "m", "input": "x"}), 1)
    head = enc.encode(("start", "msg_1", "m")) + enc.encode(("text", "hi"))
    failed = events(enc.error_event(UpstreamError("cut", code="rate_limit_exceeded")))[0]
    assert failed["sequence_number"] == len(events(head))
    assert failed["response"]["error"]["code"] == "rate_limit_exceeded"
    assert enc.close() == b""  # a failed stream gets no completed after it
    folded = Answer(id="msg_1", model="m", text=["ok"], finish=STOP, usage=Usage(1, 1))
    assert responses.render(folded, 1, {})["status"] == "completed"


def test_pass_through_echoes_the_gateways_previous_response_id() -> None:
    raw, _ = sim_stream({"model": "m", "input": "Hello there"})
    relay = passed(True, previous="resp_prev")
    out = events(b"".join(relay.feed(n, d) for n, d in frames(raw)))
    carried = [e["response"]["previous_response_id"] for e in out if "response" in e]
    assert carried == ["resp_prev"] * 3  # created, in_progress, completed
    assert relay.answer_object() is not None
    assert relay.answer_object()["previous_response_id"] == "resp_prev"
