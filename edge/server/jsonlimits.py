"""Structural limits of a JSON request body, checked on its raw bytes before it is parsed.

orjson turns three bytes (``{},``) into a 64-byte dict plus a list slot: a
32 MiB body of ``[{},{},...]`` is a gigabyte once parsed. So before
``orjson.loads`` (and while the body is still arriving) the raw bytes are
measured with C-speed byte operations only:

- items: ``{``, ``[`` and ``,`` outside strings (about the number of
  containers, array elements and object members: what parsing allocates
  beyond the body's own bytes);
- depth: the deepest nesting of ``{``/``[`` outside strings.

While the body arrives, ``BodyScan.feed`` counts those bytes in each chunk,
inside strings or not (an upper bound, free to compute); only when the bound
passes the limit is the prefix received so far measured exactly, so a dense
body is refused after its first few hundred kilobytes, and an honest body
whose strings are full of commas and braces is never refused for them.
``measure`` strips escapes (``\\\\``, ``\\"``) and splits at quotes: even
pieces are structure, odd ones strings; a document with more strings than
its item limit allows is refused by its quote count before any split, so the
split can never be the expansion it guards against. Every copy it makes is at
most the body's size.

Invalid JSON is not this module's business: what it cannot measure it lets
through, and the parser refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import InvalidRequest

# orjson writes at most 254 levels (it parses 1024): deeper bodies cannot be forwarded
FORWARDABLE_DEPTH = 254
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"{}[]")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_items: int = 200_000
    max_depth: int = 64
    max_messages: int = 10_000
    max_tools: int = 1_000


class JsonTooLarge(InvalidRequest):
    """A request body over one of the structural limits (400, naming the limit)."""


def too_deep(limit: int, name: str = "EDGE_MAX_JSON_DEPTH") -> JsonTooLarge:
    return JsonTooLarge(f"request body: JSON nested more than {limit} levels deep ({name})")


def too_many_items(limit: int) -> JsonTooLarge:
    return JsonTooLarge(
        f"request body: more than {limit} JSON items (array elements, object members and "
        "containers; EDGE_MAX_JSON_ITEMS)"
    )


def _raw_items(data: bytes) -> int:
    return data.count(b"{") + data.count(b"[") + data.count(b",")


def measure(body: bytes, limits: JsonLimits, whole: bool = True) -> JsonTooLarge | None:
    """The limit ``body`` (the whole document, or a prefix of it when not ``whole``) breaks,
    if any. A prefix is checked for items only: its depth so far is not final."""
    raw = _raw_items(body)
    check_depth = whole and body.count(b"{") + body.count(b"[") > limits.max_depth
    if raw <= limits.max_items and not check_depth:
        return None  # an upper bound within the limits: nothing to measure
    text = body
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    quotes = text.count(b'"')
    # every string is an element, a member's key or its value: at most two per item, plus one
    if quotes // 2 > 2 * limits.max_items + 1:
        return too_many_items(limits.max_items)
    structure = b"".join(text.split(b'"')[::2]) if quotes else text
    if _raw_items(structure) > limits.max_items:
        return too_many_items(limits.max_items)
    if not check_depth:
        return None
    brackets = structure.translate(_BRACKETS, _NOT_BRACKETS)
    # each pass removes every innermost pair: a balanced string is empty after `depth` passes
    for _ in range(limits.max_depth):
        if not brackets:
            return None
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return None  # unbalanced: not JSON, the parser says so
        brackets = shorter
    return too_deep(limits.max_depth) if brackets else None


class BodyScan:
    """Counts a body's items as its chunks arrive; measures the prefix exactly only when the
    count passes the limit (then again each time it doubles: O(body) work in all)."""

    __slots__ = ("_limits", "_next", "_raw")

    def __init__(self, limits: JsonLimits) -> None:
        self._limits = limits
        self._raw = 0
        self._next = limits.max_items

    def feed(self, chunk: bytes, prefix: list[bytes]) -> JsonTooLarge | None:
        """``chunk`` arrived; ``prefix`` is every chunk so far, ``chunk`` included."""
        self._raw += _raw_items(chunk)
        if self._raw <= self._next:
            return None
        self._next = 2 * self._raw
        return measure(b"".join(prefix), self._limits, whole=False)


def check_counts(body: object, limits: JsonLimits) -> None:
    """After parsing: the number of messages (or Responses ``input`` items) and tools."""
    if not isinstance(body, dict):
        return
    for field, limit, name in (
        ("messages", limits.max_messages, "EDGE_MAX_MESSAGES"),
        ("input", limits.max_messages, "EDGE_MAX_MESSAGES"),
        ("tools", limits.max_tools, "EDGE_MAX_TOOLS"),
    ):
        value = body.get(field)
        if isinstance(value, list) and len(value) > limit:
            raise JsonTooLarge(
                f"{field}: more than {limit} entries ({name})", param=field, code="too_many_items"
            )
