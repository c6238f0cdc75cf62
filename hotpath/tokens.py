"""Selects the token estimator: compiled ``hotpath._tokens`` when built, the pure
twin ``hotpath._tokens_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``.

Estimates are per tokenizer family: ``"cl100k"`` (cl100k_base: gpt-4, gpt-3.5),
``"o200k"`` (o200k_base: gpt-4o, gpt-4.1, gpt-5, the o-series) and ``"claude"``
(no Claude tokenizer is public: o200k's estimate times a factor from published
comparisons, see ``_tokens_py.CLAUDE_OVER_O200K``). The implementations take a
family index; this module maps the names, once per call.

``estimate_request_tokens`` builds the request-level estimate on it: text
parts, plus the per-message and per-request overheads of the chat formats,
times a per-model calibration factor from the policy.
"""

from __future__ import annotations

from collections.abc import Iterable

from hotpath._select import load
from hotpath._tokens_py import CLAUDE_OVER_O200K as _ratio

_impl, COMPILED = load("hotpath._tokens", "hotpath._tokens_py")

FAMILIES = ("cl100k", "o200k", "claude")
_INDEX = {name: i for i, name in enumerate(FAMILIES)}

# Chat formats wrap every message in a few tokens of role markers, and prime
# the reply with a few more (OpenAI documents 3 + 3 for its chat models;
# Anthropic publishes no figure, and its count_tokens results on short
# prompts fit the same shape within a token or two).
PER_MESSAGE = 3
PER_REQUEST = 3


# The router prices every candidate from one estimate, in o200k's tokens; a family's tokens
# per o200k token: Claude's published ratio; cl100k cuts English much like o200k (other
# scripts differ: a model's policy ``token_factor`` corrects it).
BASE_FAMILY = "o200k"
OVER_BASE = {"o200k": 1.0, "cl100k": 1.0, "claude": _ratio[0] / _ratio[1]}


def family_index(family: str) -> int:
    """The implementations' index of a family name; ValueError for an unknown one."""
    try:
        return _INDEX[family]
    except KeyError:
        raise ValueError(
            f"unknown tokenizer family {family!r}; expected one of {FAMILIES}"
        ) from None


def estimate_text_tokens(data: bytes, family: str = "cl100k") -> int:
    """Estimated tokens of one UTF-8 text for a tokenizer family."""
    return int(_impl.estimate_text_tokens(data, family_index(family)))


def estimate_request_tokens(
    parts: Iterable[bytes], messages: int, factor: float = 1.0, family: str = "cl100k"
) -> int:
    """Input tokens of a request: its text parts (messages, system, tool schemas) as UTF-8."""
    index = family_index(family)
    estimate = _impl.estimate_text_tokens
    text = 0
    for part in parts:
        text += estimate(part, index)
    return int((text + PER_MESSAGE * messages + PER_REQUEST) * factor + 0.5)


__all__ = [
    "BASE_FAMILY",
    "COMPILED",
    "FAMILIES",
    "OVER_BASE",
    "estimate_request_tokens",
    "estimate_text_tokens",
    "family_index",
]
