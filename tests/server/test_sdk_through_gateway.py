"""The official SDKs through the gateway to the simulated providers, real sockets.

Each answer is compared with the same request sent straight to the simulator:
the gateway must not change what the provider said (text, tool calls, usage,
stop reasons), and must answer in the shape the SDK expects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.procs import Proc, SimClient
from tests.server.conftest import GW_KEY

HELLO = [{"role": "user", "content": "Hello there, gateway"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def oa(gateway: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def oa_direct(sim: SimClient) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.openai_base, api_key="sk-direct", max_retries=0) as client:
        yield client


@pytest.fixture
def an(gateway: Proc) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=GW_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def an_direct(sim: SimClient) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.url, api_key="sk-direct", max_retries=0) as client:
        yield client


def test_openai_non_streaming_matches_provider(oa: openai.OpenAI, oa_direct: openai.OpenAI) -> None:
    via = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    direct = oa_direct.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert via.object == "chat.completion" and via.id.startswith("chatcmpl-")
    assert via.choices[0].message.content == direct.choices[0].message.content
    assert via.choices[0].finish_reason == "stop"
    assert via.usage is not None and direct.usage is not None
    assert via.usage.model_dump() == direct.usage.model_dump()
    assert via.model == "gpt-4o-mini"
    assert via._request_id is not None and via._request_id.startswith("req_")


def test_openai_streaming_with_and_without_usage(
    oa: openai.OpenAI, oa_direct: openai.OpenAI
) -> None:
    direct = oa_direct.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    plain: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in plain)
        == direct.choices[0].message.content
    )
    assert all(c.choices for c in plain), "no usage chunk unless asked for"
    assert all(c.usage is None for c in plain)
    assert plain[-1].choices[0].finish_reason == "stop"
    with_usage: list[ChatCompletionChunk] = list(
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert direct.usage is not None
    assert with_usage[-1].usage.completion_tokens == direct.usage.completion_tokens


def test_openai_tool_calls_through_gateway(oa: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "please call get_weather for Oslo"}]
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS)
    call = (r.choices[0].message.tool_calls or [])[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    streamed = ""
    for chunk in oa.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, tools=TOOLS, stream=True
    ):
        for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            streamed += (tc.function and tc.function.arguments) or ""
    assert json.loads(streamed) == json.loads(call.function.arguments)


def test_openai_async_through_gateway(gateway: Proc) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0
        ) as client:
            whole = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return whole.choices[0].message.content or "", text

    whole, streamed = asyncio.run(run())
    assert whole == streamed and whole


def test_anthropic_non_streaming_matches_provider(
    an: anthropic.Anthropic, an_direct: anthropic.Anthropic
) -> None:
    via = an.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    direct = an_direct.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    assert via.type == "message" and via.id.startswith("msg_")
    assert via.content[0].text == direct.content[0].text
    assert via.stop_reason == "end_turn" and via.stop_sequence is None
    assert via.usage.input_tokens == direct.usage.input_tokens
    assert via.usage.output_tokens == direct.usage.output_tokens
    assert via._request_id is not None and via._request_id.startswith("req_")


def test_anthropic_streaming_helper_and_raw_events(
    an: anthropic.Anthropic, an_direct: anthropic.Anthropic
) -> None:
    direct = an_direct.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    with an.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HELLO) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == direct.content[0].text
    assert (
        final.usage.output_tokens == direct.usage.output_tokens and final.stop_reason == "end_turn"
    )
    kinds = [
        e.type
        for e in an.messages.create(
            model="claude-haiku-4-5", max_tokens=100, messages=HELLO, stream=True
        )
    ]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


def test_anthropic_tool_use_and_stop_sequence(an: anthropic.Anthropic) -> None:
    tools = [{"name": "get_weather", "input_schema": TOOLS[0]["function"]["parameters"]}]
    m = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "use get_weather"}],
        tools=tools,
    )
    assert (
        m.stop_reason == "tool_use"
        and m.content[0].type == "tool_use"
        and "city" in m.content[0].input
    )
    with an.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "use get_weather"}],
        tools=tools,
    ) as s:
        final = s.get_final_message()
    assert final.content[0].input == m.content[0].input
    m = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Repeat after me: a b STOP c"}],
        stop_sequences=["STOP"],
    )
    assert (
        m.stop_reason == "stop_sequence"
        and m.stop_sequence == "STOP"
        and m.content[0].text == "a b "
    )


def test_anthropic_async_and_count_tokens(
    gateway: Proc, an: anthropic.Anthropic, an_direct: anthropic.Anthropic
) -> None:
    async def run() -> str:
        async with (
            anthropic.AsyncAnthropic(base_url=gateway.url, api_key=GW_KEY, max_retries=0) as client,
            client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=HELLO) as s,
        ):
            return "".join([t async for t in s.text_stream])

    assert asyncio.run(run())
    via = an.messages.count_tokens(model="claude-haiku-4-5", messages=HELLO)
    direct = an_direct.messages.count_tokens(model="claude-haiku-4-5", messages=HELLO)
    assert via.input_tokens == direct.input_tokens > 0


def test_count_tokens_for_a_model_without_a_count_endpoint_is_the_local_estimate(
    an: anthropic.Anthropic,
) -> None:
    from hotpath.tokens import estimate_request_tokens

    text = "Count the tokens of this sentence: naïve façades, 12,345 items, ünïcode. " * 8
    got = an.messages.count_tokens(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    ).input_tokens
    # the compiled estimate in the model's own family (o200k for gpt-4o-mini), not bytes/4
    assert got == estimate_request_tokens([text.encode()], 1, family="o200k")
    assert got != (len(text.encode()) + 3) // 4


def test_models_lists_in_both_shapes(oa: openai.OpenAI, an: anthropic.Anthropic) -> None:
    assert "gpt-4o-mini" in [m.id for m in oa.models.list()]
    assert "claude-haiku-4-5" in [m.id for m in an.models.list()]


def test_request_id_kept_or_generated(gateway: Proc) -> None:
    body = {"model": "gpt-4o-mini", "messages": HELLO}
    auth = {"authorization": f"Bearer {GW_KEY}"}
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={**auth, "x-request-id": "my-trace-123"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "my-trace-123"
    r = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth)
    assert r.headers["x-request-id"].startswith("req_")
    assert r.headers["x-edge-provider"] == "openai" and r.headers["x-edge-model"] == "gpt-4o-mini"
    for path in ("/healthz", "/nope"):
        assert httpx.get(gateway.url + path).headers["x-request-id"]


def test_gateway_sends_the_callers_request_id_upstream(gateway: Proc, fresh_sim: SimClient) -> None:
    body = {"model": "gpt-4o-mini", "messages": HELLO}
    httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {GW_KEY}", "x-request-id": "trace-abc"},
    )
    (attempt,) = fresh_sim.attempts()
    assert attempt["client_request_id"] == "trace-abc"
    assert attempt["stream"] is True  # upstream calls are always streamed


def test_metrics_count_requests_latency_ttft_and_tokens(gateway: Proc, oa: openai.OpenAI) -> None:
    def series(name: str, *fragments: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in httpx.get(gateway.url + "/metrics").text.splitlines()
            if line.startswith(name + "{") and all(f in line for f in fragments)
        )

    labels = (
        'operation="chat"',
        'dialect="openai"',
        'tier="L1"',
        'model="gpt-4o-mini"',
        'provider="openai"',
    )
    before = series("edge_requests_total", *labels, 'status="200"')
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert r.usage is not None
    assert series("edge_requests_total", *labels, 'status="200"') == before + 1
    assert series("edge_time_to_first_token_seconds_count", *labels) >= 1
    assert series("edge_request_duration_seconds_bucket", *labels, 'le="120.0"') >= 1
    assert (
        series("edge_tokens_total", 'direction="output"', 'model="gpt-4o-mini"')
        >= r.usage.completion_tokens
    )
    text = httpx.get(gateway.url + "/metrics").text
    assert 'le="81.92"' in text  # buckets reach LLM timescales
    assert "req_" not in text  # no request ids (or other unbounded values) as labels
