"""Anthropic Messages: request checks, upstream body, stream relay and aggregation.

Upstream calls are always streamed. A streaming client gets the provider's
events as they come (``ping`` included); a non-streaming client gets them
folded into the ``message`` object the provider would have returned: text
deltas joined, ``input_json_delta`` fragments parsed into ``input``, usage
taken from ``message_start`` and overwritten by the cumulative figures of
``message_delta`` (as the SDK's accumulator does).
"""

from __future__ import annotations

from typing import Any

import orjson

from edge.dialects.common import ChatInfo, StreamBroken, check_type, need
from edge.errors import InvalidRequest, UpstreamError, UpstreamStatus

NAME = "anthropic"


def check_request(body: Any, *, count_only: bool = False) -> ChatInfo:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", param=None)
    model = body.get("model")
    need(isinstance(model, str) and model, "model: Field required", "model")
    messages = body.get("messages")
    need(isinstance(messages, list), "messages: Field required", "messages")
    assert isinstance(model, str) and isinstance(messages, list)
    for i, msg in enumerate(messages):
        need(isinstance(msg, dict), f"messages.{i}: Input should be an object", f"messages.{i}")
        need(
            msg.get("role") in ("user", "assistant"),
            f"messages.{i}.role: Input should be 'user' or 'assistant'",
            f"messages.{i}.role",
        )
        need("content" in msg, f"messages.{i}.content: Field required", f"messages.{i}.content")
    if not count_only:
        need("max_tokens" in body, "max_tokens: Field required", "max_tokens")
        check_type(body, "max_tokens", int, "an integer")
        check_type(body, "stream", bool, "a boolean")
    check_type(body, "system", (str, list), "a string or an array of text blocks")
    check_type(body, "tools", list, "an array")
    check_type(body, "stop_sequences", list, "an array of strings")
    check_type(body, "temperature", (int, float), "a number")
    return ChatInfo(model=model, stream=bool(body.get("stream")) and not count_only)


def upstream_body(body: dict[str, Any], upstream_model: str) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    out["stream"] = True
    return orjson.dumps(out)


def count_body(body: dict[str, Any], upstream_model: str) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    return orjson.dumps(out)


def error_from_upstream(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> UpstreamStatus:
    message, kind = f"provider returned HTTP {status}", None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            kind = err.get("type")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    keep = [(k, v) for k, v in headers if k in (b"retry-after", b"retry-after-ms")]
    return UpstreamStatus(status, message, provider_type=kind, headers=keep)


def error_event(err: UpstreamError) -> bytes:
    body = {"type": "error", "error": {"type": err.types()[1], "message": err.message}}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


def models_body(names: list[str]) -> bytes:
    data = [
        {"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"}
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


class AnthropicStream:
    """Relay and fold one upstream Messages stream (see ``StreamState``)."""

    __slots__ = (
        "_blocks",
        "_message",
        "_partial",
        "aggregate",
        "done",
        "finished",
        "first_token",
        "usage",
    )

    def __init__(self, *, stream: bool) -> None:
        self.aggregate = not stream
        self.first_token = False
        self.finished = False
        self.done = False
        self.usage: dict[str, Any] | None = None
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._partial: dict[int, list[str]] = {}

    def feed(self, name: bytes, data: bytes) -> bytes:
        if name == b"ping":
            return b"" if self.aggregate else b"event: ping\ndata: " + data + b"\n\n"
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamBroken("provider sent a malformed stream event") from None
        if not isinstance(obj, dict):
            raise StreamBroken("provider sent a malformed stream event")
        kind = obj.get("type") or name.decode("latin-1")
        if kind == "error":
            err = obj.get("error") or {}
            raise StreamBroken(str(err.get("message") or "provider reported an error mid-stream"))
        if kind == "content_block_delta":
            self.first_token = True
            if self.aggregate:
                self._delta(obj.get("index", 0), obj.get("delta") or {})
        elif kind == "message_start":
            self._message = obj.get("message") or {}
            self.usage = dict(self._message.get("usage") or {})
        elif kind == "content_block_start":
            block = dict(obj.get("content_block") or {})
            if block.get("type") == "tool_use":
                self.first_token = True
            self._blocks[obj.get("index", 0)] = block
        elif kind == "message_delta":
            delta = obj.get("delta") or {}
            if delta.get("stop_reason"):
                self.finished = True
            self._message.update(
                {k: v for k, v in delta.items() if k in ("stop_reason", "stop_sequence")}
            )
            if self.usage is None:
                self.usage = {}
            self.usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True
        if self.aggregate:
            return b""
        return b"event: " + (name or kind.encode()) + b"\ndata: " + data + b"\n\n"

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self._partial.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def close(self) -> bytes:
        if not self.finished:
            raise StreamBroken("provider stream ended before the answer was complete")
        if self.aggregate or self.done:
            return b""
        return b'event: message_stop\ndata: {"type":"message_stop"}\n\n'  # finished but no message_stop

    def final_body(self) -> bytes:
        content = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if index in self._partial:
                raw = "".join(self._partial[index])
                try:
                    block["input"] = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    raise StreamBroken("provider sent tool input that is not valid JSON") from None
            content.append(block)
        out = dict(self._message)
        out["content"] = content
        out["usage"] = self.usage or {}
        out.setdefault("stop_sequence", None)
        return orjson.dumps(out)

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)
