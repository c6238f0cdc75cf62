"""The model version a provider answered with, as the stream sees it (the scheduled gold run's
``model`` trigger): the answered model id in either dialect, OpenAI's ``system_fingerprint``."""

from __future__ import annotations

import orjson

from edge.dialects.anthropic import DIALECT as ANTHROPIC
from edge.dialects.common import ChatInfo
from edge.dialects.core import stream_for
from edge.dialects.openai import DIALECT as OPENAI


def chunk(**fields: object) -> bytes:
    return orjson.dumps({"object": "chat.completion.chunk", "created": 1, **fields})


def test_an_openai_stream_keeps_the_answered_model_and_fingerprint() -> None:
    for caller in (OPENAI, ANTHROPIC):  # passed through, and translated
        state = stream_for(caller, OPENAI, ChatInfo("gpt-4o-mini", True, False))
        assert (state.answered_model, state.fingerprint) == ("", "")
        state.feed(
            b"",
            chunk(
                id="c1",
                model="gpt-4o-mini-2024-07-18",
                system_fingerprint="fp_44709d6fcb",
                choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            ),
        )
        state.feed(
            b"",
            chunk(
                id="c1",
                model="gpt-4o-mini-2024-07-18",
                system_fingerprint="fp_other",  # a later chunk does not move the start's
                choices=[{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
            ),
        )
        assert state.answered_model == "gpt-4o-mini-2024-07-18"
        assert state.fingerprint == "fp_44709d6fcb"


def test_an_anthropic_stream_keeps_the_answered_model() -> None:
    state = stream_for(ANTHROPIC, ANTHROPIC, ChatInfo("claude-haiku-4-5", True))
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5-20251001",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        },
    }
    state.feed(b"message_start", orjson.dumps(start))
    assert (state.answered_model, state.fingerprint) == ("claude-haiku-4-5-20251001", "")
