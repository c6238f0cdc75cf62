"""Which prompt prefixes a provider still holds in its cache, so the estimate prices them as
cache reads (no I/O; the clock is passed in).

Both providers bill a cached prefix at a fraction of the input price: Anthropic
for the prefix up to a ``cache_control`` breakpoint (cached for 5 minutes, or an
hour with ``"ttl": "1h"``, the lifetime refreshed by each hit; at least 1024
tokens), OpenAI automatically for a prompt of at least 1024 tokens (its longest
previously seen prefix, in 128-token steps; kept 5-10 minutes of inactivity,
5 here to err on the dear side). A coding agent's 30k-token system prompt costs
ten times less on its second call than on its first; pricing both alike would
degrade or block every such session.

``prefix_of`` finds a request's cacheable prefix (its digest and estimated
tokens); ``PrefixMemory`` remembers, per model, the prefixes this gateway sent
and when they expire. Only what this worker sent is known: a prefix warmed by
another worker or instance is priced cold (the estimate errs high, never low).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

MIN_TOKENS = 1024  # neither provider caches a shorter prefix
OPENAI_STEP = 128
TTL_S = 300.0
TTL_LONG_S = 3600.0


@dataclass(frozen=True, slots=True)
class Prefix:
    key: bytes  # digest of the prefix as sent
    tokens: int  # its estimated input tokens
    explicit: bool  # up to a cache_control breakpoint (Anthropic caches only these)
    ttl_s: float


def _marked(block: Any) -> bool:
    return isinstance(block, dict) and isinstance(block.get("cache_control"), dict)


def _ttl(block: Any) -> float:
    return TTL_LONG_S if block["cache_control"].get("ttl") == "1h" else TTL_S


_MEDIA = ("image", "image_url", "input_image", "document", "file", "input_file")


def _piece(block: Any) -> tuple[bytes, bytes]:
    """(what identifies a block, its text for the estimate: media are priced apart)."""
    if isinstance(block, str):
        data = block.encode()
        return data, data
    if isinstance(block, dict):
        if block.get("type") in _MEDIA:
            return orjson.dumps(block), b""
        if isinstance(block.get("text"), str):
            data = block["text"].encode()
            return data, data
    data = orjson.dumps(block)
    return data, data


def prefix_of(body: dict[str, Any], estimate: Callable[[bytes], int]) -> list[Prefix]:
    """The cacheable prefixes of a chat request (either dialect), longest first.

    Explicit: the prompt up to each ``cache_control`` breakpoint (Anthropic reads the longest
    one it holds; an agent moves its last breakpoint every turn while the system prompt's
    stays warm), in the order the provider caches: tools, system, messages. And OpenAI's
    automatic one: everything but the last message, in 128-token steps. Shorter than the
    providers' minimum: none."""
    pieces: list[tuple[bytes, bytes]] = []
    marks: list[tuple[int, float]] = []  # (end of the prefix in pieces, its lifetime)
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        pieces.append(_piece(tool))
        if _marked(tool):
            marks.append((len(pieces), _ttl(tool)))
    system = body.get("system")
    for block in system if isinstance(system, list) else ([system] if system else []):
        pieces.append(_piece(block))
        if _marked(block):
            marks.append((len(pieces), _ttl(block)))
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    auto = len(pieces)
    for n, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        for block in content if isinstance(content, list) else [content]:
            pieces.append(_piece(block))
            if _marked(block):
                marks.append((len(pieces), _ttl(block)))
        if n < len(messages) - 1:
            auto = len(pieces)
    if _marked(body):  # a top-level breakpoint: the whole prompt
        marks.append((len(pieces), _ttl(body)))
    ends = {end: (ttl, True) for end, ttl in marks[-4:]}
    ends.setdefault(auto, (TTL_S, False))
    out: list[Prefix] = []
    digest = hashlib.blake2b(digest_size=16)
    tokens = 0
    # one pass: each piece estimated and hashed once, a prefix's figures taken at its end
    for i, (ident, text) in enumerate(pieces[: max(ends)], 1):
        tokens += estimate(text) if text else 0
        digest.update(ident + b"\x00")
        if i not in ends:
            continue
        ttl, explicit = ends[i]
        size = tokens if explicit else tokens - tokens % OPENAI_STEP
        if size >= MIN_TOKENS:
            out.append(Prefix(digest.copy().digest(), size, explicit, ttl))
    out.sort(key=lambda p: -p.tokens)
    return out


class PrefixMemory:
    """Per model, the prefixes sent lately and when the provider lets them expire (bounded)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._until: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self.capacity = capacity

    def cached(self, model: str, explicit_only: bool, prefixes: list[Prefix], now: float) -> int:
        """Tokens of the longest of ``prefixes`` that ``model`` holds in its cache (0: cold).
        ``explicit_only``: the model caches breakpoints only (Anthropic)."""
        for prefix in prefixes:  # longest first
            if explicit_only and not prefix.explicit:
                continue
            until = self._until.get((model, prefix.key))
            if until is not None and until > now:
                return prefix.tokens
        return 0

    def sent(self, model: str, explicit_only: bool, prefixes: list[Prefix], now: float) -> None:
        """``model`` took a request with these prefixes: cached from now, or renewed."""
        for prefix in prefixes:
            if explicit_only and not prefix.explicit:
                continue
            key = (model, prefix.key)
            self._until[key] = now + prefix.ttl_s
            self._until.move_to_end(key)
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)
