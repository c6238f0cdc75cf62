"""Bad input and upstream failures: the right status, in the caller's dialect, and the process keeps serving."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.procs import Proc
from tests.server.conftest import GW_KEY

AUTH = {"authorization": f"Bearer {GW_KEY}"}
HELLO = [{"role": "user", "content": "hi"}]
SOLO = {"x-edge-tier": "solo"}  # no fallbacks: the provider's failure is the answer


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def split(resp: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def oa_error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return dict(body["error"])


def an_error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
    assert r.headers["request-id"] == body["request_id"]
    return dict(body["error"])


def test_malformed_http_gets_400_and_close(gateway: Proc) -> None:
    status, headers, body = split(raw(gateway.port, b"NOT HTTP AT ALL\r\n\r\n"))
    assert status == 400 and headers["connection"] == "close"
    assert (
        body["error"]["type"] == "invalid_request_error" and "malformed" in body["error"]["message"]
    )


def test_invalid_json_missing_and_wrong_typed_fields(gateway: Proc) -> None:
    url = gateway.url + "/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in oa_error(r)["message"]
    r = httpx.post(url, json={"messages": HELLO}, headers=AUTH)
    assert r.status_code == 400 and oa_error(r)["param"] == "model"
    r = httpx.post(
        url, json={"model": "gpt-4o-mini", "messages": HELLO, "stream": "yes"}, headers=AUTH
    )
    assert r.status_code == 400 and oa_error(r)["param"] == "stream"
    r = httpx.post(
        url,
        json={"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]},
        headers=AUTH,
    )
    assert r.status_code == 400 and oa_error(r)["param"] == "messages[0].role"
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={"model": "claude-haiku-4-5", "messages": HELLO},
        headers=AUTH,
    )
    assert r.status_code == 400 and "max_tokens" in an_error(r)["message"]
    assert r.headers["x-should-retry"] == "false"


def test_content_type_path_method_model(gateway: Proc) -> None:
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=b"{}",
        headers={**AUTH, "content-type": "text/plain"},
    )
    assert r.status_code == 415 and oa_error(r)["type"] == "invalid_request_error"
    r = httpx.get(gateway.url + "/v1/nothing-here", headers=AUTH)
    assert r.status_code == 404 and oa_error(r)["code"] == "unknown_url"
    r = httpx.get(gateway.url + "/v1/messages", headers=AUTH)
    assert (
        r.status_code == 405
        and an_error(r)["type"] == "invalid_request_error"
        and r.headers["allow"] == "POST"
    )
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-9-turbo", "messages": HELLO},
        headers=AUTH,
    )
    assert r.status_code == 404 and oa_error(r)["code"] == "model_not_found"
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={"model": "nope", "max_tokens": 5, "messages": HELLO},
        headers=AUTH,
    )
    assert r.status_code == 404 and an_error(r)["type"] == "not_found_error"


def test_keys_no_key_bad_key_and_both_headers(gateway: Proc) -> None:
    body = {"model": "gpt-4o-mini", "messages": HELLO}
    r = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert r.status_code == 401 and oa_error(r)["code"] == "missing_api_key"
    r = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer wrong"}
    )
    assert r.status_code == 401 and oa_error(r)["code"] == "invalid_api_key"
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={**body, "model": "claude-haiku-4-5", "max_tokens": 5},
        headers={"x-api-key": "wrong"},
    )
    assert r.status_code == 401 and an_error(r)["type"] == "authentication_error"
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={**body, "model": "claude-haiku-4-5", "max_tokens": 5},
        headers={"x-api-key": GW_KEY},
    )
    assert r.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_upstream_error_status_in_the_callers_dialect(gateway: Proc) -> None:
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError) as err:
        oa.chat.completions.create(model="flaky-503", messages=HELLO, extra_headers=SOLO)
    assert err.value.status_code == 503
    assert err.value.response.headers["retry-after"] == "1"  # the provider's Retry-After is kept


def test_upstream_unreachable_is_502(gateway: Proc) -> None:
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError) as err:
        oa.chat.completions.create(model="dead-oa", messages=HELLO, extra_headers=SOLO)
    assert err.value.status_code == 502 and "cannot connect" in err.value.message


def test_upstream_silence_is_504(gateway: Proc) -> None:
    t0 = time.monotonic()
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "hang-oa", "messages": HELLO},
        headers={**AUTH, **SOLO},
        timeout=10,
    )
    assert r.status_code == 504 and oa_error(r)["type"] == "timeout"
    # the solo tier's idle deadline is 2 s (no candidate to replace the silent attempt)
    assert 2.0 <= time.monotonic() - t0 < 8.0


def test_stream_cut_mid_way_ends_with_a_dialect_error(gateway: Proc) -> None:
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0)
    got = []
    with pytest.raises(openai.APIError) as err:
        for chunk in oa.chat.completions.create(
            model="cut-after-2", messages=HELLO, stream=True, extra_headers=SOLO
        ):
            got += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(got) == 2
    assert "before the response was complete" in err.value.message
    # non-streaming: nothing was sent yet, so it is a clean 502
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "cut-after-2", "messages": HELLO},
        headers={**AUTH, **SOLO},
    )
    assert r.status_code == 502 and oa_error(r)["type"] == "server_error"


def test_anthropic_stream_cut_ends_with_error_event(gateway: Proc) -> None:
    an = anthropic.Anthropic(base_url=gateway.url, api_key=GW_KEY, max_retries=0)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err:
        for event in an.messages.create(
            model="cut-an", max_tokens=50, messages=HELLO, stream=True, extra_headers=SOLO
        ):
            seen.append(event.type)
    assert seen.count("content_block_delta") == 2 and "message_stop" not in seen
    assert isinstance(err.value.body, dict) and err.value.body["error"]["type"] == "api_error"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(min_size=1, max_size=300))
def test_process_keeps_serving_whatever_it_is_sent(gateway: Proc, junk: bytes) -> None:
    with contextlib.suppress(OSError):
        raw(gateway.port, junk, timeout=0.2)
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_a_providers_refusal_of_the_gateways_key_never_reaches_the_client() -> None:
    """The provider's 401 quotes the gateway's own key (masked, but its first characters and
    its last four): the client gets a 502 that says only that the key was refused; the
    operator's log has the provider's words."""
    import os

    from tests.procs import ROOT, start, start_gateway

    strict = start(
        ["simulate", "--port", "0", "--profile", os.path.join(ROOT, "tests/simulate/strict.toml")]
    )
    gw = start_gateway(
        f"http://127.0.0.1:{strict.port}",
        os.path.join(ROOT, "tests/server/policy.toml"),
        {"EDGE_KEYS": "sk-client", "OPENAI_API_KEY": "sk-wrong-provider-key-9876"},
    )
    try:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer sk-client", "x-edge-tier": "solo"},
        )
        assert r.status_code == 502
        assert "9876" not in r.text and "sk-w" not in r.text and "refused" in r.text
    finally:
        gw.stop()
        strict.stop()
    assert any("9876" in line and "refused the gateway" in line for line in gw.lines)
