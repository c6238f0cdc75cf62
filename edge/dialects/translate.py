"""A provider's stream in one dialect, answered in the other (per request, no I/O).

``TranslatingStream`` is a ``StreamState``: the provider dialect's
``Decoder`` turns each SSE event into canonical events; for a streaming
client the caller dialect's ``Encoder`` writes them out at once, for a
non-streaming client they are folded into an ``Answer`` and rendered as the
body the caller's SDK expects.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from edge.dialects import anthropic, openai, responses
from edge.dialects.canonical import Answer
from edge.dialects.common import StreamBroken
from edge.errors import UpstreamError


class TranslatingStream:
    __slots__ = (
        "_answer",
        "_caller",
        "_created",
        "_decoder",
        "_echo",
        "_encoder",
        "_rendered",
        "aggregate",
        "done",
        "finished",
        "first_token",
        "output",
        "usage",
    )

    def __init__(
        self,
        provider: str,
        caller: str,
        *,
        stream: bool,
        include_usage: bool,
        echo: dict[str, Any] | None = None,
    ) -> None:
        self._decoder: openai.Decoder | anthropic.Decoder = (
            openai.Decoder() if provider == "openai" else anthropic.Decoder()
        )
        self._caller = caller
        self._created = int(time.time())
        self._echo = echo or {}  # a Responses caller's settings, echoed in its answer
        self._rendered: dict[str, Any] | None = None
        self._encoder: openai.Encoder | anthropic.Encoder | responses.Encoder | None = None
        if stream and caller == "responses":
            self._encoder = responses.Encoder(self._echo, self._created)
        elif stream:
            self._encoder = (
                openai.Encoder(include_usage, self._created)
                if caller == "openai"
                else anthropic.Encoder()
            )
        self.aggregate = not stream
        self._answer = Answer()
        self.output: list[str] = []  # the generated pieces, to estimate tokens without usage
        self.first_token = False
        self.finished = False
        self.done = False
        self.usage: dict[str, Any] | None = None

    def feed(self, name: bytes, data: bytes) -> bytes:
        out = []
        for ev in self._decoder.feed(name, data):
            kind = ev[0]
            if kind in ("text", "tool_start", "tool_args"):
                self.first_token = True
                if kind != "tool_start" and isinstance(ev[-1], str):
                    self.output.append(ev[-1])
            elif kind == "finish":
                self.finished = True
            elif kind == "usage":
                u = ev[1]
                # the provider's own usage object: its cache fields price the answer
                self.usage = dict(u.provider) or {
                    "prompt_tokens": u.prompt,
                    "completion_tokens": u.output,
                }
            elif kind == "end":
                self.done = True
            if self._encoder is None:
                self._answer.apply(ev)
            else:
                out.append(self._encoder.encode(ev))
        return b"".join(out)

    def close(self) -> bytes:
        if not self.finished:
            raise StreamBroken("provider stream ended before the answer was complete")
        return b"" if self._encoder is None else self._encoder.close()

    @property
    def complete(self) -> bool:
        return self.done or (self.finished and self.usage is not None)

    def response_object(self) -> dict[str, Any] | None:
        """A Responses caller's final Response object (what the gateway stores)."""
        if isinstance(self._encoder, responses.Encoder):
            return self._encoder.response if self._encoder.done else None
        if self._caller == "responses" and self.finished:
            if self._rendered is None:
                self._rendered = responses.render(self._answer, self._created, self._echo)
            return self._rendered
        return None

    def final_body(self) -> bytes:
        if self._caller == "responses":
            return orjson.dumps(self.response_object())
        if self._caller == "openai":
            return openai.render(self._answer, self._created)
        return anthropic.render(self._answer)

    def error_event(self, err: UpstreamError) -> bytes:
        if isinstance(self._encoder, responses.Encoder):
            return self._encoder.error_event(err)  # numbered after what was sent
        return openai.error_event(err) if self._caller == "openai" else anthropic.error_event(err)
