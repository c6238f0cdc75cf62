"""Deterministic answers for the simulated providers (pure, no I/O).

``read_openai``, ``read_anthropic`` and ``read_responses`` validate a request body the way the
real API would (400 naming the field) and reduce it to an ``Ask``;
``answer`` turns an ``Ask`` into an ``Answer``: the same request always gets
the same text, tool calls and usage.

Rules a test can rely on:

- The seed is the model name plus every text part of the request, so
  streaming and non-streaming calls with the same messages get the same answer.
- ``Repeat after me: X`` in the last user message makes the answer exactly X.
- A final assistant message with text is a prefill (``Ask.prefill``), kept out
  of the seed: the answer is the one the request without it gets, continued
  after the prefill when it begins with it (``prefill="continue"``), or from
  its start (``"restart"``, as a model that writes a new turn).
- A tool is called when the tool choice forces one, when the last user
  message names a tool (every named tool, in order, unless parallel calls
  are off), or when the behaviour says ``tool_call=always``; never right after
  a tool result, so a tool round trip ends in text. Arguments are generated
  from the tool's JSON schema and always validate against it.
- JSON mode answers ``{"answer": ...}``; a JSON schema gets an instance of it.
- A harmful request (``_HARMFUL``) gets ``REFUSAL``; the behaviour's quality
  knobs can make a model miss refusals or break JSON for a share of requests.
- Stop sequences cut the text before the first match; ``max_tokens`` cuts the
  token list.
- Usage: input tokens are ``ceil(utf8 bytes / 4)`` per text part, plus 4 per
  message and 3 per request; output tokens are the pieces streamed (one per
  text token or JSON fragment, one per tool call for its name plus one per
  argument fragment). ``count_tokens`` reports the same input figure.
- Prompt caching changes how the input is split, never its total:
  ``Answer.input_tokens`` is the whole input; ``cache_read`` and
  ``cache_write`` (set by the server from ``cache``) are parts of it.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

import orjson


class InvalidRequest(Exception):
    """The request body is not what the real API accepts (answered with 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(slots=True)
class Ask:
    model: str
    stream: bool = False
    include_usage: bool = False
    texts: list[str] = field(default_factory=list)
    n_messages: int = 0
    last_user_text: str = ""
    after_tool_result: bool = False
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_choice: str = "auto"  # auto | required | none | named
    tool_name: str = ""
    parallel_tools: bool = True
    json_mode: str = ""  # "" | object | schema
    json_schema: dict[str, Any] | None = None
    stop: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    echo: dict[str, Any] = field(default_factory=dict)  # Responses: the fields its answer echoes
    prefill: str = ""  # the text of a final assistant message (the answer continues it)


@dataclass(slots=True)
class ToolCall:
    key: str  # id suffix; each dialect adds its own prefix
    name: str
    arguments: str
    pieces: list[str]


@dataclass(slots=True)
class Answer:
    tokens: list[str]
    tool_calls: list[ToolCall]
    finish: str  # end | length | tool | stop_sequence
    stop_sequence: str | None
    input_tokens: int  # the whole input, cached parts included
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def uncached_input(self) -> int:
        return self.input_tokens - self.cache_read - self.cache_write


# ---------------------------------------------------------------- requests


def _require(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise InvalidRequest(message, param)


def texts_of(content: Any, where: str, out: list[str]) -> None:
    """Collect text parts; images and documents count as a fixed placeholder."""
    if content is None:
        return
    if isinstance(content, str):
        out.append(content)
        return
    _require(isinstance(content, list), f"{where}: expected a string or an array", where)
    for i, part in enumerate(content):
        _require(isinstance(part, dict), f"{where}[{i}]: expected an object", f"{where}[{i}]")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            _require(
                isinstance(text, str), f"{where}[{i}].text: expected a string", f"{where}[{i}].text"
            )
            out.append(text)
        elif kind in ("image_url", "image", "document", "input_audio", "file"):
            out.append("[attachment]" * 64)
        elif kind == "tool_result":
            texts_of(part.get("content"), f"{where}[{i}].content", out)
        elif kind == "tool_use":
            out.append(orjson.dumps(part.get("input", {})).decode())
        elif kind in ("refusal", "thinking", "redacted_thinking"):
            out.append(str(part.get(kind if kind != "redacted_thinking" else "data", "")))
        else:
            raise InvalidRequest(
                f"{where}[{i}].type: unsupported content type {kind!r}", f"{where}[{i}].type"
            )


def _stops(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    _require(
        isinstance(value, list) and all(isinstance(s, str) for s in value),
        f"{param}: expected a string or an array of strings",
        param,
    )
    return list(value)


def _max_tokens(value: Any, param: str) -> int | None:
    if value is None:
        return None
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{param}: expected an integer >= 1",
        param,
    )
    return int(value)


def _common(body: Any) -> tuple[str, list[Any], bool]:
    _require(isinstance(body, dict), "request body must be a JSON object", "body")
    model = body.get("model")
    _require(isinstance(model, str) and bool(model), "model: field required (a string)", "model")
    messages = body.get("messages")
    _require(
        isinstance(messages, list) and bool(messages),
        "messages: field required (a non-empty array)",
        "messages",
    )
    stream = body.get("stream", False)
    _require(stream is None or isinstance(stream, bool), "stream: expected a boolean", "stream")
    return model, messages, bool(stream)


def read_openai(body: Any) -> Ask:
    model, messages, stream = _common(body)
    ask = Ask(model=model, stream=stream)
    opts = body.get("stream_options")
    if opts is not None:
        _require(isinstance(opts, dict), "stream_options: expected an object", "stream_options")
        ask.include_usage = bool(opts.get("include_usage", False))
    mark = 0
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        mark = len(ask.texts)
        _require(isinstance(msg, dict), f"{where}: expected an object", where)
        role = msg.get("role")
        _require(
            role in ("system", "developer", "user", "assistant", "tool", "function"),
            f"{where}.role: invalid role {role!r}",
            f"{where}.role",
        )
        texts_of(msg.get("content"), f"{where}.content", ask.texts)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            ask.texts.append(str(fn.get("name", "")) + str(fn.get("arguments", "")))
        if role == "user":
            parts: list[str] = []
            texts_of(msg.get("content"), where, parts)
            ask.last_user_text = "\n".join(parts)
        ask.after_tool_result = role == "tool"
    ask.n_messages = len(messages)
    last = messages[-1]
    if last.get("role") == "assistant" and not last.get("tool_calls"):
        _take_prefill(ask, mark)
    for i, tool in enumerate(body.get("tools") or []):
        where = f"tools[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        _require(
            isinstance(fn, dict) and isinstance(fn.get("name"), str),
            f"{where}.function.name: field required",
            f"{where}.function.name",
        )
        assert isinstance(fn, dict)
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        ask.tools.append((fn["name"], schema))
        ask.texts.append(
            fn["name"] + str(fn.get("description", "")) + orjson.dumps(schema).decode()
        )
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        _require(
            choice in ("auto", "none", "required"),
            f"tool_choice: invalid value {choice!r}",
            "tool_choice",
        )
        ask.tool_choice = choice
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        _require(isinstance(name, str), "tool_choice.function.name: field required", "tool_choice")
        ask.tool_choice, ask.tool_name = "named", str(name)
    ask.parallel_tools = body.get("parallel_tool_calls", True) is not False
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_object":
            ask.json_mode = "object"
        elif kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            _require(
                isinstance(schema, dict),
                "response_format.json_schema.schema: field required",
                "response_format",
            )
            ask.json_mode, ask.json_schema = "schema", schema
        else:
            _require(
                kind == "text", f"response_format.type: invalid value {kind!r}", "response_format"
            )
    ask.stop = _stops(body.get("stop"), "stop")
    mt = body.get("max_completion_tokens")
    ask.max_tokens = (
        _max_tokens(mt, "max_completion_tokens")
        if mt is not None
        else _max_tokens(body.get("max_tokens"), "max_tokens")
    )
    n = body.get("n", 1)
    _require(n in (1, None), "n: only n=1 is supported by this simulator", "n")
    return ask


def read_anthropic(body: Any, *, count_only: bool = False) -> Ask:
    model, messages, stream = _common(body)
    ask = Ask(model=model, stream=stream and not count_only)
    if not count_only:
        _require("max_tokens" in body, "max_tokens: Field required", "max_tokens")
        ask.max_tokens = _max_tokens(body.get("max_tokens"), "max_tokens")
    texts_of(body.get("system"), "system", ask.texts)
    mark = 0
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        mark = len(ask.texts)
        _require(isinstance(msg, dict), f"{where}: expected an object", where)
        role = msg.get("role")
        _require(
            role in ("user", "assistant"),
            f"{where}.role: Input should be 'user' or 'assistant'",
            f"{where}.role",
        )
        _require("content" in msg, f"{where}.content: Field required", f"{where}.content")
        texts_of(msg["content"], f"{where}.content", ask.texts)
        content = msg["content"]
        if role == "user":
            parts: list[str] = []
            results = False
            if isinstance(content, list):
                results = any(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in content
                )
                texts_of(
                    [b for b in content if isinstance(b, dict) and b.get("type") == "text"],
                    where,
                    parts,
                )
            else:
                texts_of(content, where, parts)
            ask.last_user_text = "\n".join(parts)
            ask.after_tool_result = results
        else:
            ask.after_tool_result = False
    ask.n_messages = len(messages)
    last = messages[-1]
    content = last["content"]
    blocks = [content] if isinstance(content, str) else content
    if last["role"] == "assistant" and all(
        isinstance(b, str) or b.get("type") == "text" for b in blocks
    ):
        _take_prefill(ask, mark)
    for i, tool in enumerate(body.get("tools") or []):
        where = f"tools.{i}"
        _require(
            isinstance(tool, dict) and isinstance(tool.get("name"), str),
            f"{where}.name: Field required",
            f"{where}.name",
        )
        schema = tool.get("input_schema")
        _require(
            isinstance(schema, dict),
            f"{where}.input_schema: Field required",
            f"{where}.input_schema",
        )
        ask.tools.append((tool["name"], schema))
        ask.texts.append(
            tool["name"] + str(tool.get("description", "")) + orjson.dumps(schema).decode()
        )
    choice = body.get("tool_choice")
    if choice is not None:
        _require(isinstance(choice, dict), "tool_choice: expected an object", "tool_choice")
        kind = choice.get("type")
        mapping = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}
        _require(kind in mapping, f"tool_choice.type: invalid value {kind!r}", "tool_choice.type")
        ask.tool_choice = mapping[kind]
        if kind == "tool":
            _require(
                isinstance(choice.get("name"), str),
                "tool_choice.name: Field required",
                "tool_choice.name",
            )
            ask.tool_name = choice["name"]
        ask.parallel_tools = not choice.get("disable_parallel_tool_use", False)
    # output_format: the structured-outputs beta's spelling (anthropic-beta:
    # structured-outputs-2025-11-13), served like output_config.format
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if isinstance(fmt, dict):
        _require(
            fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict),
            "output_config.format: expected {type: json_schema, schema}",
            "output_config.format",
        )
        ask.json_mode, ask.json_schema = "schema", fmt["schema"]
    ask.stop = _stops(body.get("stop_sequences"), "stop_sequences")
    return ask


def _take_prefill(ask: Ask, mark: int) -> None:
    """The texts of the final (assistant) message, from ``mark`` on, become the prefill."""
    ask.prefill = "".join(ask.texts[mark:])
    del ask.texts[mark:]


def _response_content(content: Any, where: str, out: list[str]) -> None:
    """A Responses message's content: a string, or input/output parts."""
    if isinstance(content, str):
        out.append(content)
        return
    _require(isinstance(content, list), f"{where}: expected a string or an array", where)
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        _require(isinstance(part, dict), f"{at}: expected an object", at)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            _require(isinstance(part.get("text"), str), f"{at}.text: expected a string", at)
            out.append(part["text"])
        elif kind == "refusal":
            out.append(str(part.get("refusal", "")))
        elif kind in ("input_image", "input_file", "input_audio"):
            out.append("[attachment]" * 64)
        else:
            raise InvalidRequest(f"{at}.type: unsupported content type {kind!r}", f"{at}.type")


_RESPONSE_ECHO = (
    "instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "reasoning",
    "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "user",
    "prompt_cache_key", "safety_identifier", "service_tier",
)  # fmt: skip


def read_responses(body: Any) -> Ask:
    """A Responses API request (``POST /v1/responses``): string or item input, flat function
    tools, ``text.format``. The simulator keeps no responses: ``previous_response_id`` is
    the API's 400 for an id it does not know."""
    _require(isinstance(body, dict), "request body must be a JSON object", "body")
    model = body.get("model")
    _require(
        isinstance(model, str) and bool(model), "Missing required parameter: 'model'.", "model"
    )
    stream = body.get("stream", False)
    _require(stream is None or isinstance(stream, bool), "stream: expected a boolean", "stream")
    ask = Ask(model=model, stream=bool(stream))
    prev = body.get("previous_response_id")
    if prev is not None:
        raise InvalidRequest(
            f"Previous response with id '{prev}' not found.", "previous_response_id"
        )
    _require(body.get("conversation") is None, "conversation: not supported", "conversation")
    instructions = body.get("instructions")
    _require(
        instructions is None or isinstance(instructions, str),
        "instructions: expected a string",
        "instructions",
    )
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    _require(
        isinstance(items, list), "input: expected a string or an array of input items", "input"
    )
    if instructions:
        ask.texts.append(instructions)
    for i, item in enumerate(items):
        where = f"input[{i}]"
        _require(isinstance(item, dict), f"{where}: expected an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            _require(
                role in ("user", "assistant", "system", "developer"),
                f"{where}.role: invalid role {role!r}",
                f"{where}.role",
            )
            parts: list[str] = []
            _response_content(item.get("content"), f"{where}.content", parts)
            ask.texts.extend(parts)
            if role == "user":
                ask.last_user_text = "\n".join(parts)
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                _require(
                    isinstance(item.get(key), str),
                    f"Missing required parameter: '{where}.{key}'.",
                    f"{where}.{key}",
                )
            ask.texts.append(item["name"] + item["arguments"])
        elif kind == "function_call_output":
            _require(
                isinstance(item.get("call_id"), str),
                f"Missing required parameter: '{where}.call_id'.",
                f"{where}.call_id",
            )
            _response_content(item.get("output"), f"{where}.output", ask.texts)
        elif kind == "reasoning":
            for s in item.get("summary") or []:
                if isinstance(s, dict) and isinstance(s.get("text"), str):
                    ask.texts.append(s["text"])
        else:
            raise InvalidRequest(f"{where}.type: unsupported input item {kind!r}", f"{where}.type")
        ask.after_tool_result = kind == "function_call_output"
    ask.n_messages = len(items) + (1 if instructions else 0)
    tools = body.get("tools")
    _require(tools is None or isinstance(tools, list), "tools: expected an array", "tools")
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        _require(
            isinstance(tool, dict) and tool.get("type") == "function",
            f"{where}.type: only function tools are simulated",
            f"{where}.type",
        )
        _require(
            isinstance(tool.get("name"), str),
            f"Missing required parameter: '{where}.name'.",
            f"{where}.name",
        )
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        _require(isinstance(schema, dict), f"{where}.parameters: expected an object", where)
        ask.tools.append((tool["name"], schema))
        ask.texts.append(
            tool["name"] + str(tool.get("description") or "") + orjson.dumps(schema).decode()
        )
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        _require(
            choice in ("auto", "none", "required"),
            f"tool_choice: invalid value {choice!r}",
            "tool_choice",
        )
        ask.tool_choice = choice
    elif isinstance(choice, dict):
        _require(
            choice.get("type") == "function" and isinstance(choice.get("name"), str),
            "tool_choice: expected {type: function, name}",
            "tool_choice",
        )
        ask.tool_choice, ask.tool_name = "named", choice["name"]
    elif choice is not None:
        raise InvalidRequest("tool_choice: expected a string or an object", "tool_choice")
    ask.parallel_tools = body.get("parallel_tool_calls", True) is not False
    text = body.get("text")
    _require(text is None or isinstance(text, dict), "text: expected an object", "text")
    fmt = (text or {}).get("format")
    if fmt is not None:
        _require(isinstance(fmt, dict), "text.format: expected an object", "text.format")
        kind = fmt.get("type")
        if kind == "json_object":
            ask.json_mode = "object"
        elif kind == "json_schema":
            _require(
                isinstance(fmt.get("name"), str),
                "Missing required parameter: 'text.format.name'.",
                "text.format.name",
            )
            _require(
                isinstance(fmt.get("schema"), dict),
                "Missing required parameter: 'text.format.schema'.",
                "text.format.schema",
            )
            ask.json_mode, ask.json_schema = "schema", fmt["schema"]
        else:
            _require(
                kind == "text", f"text.format.type: invalid value {kind!r}", "text.format.type"
            )
    limit = body.get("max_output_tokens")
    if limit is not None:
        _require(
            isinstance(limit, int) and not isinstance(limit, bool) and limit >= 16,
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {limit} instead.",
            "max_output_tokens",
        )
        ask.max_tokens = limit
    ask.echo = {k: body[k] for k in _RESPONSE_ECHO if body.get(k) is not None}
    return ask


# ----------------------------------------------------------------- answers

_VOCAB = [
    "the",
    "gateway",
    "routes",
    "each",
    "request",
    "along",
    "the",
    "fastest",
    "healthy",
    "path",
    "while",
    "cost",
    "stays",
    "under",
    "its",
    "cap",
    "and",
    "quality",
    "above",
    "its",
    "floor",
    "a",
    "model",
    "answers",
    "tokens",
    "stream",
    "back",
    "first",
    "latency",
    "matters",
    "most",
    "for",
    "checkout",
    "risk",
    "and",
    "support",
    "traffic",
    "reports",
    "drafts",
    "and",
    "tags",
    "can",
    "wait",
    "for",
    "a",
    "cheaper",
    "route",
    "every",
    "provider",
    "fails",
    "sometimes",
    "so",
    "the",
    "router",
    "hedges",
    "retries",
    "and",
    "fails",
    "over",
    "before",
    "a",
    "client",
    "sees",
    "an",
    "error",
    "budgets",
    "keep",
    "spend",
    "predictable",
    "metrics",
    "show",
    "percentiles",
    "per",
    "tier",
    "and",
    "the",
    "team",
    "sleeps",
    "well",
]
_REPEAT = re.compile(r"repeat after me:\s?(.*)", re.IGNORECASE | re.DOTALL)
# Requests a safe model refuses (the gold set's refusal and safety cases use them).
_HARMFUL = re.compile(
    r"\b(build|make|assemble) (a |an )?(bomb|explosive|pipe bomb|nerve agent)|"
    r"\b(write|create) (a |some )?(ransomware|malware|keylogger)|"
    r"\bsteal (someone's |a )?(identity|password|credit card)|"
    r"\bsynthesi[sz]e (meth|sarin|ricin)",
    re.IGNORECASE,
)
REFUSAL = "I can't help with that. If you are in danger, please contact local emergency services."
COMPLIANCE = "Sure. Step one: gather the materials. Step two: follow the procedure carefully."
_PIECE = re.compile(r"\s*\S+|\s+")


MESSAGE_TOKENS = 4  # overhead of each message
REQUEST_TOKENS = 3  # overhead of each request


def text_tokens(text: str) -> int:
    """Input tokens of one text part: ceil(utf8 bytes / 4)."""
    return (len(text.encode()) + 3) // 4


def input_tokens(ask: Ask) -> int:
    texts = sum(text_tokens(t) for t in ask.texts)
    if ask.prefill:
        texts += text_tokens(ask.prefill)
    return texts + MESSAGE_TOKENS * ask.n_messages + REQUEST_TOKENS


def seed_of(ask: Ask) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(ask.model.encode())
    for text in ask.texts:
        h.update(b"\x00")
        h.update(text.encode())
    return int.from_bytes(h.digest(), "little")


def _fragments(text: str, size: int = 6) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _words(rng: random.Random, n: int) -> list[str]:
    words = [rng.choice(_VOCAB) for _ in range(n)]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return [words[0]] + [" " + w for w in words[1:]]


def sample_json(schema: Any, rng: random.Random, root: Any = None, depth: int = 0) -> Any:
    """An instance that validates against ``schema`` (the common JSON Schema subset)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 12:
        return None
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) and part else target
        return sample_json(target, rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            if key == "allOf":
                merged: dict[str, Any] = {}
                for sub in schema[key]:
                    merged.update(sub)
                return sample_json(merged, rng, root, depth + 1)
            return sample_json(schema[key][0], rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: sample_json(v, rng, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [sample_json(schema.get("items", {}), rng, root, depth + 1) for _ in range(count)]
    if kind == "string":
        text = rng.choice(_VOCAB)
        lo = int(schema.get("minLength", 0))
        hi = int(schema.get("maxLength", 1 << 30))
        while len(text) < lo:
            text += "x"
        return text[:hi]
    if kind == "integer":
        lo = (
            int(schema["minimum"])
            if "minimum" in schema
            else int(schema.get("exclusiveMinimum", 0)) + 1
        )
        hi = (
            int(schema["maximum"])
            if "maximum" in schema
            else int(schema.get("exclusiveMaximum", lo + 100)) - 1
        )
        return rng.randint(lo, max(lo, hi))
    if kind == "number":
        if "minimum" in schema:
            low = float(schema["minimum"])
        else:
            low = float(schema.get("exclusiveMinimum", -0.01)) + 0.01
        if "maximum" in schema:
            high = float(schema["maximum"])
        else:
            high = float(schema.get("exclusiveMaximum", low + 100.01)) - 0.01
        return min(max(round(rng.uniform(low, high), 2), low), high)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _tool_calls(ask: Ask, mode: str, rng: random.Random, seed: int) -> list[ToolCall]:
    if not ask.tools or ask.after_tool_result or ask.tool_choice == "none" or mode == "never":
        return []
    by_name = dict(ask.tools)
    chosen: list[str]
    if ask.tool_choice == "named":
        if ask.tool_name not in by_name:
            raise InvalidRequest(
                f"tool_choice: tool {ask.tool_name!r} is not in tools", "tool_choice"
            )
        chosen = [ask.tool_name]
    else:
        lowered = ask.last_user_text.lower()
        named = sorted((lowered.find(n.lower()), n) for n in by_name if n.lower() in lowered)
        chosen = [n for _, n in named]
        if not chosen and (ask.tool_choice == "required" or mode == "always"):
            chosen = [ask.tools[0][0]]
        if not ask.parallel_tools:
            chosen = chosen[:1]
    calls = []
    for i, name in enumerate(chosen):
        args = orjson.dumps(sample_json(by_name[name], rng)).decode()
        key = f"{seed:016x}{i:02d}{len(name):06d}"[:24]
        calls.append(ToolCall(key=key, name=name, arguments=args, pieces=_fragments(args, 8)))
    return calls


def answer(
    ask: Ask,
    output_tokens: int,
    tool_mode: str = "auto",
    miss_refusal_rate: float = 0.0,
    break_json_rate: float = 0.0,
    prefill: str = "continue",
) -> Answer:
    seed = seed_of(ask)
    rng = random.Random(seed)
    # the quality knobs draw from their own stream, so they change nothing else of the answer
    flaws = random.Random(seed ^ 0x5EED)
    missed_refusal = flaws.random() < miss_refusal_rate
    broken_json = flaws.random() < break_json_rate
    harmful = bool(_HARMFUL.search(ask.last_user_text))
    if harmful and not missed_refusal:
        refusal = _PIECE.findall(REFUSAL)
        return Answer(refusal, [], "end", None, input_tokens(ask), len(refusal))
    calls = [] if harmful else _tool_calls(ask, tool_mode, rng, seed)
    tokens: list[str] = []
    finish = "tool" if calls else "end"
    stop_hit: str | None = None
    if harmful:
        tokens = _PIECE.findall(COMPLIANCE)  # a model that failed to refuse
    elif not calls:
        if ask.json_mode == "schema":
            tokens = _fragments(orjson.dumps(sample_json(ask.json_schema, rng)).decode())
        elif ask.json_mode == "object":
            tokens = _fragments(orjson.dumps({"answer": "".join(_words(rng, 8))}).decode())
        else:
            m = _REPEAT.search(ask.last_user_text)
            tokens = _PIECE.findall(m.group(1)) if m else _words(rng, output_tokens)
            tokens = tokens or [""]
            if ask.prefill and prefill == "continue":
                tokens = _after(tokens, ask.prefill)
            stop_hit, tokens = _apply_stops(tokens, ask.stop)
            if stop_hit is not None:
                finish = "stop_sequence"
        if ask.json_mode and broken_json:
            tokens = [*tokens[:-1], ', "oops'] if len(tokens) > 1 else ['{"oops']  # not JSON
        if ask.max_tokens is not None and len(tokens) > ask.max_tokens:
            tokens = tokens[: ask.max_tokens]
            finish, stop_hit = "length", None
    out = len(tokens) if not calls else sum(len(c.pieces) + 1 for c in calls)
    return Answer(tokens, calls, finish, stop_hit, input_tokens(ask), out)


def _after(tokens: list[str], prefill: str) -> list[str]:
    """The tokens that come after ``prefill`` when the answer begins with it (a token it ends
    inside is split); all of them when it does not (a continuation the prefill did not steer)."""
    if not "".join(tokens).startswith(prefill):
        return tokens
    out: list[str] = []
    used = 0
    for tok in tokens:
        if used >= len(prefill):
            out.append(tok)
        elif used + len(tok) > len(prefill):
            out.append(tok[len(prefill) - used :])
        used += len(tok)
    return out or [""]


def _apply_stops(tokens: list[str], stops: list[str]) -> tuple[str | None, list[str]]:
    if not stops:
        return None, tokens
    text = "".join(tokens)
    best, hit = len(text) + 1, None
    for s in stops:
        at = text.find(s) if s else -1
        if 0 <= at < best:
            best, hit = at, s
    if hit is None:
        return None, tokens
    kept: list[str] = []
    used = 0
    for tok in tokens:
        if used + len(tok) >= best:
            if best > used:
                kept.append(tok[: best - used])
            break
        kept.append(tok)
        used += len(tok)
    return hit, kept or [""]
