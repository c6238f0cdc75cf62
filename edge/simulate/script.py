"""What the simulated provider does with one request, as a list of steps (pure).

The server decides an outcome (answer, error or fault), then this module
turns it into steps: write these bytes, wait this long, reset, close, hang,
done. The protocol only executes the steps with ``call_later`` timers, so a
response costs no task, and every fault is a plain, testable list.

Billing rides on the steps too, so the protocol bills exactly what it wrote:
each write carries the output tokens in it (one per streamed piece) and
marks saying what else it puts on the wire: ``ACCEPT`` (the 200 head: from
this write on the attempt's input is billed), ``INPUT_USAGE`` (a usage object
stating the input figures, e.g. Anthropic's ``message_start``) and ``USAGE``
(the final usage, stating input and output). Merged writes keep every mark.
"""

from __future__ import annotations

from dataclasses import dataclass

WRITE, SLEEP, RESET, CLOSE, HANG, DONE = range(6)
ACCEPT, INPUT_USAGE, USAGE = 1, 2, 4  # marks on a write (bits)
# op, payload (bytes or seconds), content tokens in the write, marks of the write
Step = tuple[int, bytes | float, int, int]


@dataclass(slots=True)
class StreamParts:
    """A rendered stream: sent at once, one entry per token, closing events, terminator.

    ``start_usage``: the preamble states the input usage (Anthropic's
    ``message_start``); ``end_usage``: ``end`` carries the final usage (Anthropic's
    ``message_delta``, OpenAI's usage chunk when ``include_usage`` was asked).
    """

    preamble: bytes
    tokens: list[bytes]
    end: bytes
    terminator: bytes
    start_usage: bool = False
    end_usage: bool = False


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


_LAST_CHUNK = b"0\r\n\r\n"


def _compact(steps: list[Step]) -> list[Step]:
    """Merge adjacent writes and drop zero waits, so an instant answer is one write."""
    out: list[Step] = []
    pending: list[bytes] = []
    tokens = marks = 0
    for op, payload, toks, mk in steps:
        if op == SLEEP and payload == 0:
            continue
        if op == WRITE:
            assert isinstance(payload, bytes)
            pending.append(payload)
            tokens += toks
            marks |= mk
            continue
        if pending:
            out.append((WRITE, b"".join(pending), tokens, marks))
            pending, tokens, marks = [], 0, 0
        out.append((op, payload, toks, mk))
    if pending:
        out.append((WRITE, b"".join(pending), tokens, marks))
    return out


def stream_steps(
    head: bytes,
    parts: StreamParts,
    *,
    ttft_s: float,
    gap_s: float,
    fault: str,
    fault_after: int,
    stall_s: float,
    malformed: bytes,
) -> list[Step]:
    """Steps for a streamed (chunked, SSE) answer, with its fault if any."""
    start = ACCEPT | (INPUT_USAGE if parts.start_usage else 0)
    steps: list[Step] = [(WRITE, head + _chunk(parts.preamble), 0, start), (SLEEP, ttft_s, 0, 0)]
    if fault == "slow_first_token":
        steps.append((SLEEP, stall_s, 0, 0))
    for i, token in enumerate(parts.tokens):
        if i:
            steps.append((SLEEP, gap_s, 0, 0))
        if i == fault_after:
            if fault == "cut":
                steps.append((CLOSE, b"", 0, 0))
                return _compact(steps)
            if fault == "stall":
                steps.append((SLEEP, stall_s, 0, 0))
            elif fault == "malformed":
                steps.append((WRITE, _chunk(malformed), 0, 0))
        steps.append((WRITE, _chunk(token), 1, 0))
    if fault == "cut":  # asked to cut after the last token: cut before the closing events
        steps.append((CLOSE, b"", 0, 0))
        return _compact(steps)
    steps.append((WRITE, _chunk(parts.end), 0, INPUT_USAGE | USAGE if parts.end_usage else 0))
    if fault != "no_done":
        steps.append((WRITE, _chunk(parts.terminator), 0, 0))
    steps += [(WRITE, _LAST_CHUNK, 0, 0), (DONE, b"", 0, 0)]
    return _compact(steps)


def body_steps(
    head: bytes,
    body: bytes,
    *,
    delay_s: float,
    tokens: int,
    fault: str,
    stall_s: float,
) -> list[Step]:
    """Steps for a non-streamed answer: the whole generation time, then one write.

    The answer is generated in full before its first byte, so the write that
    starts it bills all of it, even when ``cut`` closes the connection
    halfway through the body (whose usage then never reaches the client).
    """
    steps: list[Step] = [(SLEEP, delay_s, 0, 0)]
    if fault in ("slow_first_token", "stall"):
        steps.append((SLEEP, stall_s, 0, 0))
    if fault == "cut":
        steps += [(WRITE, head + body[: len(body) // 2], tokens, ACCEPT), (CLOSE, b"", 0, 0)]
    elif fault == "malformed":  # only the closing brace is broken: the usage is on the wire
        steps += [
            (WRITE, head + body[:-1] + b" ", tokens, ACCEPT | INPUT_USAGE | USAGE),
            (DONE, b"", 0, 0),
        ]
    else:
        steps += [(WRITE, head + body, tokens, ACCEPT | INPUT_USAGE | USAGE), (DONE, b"", 0, 0)]
    return _compact(steps)


def fault_steps(fault: str) -> list[Step] | None:
    """Steps for faults that happen before any byte: reset or hang."""
    if fault == "reset":
        return [(RESET, b"", 0, 0)]
    if fault == "hang":
        return [(HANG, b"", 0, 0)]
    return None
