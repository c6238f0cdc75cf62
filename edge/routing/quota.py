"""Provider quotas, as the providers' rate-limit headers tell them, per model and worker.

Every answer of a provider (a 200 or a 429) says how much of its quota is
left and when it resets:

- OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; resets
  are Go durations until the reset (``1s``, ``6m0s``, ``20ms``);
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,
  output-tokens}-{limit,remaining,reset}``; resets are RFC 3339 instants
  (``2025-08-21T12:40:59Z``).

``Quotas.room`` answers, without I/O, whether a model can take one more
request of a given size: what the last answer said is left, less what was
sent since and not yet answered (in flight), less the share of the limit the
request's tier leaves to higher tiers (its ``quota_reserve``), must cover
one request and its estimated tokens; otherwise the seconds until the
reset. A figure whose reset has passed is whole again: its limit, less what
is in flight (so the requests held for that reset do not all rush the
provider at once); one without a limit is forgotten. A header that does not parse is ignored:
nothing here may fail a request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RENEW_S = 0.1  # a renewed figure (limit known, reset passed, no answer since) is trusted this long
KINDS = ("requests", "tokens", "input_tokens", "output_tokens")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_s(text: str) -> float | None:
    """A Go duration (``6m0s``, ``1.5s``, ``350ms``) in seconds; None when it is not one."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for m in _GO_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else (0.0 if text == "0" else None)


def rfc3339_s(text: str) -> float | None:
    """An RFC 3339 instant as Unix seconds; None when it is not one."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class Figure:
    limit: int  # 0: not told
    remaining: int
    reset_in_s: float


_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-")
_WHATS = ("limit", "remaining", "reset")
# what a rate-limit header's name means, (kind, limit | remaining | reset) or None; names are
# few (a dozen per provider), so each is worked out once per worker
_NAMES: dict[bytes, tuple[str, str] | None] = {}
# a reset's text as a duration (an OpenAI Go duration) or an instant (an Anthropic RFC 3339
# time); the same few texts repeat on every answer within a window
_RESETS: dict[str, tuple[bool, float] | None] = {}
_MEMO_MAX = 512  # (a provider that sent endless new names or values costs a parse, not memory)


def _name(name: bytes) -> tuple[str, str] | None:
    key = name.decode("latin-1").lower()
    if key.startswith("x-ratelimit-"):
        what, _, kind = key[len("x-ratelimit-") :].partition("-")
    else:
        kind, _, what = key[len("anthropic-ratelimit-") :].rpartition("-")
    kind = kind.replace("-", "_")
    return (kind, what) if kind in KINDS and what in _WHATS else None


def _reset(raw: str) -> tuple[bool, float] | None:
    """(is an instant, seconds): a duration until the reset or the reset's Unix time."""
    d = go_duration_s(raw)
    if d is not None:
        return False, d
    at = rfc3339_s(raw) if raw.strip() else None
    return None if at is None else (True, at)


def read_headers(headers: list[tuple[bytes, bytes]], wall: float) -> dict[str, Figure]:
    """The quota figures in a provider's answer headers (either provider's names)."""
    found: dict[str, dict[str, str]] = {}
    for name, value in headers:
        if not name.startswith(_PREFIXES):
            continue  # (most of an answer's headers; names come lowercased from h11)
        if name in _NAMES:
            meaning = _NAMES[name]
        else:
            meaning = _name(name)
            if len(_NAMES) < _MEMO_MAX:
                _NAMES[name] = meaning
        if meaning is not None:
            kind, what = meaning
            found.setdefault(kind, {})[what] = value.decode("latin-1")
    out = {}
    for kind, parts in found.items():
        try:
            remaining = int(float(parts["remaining"]))
            limit = int(float(parts.get("limit", "0")))
        except (KeyError, ValueError):
            continue
        raw = parts.get("reset", "")
        if raw in _RESETS:
            parsed = _RESETS[raw]
        else:
            parsed = _reset(raw)
            if len(_RESETS) >= _MEMO_MAX:
                _RESETS.clear()
            _RESETS[raw] = parsed
        if parsed is None:
            continue  # a figure without a reset is no figure to wait on
        instant, seconds = parsed
        reset = max(0.0, seconds - wall) if instant else seconds
        out[kind] = Figure(max(0, limit), max(0, remaining), reset)
    return out


@dataclass(slots=True)
class Kind:
    limit: int
    remaining: int
    reset_at: float  # monotonic
    pending: int = 0  # sent since the figure, not yet answered (requests, or tokens)


@dataclass(slots=True)
class ModelQuota:
    kinds: dict[str, Kind] = field(default_factory=dict)
    # in flight, sent and not answered: requests, tokens, input tokens, output tokens
    requests: int = 0
    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def pending(self, kind: str) -> int:
        return int(getattr(self, kind))

    def add(self, input_tokens: int, output_tokens: int, sign: int) -> None:
        """One request of this size is in flight (``sign`` 1) or no longer (-1)."""
        self.requests = max(0, self.requests + sign)
        self.tokens = max(0, self.tokens + sign * (input_tokens + output_tokens))
        self.input_tokens = max(0, self.input_tokens + sign * input_tokens)
        self.output_tokens = max(0, self.output_tokens + sign * output_tokens)


def _need(kind: str, input_tokens: int, output_tokens: int) -> int:
    if kind == "requests":
        return 1
    if kind == "tokens":
        return input_tokens + output_tokens
    return input_tokens if kind == "input_tokens" else output_tokens


class Quotas:
    """Every model's last known quota in this worker; see the module docstring."""

    def __init__(
        self,
        on_avoid: Callable[[str, str], None] | None = None,
        on_shed: Callable[[str, str], None] | None = None,
    ) -> None:
        self.models: dict[str, ModelQuota] = {}
        # (model, steered | held | shed): a call not made because its quota could not cover it
        self.on_avoid = on_avoid or (lambda model, action: None)
        # (tier, "quota"): a request refused with a 429 because no quota could cover it
        self.on_shed = on_shed or (lambda tier, reason: None)

    def room(
        self, model: str, input_tokens: int, output_tokens: int, reserve: float, now: float
    ) -> float:
        """0 when ``model`` can take this request now; else seconds until its quota resets."""
        q = self.models.get(model)
        if q is None or not q.kinds:
            return 0.0  # no figure known: nothing to wait for
        wait = 0.0
        gone: list[str] = []
        for kind, k in q.kinds.items():
            if now >= k.reset_at:
                if not k.limit:
                    gone.append(kind)  # reset since: whole again, as far as anyone knows
                    continue
                # whole again, but what is in flight still counts: every request held for this
                # reset wakes now, and the first answer of the new window is not in yet
                k.remaining, k.reset_at = k.limit, now + RENEW_S
            left = k.remaining - q.pending(kind) - int(reserve * k.limit)
            if left < _need(kind, input_tokens, output_tokens):
                wait = max(wait, k.reset_at - now)
        for kind in gone:
            del q.kinds[kind]
        return wait

    def known(self, models: list[Any]) -> bool:
        """Whether any of ``models`` has a quota figure (the common case, none: no steering)."""
        return any((q := self.models.get(m.name)) is not None and q.kinds for m in models)

    def sent(self, model: str, input_tokens: int, output_tokens: int) -> None:
        q = self.models.get(model)
        if q is None:
            q = self.models[model] = ModelQuota()
        q.add(input_tokens, output_tokens, 1)

    def answered(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        headers: list[tuple[bytes, bytes]] | None,
        now: float,
        wall: float | None = None,
    ) -> None:
        """An attempt sent with ``sent`` has its answer's head (``headers``), or failed before
        one (None): it is no longer in flight, and the head's figures replace the old ones."""
        q = self.models.get(model)
        if q is None:
            q = self.models[model] = ModelQuota()
        q.add(input_tokens, output_tokens, -1)
        if not headers:
            return
        figures = read_headers(headers, time.time() if wall is None else wall)
        for kind, f in figures.items():
            q.kinds[kind] = Kind(f.limit, f.remaining, now + f.reset_in_s)

    def figures(self, now: float) -> list[tuple[str, str, int]]:
        """(model, kind, remaining) of every live figure, for the gauges."""
        out = []
        for model, q in self.models.items():
            for kind, k in q.kinds.items():
                if now < k.reset_at:
                    out.append((model, kind, k.remaining))
        return out
