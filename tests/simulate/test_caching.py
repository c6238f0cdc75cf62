"""Prompt caching through the wire, seen by the official SDKs and billed per attempt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest

from tests.procs import SimClient
from tests.simulate.test_faults import knobs

SONNET = "claude-sonnet-4-6"  # caches from 1024 tokens (a name the SDK does not deprecate)
HAIKU = "claude-haiku-4-5"  # caches from 2048 tokens
DOC = "Each tier has a latency target, a cost cap and a quality floor. " * 90  # 1440 tokens
EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture
def an(fresh_sim: SimClient) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fresh_sim.url, api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
def oa(fresh_sim: SimClient) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fresh_sim.openai_base, api_key="k", max_retries=0) as client:
        yield client


def cached_system(text: str = DOC) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": EPHEMERAL}]


def ask(question: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


def billed(rec: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        rec["billed_input"],
        rec["billed_cache_read"],
        rec["billed_cache_write"],
        rec["billed_output"],
    )


# ----------------------------------------------------------------------- Anthropic


def test_anthropic_cache_write_then_read(an: anthropic.Anthropic, fresh_sim: SimClient) -> None:
    system = cached_system()
    total = an.messages.count_tokens(model=SONNET, system=system, messages=ask("first?"))
    first = an.messages.create(model=SONNET, max_tokens=50, system=system, messages=ask("first?"))
    prefix = first.usage.cache_creation_input_tokens
    assert prefix and first.usage.cache_read_input_tokens == 0
    # the three input figures add up to the whole input; count_tokens is unaffected
    assert first.usage.input_tokens + prefix == total.input_tokens
    again = an.messages.create(
        model=SONNET, max_tokens=50, system=system, messages=ask("and a second question?")
    )
    assert again.usage.cache_read_input_tokens == prefix
    assert again.usage.cache_creation_input_tokens == 0
    with an.messages.stream(
        model=SONNET, max_tokens=50, system=system, messages=ask("third?")
    ) as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.cache_read_input_tokens == prefix  # known before the first token
    assert streamed.usage.cache_read_input_tokens == prefix
    recs = fresh_sim.attempts()
    assert [billed(r) for r in recs] == [
        (first.usage.input_tokens, 0, prefix, first.usage.output_tokens),
        (again.usage.input_tokens, prefix, 0, again.usage.output_tokens),
        (streamed.usage.input_tokens, prefix, 0, streamed.usage.output_tokens),
    ]


def test_anthropic_conversation_reads_the_old_prefix_and_writes_the_new_part(
    an: anthropic.Anthropic,
) -> None:
    system = cached_system()
    first = an.messages.create(model=SONNET, max_tokens=50, system=system, messages=ask("hi"))
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": first.content[0].text},
        {
            "role": "user",
            "content": [{"type": "text", "text": DOC + " go on", "cache_control": EPHEMERAL}],
        },
    ]
    grown = an.messages.create(model=SONNET, max_tokens=50, system=system, messages=history)
    u = grown.usage
    assert u.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert u.cache_creation_input_tokens and u.input_tokens == 0  # the whole prompt is a prefix


def test_haiku_needs_a_longer_prefix_than_sonnet(
    an: anthropic.Anthropic, fresh_sim: SimClient
) -> None:
    for _ in range(2):
        r = an.messages.create(
            model=HAIKU, max_tokens=50, system=cached_system(), messages=ask("q")
        )
        assert r.usage.cache_creation_input_tokens == r.usage.cache_read_input_tokens == 0
    lowered = an.messages.create(
        model=HAIKU,
        max_tokens=50,
        system=cached_system(),
        messages=ask("q"),
        extra_headers=knobs(cache_min_tokens=1024),
    )
    assert (lowered.usage.cache_creation_input_tokens or 0) > 1024


def test_cache_is_per_model_and_cleared_by_reset(
    an: anthropic.Anthropic, fresh_sim: SimClient
) -> None:
    def create(model: str) -> anthropic.types.Usage:
        return an.messages.create(
            model=model, max_tokens=50, system=cached_system(), messages=ask("q")
        ).usage

    assert create(SONNET).cache_creation_input_tokens
    assert create("claude-opus-4-1").cache_creation_input_tokens  # another model: its own cache
    assert create(SONNET).cache_read_input_tokens
    fresh_sim.reset()
    assert create(SONNET).cache_creation_input_tokens


def test_invalid_cache_control_is_a_400(an: anthropic.Anthropic, fresh_sim: SimClient) -> None:
    bad: dict[str, Any] = {"type": "text", "text": "x"}
    bad["cache_control"] = {"type": "ephemeral", "ttl": "2h"}  # a TTL the API does not offer
    with pytest.raises(anthropic.BadRequestError) as err:
        an.messages.create(model=SONNET, max_tokens=50, system=cast(Any, [bad]), messages=ask("q"))
    assert "system.0.cache_control.ttl" in err.value.message
    assert fresh_sim.attempts() == []  # rejected while reading the request: no attempt


def test_cut_stream_bills_the_cache_figures_of_message_start(fresh_sim: SimClient) -> None:
    sent = {
        "model": SONNET,
        "max_tokens": 50,
        "system": cached_system(),
        "messages": ask("q"),
        "stream": True,
    }
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    fresh_sim.http.post("/v1/messages", headers=headers, json=sent)
    with pytest.raises(httpx.RemoteProtocolError):
        fresh_sim.http.post(
            "/v1/messages",
            headers={**headers, **knobs(fault="cut", fault_after_tokens=2)},
            json=sent,
        )
    ok, cut = fresh_sim.attempts()
    assert cut["billed_cache_read"] == ok["billed_cache_write"] > 0
    assert cut["billed_input"] == ok["billed_input"] and cut["billed_output"] == 2
    assert cut["input_usage_sent"] and not cut["usage_sent"]


# -------------------------------------------------------------------------- OpenAI


PROMPT_1500 = "x" * (4 * 1493)  # + 4 for the message + 3 for the request = 1500 tokens


def test_openai_caches_a_repeated_long_prompt_automatically(
    oa: openai.OpenAI, fresh_sim: SimClient
) -> None:
    first = oa.chat.completions.create(model="gpt-4o-mini", messages=ask(PROMPT_1500))
    again = oa.chat.completions.create(model="gpt-4o-mini", messages=ask(PROMPT_1500))
    chunks = list(
        oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=ask(PROMPT_1500),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert first.usage is not None and again.usage is not None
    streamed = chunks[-1].usage
    assert streamed is not None
    assert first.usage.prompt_tokens == again.usage.prompt_tokens == streamed.prompt_tokens == 1500
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    for usage in (again.usage, streamed):
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 1408  # 1024 + 3 x 128
    recs = fresh_sim.attempts()
    assert [billed(r)[:3] for r in recs] == [(1500, 0, 0), (92, 1408, 0), (92, 1408, 0)]


def test_openai_short_prompts_and_expired_entries_are_not_cached(oa: openai.OpenAI) -> None:
    def cached(prompt: str, **override: Any) -> int:
        r = oa.chat.completions.create(
            model="gpt-4o", messages=ask(prompt), extra_headers=knobs(**override)
        )
        assert r.usage is not None and r.usage.prompt_tokens_details is not None
        return r.usage.prompt_tokens_details.cached_tokens or 0

    short = "y" * 4000  # about 1000 tokens
    assert cached(short) == cached(short) == 0
    assert cached(PROMPT_1500, cache_ttl_s=0) == cached(PROMPT_1500, cache_ttl_s=0) == 0
