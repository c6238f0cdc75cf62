"""What an answer cost: real usage in either provider's shape, priced per model.

Usage is split four ways, because each is priced differently: uncached
input, cache reads, cache writes, output. OpenAI reports ``prompt_tokens``
with the cached part inside (``prompt_tokens_details.cached_tokens``) and
has no cache-write charge; its Responses API the same as ``input_tokens``
(``input_tokens_details.cached_tokens``, told apart by ``total_tokens``);
Anthropic reports uncached ``input_tokens`` and the cache fields beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.policy import Model


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0  # uncached
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0

    @property
    def prompt(self) -> int:
        return self.input + self.cache_read + self.cache_write


def split_usage(usage: dict[str, Any] | None) -> Tokens:
    if not usage:
        return Tokens()
    if "prompt_tokens" in usage:
        prompt = int(usage.get("prompt_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        cached = min(cached, prompt)
        return Tokens(prompt - cached, cached, 0, int(usage.get("completion_tokens") or 0))
    if "input_tokens_details" in usage or "total_tokens" in usage:
        # the Responses API: input_tokens holds the cached ones, as prompt_tokens does
        prompt = int(usage.get("input_tokens") or 0)
        details = usage.get("input_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        cached = min(cached, prompt)
        return Tokens(prompt - cached, cached, 0, int(usage.get("output_tokens") or 0))
    return Tokens(
        int(usage.get("input_tokens") or 0),
        int(usage.get("cache_read_input_tokens") or 0),
        int(usage.get("cache_creation_input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
    )


def cost_usd(model: Model, t: Tokens) -> float:
    return (
        t.input * model.input_usd_per_mtok
        + t.cache_read * model.cached_input_usd_per_mtok
        + t.cache_write * model.cache_write_usd_per_mtok
        + t.output * model.output_usd_per_mtok
    ) / 1e6
