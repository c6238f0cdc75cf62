"""Every attempt the simulated provider saw, and what it billed, for tests and benchmarks.

``GET /sim/stats`` serves the records (optionally ``?model=NAME&since=SEQ``)
and a per-model summary; ``POST /sim/reset`` clears them and restarts the
clock that ``outage_s`` and arrival times count from. Records are bounded
(the newest ``capacity`` kept) so a long benchmark cannot grow memory.

Billing follows the real APIs. An attempt rejected before generation (an
error status, an outage, a reset, a hang, an invalid request) bills nothing.
From the write that carries the 200 head on, it bills its input (uncached,
cache read, cache write) and every output token written to the connection,
counted per write: one token per streamed piece, as ``generate`` defines
it; a non-streamed answer is billed whole by the write that starts it.

A record is final once ``ended_at`` is set: the last step ran (done, cut,
reset) or the connection closed under it (a client disconnect, a hang the
client gave up on); nothing about it changes afterwards. ``open`` in the
summary counts the records not final yet, so a test polls until it is 0.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from edge.simulate.script import ACCEPT, INPUT_USAGE, USAGE

_BILLED = ("billed_input", "billed_cache_read", "billed_cache_write", "billed_output")


@dataclass(slots=True)
class Attempt:
    seq: int
    at: float  # seconds since start or reset, when the request was complete
    dialect: str
    model: str
    stream: bool
    request_id: str
    client_request_id: str
    retry_count: str
    outcome: str = "ok"  # ok | error | outage | invalid | reset | hang | cut | stall | malformed | no_done | slow_first_token
    status: int = 0
    ended_at: float | None = None  # set once, when the record is final
    completed: bool = False
    disconnected: bool = False
    bytes_sent: int = 0
    tokens_sent: int = 0
    billed_input: int = 0  # uncached input tokens
    billed_cache_read: int = 0
    billed_cache_write: int = 0
    billed_output: int = 0
    input_usage_sent: bool = False  # a usage stating the three input figures was written
    usage_sent: bool = False  # the final usage, stating all four figures, was written

    def wrote(
        self, nbytes: int, tokens: int, marks: int, input_split: tuple[int, int, int]
    ) -> None:
        """Account one write to the connection; ``input_split`` is billed by the accepting one."""
        self.bytes_sent += nbytes
        self.tokens_sent += tokens
        if marks & ACCEPT:
            self.billed_input, self.billed_cache_read, self.billed_cache_write = input_split
        # output is billed only once accepted; before that no write carries tokens anyway
        self.billed_output += tokens
        if marks & INPUT_USAGE:
            self.input_usage_sent = True
        if marks & USAGE:
            self.usage_sent = True


class Recorder:
    def __init__(self, capacity: int = 100_000) -> None:
        self._records: deque[Attempt] = deque(maxlen=capacity)
        self._seq = 0
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def reset(self) -> None:
        self._records.clear()
        self._seq = 0
        self.t0 = time.monotonic()

    def add(
        self,
        dialect: str,
        model: str,
        stream: bool,
        request_id: str,
        client_request_id: str,
        retry_count: str,
    ) -> Attempt:
        self._seq += 1
        rec = Attempt(
            self._seq,
            self.now(),
            dialect,
            model,
            stream,
            request_id,
            client_request_id,
            retry_count,
        )
        self._records.append(rec)
        return rec

    def stats(self, model: str | None = None, since: int = 0) -> bytes:
        picked = [r for r in self._records if r.seq > since and (model is None or r.model == model)]
        summary: dict[str, dict[str, Any]] = {}
        for r in picked:
            s = summary.get(r.model)
            if s is None:
                s = summary[r.model] = {
                    "attempts": 0,
                    "ok": 0,
                    "failed": 0,
                    "disconnected": 0,
                    "open": 0,
                    "outcomes": {},
                    **dict.fromkeys(_BILLED, 0),
                }
            s["attempts"] += 1
            s["outcomes"][r.outcome] = s["outcomes"].get(r.outcome, 0) + 1
            if r.outcome == "ok" and r.completed:
                s["ok"] += 1
            elif r.outcome != "ok":
                s["failed"] += 1
            if r.disconnected:
                s["disconnected"] += 1
            if r.ended_at is None:
                s["open"] += 1
            for name in _BILLED:
                s[name] += getattr(r, name)
        return orjson.dumps(
            {
                "uptime_s": self.now(),
                "total": self._seq,
                "open": sum(s["open"] for s in summary.values()),
                "by_model": summary,
                "attempts": [asdict(r) for r in picked],
            }
        )
