"""Anthropic Messages: request checks, upstream body, stream relay and aggregation.

Upstream calls are always streamed. A streaming client gets the provider's
events as they come (``ping`` included); a non-streaming client gets them
folded into the ``message`` object the provider would have returned: text
deltas joined, ``input_json_delta`` fragments parsed into ``input``, usage
taken from ``message_start`` and overwritten by the cumulative figures of
``message_delta`` (as the SDK's accumulator does).
"""

from __future__ import annotations

from typing import Any

import orjson

from edge.dialects.canonical import (
    JSON_TOOL,
    STOP,
    TO_ANTHROPIC_STOP,
    TOOL_CALLS,
    Answer,
    ChatRequest,
    Event,
    Message,
    Part,
    Tool,
    Usage,
    from_anthropic_stop,
)
from edge.dialects.common import (
    ChatInfo,
    StreamBroken,
    check_content,
    check_list_of,
    need,
    parse_event,
)
from edge.dialects.core import (
    BOOL,
    INT,
    NUMBER,
    OBJECT,
    Dialect,
    Field,
    Output,
    check_fields,
    encoded,
    folded,
)
from edge.errors import ErrorDialect, InvalidRequest, UpstreamError, UpstreamStatus

NAME = "anthropic"

# The top-level parameters with the types, ranges and values the provider accepts (a wrong one
# is a 400 naming it, before any call).
FIELDS: dict[str, Field] = {
    "max_tokens": Field(INT, "an integer"),
    "stream": Field(BOOL, "a boolean"),
    "system": Field((str, list), "a string or an array of text blocks"),
    "stop_sequences": Field((list,), "an array of strings", items=str),
    "temperature": Field(NUMBER, "a number", lo=0, hi=1),
    "top_k": Field(INT, "an integer", lo=0),
    "top_p": Field(NUMBER, "a number", lo=0, hi=1),
    "thinking": Field(OBJECT, "an object"),
    "tool_choice": Field(OBJECT, "an object"),
    "metadata": Field(OBJECT, "an object"),
    "output_config": Field(OBJECT, "an object"),
    "output_format": Field(OBJECT, "an object"),
    "service_tier": Field((str,), "a string", allowed=("auto", "standard_only")),
}


def check_request(body: Any, *, count_only: bool = False) -> ChatInfo:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", param=None)
    model = body.get("model")
    need(isinstance(model, str) and model, "model: Field required", "model")
    messages = body.get("messages")
    need(isinstance(messages, list), "messages: Field required", "messages")
    assert isinstance(model, str) and isinstance(messages, list)
    for i, msg in enumerate(messages):
        need(isinstance(msg, dict), f"messages.{i}: Input should be an object", f"messages.{i}")
        need(
            msg.get("role") in ("user", "assistant"),
            f"messages.{i}.role: Input should be 'user' or 'assistant'",
            f"messages.{i}.role",
        )
        need("content" in msg, f"messages.{i}.content: Field required", f"messages.{i}.content")
        check_content(msg["content"], f"messages.{i}.content", nullable=False)
    if not count_only:
        need("max_tokens" in body, "max_tokens: Field required", "max_tokens")
    check_fields(body, FIELDS)
    if isinstance(body.get("system"), list):
        check_content(body["system"], "system", nullable=False)
    check_list_of(body.get("tools"), dict, "tool objects", "tools")
    return ChatInfo(
        model=model,
        stream=bool(body.get("stream")) and not count_only,
        stop=tuple(body.get("stop_sequences") or ()),
    )


def upstream_body(body: dict[str, Any], upstream_model: str) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    out["stream"] = True
    return orjson.dumps(out)


def count_body(body: dict[str, Any], upstream_model: str) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    return orjson.dumps(out)


def error_from_upstream(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> UpstreamStatus:
    message, kind = f"provider returned HTTP {status}", None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            kind = err.get("type")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    keep = [(k, v) for k, v in headers if k in (b"retry-after", b"retry-after-ms")]
    code = None
    low = message.lower()
    if "prompt is too long" in low or "context window" in low:
        code = (
            "context_length_exceeded"  # the OpenAI code, for OpenAI callers of an Anthropic model
        )
    elif "content filtering" in low:
        code = "content_filter"
    return UpstreamStatus(status, message, provider_type=kind, code=code, headers=keep)


def error_event(err: UpstreamError) -> bytes:
    body = {"type": "error", "error": {"type": err.types()[1], "message": err.message}}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


def model_object(model_id: str, created: str) -> dict[str, Any]:
    """One model as ``GET /v1/models/{id}`` answers it (``created``: RFC 3339)."""
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": created}


def models_body(
    models: list[tuple[str, str]], limit: int = 20, after: str = "", before: str = ""
) -> bytes:
    """A page of ``(id, created_at)`` in the list shape, with the API's cursor parameters."""
    ids = [m for m, _ in models]
    start, end = 0, len(models)
    if after in ids:
        start = ids.index(after) + 1
    if before in ids:
        end = ids.index(before)
        start = max(start, end - limit) if not after else start
    page = models[start:end][:limit]
    return orjson.dumps(
        {
            "data": [model_object(m, created) for m, created in page],
            "has_more": start + len(page) < end,
            "first_id": page[0][0] if page else None,
            "last_id": page[-1][0] if page else None,
        }
    )


def _event_obj(name: bytes, data: bytes) -> dict[str, Any]:
    """A provider event as a dict; an ``error`` event ends the attempt."""
    obj = parse_event(data)
    if (obj.get("type") or name.decode("latin-1")) == "error":
        err = obj.get("error") or {}
        raise StreamBroken(str(err.get("message") or "provider reported an error mid-stream"))
    return obj


_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class _Relay:
    """The provider's events to a streaming client as they come (``ping`` included)."""

    __slots__ = ("_next", "_text_block")

    def __init__(self) -> None:
        self._text_block = -1  # the index of the open text block, if one is open
        self._next = 0  # the index the next block would take

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        kind = (obj or {}).get("type")
        if kind == "content_block_start" or kind == "content_block_stop":
            self._blocks(kind, obj or {})
        if not name:
            name = str(kind or "message").encode()
        return b"event: " + name + b"\ndata: " + data + b"\n\n"

    def _blocks(self, kind: str, obj: dict[str, Any]) -> None:
        index = obj.get("index", 0)
        if not isinstance(index, int):
            return
        if kind == "content_block_stop":
            if index == self._text_block:
                self._text_block = -1
            return
        self._next = max(self._next, index + 1)
        block = obj.get("content_block") or {}
        self._text_block = index if block.get("type") == "text" else -1

    def close(self, done: bool) -> bytes:
        return b"" if done else _MESSAGE_STOP  # finished but no message_stop

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        raise AssertionError("a streaming answer has no final body")

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None

    def resume(self) -> Encoder:
        """More of the message the client is reading: deltas on its open text block (or a new
        block after the last), then the closing events; never a second ``message_start``."""
        enc = Encoder()
        enc._open = self._text_block >= 0
        enc._block = self._text_block if enc._open else self._next - 1
        enc._next = self._next
        return enc


class _Fold:
    """The provider's events folded into the ``message`` it would have returned: text deltas
    joined, tool input parsed, thinking, signatures and citations kept."""

    __slots__ = ("_blocks", "_message", "_partial")

    def __init__(self) -> None:
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._partial: dict[int, list[str]] = {}

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        if obj is None:
            return b""
        kind = obj.get("type")
        if kind == "content_block_delta":
            self._delta(obj.get("index", 0), obj.get("delta") or {})
        elif kind == "content_block_start":
            self._blocks[obj.get("index", 0)] = dict(obj.get("content_block") or {})
        elif kind == "message_start":
            self._message = dict(obj.get("message") or {})
        elif kind == "message_delta":
            delta = obj.get("delta") or {}
            self._message.update(
                {k: v for k, v in delta.items() if k in ("stop_reason", "stop_sequence")}
            )
        return b""

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self._partial.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def close(self, done: bool) -> bytes:
        return b""

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        content = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if index in self._partial:
                raw = "".join(self._partial[index])
                try:
                    block["input"] = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    raise StreamBroken("provider sent tool input that is not valid JSON") from None
            content.append(block)
        out = dict(self._message)
        out["content"] = content
        out["usage"] = usage or {}
        out.setdefault("stop_sequence", None)
        return orjson.dumps(out)

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None


# ------------------------------------------------------------ translation

_IGNORABLE = {"service_tier", "stream", "model", "messages", "metadata", "max_tokens", "system"}
_MAPPED = {
    "temperature",
    "top_p",
    "stop_sequences",
    "tools",
    "tool_choice",
    "output_config",
    "output_format",  # the structured-outputs beta's spelling of output_config.format
}


def _blocks_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for i, b in enumerate(content or []):
        if not isinstance(b, dict) or b.get("type") != "text":
            raise InvalidRequest(f"{where}.{i}: only text blocks are allowed here", param=where)
        texts.append(str(b.get("text", "")))
    return "".join(texts)


def _image(block: dict[str, Any], where: str) -> Part:
    src = block.get("source") or {}
    if src.get("type") == "base64":
        return Part(
            "image", media_type=str(src.get("media_type", "")), data=str(src.get("data", ""))
        )
    if src.get("type") == "url":
        return Part("image", url=str(src.get("url", "")))
    raise InvalidRequest(
        f"{where}.source: only base64 and url images can be translated", param=where
    )


def to_canonical(body: dict[str, Any], target: str) -> ChatRequest:
    """An Anthropic request as a canonical one; 400 for what ``target`` cannot honour."""
    for key, value in body.items():
        if key in _IGNORABLE or key in _MAPPED or value is None:
            continue
        if key == "thinking" and isinstance(value, dict) and value.get("type") == "disabled":
            continue
        raise InvalidRequest(
            f"{key}: not supported by the {target} provider that serves this model", param=key
        )
    req = ChatRequest(
        model=str(body["model"]),
        messages=[],
        stream=bool(body.get("stream")),
        max_tokens=body.get("max_tokens"),
    )
    req.system = _blocks_text(body.get("system") or "", "system")
    for i, msg in enumerate(body["messages"]):
        where = f"messages.{i}.content"
        content = msg["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        parts: list[Part] = []
        for j, b in enumerate(blocks if isinstance(blocks, list) else []):
            kind = b.get("type") if isinstance(b, dict) else None
            if kind == "text":
                parts.append(Part("text", text=str(b.get("text", ""))))
            elif kind == "image":
                parts.append(_image(b, f"{where}.{j}"))
            elif kind == "tool_use" and msg["role"] == "assistant":
                parts.append(
                    Part(
                        "tool_call",
                        call_id=str(b.get("id", "")),
                        name=str(b.get("name", "")),
                        arguments=orjson.dumps(b.get("input") or {}).decode(),
                    )
                )
            elif kind == "tool_result" and msg["role"] == "user":
                inner = b.get("content")
                result = (
                    [Part("text", text=inner)]
                    if isinstance(inner, str)
                    else [
                        Part("text", text=str(x.get("text", "")))
                        if x.get("type") == "text"
                        else _image(x, f"{where}.{j}.content")
                        for x in inner or []
                    ]
                )
                parts.append(
                    Part(
                        "tool_result",
                        call_id=str(b.get("tool_use_id", "")),
                        result=result,
                        is_error=bool(b.get("is_error")),
                    )
                )
            else:
                raise InvalidRequest(
                    f"{where}.{j}.type: {kind!r} blocks cannot be translated for the other provider",
                    param=f"{where}.{j}",
                )
        if parts:
            if req.messages and req.messages[-1].role == msg["role"]:
                req.messages[-1].parts.extend(parts)
            else:
                req.messages.append(Message(msg["role"], parts))
    for i, tool in enumerate(body.get("tools") or []):
        if (
            not isinstance(tool, dict)
            or tool.get("type", "custom") != "custom"
            or not isinstance(tool.get("input_schema"), dict)
        ):
            raise InvalidRequest(
                f"tools.{i}: only custom tools with an input_schema can be translated",
                param=f"tools.{i}",
            )
        req.tools.append(
            Tool(
                str(tool.get("name", "")), str(tool.get("description") or ""), tool["input_schema"]
            )
        )
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        mapping = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}
        need(kind in mapping, f"tool_choice.type: invalid value {kind!r}", "tool_choice")
        req.tool_choice = mapping[str(kind)]
        req.tool_name = str(choice.get("name") or "")
        req.parallel_tool_calls = not choice.get("disable_parallel_tool_use", False)
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if isinstance(fmt, dict):
        need(
            fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict),
            "output_config.format: expected {type: json_schema, schema}",
            "output_config",
        )
        req.json_mode, req.json_schema = "schema", fmt["schema"]
    extra = set(body.get("output_config") or {}) - {"format"}
    if extra:
        raise InvalidRequest(
            f"output_config.{sorted(extra)[0]}: not supported by the {target} provider that serves this model",
            param="output_config",
        )
    req.stop = list(body.get("stop_sequences") or [])
    req.temperature, req.top_p = body.get("temperature"), body.get("top_p")
    req.user = str((body.get("metadata") or {}).get("user_id") or "")
    return req


def _image_block(p: Part) -> dict[str, Any]:
    if p.url:
        return {"type": "image", "source": {"type": "url", "url": p.url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": p.media_type, "data": p.data},
    }


def from_canonical(
    req: ChatRequest, upstream_model: str, default_max_tokens: int
) -> dict[str, Any]:
    """The Anthropic request for a canonical one (always streamed)."""
    if req.temperature is not None and req.temperature > 1:
        raise InvalidRequest(
            "temperature: an Anthropic provider accepts 0 to 1", param="temperature"
        )
    messages: list[dict[str, Any]] = []
    for m in req.messages:
        blocks: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []  # tool results must open the user turn
        for p in m.parts:
            if p.kind == "text":
                if p.text:
                    blocks.append({"type": "text", "text": p.text})
            elif p.kind == "image":
                blocks.append(_image_block(p))
            elif p.kind == "tool_call":
                try:
                    args = orjson.loads(p.arguments or "{}")
                except orjson.JSONDecodeError:
                    raise InvalidRequest(
                        f"tool call {p.call_id}: arguments are not valid JSON", param="messages"
                    ) from None
                blocks.append({"type": "tool_use", "id": p.call_id, "name": p.name, "input": args})
            elif p.kind == "tool_result":
                inner = [
                    {"type": "text", "text": r.text} if r.kind == "text" else _image_block(r)
                    for r in p.result
                ]
                result: dict[str, Any] = {
                    "type": "tool_result",
                    "tool_use_id": p.call_id,
                    "content": inner,
                }
                if p.is_error:
                    result["is_error"] = True
                results.append(result)
        if results or blocks:
            messages.append({"role": m.role, "content": results + blocks})
    if messages and messages[-1]["role"] == "assistant":
        last = messages[-1]["content"][-1]
        if last.get("type") == "text":
            last["text"] = last[
                "text"
            ].rstrip()  # Anthropic rejects a prefill that ends in whitespace
    body: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": req.max_tokens if req.max_tokens is not None else default_max_tokens,
        "messages": messages,
        "stream": True,
    }
    if req.system:
        body["system"] = req.system
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        need(
            all(s.strip() for s in req.stop),
            "stop: an Anthropic provider rejects whitespace-only stop sequences",
            "stop",
        )
        body["stop_sequences"] = req.stop
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.schema} for t in req.tools
    ]
    choice: dict[str, Any] | None = None
    if req.json_mode:
        if tools:
            raise InvalidRequest(
                "response_format with tools cannot be served by an Anthropic provider",
                param="response_format",
            )
        schema = req.json_schema if req.json_mode == "schema" else {"type": "object"}
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise InvalidRequest(
                "response_format: an Anthropic provider needs a JSON schema of type object",
                param="response_format",
            )
        tools = [
            {
                "name": JSON_TOOL,
                "description": "Respond with the JSON output.",
                "input_schema": schema,
            }
        ]
        choice = {"type": "tool", "name": JSON_TOOL}
    elif tools:
        kind = {"auto": "auto", "required": "any", "none": "none", "named": "tool"}[req.tool_choice]
        choice = {"type": kind}
        if kind == "tool":
            choice["name"] = req.tool_name
        if not req.parallel_tool_calls and kind != "none":
            choice["disable_parallel_tool_use"] = True
    if tools:
        body["tools"] = tools
        body["tool_choice"] = choice
    if req.user:
        body["metadata"] = {"user_id": req.user}
    return body


class Decoder:
    """An Anthropic provider's events as canonical events (see ``core.Decoder``); unwraps the
    forced JSON tool. Thinking is ``produced`` (output with no canonical counterpart)."""

    __slots__ = ("_json_blocks", "_tool_of_block", "_tools", "cut", "obj", "usage")

    def __init__(self) -> None:
        self.cut = False  # stop sequences are the provider's own: it never ends a stream
        self._tool_of_block: dict[int, int] = {}
        self._json_blocks: set[int] = set()
        self._tools = 0
        self.obj: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None  # from message_start, updated by message_delta

    def feed(self, name: bytes, data: bytes) -> list[Event]:
        obj = self.obj = _event_obj(name, data)
        kind = obj.get("type")
        if kind == "content_block_delta":
            index, delta = obj.get("index", 0), obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [("text", delta.get("text", ""))]
            if dtype == "input_json_delta":
                frag = delta.get("partial_json", "")
                if index in self._json_blocks:
                    return [("text", frag)] if frag else []
                if index not in self._tool_of_block:
                    raise StreamBroken("provider sent tool input for a block that is no tool")
                return [("tool_args", self._tool_of_block[index], frag)] if frag else []
            # thinking, signatures and citations: output no other dialect's answer carries
            return [("produced", delta.get("thinking") or "")]
        if kind == "content_block_start":
            block, index = obj.get("content_block") or {}, obj.get("index", 0)
            if block.get("type") == "tool_use":
                if block.get("name") == JSON_TOOL:
                    self._json_blocks.add(index)
                    return []
                self._tool_of_block[index] = self._tools
                self._tools += 1
                return [
                    (
                        "tool_start",
                        self._tools - 1,
                        str(block.get("id", "")),
                        str(block.get("name", "")),
                    )
                ]
            if block.get("type") == "text" and block.get("text"):
                return [("text", block["text"])]
            return []
        if kind == "message_start":
            msg = obj.get("message") or {}
            self.usage = dict(msg.get("usage") or {})
            return [("start", str(msg.get("id", "")), str(msg.get("model", "")))]
        if kind == "message_delta":
            delta = obj.get("delta") or {}
            u = self.usage = self.usage or {}
            u.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
            usage = Usage(
                input=int(u.get("input_tokens") or 0),
                output=int(u.get("output_tokens") or 0),
                cache_read=int(u.get("cache_read_input_tokens") or 0),
                cache_write=int(u.get("cache_creation_input_tokens") or 0),
                provider=dict(u),
            )
            if not delta.get("stop_reason"):
                return [("usage", usage)]
            reason = from_anthropic_stop(delta.get("stop_reason"))
            if reason == TOOL_CALLS and self._json_blocks and not self._tools:
                reason = STOP  # the forced JSON tool was the answer
            return [("finish", reason, delta.get("stop_sequence")), ("usage", usage)]
        if kind == "message_stop":
            return [("end",)]
        return []


def _usage_body(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": u.output,
        "provider_usage": u.provider,
    }


def _message_id(provider_id: str) -> str:
    return "msg_" + provider_id.removeprefix("chatcmpl-")


def _event(name: bytes, body: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(body) + b"\n\n"


class Encoder:
    """Canonical events as an Anthropic client's event sequence.

    Blocks open and close as the content kind changes (text, then each tool
    call); ``message_delta`` is held until the provider's usage is known, so
    the client gets real token counts.
    """

    __slots__ = ("_block", "_finish", "_next", "_open", "_tool_block", "_usage", "done")

    def __init__(self) -> None:
        self._open = False
        self._block = -1
        self._next = 0
        self._tool_block: dict[int, int] = {}
        self._finish: tuple[str, str | None] | None = None
        self._usage: Usage | None = None
        self.done = False

    def _close_block(self) -> bytes:
        if not self._open:
            return b""
        self._open = False
        return _event(b"content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _start_block(self, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._block, self._next, self._open = self._next, self._next + 1, True
        return out + _event(
            b"content_block_start",
            {"type": "content_block_start", "index": self._block, "content_block": block},
        )

    def encode(self, ev: Event) -> bytes:
        kind = ev[0]
        if kind == "text":
            out = b""
            if not self._open or self._block in self._tool_block.values():
                out = self._start_block({"type": "text", "text": ""})
            return out + _event(
                b"content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self._block,
                    "delta": {"type": "text_delta", "text": ev[1]},
                },
            )
        if kind == "tool_args":
            index = self._tool_block[ev[1]]
            return _event(
                b"content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": ev[2]},
                },
            )
        if kind == "tool_start":
            out = self._start_block({"type": "tool_use", "id": ev[2], "name": ev[3], "input": {}})
            self._tool_block[ev[1]] = self._block
            return out
        if kind == "start":
            message = {
                "id": _message_id(ev[1]),
                "type": "message",
                "role": "assistant",
                "model": ev[2],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            return (
                _event(b"message_start", {"type": "message_start", "message": message})
                + b'event: ping\ndata: {"type": "ping"}\n\n'
            )
        if kind == "finish":
            self._finish = (ev[1], ev[2])
            return self._close_block() + self._delta_if_ready()
        if kind == "usage":
            self._usage = ev[1]
            return self._delta_if_ready()
        if kind == "end":
            return self.close()
        return b""

    def _delta_if_ready(self) -> bytes:
        if self._finish is None or self._usage is None or self.done:
            return b""
        reason, sequence = self._finish
        self.done = True
        usage = _usage_body(self._usage)
        delta = {"stop_reason": TO_ANTHROPIC_STOP[reason], "stop_sequence": sequence}
        return (
            _event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
            + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        )

    def resume(self) -> Encoder:
        """A fresh encoder that continues this one's message (a rescue)."""
        enc = Encoder()
        enc._open, enc._block, enc._next = self._open, self._block, self._next
        enc._tool_block = dict(self._tool_block)
        return enc

    def close(self) -> bytes:
        """The provider ended: send what is still held (usage may never have come)."""
        if self.done:
            return b""
        if self._usage is None:
            self._usage = Usage()
        if self._finish is None:
            return b""
        return self._close_block() + self._delta_if_ready()


def render(answer: Answer, created: int = 0) -> bytes:
    """A folded answer as an Anthropic ``message`` body."""
    content: list[dict[str, Any]] = []
    text = "".join(answer.text)
    if text:
        content.append({"type": "text", "text": text})
    for c in answer.tool_calls:
        raw = "".join(c["arguments"])
        try:
            args = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise StreamBroken("provider sent tool arguments that are not valid JSON") from None
        content.append({"type": "tool_use", "id": c["id"], "name": c["name"], "input": args})
    return orjson.dumps(
        {
            "id": _message_id(answer.id),
            "type": "message",
            "role": "assistant",
            "model": answer.model,
            "content": content,
            "stop_reason": TO_ANTHROPIC_STOP[answer.finish or "length"],
            "stop_sequence": answer.stop_sequence,
            "usage": _usage_body(answer.usage),
        }
    )


def with_max_tokens(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    return {**body, "max_tokens": max_tokens}


class _Messages:
    NAME = NAME
    KIND = "anthropic"
    ERRORS: ErrorDialect = "anthropic"
    LIMIT_PARAM = "max_tokens"
    UPSTREAM_PATH = b"/v1/messages"
    check_request = staticmethod(check_request)
    upstream_body = staticmethod(upstream_body)
    with_max_tokens = staticmethod(with_max_tokens)
    to_canonical = staticmethod(to_canonical)
    from_canonical = staticmethod(from_canonical)
    error_from_upstream = staticmethod(error_from_upstream)
    error_event = staticmethod(error_event)
    render = staticmethod(render)

    def decoder(self, stops: tuple[str, ...] = ()) -> Decoder:
        return Decoder()

    def output(self, info: ChatInfo, *, translated: bool, created: int) -> Output:
        if not translated:
            return _Relay() if info.stream else _Fold()
        return encoded(Encoder(), self) if info.stream else folded(self, created)


DIALECT: Dialect = _Messages()
