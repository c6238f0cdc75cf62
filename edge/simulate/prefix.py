"""Where a request's cacheable prefixes end, in the simulator's tokens (pure, no I/O).

Providers cache a prompt by prefix: the same leading content, in the same
order (tools, then system, then messages), byte for byte. This module walks
a request body that ``generate`` has already validated, in that order,
counting tokens by ``generate``'s input rule (``text_tokens`` per text part,
``MESSAGE_TOKENS`` per message, ``REQUEST_TOKENS`` per request), and returns
``CachePoint``s: how many tokens a prefix holds, a digest of its content
(dialect and model included) and how long it lives once cached.

- Anthropic: one point per ``cache_control`` breakpoint, at the end of the
  block that carries it (a tool, a system block, a message content block):
  at most 4, each ``{"type": "ephemeral"}`` with an optional ``"ttl"`` of
  ``"5m"`` or ``"1h"`` (anything else is the API's 400).
- OpenAI: automatic, a point every ``step`` tokens from ``first`` on (Chat Completions
  and the Responses API alike).

A text part is hashed as it is counted, 4 bytes a token, so a prefix that
ends inside a long text covers exactly its first tokens, and two prompts that
share a document but not the question after it share the prefix. Any other
part (an image, a tool call or result, a message's role) is hashed whole
before its tokens are counted: it is never split. Invariant (tested): the
walk counts the same total as ``generate.input_tokens``, so caching changes
how a request's input is split, never the input it reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from edge.simulate.generate import (
    MESSAGE_TOKENS,
    REQUEST_TOKENS,
    InvalidRequest,
    text_tokens,
    texts_of,
)

MAX_BREAKPOINTS = 4
TTLS = {"5m": 300.0, "1h": 3600.0}
_SEP = b"\xff"  # never occurs in UTF-8 text: parts cannot run into each other in the hash


@dataclass(frozen=True, slots=True)
class CachePoint:
    tokens: int  # tokens of the prefix, overheads included
    key: bytes  # digest of the prefix's content, dialect and model
    ttl_s: float  # lifetime once cached, refreshed on each hit


class _Walk:
    """A running count and hash of the prompt; snapshots become points."""

    __slots__ = ("_h", "_next", "_step", "_ttl_s", "points", "tokens")

    def __init__(
        self, dialect: str, model: str, *, first: int = 0, step: int = 0, ttl_s: float = 0.0
    ) -> None:
        self._h = hashlib.blake2b(digest_size=16)
        self._h.update(dialect.encode() + b"\x00" + model.encode())
        self.tokens = 0
        self._step = step
        self._next = max(first, 1) if step else 0  # the next automatic point; 0: none
        self._ttl_s = ttl_s
        self.points: list[CachePoint] = []

    def atom(self, tag: bytes, tokens: int) -> None:
        """A part hashed whole, then counted: points inside it cover all of it."""
        self._h.update(_SEP + tag)
        self.tokens += tokens
        while self._next and self._next <= self.tokens:
            self._auto()

    def text(self, text: str) -> None:
        data = text.encode()
        self._h.update(_SEP + b"t")
        start = self.tokens
        end = start + text_tokens(text)
        fed = 0
        while self._next and self._next <= end:
            cut = min(4 * (self._next - start), len(data))
            self._h.update(data[fed:cut])
            fed = cut
            self._auto()
        self._h.update(data[fed:])
        self.tokens = end

    def _auto(self) -> None:
        self.points.append(CachePoint(self._next, self._h.digest(), self._ttl_s))
        self._next += self._step

    def breakpoint(self, ttl_s: float) -> None:
        self.points.append(CachePoint(self.tokens, self._h.digest(), ttl_s))


def _meta(part: dict[str, Any], *drop: str) -> bytes:
    kept = {k: v for k, v in part.items() if k not in drop and k != "cache_control"}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def _block(w: _Walk, block: Any, breakpoints: bool) -> None:
    if not isinstance(block, dict):  # validated already; keeps the walk total for odd input
        return
    if block.get("type") == "text":
        w.atom(b"b" + _meta(block, "text"), 0)
        w.text(block["text"])
    else:
        texts: list[str] = []
        texts_of([block], "content", texts)
        w.atom(b"b" + _meta(block), sum(text_tokens(t) for t in texts))
    if breakpoints and "cache_control" in block:
        w.breakpoint(TTLS[block["cache_control"].get("ttl", "5m")])


def _check(control: Any, where: str) -> None:
    param = f"{where}.cache_control"
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise InvalidRequest(f"{param}.type: Input should be 'ephemeral'", f"{param}.type")
    ttl = control.get("ttl", "5m")
    if ttl not in TTLS:
        raise InvalidRequest(f"{param}.ttl: Input should be '5m' or '1h'", f"{param}.ttl")


def _breakpoints(body: dict[str, Any]) -> int:
    """Validate every ``cache_control`` like the API does; return how many there are."""
    found: list[tuple[Any, str]] = []
    for i, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and "cache_control" in tool:
            found.append((tool["cache_control"], f"tools.{i}"))
    system = body.get("system")
    if isinstance(system, list):
        for i, block in enumerate(system):
            if isinstance(block, dict) and "cache_control" in block:
                found.append((block["cache_control"], f"system.{i}"))
    for m, msg in enumerate(body.get("messages") or []):
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            for i, block in enumerate(content):
                if isinstance(block, dict) and "cache_control" in block:
                    found.append((block["cache_control"], f"messages.{m}.content.{i}"))
    for control, where in found:
        _check(control, where)
    if len(found) > MAX_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    return len(found)


def anthropic(body: dict[str, Any]) -> list[CachePoint]:
    """The breakpoints of a Messages request, shortest first (400 on a bad ``cache_control``)."""
    if not _breakpoints(body):
        return []
    w = _Walk("anthropic", str(body["model"]))
    w.atom(b"r", REQUEST_TOKENS)
    for tool in body.get("tools") or []:
        w.text(
            tool["name"]
            + str(tool.get("description", ""))
            + orjson.dumps(tool.get("input_schema")).decode()
        )
        if "cache_control" in tool:
            w.breakpoint(TTLS[tool["cache_control"].get("ttl", "5m")])
    system = body.get("system")
    if isinstance(system, str):
        w.text(system)
    elif isinstance(system, list):
        for block in system:
            _block(w, block, breakpoints=True)
    for msg in body["messages"]:
        w.atom(b"m" + str(msg["role"]).encode(), MESSAGE_TOKENS)
        content = msg["content"]
        if isinstance(content, str):
            w.text(content)
        elif isinstance(content, list):
            for block in content:
                _block(w, block, breakpoints=True)
    return w.points


def openai(body: dict[str, Any], *, first: int, step: int, ttl_s: float) -> list[CachePoint]:
    """A point every ``step`` tokens from ``first`` on, for a Chat Completions request."""
    w = _Walk("openai", str(body["model"]), first=first, step=step, ttl_s=ttl_s)
    w.atom(b"r", REQUEST_TOKENS)
    for tool in body.get("tools") or []:
        fn = tool["function"]
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        w.text(fn["name"] + str(fn.get("description", "")) + orjson.dumps(schema).decode())
    for msg in body["messages"]:
        w.atom(b"m" + _meta(msg, "content", "tool_calls"), MESSAGE_TOKENS)
        content = msg.get("content")
        if isinstance(content, str):
            w.text(content)
        elif isinstance(content, list):
            for part in content:
                _block(w, part, breakpoints=False)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            w.atom(b"c" + _meta(call, "function"), 0)
            w.text(str(fn.get("name", "")) + str(fn.get("arguments", "")))
    return w.points


def responses(body: dict[str, Any], *, first: int, step: int, ttl_s: float) -> list[CachePoint]:
    """A point every ``step`` tokens from ``first`` on, for a Responses request (tools, then
    the instructions, then the input items)."""
    w = _Walk("responses", str(body["model"]), first=first, step=step, ttl_s=ttl_s)
    w.atom(b"r", REQUEST_TOKENS)
    for tool in body.get("tools") or []:
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        w.text(tool["name"] + str(tool.get("description") or "") + orjson.dumps(schema).decode())
    if body.get("instructions"):
        w.atom(b"i", MESSAGE_TOKENS)
        w.text(body["instructions"])
    items = body["input"]
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        w.atom(b"m" + _meta(item, "content", "output", "arguments", "summary"), MESSAGE_TOKENS)
        if kind == "function_call":
            w.text(item["name"] + item["arguments"])
            continue
        if kind == "reasoning":
            for s in item.get("summary") or []:
                if isinstance(s, dict) and isinstance(s.get("text"), str):
                    w.text(s["text"])
            continue
        content = item.get("content") if kind == "message" else item.get("output")
        if isinstance(content, str):
            w.text(content)
        elif isinstance(content, list):
            for part in content:
                _response_part(w, part)
    return w.points


def _response_part(w: _Walk, part: dict[str, Any]) -> None:
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        w.atom(b"b" + _meta(part, "text", "annotations", "logprobs"), 0)
        w.text(part["text"])
    elif kind == "refusal":
        w.atom(b"b" + _meta(part, "refusal"), 0)
        w.text(str(part.get("refusal", "")))
    else:  # an attachment: hashed whole, counted as the generator counts it
        w.atom(b"b" + _meta(part), text_tokens("[attachment]" * 64))
