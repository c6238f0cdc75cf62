"""The Responses API through the gateway, real sockets, the official SDK: an OpenAI-kind model
(passed through to the provider's /v1/responses) and an Anthropic model (translated), stored
conversations per key, input_tokens, a Codex-shaped request, the WebSocket 426."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.procs import Proc, SimClient
from tests.server.conftest import GW_KEY, GW_KEY_L0

MODELS = ["gpt-4o-mini", "claude-haiku-4-5"]
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
def oa(gateway: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def other(gateway: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY_L0, max_retries=0) as client:
        yield client


def sse(text: str) -> list[dict[str, Any]]:
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        event, data = frame.split("\n")
        obj = json.loads(data.removeprefix("data: "))
        assert event == "event: " + obj["type"]
        out.append(obj)
    return out


@pytest.mark.parametrize("model", MODELS)
def test_create_answers_the_response_object(oa: openai.OpenAI, model: str) -> None:
    raw = oa.responses.with_raw_response.create(
        model=model, input="Hello there", instructions="Be brief", metadata={"k": "v"}
    )
    r = raw.parse()
    provider = "openai" if model.startswith("gpt") else "anthropic"
    assert raw.headers["x-edge-provider"] == provider
    assert float(raw.headers["x-edge-cost-usd"]) > 0
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.output_text and r.instructions == "Be brief" and r.metadata == {"k": "v"}
    assert r.usage is not None and r.usage.output_tokens == 12
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 0


def test_pass_through_answers_what_the_provider_said(oa: openai.OpenAI, sim: SimClient) -> None:
    with openai.OpenAI(base_url=sim.openai_base, api_key="sk-direct", max_retries=0) as direct:
        want = direct.responses.create(model="gpt-4o-mini", input="Hello there")
    got = oa.responses.create(model="gpt-4o-mini", input="Hello there")
    assert got.output_text == want.output_text
    assert got.usage == want.usage


@pytest.mark.parametrize("model", MODELS)
def test_stream_is_the_typed_sequence(oa: openai.OpenAI, model: str) -> None:
    whole = oa.responses.create(model=model, input="Hello there", store=False)
    events = list(oa.responses.create(model=model, input="Hello there", stream=True, store=False))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed" and kinds[-2] == "response.output_item.done"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    final = events[-1].response  # type: ignore[union-attr,unused-ignore]
    assert final.usage is not None and final.usage.total_tokens > final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_async_client_and_stream_helper(gateway: Proc, model: str) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0
        ) as client:
            r = await client.responses.create(model=model, input="Hello async")
            async with client.responses.stream(model=model, input="Hello async") as stream:
                final = await stream.get_final_response()
            return r.output_text, final.output_text

    whole, streamed = asyncio.run(run())
    assert whole and whole == streamed


@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(oa: openai.OpenAI, model: str) -> None:
    ask: list[Any] = [{"role": "user", "content": "Use get_weather for Paris"}]
    r = oa.responses.create(model=model, input=ask, tools=[WEATHER])  # type: ignore[list-item]
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city"]
    history = [
        *ask,
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": calls[0].name,
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"},
    ]
    after = oa.responses.create(model=model, input=history, tools=[WEATHER])  # type: ignore[list-item]
    assert after.output[0].type == "message" and after.output_text


class City(pydantic.BaseModel):
    name: str
    population: int


@pytest.mark.parametrize("model", MODELS)
def test_parse_with_a_pydantic_model(oa: openai.OpenAI, model: str) -> None:
    r = oa.responses.parse(model=model, input="Describe a city", text_format=City)
    assert isinstance(r.output_parsed, City)


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_chain_retrieve_and_delete(
    oa: openai.OpenAI, other: openai.OpenAI, model: str
) -> None:
    first = oa.responses.create(model=model, input="Repeat after me: alpha", instructions="old")
    second = oa.responses.create(
        model=model, input="Repeat after me: beta", previous_response_id=first.id
    )
    assert second.output_text == "beta" and second.previous_response_id == first.id
    assert second.instructions is None  # not carried over
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the conversation was sent
    items = oa.responses.input_items.list(second.id, order="asc")
    texts = [i.content[0].text for i in items.data if i.type == "message"]  # type: ignore[union-attr,unused-ignore]
    assert texts == ["Repeat after me: alpha", "alpha", "Repeat after me: beta"]
    got = oa.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == "beta"
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(second.id)  # another key's answer
    with pytest.raises(openai.NotFoundError) as exc:
        other.responses.create(model=model, input="x", previous_response_id=second.id)
    assert isinstance(exc.value.body, dict) and exc.value.body["param"] == "previous_response_id"
    deleted = oa.responses.with_raw_response.delete(second.id)
    assert deleted.status_code == 200 and json.loads(deleted.text)["deleted"] is True
    with pytest.raises(openai.NotFoundError):
        oa.responses.retrieve(second.id)


@pytest.mark.parametrize("model", MODELS)
def test_store_false_is_not_kept(oa: openai.OpenAI, model: str) -> None:
    r = oa.responses.create(model=model, input="Hello there", store=False)
    with pytest.raises(openai.NotFoundError):
        oa.responses.retrieve(r.id)
    streamed = list(oa.responses.create(model=model, input="Hello", stream=True))
    kept = streamed[-1].response  # type: ignore[union-attr,unused-ignore]
    assert oa.responses.retrieve(kept.id).output_text == kept.output_text  # stored by default


@pytest.mark.parametrize("model", MODELS)
def test_input_tokens_is_the_gateways_estimate(oa: openai.OpenAI, model: str) -> None:
    short = oa.responses.input_tokens.count(model=model, input="Hello")
    long = oa.responses.input_tokens.count(model=model, input="Hello " * 200, instructions="x")
    assert short.object == "response.input_tokens" and 0 < short.input_tokens < long.input_tokens


@pytest.mark.parametrize("model", MODELS)
def test_a_codex_shaped_request(gateway: Proc, model: str) -> None:
    body = {
        "model": model,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<env>linux</env>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
        ],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0196-session",
    }  # fmt: skip
    headers = {
        "authorization": f"Bearer {GW_KEY}",
        "accept": "text/event-stream",
        "session_id": "0196-session",
    }
    with httpx.Client(timeout=20) as client:
        r = client.post(gateway.url + "/v1/responses", json=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert "[DONE]" not in r.text
    done = events[-1]
    assert done["type"] == "response.completed"
    assert done["response"]["id"]
    usage = done["response"]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert "cached_tokens" in usage["input_tokens_details"]
    assert "reasoning_tokens" in usage["output_tokens_details"]
    assert any(e["type"] == "response.output_item.done" for e in events)


@pytest.mark.parametrize("model", ["cut-after-2", "cut-an"])
def test_a_stream_broken_after_bytes_ends_in_response_failed(gateway: Proc, model: str) -> None:
    body = {"model": model, "input": "Hello there", "stream": True, "store": False}
    headers = {"authorization": f"Bearer {GW_KEY}", "x-edge-tier": "solo"}
    r = httpx.post(gateway.url + "/v1/responses", json=body, headers=headers, timeout=20)
    events = sse(r.text)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"]
    assert not any(e["type"] == "response.completed" for e in events)


def test_websocket_upgrade_is_refused_at_once(gateway: Proc) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        s.sendall(
            b"GET /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
            b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"openai-beta: responses_websockets=2026-02-06\r\n\r\n"
        )
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 426 "), head
    assert b'"websocket_not_supported"' in head


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini", "input": "x", "tools": {}}, "tools"),
        ({"model": "gpt-4o-mini", "input": [{"role": "bot", "content": "x"}]}, "input[0].role"),
        ({"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 10**9}, "max_output_tokens"),
        (
            {"model": "claude-haiku-4-5", "input": "x", "tools": [{"type": "web_search"}]},
            "tools[0]",
        ),
        ({"model": "gpt-4o-mini", "input": "x", "background": True}, "background"),
    ],
)
def test_bad_bodies_are_400s_naming_the_parameter(
    gateway: Proc, body: dict[str, Any], param: str
) -> None:
    r = httpx.post(
        gateway.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {GW_KEY}"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
