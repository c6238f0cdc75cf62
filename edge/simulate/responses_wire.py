"""OpenAI Responses API wire format (``POST /v1/responses``), as the simulated provider writes it.

Shapes follow the official SDK's types (``openai/types/responses/response.py``,
``response_usage.py`` and the ``*_event.py`` stream events). A stream is
typed events, each an ``event:`` line naming its type and one ``data:`` line
whose JSON carries the same ``type`` and an increasing ``sequence_number``:
``response.created``, ``response.in_progress``, per output item
``response.output_item.added`` (a message: ``response.content_part.added``,
``response.output_text.delta``..., ``.done`` events; a function call:
``response.function_call_arguments.delta``..., ``.done``), then
``response.output_item.done``, and last ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut the answer) with the
usage. No ``[DONE]``. Errors are the OpenAI error body.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from edge.simulate.generate import Answer, Ask, read_responses
from edge.simulate.openai_wire import error, models  # the same error bodies and model list
from edge.simulate.script import StreamParts

__all__ = ["NAME", "completion", "error", "malformed", "models", "new_ids", "read", "stream"]

NAME = "responses"
REQUEST_ID_HEADER = b"x-request-id"


def new_ids() -> tuple[str, str]:
    """(response id, request id) in the API's formats."""
    raw = os.urandom(24).hex()
    return "resp_" + raw, "req_" + raw[:32]


def read(body: Any) -> Ask:
    return read_responses(body)


def usage(a: Answer) -> dict[str, Any]:
    return {
        "input_tokens": a.input_tokens,
        "input_tokens_details": {"cached_tokens": a.cache_read, "cache_write_tokens": 0},
        "output_tokens": a.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": a.input_tokens + a.output_tokens,
    }


def _ids(rid: str) -> tuple[str, str]:
    return "msg_" + rid[5:37], "fc_" + rid[5:37]


def _tools(ask: Ask) -> list[dict[str, Any]]:
    out = []
    for tool in ask.echo.get("tools") or []:
        out.append(
            {
                "type": "function",
                "name": tool.get("name"),
                "description": tool.get("description"),
                "parameters": tool.get("parameters"),
                "strict": tool.get("strict", True),
            }
        )
    return out


def response(
    ask: Ask, model: str, rid: str, created: int, status: str, output: list[Any], a: Answer | None
) -> dict[str, Any]:
    """The Response object, echoing the request's settings."""
    echo = ask.echo
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": (
            {"reason": "max_output_tokens"} if a is not None and a.finish == "length" else None
        ),
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": echo.get("store", True),
        "temperature": echo.get("temperature", 1.0),
        "text": echo.get("text") or {"format": {"type": "text"}},
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": _tools(ask),
        "top_logprobs": 0,
        "top_p": echo.get("top_p", 1.0),
        "truncation": echo.get("truncation", "disabled"),
        "usage": usage(a) if a is not None and status != "in_progress" else None,
        "user": echo.get("user"),
        "metadata": echo.get("metadata") or {},
    }


def _status(a: Answer) -> str:
    return "incomplete" if a.finish == "length" else "completed"


def _message(mid: str, text: str, status: str) -> dict[str, Any]:
    content = [] if status == "in_progress" else [_part(text)]
    return {
        "id": mid,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call(fid: str, i: int, key: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": f"{fid}{i:02d}",
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": "call_" + key,
        "name": name,
    }


def _output(a: Answer, mid: str, fid: str) -> list[dict[str, Any]]:
    if a.tool_calls:
        return [
            _call(fid, i, c.key, c.name, c.arguments, "completed")
            for i, c in enumerate(a.tool_calls)
        ]
    return [_message(mid, a.text, "completed")]


def completion(a: Answer, ask: Ask, model: str, rid: str, created: int) -> bytes:
    mid, fid = _ids(rid)
    return orjson.dumps(response(ask, model, rid, created, _status(a), _output(a, mid, fid), a))


class _Events:
    """Typed events with their sequence numbers, in the order they are written."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, body: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **body}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream(a: Answer, ask: Ask, model: str, rid: str, created: int) -> StreamParts:
    ev = _Events()
    mid, fid = _ids(rid)
    pending = response(ask, model, rid, created, "in_progress", [], a)
    preamble = ev("response.created", {"response": pending}) + ev(
        "response.in_progress", {"response": pending}
    )
    tokens: list[bytes] = []
    closing = b""
    if a.tool_calls:
        for i, c in enumerate(a.tool_calls):
            item = _call(fid, i, c.key, c.name, "", "in_progress")
            opening = closing + ev("response.output_item.added", {"output_index": i, "item": item})
            tokens.append(opening)
            for piece in c.pieces:
                tokens.append(
                    ev(
                        "response.function_call_arguments.delta",
                        {"item_id": item["id"], "output_index": i, "delta": piece},
                    )
                )
            done = _call(fid, i, c.key, c.name, c.arguments, "completed")
            closing = ev(
                "response.function_call_arguments.done",
                {
                    "item_id": item["id"],
                    "output_index": i,
                    "name": c.name,
                    "arguments": c.arguments,
                },
            ) + ev("response.output_item.done", {"output_index": i, "item": done})
    else:
        where = {"item_id": mid, "output_index": 0, "content_index": 0}
        opening = ev(
            "response.output_item.added",
            {"output_index": 0, "item": _message(mid, "", "in_progress")},
        ) + ev("response.content_part.added", {**where, "part": _part("")})
        for t in a.tokens:
            tokens.append(ev("response.output_text.delta", {**where, "delta": t, "logprobs": []}))
        tokens[0] = opening + tokens[0]
        text = a.text
        closing = (
            ev("response.output_text.done", {**where, "text": text, "logprobs": []})
            + ev("response.content_part.done", {**where, "part": _part(text)})
            + ev(
                "response.output_item.done",
                {"output_index": 0, "item": _message(mid, text, "completed")},
            )
        )
    status = _status(a)
    final = response(ask, model, rid, created, status, _output(a, mid, fid), a)
    end = closing + ev(f"response.{status}", {"response": final})
    return StreamParts(preamble=preamble, tokens=tokens, end=end, terminator=b"", end_usage=True)


def malformed(rid: str) -> bytes:
    return (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"%s","delta":"\n\n'
        % rid.encode()
    )
