"""Structural limits measured on raw bytes: exact outside strings, cheap, never an expansion."""

from __future__ import annotations

import orjson
import pytest

from edge.server.jsonlimits import BodyScan, JsonLimits, JsonTooLarge, check_counts, measure

SMALL = JsonLimits(max_items=100, max_depth=8, max_messages=3, max_tools=2)


def test_items_outside_strings_count_and_inside_do_not() -> None:
    honest = orjson.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": "{[,]}" * 10_000}]}
    )
    assert measure(honest, SMALL) is None
    dense = b'{"model":"auto","messages":[' + b",".join([b"{}"] * 200) + b"]}"
    err = measure(dense, SMALL)
    assert isinstance(err, JsonTooLarge) and "EDGE_MAX_JSON_ITEMS" in err.message


def test_escaped_quotes_and_backslashes_do_not_confuse_strings() -> None:
    tricky = orjson.dumps({"a": ['\\"', '"', "\\", 'x\\",{,[,' * 1000, "\\\\"]})
    assert measure(tricky, SMALL) is None
    assert orjson.loads(tricky)["a"][1] == '"'


@pytest.mark.parametrize("depth,ok", [(8, True), (9, False)])
def test_depth_exact(depth: int, ok: bool) -> None:
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    filler = b'{"pad":[' + b",".join([b"[1]"] * 20) + b"]}"  # enough openers to be measured
    doc = b"[" + filler + b"," + inner + b"]"  # `depth` levels deep
    err = measure(doc, JsonLimits(max_items=1000, max_depth=8))
    assert (err is None) is ok
    if not ok:
        assert err is not None and "EDGE_MAX_JSON_DEPTH" in err.message


def test_depth_counts_braces_in_strings_as_text() -> None:
    doc = orjson.dumps([[[{"s": "[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{"}]]] * 10)
    assert measure(doc, JsonLimits(max_items=1000, max_depth=4)) is None
    assert measure(doc, JsonLimits(max_items=1000, max_depth=3)) is not None


def test_many_strings_refused_by_their_quotes_alone() -> None:
    doc = b"[" + b",".join([b'""'] * 1000) + b"]"
    assert measure(doc, SMALL) is not None


def test_invalid_json_is_left_to_the_parser() -> None:
    assert measure(b"]" * 50 + b"[" * 50, JsonLimits(max_items=1000, max_depth=8)) is None


def test_a_dense_body_is_refused_after_its_first_chunks() -> None:
    """A scan refuses a `[{},{},...]` body once its prefix is over the limit: the rest need
    never be read."""
    limits = JsonLimits(max_items=10_000)
    scan = BodyScan(limits)
    chunk = b"{}," * 4096
    parts = [b'{"model":"auto","messages":[']
    refused_at = None
    for i in range(1000):
        parts.append(chunk)
        if scan.feed(chunk, parts) is not None:
            refused_at = i
            break
    assert refused_at is not None and refused_at <= 3


def test_strings_full_of_commas_are_read_through() -> None:
    limits = JsonLimits(max_items=1000)
    scan = BodyScan(limits)
    parts = [b'{"messages":[{"role":"user","content":"']
    for _ in range(200):
        chunk = b"a, b, {c}, [d], " * 256
        parts.append(chunk)
        assert scan.feed(chunk, parts) is None
    parts.append(b'"}]}')
    assert measure(b"".join(parts), limits) is None


def test_counts_after_parsing() -> None:
    check_counts({"messages": [1, 2, 3], "tools": [1, 2]}, SMALL)
    with pytest.raises(JsonTooLarge, match="EDGE_MAX_MESSAGES"):
        check_counts({"messages": [1, 2, 3, 4]}, SMALL)
    with pytest.raises(JsonTooLarge, match="EDGE_MAX_TOOLS") as info:
        check_counts({"tools": [1, 2, 3]}, SMALL)
    assert info.value.param == "tools" and info.value.status == 400


def test_measuring_a_32_mib_hostile_body_is_not_an_expansion() -> None:
    """The check's own copies stay within a small multiple of the body (tracemalloc)."""
    import tracemalloc

    body = b'{"model":"auto","messages":[' + b"{}," * (11 * 1024 * 1024) + b"{}]}"
    tracemalloc.start()
    try:
        err = measure(body, JsonLimits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err is not None
    assert peak < 3 * len(body), (
        f"peak {peak / 2**20:.0f} MiB for a {len(body) / 2**20:.0f} MiB body"
    )
