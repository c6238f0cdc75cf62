"""``POST /v1/embeddings`` end to end: the official openai SDK (its defaults: base64 vectors)
through a real gateway to the simulator; the key, the ledger, the cost and the metrics."""

from __future__ import annotations

import base64
import math
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.procs import ROOT, Proc, SimClient, metric, start, start_gateway

POLICY = os.path.join(ROOT, "tests/server/embeddings_policy.toml")
PROFILE = os.path.join(ROOT, "tests/server/embeddings_profile.toml")
KEY = "sk-gw-emb"
TINY = "sk-gw-tiny"  # tenant `tiny`: its budget fits no call
ADMIN = "sk-admin-emb"


@pytest.fixture(scope="module")
def esim() -> Iterator[SimClient]:
    proc = start(["simulate", "--port", "0", "--profile", PROFILE])
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


@pytest.fixture(scope="module")
def gw(esim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(
        esim.url, POLICY, {"EDGE_KEYS": f"{KEY}=L1@emb,{TINY}=L1@tiny", "EDGE_ADMIN_KEY": ADMIN}
    )
    yield proc
    proc.stop()


@pytest.fixture
def client(gw: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_a_string_through_the_sdk_comes_back_decoded_and_priced(
    client: openai.OpenAI, esim: SimClient, gw: Proc
) -> None:
    since = esim.seq()
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello embeddings"
    )
    got = raw.parse()
    assert len(got.data) == 1 and got.data[0].index == 0
    vec = got.data[0].embedding
    assert len(vec) == 1536 and abs(_norm(vec) - 1.0) < 1e-4
    tokens = (len("hello embeddings") + 3) // 4  # the simulator's rule
    assert got.usage.prompt_tokens == tokens == got.usage.total_tokens
    assert raw.headers["x-edge-model"] == "text-embedding-3-small"
    assert raw.headers["x-edge-provider"] == "openai"
    assert raw.headers["x-request-id"]
    assert float(raw.headers["x-edge-cost-usd"]) == pytest.approx(tokens * 0.02 / 1e6)
    # one attempt upstream, non-streaming, with the gateway's request id, billed its input
    (attempt,) = esim.attempts("text-embedding-3-small", since)
    assert attempt["status"] == 200 and not attempt["stream"]
    assert attempt["client_request_id"] == raw.headers["x-request-id"]
    assert attempt["billed_input"] == tokens and attempt["billed_output"] == 0
    # the same vector asked as floats: base64 is little-endian float32 of the same numbers
    plain = httpx.post(
        gw.url + "/v1/embeddings",
        headers={"authorization": f"Bearer {KEY}"},
        json={
            "model": "text-embedding-3-small",
            "input": "hello embeddings",
            "encoding_format": "float",
        },
    ).json()
    assert plain["data"][0]["embedding"] == pytest.approx(vec, abs=0)
    packed = httpx.post(
        gw.url + "/v1/embeddings",
        headers={"authorization": f"Bearer {KEY}"},
        json={
            "model": "text-embedding-3-small",
            "input": "hello embeddings",
            "encoding_format": "base64",
        },
    ).json()["data"][0]["embedding"]
    assert list(struct.unpack("<1536f", base64.b64decode(packed))) == vec


def test_lists_and_dimensions(client: openai.OpenAI) -> None:
    got = client.embeddings.create(model="text-embedding-3-large", input=["one", "two", "one"])
    assert [d.index for d in got.data] == [0, 1, 2]
    assert all(len(d.embedding) == 3072 for d in got.data)
    assert got.data[0].embedding == got.data[2].embedding != got.data[1].embedding
    short = client.embeddings.create(
        model="text-embedding-3-large", input=["one", "two"], dimensions=256
    )
    assert [len(d.embedding) for d in short.data] == [256, 256]
    assert abs(_norm(short.data[0].embedding) - 1.0) < 1e-4
    ids = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(ids.data) == 2 and ids.usage.prompt_tokens == 5


@pytest.mark.parametrize("given", ["", ["fine", ""], [], [[]], [1, "a"], {"a": 1}])
def test_invalid_inputs_are_a_400_naming_input(client: openai.OpenAI, given: object) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="text-embedding-3-small", input=given)
    assert err.value.status_code == 400
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "input"
    assert body["type"] == "invalid_request_error"


def test_too_many_items_and_bad_fields(gw: Proc) -> None:
    def post(body: dict[str, object]) -> httpx.Response:
        return httpx.post(
            gw.url + "/v1/embeddings", headers={"authorization": f"Bearer {KEY}"}, json=body
        )

    r = post({"model": "text-embedding-3-small", "input": ["x"] * 2049})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert post({"model": "text-embedding-3-small", "input": ["x"] * 2048}).status_code == 200
    r = post({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format"
    r = post({"model": "text-embedding-3-small", "input": "x", "dimensions": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
    r = post({"input": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_unknown_chat_and_anthropic_models(client: openai.OpenAI) -> None:
    for name in ("no-such-model", "gpt-4o-mini"):
        with pytest.raises(openai.NotFoundError) as nf:
            client.embeddings.create(model=name, input="x")
        assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="claude-haiku-4-5", input="x")
    assert "no embeddings API" in bad.value.message
    # and the other way: a chat route never reaches an embedding model
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(
            model="text-embedding-3-small", messages=[{"role": "user", "content": "hi"}]
        )
    assert chat.value.code == "model_not_found"


def test_the_key_is_checked(gw: Proc) -> None:
    with (
        openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.embeddings.create(model="text-embedding-3-small", input="x")


def test_provider_errors_are_re_expressed(client: openai.OpenAI, gw: Proc) -> None:
    with pytest.raises(openai.InternalServerError) as refused:
        client.embeddings.create(model="emb-refused", input="x")
    assert refused.value.status_code == 502
    assert "Incorrect API key" not in refused.value.message
    assert "refused the gateway's credentials" in refused.value.message
    with pytest.raises(openai.InternalServerError) as down:
        client.embeddings.create(model="emb-503", input="x")
    assert down.value.status_code == 503


def test_ledger_cost_and_metrics(client: openai.OpenAI, gw: Proc) -> None:
    def rows() -> list[dict[str, Any]]:
        r = httpx.get(gw.url + "/admin/spend", headers={"authorization": f"Bearer {ADMIN}"})
        found: list[dict[str, Any]] = r.json()["rows"]
        return [x for x in found if x["model"] == "text-embedding-3-large"]

    before = {str(r["kind"]): r for r in rows()}
    text = "a" * 400  # 100 tokens by the simulator's rule
    got = client.embeddings.create(model="text-embedding-3-large", input=[text, text])
    assert got.usage.prompt_tokens == 200
    deadline = time.monotonic() + 5
    while True:
        after = {str(r["kind"]): r for r in rows()}
        done = after.get("answer", {}).get("requests", 0) > before.get("answer", {}).get(
            "requests", 0
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    row, old = after["answer"], before.get("answer", {})
    assert row["tenant"] == "emb" and row["tier"] == "L1" and row["provider"] == "openai"
    assert int(row["input_tokens"]) - int(old.get("input_tokens", 0)) == 200
    assert row["output_tokens"] == 0
    cost = float(row["cost_usd"]) - float(old.get("cost_usd", 0.0))
    assert cost == pytest.approx(200 * 0.13 / 1e6)
    assert set(after) == {"answer"}  # one attempt: no waste
    labels = {"operation": "embeddings", "model": "text-embedding-3-large", "status": "200"}
    assert metric(gw, "edge_requests_total", admin=ADMIN, **labels) >= 1
    assert metric(gw, "edge_cost_usd_total", admin=ADMIN, model="text-embedding-3-large") > 0
    errors = metric(gw, "edge_request_errors_total", admin=ADMIN, operation="embeddings")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    assert (
        metric(gw, "edge_request_errors_total", admin=ADMIN, operation="embeddings") == errors + 1
    )


def test_the_keys_budget_binds(gw: Proc, esim: SimClient) -> None:
    since = esim.seq()
    with (
        openai.OpenAI(base_url=gw.url + "/v1", api_key=TINY, max_retries=0) as c,
        pytest.raises(openai.RateLimitError) as err,
    ):
        c.embeddings.create(model="text-embedding-3-small", input="a" * 4000)
    assert err.value.code == "budget_exceeded"
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert esim.attempts(since=since) == []  # refused before any upstream call
