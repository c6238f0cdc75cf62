"""The simulator's answer to a final assistant message (a prefill)."""

from __future__ import annotations

import pytest

from edge.simulate.behaviour import Behaviour, ProfileError
from edge.simulate.generate import answer, input_tokens, read_anthropic, read_openai

SAY = "Repeat after me: one two three four five"


def ask_openai(prefill: str | None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": SAY}]
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    return messages


def test_a_prefill_is_continued_and_kept_out_of_the_seed() -> None:
    plain = read_openai({"model": "m", "messages": ask_openai(None)})
    filled = read_openai({"model": "m", "messages": ask_openai("one two")})
    assert filled.prefill == "one two" and filled.texts == plain.texts
    assert answer(filled, 12).text == " three four five"
    assert answer(filled, 12, prefill="restart").text == "one two three four five"
    # the prefill is input all the same
    assert input_tokens(filled) > input_tokens(plain)


def test_a_prefill_ending_inside_a_token_continues_from_there() -> None:
    filled = read_anthropic(
        {"model": "m", "max_tokens": 50, "messages": [
            {"role": "user", "content": SAY},
            {"role": "assistant", "content": [{"type": "text", "text": "one tw"}]},
        ]}
    )  # fmt: skip
    assert answer(filled, 12).text == "o three four five"


def test_words_the_answer_does_not_begin_with_get_the_whole_answer() -> None:
    filled = read_openai({"model": "m", "messages": ask_openai("zero")})
    assert answer(filled, 12).text == "one two three four five"


def test_a_final_assistant_tool_call_is_no_prefill() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [*ask_openai(None), {"role": "assistant", "content": None, "tool_calls": [call]}]
    assert read_openai({"model": "m", "messages": messages}).prefill == ""


def test_the_prefill_knob_is_checked() -> None:
    assert Behaviour(prefill="refuse").prefill == "refuse"
    with pytest.raises(ProfileError, match="prefill"):
        Behaviour(prefill="maybe")
