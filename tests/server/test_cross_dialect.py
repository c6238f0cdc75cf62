"""Any dialect to any provider: the official SDKs against models of the other protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from edge.policy import load_policy
from hotpath.tokens import estimate_request_tokens
from tests.procs import Proc, SimClient, start_gateway
from tests.server.conftest import GW_KEY, GW_KEY_L0, POLICY

HELLO = [{"role": "user", "content": "Hello from the other side"}]
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["city"],
}
OA_TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER},
    }
]
AN_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "score": {"type": "number"}},
    "required": ["name", "score"],
}


@pytest.fixture
def oa(gateway: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def an(gateway: Proc) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=GW_KEY, max_retries=0) as client:
        yield client


# ------------------------------------------- OpenAI SDK -> Anthropic provider


def test_openai_sdk_on_an_anthropic_model(
    oa: openai.OpenAI, sim: SimClient, fresh_sim: SimClient
) -> None:
    direct = anthropic.Anthropic(base_url=sim.url, api_key="k", max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=4096, messages=HELLO
    )
    fresh_sim.reset()
    r = oa.chat.completions.create(model="claude-haiku-4-5", messages=HELLO)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "claude-haiku-4-5"
    assert r.choices[0].message.content == direct.content[0].text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (
        r.usage.prompt_tokens == direct.usage.input_tokens
        and r.usage.completion_tokens == direct.usage.output_tokens
    )
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    (attempt,) = fresh_sim.attempts()
    assert attempt["dialect"] == "anthropic"  # it really went to the Anthropic protocol


def test_openai_sdk_streams_from_an_anthropic_model_with_usage(oa: openai.OpenAI) -> None:
    whole = oa.chat.completions.create(model="claude-haiku-4-5", messages=HELLO)
    chunks: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(
            model="claude-haiku-4-5",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == whole.choices[0].message.content
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (
        whole.usage is not None
        and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    )
    plain: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(model="claude-haiku-4-5", messages=HELLO, stream=True)
    )
    assert all(c.usage is None and c.choices for c in plain)


def test_openai_sdk_tool_round_trip_on_an_anthropic_model(oa: openai.OpenAI) -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "use get_weather for Rome"},
    ]
    r = oa.chat.completions.create(model="claude-haiku-4-5", messages=msgs, tools=OA_TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    call = (r.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    msgs += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
    ]
    r2 = oa.chat.completions.create(model="claude-haiku-4-5", messages=msgs, tools=OA_TOOLS)
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content
    # streamed tool call arguments assemble to the same JSON
    args, name = "", None
    for chunk in oa.chat.completions.create(
        model="claude-haiku-4-5", messages=msgs[:2], tools=OA_TOOLS, stream=True
    ):
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = name or (tc.function.name if tc.function else None)
            args += (tc.function.arguments if tc.function else None) or ""
    assert name == "get_weather" and json.loads(args) == json.loads(call.function.arguments)


def test_openai_sdk_json_schema_and_stop_on_an_anthropic_model(oa: openai.OpenAI) -> None:
    r = oa.chat.completions.create(
        model="claude-haiku-4-5",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "card", "schema": SCHEMA}},
    )
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), SCHEMA)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in oa.chat.completions.create(
            model="claude-haiku-4-5",
            messages=HELLO,
            response_format={"type": "json_object"},
            stream=True,
        )
        if c.choices
    )
    assert isinstance(json.loads(streamed), dict)
    r = oa.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Repeat after me: one two HALT three"}],
        stop=["HALT"],
    )
    assert r.choices[0].message.content == "one two " and r.choices[0].finish_reason == "stop"
    r = oa.chat.completions.create(model="claude-haiku-4-5", messages=HELLO, max_tokens=2)
    assert (
        r.choices[0].finish_reason == "length"
        and r.usage is not None
        and r.usage.completion_tokens == 2
    )


def test_openai_sdk_async_on_an_anthropic_model(gateway: Proc) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0
        ) as c:
            whole = await c.chat.completions.create(model="claude-haiku-4-5", messages=HELLO)
            stream = await c.chat.completions.create(
                model="claude-haiku-4-5", messages=HELLO, stream=True
            )
            return whole.choices[0].message.content or "", "".join(
                [x.choices[0].delta.content or "" async for x in stream if x.choices]
            )

    whole, streamed = asyncio.run(run())
    assert whole and whole == streamed


def test_openai_params_the_anthropic_provider_cannot_honour_are_400(oa: openai.OpenAI) -> None:
    for extra, param in (
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"temperature": 1.5}, "temperature"),
        ({"seed": 7}, "seed"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            oa.chat.completions.create(model="claude-haiku-4-5", messages=HELLO, **extra)
        assert isinstance(err.value.body, dict) and err.value.body["param"] == param


def test_mid_stream_failure_of_an_anthropic_provider_reaches_openai_clients(
    oa: openai.OpenAI,
) -> None:
    """(In L2, whose `rescue` is `error`: L0 and L1 continue such a stream on a fallback,
    tests/server/test_rescue_e2e.py.)"""
    got: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in oa.chat.completions.create(
            model="cut-an", messages=HELLO, stream=True, extra_headers={"x-edge-tier": "L2"}
        ):
            got += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(got) == 2


# ------------------------------------------- Anthropic SDK -> OpenAI provider


def test_anthropic_sdk_on_an_openai_model(
    an: anthropic.Anthropic, sim: SimClient, fresh_sim: SimClient
) -> None:
    direct = openai.OpenAI(
        base_url=sim.openai_base, api_key="k", max_retries=0
    ).chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_completion_tokens=100)
    fresh_sim.reset()
    m = an.messages.create(model="gpt-4o-mini", max_tokens=100, messages=HELLO)
    assert m.type == "message" and m.id.startswith("msg_") and m.model == "gpt-4o-mini"
    assert m.content[0].type == "text" and m.content[0].text == direct.choices[0].message.content
    assert m.stop_reason == "end_turn"
    assert direct.usage is not None
    assert (
        m.usage.input_tokens == direct.usage.prompt_tokens
        and m.usage.output_tokens == direct.usage.completion_tokens
    )
    (attempt,) = fresh_sim.attempts()
    assert attempt["dialect"] == "openai"


def test_anthropic_sdk_streams_from_an_openai_model(an: anthropic.Anthropic) -> None:
    whole = an.messages.create(model="gpt-4o-mini", max_tokens=100, messages=HELLO)
    with an.messages.stream(model="gpt-4o-mini", max_tokens=100, messages=HELLO) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens > 0
    assert final.usage.input_tokens == whole.usage.input_tokens > 0
    kinds = [
        e.type
        for e in an.messages.create(
            model="gpt-4o-mini", max_tokens=100, messages=HELLO, stream=True
        )
    ]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_sdk_tool_round_trip_on_an_openai_model(an: anthropic.Anthropic) -> None:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "please use get_weather"}]
    m = an.messages.create(
        model="gpt-4o-mini",
        max_tokens=200,
        system="You are a weather bot.",
        messages=msgs,
        tools=AN_TOOLS,
    )
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert block.type == "tool_use" and block.name == "get_weather"
    jsonschema.validate(block.input, WEATHER)
    msgs += [
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": block.id, "content": "sunny"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    m2 = an.messages.create(model="gpt-4o-mini", max_tokens=200, messages=msgs, tools=AN_TOOLS)
    assert m2.stop_reason == "end_turn" and m2.content[0].type == "text"
    with an.messages.stream(
        model="gpt-4o-mini",
        max_tokens=200,
        system="You are a weather bot.",
        messages=msgs[:1],
        tools=AN_TOOLS,
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].type == "tool_use"
    assert final.content[-1].input == block.input


def test_anthropic_sdk_structured_output_and_stop_on_an_openai_model(
    an: anthropic.Anthropic,
) -> None:
    m = an.messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=HELLO,
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
    )
    jsonschema.validate(json.loads(m.content[0].text), SCHEMA)
    m = an.messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "Repeat after me: a b HALT c"}],
        stop_sequences=["HALT"],
    )
    assert m.content[0].text == "a b "
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "HALT"
    m = an.messages.create(model="gpt-4o-mini", max_tokens=3, messages=HELLO)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_stop_sequences_matched_by_the_gateway_on_an_openai_model(
    an: anthropic.Anthropic, fresh_sim: SimClient
) -> None:
    """OpenAI says only "stop" whatever ended the answer: on a translation the gateway matches
    the caller's sequences itself (across chunk boundaries), reports which one, and ends the
    provider's call there; an answer that ends on its own is still ``end_turn``."""
    ask = [{"role": "user", "content": "Repeat after me: one two three HALT four five six"}]
    with an.messages.stream(
        model="gpt-4o-mini", max_tokens=200, messages=ask, stop_sequences=["nope", "ee HA"]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "one two thr"
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "ee HA"
    (attempt,) = fresh_sim.attempts()
    assert attempt["dialect"] == "openai"
    plain = an.messages.create(
        model="gpt-4o-mini", max_tokens=200, messages=HELLO, stop_sequences=["never said"]
    )
    assert plain.stop_reason == "end_turn" and plain.stop_sequence is None


def test_anthropic_sdk_async_on_an_openai_model(gateway: Proc) -> None:
    async def run() -> str:
        client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=GW_KEY, max_retries=0)
        async with (
            client,
            client.messages.stream(model="gpt-4o-mini", max_tokens=50, messages=HELLO) as s,
        ):
            return "".join([t async for t in s.text_stream])

    assert asyncio.run(run())


def test_anthropic_params_the_openai_provider_cannot_honour_are_400(
    an: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        an.messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=HELLO, extra_body={"top_k": 5}
        )
    assert "top_k" in err.value.message


def test_mid_stream_failure_of_an_openai_provider_reaches_anthropic_clients(
    an: anthropic.Anthropic,
) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err:
        for event in an.messages.create(
            model="cut-after-2",
            max_tokens=50,
            messages=HELLO,
            stream=True,
            extra_headers={"x-edge-tier": "solo"},
        ):
            seen.append(event.type)
    assert seen.count("content_block_delta") == 2 and "message_stop" not in seen
    assert isinstance(err.value.body, dict) and err.value.body["type"] == "error"


def test_provider_errors_are_re_expressed_in_the_callers_dialect(an: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as err:
        an.messages.create(
            model="flaky-503", max_tokens=10, messages=HELLO, extra_headers={"x-edge-tier": "solo"}
        )
    assert err.value.status_code == 503 and err.value.body["error"]["type"] == "overloaded_error"


def test_route_aliases_and_tiers_pick_models_of_either_provider(gateway: Proc) -> None:
    import httpx

    auth = {"authorization": f"Bearer {GW_KEY}"}
    body = {"model": "L0", "messages": HELLO}
    # L0 is above this key's tier (the policy's default, L1): the alias is refused
    r = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "tier_not_allowed"
    l0 = {"authorization": f"Bearer {GW_KEY_L0}"}
    r = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=l0)
    assert (
        r.status_code == 200
        and r.headers["x-edge-tier"] == "L0"
        and r.headers["x-edge-model"] == "claude-haiku-4-5"
    )
    assert r.json()["object"] == "chat.completion"
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**body, "model": "auto"},
        headers={**auth, "x-edge-tier": "L2"},
    )
    assert (
        r.status_code == 200
        and r.headers["x-edge-tier"] == "L2"
        and r.headers["x-edge-model"] == "gpt-4o-mini"
    )
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={"model": "auto", "max_tokens": 20, "messages": HELLO},
        headers=auth,
    )
    assert (
        r.status_code == 200 and r.headers["x-edge-tier"] == "L1" and r.json()["type"] == "message"
    )
    r = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={**auth, "x-edge-tier": "L9"}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-edge-tier"


def test_every_answer_carries_the_cost_estimate(sim: SimClient) -> None:
    """(Its own gateway: the expected output is learned from earlier answers, so a shared one
    would price these requests by whatever other tests taught it.)"""
    gateway = start_gateway(sim.url, POLICY, {"EDGE_KEYS": GW_KEY})
    try:
        _check_estimates(gateway)
    finally:
        gateway.stop()


def _check_estimates(gateway: Proc) -> None:
    policy = load_policy(POLICY, {})
    text = "Repeat after me: estimate me"
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
        "max_tokens": 100,
    }
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {GW_KEY}"},
    )
    assert r.status_code == 200
    tokens = estimate_request_tokens([b"be brief", text.encode()], messages=2)
    m = policy.models["gpt-4o-mini"]
    expected = (tokens * m.input_usd_per_mtok + 100 * m.output_usd_per_mtok) / 1e6
    assert float(r.headers["x-edge-cost-estimate-usd"]) == pytest.approx(expected, abs=1e-6)
    assert "x-edge-budget-action" not in r.headers  # far under the tier's warn threshold
    # max_tokens is a ceiling, not the expectation: a client's large default (LangChain's
    # 64000; here the models' own 4096 limit) is priced at the tier's expected output
    big = {**body, "max_tokens": 4096}
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=big,
        headers={"authorization": f"Bearer {GW_KEY}"},
    )
    prior = policy.tiers[policy.default_tier].expected_output_tokens
    expected = (tokens * m.input_usd_per_mtok + prior * m.output_usd_per_mtok) / 1e6
    assert r.status_code == 200 and "x-edge-budget-action" not in r.headers
    assert float(r.headers["x-edge-cost-estimate-usd"]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-4o-mini"])
def test_the_structured_outputs_beta_spelling_is_honoured_as_is_and_translated(
    gateway: Proc, model: str
) -> None:
    import json

    import httpx

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={
            "model": model,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "Where is the Eiffel tower?"}],
            "output_format": {"type": "json_schema", "schema": schema},
        },
        headers={
            "authorization": f"Bearer {GW_KEY}",
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "structured-outputs-2025-11-13",
        },
    )
    assert r.status_code == 200, r.text
    text = "".join(b["text"] for b in r.json()["content"] if b["type"] == "text")
    assert isinstance(json.loads(text)["city"], str)
