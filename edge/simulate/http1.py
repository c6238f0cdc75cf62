"""Minimal HTTP/1.1 request framing for the simulated providers (no I/O).

The simulator must never be the bottleneck of a benchmark, so it does not run
a general-purpose parser: it finds the end of the head, splits lines, and
reads a ``Content-Length`` or chunked body. Anything else it cannot frame is
a ``BadRequest`` carrying the status to answer with (then the connection is
closed). The gateway's own client-facing server uses h11, not this: this
reader only ever sees traffic from our own tests, tools and gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024


class BadRequest(Exception):
    """The byte stream cannot be framed as HTTP/1.1 requests."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool

    @property
    def path(self) -> bytes:
        q = self.target.find(b"?")
        return self.target if q < 0 else self.target[:q]

    @property
    def query(self) -> bytes:
        q = self.target.find(b"?")
        return b"" if q < 0 else self.target[q + 1 :]


_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER = range(5)


class RequestReader:
    """Feed bytes, get complete requests. Pipelined requests are returned in order."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_left",
        "_max_body",
        "_max_head",
        "_need",
        "_pending",
        "_state",
    )

    def __init__(self, max_head: int = MAX_HEAD_BYTES, max_body: int = MAX_BODY_BYTES) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._pending: Request | None = None
        self._need = 0
        self._chunks: list[bytes] = []
        self._left = 0
        self._max_head = max_head
        self._max_body = max_body

    def feed(self, data: bytes) -> list[Request]:
        self._buf += data
        done: list[Request] = []
        while True:
            if self._state == _HEAD:
                req = self._read_head()
                if req is None:
                    return done
                if self._state == _HEAD:
                    done.append(req)
            elif self._state == _BODY:
                if len(self._buf) < self._need:
                    return done
                assert self._pending is not None
                self._pending.body = bytes(self._buf[: self._need])
                del self._buf[: self._need]
                done.append(self._finish())
            elif not self._read_chunked():
                return done
            else:
                done.append(self._finish())

    def _finish(self) -> Request:
        req = self._pending
        assert req is not None
        self._pending = None
        self._state = _HEAD
        return req

    def _read_head(self) -> Request | None:
        buf = self._buf
        while buf[:2] == b"\r\n":  # tolerated before a request line (RFC 9112 2.2)
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._max_head:
                raise BadRequest(431, "request head too large")
            return None
        if end > self._max_head:
            raise BadRequest(431, "request head too large")
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise BadRequest(400, "malformed request line")
        method, target, version = parts
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise BadRequest(400, "malformed header line")
            headers[name.lower()] = value.strip()
        conn = headers.get(b"connection", b"").lower()
        keep_alive = b"close" not in conn if version == b"HTTP/1.1" else b"keep-alive" in conn
        req = Request(method, target, headers, b"", keep_alive)
        te = headers.get(b"transfer-encoding")
        if te is not None:
            if te.lower() != b"chunked":
                raise BadRequest(501, "unsupported transfer-encoding")
            self._pending = req
            self._state = _CHUNK_SIZE
            self._chunks = []
            self._need = 0
            return req
        cl = headers.get(b"content-length")
        if cl is None or cl == b"0":
            return req
        if not cl.isdigit():
            raise BadRequest(400, "invalid content-length")
        size = int(cl)
        if size > self._max_body:
            raise BadRequest(413, "request body too large")
        self._pending = req
        self._need = size
        self._state = _BODY
        return req

    def _read_chunked(self) -> bool:
        buf = self._buf
        while True:
            if self._state == _CHUNK_SIZE:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > 1024:
                        raise BadRequest(400, "chunk size line too long")
                    return False
                size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
                del buf[: eol + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise BadRequest(400, "invalid chunk size") from None
                if size == 0:
                    self._state = _TRAILER
                    continue
                self._need += size
                if self._need > self._max_body:
                    raise BadRequest(413, "request body too large")
                self._state = _CHUNK_DATA
                self._left = size
            elif self._state == _CHUNK_DATA:
                left = self._left
                if len(buf) < left + 2:
                    return False
                if buf[left : left + 2] != b"\r\n":
                    raise BadRequest(400, "chunk not terminated by CRLF")
                self._chunks.append(bytes(buf[:left]))
                del buf[: left + 2]
                self._state = _CHUNK_SIZE
            else:  # trailers: skip lines up to the blank one
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return False
                del buf[: eol + 2]
                if eol == 0:
                    assert self._pending is not None
                    self._pending.body = b"".join(self._chunks)
                    self._chunks = []
                    return True


def response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Serialise a status line and headers, ending with the blank line."""
    reason = HTTPStatus(status).phrase.encode() if status in _KNOWN else b"Unknown"
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in headers:
        out.append(name + b": " + value + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


_KNOWN = frozenset(int(s) for s in HTTPStatus)
