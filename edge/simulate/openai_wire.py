"""OpenAI Chat Completions wire format, as the simulated provider writes it.

Shapes follow the official SDK's types (``openai/types/chat/chat_completion.py``,
``chat_completion_chunk.py``, ``completion_usage.py``) and the API's error
bodies ``{"error": {"message", "type", "param", "code"}}``. Streams are
``data: <json>\\n\\n`` frames ending in ``data: [DONE]``; with
``stream_options.include_usage`` every chunk carries ``"usage": null`` and one
last chunk with ``"choices": []`` carries the totals.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from edge.simulate.generate import Answer, Ask, read_openai
from edge.simulate.script import StreamParts

NAME = "openai"
REQUEST_ID_HEADER = b"x-request-id"
FINISH = {"end": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}
FINGERPRINT = "fp_sim0001"


def new_ids() -> tuple[str, str]:
    """(completion id, request id) in the API's formats."""
    raw = os.urandom(16).hex()
    return "chatcmpl-" + raw[:29].ljust(29, "0"), "req_" + raw


def read(body: Any) -> Ask:
    return read_openai(body)


def _usage(a: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": a.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_id(key: str) -> str:
    return "call_" + key


def completion(a: Answer, model: str, cid: str, created: int) -> bytes:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if a.tool_calls else a.text,
        "refusal": None,
        "annotations": [],
    }
    if a.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_id(c.key),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in a.tool_calls
        ]
    return orjson.dumps(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": FINISH[a.finish],
                }
            ],
            "usage": _usage(a),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


def stream(a: Answer, ask: Ask, model: str, cid: str, created: int) -> StreamParts:
    head = (
        b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,"service_tier":"default","system_fingerprint":"%s","choices":'
        % (
            cid.encode(),
            created,
            orjson.dumps(model),
            FINGERPRINT.encode(),
        )
    )
    tail = b',"usage":null}\n\n' if ask.include_usage else b"}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + head + orjson.dumps([choice]) + tail

    tokens: list[bytes] = []
    if a.tool_calls:
        for i, c in enumerate(a.tool_calls):
            start = {
                "index": i,
                "id": _tool_id(c.key),
                "type": "function",
                "function": {"name": c.name, "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [start]}
            if i == 0:
                delta = {"role": "assistant", "content": None, "refusal": None, **delta}
            tokens.append(chunk(delta))
            tokens.extend(
                chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                for p in c.pieces
            )
    else:
        # one template for every content chunk: only the token is serialised per chunk
        pre = b"data: " + head + b'[{"index":0,"delta":{"content":'
        post = b'},"logprobs":null,"finish_reason":null}]' + tail
        tokens = [pre + orjson.dumps(t) + post for t in a.tokens]
        tokens[0] = chunk({"role": "assistant", "content": "", "refusal": None}) + tokens[0]
    end = chunk({}, FINISH[a.finish])
    if ask.include_usage:
        end += b"data: " + head + b'[],"usage":' + orjson.dumps(_usage(a)) + b"}\n\n"
    return StreamParts(
        preamble=b"",
        tokens=tokens,
        end=end,
        terminator=b"data: [DONE]\n\n",
        end_usage=ask.include_usage,
    )


def malformed(cid: str) -> bytes:
    return (
        b'data: {"id":"%s","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\n\n'
        % cid.encode()
    )


_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    413: ("invalid_request_error", None, "Request too large."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
    529: ("server_error", "overloaded", "The server is overloaded, please try again later."),
}


def error(
    status: int,
    message: str = "",
    code: str | None = None,
    param: str | None = None,
    request_id: str = "",
) -> bytes:
    kind, default_code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
    )
    if code == "context_length_exceeded":
        message = (
            message
            or "This model's maximum context length was exceeded. Please reduce the length of the messages."
        )
        param = param or "messages"
    elif code == "content_policy":
        code = "content_policy_violation"
        message = message or "Your request was rejected as a result of our safety system."
    return orjson.dumps(
        {
            "error": {
                "message": message or default_message,
                "type": kind,
                "param": param,
                "code": code or default_code,
            }
        }
    )


def models(names: list[str], created: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": created, "owned_by": "system"}
                for n in names
            ],
        }
    )
