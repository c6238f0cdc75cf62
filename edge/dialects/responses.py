"""The OpenAI Responses API (``POST /v1/responses``): request checks, pass-through, translation.

An OpenAI-kind provider gets the request as it is (``upstream_body``: the
model named, always streamed) and its typed events are relayed as they come
(``_Relay``); a non-streaming client gets the Response object that
``response.completed`` carries. An Anthropic-kind provider gets the request
translated through the canonical one (``to_canonical``); its events come back
through ``anthropic.Decoder`` and leave as Responses events (``Encoder``) or,
folded, as a Response object (``render``).

Wire rules kept here (the SDK's types, ``openai/types/responses``):

- Events: an ``event:`` line naming the type, one ``data:`` line whose JSON
  has the same ``type`` and an increasing ``sequence_number``; no ``[DONE]``.
  Order: ``response.created``, ``response.in_progress``, per output item
  ``output_item.added`` ... ``output_item.done``, then exactly one of
  ``response.completed``, ``response.incomplete`` or ``response.failed``.
- A failure after bytes reached the client ends the stream with
  ``response.failed`` (``error.code`` set): clients treat a stream without
  ``response.completed`` as retryable, and never a truncated answer as whole.
  (A data object with a top-level ``error`` key would make the SDK raise at
  once; the typed events never have one.)
- Usage: ``input_tokens`` includes the cached ones
  (``input_tokens_details.cached_tokens``); ``total_tokens`` is input plus
  output. Translated usage keeps the provider's figures: input is uncached
  plus cache reads plus cache writes.
- Function tools are flat (``{"type":"function","name","parameters"}``), and so
  is a named ``tool_choice`` and ``text.format``'s ``json_schema``.
- Translation drops only what changes nothing in the answer or cannot be
  carried and is named in docs/CONFIG.md (``reasoning`` effort and summary,
  ``text.verbosity``, reasoning items replayed as input); anything else the
  target cannot honour is a 400 naming the parameter.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from edge.dialects.canonical import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Answer,
    ChatRequest,
    Event,
    Message,
    Part,
    Tool,
    Usage,
)
from edge.dialects.common import ChatInfo, StreamBroken, check_type, need, parse_event
from edge.dialects.core import Dialect, Output
from edge.dialects.openai import error_from_upstream, model_object, models_body
from edge.errors import ErrorDialect, InvalidRequest, UpstreamError

__all__ = [
    "DIALECT",
    "NAME",
    "Decoder",
    "Encoder",
    "check_request",
    "continued",
    "echo_of",
    "error_event",
    "error_from_upstream",
    "input_items",
    "items_page",
    "listed_items",
    "model_object",
    "models_body",
    "render",
    "to_canonical",
    "upstream_body",
]

NAME = "responses"
_ROLES = ("user", "assistant", "system", "developer")
_ITEMS = ("message", "function_call", "function_call_output", "reasoning", "item_reference")
_FORMATS = ("text", "json_object", "json_schema")
# codes a client gives up on (Codex: fatal); anything else in response.failed is retried
_FATAL = ("context_length_exceeded", "insufficient_quota", "usage_not_included")


# ------------------------------------------------------------ request checks


def _check_parts(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    need(isinstance(content, list), f"{where}: expected a string or an array of parts", where)
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        need(isinstance(part, dict) and isinstance(part.get("type"), str), f"{at}: expected a content part (an object with a type)", at)  # fmt: skip
        if part["type"] in ("input_text", "output_text"):
            need(isinstance(part.get("text"), str), f"{at}.text: expected a string", f"{at}.text")


def _check_item(item: Any, where: str) -> None:
    need(isinstance(item, dict), f"{where}: expected an input item (an object)", where)
    kind = item.get("type", "message" if "role" in item else None)
    need(kind in _ITEMS, f"{where}.type: expected one of {', '.join(_ITEMS)}", f"{where}.type")
    if kind == "message":
        need(item.get("role") in _ROLES, f"{where}.role: expected one of {', '.join(_ROLES)}", f"{where}.role")  # fmt: skip
        _check_parts(item.get("content"), f"{where}.content")
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            need(isinstance(item.get(key), str), f"{where}.{key}: a string is required", f"{where}.{key}")  # fmt: skip
    elif kind == "function_call_output":
        need(isinstance(item.get("call_id"), str), f"{where}.call_id: a string is required", f"{where}.call_id")  # fmt: skip
        _check_parts(item.get("output"), f"{where}.output")
    elif kind == "reasoning":
        summary = item.get("summary")
        need(summary is None or isinstance(summary, list), f"{where}.summary: expected an array", f"{where}.summary")  # fmt: skip
    else:
        need(isinstance(item.get("id"), str), f"{where}.id: a string is required", f"{where}.id")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    need(isinstance(tools, list), "tools: expected an array of tool objects", "tools")
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        need(isinstance(tool, dict) and isinstance(tool.get("type"), str), f"{at}: expected a tool object with a type", at)  # fmt: skip
        if tool["type"] == "function":
            need(isinstance(tool.get("name"), str) and tool["name"], f"{at}.name: a non-empty string is required", f"{at}.name")  # fmt: skip
            params = tool.get("parameters")
            need(params is None or isinstance(params, dict), f"{at}.parameters: expected an object", f"{at}.parameters")  # fmt: skip
            check_type(tool, "strict", bool, "a boolean")
            check_type(tool, "description", str, "a string")


def _check_text(text: Any) -> None:
    if text is None:
        return
    need(isinstance(text, dict), "text: expected an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return
    need(isinstance(fmt, dict) and fmt.get("type") in _FORMATS, f"text.format.type: expected one of {', '.join(_FORMATS)}", "text.format.type")  # fmt: skip
    if fmt["type"] == "json_schema":
        need(isinstance(fmt.get("name"), str) and fmt["name"], "text.format.name: a non-empty string is required", "text.format.name")  # fmt: skip
        need(isinstance(fmt.get("schema"), dict), "text.format.schema: an object is required", "text.format.schema")  # fmt: skip


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    need(isinstance(metadata, dict), "metadata: expected an object", "metadata")
    need(len(metadata) <= 16, "metadata: at most 16 key-value pairs", "metadata")
    for key, value in metadata.items():
        need(len(key) <= 64, f"metadata: key {key[:16]!r}... is longer than 64 characters", "metadata")  # fmt: skip
        need(isinstance(value, str) and len(value) <= 512, f"metadata.{key}: expected a string of at most 512 characters", "metadata")  # fmt: skip


def check_request(body: Any) -> ChatInfo:
    """Validate the fields the gateway relies on; 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", param=None)
    model = body.get("model")
    need(isinstance(model, str) and model, "model: a non-empty string is required", "model")
    items = body.get("input")
    need(isinstance(items, (str, list)), "input: a string or an array of input items is required", "input")  # fmt: skip
    if isinstance(items, list):
        for i, item in enumerate(items):
            _check_item(item, f"input[{i}]")
    assert isinstance(model, str)
    _check_tools(body.get("tools"))
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        need(choice in ("none", "auto", "required"), f"tool_choice: invalid value {choice!r}", "tool_choice")  # fmt: skip
    elif choice is not None:
        need(isinstance(choice, dict) and isinstance(choice.get("type"), str), "tool_choice: expected a string or an object with a type", "tool_choice")  # fmt: skip
    _check_text(body.get("text"))
    _check_metadata(body.get("metadata"))
    check_type(body, "instructions", str, "a string")
    check_type(body, "reasoning", dict, "an object")
    check_type(body, "max_output_tokens", int, "an integer")
    max_out = body.get("max_output_tokens")
    need(max_out is None or max_out >= 1, "max_output_tokens: must be at least 1", "max_output_tokens")  # fmt: skip
    for key in ("parallel_tool_calls", "store", "stream", "background"):
        check_type(body, key, bool, "a boolean")
    for key in ("temperature", "top_p"):
        check_type(body, key, (int, float), "a number")
    for key in ("previous_response_id", "user", "prompt_cache_key", "safety_identifier"):
        check_type(body, key, str, "a string")
    check_type(body, "top_logprobs", int, "an integer")
    check_type(body, "stream_options", dict, "an object")
    include = body.get("include")
    need(include is None or (isinstance(include, list) and all(isinstance(x, str) for x in include)), "include: expected an array of strings", "include")  # fmt: skip
    need(body.get("truncation") in (None, "auto", "disabled"), "truncation: expected 'auto' or 'disabled'", "truncation")  # fmt: skip
    need(not body.get("background"), "background: not supported by this gateway; send `Prefer: respond-async` to run a request as a job", "background")  # fmt: skip
    need(body.get("conversation") is None, "conversation: not supported by this gateway; use previous_response_id", "conversation")  # fmt: skip
    need(body.get("prompt") is None, "prompt: stored prompt templates are not supported by this gateway", "prompt")  # fmt: skip
    return ChatInfo(model=model, stream=bool(body.get("stream")), echo=echo_of(body))


def upstream_body(body: dict[str, Any], upstream_model: str) -> bytes:
    """The request as an OpenAI-kind provider gets it: its model, always streamed (the
    gateway keeps the conversations: ``previous_response_id`` was already expanded)."""
    out = dict(body)
    out["model"] = upstream_model
    out["stream"] = True
    out.pop("previous_response_id", None)
    return orjson.dumps(out)


# ------------------------------------------------------------ conversations


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string input is one user message)."""
    items = body.get("input")
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}]  # fmt: skip
    out = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and "type" not in item:
            item = {"type": "message", **item}
        out.append(item)
    return out


def continued(
    body: dict[str, Any], history: list[dict[str, Any]], output: list[dict[str, Any]]
) -> dict[str, Any]:
    """The request with a stored response's conversation before its own input (the stored
    input and output items; never its instructions). ``previous_response_id`` stays, for
    the answer's echo; no provider sees it (``upstream_body``, ``to_canonical``)."""
    return {**body, "input": [*history, *output, *input_items(body)]}


def listed_items(items: list[dict[str, Any]], response_id: str) -> list[dict[str, Any]]:
    """A stored response's input items as ``GET .../input_items`` lists them: each with an
    id (the client's, else one derived from the response's)."""
    out = []
    for i, item in enumerate(items):
        if not item.get("id"):
            prefix = "fco" if item.get("type") == "function_call_output" else "msg"
            item = {"id": f"{prefix}_{response_id.removeprefix('resp_')}_{i}", **item}
        out.append(item)
    return out


def items_page(items: list[dict[str, Any]], *, order: str, limit: str, after: str) -> dict[str, Any]:  # fmt: skip
    """One page of a list in the API's shape (``order`` asc|desc, ``limit`` 1-100, ``after``
    an item id); 400 naming the query parameter."""
    need(order in ("asc", "desc"), "order: expected 'asc' or 'desc'", "order")
    need(limit.isdigit() and 1 <= int(limit) <= 100, "limit: expected an integer from 1 to 100", "limit")  # fmt: skip
    ordered = items if order == "asc" else items[::-1]
    ids = [str(item.get("id")) for item in ordered]
    start = ids.index(after) + 1 if after in ids else 0
    page = ordered[start : start + int(limit)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + len(page) < len(ordered),
    }


# ------------------------------------------------------------ pass-through


def _event(kind: str, seq: int, body: dict[str, Any]) -> bytes:
    data = {"type": kind, "sequence_number": seq, **body}
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(err: UpstreamError, response: dict[str, Any] | None = None, seq: int = 0) -> bytes:
    """``response.failed`` for a stream that already sent bytes: the response so far, its
    ``error.code`` the gateway's (retryable unless a client-fatal code). The stream's own
    ``Output`` numbers it after what was sent (``core.Stream.error_event``)."""
    response = response or {"id": "", "object": "response", "output": []}
    failed = {**response, "status": "failed", "usage": None}
    code = err.code if err.code in _FATAL else (err.code or "server_error")
    failed["error"] = {"code": code, "message": err.message}
    return _event("response.failed", seq, {"response": failed})


class _Relay:
    """The provider's typed events relayed as they come (``stream``), or its Response object
    kept from ``response.completed`` (the non-streaming answer); either way the last
    Response object seen is what the gateway stores, and the numbering continues into a
    ``response.failed`` should the stream break after bytes were sent."""

    __slots__ = ("_previous", "_seq", "_stream", "response")

    def __init__(self, *, stream: bool, previous: str | None = None) -> None:
        self._stream = stream
        self._previous = previous  # the gateway's conversation, which the provider never saw
        self._seq = -1
        self.response: dict[str, Any] = {}

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        if obj is None:
            return b""
        seq = obj.get("sequence_number")
        if isinstance(seq, int):
            self._seq = seq
        response = obj.get("response")
        if isinstance(response, dict):
            self.response = response
            if self._previous is not None:
                response["previous_response_id"] = self._previous
                data = orjson.dumps(obj)
        if not self._stream:
            return b""
        return b"event: " + str(obj.get("type")).encode() + b"\ndata: " + data + b"\n\n"

    def close(self, done: bool) -> bytes:
        return b""

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        return orjson.dumps(self.response)

    def error_event(self, err: UpstreamError) -> bytes:
        self._seq += 1
        return error_event(err, self.response, self._seq)

    def answer_object(self) -> dict[str, Any] | None:
        return self.response if self.response.get("status") in ("completed", "incomplete") else None


class Decoder:
    """A Responses provider's events as canonical events (``response.failed`` and ``error``
    end the attempt)."""

    __slots__ = ("_tool_of_item", "_tools", "cut", "obj", "usage")

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self._tool_of_item: dict[int, int] = {}
        self._tools = 0
        self.cut = False  # the Responses API has no stop sequences to match
        self.obj: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, name: bytes, data: bytes) -> list[Event]:
        obj = self.obj = parse_event(data)
        kind = obj.get("type") or name.decode("latin-1")
        return self.events_of(str(kind), obj)

    def events_of(self, kind: str, obj: dict[str, Any]) -> list[Event]:
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = obj.get("delta")
            return [("text", delta)] if isinstance(delta, str) and delta else []
        if kind.endswith(".delta") and kind != "response.function_call_arguments.delta":
            # reasoning summaries and the like: the model is answering (a first token),
            # with nothing another dialect could carry
            delta = obj.get("delta")
            return [("produced", delta if isinstance(delta, str) else "")]
        if kind == "response.function_call_arguments.delta":
            index = self._tool_of_item.get(obj.get("output_index", -1))
            delta = obj.get("delta")
            if index is None or not isinstance(delta, str) or not delta:
                return []
            return [("tool_args", index, delta)]
        if kind == "response.output_item.added":
            item = obj.get("item") or {}
            if not isinstance(item, dict) or item.get("type") != "function_call":
                return []
            index = self._tools
            self._tools += 1
            self._tool_of_item[obj.get("output_index", index)] = index
            events: list[Event] = [
                ("tool_start", index, str(item.get("call_id") or ""), str(item.get("name") or ""))
            ]
            if item.get("arguments"):
                events.append(("tool_args", index, str(item["arguments"])))
            return events
        if kind == "response.created":
            r = obj.get("response") or {}
            return [("start", str(r.get("id", "")), str(r.get("model", "")))]
        if kind in ("response.completed", "response.incomplete"):
            r = obj.get("response") or {}
            if isinstance(r.get("usage"), dict):
                self.usage = r["usage"]
            return [
                ("finish", _finish_of(r), None),
                ("usage", usage_of(r.get("usage"))),
                ("end",),
            ]
        if kind == "response.failed":
            err = (obj.get("response") or {}).get("error") or {}
            message = err.get("message") if isinstance(err, dict) else None
            raise StreamBroken(str(message or "provider reported response.failed"))
        if kind == "error":
            raise StreamBroken(str(obj.get("message") or "provider reported an error mid-stream"))
        return []


def _finish_of(response: dict[str, Any]) -> str:
    if response.get("status") == "completed":
        output = response.get("output") or []
        calls = any(isinstance(o, dict) and o.get("type") == "function_call" for o in output)
        return TOOL_CALLS if calls else STOP
    reason = (response.get("incomplete_details") or {}).get("reason")
    return CONTENT_FILTER if reason == "content_filter" else LENGTH


def usage_of(usage: Any) -> Usage:
    """A Responses usage object, split: ``input_tokens`` holds the cached ones."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    total = int(usage.get("input_tokens") or 0)
    cached = min(int(details.get("cached_tokens") or 0), total)
    written = min(int(details.get("cache_write_tokens") or 0), total - cached)
    return Usage(
        input=total - cached - written,
        output=int(usage.get("output_tokens") or 0),
        cache_read=cached,
        cache_write=written,
        provider=usage,
    )


# ------------------------------------------------------------ translation
#
# Used when a Responses request is served by an Anthropic-kind provider (the
# rules shared with the other dialects are in canonical.py).

_IGNORABLE = {
    "model", "input", "instructions", "stream", "stream_options", "store", "metadata",
    "service_tier", "prompt_cache_key", "safety_identifier", "include", "truncation",
    "previous_response_id", "background", "user",
    # reasoning is the model's own business: an Anthropic model answers without extended
    # thinking (docs/CONFIG.md); its effort and summary change no field of the answer
    "reasoning",
}  # fmt: skip
_MAPPED = {"tools", "tool_choice", "parallel_tool_calls", "text", "max_output_tokens", "temperature", "top_p"}  # fmt: skip
_NEUTRAL: dict[str, Any] = {"top_logprobs": 0, "max_tool_calls": None}
_NO = object()


def _text_parts(content: Any, where: str, *, images: bool) -> list[Part]:
    if isinstance(content, str):
        return [Part("text", text=content)]
    parts: list[Part] = []
    for j, p in enumerate(content or []):
        kind = p.get("type")
        if kind in ("input_text", "output_text"):
            parts.append(Part("text", text=str(p.get("text", ""))))
        elif kind == "refusal":
            parts.append(Part("text", text=str(p.get("refusal", ""))))
        elif kind == "input_image" and images:
            parts.append(_image(p, f"{where}[{j}]"))
        else:
            raise InvalidRequest(
                f"{where}[{j}].type: {kind!r} parts cannot be translated for the other provider",
                param=f"{where}[{j}]",
            )
    return parts


def _image(part: dict[str, Any], where: str) -> Part:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(
            f"{where}: only images given by image_url can be translated (not file_id)",
            param=where,
        )
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        return Part("image", media_type=head[5:].split(";", 1)[0], data=data)
    return Part("image", url=url)


def _append(messages: list[Message], role: str, parts: list[Part]) -> None:
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, parts))


def to_canonical(body: dict[str, Any], target: str) -> ChatRequest:
    """A Responses request as a canonical one; 400 for what ``target`` cannot honour."""
    for key, value in body.items():
        if key in _IGNORABLE or key in _MAPPED or value is None or _NEUTRAL.get(key, _NO) == value:
            continue
        raise InvalidRequest(
            f"{key}: not supported by the {target} provider that serves this model", param=key
        )
    req = ChatRequest(model=str(body["model"]), messages=[], stream=bool(body.get("stream")))
    systems = [str(body.get("instructions") or "")]
    for i, item in enumerate(input_items(body)):
        where, kind = f"input[{i}]", item.get("type")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                parts = _text_parts(item.get("content"), f"{where}.content", images=False)
                systems.append("".join(p.text for p in parts))
            else:
                parts = _text_parts(item.get("content"), f"{where}.content", images=role == "user")
                _append(req.messages, str(role), parts)
        elif kind == "function_call":
            call = Part("tool_call", call_id=item["call_id"], name=item["name"], arguments=item["arguments"] or "{}")  # fmt: skip
            _append(req.messages, "assistant", [call])
        elif kind == "function_call_output":
            result = _text_parts(item.get("output"), f"{where}.output", images=True)
            _append(req.messages, "user", [Part("tool_result", call_id=item["call_id"], result=result)])  # fmt: skip
        elif kind == "reasoning":
            continue  # another model's reasoning: nothing an Anthropic model can read
        else:
            raise InvalidRequest(
                f"{where}.type: {kind!r} items cannot be translated for the other provider",
                param=f"{where}.type",
            )
    req.system = "\n\n".join(s for s in systems if s)
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"tools[{i}]: only function tools can be translated (not {tool.get('type')!r})",
                param=f"tools[{i}]",
            )
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        req.tools.append(Tool(tool["name"], str(tool.get("description") or ""), schema))
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        req.tool_choice = choice
    elif isinstance(choice, dict):
        need(
            choice.get("type") == "function" and isinstance(choice.get("name"), str),
            "tool_choice: only {type: function, name} can be translated",
            "tool_choice",
        )
        req.tool_choice, req.tool_name = "named", str(choice["name"])
    req.parallel_tool_calls = body.get("parallel_tool_calls") is not False
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        req.json_mode = "object"
    elif fmt.get("type") == "json_schema":
        req.json_mode, req.json_schema, req.json_name = "schema", fmt["schema"], fmt["name"]
    req.max_tokens = body.get("max_output_tokens")
    req.temperature, req.top_p = body.get("temperature"), body.get("top_p")
    req.user = str(body.get("user") or body.get("safety_identifier") or "")
    return req


def echo_of(body: dict[str, Any]) -> dict[str, Any]:
    """The request's settings as the Response object echoes them."""
    tools = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            tools.append(
                {
                    "type": "function",
                    "name": tool.get("name"),
                    "description": tool.get("description"),
                    "parameters": tool.get("parameters"),
                    "strict": tool.get("strict", True),
                }
            )
        else:
            tools.append(tool)
    reasoning = body.get("reasoning") or {}
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "user": body.get("user"),
    }


def _usage_body(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {
        "input_tokens": u.prompt,
        "input_tokens_details": {
            "cached_tokens": u.cache_read,
            "cache_write_tokens": u.cache_write,
        },
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt + u.output,
    }


def _suffix(provider_id: str) -> str:
    for prefix in ("msg_", "chatcmpl-", "resp_"):
        if provider_id.startswith(prefix):
            return provider_id[len(prefix) :]
    return provider_id or os.urandom(12).hex()


def _response(
    rid: str, model: str, created: int, echo: dict[str, Any], status: str, output: list[Any]
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "usage": None,
        **echo,
    }


def _finish(response: dict[str, Any], finish: str, usage: Usage | None) -> str:
    """Complete a response object for its finish reason; the closing event's type."""
    response["usage"] = _usage_body(usage)
    if finish in (LENGTH, CONTENT_FILTER):
        response["status"] = "incomplete"
        reason = "max_output_tokens" if finish == LENGTH else "content_filter"
        response["incomplete_details"] = {"reason": reason}
        response["completed_at"] = None
        return "response.incomplete"
    response["status"] = "completed"
    response["completed_at"] = int(time.time())
    return "response.completed"


def _text_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [] if status == "in_progress" else [_text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}  # fmt: skip


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:  # fmt: skip
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call_id, "name": name}  # fmt: skip


class Encoder:
    """Canonical events as a Responses client's typed event sequence.

    Output items open and close as the content kind changes (a message, then
    each function call); the closing ``response.completed`` (or
    ``.incomplete``) is held until the provider's usage is known, so the
    client gets real token counts. ``response`` is the final Response object
    once sent (what the gateway stores)."""

    __slots__ = ("_created", "_echo", "_finish", "_open", "_seq", "_usage", "done", "response")

    def __init__(self, echo: dict[str, Any], created: int) -> None:
        self._echo = echo
        self._created = created
        self._seq = 0
        self._open: dict[str, Any] | None = None  # the output item being streamed
        self._finish: str | None = None
        self._usage: Usage | None = None
        self.response: dict[str, Any] = _response("", "", created, echo, "in_progress", [])
        self.done = False

    def _ev(self, kind: str, body: dict[str, Any]) -> bytes:
        out = _event(kind, self._seq, body)
        self._seq += 1
        return out

    def _close_item(self) -> bytes:
        item = self._open
        if item is None:
            return b""
        self._open = None
        index = len(self.response["output"])
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = "".join(item.pop("_text"))
            done = _text_item(item["id"], text, "completed")
            loc = {**where, "content_index": 0}
            out = self._ev(
                "response.output_text.done", {**loc, "text": text, "logprobs": []}
            ) + self._ev("response.content_part.done", {**loc, "part": _text_part(text)})
        else:
            args = "".join(item.pop("_args"))
            done = _call_item(item["id"], item["call_id"], item["name"], args, "completed")
            out = self._ev("response.function_call_arguments.done", {**where, "name": item["name"], "arguments": args})  # fmt: skip
        self.response["output"].append(done)
        return out + self._ev("response.output_item.done", {"output_index": index, "item": done})

    def encode(self, ev: Event) -> bytes:
        kind = ev[0]
        index = len(self.response["output"])
        if kind == "text":
            out = b""
            if self._open is None or self._open["type"] != "message":
                out = self._close_item()
                index = len(self.response["output"])
                item_id = f"msg_{_suffix(self.response['id'])}_{index}"
                self._open = {"id": item_id, "type": "message", "_text": []}
                loc = {"item_id": item_id, "output_index": index, "content_index": 0}
                out += self._ev("response.output_item.added", {"output_index": index, "item": _text_item(item_id, "", "in_progress")})  # fmt: skip
                out += self._ev("response.content_part.added", {**loc, "part": _text_part("")})
            self._open["_text"].append(ev[1])
            loc = {"item_id": self._open["id"], "output_index": index, "content_index": 0}
            return out + self._ev("response.output_text.delta", {**loc, "delta": ev[1], "logprobs": []})  # fmt: skip
        if kind == "tool_start":
            out = self._close_item()
            index = len(self.response["output"])
            item_id = f"fc_{_suffix(self.response['id'])}_{index}"
            self._open = {"id": item_id, "type": "function_call", "call_id": ev[2], "name": ev[3], "_args": []}  # fmt: skip
            item = _call_item(item_id, ev[2], ev[3], "", "in_progress")
            return out + self._ev("response.output_item.added", {"output_index": index, "item": item})  # fmt: skip
        if kind == "tool_args":
            if self._open is None or self._open["type"] != "function_call":
                return b""  # arguments of a call already closed: providers stream calls in turn
            self._open["_args"].append(ev[2])
            return self._ev("response.function_call_arguments.delta", {"item_id": self._open["id"], "output_index": index, "delta": ev[2]})  # fmt: skip
        if kind == "start":
            self.response["id"] = "resp_" + _suffix(ev[1])
            self.response["model"] = ev[2]
            return self._ev("response.created", {"response": self.response}) + self._ev(
                "response.in_progress", {"response": self.response}
            )
        if kind == "finish":
            self._finish = ev[1]
            return self._close_item() + self._final_if_ready()
        if kind == "usage":
            self._usage = ev[1]
            return self._final_if_ready()
        if kind == "end":
            return self.close()
        return b""

    def _final_if_ready(self) -> bytes:
        if self._finish is None or self._usage is None or self.done:
            return b""
        self.done = True
        closing = _finish(self.response, self._finish, self._usage)
        return self._ev(closing, {"response": self.response})

    def close(self) -> bytes:
        """The provider ended: send what is still held (usage may never have come)."""
        if self.done or self._finish is None:
            return b""
        if self._usage is None:
            self._usage = Usage()
        return self._close_item() + self._final_if_ready()

    def error_event(self, err: UpstreamError) -> bytes:
        self.done = True
        failed = error_event(err, self.response, self._seq)
        self._seq += 1
        return failed


def render(answer: Answer, created: int, echo: dict[str, Any]) -> dict[str, Any]:
    """A folded answer as a Response object."""
    suffix = _suffix(answer.id)
    output: list[dict[str, Any]] = []
    text = "".join(answer.text)
    if text or not answer.tool_calls:
        output.append(_text_item(f"msg_{suffix}_0", text, "completed"))
    for c in answer.tool_calls:
        item_id = f"fc_{suffix}_{len(output)}"
        output.append(_call_item(item_id, c["id"], c["name"], "".join(c["arguments"]), "completed"))  # fmt: skip
    response = _response("resp_" + suffix, answer.model, created, echo, "completed", output)
    _finish(response, answer.finish or LENGTH, answer.usage)
    return response


class _Encoded:
    """A translation to a streaming client: each canonical event encoded at once."""

    __slots__ = ("_encoder",)

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        encode = self._encoder.encode
        return b"".join([encode(ev) for ev in events])

    def close(self, done: bool) -> bytes:
        return self._encoder.close()

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        raise AssertionError("a streaming answer has no final body")

    def error_event(self, err: UpstreamError) -> bytes:
        return self._encoder.error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        return self._encoder.response if self._encoder.done else None


class _Folded:
    """A translation to a non-streaming client: folded, rendered once at the end."""

    __slots__ = ("_answer", "_created", "_echo", "_rendered")

    def __init__(self, echo: dict[str, Any], created: int) -> None:
        self._answer = Answer()
        self._echo = echo
        self._created = created
        self._rendered: dict[str, Any] | None = None

    def feed(
        self, name: bytes, data: bytes, obj: dict[str, Any] | None, events: list[Event]
    ) -> bytes:
        for ev in events:
            self._answer.apply(ev)
        return b""

    def close(self, done: bool) -> bytes:
        return b""

    def final_body(self, usage: dict[str, Any] | None) -> bytes:
        return orjson.dumps(self.answer_object())

    def error_event(self, err: UpstreamError) -> bytes:
        return error_event(err)

    def answer_object(self) -> dict[str, Any] | None:
        if self._answer.finish is None:
            return None
        if self._rendered is None:
            self._rendered = render(self._answer, self._created, self._echo)
        return self._rendered


def with_max_tokens(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    return {**body, "max_output_tokens": max_tokens}


def from_canonical(req: ChatRequest, upstream_model: str, default_max_tokens: int) -> dict[str, Any]:  # fmt: skip
    """Never needed: only a Responses caller is served at a provider's /responses."""
    raise InvalidRequest("the Responses API serves only its own callers", param="model")


class _Responses:
    """The Responses API as a ``core.Dialect``. Its answers echo the request's settings and
    continue a stored conversation, so its outputs are made per request (``output``, which
    ``core.stream_for`` calls for every attempt)."""

    NAME = NAME
    KIND = "openai"
    ERRORS: ErrorDialect = "openai"
    LIMIT_PARAM = "max_output_tokens"
    UPSTREAM_PATH = b"/responses"
    check_request = staticmethod(check_request)
    upstream_body = staticmethod(upstream_body)
    with_max_tokens = staticmethod(with_max_tokens)
    to_canonical = staticmethod(to_canonical)
    from_canonical = staticmethod(from_canonical)
    error_from_upstream = staticmethod(error_from_upstream)
    error_event = staticmethod(error_event)

    def decoder(self, stops: tuple[str, ...] = ()) -> Decoder:
        return Decoder(stops)

    def render(self, answer: Answer, created: int) -> bytes:
        return orjson.dumps(render(answer, created, {}))

    def output(self, info: ChatInfo, *, translated: bool, created: int) -> Output:
        echo = info.echo or {}
        if not translated:
            return _Relay(stream=info.stream, previous=echo.get("previous_response_id"))
        if info.stream:
            return _Encoded(Encoder(echo, created))
        return _Folded(echo, created)


DIALECT: Dialect = _Responses()
