"""One test body for both stream chunk readers (hotpath/_chunk.pyx and its pure twin): the text
of the common chunk read off its bytes, None for anything that must be parsed as JSON."""

from __future__ import annotations

from types import ModuleType

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.chunk
from hotpath import _chunk_py
from tests.hotpath.twins import check_selected, twins

IMPLS, _compiled = twins("hotpath._chunk", _chunk_py)

HEAD = b'"choices":[{"index":0,"delta":{"content":"'
TAIL = b'"},"logprobs":null,"finish_reason":null}]'
AFTER, BEFORE = b'"usage":{', b'"error"'


def chunk(content: str, usage: bytes = b"null", prefix: bytes = b'"id":"c1",') -> bytes:
    return (
        b"{" + prefix + HEAD[:-1] + orjson.dumps(content) + TAIL[1:] + b',"usage":' + usage + b"}"
    )


def read(impl: ModuleType, data: bytes) -> str | None:
    got: str | None = impl.quoted_text(data, HEAD, TAIL, AFTER, BEFORE)
    return got


@pytest.mark.parametrize("impl", IMPLS)
class TestQuotedText:
    def test_the_common_chunk_gives_its_text(self, impl):
        assert read(impl, chunk("Hello")) == "Hello"
        assert read(impl, chunk(" wörld, 你好 🙂")) == " wörld, 你好 🙂"

    def test_what_must_be_parsed_gives_none(self, impl):
        assert read(impl, chunk('say "hi"')) is None  # an escape
        assert read(impl, chunk("a\nb")) is None
        assert read(impl, chunk("")) is None  # empty text: no first token to report here
        assert read(impl, chunk("x", usage=b'{"prompt_tokens":1}')) is None
        assert read(impl, chunk("x", prefix=b'"error":null,')) is None
        assert read(impl, HEAD + b'x"' + TAIL) is None  # not inside an object
        assert read(impl, b'{"choices":[{"index":1,"delta":{"content":"x"}}]}') is None
        assert read(impl, chunk("x").replace(b"null,", b"0,", 1)) is None  # another tail
        assert read(impl, b"{" + HEAD + b"unterminated") is None
        assert read(impl, b"") is None

    def test_bytes_that_are_not_utf8_raise(self, impl):
        with pytest.raises(UnicodeDecodeError):
            read(impl, b"{" + HEAD + b"\xff\xfe" + TAIL + b"}")

    def test_without_the_optional_checks(self, impl):
        data = chunk("x", usage=b'{"prompt_tokens":1}')
        assert impl.quoted_text(data, HEAD, TAIL) == "x"


def test_selector_uses_compiled_module_in_a_normal_build():
    check_selected(hotpath.chunk, "quoted_text", _chunk_py, _compiled)


_pieces = st.sampled_from(
    [HEAD, TAIL, AFTER, BEFORE, b'"', b"\\", b"{", b"x", b"\xc3\xa9", b"\xff", b",", b"null"]
)


@pytest.mark.skipif(_compiled is None, reason="hotpath._chunk is not built")
@settings(max_examples=400, deadline=None)
@given(st.lists(_pieces, max_size=14).map(b"".join))
def test_the_twins_agree_on_any_bytes(data: bytes) -> None:
    def outcome(impl: ModuleType) -> object:
        try:
            return read(impl, data)
        except UnicodeDecodeError:
            return "UnicodeDecodeError"

    assert outcome(_chunk_py) == outcome(_compiled)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_a_text_read_off_the_bytes_is_the_text_json_would_give(text: str) -> None:
    data = chunk(text)
    got = hotpath.chunk.quoted_text(data, HEAD, TAIL, AFTER, BEFORE)
    parsed = orjson.loads(data)["choices"][0]["delta"]["content"]
    assert got is None or got == parsed
    if text and '"' not in text and "\\" not in text and text.isprintable():
        assert got == parsed  # the common chunk does take the fast path
