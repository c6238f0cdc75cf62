"""The frameworks users put in front of the SDKs, through the gateway, with their defaults.

LangChain (``ChatOpenAI`` on chat completions and with ``use_responses_api=True``,
``ChatAnthropic``), litellm as a client and instructor in tool mode, each configured as a new user would (base URL, key and model, nothing else), against
an OpenAI-kind and an Anthropic-kind model: the same dialect and translated. The gateway
runs the shipped policy (what ``llm-edge serve`` starts with), in front of the simulator.

Answers are compared with the same request sent straight to the simulator in the model's
own protocol: the framework must get what the provider said (text, usage, tool calls),
whichever dialect it speaks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import reduce
from typing import Any

# litellm fetches its model price map from the internet at import unless told otherwise;
# this machine has none, and the fetch retries for ~15 s before it falls back to this copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anthropic
import instructor
import litellm
import openai
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from litellm.types.llms.openai import ResponsesAPIResponse
from pydantic import BaseModel

from tests.procs import ROOT, Proc, SimClient, start_gateway

pytestmark = pytest.mark.filterwarnings(
    # litellm's types are TypedDicts with ReadOnly items (dozens, their pydantic schemas
    # built lazily on first use); pydantic notes that it cannot enforce ReadOnly. Only
    # litellm uses the qualifier here: neither the gateway nor these tests do.
    r"ignore:Items? .* on TypedDict class .* (is|are) using the `ReadOnly` qualifier\. "
    r"Pydantic will not protect items:UserWarning",
    # litellm tests each streamed delta for content by getattr over dir(delta), which reads
    # pydantic's deprecated instance attributes
    "ignore:Accessing the 'model_[a-z_]+' attribute on the instance is deprecated"
    ":pydantic.warnings.PydanticDeprecatedSince211"
    ":litellm.litellm_core_utils.model_response_utils",
)

KEY = "sk-framework-user"
MODELS = ["gpt-4o-mini", "claude-haiku-4-5"]  # one of each provider kind
both_models = pytest.mark.parametrize("model", MODELS)
HELLO = "Hello there, framework"
CALL = "please call get_weather for Oslo"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


class Card(BaseModel):
    """A named score."""

    name: str
    score: float


@pytest.fixture(scope="module")
def shipped(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(sim.url, os.path.join(ROOT, "edge/policies/default.toml"))
    yield proc
    proc.stop()


def kind(model: str) -> str:
    """The protocol of the provider that serves ``model`` in the shipped policy."""
    return "anthropic" if model.startswith("claude") else "openai"


def direct(sim: SimClient, model: str, prompt: str) -> tuple[str, int, int]:
    """What the simulator answers ``prompt`` on ``model`` in that model's own protocol:
    the text, input tokens and output tokens."""
    messages = [{"role": "user", "content": prompt}]
    if kind(model) == "anthropic":
        r = sim.http.post(
            "/v1/messages",
            json={"model": model, "max_tokens": 1024, "messages": messages},
            headers={"x-api-key": "sk-direct", "anthropic-version": "2023-06-01"},
        )
        r.raise_for_status()
        m = r.json()
        text = "".join(b["text"] for b in m["content"] if b["type"] == "text")
        return text, m["usage"]["input_tokens"], m["usage"]["output_tokens"]
    r = sim.http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": messages},
        headers={"authorization": "Bearer sk-direct"},
    )
    r.raise_for_status()
    c = r.json()
    return (
        c["choices"][0]["message"]["content"],
        c["usage"]["prompt_tokens"],
        c["usage"]["completion_tokens"],
    )


def upstream_dialects(sim: SimClient, since: int) -> list[str]:
    """The protocol of every provider attempt since ``since``."""
    return [a["dialect"] for a in sim.attempts(since=since)]


# ------------------------------------------------------------------ LangChain


def chat_openai(gw: Proc, model: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=gw.url + "/v1", api_key=KEY, model=model)


def chat_anthropic(gw: Proc, model: str, **settings: Any) -> ChatAnthropic:
    # `model` is the documented spelling: a pydantic alias of `model_name` mypy cannot see
    return ChatAnthropic(base_url=gw.url, api_key=KEY, model=model, **settings)  # type: ignore[call-arg]


def chat_openai_responses(gw: Proc, model: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=gw.url + "/v1", api_key=KEY, model=model, use_responses_api=True)


LANGCHAIN = {
    "ChatOpenAI": chat_openai,
    "ChatOpenAI-responses": chat_openai_responses,
    "ChatAnthropic": chat_anthropic,
}
both_langchain = pytest.mark.parametrize("make", list(LANGCHAIN.values()), ids=list(LANGCHAIN))


def aggregate(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    joined: AIMessageChunk = reduce(lambda a, b: a + b, chunks)
    return joined


@both_models
@both_langchain
def test_langchain_invoke_and_stream(make: Any, model: str, shipped: Proc, sim: SimClient) -> None:
    text, input_tokens, output_tokens = direct(sim, model, HELLO)
    llm: BaseChatModel = make(shipped, model)
    seq = sim.seq()
    msg = llm.invoke(HELLO)
    assert isinstance(msg, AIMessage) and msg.text == text and text
    assert msg.response_metadata["model_name"] == model
    responses = isinstance(llm, ChatOpenAI) and llm.use_responses_api
    if responses:
        assert msg.response_metadata["status"] == "completed"
        assert msg.response_metadata["id"].startswith("resp_")
        # an OpenAI model is served the Responses API as it is, an Anthropic one translated
        assert upstream_dialects(sim, seq) == [
            "responses" if kind(model) == "openai" else kind(model)
        ]
    else:
        assert upstream_dialects(sim, seq) == [kind(model)]
    if isinstance(llm, ChatOpenAI) and not responses:
        assert msg.response_metadata["finish_reason"] == "stop"
    elif isinstance(llm, ChatAnthropic):
        assert msg.response_metadata["stop_reason"] == "end_turn"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == input_tokens
    assert msg.usage_metadata["output_tokens"] == output_tokens
    assert msg.usage_metadata["total_tokens"] == input_tokens + output_tokens

    chunks = list(llm.stream(HELLO))
    assert sum(1 for c in chunks if c.text) > 1, "streamed in pieces, not in one"
    assert "".join(c.text for c in chunks) == text
    if isinstance(llm, ChatOpenAI) and not responses:
        # on chat completions ChatOpenAI asks for usage in a stream only when told to (its
        # default is off for a base_url of its own); ChatAnthropic and Responses always get it
        assert aggregate(chunks).usage_metadata is None
        chunks = list(llm.stream(HELLO, stream_usage=True))
    usage = aggregate(chunks).usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"]) == (input_tokens, output_tokens)


def test_chat_anthropic_default_max_tokens_is_answered(shipped: Proc, sim: SimClient) -> None:
    """ChatAnthropic sends the model's whole output limit (64000 for Haiku 4.5) by default:
    the gateway serves it as it is (no 400, no 202), and translated to a model whose own
    limit is lower too."""
    llm = chat_anthropic(shipped, "claude-haiku-4-5")
    assert llm.max_tokens == 64000  # the default this test is about
    assert llm.invoke(HELLO).text == direct(sim, "claude-haiku-4-5", HELLO)[0]
    for model in ("gpt-4o-mini", "gpt-4.1-mini"):
        big = chat_anthropic(shipped, model, max_tokens=64000)
        assert big.invoke(HELLO).text == direct(sim, model, HELLO)[0]


@both_models
@both_langchain
def test_langchain_tool_call_round_trip(make: Any, model: str, shipped: Proc) -> None:
    llm = make(shipped, model).bind_tools([get_weather])
    ai = llm.invoke(CALL)
    assert isinstance(ai, AIMessage) and len(ai.tool_calls) == 1
    call = ai.tool_calls[0]
    assert call["name"] == "get_weather" and call["id"]
    assert set(call["args"]) == {"city"} and isinstance(call["args"]["city"], str)

    streamed = aggregate(list(llm.stream(CALL)))
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [(call["name"], call["args"])]

    history = [
        HumanMessage(CALL),
        ai,
        ToolMessage(get_weather.invoke(call), tool_call_id=call["id"]),
    ]
    final = llm.invoke(history)
    assert not final.tool_calls and final.text


@both_models
@both_langchain
def test_langchain_structured_output(make: Any, model: str, shipped: Proc) -> None:
    """Each class's default method: a json_schema response format for ChatOpenAI (``text.format``
    on the Responses API), a forced tool for ChatAnthropic."""
    card = make(shipped, model).with_structured_output(Card).invoke("Describe a card")
    assert isinstance(card, Card) and card.name


# -------------------------------------------------------------------- litellm


def litellm_args(gw: Proc, dialect: str, model: str) -> dict[str, Any]:
    base = gw.url + "/v1" if dialect == "openai" else gw.url
    return {"model": f"{dialect}/{model}", "api_base": base, "api_key": KEY}


both_dialects = pytest.mark.parametrize("dialect", ["openai", "anthropic"])


@both_models
@both_dialects
def test_litellm_completion_sync_and_streaming(
    dialect: str, model: str, shipped: Proc, sim: SimClient
) -> None:
    text, input_tokens, output_tokens = direct(sim, model, HELLO)
    args = litellm_args(shipped, dialect, model)
    messages = [{"role": "user", "content": HELLO}]
    seq = sim.seq()
    r = litellm.completion(messages=messages, **args)
    assert upstream_dialects(sim, seq) == [kind(model)]
    assert r.choices[0].message.content == text and text
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (input_tokens, output_tokens)

    chunks = list(
        litellm.completion(
            messages=messages, stream=True, stream_options={"include_usage": True}, **args
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1 and "".join(pieces) == text
    rebuilt = litellm.stream_chunk_builder(chunks, messages=messages)
    assert rebuilt is not None and rebuilt.choices[0].finish_reason == "stop"
    assert (rebuilt.usage.prompt_tokens, rebuilt.usage.completion_tokens) == (
        input_tokens,
        output_tokens,
    )


@both_models
@both_dialects
def test_litellm_tool_calls(dialect: str, model: str, shipped: Proc) -> None:
    args = litellm_args(shipped, dialect, model)
    messages: list[dict[str, Any]] = [{"role": "user", "content": CALL}]
    r = litellm.completion(messages=messages, tools=[WEATHER], **args)
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id
    arguments = json_args(call.function.arguments)

    chunks = list(litellm.completion(messages=messages, tools=[WEATHER], stream=True, **args))
    rebuilt = litellm.stream_chunk_builder(chunks, messages=messages)
    assert rebuilt is not None
    (again,) = rebuilt.choices[0].message.tool_calls or []
    assert again.function.name == "get_weather"
    assert json_args(again.function.arguments) == arguments

    messages += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    final = litellm.completion(messages=messages, tools=[WEATHER], **args)
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content


@both_models
def test_litellm_responses(model: str, shipped: Proc, sim: SimClient) -> None:
    """``litellm.responses`` (the Responses API through litellm's openai provider)."""
    text, input_tokens, output_tokens = direct(sim, model, HELLO)
    args = litellm_args(shipped, "openai", model)
    r = litellm.responses(input=HELLO, **args)
    assert r.status == "completed" and r.output_text == text
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens) == (input_tokens, output_tokens)

    stream = litellm.responses(input=HELLO, stream=True, **args)
    assert not isinstance(stream, ResponsesAPIResponse)
    events = list(stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == text
    assert events[-1].response.usage.output_tokens == output_tokens


def json_args(arguments: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(arguments)
    assert set(parsed) == {"city"} and isinstance(parsed["city"], str)
    return parsed


# ----------------------------------------------------------------- instructor


@both_models
def test_instructor_openai_tools_mode(model: str, shipped: Proc, sim: SimClient) -> None:
    with openai.OpenAI(base_url=shipped.url + "/v1", api_key=KEY) as raw:
        client = instructor.from_openai(raw, mode=instructor.Mode.TOOLS)
        seq = sim.seq()
        card, completion = client.chat.completions.create_with_completion(
            model=model,
            messages=[{"role": "user", "content": "Describe a card"}],
            response_model=Card,
        )
    assert isinstance(card, Card) and card.name
    # the first answer validated: no re-ask, one provider attempt, in the model's protocol
    assert upstream_dialects(sim, seq) == [kind(model)]
    assert completion.choices[0].finish_reason in ("tool_calls", "stop")
    assert completion.choices[0].message.tool_calls[0].function.name == "Card"


@both_models
def test_instructor_anthropic_tools_mode(model: str, shipped: Proc, sim: SimClient) -> None:
    # instructor 1.17 spells ANTHROPIC_TOOLS as TOOLS on an Anthropic client (the old name
    # is deprecated and normalised to this one)
    with anthropic.Anthropic(base_url=shipped.url, api_key=KEY) as raw:
        client = instructor.from_anthropic(raw, mode=instructor.Mode.TOOLS)
        seq = sim.seq()
        card, message = client.messages.create_with_completion(
            model=model,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Describe a card"}],
            response_model=Card,
        )
    assert isinstance(card, Card) and card.name
    assert upstream_dialects(sim, seq) == [kind(model)]
    assert message.stop_reason == "tool_use"
    assert [b.name for b in message.content if b.type == "tool_use"] == ["Card"]
