"""OpenAI Chat Completions: request checks, upstream body, stream relay and aggregation.

Upstream calls are always streamed with ``stream_options.include_usage`` so
the gateway sees time to first token and real usage on every request. A
streaming client gets the provider's chunks as they come, minus what it did
not ask for (the usage chunk and the ``"usage": null`` fields when it did not
set ``include_usage``); a non-streaming client gets the chunks folded into
the ``chat.completion`` object the provider would have returned.
"""

from __future__ import annotations

from typing import Any

import orjson

from edge.dialects.common import ChatInfo, StreamBroken, check_type, need
from edge.errors import InvalidRequest, UpstreamError, UpstreamStatus

NAME = "openai"
_USAGE_NULL = b',"usage":null}'
_DONE = b"data: [DONE]\n\n"
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def check_request(body: Any) -> ChatInfo:
    """Validate the fields the gateway relies on; 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", param=None)
    model = body.get("model")
    need(isinstance(model, str) and model, "model: a non-empty string is required", "model")
    messages = body.get("messages")
    need(
        isinstance(messages, list) and messages,
        "messages: a non-empty array is required",
        "messages",
    )
    assert isinstance(model, str) and isinstance(messages, list)
    for i, msg in enumerate(messages):
        need(isinstance(msg, dict), f"messages[{i}]: expected an object", f"messages[{i}]")
        need(
            msg.get("role") in _ROLES,
            f"messages[{i}].role: expected one of {', '.join(_ROLES)}",
            f"messages[{i}].role",
        )
    check_type(body, "stream", bool, "a boolean")
    check_type(body, "stream_options", dict, "an object")
    check_type(body, "max_tokens", int, "an integer")
    check_type(body, "max_completion_tokens", int, "an integer")
    check_type(body, "temperature", (int, float), "a number")
    check_type(body, "top_p", (int, float), "a number")
    check_type(body, "n", int, "an integer")
    check_type(body, "tools", list, "an array")
    check_type(body, "stop", (str, list), "a string or an array of strings")
    check_type(body, "response_format", dict, "an object")
    opts = body.get("stream_options") or {}
    return ChatInfo(
        model=model, stream=bool(body.get("stream")), include_usage=bool(opts.get("include_usage"))
    )


def upstream_body(body: dict[str, Any], upstream_model: str) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    out["stream"] = True
    out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(out)


def error_from_upstream(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> UpstreamStatus:
    message, kind, code, param = f"provider returned HTTP {status}", None, None, None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            kind, code, param = err.get("type"), err.get("code"), err.get("param")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    keep = [(k, v) for k, v in headers if k in (b"retry-after", b"retry-after-ms")]
    return UpstreamStatus(status, message, provider_type=kind, code=code, param=param, headers=keep)


def error_event(err: UpstreamError) -> bytes:
    """The frame the SDK raises on mid-stream: ``data: {"error": {...}}``."""
    return (
        b"data: "
        + orjson.dumps(
            {
                "error": {
                    "message": err.message,
                    "type": "server_error",
                    "param": None,
                    "code": err.code,
                }
            }
        )
        + b"\n\n"
    )


def models_body(names: list[str], owners: dict[str, str], created: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": created, "owned_by": owners[n]}
                for n in names
            ],
        }
    )


class _Choice:
    __slots__ = ("content", "finish_reason", "logprobs", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.logprobs: Any = None


class OpenAIStream:
    """Relay and fold one upstream chat-completion stream (see ``StreamState``)."""

    __slots__ = (
        "_choices",
        "_head",
        "aggregate",
        "done",
        "finished",
        "first_token",
        "include_usage",
        "usage",
    )

    def __init__(self, *, stream: bool, include_usage: bool) -> None:
        self.aggregate = not stream
        self.include_usage = include_usage
        self.first_token = False
        self.finished = False
        self.done = False
        self.usage: dict[str, Any] | None = None
        self._head: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}

    def feed(self, name: bytes, data: bytes) -> bytes:
        if data[:6] == b"[DONE]":
            self.done = True
            return b"" if self.aggregate else _DONE
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamBroken("provider sent a malformed stream chunk") from None
        if not isinstance(obj, dict):
            raise StreamBroken("provider sent a malformed stream chunk")
        if obj.get("error"):
            err = obj["error"]
            message = err.get("message") if isinstance(err, dict) else None
            raise StreamBroken(str(message or "provider reported an error mid-stream"))
        choices = obj.get("choices") or ()
        for choice in choices:
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
                self.first_token = True
            if choice.get("finish_reason"):
                self.finished = True
            if self.aggregate:
                self._fold(choice, delta)
        usage = obj.get("usage")
        if usage:
            self.usage = usage
        if self.aggregate:
            if not self._head:
                self._head = obj
            return b""
        if self.include_usage:
            return b"data: " + data + b"\n\n"
        if not choices and usage:
            return b""  # the usage chunk the client did not ask for
        if data.endswith(_USAGE_NULL):
            data = data[: -len(_USAGE_NULL)] + b"}"
        return b"data: " + data + b"\n\n"

    def _fold(self, choice: dict[str, Any], delta: dict[str, Any]) -> None:
        c = self._choices.get(choice.get("index", 0))
        if c is None:
            c = self._choices[choice.get("index", 0)] = _Choice()
        if delta.get("role"):
            c.role = delta["role"]
        if delta.get("content"):
            c.content.append(delta["content"])
        if delta.get("refusal"):
            c.refusal.append(delta["refusal"])
        for tc in delta.get("tool_calls") or ():
            slot = c.tool_calls.setdefault(
                tc.get("index", 0), {"id": "", "type": "function", "name": "", "arguments": []}
            )
            if tc.get("id"):
                slot["id"] = tc["id"]
            if tc.get("type"):
                slot["type"] = tc["type"]
            fn = tc.get("function") or {}
            if fn.get("name"):
                slot["name"] += fn["name"]
            if fn.get("arguments"):
                slot["arguments"].append(fn["arguments"])
        if choice.get("finish_reason"):
            c.finish_reason = choice["finish_reason"]
        if choice.get("logprobs"):
            c.logprobs = choice["logprobs"]

    def close(self) -> bytes:
        if not self.finished:
            raise StreamBroken("provider stream ended before the answer was complete")
        if self.aggregate or self.done:
            return b""
        return _DONE  # finished but no [DONE]: finalise it ourselves

    def final_body(self) -> bytes:
        head = self._head
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            message: dict[str, Any] = {
                "role": c.role,
                "content": "".join(c.content) if c.content or not c.tool_calls else None,
                "refusal": "".join(c.refusal) if c.refusal else None,
                "annotations": [],
            }
            if c.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": t["id"],
                        "type": t["type"],
                        "function": {"name": t["name"], "arguments": "".join(t["arguments"])},
                    }
                    for _, t in sorted(c.tool_calls.items())
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": c.logprobs,
                    "finish_reason": c.finish_reason,
                }
            )
        out: dict[str, Any] = {
            "id": head.get("id", ""),
            "object": "chat.completion",
            "created": head.get("created", 0),
            "model": head.get("model", ""),
            "choices": choices,
            "usage": self.usage,
        }
        for key in ("service_tier", "system_fingerprint"):
            if key in head:
                out[key] = head[key]
        return orjson.dumps(out)

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)
