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
    stop: tuple[str, ...] = ()  # stop sequences a translation may have to match itself
    echo: dict[str, Any] | None = None  # a Responses request's settings, echoed in its answer


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


def check_list_of(value: Any, kind: type, what: str, where: str) -> None:
    """A present, non-null value must be an array of ``kind`` (400 naming the first bad item)."""
    if value is None:
        return
    need(isinstance(value, list), f"{where}: expected an array of {what}", where)
    for i, item in enumerate(value):
        need(isinstance(item, kind), f"{where}[{i}]: expected {what}", f"{where}[{i}]")


def check_content(content: Any, where: str, *, nullable: bool) -> None:
    """A message's content: a string, or an array of blocks (objects with a string ``type``)."""
    if content is None and nullable:
        return
    if isinstance(content, str):
        return
    need(
        isinstance(content, list),
        f"{where}: expected a string or an array of content blocks",
        where,
    )
    for i, block in enumerate(content):
        need(
            isinstance(block, dict) and isinstance(block.get("type"), str),
            f"{where}[{i}]: expected a content block (an object with a type)",
            f"{where}[{i}]",
        )


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
    done: bool  # the provider's terminator came (or the gateway ended the answer: ``cut``)

    @property
    def output(self) -> list[str]:
        """The generated pieces so far: the estimate when the usage never came."""
        ...

    # the online quality checks' view of the answer (edge/quality/online.py)
    text: list[str]  # the answer's text pieces
    tool_args: list[list[str]]  # each tool call's argument fragments
    finish: str | None  # the canonical finish reason, once seen

    @property
    def cut(self) -> bool:
        """The gateway ended the answer itself (a stop sequence): read no further."""
        ...

    @property
    def usage(self) -> dict[str, Any] | None:
        """The provider's usage as far as it came (final once complete)."""
        ...

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

    def answer_object(self) -> dict[str, Any] | None:
        """The finished answer as an object, when its dialect keeps one (Responses)."""
        ...


_MEDIA = ("image", "image_url", "input_image", "document", "file", "input_file")


def _content_parts(content: Any, parts: list[bytes], media: list[dict[str, Any]]) -> None:
    """Append the text of a message's content, and its media blocks (priced apart)."""
    if isinstance(content, str):
        parts.append(content.encode())
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("text", "input_text", "output_text"):
            parts.append(str(block.get("text", "")).encode())
        elif kind in _MEDIA:
            media.append(block)
        elif kind == "tool_result":
            _content_parts(block.get("content"), parts, media)
        elif kind == "tool_use":
            parts.append(orjson.dumps(block.get("input") or {}))


def estimate_inputs(body: dict[str, Any]) -> tuple[list[bytes], int, list[dict[str, Any]]]:
    """The text parts a request sends (every dialect), its message count and its media blocks
    (images, documents): the inputs of the token estimate."""
    parts: list[bytes] = []
    media: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        _content_parts(system, parts, media)
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = _items(body, parts, media)
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        _content_parts(msg.get("content"), parts, media)
        calls = msg.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            if isinstance(fn, dict):
                parts.append(
                    str(fn.get("name", "")).encode() + str(fn.get("arguments", "")).encode()
                )
    tools = body.get("tools")
    if tools:
        parts.append(orjson.dumps(tools))
    return parts, len(messages), media


def _items(
    body: dict[str, Any], parts: list[bytes], media: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A Responses request's instructions and input items, as the messages the estimate
    counts (a function call's name and arguments, a function output's content)."""
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        parts.append(instructions.encode())
    items = body.get("input")
    if isinstance(items, str):
        return [{"content": items}]
    if not isinstance(items, list):
        return []
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            parts.append(str(item.get("name", "")).encode() + str(item.get("arguments", "")).encode())  # fmt: skip
            out.append({})
        elif item.get("type") == "function_call_output":
            out.append({"content": item.get("output")})
        else:
            out.append(item)
    return out


_CEILINGS = {
    "openai": ("max_tokens", "max_completion_tokens"),
    "anthropic": ("max_tokens",),
    "responses": ("max_output_tokens",),
}


def output_ceilings(body: dict[str, Any], dialect: str) -> list[int]:
    """The output limits a request sets: Anthropic's ``max_tokens``; OpenAI's ``max_tokens``
    and ``max_completion_tokens`` (a client may send both: each is checked, the lower binds);
    the Responses API's ``max_output_tokens``."""
    keys = _CEILINGS[dialect]
    out = []
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(value)
    return out
