"""The simulated provider's Responses API (``POST /v1/responses``), with the official SDK and raw
bytes: the Response object, the typed event sequence, tools, structured output, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest

from edge.simulate import prefix
from edge.simulate.generate import InvalidRequest, input_tokens, read_responses
from tests.procs import SimClient

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def oa(sim: SimClient) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.openai_base, api_key="sk-test", max_retries=0) as client:
        yield client


def test_create_returns_the_response_object_with_usage(oa: openai.OpenAI) -> None:
    r = oa.responses.create(model="gpt-4o-mini", input="Hello there", instructions="Be brief")
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "completed" and r.error is None
    assert r.instructions == "Be brief"
    assert r.output_text and r.output[0].type == "message"
    assert r.usage is not None
    assert r.usage.output_tokens == 12  # the profile's output_tokens
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0


def test_stream_is_the_typed_event_sequence(oa: openai.OpenAI) -> None:
    whole = oa.responses.create(model="gpt-4o-mini", input="Hello there")
    events = list(oa.responses.create(model="gpt-4o-mini", input="Hello there", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    final = events[-1].response  # type: ignore[union-attr,unused-ignore]
    assert final.usage is not None and final.usage.output_tokens == 12
    assert final.output_text == text


def test_stream_helper_and_raw_framing(oa: openai.OpenAI, sim: SimClient) -> None:
    with oa.responses.stream(model="gpt-4o-mini", input="Hello there") as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text
    raw = httpx.post(
        sim.openai_base + "/responses",
        json={"model": "gpt-4o-mini", "input": "Hello there", "stream": True},
        headers={"authorization": "Bearer sk-test"},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in raw.text.split("\n\n") if f]
    assert "[DONE]" not in raw.text
    for frame in frames:
        event, data = frame.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data[6:])["type"] == event[7:]


def test_function_call_round_trip(oa: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Use get_weather for Paris"}]
    r = oa.responses.create(model="gpt-4o-mini", input=ask, tools=[WEATHER])  # type: ignore[list-item]
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].call_id.startswith("call_") and calls[0].id.startswith("fc_")
    assert set(json.loads(calls[0].arguments)) == {"city"}
    history: list[Any] = [
        *ask,
        calls[0].model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"},
    ]
    after = oa.responses.create(model="gpt-4o-mini", input=history, tools=[WEATHER])  # type: ignore[list-item]
    assert after.output[0].type == "message" and after.output_text


def test_streamed_function_call_events(oa: openai.OpenAI) -> None:
    events = list(
        oa.responses.create(
            model="gpt-4o-mini",
            input="Use get_weather for Oslo",
            tools=[WEATHER],  # type: ignore[list-item]
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[2] == "response.output_item.added"
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    deltas = "".join(
        str(e.delta) for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert done.arguments == deltas and json.loads(deltas)["city"]
    assert [e.sequence_number for e in events] == list(range(len(events)))


class City(pydantic.BaseModel):
    name: str
    population: int


def test_parse_with_a_pydantic_model(oa: openai.OpenAI) -> None:
    r = oa.responses.parse(model="gpt-4o-mini", input="Describe a city", text_format=City)
    assert isinstance(r.output_parsed, City)


def test_max_output_tokens_makes_it_incomplete(oa: openai.OpenAI) -> None:
    r = oa.responses.create(model="long-answer", input="Tell me more", max_output_tokens=16)
    assert r.status == "incomplete"
    assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 16


def test_input_tokens_counts_like_the_answer_does(oa: openai.OpenAI) -> None:
    r = oa.responses.create(model="gpt-4o-mini", input="Count these words", instructions="x")
    count = oa.responses.input_tokens.count(
        model="gpt-4o-mini", input="Count these words", instructions="x"
    )
    assert r.usage is not None and count.input_tokens == r.usage.input_tokens


def param_of(err: openai.APIStatusError) -> Any:
    body = err.body
    assert isinstance(body, dict)
    return body.get("param")


def test_errors_in_the_openai_shape(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        oa.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_unknown")
    assert param_of(bad.value) == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as low:
        oa.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=4)
    assert param_of(low.value) == "max_output_tokens"
    with pytest.raises(openai.NotFoundError):
        oa.responses.retrieve("resp_unknown")


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "a long prompt " * 300, "instructions": "be nice " * 50},
        {
            "model": "m",
            "tools": [WEATHER],
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "rules " * 400}]},
                {"type": "message", "role": "user", "content": "weather?"},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny " * 200},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}]},
                {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
            ],
        },
    ],
)  # fmt: skip
def test_cache_walk_counts_the_same_input_as_the_answer(body: dict[str, Any]) -> None:
    points = prefix.responses(body, first=1, step=1, ttl_s=1)
    assert points[-1].tokens == input_tokens(read_responses(body))


def test_bad_bodies_name_their_parameter() -> None:
    for body, param in [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": [5]}, "input[0]"),
        ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format.name"),
    ]:  # fmt: skip
        with pytest.raises(InvalidRequest) as exc:
            read_responses(body)
        assert exc.value.param == param
