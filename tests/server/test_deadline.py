"""Deadlines that follow the client: the SDKs' timeout headers and x-edge-deadline-ms, parsed
(never blindly), applied to the tier's timing, and, through a real gateway, answered with the
gateway's timeout error before the SDK's own read timeout fires (both dialects)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from edge.dialects.openai import DIALECT as openai_dialect
from edge.errors import InvalidRequest
from edge.policy import load_policy
from edge.routing.decide import Router
from edge.server.deadline import ClientDeadline, client_deadline, margin
from edge.server.protocol import Request
from edge.server.relay import plan_chat
from tests.procs import Proc
from tests.server.conftest import GW_KEY

HELLO = [{"role": "user", "content": "Hello there, gateway"}]


def deadline(**headers: str) -> ClientDeadline | None:
    return client_deadline({k.replace("_", "-").encode(): v.encode() for k, v in headers.items()})


def test_sdk_values_are_seconds_with_the_margin_taken_off() -> None:
    assert deadline(x_stainless_read_timeout="600") == ClientDeadline(599.0, None)
    assert deadline(x_stainless_read_timeout="12.0") == ClientDeadline(11.0, None)
    assert deadline(x_stainless_read_timeout="2") == ClientDeadline(margin(2.0), None)
    # the Anthropic SDK sends both: the shorter binds
    got = deadline(x_stainless_read_timeout="600", x_stainless_timeout="30.5")
    assert got is not None and got.read_s == pytest.approx(29.5)


@pytest.mark.parametrize("value", ["NOT_GIVEN", "None", "", "nan", "inf", "-3", "0", "1s"])
def test_what_an_sdk_prints_that_is_no_timeout_is_ignored(value: str) -> None:
    assert deadline(x_stainless_timeout=value) is None
    assert deadline(x_stainless_timeout=value, x_stainless_read_timeout="10") == ClientDeadline(
        9.0, None
    )


def test_the_gateway_header_is_the_callers_and_a_bad_one_is_a_400() -> None:
    assert deadline(x_edge_deadline_ms="1500") == ClientDeadline(None, 1.35)
    for bad in ("soon", "-1", "0", "nan"):
        with pytest.raises(InvalidRequest, match="x-edge-deadline-ms: expected a positive"):
            deadline(x_edge_deadline_ms=bad)


def test_margin_stays_inside_the_deadline() -> None:
    assert margin(0.02) == 0.01
    assert margin(1.0) == 0.9
    assert margin(100.0) == 99.0


POLICY = load_policy("", {})


def plan_for(stream: bool, client: ClientDeadline | None) -> Any:
    hdrs = {b"content-type": b"application/json"}
    req = Request(b"POST", b"/v1/chat/completions", hdrs, "req-test", True)
    req.body = orjson.dumps({"model": "gpt-4o-mini", "messages": HELLO, "stream": stream})
    plan = plan_chat(POLICY, Router(POLICY), req, openai_dialect)
    plan.client = client
    return plan


def test_a_read_timeout_bounds_a_whole_answer_and_each_gap_of_a_stream() -> None:
    tier = POLICY.tiers["L1"]
    whole = plan_for(False, ClientDeadline(read_s=2.7)).timing
    assert whole.total_timeout_s == 2.7 and whole.first_token_timeout_s == 2.7
    assert whole.soft_timeout_s < whole.first_token_timeout_s
    stream = plan_for(True, ClientDeadline(read_s=2.7))
    assert stream.timing.idle_timeout_s == 2.7
    assert stream.timing.total_timeout_s == tier.total_timeout_ms / 1000.0
    assert stream.first_token_by(stream.timing) == 2.7 and stream.start_within(stream.timing) == 2.7
    total = plan_for(True, ClientDeadline(total_s=0.9)).timing
    assert total.total_timeout_s == 0.9 and total.first_token_timeout_s == 0.9
    assert total.soft_timeout_s == 0.45  # a hedge still has time to win
    # a client more patient than the tier changes nothing
    assert plan_for(False, ClientDeadline(read_s=599.0)).timing == plan_for(False, None).timing


# -- through a real gateway: the SDK's read timeout is 1.5 s, the gateway answers at ~1.35 s

TIMEOUT = 1.5


@pytest.fixture
def oa(gateway: Proc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0, timeout=TIMEOUT
    ) as client:
        yield client


@pytest.fixture
def an(gateway: Proc) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=gateway.url, api_key=GW_KEY, max_retries=0, timeout=TIMEOUT
    ) as client:
        yield client


SOLO = {"x-edge-tier": "solo"}  # no other candidate: the slow model is the only one


def test_openai_sdk_gets_the_gateways_timeout_before_its_own(oa: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as exc:
        oa.chat.completions.create(model="slow-oa", messages=HELLO, extra_headers=SOLO)
    took = time.monotonic() - started
    assert exc.value.status_code == 504, exc.value  # not the SDK's APITimeoutError
    assert exc.value.response.json()["error"]["type"] == "timeout"
    assert took < TIMEOUT


def test_anthropic_sdk_stream_gets_the_gateways_timeout_before_its_own(
    an: anthropic.Anthropic,
) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as exc:
        stream = an.messages.create(
            model="hang-oa", max_tokens=64, messages=HELLO, stream=True, extra_headers=SOLO
        )
        for _ in stream:
            pass
    took = time.monotonic() - started
    assert exc.value.status_code == 504, exc.value
    body = exc.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "timeout_error"
    assert "read timeout" in body["error"]["message"]
    assert took < TIMEOUT


def test_anthropic_sdk_whole_answer_is_bounded_too(an: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as exc:
        an.messages.create(model="slow-an", max_tokens=64, messages=HELLO, extra_headers=SOLO)
    assert exc.value.status_code == 504


def test_a_bad_deadline_header_is_a_400_naming_it(gateway: Proc) -> None:
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {GW_KEY}", "x-edge-deadline-ms": "soon"},
        json={"model": "gpt-4o-mini", "messages": HELLO},
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "x-edge-deadline-ms"


def test_a_patient_client_still_gets_its_answer(oa: openai.OpenAI) -> None:
    answer = oa.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert answer.choices[0].message.content
