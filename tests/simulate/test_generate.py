"""Deterministic answers and request validation (no sockets)."""

from __future__ import annotations

import random

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.simulate.generate import (
    InvalidRequest,
    answer,
    input_tokens,
    read_anthropic,
    read_openai,
    sample_json,
)


def oa(**kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


def test_same_request_same_answer_and_usage_matches_text() -> None:
    a = answer(read_openai(oa()), 10)
    b = answer(read_openai(oa(stream=True)), 10)
    assert a.text == b.text and len(a.tokens) == a.output_tokens == 10
    assert a.input_tokens == input_tokens(read_openai(oa()))


def test_input_tokens_same_in_both_dialects() -> None:
    o = read_openai(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    a = read_anthropic(
        {
            "model": "m",
            "max_tokens": 5,
            "system": "be nice",
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    assert input_tokens(o) == input_tokens(a) + 4  # the system turn is a message in OpenAI


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (oa(stream="yes"), "stream"),
        (oa(max_tokens=0), "max_tokens"),
        (oa(stop=[1]), "stop"),
        (oa(tool_choice="sometimes"), "tool_choice"),
        (oa(n=2), "n"),
        ([1, 2], "body"),
    ],
)
def test_openai_validation_names_the_field(body: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        read_openai(body)
    assert err.value.param == param


def test_anthropic_validation() -> None:
    with pytest.raises(InvalidRequest) as err:
        read_anthropic({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert err.value.param == "max_tokens"
    with pytest.raises(InvalidRequest) as err:
        read_anthropic(
            {"model": "m", "max_tokens": 3, "messages": [{"role": "system", "content": "x"}]}
        )
    assert err.value.param == "messages.0.role"
    assert (
        read_anthropic(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}, count_only=True
        ).max_tokens
        is None
    )


def test_named_tool_must_exist() -> None:
    ask = read_openai(
        oa(
            tools=[{"type": "function", "function": {"name": "a"}}],
            tool_choice={"type": "function", "function": {"name": "b"}},
        )
    )
    with pytest.raises(InvalidRequest):
        answer(ask, 5)


def test_tool_call_mode_always_and_never() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    assert answer(read_openai(oa(tools=tools)), 5, "always").finish == "tool"
    assert answer(read_openai(oa(tools=tools)), 5, "auto").finish == "end"
    named = read_openai(
        {"model": "m", "messages": [{"role": "user", "content": "please lookup x"}], "tools": tools}
    )
    assert answer(named, 5, "never").finish == "end"
    calls = answer(named, 5).tool_calls
    assert [c.name for c in calls] == ["lookup"] and sum(
        len(c.pieces) + 1 for c in calls
    ) == answer(named, 5).output_tokens


_leaf = st.sampled_from(
    [
        {"type": "string"},
        {"type": "string", "minLength": 12, "maxLength": 20},
        {"type": "integer", "minimum": -5, "maximum": 5},
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "boolean"},
        {"enum": ["a", "b"]},
        {"type": ["null", "integer"]},
        {"const": 3},
    ]
)
_schemas = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.dictionaries(st.text("abcdef", min_size=1, max_size=4), inner, max_size=4).map(
            lambda props: {
                "type": "object",
                "properties": props,
                "required": list(props),
                "additionalProperties": False,
            }
        ),
        inner.map(lambda item: {"type": "array", "items": item, "minItems": 1, "maxItems": 3}),
        st.lists(inner, min_size=1, max_size=3).map(lambda alts: {"anyOf": alts}),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(schema=_schemas, seed=st.integers(0, 2**32))
def test_sampled_json_validates_against_its_schema(schema: dict[str, object], seed: int) -> None:
    jsonschema.validate(sample_json(schema, random.Random(seed)), schema)


def test_sample_json_follows_local_refs() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/pt"}},
        "required": ["p"],
        "$defs": {
            "pt": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
        },
    }
    value = sample_json(schema, random.Random(1))
    jsonschema.validate(value, schema)
    assert isinstance(value["p"]["x"], int)
