"""Pieces both dialects share: request checks, the per-request stream contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edge.errors import InvalidRequest, UpstreamError


class StreamBroken(UpstreamError):
    """The provider's stream failed or ended before the answer was complete."""


@dataclass(slots=True)
class ChatInfo:
    """What the gateway needs to know of a chat request before it goes upstream."""

    model: str
    stream: bool
    include_usage: bool = False


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
