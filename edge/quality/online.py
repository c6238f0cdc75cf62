"""Online checks: automatic pass/fail on every live answer, without a gold case (pure).

After an answer ends, its stream state (``edge.dialects.core.Stream``: the
text, each tool call's arguments, the finish reason) is checked; the first
failed check names the verdict, ``ok`` when all pass:

- ``json``: JSON output was asked (``response_format`` / a schema): the text parses;
- ``tool_args``: every tool call's arguments parse as JSON (empty arguments are ``{}``);
- ``empty``: the answer has neither text nor a tool call;
- ``length``: it stopped at its output limit (finish reason length / max_tokens);
- ``refusal``: it refused (a content filter or refusal stop reason, or refusal phrasing
  at the start of the text).

The policy's ``quality.online_checks`` says which count (all by default):
a gateway whose traffic should be refused at times drops ``refusal``.
"""

from __future__ import annotations

import orjson

from edge.dialects.canonical import CONTENT_FILTER, LENGTH
from edge.quality.gold import REFUSAL

REFUSAL_SCAN = 300  # refusals say so up front: only the start of the text is searched


def check_answer(
    text: str,
    tool_args: list[str],
    finish: str | None,
    json_asked: bool,
    checks: tuple[str, ...],
) -> str:
    """``ok``, or the first check the answer failed."""
    for check in checks:
        if check == "json":
            if json_asked and not parses(text):
                return check
        elif check == "tool_args":
            if any(args.strip() and not parses(args) for args in tool_args):
                return check
        elif check == "empty":
            if not text.strip() and not tool_args:
                return check
        elif check == "length":
            if finish == LENGTH:
                return check
        elif check == "refusal" and (finish == CONTENT_FILTER or _refuses(text[:REFUSAL_SCAN])):
            return check
    return "ok"


# Every refusal phrase of ``REFUSAL`` contains one of these (lowercased): substring tests in C
# rule out most answers before the regular expression runs (it costs ~10 us on 300 chars; a
# case-insensitive search for the hints themselves would cost as much)
_HINTS = ("i can", "i won", "i will not", "i'm not", "i\u2019m not", "i am", "help", "assist")


def _refuses(head: str) -> bool:
    lower = head.lower()
    for hint in _HINTS:
        if hint in lower:
            return REFUSAL.search(head) is not None
    return False


def parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
