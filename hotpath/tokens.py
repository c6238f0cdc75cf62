"""Selects the token estimator: compiled ``hotpath._tokens`` when built, the pure
twin ``hotpath._tokens_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``.

``estimate_request_tokens`` builds the request-level estimate on it: text
parts, plus the per-message and per-request overheads of the chat formats,
times a per-model calibration factor from the policy.
"""

from __future__ import annotations

from collections.abc import Iterable

from hotpath._select import load

_impl, COMPILED = load("hotpath._tokens", "hotpath._tokens_py")

estimate_text_tokens = _impl.estimate_text_tokens

# Chat formats wrap every message in a few tokens of role markers, and prime
# the reply with a few more (OpenAI documents 3 + 3 for its chat models;
# Anthropic publishes no figure, and its count_tokens results on short
# prompts fit the same shape within a token or two).
PER_MESSAGE = 3
PER_REQUEST = 3


def estimate_request_tokens(parts: Iterable[bytes], messages: int, factor: float = 1.0) -> int:
    """Input tokens of a request: its text parts (messages, system, tool schemas) as UTF-8."""
    text = 0
    for part in parts:
        text += estimate_text_tokens(part)
    return int((text + PER_MESSAGE * messages + PER_REQUEST) * factor + 0.5)


__all__ = ["COMPILED", "estimate_request_tokens", "estimate_text_tokens"]
