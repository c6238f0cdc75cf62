"""Cache prefixes: where they end, in the same tokens as the usage, and what they cover."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.simulate import prefix
from edge.simulate.generate import InvalidRequest, input_tokens, read_anthropic, read_openai

EPHEMERAL = {"type": "ephemeral"}
DOC = "The gateway routes each request along the fastest healthy path. " * 80  # ~1300 tokens


def every_token(body: dict[str, Any]) -> list[prefix.CachePoint]:
    """OpenAI points at every token: the last one is the walk's total."""
    return prefix.openai(body, first=1, step=1, ttl_s=1.0)


def an_body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 10, **extra}


# --------------------------------------------------- the walk counts like generate


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
oa_part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
)
oa_message = st.one_of(
    st.builds(lambda r, t: {"role": r, "content": t}, st.sampled_from(["system", "user"]), texts),
    st.builds(lambda parts: {"role": "user", "content": parts}, st.lists(oa_part, max_size=3)),
    st.builds(
        lambda name, args: {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}
            ],
        },
        st.text(min_size=1, max_size=8),
        texts,
    ),
    st.builds(lambda t: {"role": "tool", "tool_call_id": "call_1", "content": t}, texts),
)
oa_tool = st.builds(
    lambda name, desc: {
        "type": "function",
        "function": {"name": name, "description": desc, "parameters": {"type": "object"}},
    },
    st.text(min_size=1, max_size=8),
    texts,
)


@given(st.lists(oa_message, min_size=1, max_size=5), st.lists(oa_tool, max_size=2))
def test_openai_walk_total_is_the_reported_input(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> None:
    body = {"model": "gpt-4o", "messages": messages, "tools": tools}
    points = every_token(body)
    total = input_tokens(read_openai(body))
    assert [p.tokens for p in points] == list(range(1, total + 1))


an_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.just({"type": "image", "source": {"type": "base64", "data": "AAAA"}}),
    st.builds(
        lambda t: {"type": "tool_result", "tool_use_id": "toolu_1", "content": t},
        texts,
    ),
    st.builds(
        lambda t: {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": t}}, texts
    ),
)


@given(
    st.lists(st.one_of(texts, st.lists(an_block, min_size=1, max_size=3)), min_size=1, max_size=4),
    st.one_of(st.none(), texts, st.lists(st.builds(lambda t: {"type": "text", "text": t}, texts))),
)
def test_anthropic_last_breakpoint_covers_the_reported_input(
    contents: list[Any], system: Any
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": c}
        for i, c in enumerate(contents)
    ]
    messages.append(
        {"role": "user", "content": [{"type": "text", "text": "end", "cache_control": EPHEMERAL}]}
    )
    body = an_body(
        messages=messages,
        tools=[{"name": "f", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL}],
    )
    if system is not None:
        body["system"] = system
    points = prefix.anthropic(body)
    assert points[-1].tokens == input_tokens(read_anthropic(body))
    assert points[0].tokens < points[-1].tokens


# ------------------------------------------------------------- what a prefix covers


def test_breakpoints_in_tools_system_and_messages_in_that_order() -> None:
    body = an_body(
        tools=[{"name": "f", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL}],
        system=[{"type": "text", "text": DOC, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}],
            }
        ],
    )
    tool, system, msg = prefix.anthropic(body)
    assert tool.tokens < system.tokens < msg.tokens == input_tokens(read_anthropic(body))
    assert (tool.ttl_s, system.ttl_s, msg.ttl_s) == (300.0, 3600.0, 300.0)


def test_no_breakpoint_no_points() -> None:
    assert prefix.anthropic(an_body(messages=[{"role": "user", "content": DOC}])) == []


def test_same_prefix_same_key_whatever_follows() -> None:
    def body(question: str, model: str = "claude-haiku-4-5") -> dict[str, Any]:
        return {
            **an_body(model=model),
            "system": [{"type": "text", "text": DOC, "cache_control": EPHEMERAL}],
            "messages": [{"role": "user", "content": question}],
        }

    a, b = prefix.anthropic(body("first?"))[0], prefix.anthropic(body("a different one"))[0]
    assert a == b
    assert prefix.anthropic(body("first?", model="claude-opus-4-6"))[0].key != a.key
    edited = body("first?")
    edited["system"][0]["text"] = DOC.replace("fastest", "slowest", 1)
    assert prefix.anthropic(edited)[0].key != a.key


def test_openai_points_every_128_tokens_and_a_shared_document_shares_them() -> None:
    def body(question: str) -> dict[str, Any]:
        return {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": DOC + question}],
        }

    short, long = (
        prefix.openai(body("?" * 600), first=1024, step=128, ttl_s=300.0),
        prefix.openai(body(" and then some more words " * 40), first=1024, step=128, ttl_s=300.0),
    )
    total = input_tokens(read_openai(body("?" * 600)))
    assert [p.tokens for p in short] == list(range(1024, total + 1, 128))
    # the document is the same; only the tail of the one message differs
    shared = [p for p in short if 4 * (p.tokens - 7) <= len(DOC)]
    assert shared and all(p in long for p in shared)
    assert short[-1] not in long


def test_a_different_image_is_a_different_prefix() -> None:
    def body(data: str) -> dict[str, Any]:
        image = {"type": "image", "source": {"type": "base64", "data": data}}
        return an_body(
            messages=[
                {
                    "role": "user",
                    "content": [image, {"type": "text", "text": DOC, "cache_control": EPHEMERAL}],
                }
            ]
        )

    assert prefix.anthropic(body("AAAA"))[0].key != prefix.anthropic(body("BBBB"))[0].key


@pytest.mark.parametrize(
    ("control", "param"),
    [
        ({"type": "persistent"}, "messages.0.content.0.cache_control.type"),
        ({"type": "ephemeral", "ttl": "10m"}, "messages.0.content.0.cache_control.ttl"),
        ("ephemeral", "messages.0.content.0.cache_control.type"),
    ],
)
def test_invalid_cache_control_is_a_400(control: Any, param: str) -> None:
    body = an_body(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": control}]}
        ]
    )
    with pytest.raises(InvalidRequest) as err:
        prefix.anthropic(body)
    assert err.value.param == param


def test_at_most_four_breakpoints() -> None:
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(InvalidRequest, match="maximum of 4 blocks"):
        prefix.anthropic(an_body(messages=[{"role": "user", "content": blocks}]))
    assert len(prefix.anthropic(an_body(messages=[{"role": "user", "content": blocks[:4]}]))) == 4
