"""One JSON object per line on stderr: start-up, warnings, one line per request.

Only fields named by the caller are written, and callers pass ids, names,
statuses and numbers: never prompts, answers, or keys (an allow-list by
construction, not a scrubber).

Lines are written at once by default; in a worker, ``buffer_on(loop)``
batches them for up to ``FLUSH_S`` (one write per batch instead of one per
request). Warnings and errors always flush at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import orjson

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Log:
    FLUSH_S = 0.2
    MAX_BUFFER = 64 * 1024

    def __init__(self, level: str = "info", access: bool = True) -> None:
        self.threshold = _LEVELS[level]
        self.access = access
        self.pid = os.getpid()
        self._buffer: list[bytes] = []
        self._size = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def buffer_on(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def event(self, level: str, msg: str, **fields: Any) -> None:
        value = _LEVELS[level]
        if value < self.threshold:
            return
        record = {
            "ts": round(time.time(), 3),
            "level": level,
            "pid": self.pid,
            "msg": msg,
            **fields,
        }
        line = orjson.dumps(record, default=str) + b"\n"
        self._buffer.append(line)
        self._size += len(line)
        if self._loop is None or value >= _LEVELS["warning"] or self._size > self.MAX_BUFFER:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        try:
            sys.stderr.buffer.write(data)
            sys.stderr.flush()
        except (BrokenPipeError, ValueError):
            pass

    def info(self, msg: str, **fields: Any) -> None:
        self.event("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.event("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.event("error", msg, **fields)

    def request(self, **fields: Any) -> None:
        if self.access:
            self.event("info", "request", **fields)
