"""The gateway end to end with every compiled module replaced by its pure twin."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.procs import Proc, SimClient, start_gateway
from tests.server.conftest import GW_KEY, POLICY


@pytest.fixture(scope="module")
def pure_gateway(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(sim.url, POLICY, {"EDGE_KEYS": GW_KEY, "EDGE_NO_EXTENSIONS": "1"})
    yield proc
    proc.stop()


def test_sdks_through_a_gateway_running_the_twins(
    pure_gateway: Proc, gateway: Proc, sim: SimClient
) -> None:
    assert httpx.get(pure_gateway.url + "/healthz").json()["compiled"] == {
        "sse": False,
        "http": False,
    }
    if os.environ.get("EDGE_NO_EXTENSIONS") != "1":
        compiled = httpx.get(gateway.url + "/healthz").json()["compiled"]
        assert compiled == {"sse": True, "http": True}, (
            "a normal build must run the compiled modules"
        )
    oa = openai.OpenAI(base_url=pure_gateway.url + "/v1", api_key=GW_KEY, max_retries=0)
    direct = openai.OpenAI(base_url=sim.openai_base, api_key="k", max_retries=0)
    msgs = [{"role": "user", "content": "twins please"}]
    whole = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert (
        whole.choices[0].message.content
        == direct.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        .choices[0]
        .message.content
    )
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
        if c.choices
    )
    assert streamed == whole.choices[0].message.content
    an = anthropic.Anthropic(base_url=pure_gateway.url, api_key=GW_KEY, max_retries=0)
    with an.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=msgs) as s:
        assert "".join(s.text_stream)
