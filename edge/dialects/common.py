"""Pieces both dialects share: request checks, the per-request stream contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from edge.errors import InvalidRequest, UpstreamError


class StreamBroken(UpstreamError):
    """The provider's stream failed or ended before the answer was complete."""


@dataclass(slots=True)
class ChatInfo:
    """What the gateway needs to know of a chat request before it goes upstream."""

    model: str
    stream: bool
    include_usage: bool = False


def parse_event(data: bytes) -> dict[str, Any]:
    """One provider SSE event's JSON object; anything else fails the attempt cleanly."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StreamBroken("provider sent a malformed stream event") from None
    if not isinstance(obj, dict):
        raise StreamBroken("provider sent a malformed stream event")
    return obj


def need(cond: object, message: str, param: str) -> None:
    if not cond:
        raise InvalidRequest(message, param=param)


def check_type(body: dict[str, Any], key: str, kinds: type | tuple[type, ...], what: str) -> None:
    """A present, non-null field must have the given type (bools are not ints)."""
    value = body.get(key)
    if value is None:
        return
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in _as_tuple(kinds))
    need(ok, f"{key}: expected {what}", key)


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


class StreamState(Protocol):
    """Per-request state of one upstream stream (never shared between requests).

    ``feed`` takes one SSE event from the provider and returns the bytes to
    send to a streaming client (``b""`` for nothing); it raises
    ``StreamBroken`` when the provider reports an error in the stream.
    """

    first_token: bool
    finished: bool
    usage: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        """The answer and its usage are in; a stream that breaks now has lost nothing."""
        ...

    def feed(self, name: bytes, data: bytes) -> bytes: ...

    def close(self) -> bytes:
        """Bytes that end a complete stream for the client, or raise ``StreamBroken``."""
        ...

    def final_body(self) -> bytes:
        """The aggregated non-streaming answer."""
        ...

    def error_event(self, err: UpstreamError) -> bytes:
        """A dialect-correct error event for a stream that already sent bytes."""
        ...


# Capability bits a request needs from a model (the same values as hotpath.route).
NEEDS_TOOLS, NEEDS_VISION, NEEDS_JSON = 1, 2, 4


def _content_parts(content: Any, parts: list[bytes]) -> int:
    """Append the text of a message's content; return capability bits it needs (images)."""
    if isinstance(content, str):
        parts.append(content.encode())
        return 0
    needs = 0
    for block in content or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")).encode())
        elif kind in ("image_url", "image"):
            needs |= NEEDS_VISION
        elif kind == "tool_result":
            needs |= _content_parts(block.get("content"), parts)
        elif kind == "tool_use":
            parts.append(orjson.dumps(block.get("input") or {}))
    return needs


def estimate_inputs(body: dict[str, Any]) -> tuple[list[bytes], int, int, int | None]:
    """The text parts a request sends (both dialects), its message count, the capabilities it
    needs and the max output it asked for: the inputs of the token estimate and the decision."""
    parts: list[bytes] = []
    needs = 0
    system = body.get("system")
    if system:
        needs |= _content_parts(system, parts)
    messages = body.get("messages") or ()
    for msg in messages:
        needs |= _content_parts(msg.get("content"), parts)
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            parts.append(str(fn.get("name", "")).encode() + str(fn.get("arguments", "")).encode())
    tools = body.get("tools")
    if tools:
        needs |= NEEDS_TOOLS
        parts.append(orjson.dumps(tools))
    fmt = body.get("response_format") or (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        needs |= NEEDS_JSON
    max_out = body.get("max_completion_tokens") or body.get("max_tokens")
    return parts, len(messages), needs, max_out if isinstance(max_out, int) else None
