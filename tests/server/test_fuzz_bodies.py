"""Any request body gets an answer or a 4xx naming the problem, never a 5xx of the gateway's own
(hypothesis over JSON shapes in the fields the gateway reads, every route, translated too)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.procs import Proc
from tests.server.conftest import GW_KEY_L0

KEYS = [
    "type", "text", "content", "role", "source", "image_url", "url", "data", "tool_calls",
    "function", "name", "arguments", "input", "id", "json_schema", "schema", "format",
    "cache_control", "media_type",
]  # fmt: skip
FIELDS = [
    "system", "tools", "tool_choice", "response_format", "output_config", "output_format",
    "max_tokens", "max_completion_tokens", "stop", "stop_sequences", "n", "logprobs",
    "top_logprobs", "seed", "top_k", "thinking", "metadata", "stream_options", "temperature",
    "functions", "function_call", "cache_control",
]  # fmt: skip
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
anything = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", 5]), "content": anything},
    optional={"tool_calls": anything, "tool_call_id": anything, "name": anything},
)  # fmt: skip
body = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "auto", "L1"]),
        "messages": st.one_of(st.lists(message, min_size=1, max_size=3), anything),
    },
    optional={f: anything for f in FIELDS},
)
PATHS = ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"]


def post(gateway: Proc, path: str, payload: Any) -> httpx.Response:
    return httpx.post(
        gateway.url + path,
        json=payload,
        headers={"authorization": f"Bearer {GW_KEY_L0}", "anthropic-version": "2023-06-01"},
        timeout=20,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=body, path=st.sampled_from(PATHS))
def test_no_body_gets_a_5xx_of_the_gateways_own(
    gateway: Proc, payload: dict[str, Any], path: str
) -> None:
    payload = {**payload, "stream": False}
    if path != "/v1/chat/completions":
        payload.setdefault("max_tokens", 16)
    r = post(gateway, path, payload)
    # 502-504 are a provider's failures re-expressed; 500 would be the gateway's own
    assert r.status_code < 500 or r.status_code in (502, 503, 504), (r.status_code, r.text)
    if r.status_code >= 400:
        error = r.json().get("error")
        assert isinstance(error, dict) and error.get("message"), r.text


RESPONSE_KEYS = [
    "type", "role", "content", "text", "call_id", "name", "arguments", "output", "format",
    "schema", "parameters", "image_url", "summary", "id", "strict",
]  # fmt: skip
response_anything = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(RESPONSE_KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)
item = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "x", 5])},
    optional={k: response_anything for k in ("role", "content", "call_id", "name", "arguments", "output", "summary")},
)  # fmt: skip
RESPONSE_FIELDS = [
    "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens", "metadata",
    "parallel_tool_calls", "temperature", "top_p", "store", "include", "truncation", "user",
    "previous_response_id", "top_logprobs", "prompt_cache_key", "background",
]  # fmt: skip
response_body = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "auto"]),
        "input": st.one_of(st.text(max_size=8), st.lists(item, min_size=1, max_size=3), response_anything),
    },
    optional={f: response_anything for f in RESPONSE_FIELDS},
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=response_body, path=st.sampled_from(["/v1/responses", "/v1/responses/input_tokens"]))
def test_no_responses_body_gets_a_5xx_of_the_gateways_own(
    gateway: Proc, payload: dict[str, Any], path: str
) -> None:
    r = post(gateway, path, {**payload, "stream": False})
    assert r.status_code < 500 or r.status_code in (502, 503, 504), (r.status_code, r.text)
    if r.status_code >= 400:
        error = r.json().get("error")
        assert isinstance(error, dict) and error.get("message"), r.text


def test_no_unhandled_error_was_logged(gateway: Proc) -> None:
    assert not [line for line in gateway.lines if '"unhandled error"' in line]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_json_nested_too_deep_to_forward_is_a_400(gateway: Proc, path: str) -> None:
    deep = "[" * 600 + "]" * 600
    head = '{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]'
    raw = head + ',"metadata":{"x":' + deep + "}}"
    r = httpx.post(
        gateway.url + path,
        content=raw,
        headers={
            "authorization": f"Bearer {GW_KEY_L0}",
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
        },
    )
    # refused before parsing, whichever dialect (EDGE_MAX_JSON_DEPTH, 64 by default; a body
    # forwarded as it is could not be written deeper than 254 anyway)
    assert r.status_code == 400 and "nested more than 64" in r.text
    assert "EDGE_MAX_JSON_DEPTH" in r.text
