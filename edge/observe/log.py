"""One JSON object per line on stderr: start-up, warnings, one line per request.

Only fields named by the caller are written, and callers pass ids, names,
statuses and numbers: never prompts, answers, or keys (an allow-list by
construction, not a scrubber).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Log:
    def __init__(self, level: str = "info", access: bool = True) -> None:
        self.threshold = _LEVELS[level]
        self.access = access
        self.pid = os.getpid()

    def event(self, level: str, msg: str, **fields: Any) -> None:
        if _LEVELS[level] < self.threshold:
            return
        record = {
            "ts": round(time.time(), 3),
            "level": level,
            "pid": self.pid,
            "msg": msg,
            **fields,
        }
        sys.stderr.buffer.write(orjson.dumps(record, default=str) + b"\n")
        sys.stderr.flush()

    def info(self, msg: str, **fields: Any) -> None:
        self.event("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.event("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.event("error", msg, **fields)

    def request(self, **fields: Any) -> None:
        if self.access:
            self.event("info", "request", **fields)
