"""What a request needs from a model, and what each model can carry (no I/O).

A request's needs are bits (the values of ``hotpath.route``'s ``CAP_*``),
read once from its body in either dialect; a model's capabilities are the
same bits, from the policy's ``capabilities`` list or, when it has none, the
defaults of its provider's wire protocol. The routing decision keeps only
candidates whose capabilities cover the needs, so a route, a degrade, a
hedge, a failover and a job never land on a model that would refuse the
request or silently drop part of it.

Why each need is a need (what goes wrong without it):

- ``tools``: tool definitions or tool calls in the history.
- ``server_tools``: Anthropic server tools (web search, code execution...)
  run on the provider; no other provider can run them.
- ``vision`` / ``documents``: image or document content blocks.
- ``json``: a JSON object or schema output format.
- ``thinking``: Anthropic extended thinking (its blocks come back signed).
- ``logprobs``, ``n`` (several choices), ``seed``: OpenAI-only parameters.
- ``top_k``, ``stop_many`` (an OpenAI caller's ``stop`` past OpenAI's 4):
  Anthropic-only (an Anthropic caller's ``stop_sequences`` are matched by
  the gateway on an OpenAI model, any number of them).
- ``prompt_cache``: ``cache_control`` breakpoints; both providers cache, a
  policy can name models that do not.
- ``prefill``: a final assistant message the answer continues (Anthropic).
"""

from __future__ import annotations

from typing import Any

from hotpath import route

CAPABILITIES: dict[str, int] = {
    "tools": route.CAP_TOOLS,
    "vision": route.CAP_VISION,
    "json": route.CAP_JSON,
    "thinking": route.CAP_THINKING,
    "logprobs": route.CAP_LOGPROBS,
    "n": route.CAP_MULTI_N,
    "seed": route.CAP_SEED,
    "top_k": route.CAP_TOP_K,
    "stop_many": route.CAP_STOP_MANY,
    "server_tools": route.CAP_SERVER_TOOLS,
    "prompt_cache": route.CAP_CACHE,
    "prefill": route.CAP_PREFILL,
    "documents": route.CAP_DOCUMENTS,
}

# The request field that carries each need: the ``param`` of a 400 about it.
PARAMS: dict[str, str] = {
    "tools": "tools",
    "vision": "messages",
    "json": "response_format",
    "thinking": "thinking",
    "logprobs": "logprobs",
    "n": "n",
    "seed": "seed",
    "top_k": "top_k",
    "stop_many": "stop",
    "server_tools": "tools",
    "prompt_cache": "cache_control",
    "prefill": "messages",
    "documents": "messages",
}

_COMMON = ("tools", "vision", "json", "prompt_cache")
KIND_DEFAULTS: dict[str, tuple[str, ...]] = {
    "openai": (*_COMMON, "logprobs", "n", "seed"),
    "anthropic": (
        *_COMMON,
        "documents",
        "thinking",
        "top_k",
        "stop_many",
        "server_tools",
        "prefill",
    ),
}
OPENAI_MAX_STOP = 4


def bits(names: tuple[str, ...] | list[str]) -> int:
    out = 0
    for name in names:
        out |= CAPABILITIES[name]
    return out


def names_of(mask: int) -> list[str]:
    return [name for name, bit in CAPABILITIES.items() if mask & bit]


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _content_needs(content: Any) -> int:
    needs = 0
    for block in _blocks(content):
        kind = block.get("type")
        if kind in ("image_url", "image", "input_image"):
            needs |= route.CAP_VISION
        elif kind in ("document", "file", "input_file"):
            needs |= route.CAP_DOCUMENTS
        elif kind in ("tool_use", "tool_result"):
            needs |= route.CAP_TOOLS
            if kind == "tool_result":
                needs |= _content_needs(block.get("content"))
        elif kind in ("thinking", "redacted_thinking"):
            needs |= route.CAP_THINKING
        elif kind in ("server_tool_use", "web_search_tool_result"):
            needs |= route.CAP_SERVER_TOOLS
        if isinstance(block.get("cache_control"), dict):
            needs |= route.CAP_CACHE
    return needs


def _items(items: Any) -> tuple[list[Any], int]:
    """A Responses request's input items: its messages, and what its function calls and
    their outputs need."""
    if not isinstance(items, list):
        return [], 0
    needs = 0
    for item in items:
        if isinstance(item, dict) and item.get("type") in ("function_call", "function_call_output"):
            needs |= route.CAP_TOOLS
            if item["type"] == "function_call_output":
                needs |= _content_needs(item.get("output"))
    return items, needs


# top-level fields that may need a capability (one set test skips them all on most requests)
_FIELDS = frozenset(
    {
        "tools", "functions", "response_format", "output_config",
        "output_format", "thinking", "logprobs", "top_logprobs", "n", "seed", "top_k",
        "stop", "stop_sequences", "cache_control", "system", "text",
    }
)  # fmt: skip


def needs_of(body: dict[str, Any], dialect: str) -> int:
    """The capability bits a chat request in ``dialect`` needs from the model serving it (a
    Responses request's input items are its messages)."""
    needs = 0
    messages = body.get("messages")
    if dialect == "responses":
        messages, needs = _items(body.get("input"))
    if not isinstance(messages, list):
        messages = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if content.__class__ is not str and content is not None:
            needs |= _content_needs(content)
        if msg.get("tool_calls") or msg.get("role") == "tool" or msg.get("function_call"):
            needs |= route.CAP_TOOLS
    last = messages[-1] if messages else None
    if dialect == "anthropic" and isinstance(last, dict) and last.get("role") == "assistant":
        needs |= route.CAP_PREFILL  # an OpenAI client's final assistant turn is just history
    if _FIELDS.isdisjoint(body):
        return needs
    return needs | _field_needs(body, dialect)


def _field_needs(body: dict[str, Any], dialect: str) -> int:
    needs = _content_needs(body.get("system"))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            kind = tool.get("type")
            # Anthropic client tools have no type (or "custom"); OpenAI's are "function"/"custom"
            if kind in (None, "custom", "function") or dialect == "responses":
                # (the Responses API's hosted tools run at OpenAI: a translation refuses them)
                needs |= route.CAP_TOOLS
            else:
                needs |= route.CAP_SERVER_TOOLS
            if isinstance(tool.get("cache_control"), dict):
                needs |= route.CAP_CACHE
    if body.get("functions"):
        needs |= route.CAP_TOOLS
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        config = body.get("output_config")
        fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict):
        fmt = body.get("output_format")  # the structured-outputs beta spelling
    if not isinstance(fmt, dict):
        text = body.get("text")  # the Responses API's text.format
        fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        needs |= route.CAP_JSON
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        needs |= route.CAP_THINKING
    if body.get("logprobs") or body.get("top_logprobs"):
        needs |= route.CAP_LOGPROBS
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        needs |= route.CAP_MULTI_N
    if body.get("seed") is not None:
        needs |= route.CAP_SEED
    if body.get("top_k") is not None:
        needs |= route.CAP_TOP_K
    # an Anthropic caller's sequences are matched by the gateway on an OpenAI model
    # (dialects/openai.py Decoder): only an OpenAI caller's own `stop` meets OpenAI's limit
    stops = body.get("stop")
    if isinstance(stops, list) and len(stops) > OPENAI_MAX_STOP:
        needs |= route.CAP_STOP_MANY
    if isinstance(body.get("cache_control"), dict):
        needs |= route.CAP_CACHE  # Anthropic's top-level automatic breakpoint
    return needs
