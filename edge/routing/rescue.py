"""Rescue after the first byte: a broken answer continued on a fallback (no I/O).

When a stream breaks after text reached the client (a cut, a stall past the
idle deadline, a malformed event), the tier may ask for the answer to be
continued rather than ended with an error event (``rescue = "continue"``).
The fallback gets the caller's request plus the delivered text as an
assistant prefill (``continuation``); a model that cannot take a prefill
gets the request alone and starts over. What comes back is joined to what
the client already has by a ``Splice`` and written by a ``Continuation``,
an ``Output`` that carries on the message the client is reading (its ids,
its open block, its numbering) through the caller dialect's own writer.

Invariants:

- The client sees one answer: no second start (role chunk, ``message_start``),
  one finish reason (the fallback's), and usage that adds what the broken
  attempt was billed to what the fallback reports, so it says what was billed.
- A fallback that starts over is detected by its text: while what it wrote is
  a prefix of what the client has, it is held back; once it has rewritten all
  of it, only the rest is written. With a prefill sent, text that leaves the
  delivered text's path is the continuation itself. Without one, it cannot be
  aligned (``Unaligned``): the stream ends with the dialect's error event, as
  it does for a tool call that was half delivered or comes from the fallback.
- A truncated answer is never presented as complete: anything that cannot be
  joined fails the stream instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edge.budget.pricing import Tokens
from edge.dialects.canonical import ChatRequest, Event, Message, Part, Usage
from edge.dialects.common import StreamBroken
from edge.dialects.core import EventWriter
from edge.errors import EdgeError, UpstreamError, UpstreamStatus

# edge_rescues_total outcomes
CONTINUED = "continued"  # the fallback continued the prefill
RESTARTED = "restarted"  # it started over; the overlap with the delivered text was skipped
UNALIGNED = "unaligned"  # its text could not be joined to the delivered text: error event
NOT_TEXT = "not_text"  # a tool call (or thinking) was half delivered: error event
UNAVAILABLE = "unavailable"  # no fallback could continue (none left, all failed, no time)
BROKEN = "broken"  # the continuation broke too: error event
DISABLED = "disabled"  # the tier says rescue = "error": error event


class Unaligned(StreamBroken):
    """The fallback's answer cannot be joined to what the client already has."""


# How providers word a refused prefill: Claude 4.6 and later ("does not support assistant
# message prefill ... must end with a user message"), and a prefill Anthropic rejects for its
# form ("final assistant content cannot end with trailing whitespace").
_PREFILL_WORDS = ("prefill", "must end with a user message", "final assistant content")


def prefill_refused(err: EdgeError) -> bool:
    """Whether a provider's 400 refused the assistant prefill (retried once without it)."""
    if not isinstance(err, UpstreamStatus) or err.upstream_status != 400:
        return False
    text = err.message.lower()
    return any(w in text for w in _PREFILL_WORDS)


def continuation(req: ChatRequest, delivered: str, remaining: int | None) -> ChatRequest:
    """The caller's request with ``delivered`` as the assistant's unfinished turn: appended to
    a prefill the caller already sent (the delivered text continues it), else a new turn.
    ``remaining``: the output tokens the caller's limit still allows."""
    messages = list(req.messages)
    if delivered:
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and last.parts[-1].kind == "text":
            parts = [
                *last.parts[:-1],
                replace(last.parts[-1], text=last.parts[-1].text + delivered),
            ]
            messages[-1] = Message("assistant", parts)
        else:
            messages.append(Message("assistant", [Part("text", text=delivered)]))
    out = replace(req, messages=messages)
    if remaining is not None and req.max_tokens is not None:
        out.max_tokens = max(1, min(req.max_tokens, remaining))
    return out


class Splice:
    """Joins a fallback's text to the ``delivered`` text the client already has.

    ``prefilled``: the prefill as the fallback received it (a provider may refuse
    trailing whitespace, so it can be ``delivered`` minus its trailing
    whitespace), or None when the fallback got no prefill and must start over.
    ``feed`` returns the text to write now (``""`` while undecided) and
    raises ``Unaligned``; ``finish`` decides what is still held when the
    fallback's answer ends.
    """

    __slots__ = ("_delivered", "_gap", "_held", "_prefilled", "_strip", "mode")

    def __init__(self, delivered: str, prefilled: str | None) -> None:
        if prefilled is not None and not delivered.startswith(prefilled):
            raise ValueError("the prefill must be a prefix of the delivered text")
        self._delivered = delivered
        self._prefilled = prefilled
        # what the client has past the prefill: whitespace a provider would not take
        self._gap = delivered[len(prefilled) :] if prefilled is not None else ""
        self._held = ""
        self._strip = False
        self.mode = ""  # "" while undecided, then CONTINUED or RESTARTED

    def feed(self, piece: str) -> str:
        if self.mode:
            return self._emit(piece)
        self._held += piece
        return self._decide(final=False)

    def finish(self) -> str:
        """The fallback's answer ended: what is still held, decided now."""
        if self.mode:
            return ""
        return self._decide(final=True)

    def _decide(self, final: bool) -> str:
        held, delivered = self._held, self._delivered
        if held.startswith(delivered):
            self.mode, self._held = RESTARTED, ""
            return held[len(delivered) :]
        if delivered.startswith(held) and not final:
            return ""  # still on the delivered text's path: a restart, or not yet known
        if self._prefilled is None:
            raise Unaligned(
                "the fallback's answer could not be aligned with the text already delivered"
            )
        self.mode, self._held = CONTINUED, ""
        # the separator the prefill could not carry is the client's already: a continuation
        # that starts with whitespace does not get to write it twice
        self._strip = bool(self._gap)
        return self._emit(held)

    def _emit(self, piece: str) -> str:
        if self._strip:
            piece = piece.lstrip()
            if piece:
                self._strip = False
        return piece


def usage_of(tokens: Tokens) -> Usage:
    return Usage(
        input=tokens.input,
        output=tokens.output,
        cache_read=tokens.cache_read,
        cache_write=tokens.cache_write,
    )


def _plus(before: Usage, after: Usage) -> Usage:
    return Usage(
        input=before.input + after.input,
        output=before.output + after.output,
        cache_read=before.cache_read + after.cache_read,
        cache_write=before.cache_write + after.cache_write,
        provider=after.provider,
    )


class Continuation:
    """A fallback's stream written as more of the message the client is reading (an
    ``Output``): text through the ``Splice``, then the fallback's finish, its usage plus
    what the broken attempt was billed (``before``), and the end. A tool call from the
    fallback fails it (``Unaligned``): the client's message is text so far."""

    __slots__ = ("_before", "_errors", "_writer", "splice")

    def __init__(
        self,
        writer: EventWriter,
        splice: Splice,
        before: Usage,
        errors: Callable[[UpstreamError], bytes],
    ) -> None:
        self._writer = writer
        self.splice = splice
        self._before = before
        self._errors = errors  # the client dialect's error event

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        out: list[bytes] = []
        encode = self._writer.encode
        for ev in events:
            kind = ev[0]
            if kind == "text":
                text = self.splice.feed(ev[1])
                if text:
                    out.append(encode(("text", text)))
            elif kind == "finish" or kind == "end":
                text = self.splice.finish()
                if text:
                    out.append(encode(("text", text)))
                out.append(encode(ev))
            elif kind == "usage":
                out.append(encode(("usage", _plus(self._before, ev[1]))))
            elif kind == "tool_start" or kind == "tool_args":
                raise Unaligned("the fallback answered a text answer's rest with a tool call")
            # "start" (the client has its start) and "produced" (no counterpart) write nothing
        return b"".join(out)

    def close(self, done: bool) -> bytes:
        text = self.splice.finish()
        head = self._writer.encode(("text", text)) if text else b""
        return head + self._writer.close()

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        raise AssertionError("a rescue continues a streaming answer only")

    def error_event(self, err: UpstreamError) -> bytes:
        return self._errors(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None
