"""Every attempt the simulated provider saw, for tests and benchmarks to inspect.

``GET /sim/stats`` serves the records (optionally ``?model=NAME&since=SEQ``)
and a per-model summary; ``POST /sim/reset`` clears them and restarts the
clock that ``outage_s`` and arrival times count from. Records are bounded
(the newest ``capacity`` kept) so a long benchmark cannot grow memory.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson


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
    ended_at: float | None = None
    completed: bool = False
    disconnected: bool = False
    bytes_sent: int = 0
    tokens_sent: int = 0


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
            s = summary.setdefault(
                r.model, {"attempts": 0, "ok": 0, "failed": 0, "disconnected": 0, "outcomes": {}}
            )
            s["attempts"] += 1
            s["outcomes"][r.outcome] = s["outcomes"].get(r.outcome, 0) + 1
            if r.outcome == "ok" and r.completed:
                s["ok"] += 1
            elif r.outcome != "ok":
                s["failed"] += 1
            if r.disconnected:
                s["disconnected"] += 1
        return orjson.dumps(
            {
                "uptime_s": self.now(),
                "total": self._seq,
                "by_model": summary,
                "attempts": [asdict(r) for r in picked],
            }
        )
