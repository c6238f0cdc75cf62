"""Model ids as clients spell them: dated ids, ``models.retrieve``, the Anthropic list's dates
and cursors, 404s in the route's dialect; both official SDKs on the shipped policy."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.procs import ROOT, Proc, SimClient, start_gateway

HELLO = [{"role": "user", "content": "Repeat after me: dated"}]


@pytest.fixture(scope="module")
def shipped(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(sim.url, os.path.join(ROOT, "edge/policies/default.toml"))
    yield proc
    proc.stop()


def test_a_dated_id_is_served_by_its_model_in_both_dialects(shipped: Proc) -> None:
    an = anthropic.Anthropic(base_url=shipped.url, api_key="any", max_retries=0)
    raw = an.messages.with_raw_response.create(
        model="claude-haiku-4-5-20251001", max_tokens=32, messages=HELLO
    )
    assert raw.headers["x-edge-model"] == "claude-haiku-4-5"
    assert raw.parse().content[0].text == "dated"
    oa = openai.OpenAI(base_url=shipped.url + "/v1", api_key="any", max_retries=0)
    raw2 = oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini-2024-07-18", messages=HELLO
    )
    assert raw2.headers["x-edge-model"] == "gpt-4o-mini"


def test_models_retrieve_in_each_sdk(shipped: Proc) -> None:
    oa = openai.OpenAI(base_url=shipped.url + "/v1", api_key="any", max_retries=0)
    m = oa.models.retrieve("gpt-4.1-2025-04-14")
    assert m.id == "gpt-4.1-2025-04-14" and m.owned_by == "openai" and m.created == 1744588800
    an = anthropic.Anthropic(base_url=shipped.url, api_key="any", max_retries=0)
    info = an.models.retrieve("claude-haiku-4-5")
    assert info.id == "claude-haiku-4-5" and info.created_at.year == 2025
    with pytest.raises(anthropic.NotFoundError) as err:
        an.models.retrieve("claude-nonexistent-9")
    assert err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError) as oerr:
        oa.models.retrieve("gpt-nonexistent")
    assert oerr.value.code == "model_not_found"


def test_the_anthropic_list_has_dates_and_pages(shipped: Proc) -> None:
    an = anthropic.Anthropic(base_url=shipped.url, api_key="any", max_retries=0)
    every = [m.id for m in an.models.list(limit=2)]  # the SDK follows the cursors
    assert every == sorted(every) and "claude-haiku-4-5" in every and len(every) == 7
    first = an.models.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    assert all(m.created_at.year >= 2024 for m in first.data)
    with pytest.raises(anthropic.BadRequestError):
        an.models.list(limit=5000)


def test_embedding_models_are_listed_in_the_openai_dialect_only(shipped: Proc) -> None:
    oa = openai.OpenAI(base_url=shipped.url + "/v1", api_key="any", max_retries=0)
    assert "text-embedding-3-small" in [m.id for m in oa.models.list()]
    assert oa.models.retrieve("text-embedding-3-large").owned_by == "openai"
    an = anthropic.Anthropic(base_url=shipped.url, api_key="any", max_retries=0)
    assert not [m.id for m in an.models.list(limit=100) if m.id.startswith("text-embedding")]
    with pytest.raises(anthropic.NotFoundError):
        an.models.retrieve("text-embedding-3-small")
    # and the shipped policy serves them through the SDK's defaults (base64)
    got = oa.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [len(d.embedding) for d in got.data] == [1536, 1536]
