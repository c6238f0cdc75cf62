"""OpenAI Chat Completions: request checks, upstream body, stream relay and aggregation.

Upstream calls are always streamed with ``stream_options.include_usage`` so
the gateway sees time to first token and real usage on every request. A
streaming client gets the provider's chunks as they come, minus what it did
not ask for (the usage chunk and the ``"usage": null`` fields when it did not
set ``include_usage``); a non-streaming client gets the chunks folded into
the ``chat.completion`` object the provider would have returned.
"""

from __future__ import annotations

from typing import Any

import orjson

from edge.dialects.canonical import (
    STOP_SEQUENCE,
    TO_OPENAI_FINISH,
    Answer,
    ChatRequest,
    Event,
    Message,
    Part,
    Tool,
    Usage,
    from_openai_finish,
)
from edge.dialects.common import (
    ChatInfo,
    StreamBroken,
    check_content,
    check_list_of,
    check_type,
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
from hotpath.chunk import quoted_text

NAME = "openai"
_USAGE_NULL = b',"usage":null}'
# The common chunk of an OpenAI stream, as the provider writes it: one choice at index 0 whose
# delta is a piece of content and nothing else, no logprobs, no finish. Its text is read off
# the bytes when it holds no escape (no JSON parse: the decoder's hot path); anything else
# (another key order, an escape, a usage object, an error) takes the general path.
_TEXT_HEAD = b'"choices":[{"index":0,"delta":{"content":"'
_TEXT_TAIL = b'"},"logprobs":null,"finish_reason":null}]'
# ``Decoder.obj`` for such a chunk: what the outputs read of it (a choice, no usage)
TEXT_CHUNK: dict[str, Any] = {"choices": [{"index": 0}], "usage": None}
_DONE = b"data: [DONE]\n\n"
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")

# The top-level parameters the gateway reads or a provider would refuse, with the types, ranges
# and values the provider accepts (a wrong one is a 400 naming it, before any call).
FIELDS: dict[str, Field] = {
    "tool_choice": Field(
        (str, dict), "a string or an object", allowed=("none", "auto", "required")
    ),
    "function_call": Field((str, dict), "a string or an object", allowed=("none", "auto")),
    "stop": Field((str, list), "a string or an array of strings", items=str),
    "logprobs": Field(BOOL, "a boolean"),
    "top_logprobs": Field(INT, "an integer", lo=0, hi=20),
    "seed": Field(INT, "an integer"),
    "metadata": Field(OBJECT, "an object"),
    "stream": Field(BOOL, "a boolean"),
    "stream_options": Field(OBJECT, "an object"),
    "max_tokens": Field(INT, "an integer"),
    "max_completion_tokens": Field(INT, "an integer"),
    "temperature": Field(NUMBER, "a number", lo=0, hi=2),
    "top_p": Field(NUMBER, "a number", lo=0, hi=1),
    "presence_penalty": Field(NUMBER, "a number", lo=-2, hi=2),
    "frequency_penalty": Field(NUMBER, "a number", lo=-2, hi=2),
    "n": Field(INT, "an integer", lo=1, hi=128),
    "tools": Field((list,), "an array"),
    "response_format": Field(OBJECT, "an object"),
    "parallel_tool_calls": Field(BOOL, "a boolean"),
    "reasoning_effort": Field((str,), "a string"),
    "user": Field((str,), "a string"),
    "store": Field(BOOL, "a boolean"),
    "logit_bias": Field(OBJECT, "an object"),
    "modalities": Field((list,), "an array of strings", items=str),
}


def check_request(body: Any) -> ChatInfo:
    """Validate the fields the gateway relies on; 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", param=None)
    model = body.get("model")
    need(isinstance(model, str) and model, "model: a non-empty string is required", "model")
    messages = body.get("messages")
    need(
        isinstance(messages, list) and messages,
        "messages: a non-empty array is required",
        "messages",
    )
    assert isinstance(model, str) and isinstance(messages, list)
    for i, msg in enumerate(messages):
        need(isinstance(msg, dict), f"messages[{i}]: expected an object", f"messages[{i}]")
        need(
            msg.get("role") in _ROLES,
            f"messages[{i}].role: expected one of {', '.join(_ROLES)}",
            f"messages[{i}].role",
        )
        check_content(msg.get("content"), f"messages[{i}].content", nullable=True)
        calls = msg.get("tool_calls")
        check_list_of(calls, dict, "tool call objects", f"messages[{i}].tool_calls")
        for j, call in enumerate(calls or ()):
            need(
                isinstance(call.get("function"), dict),
                f"messages[{i}].tool_calls[{j}].function: expected an object",
                f"messages[{i}].tool_calls[{j}].function",
            )
        check_type(msg, "function_call", dict, "an object")
    check_list_of(body.get("tools"), dict, "tool objects", "tools")
    check_list_of(body.get("functions"), dict, "function objects", "functions")
    check_fields(body, FIELDS)
    opts = body.get("stream_options") or {}
    return ChatInfo(
        model=model, stream=bool(body.get("stream")), include_usage=bool(opts.get("include_usage"))
    )


def upstream_body(body: dict[str, Any], upstream_model: str) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    out["stream"] = True
    out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(out)


def error_from_upstream(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> UpstreamStatus:
    message, kind, code, param = f"provider returned HTTP {status}", None, None, None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            kind, code, param = err.get("type"), err.get("code"), err.get("param")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    keep = [(k, v) for k, v in headers if k in (b"retry-after", b"retry-after-ms")]
    return UpstreamStatus(status, message, provider_type=kind, code=code, param=param, headers=keep)


def error_event(err: UpstreamError) -> bytes:
    """The frame the SDK raises on mid-stream: ``data: {"error": {...}}``."""
    return (
        b"data: "
        + orjson.dumps(
            {
                "error": {
                    "message": err.message,
                    "type": "server_error",
                    "param": None,
                    "code": err.code,
                }
            }
        )
        + b"\n\n"
    )


def model_object(model_id: str, owner: str, created: int) -> dict[str, Any]:
    """One model as ``GET /v1/models/{id}`` answers it."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


def models_body(models: list[tuple[str, str, int]]) -> bytes:
    """``(id, owner, created)`` in the list shape."""
    return orjson.dumps({"object": "list", "data": [model_object(m, o, c) for m, o, c in models]})


def _chunk(data: bytes) -> dict[str, Any]:
    """A provider chunk as a dict; a chunk that carries an error ends the attempt."""
    obj = parse_event(data)
    err = obj.get("error")
    if err:
        message = err.get("message") if isinstance(err, dict) else None
        raise StreamBroken(str(message or "provider reported an error mid-stream"))
    return obj


class _Choice:
    __slots__ = (
        "annotations",
        "audio",
        "content",
        "finish_reason",
        "function_call",
        "logprobs",
        "refusal",
        "role",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, str] | None = None  # the legacy functions API
        self.finish_reason: str | None = None
        self.logprobs: dict[str, list[Any]] | None = None  # every chunk's, in order
        self.audio: dict[str, Any] | None = None
        self.annotations: list[Any] = []


class _Relay:
    """The provider's chunks to a streaming client, minus what it did not ask for."""

    __slots__ = ("_first", "_include_usage")

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._first: dict[str, Any] | None = None  # the first chunk: its id names the answer

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        if obj is None:
            return _DONE
        if self._first is None:
            self._first = obj
        if self._include_usage:
            return b"data: " + data + b"\n\n"
        if not obj.get("choices") and obj.get("usage"):
            return b""  # the usage chunk the client did not ask for
        if data.endswith(_USAGE_NULL):
            data = data[: -len(_USAGE_NULL)] + b"}"
        return b"data: " + data + b"\n\n"

    def close(self, done: bool) -> bytes:
        return b"" if done else _DONE  # finished but no [DONE]: finalise it ourselves

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        raise AssertionError("a streaming answer has no final body")

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None

    def resume(self) -> Encoder:
        """More chunks of the completion the client is reading: its id, created and model,
        and never a second role chunk."""
        first = self._first or {}
        enc = Encoder(self._include_usage, int(first.get("created") or 0))
        enc.continue_as(str(first.get("id", "")), str(first.get("model", "")))
        return enc


class _Fold:
    """The provider's chunks folded into the ``chat.completion`` it would have returned."""

    __slots__ = ("_choices", "_head")

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        if obj is None:
            return b""
        if obj is TEXT_CHUNK:  # more text of choice 0 (the decoder's hot path)
            c = self._choices.get(0)
            if c is not None:
                c.content.append(events[0][1])
                return b""
            obj = {"choices": [{"index": 0, "delta": {"content": events[0][1]}}]}
        if not self._head:
            self._head = obj
        elif len(events) == 1 and events[0][0] == "text":
            choices = obj["choices"]
            if len(choices) == 1:  # the common chunk: more text of a choice already begun
                choice = choices[0]
                c = self._choices.get(choice.get("index", 0))
                delta = choice.get("delta")
                if (
                    c is not None
                    and choice.get("logprobs") is None
                    and len(delta) == 1
                    and "content" in delta
                ):
                    c.content.append(events[0][1])
                    return b""
        for choice in obj.get("choices") or ():
            self._fold(choice, choice.get("delta") or {})
        return b""

    def _fold(self, choice: dict[str, Any], delta: dict[str, Any]) -> None:
        c = self._choices.get(choice.get("index", 0))
        if c is None:
            c = self._choices[choice.get("index", 0)] = _Choice()
        if delta.get("role"):
            c.role = delta["role"]
        if delta.get("content"):
            c.content.append(delta["content"])
        if delta.get("refusal"):
            c.refusal.append(delta["refusal"])
        for tc in delta.get("tool_calls") or ():
            slot = c.tool_calls.setdefault(
                tc.get("index", 0), {"id": "", "type": "function", "name": "", "arguments": []}
            )
            if tc.get("id"):
                slot["id"] = tc["id"]
            if tc.get("type"):
                slot["type"] = tc["type"]
            fn = tc.get("function") or {}
            if fn.get("name"):
                slot["name"] += fn["name"]
            if fn.get("arguments"):
                slot["arguments"].append(fn["arguments"])
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            if c.function_call is None:
                c.function_call = {"name": "", "arguments": ""}
            c.function_call["name"] += str(legacy.get("name") or "")
            c.function_call["arguments"] += str(legacy.get("arguments") or "")
        audio = delta.get("audio")
        if isinstance(audio, dict):
            if c.audio is None:
                c.audio = {"id": "", "data": "", "transcript": "", "expires_at": 0}
            for key in ("data", "transcript"):
                c.audio[key] += str(audio.get(key) or "")
            for key in ("id", "expires_at"):
                if audio.get(key):
                    c.audio[key] = audio[key]
        if isinstance(delta.get("annotations"), list):
            c.annotations.extend(delta["annotations"])
        if choice.get("finish_reason"):
            c.finish_reason = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            # each chunk carries its own tokens' logprobs: the answer has them all
            if c.logprobs is None:
                c.logprobs = {}
            for key, items in logprobs.items():
                if isinstance(items, list):
                    c.logprobs.setdefault(key, []).extend(items)

    def close(self, done: bool) -> bytes:
        return b""

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        head = self._head
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            message: dict[str, Any] = {
                "role": c.role,
                "content": "".join(c.content) if c.content or not c.tool_calls else None,
                "refusal": "".join(c.refusal) if c.refusal else None,
                "annotations": c.annotations,
            }
            if c.function_call is not None:
                message["function_call"] = c.function_call
                if not c.content:
                    message["content"] = None
            if c.audio is not None:
                message["audio"] = c.audio
            if c.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": t["id"],
                        "type": t["type"],
                        "function": {"name": t["name"], "arguments": "".join(t["arguments"])},
                    }
                    for _, t in sorted(c.tool_calls.items())
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": c.logprobs,
                    "finish_reason": c.finish_reason,
                }
            )
        out: dict[str, Any] = {
            "id": head.get("id", ""),
            "object": "chat.completion",
            "created": head.get("created", 0),
            "model": head.get("model", ""),
            "choices": choices,
            "usage": usage,
        }
        for key in ("service_tier", "system_fingerprint"):
            if key in head:
                out[key] = head[key]
        return orjson.dumps(out)

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return None


# ------------------------------------------------------------ translation
#
# Used only when a request in one dialect is served by a provider of the
# other (see canonical.py for the shared rules).

# Parameters that change nothing about the answer and are dropped when the
# target cannot carry them (each with its reason in docs/CONFIG.md).
_IGNORABLE = {
    "store",
    "metadata",
    "service_tier",
    "stream_options",
    "prompt_cache_key",
    "safety_identifier",
    "stream",
    "model",
    "messages",
    "user",
}
# Parameters whose default value changes nothing (so a client that sends the default is fine).
_NEUTRAL: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "presence_penalty": 0,
    "frequency_penalty": 0,
}
_NO = object()
_MAPPED = {
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
}


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise InvalidRequest(f"{where}[{i}]: only text parts are allowed here", param=where)
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _image_part(url: str, where: str) -> Part:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        if ";base64" not in head or not data:
            raise InvalidRequest(f"{where}: data URLs must be base64", param=where)
        return Part("image", media_type=head[5:].split(";", 1)[0], data=data)
    if url.startswith(("http://", "https://")):
        return Part("image", url=url)
    raise InvalidRequest(f"{where}: image_url.url must be an http(s) or data: URL", param=where)


def _user_parts(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [Part("text", text=content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: expected a string or an array of parts", param=where)
    parts = []
    for i, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            parts.append(Part("text", text=str(p.get("text", ""))))
        elif kind == "image_url":
            parts.append(
                _image_part(
                    str((p.get("image_url") or {}).get("url", "")), f"{where}[{i}].image_url"
                )
            )
        else:
            raise InvalidRequest(
                f"{where}[{i}].type: {kind!r} parts cannot be translated for the other provider",
                param=f"{where}[{i}]",
            )
    return parts


def to_canonical(body: dict[str, Any], target: str) -> ChatRequest:
    """An OpenAI request as a canonical one; 400 for what ``target`` cannot honour."""
    for key, value in body.items():
        if key in _IGNORABLE or key in _MAPPED or value is None or _NEUTRAL.get(key, _NO) == value:
            continue
        raise InvalidRequest(
            f"{key}: not supported by the {target} provider that serves this model", param=key
        )
    req = ChatRequest(model=str(body["model"]), messages=[], stream=bool(body.get("stream")))
    req.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    systems: list[str] = []
    for i, msg in enumerate(body["messages"]):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            systems.append(_text_of(msg.get("content"), f"{where}.content"))
        elif role == "user":
            _append(req.messages, "user", _user_parts(msg.get("content"), f"{where}.content"))
        elif role == "assistant":
            parts = []
            text = _text_of(msg.get("content"), f"{where}.content") + str(msg.get("refusal") or "")
            if text:
                parts.append(Part("text", text=text))
            for j, call in enumerate(msg.get("tool_calls") or []):
                fn = call.get("function") or {}
                if call.get("type", "function") != "function" or not isinstance(
                    fn.get("name"), str
                ):
                    raise InvalidRequest(
                        f"{where}.tool_calls[{j}]: only function tool calls can be translated",
                        param=f"{where}.tool_calls",
                    )
                parts.append(
                    Part(
                        "tool_call",
                        call_id=str(call.get("id", "")),
                        name=fn["name"],
                        arguments=str(fn.get("arguments") or "{}"),
                    )
                )
            if parts:
                _append(req.messages, "assistant", parts)
        elif role == "tool":
            result = _text_of(msg.get("content"), f"{where}.content")
            _append(
                req.messages,
                "user",
                [
                    Part(
                        "tool_result",
                        call_id=str(msg.get("tool_call_id", "")),
                        result=[Part("text", text=result)],
                    )
                ],
            )
        else:
            raise InvalidRequest(
                f"{where}.role: {role!r} messages cannot be translated", param=f"{where}.role"
            )
    req.system = "\n\n".join(s for s in systems if s)
    for i, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            tool.get("type") != "function"
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
        ):
            raise InvalidRequest(
                f"tools[{i}]: only function tools can be translated", param=f"tools[{i}]"
            )
        req.tools.append(
            Tool(
                fn["name"],
                str(fn.get("description") or ""),
                fn.get("parameters") or {"type": "object", "properties": {}},
            )
        )
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        need(
            choice in ("auto", "none", "required"),
            f"tool_choice: invalid value {choice!r}",
            "tool_choice",
        )
        req.tool_choice = choice
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        need(
            choice.get("type") == "function" and isinstance(name, str),
            "tool_choice: only {type: function, function: {name}} can be translated",
            "tool_choice",
        )
        req.tool_choice, req.tool_name = "named", str(name)
    req.parallel_tool_calls = body.get("parallel_tool_calls") is not False
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        req.json_mode = "object"
    elif fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        need(
            isinstance(spec.get("schema"), dict),
            "response_format.json_schema.schema: required",
            "response_format",
        )
        req.json_mode, req.json_schema, req.json_name = (
            "schema",
            spec["schema"],
            str(spec.get("name") or "output"),
        )
    stop = body.get("stop")
    req.stop = [stop] if isinstance(stop, str) else list(stop or [])
    req.max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    req.temperature, req.top_p = body.get("temperature"), body.get("top_p")
    req.user = str(body.get("user") or "")
    return req


def _append(messages: list[Message], role: str, parts: list[Part]) -> None:
    """Consecutive turns of one role become one turn (the Anthropic rule; harmless for OpenAI)."""
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, parts))


def from_canonical(
    req: ChatRequest, upstream_model: str, default_max_tokens: int = 0
) -> dict[str, Any]:
    """The OpenAI request for a canonical one (always streamed, with usage)."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    for m in req.messages:
        if m.role == "assistant":
            text = "".join(p.text for p in m.parts if p.kind == "text")
            calls = [
                {
                    "id": p.call_id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": p.arguments},
                }
                for p in m.parts
                if p.kind == "tool_call"
            ]
            out: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
            continue
        rest: list[dict[str, Any]] = []
        for p in m.parts:
            if p.kind == "tool_result":
                if any(r.kind != "text" for r in p.result):
                    raise InvalidRequest(
                        "tool results with images cannot be sent to an OpenAI provider",
                        param="messages",
                    )
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": p.call_id,
                        "content": "".join(r.text for r in p.result),
                    }
                )
            elif p.kind == "text":
                rest.append({"type": "text", "text": p.text})
            elif p.kind == "image":
                url = p.url or f"data:{p.media_type};base64,{p.data}"
                rest.append({"type": "image_url", "image_url": {"url": url}})
        if rest:
            content: Any = rest[0]["text"] if len(rest) == 1 and rest[0]["type"] == "text" else rest
            messages.append({"role": "user", "content": content})
    body: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if req.max_tokens is not None:
        body["max_completion_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    # ``req.stop`` is not sent: an OpenAI provider drops the sequence and says only "stop",
    # which cannot tell a matched sequence from the end of the turn. The gateway matches the
    # sequences itself in the decoder (``Decoder(stops)``), so the caller learns which one
    # ended the answer (Anthropic's ``stop_reason: stop_sequence``), and then ends the call.
    if req.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.schema},
            }
            for t in req.tools
        ]
        if req.tool_choice == "named":
            body["tool_choice"] = {"type": "function", "function": {"name": req.tool_name}}
        else:
            body["tool_choice"] = req.tool_choice
        if not req.parallel_tool_calls:
            body["parallel_tool_calls"] = False
    if req.json_mode == "object":
        body["response_format"] = {"type": "json_object"}
    elif req.json_mode == "schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": req.json_name, "schema": req.json_schema},
        }
    if req.user:
        body["user"] = req.user
    return body


class Decoder:
    """An OpenAI provider's chunks as canonical events (see ``core.Decoder``).

    Content and refusals are text; tool calls are tool events; a legacy
    ``function_call`` and audio are ``produced`` (output with no canonical
    counterpart: a first token, never translated).

    With ``stops`` (a translated request's stop sequences, which the provider
    was not given) the text is matched here: the tail that may begin a
    sequence is held back until it cannot, and a match ends the answer with
    ``finish(stop_sequence, the sequence)`` and ``end``; ``cut`` tells the
    reader to stop reading the provider."""

    __slots__ = ("_held", "_hold", "_started", "_stops", "cut", "obj", "usage")

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self._started = False
        self._stops = tuple(s for s in stops if s)
        self._hold = max(map(len, self._stops), default=1) - 1
        self._held = ""
        self.cut = False
        self.obj: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, name: bytes, data: bytes) -> list[Event]:
        if self.cut:
            return []
        if data[:6] == b"[DONE]":
            self.obj = None
            return [("end",)]
        if self._started and not self._stops:
            try:  # the common chunk, read without parsing it (hotpath/_chunk.pyx)
                text = quoted_text(data, _TEXT_HEAD, _TEXT_TAIL, b'"usage":{', b'"error"')
            except UnicodeDecodeError:
                raise StreamBroken("provider sent a malformed stream event") from None
            if text is not None:
                self.obj = TEXT_CHUNK
                return [("text", text)]
        try:
            obj = self.obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamBroken("provider sent a malformed stream event") from None
        if obj.__class__ is not dict:
            raise StreamBroken("provider sent a malformed stream event")
        if "error" in obj:
            _chunk(data)  # raises with the provider's message (or passes a null error)
        choices = obj.get("choices")
        if self._started and choices and len(choices) == 1 and not self._stops:
            # the common chunk: one choice, one piece of text, nothing else
            choice = choices[0]
            delta = choice.get("delta")
            if delta and len(delta) == 1 and choice.get("finish_reason") is None:
                content = delta.get("content")
                if content and not obj.get("usage"):
                    return [("text", content)]
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(("start", str(obj.get("id", "")), str(obj.get("model", ""))))
        for choice in choices or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                if self._stops:
                    if self._match(delta["content"], events):
                        return events
                else:
                    events.append(("text", delta["content"]))
            if delta.get("refusal"):
                events.append(("text", delta["refusal"]))
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                if tc.get("id") or fn.get("name"):
                    events.append(
                        (
                            "tool_start",
                            tc.get("index", 0),
                            str(tc.get("id") or ""),
                            str(fn.get("name") or ""),
                        )
                    )
                if fn.get("arguments"):
                    events.append(("tool_args", tc.get("index", 0), fn["arguments"]))
            legacy = delta.get("function_call")
            if legacy:
                events.append(
                    ("produced", f"{legacy.get('name') or ''}{legacy.get('arguments') or ''}")
                )
            audio = delta.get("audio")
            if audio:
                events.append(("produced", audio.get("transcript") or ""))
            if choice.get("finish_reason"):
                if self._held:
                    events.append(("text", self._held))
                    self._held = ""
                events.append(("finish", from_openai_finish(choice["finish_reason"]), None))
        usage = obj.get("usage")
        if usage:
            self.usage = usage
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            prompt = int(usage.get("prompt_tokens") or 0)
            events.append(
                (
                    "usage",
                    Usage(
                        input=prompt - cached,
                        output=int(usage.get("completion_tokens") or 0),
                        cache_read=cached,
                        provider=usage,
                    ),
                )
            )
        return events

    def _match(self, piece: str, events: list[Event]) -> bool:
        """Text up to a stop sequence; True when one matched (the answer ends there)."""
        text = self._held + piece
        # the sequence completed first wins (the smallest end; at one end, the longest), as
        # when the text arrives a character at a time: chunking never changes the answer
        found, at, end = "", -1, 0
        for seq in self._stops:
            i = text.find(seq)
            if i >= 0 and (at < 0 or (i + len(seq), i) < (end, at)):
                found, at, end = seq, i, i + len(seq)
        if at >= 0:
            if at:
                events.append(("text", text[:at]))
            events += [("finish", STOP_SEQUENCE, found), ("end",)]
            self._held, self.cut = "", True
            return True
        keep = 0  # the longest tail that may still become a sequence
        for k in range(min(self._hold, len(text)), 0, -1):
            tail = text[-k:]
            if any(seq.startswith(tail) for seq in self._stops):
                keep = k
                break
        if len(text) > keep:
            events.append(("text", text[: len(text) - keep]))
        self._held = text[len(text) - keep :]
        return False


def _usage_body(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {
        "prompt_tokens": u.prompt,
        "completion_tokens": u.output,
        "total_tokens": u.prompt + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
        "provider_usage": u.provider,
    }


def _chat_id(provider_id: str) -> str:
    return "chatcmpl-" + provider_id.removeprefix("msg_")


class Encoder:
    """Canonical events as an OpenAI client's chunks."""

    __slots__ = ("_created", "_head", "_include_usage", "_tail", "_usage", "done")

    def __init__(self, include_usage: bool, created: int) -> None:
        self._include_usage = include_usage
        self._created = created
        self._head = b""
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._usage: Usage | None = None
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return (
            self._head
            + orjson.dumps(
                [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            )
            + self._tail
        )

    def encode(self, ev: Event) -> bytes:
        kind = ev[0]
        if kind == "text":
            return self._chunk({"content": ev[1]})
        if kind == "tool_args":
            return self._chunk({"tool_calls": [{"index": ev[1], "function": {"arguments": ev[2]}}]})
        if kind == "tool_start":
            call = {
                "index": ev[1],
                "id": ev[2],
                "type": "function",
                "function": {"name": ev[3], "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if kind == "start":
            self.continue_as(_chat_id(ev[1]), ev[2])
            return self._chunk({"role": "assistant", "content": "", "refusal": None})
        if kind == "finish":
            return self._chunk({}, TO_OPENAI_FINISH[ev[1]])
        if kind == "usage":
            if self._include_usage:
                return self._head + b'[],"usage":' + orjson.dumps(_usage_body(ev[1])) + b"}\n\n"
            return b""
        if kind == "end":
            return self.close()
        return b""

    def continue_as(self, chat_id: str, model: str) -> None:
        """Write chunks of the completion ``chat_id`` (the role chunk is the caller's)."""
        self._head = (
            b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":'
            % (orjson.dumps(chat_id), self._created, orjson.dumps(model))
        )

    def resume(self) -> Encoder:
        """A fresh encoder that continues this one's completion (a rescue)."""
        enc = Encoder(self._include_usage, self._created)
        enc._head = self._head
        return enc

    def close(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        return _DONE


def render(answer: Answer, created: int) -> bytes:
    """A folded answer as an OpenAI ``chat.completion`` body."""
    text = "".join(answer.text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not answer.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
            }
            for c in answer.tool_calls
        ]
    return orjson.dumps(
        {
            "id": _chat_id(answer.id),
            "object": "chat.completion",
            "created": created,
            "model": answer.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": TO_OPENAI_FINISH[answer.finish or "length"],
                }
            ],
            "usage": _usage_body(answer.usage),
        }
    )


def with_max_tokens(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """Both output limit fields it sets lowered (so neither can undo the cap); the current
    one set when it sets none."""
    out = dict(body)
    keys = [k for k in ("max_tokens", "max_completion_tokens") if k in out] or [
        "max_completion_tokens"
    ]
    for key in keys:
        out[key] = max_tokens
    return out


class _ChatCompletions:
    NAME = NAME
    KIND = "openai"
    ERRORS: ErrorDialect = "openai"
    LIMIT_PARAM = "max_tokens"
    UPSTREAM_PATH = b"/chat/completions"
    check_request = staticmethod(check_request)
    upstream_body = staticmethod(upstream_body)
    with_max_tokens = staticmethod(with_max_tokens)
    to_canonical = staticmethod(to_canonical)
    from_canonical = staticmethod(from_canonical)
    error_from_upstream = staticmethod(error_from_upstream)
    error_event = staticmethod(error_event)
    render = staticmethod(render)

    def decoder(self, stops: tuple[str, ...] = ()) -> Decoder:
        return Decoder(stops)

    def output(self, info: ChatInfo, *, translated: bool, created: int) -> Output:
        if not translated:
            return _Relay(info.include_usage) if info.stream else _Fold()
        return (
            encoded(Encoder(info.include_usage, created), self)
            if info.stream
            else folded(self, created)
        )


DIALECT: Dialect = _ChatCompletions()
