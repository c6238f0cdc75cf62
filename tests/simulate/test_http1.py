"""Request framing of the simulator (no sockets)."""

from __future__ import annotations

import pytest

from edge.simulate.http1 import BadRequest, RequestReader, response_head


def test_content_length_body_split_across_reads() -> None:
    r = RequestReader()
    raw = b"POST /v1/messages?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    assert r.feed(raw[:20]) == []
    assert r.feed(raw[20:-2]) == []
    (req,) = r.feed(raw[-2:])
    assert (req.method, req.path, req.query, req.body, req.keep_alive) == (
        b"POST",
        b"/v1/messages",
        b"x=1",
        b"hello",
        True,
    )
    assert req.headers[b"host"] == b"a"


def test_pipelined_requests_and_connection_close() -> None:
    r = RequestReader()
    raw = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\nGET /c HTTP/1.0\r\n\r\n"
    reqs = r.feed(raw)
    assert [(q.path, q.keep_alive) for q in reqs] == [(b"/a", True), (b"/b", False), (b"/c", False)]


def test_chunked_body_with_extensions_and_trailers() -> None:
    r = RequestReader()
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    out = []
    for i in range(len(raw)):
        out += r.feed(raw[i : i + 1])
    assert [q.body for q in out] == [b"abcde"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno-colon-here\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"a: b\r\n" * 20000, 431),
    ],
)
def test_unframeable_input_is_rejected_with_status(raw: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as err:
        RequestReader().feed(raw)
    assert err.value.status == status


def test_response_head() -> None:
    assert response_head(200, [(b"a", b"1")]) == b"HTTP/1.1 200 OK\r\na: 1\r\n\r\n"
    assert response_head(529, []).startswith(b"HTTP/1.1 529 Unknown\r\n")
