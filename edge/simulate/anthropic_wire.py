"""Anthropic Messages wire format, as the simulated provider writes it.

Shapes follow the official SDK's types (``anthropic/types/message.py``,
``raw_message_stream_event.py``, ``usage.py``) and the API's error bodies
``{"type": "error", "error": {"type", "message"}, "request_id"}``. A stream
is ``message_start``, then per block ``content_block_start``, deltas and
``content_block_stop`` (a ``ping`` after the first block starts), then
``message_delta`` with the stop reason and cumulative usage, then
``message_stop``.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from edge.simulate.generate import Answer, Ask, read_anthropic
from edge.simulate.script import StreamParts

NAME = "anthropic"
REQUEST_ID_HEADER = b"request-id"
STOP = {
    "end": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool": "tool_use",
}
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b62(n: int) -> str:
    raw = os.urandom(n)
    return "".join(_B62[b % 62] for b in raw)


def new_ids() -> tuple[str, str]:
    """(message id, request id) in the API's formats."""
    return "msg_01" + _b62(22), "req_011C" + _b62(20)


def read(body: Any) -> Ask:
    return read_anthropic(body)


def _tool_id(key: str) -> str:
    return "toolu_01" + key[:22]


def _usage(a: Answer, output_tokens: int) -> dict[str, Any]:
    # input_tokens excludes both cache figures: the three add up to the whole input
    return {
        "input_tokens": a.uncached_input,
        "cache_creation_input_tokens": a.cache_write,
        "cache_read_input_tokens": a.cache_read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _blocks(a: Answer) -> list[dict[str, Any]]:
    if a.tool_calls:
        return [
            {
                "type": "tool_use",
                "id": _tool_id(c.key),
                "name": c.name,
                "input": orjson.loads(c.arguments),
            }
            for c in a.tool_calls
        ]
    return [{"type": "text", "text": a.text}]


def completion(a: Answer, model: str, mid: str, created: int) -> bytes:
    return orjson.dumps(
        {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _blocks(a),
            "stop_reason": STOP[a.finish],
            "stop_sequence": a.stop_sequence,
            "usage": _usage(a, a.output_tokens),
        }
    )


def _event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def stream(a: Answer, ask: Ask, model: str, mid: str, created: int) -> StreamParts:
    start = {
        "type": "message_start",
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(a, 1),
        },
    }
    tokens: list[bytes] = []
    if a.tool_calls:
        for i, c in enumerate(a.tool_calls):
            opening = b""
            if i > 0:
                opening = _event(
                    b"content_block_stop", {"type": "content_block_stop", "index": i - 1}
                )
            block = {"type": "tool_use", "id": _tool_id(c.key), "name": c.name, "input": {}}
            opening += _event(
                b"content_block_start",
                {"type": "content_block_start", "index": i, "content_block": block},
            )
            if i == 0:
                opening += _PING
            tokens.append(opening)
            tokens.extend(
                _event(
                    b"content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": p},
                    },
                )
                for p in c.pieces
            )
        last = len(a.tool_calls) - 1
    else:
        # one template for every text delta: only the token is serialised per event
        pre = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
        tokens = [pre + orjson.dumps(t) + b"}}\n\n" for t in a.tokens]
        block = {"type": "text", "text": ""}
        tokens[0] = (
            _event(
                b"content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            )
            + _PING
            + tokens[0]
        )
        last = 0
    end = _event(b"content_block_stop", {"type": "content_block_stop", "index": last}) + _event(
        b"message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": STOP[a.finish], "stop_sequence": a.stop_sequence},
            "usage": {
                "input_tokens": a.uncached_input,
                "cache_creation_input_tokens": a.cache_write,
                "cache_read_input_tokens": a.cache_read,
                "output_tokens": a.output_tokens,
            },
        },
    )
    return StreamParts(
        preamble=_event(b"message_start", start),
        tokens=tokens,
        end=end,
        terminator=b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        start_usage=True,
        end_usage=True,
    )


def malformed(mid: str) -> bytes:
    return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del\n\n'


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "Number of requests has exceeded your rate limit. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def error(
    status: int,
    message: str = "",
    code: str | None = None,
    param: str | None = None,
    request_id: str = "",
) -> bytes:
    kind, default_message = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
    )
    if code == "context_length_exceeded":
        message = message or "prompt is too long: the request exceeds the model's context window"
    elif code == "content_policy":
        message = message or "Output blocked by content filtering policy"
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind, "message": message or default_message},
    }
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def models(names: list[str], created: int) -> bytes:
    data = [
        {
            "type": "model",
            "id": n,
            "display_name": n,
            "created_at": "2025-10-01T00:00:00Z",
            "lifecycle": "active",
            "max_input_tokens": 200000,
            "max_tokens": 64000,
        }
        for n in names
    ]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    )
