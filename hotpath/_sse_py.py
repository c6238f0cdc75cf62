"""Pure-Python twin of ``hotpath._sse``: split a byte stream into SSE events.

The scanner follows the WHATWG event-stream parsing rules for the fields a
gateway needs: lines end in LF, CRLF or a lone CR (a CR that ends one read may
be the first half of a CRLF that the next read completes); lines starting
with ``:`` are comments; ``data:`` lines accumulate and are joined with LF;
``event:`` names the event; a blank line dispatches the event unless it has no
data line at all. ``id`` and ``retry`` are ignored: no upstream we speak uses
them, and a gateway never reconnects an upstream stream by event id.

Invariant: the twins return equal results for every sequence of ``feed``
calls, including errors. ``tests/hotpath/test_sse.py`` runs one body against
both.
"""

from __future__ import annotations

DEFAULT_MAX_EVENT_BYTES = 1 << 20


class SSEError(ValueError):
    """The stream holds an event larger than the scanner's limit."""


class SSEScanner:
    """Incremental scanner: ``feed(bytes)`` returns the events it completed.

    Each event is a ``(name, data)`` pair of ``bytes``; ``name`` is ``b""``
    when the event had no ``event:`` field.
    """

    __slots__ = ("_data", "_max", "_name", "_partial", "_pending", "_skip_lf")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._partial = b""
        self._name = b""
        self._data: list[bytes] = []
        self._pending = 0
        self._max = max_event_bytes
        self._skip_lf = False

    @property
    def has_pending(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._partial) or bool(self._data) or bool(self._name)

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        events: list[tuple[bytes, bytes]] = []
        if not chunk:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        buf = self._partial + chunk if self._partial else chunk
        n = len(buf)
        pos = 0
        while pos < n:
            lf = buf.find(b"\n", pos)
            cr = buf.find(b"\r", pos, lf if lf >= 0 else n)
            if cr >= 0:
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
                else:
                    nxt = n
                    self._skip_lf = True
            elif lf >= 0:
                end = lf
                nxt = lf + 1
            else:
                break
            self._line(buf[pos:end], events)
            pos = nxt
        self._partial = buf[pos:]
        if self._pending + len(self._partial) > self._max:
            raise SSEError(f"SSE event exceeds {self._max} bytes")
        return events

    def _line(self, line: bytes, events: list[tuple[bytes, bytes]]) -> None:
        if not line:
            if self._data:
                events.append((self._name, b"\n".join(self._data)))
            self._name = b""
            self._data = []
            self._pending = 0
            return
        if line[0] == 0x3A:  # ":" comment
            return
        colon = line.find(b":")
        if colon < 0:
            field = line
            value = b""
        else:
            field = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._data.append(value)
            self._pending += len(value) + 1
            if self._pending > self._max:
                raise SSEError(f"SSE event exceeds {self._max} bytes")
        elif field == b"event":
            self._name = value
