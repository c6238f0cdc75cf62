"""The canonical chat request, answer and stream events both dialects translate through.

A request in either dialect becomes a ``ChatRequest``; a provider's stream
becomes a sequence of ``Event`` tuples; the answer a client sees is rendered
from those in its own dialect. Only what both protocols can express lives
here; a parameter one side cannot honour is rejected with a 400 by the
translating module, never dropped silently.

Rules kept in one place:

- Finish reasons (``FINISH_*``): every value of either side maps
  deliberately. Values that mean "the answer may be incomplete" map to the
  other side's length/max_tokens; unknown future values do too, so a
  truncated answer is never reported as a clean stop.
- Usage: ``prompt = input + cache_read + cache_write``; ``cached`` is
  ``cache_read``. The provider's own usage object is kept verbatim under
  ``provider_usage`` in the answer's usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# canonical finish reasons
STOP, STOP_SEQUENCE, LENGTH, TOOL_CALLS, CONTENT_FILTER = (
    "stop",
    "stop_sequence",
    "length",
    "tool_calls",
    "content_filter",
)

FROM_ANTHROPIC_STOP = {
    "end_turn": STOP,
    "stop_sequence": STOP_SEQUENCE,
    "max_tokens": LENGTH,
    "tool_use": TOOL_CALLS,
    "refusal": CONTENT_FILTER,
    "pause_turn": LENGTH,  # the provider paused a long turn: the answer is not complete
    "model_context_window_exceeded": LENGTH,
}
FROM_OPENAI_FINISH = {
    "stop": STOP,
    "length": LENGTH,
    "tool_calls": TOOL_CALLS,
    "function_call": TOOL_CALLS,
    "content_filter": CONTENT_FILTER,
}
TO_OPENAI_FINISH = {
    STOP: "stop",
    STOP_SEQUENCE: "stop",
    LENGTH: "length",
    TOOL_CALLS: "tool_calls",
    CONTENT_FILTER: "content_filter",
}
TO_ANTHROPIC_STOP = {
    STOP: "end_turn",
    STOP_SEQUENCE: "stop_sequence",
    LENGTH: "max_tokens",
    TOOL_CALLS: "tool_use",
    CONTENT_FILTER: "refusal",
}

JSON_TOOL = "edge_json_output"  # the forced tool that carries JSON output on Anthropic


def from_anthropic_stop(value: str | None) -> str:
    return FROM_ANTHROPIC_STOP.get(value or "", LENGTH)


def from_openai_finish(value: str | None) -> str:
    return FROM_OPENAI_FINISH.get(value or "", LENGTH)


@dataclass(slots=True)
class Part:
    """One piece of a message: text, image, tool call or tool result."""

    kind: str  # text | image | tool_call | tool_result
    text: str = ""
    # image
    url: str = ""  # http(s) URL, or empty when data is set
    media_type: str = ""
    data: str = ""  # base64
    # tool call / result
    call_id: str = ""
    name: str = ""
    arguments: str = ""  # tool call: the JSON text of the arguments
    result: list[Part] = field(default_factory=list)  # tool result content (text/image parts)
    is_error: bool = False


@dataclass(slots=True)
class Message:
    role: str  # user | assistant
    parts: list[Part]


@dataclass(slots=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    system: str = ""
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str = "auto"  # auto | required | none | named
    tool_name: str = ""
    parallel_tool_calls: bool = True
    json_mode: str = ""  # "" | object | schema
    json_schema: dict[str, Any] | None = None
    json_name: str = "output"
    user: str = ""


@dataclass(slots=True)
class Usage:
    input: int = 0  # uncached input
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    provider: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> int:
        return self.input + self.cache_read + self.cache_write


# Stream events, as tuples (kind, ...) for speed:
#   ("start", id, model)                 the provider's message/completion id and model
#   ("text", str)                        a text fragment
#   ("tool_start", index, call_id, name) a tool call begins (index counts tool calls from 0)
#   ("tool_args", index, fragment)       a fragment of its JSON arguments
#   ("finish", canonical_reason, stop_sequence or None)
#   ("usage", Usage)                     totals, possibly after "finish"
#   ("end",)                             the provider's terminator
Event = tuple[Any, ...]


@dataclass(slots=True)
class Answer:
    """A whole answer, folded from events."""

    id: str = ""
    model: str = ""
    text: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(
        default_factory=list
    )  # {id, name, arguments: list[str]}
    finish: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None

    def apply(self, ev: Event) -> None:
        kind = ev[0]
        if kind == "text":
            self.text.append(ev[1])
        elif kind == "tool_args":
            self.tool_calls[ev[1]]["arguments"].append(ev[2])
        elif kind == "tool_start":
            while len(self.tool_calls) <= ev[1]:
                self.tool_calls.append({"id": "", "name": "", "arguments": []})
            self.tool_calls[ev[1]].update(id=ev[2], name=ev[3])
        elif kind == "finish":
            self.finish, self.stop_sequence = ev[1], ev[2]
        elif kind == "usage":
            self.usage = ev[1]
        elif kind == "start":
            self.id, self.model = ev[1], ev[2]
