"""Pure-Python twin of ``hotpath._http``: an upstream response decoder built on h11.

Contract (both twins): ``feed(bytes)`` consumes response bytes; once the head
is parsed, ``status``, ``headers`` (names lower-cased, values stripped) and
``keep_alive`` are set; ``take_body()`` returns the body bytes decoded so far
(chunked framing removed) and forgets them; ``complete`` turns true at the
end of the message; ``feed_eof()`` completes a body framed by the
connection's end and is an error otherwise. Informational 1xx heads are
skipped. ``HTTPDecodeError`` for anything that is not a valid response:
malformed status line or headers, a bad Content-Length or chunk size, both
Transfer-Encoding and Content-Length, a coding other than chunked, bytes
after the end of the message.

This twin is the reference: h11 does the parsing; the compiled module must
agree with it on every valid response, however it is split into reads.
"""

from __future__ import annotations

import h11

DEFAULT_MAX_HEAD = 64 * 1024


class HTTPDecodeError(ValueError):
    """The provider's bytes are not a valid HTTP/1.1 response."""


class ResponseDecoder:
    __slots__ = ("_body", "_conn", "complete", "headers", "keep_alive", "status")

    def __init__(self, method: bytes = b"POST", max_head: int = DEFAULT_MAX_HEAD) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self._conn.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"upstream")]))
        self._conn.send(h11.EndOfMessage())
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.complete = False
        self._body: list[bytes] = []

    @property
    def head_done(self) -> bool:
        return self.status != 0

    def take_body(self) -> bytes:
        body = self._body
        if not body:
            return b""
        self._body = []
        return body[0] if len(body) == 1 else b"".join(body)

    def feed(self, data: bytes) -> None:
        if not data:
            return  # h11 would read b"" as the end of the connection
        if self.complete:
            if data:
                raise HTTPDecodeError("bytes after the end of the response")
            return
        try:
            self._conn.receive_data(data)
            self._pump()
        except h11.RemoteProtocolError as exc:
            raise HTTPDecodeError(str(exc)) from None

    def feed_eof(self) -> None:
        if self.complete:
            return
        try:
            self._conn.receive_data(b"")
            self._pump()
        except h11.RemoteProtocolError as exc:
            raise HTTPDecodeError(str(exc)) from None
        if not self.complete:
            raise HTTPDecodeError("connection closed before the response was complete")

    def _pump(self) -> None:
        conn = self._conn
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if isinstance(ev, h11.Response):
                self._on_head(ev)
            elif isinstance(ev, h11.Data):
                self._body.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                self.complete = True
                if conn.trailing_data[0]:
                    raise HTTPDecodeError("bytes after the end of the response")
                return
            elif isinstance(ev, h11.ConnectionClosed):
                return

    def _on_head(self, ev: h11.Response) -> None:
        headers = [(bytes(k), bytes(v)) for k, v in ev.headers]
        names = [k for k, _ in headers]
        if b"transfer-encoding" in names and b"content-length" in names:
            raise HTTPDecodeError("both transfer-encoding and content-length")
        conn_tokens = b",".join(v.lower() for k, v in headers if k == b"connection")
        framed = (
            b"transfer-encoding" in names
            or b"content-length" in names
            or ev.status_code in (204, 304)
        )
        keep = b"close" not in conn_tokens and (
            ev.http_version == b"1.1" or b"keep-alive" in conn_tokens
        )
        self.status = ev.status_code
        self.headers = headers
        self.keep_alive = keep and framed
