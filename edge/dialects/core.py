"""The dialect core: what every client protocol provides, and the one stream state they share.

A dialect (OpenAI Chat Completions, Anthropic Messages, ...) is a ``Dialect``
object: it checks a request against its field table, writes the upstream
body, translates to and from the canonical request, decodes its provider's
SSE events into canonical events, and writes answers and errors in its own
shape. The relay and the gate hold ``Dialect`` objects and never ask which
one they have.

One upstream stream is one ``Stream`` whatever the pair of dialects:

- the *upstream* dialect's ``Decoder`` parses each provider event once and
  turns it into canonical events (``canonical.Event``), keeping the parsed
  object (``obj``) and the provider's usage so far (``usage``);
- ``Stream`` derives from those events what the race needs (first token,
  finished, complete, the generated pieces);
- an ``Output`` writes what the client gets: for the same dialect the
  provider's own bytes (``Dialect.relay``; the non-streaming fold keeps
  provider-specific fields such as logprobs, thinking, citations, audio and
  annotations), for a translation the caller dialect's ``Encoder`` or a
  canonical ``Answer`` rendered at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from edge.dialects.canonical import Answer, ChatRequest, Event
from edge.dialects.common import ChatInfo, StreamBroken
from edge.errors import ErrorDialect, InvalidRequest, UpstreamError, UpstreamStatus

# ------------------------------------------------------------------ request field tables


@dataclass(frozen=True, slots=True)
class Field:
    """One top-level request field: its JSON types, and the range or values it may take."""

    kinds: tuple[type, ...]
    what: str  # how the 400 names the expected type
    lo: float | None = None
    hi: float | None = None
    allowed: tuple[str, ...] = ()  # for strings: the values the provider accepts
    items: type | None = None  # for arrays: the type of every item


INT = (int,)
NUMBER = (int, float)
OBJECT = (dict,)
BOOL = (bool,)


def check_fields(body: dict[str, Any], table: dict[str, Field]) -> None:
    """Every present, non-null field of the table has its type, range and value (bools are
    not numbers); 400 naming the parameter otherwise (the first failing field in the
    table's order, whatever the body's)."""
    for key, value in body.items():  # (a body names a few of the table's many fields)
        f = table.get(key)
        if f is not None and value is not None and _field_error(key, value, f) is not None:
            for k, g in table.items():
                v = body.get(k)
                err = None if v is None else _field_error(k, v, g)
                if err is not None:
                    raise err


def _field_error(key: str, value: Any, f: Field) -> InvalidRequest | None:
    # (messages are formatted only for a field that fails: this runs on every request)
    if not isinstance(value, f.kinds) or (value.__class__ is bool and bool not in f.kinds):
        return InvalidRequest(f"{key}: expected {f.what}", param=key)
    if value.__class__ in (int, float):
        if f.lo is not None and value < f.lo:
            return InvalidRequest(f"{key}: {value} is less than the minimum of {f.lo:g}", param=key)
        if f.hi is not None and value > f.hi:
            return InvalidRequest(
                f"{key}: {value} is greater than the maximum of {f.hi:g}", param=key
            )
    elif f.allowed and isinstance(value, str):
        if value not in f.allowed:
            return InvalidRequest(
                f"{key}: {value!r} is not one of {', '.join(map(repr, f.allowed))}", param=key
            )
    elif f.items is not None and isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, f.items):
                return InvalidRequest(f"{key}[{i}]: expected {f.what}", param=f"{key}[{i}]")
    return None


# ------------------------------------------------------------------ protocols


class Decoder(Protocol):
    """A provider's SSE events as canonical events (one per upstream stream)."""

    obj: dict[str, Any] | None  # the last event's JSON object (None for markers such as [DONE])
    usage: dict[str, Any] | None  # the provider's own usage as far as it came
    cut: bool  # the decoder ended the answer itself (it matched a stop sequence)

    def feed(self, name: bytes, data: bytes) -> list[Event]:
        """Canonical events of one provider event; ``StreamBroken`` on an error event."""
        ...


class Output(Protocol):
    """What the client gets of one upstream stream."""

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        """Bytes for a streaming client now (``b""`` when aggregating)."""
        ...

    def close(self, done: bool) -> bytes:
        """Bytes that end a finished stream (``done``: the provider sent its terminator)."""
        ...

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        """The aggregated answer of a non-streaming request."""
        ...

    def error_event(self, err: UpstreamError) -> bytes:
        """A dialect-correct error event for a stream that already sent bytes (after what
        was sent: a Responses stream numbers it)."""
        ...

    def answer_object(self) -> dict[str, Any] | None:
        """The finished answer as an object, when the output keeps one (a Responses answer,
        which the gateway stores); None otherwise."""
        ...


class EventWriter(Protocol):
    """Canonical events as a client's stream bytes (a translation's encoder, or a rescue's
    continuation of the message a client is reading)."""

    def encode(self, ev: Event) -> bytes: ...

    def close(self) -> bytes:
        """What ends the stream when the provider ended without its terminator."""
        ...


class Dialect(Protocol):
    """One client protocol (see the module docstring)."""

    NAME: str  # its name (labels, jobs)
    KIND: str  # the provider kind that serves it as it is (others get it translated)
    ERRORS: ErrorDialect  # the shape of its error bodies
    UPSTREAM_PATH: bytes  # appended to the provider's path prefix
    LIMIT_PARAM: str  # the output limit parameter its 400s name

    def check_request(self, body: Any) -> ChatInfo: ...

    def upstream_body(self, body: dict[str, Any], upstream_model: str) -> bytes:
        """The request for a provider of this dialect (always streamed)."""
        ...

    def with_max_tokens(self, body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
        """The request with every output limit it sets lowered to ``max_tokens``."""
        ...

    def to_canonical(self, body: dict[str, Any], target: str) -> ChatRequest: ...

    def from_canonical(
        self, req: ChatRequest, upstream_model: str, default_max_tokens: int
    ) -> dict[str, Any]: ...

    def error_from_upstream(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> UpstreamStatus: ...

    def error_event(self, err: UpstreamError) -> bytes:
        """A dialect-correct error event for a stream that already sent bytes."""
        ...

    def decoder(self, stops: tuple[str, ...] = ()) -> Decoder:
        """A decoder of this dialect's provider stream; ``stops``: sequences the provider was
        not given and the decoder must match (a translation that needs to know which one)."""
        ...

    def output(self, info: ChatInfo, *, translated: bool, created: int) -> Output:
        """What the client gets: the provider's own stream passed through (or folded into
        its own answer), or canonical events written in this dialect (a translation)."""
        ...

    def render(self, answer: Answer, created: int) -> bytes:
        """A folded canonical answer as this dialect's answer body."""
        ...


# ------------------------------------------------------------------ the shared stream state


class Stream:
    """Per-request state of one upstream stream (the ``StreamState`` the race reads)."""

    __slots__ = (
        "_caller",
        "_decode",
        "_decoder",
        "_out",
        "_write",
        "aggregate",
        "answered_model",
        "done",
        "fingerprint",
        "finish",
        "finished",
        "first_token",
        "mixed",
        "other",
        "text",
        "tool_args",
    )

    def __init__(self, caller: Dialect, decoder: Decoder, out: Output, *, aggregate: bool) -> None:
        self._caller = caller
        self._decoder = decoder
        self._out = out
        self._decode = decoder.feed  # (bound once: called for every provider event)
        self._write = out.feed
        self.aggregate = aggregate
        self.first_token = False
        self.finished = False
        self.done = False
        # what the online checks read (edge/quality/online.py) and a rescue continues: the
        # text alone, each tool call's arguments, the canonical finish reason, and whether
        # output other than text came (a tool call, thinking, audio)
        self.text: list[str] = []
        self.other: list[str] = []  # the generated pieces that are not text
        self.tool_args: list[list[str]] = []
        self.finish: str | None = None
        self.mixed = False
        # the model version the provider answered with: its model id and (OpenAI) its
        # system_fingerprint, from the stream's start (edge/quality/schedule.py watches them)
        self.answered_model = ""
        self.fingerprint = ""

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._decoder.usage

    @property
    def cut(self) -> bool:
        return self._decoder.cut

    @property
    def output(self) -> list[str]:
        """The generated pieces (text first), to estimate tokens when the usage never came."""
        return self.text + self.other

    def feed(self, name: bytes, data: bytes) -> bytes:
        events = self._decode(name, data)
        if len(events) == 1 and events[0][0] == "text":  # the common event: a piece of text
            piece = events[0][1]
            self.first_token = True
            if piece.__class__ is str and piece:
                self.text.append(piece)
            return self._write(name, data, self._decoder.obj, events)
        for ev in events:
            kind = ev[0]
            if kind == "text":
                self.first_token = True
                piece = ev[1]
                if piece.__class__ is str and piece:
                    self.text.append(piece)
            elif kind == "tool_args" or kind == "produced":
                self.first_token = True
                self.mixed = True
                piece = ev[-1]
                if piece.__class__ is str and piece:
                    self.other.append(piece)
                    if kind == "tool_args" and ev[1] < len(self.tool_args):
                        self.tool_args[ev[1]].append(piece)
            elif kind == "tool_start":
                self.first_token = True
                self.mixed = True
                self.other.append(ev[3])
                while len(self.tool_args) <= ev[1]:
                    self.tool_args.append([])
            elif kind == "finish":
                self.finished = True
                self.finish = ev[1]
            elif kind == "end":
                self.done = True
            elif kind == "start":
                self.answered_model = ev[2]
                obj = self._decoder.obj
                if obj is not None:
                    self.fingerprint = str(obj.get("system_fingerprint") or "")
        return self._write(name, data, self._decoder.obj, events)

    @property
    def complete(self) -> bool:
        """The answer and its usage are in; a stream that breaks now has lost nothing."""
        return self.done or (self.finished and self._decoder.usage is not None)

    def close(self) -> bytes:
        if not self.finished:
            raise StreamBroken("provider stream ended before the answer was complete")
        return self._out.close(self.done)

    def final_body(self) -> bytes:
        return self._out.final_body(self._decoder.usage)

    def error_event(self, err: UpstreamError) -> bytes:
        return self._out.error_event(err)

    def resume(self) -> EventWriter | None:
        """A fresh writer of canonical events as more of the message the client is reading
        (no second start, the same ids, block indexes and numbering carried on), or None when
        this output cannot be continued (a non-streaming answer)."""
        own = getattr(self._out, "resume", None)
        return own() if own is not None else None

    def answer_object(self) -> dict[str, Any] | None:
        return self._out.answer_object()


class _Encode:
    """A translation to a streaming client: each canonical event encoded at once."""

    __slots__ = ("_caller", "_encoder")

    def __init__(self, encoder: Any, caller: Dialect) -> None:
        self._encoder = encoder
        self._caller = caller

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        encode = self._encoder.encode
        return b"".join([encode(ev) for ev in events])

    def close(self, done: bool) -> bytes:
        return bytes(self._encoder.close())

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        raise AssertionError("a streaming answer has no final body")

    def error_event(self, err: UpstreamError) -> bytes:
        return self._caller.error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None

    def resume(self) -> EventWriter | None:
        own = getattr(self._encoder, "resume", None)
        return own() if own is not None else None


class _Fold:
    """A translation to a non-streaming client: the events folded, rendered at the end."""

    __slots__ = ("_answer", "_caller", "_created")

    def __init__(self, caller: Dialect, created: int) -> None:
        self._caller = caller
        self._created = created
        self._answer = Answer()

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        apply = self._answer.apply
        for ev in events:
            apply(ev)
        return b""

    def close(self, done: bool) -> bytes:
        return b""

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        return self._caller.render(self._answer, self._created)

    def error_event(self, err: UpstreamError) -> bytes:
        return self._caller.error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None


def stream_for(caller: Dialect, upstream: Dialect, info: ChatInfo) -> Stream:
    """The state of one attempt: the provider's stream read in its dialect, answered in the
    caller's (passed through when they are the same)."""
    translated = upstream is not caller
    out = caller.output(info, translated=translated, created=int(time.time()))
    decoder = upstream.decoder(info.stop) if translated else upstream.decoder()
    return Stream(caller, decoder, out, aggregate=not info.stream)


def encoded(encoder: Any, caller: Dialect) -> Output:
    """An ``Encoder`` (``encode(event)``, ``close()``) as an ``Output``."""
    return _Encode(encoder, caller)


def folded(caller: Dialect, created: int) -> Output:
    """Canonical events folded into an ``Answer``, rendered by ``caller`` at the end."""
    return _Fold(caller, created)
