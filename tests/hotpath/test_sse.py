"""One test body for both SSE scanners: the compiled module and its pure twin."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.sse
from hotpath import _sse_py
from tests.hotpath.twins import check_selected, twins

IMPLS, _compiled = twins("hotpath._sse", _sse_py)


def scan(impl: ModuleType, chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    scanner = impl.SSEScanner()
    out: list[tuple[bytes, bytes]] = []
    for c in chunks:
        out.extend(scanner.feed(c))
    return out


@pytest.mark.parametrize("impl", IMPLS)
class TestScanner:
    def test_lf_events(self, impl):
        got = scan(impl, [b"data: one\n\ndata: two\n\n"])
        assert got == [(b"", b"one"), (b"", b"two")]

    def test_crlf_and_lone_cr(self, impl):
        got = scan(impl, [b"event: a\r\ndata: x\r\n\r\nevent: b\rdata: y\r\r"])
        assert got == [(b"a", b"x"), (b"b", b"y")]

    def test_cr_at_end_of_read_then_lf(self, impl):
        # a CRLF split across two reads is one line ending, not an empty line
        got = scan(impl, [b"data: x\r", b"\ndata: y\r", b"\n\r", b"\n"])
        assert got == [(b"", b"x\ny")]

    def test_event_split_across_reads(self, impl):
        raw = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
        got = scan(impl, [raw[i : i + 1] for i in range(len(raw))])
        assert got == [(b"content_block_delta", b'{"type":"content_block_delta"}')]

    def test_comments_and_unknown_fields_ignored(self, impl):
        got = scan(impl, [b": keep-alive\n\nid: 7\nretry: 100\nfoo: bar\ndata: z\n\n"])
        assert got == [(b"", b"z")]

    def test_multiline_data_joined_with_lf(self, impl):
        got = scan(impl, [b"data: a\ndata:b\ndata:  c\n\n"])
        assert got == [(b"", b"a\nb\n c")]

    def test_field_without_colon_and_empty_data(self, impl):
        got = scan(impl, [b"data\n\ndata:\n\n"])
        assert got == [(b"", b""), (b"", b"")]

    def test_event_without_data_is_not_dispatched(self, impl):
        got = scan(impl, [b"event: ping\n\ndata: 1\n\n"])
        assert got == [(b"", b"1")]

    def test_pending_tracks_unfinished_event(self, impl):
        s = impl.SSEScanner()
        assert not s.has_pending
        assert s.feed(b"data: [DO") == []
        assert s.has_pending
        assert s.feed(b"NE]\n\n") == [(b"", b"[DONE]")]
        assert not s.has_pending

    def test_event_larger_than_limit_raises(self, impl):
        s = impl.SSEScanner(max_event_bytes=64)
        with pytest.raises(ValueError):
            s.feed(b"data: " + b"x" * 100)
        s = impl.SSEScanner(max_event_bytes=64)
        with pytest.raises(impl.SSEError):
            for _ in range(10):
                s.feed(b"data: " + b"y" * 10 + b"\n")

    def test_empty_feed(self, impl):
        assert impl.SSEScanner().feed(b"") == []


def test_selector_uses_compiled_module_in_a_normal_build():
    check_selected(hotpath.sse, "SSEScanner", _sse_py, _compiled)


# Bytes drawn mostly from the SSE alphabet so that lines, fields and blank lines occur often.
_alphabet = st.sampled_from(
    [b"\n", b"\r", b"\r\n", b":", b" ", b"data", b"event", b"x", b"\xff", b"id"]
)
_streams = st.lists(_alphabet, max_size=80).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=_streams, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_twins_agree_on_random_streams_split_anywhere(data: bytes, cuts: list[int]) -> None:
    if _compiled is None:
        pytest.skip("hotpath._sse is not built")
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert scan(_compiled, chunks) == scan(_sse_py, chunks)
    # and splitting never changes the result
    assert scan(_sse_py, chunks) == scan(_sse_py, [data])
