"""The simulated embeddings: OpenAI's checks, deterministic unit vectors, usage and billing."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import httpx
import orjson
import pytest

from edge.simulate import embed
from edge.simulate.generate import InvalidRequest
from tests.procs import SimClient


def vectors(body: dict[str, Any]) -> tuple[list[list[float]], dict[str, Any]]:
    raw, tokens = embed.answer(embed.read(body))
    got = orjson.loads(raw)
    assert got["object"] == "list" and got["usage"]["prompt_tokens"] == tokens
    out = []
    for i, d in enumerate(got["data"]):
        assert d["object"] == "embedding" and d["index"] == i
        e = d["embedding"]
        if isinstance(e, str):
            packed = base64.b64decode(e)
            e = list(struct.unpack(f"<{len(packed) // 4}f", packed))
        out.append(e)
    return out, got


def test_vectors_are_deterministic_unit_and_sized_by_model() -> None:
    (small,), _ = vectors({"model": "text-embedding-3-small", "input": "hi"})
    (again,), _ = vectors({"model": "text-embedding-3-small", "input": "hi"})
    (large,), _ = vectors({"model": "text-embedding-3-large", "input": "hi"})
    (other,), _ = vectors({"model": "text-embedding-3-small", "input": "ho"})
    assert len(small) == 1536 and len(large) == 3072
    assert small == again != other
    assert math.sqrt(sum(x * x for x in small)) == pytest.approx(1.0, abs=1e-5)
    short, _ = vectors({"model": "text-embedding-3-large", "input": ["a", "b"], "dimensions": 8})
    assert [len(v) for v in short] == [8, 8]
    assert math.sqrt(sum(x * x for x in short[0])) == pytest.approx(1.0, abs=1e-5)


def test_base64_is_little_endian_float32_of_the_same_numbers() -> None:
    body = {"model": "text-embedding-3-small", "input": ["x", "yy"]}
    floats, _ = vectors(body)
    packed, _ = vectors({**body, "encoding_format": "base64"})
    assert floats == packed


def test_usage_follows_the_simulators_token_rule() -> None:
    _, got = vectors({"model": "m", "input": ["a" * 9, "b"]})
    assert got["usage"] == {"prompt_tokens": 3 + 1, "total_tokens": 4}
    _, ids = vectors({"model": "m", "input": [[1, 2, 3], [4]]})
    assert ids["usage"]["prompt_tokens"] == 4
    _, one = vectors({"model": "m", "input": [7, 8]})
    assert len(one["data"]) == 1 and one["usage"]["prompt_tokens"] == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": ["a", ""]}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": ["a"] * 2049}, "input"),
        ({"model": "m", "input": [[]]}, "input"),
        ({"model": "m", "input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "text-embedding-3-small", "input": "a", "dimensions": 1537}, "dimensions"),
        ({"input": "a"}, "model"),
    ],
)
def test_invalid_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        embed.read(body)
    assert err.value.param == param


def test_served_and_recorded(fresh_sim: SimClient) -> None:
    r = httpx.post(
        fresh_sim.openai_base + "/embeddings",
        headers={"authorization": "Bearer sk-x", "x-request-id": "req-emb-1"},
        json={"model": "text-embedding-3-small", "input": ["abcd", "efgh"]},
    )
    assert r.status_code == 200 and r.headers["x-request-id"]
    assert r.json()["usage"]["prompt_tokens"] == 2
    (rec,) = fresh_sim.attempts("text-embedding-3-small")
    assert rec["status"] == 200 and rec["client_request_id"] == "req-emb-1"
    assert rec["billed_input"] == 2 and rec["billed_output"] == 0 and rec["completed"]
    bad = httpx.post(
        fresh_sim.openai_base + "/embeddings",
        headers={"authorization": "Bearer sk-x"},
        json={"model": "text-embedding-3-small", "input": ""},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert httpx.get(fresh_sim.openai_base + "/embeddings").status_code == 405
