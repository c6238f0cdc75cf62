"""One test body for both upstream response decoders: compiled and the h11 twin."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.http
from hotpath import _http_py
from tests.hotpath.twins import twins

IMPLS, _compiled = twins("hotpath._http", _http_py, "h11-twin")


def decode(
    impl: ModuleType, chunks: list[bytes], eof: bool = False, method: bytes = b"POST"
) -> tuple[Any, ...]:
    d = impl.ResponseDecoder(method)
    body = b""
    for c in chunks:
        d.feed(c)
        body += d.take_body()
    if eof:
        d.feed_eof()
        body += d.take_body()
    return d.status, d.headers, d.keep_alive, d.complete, body


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for s in sizes:
        if pos >= len(body):
            break
        piece = body[pos : pos + max(1, s)]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
        pos += len(piece)
    if pos < len(body):
        out += b"%x\r\n%s\r\n" % (len(body) - pos, body[pos:])
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("impl", IMPLS)
class TestDecoder:
    def test_chunked_stream(self, impl):
        raw = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(b"data: 1\n\ndata: 2\n\n", [9, 9])
        )
        assert decode(impl, [raw]) == (
            200,
            [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked")],
            True,
            True,
            b"data: 1\n\ndata: 2\n\n",
        )

    def test_content_length_split_everywhere(self, impl):
        raw = (
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after:  3 \r\ncontent-length: 5\r\n\r\nhello"
        )
        for i in range(len(raw)):
            assert decode(impl, [raw[:i], raw[i:]]) == (
                429,
                [(b"retry-after", b"3"), (b"content-length", b"5")],
                True,
                True,
                b"hello",
            )

    def test_connection_close_and_http10(self, impl):
        raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
        assert decode(impl, [raw])[2:] == (False, True, b"ok")
        raw = b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"
        assert decode(impl, [raw])[2:] == (False, True, b"ok")

    def test_body_until_close(self, impl):
        raw = b"HTTP/1.1 200 OK\r\n\r\nall of it"
        d = impl.ResponseDecoder()
        d.feed(raw)
        assert not d.complete and not d.keep_alive
        d.feed_eof()
        assert d.complete and d.take_body() == b"all of it"

    def test_informational_head_is_skipped_and_204_has_no_body(self, impl):
        raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        assert decode(impl, [raw]) == (204, [], True, True, b"")

    def test_truncated_body_at_eof_is_an_error(self, impl):
        d = impl.ResponseDecoder()
        d.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab")
        with pytest.raises(impl.HTTPDecodeError):
            d.feed_eof()

    @pytest.mark.parametrize(
        "raw",
        [
            b"HTTP/2 200 OK\r\n\r\n",
            b"NOPE 200 OK\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabX\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab",
        ],
    )
    def test_malformed_responses_raise(self, impl, raw):
        with pytest.raises(impl.HTTPDecodeError):
            decode(impl, [raw])


def test_selector_uses_compiled_module_in_a_normal_build():
    if os.environ.get("EDGE_NO_EXTENSIONS") == "1":
        assert hotpath.http.COMPILED is False
        return
    assert _compiled is not None, "hotpath._http did not build or import: run `make build`"
    assert (
        hotpath.http.COMPILED is True and hotpath.http.ResponseDecoder is _compiled.ResponseDecoder
    )


_names = st.sampled_from(
    [b"content-type", b"x-request-id", b"retry-after", b"openai-version", b"X-Mixed-Case"]
)
_values = st.binary(max_size=20).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E))


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bool]:
    status = draw(st.sampled_from([200, 201, 400, 404, 429, 500, 503, 529]))
    headers = draw(st.lists(st.tuples(_names, _values), max_size=5))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["chunked", "length", "close"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    head = b"HTTP/%s %d Whatever\r\n" % (version, status) + b"".join(
        k + b": " + v + b"\r\n" for k, v in headers
    )
    if framing == "chunked":
        raw = (
            head
            + b"transfer-encoding: chunked\r\n\r\n"
            + chunked(body, draw(st.lists(st.integers(1, 64), max_size=10)))
        )
    elif framing == "length":
        raw = head + b"content-length: %d\r\n\r\n" % len(body) + body
    else:
        raw = head + b"\r\n" + body
    return raw, framing == "close"


def _split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(resp=responses(), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_twins_agree_on_valid_responses_split_anywhere(
    resp: tuple[bytes, bool], cuts: list[int]
) -> None:
    if _compiled is None:
        pytest.skip("hotpath._http is not built")
    raw, until_close = resp
    chunks = _split(raw, cuts)
    assert decode(_compiled, chunks, eof=until_close) == decode(_http_py, chunks, eof=until_close)


@settings(max_examples=400, deadline=None)
@given(
    resp=responses(),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
)
def test_compiled_survives_malformed_input(
    resp: tuple[bytes, bool], flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    if _compiled is None:
        pytest.skip("hotpath._http is not built")
    raw = bytearray(resp[0])
    for at, value in flips:
        raw[at % len(raw)] = value
    chunks = _split(bytes(raw), cuts)
    results: list[tuple[Any, ...] | None] = []
    for impl in (_compiled, _http_py):
        try:
            results.append(decode(impl, chunks))
        except impl.HTTPDecodeError:
            results.append(None)
    c, p = results
    if c is not None and p is not None:
        # both accepted the mutated bytes: they must have read the same thing
        assert c[0] == p[0] and c[4] == p[4] and c[3] == p[3], (bytes(raw), results)
