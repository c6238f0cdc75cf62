"""Raw-socket edges of the simulator: framing errors, pipelining, auth, strict models."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.procs import ROOT, Proc, SimClient, start


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_request_line_gets_400_then_close(sim: SimClient) -> None:
    out = exchange(sim.proc.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in out
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"


def test_pipelined_requests_answered_in_order(sim: SimClient) -> None:
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Repeat after me: %s"}]}
    )
    reqs = b""
    for word in ("one", "two", "three"):
        b = (body % word).encode()
        reqs += (
            b"POST /v1/chat/completions HTTP/1.1\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(b), b)
        )
    reqs += b"GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n"
    out = exchange(sim.proc.port, reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert (
        out.index(b'"content":"one"')
        < out.index(b'"content":"two"')
        < out.index(b'"content":"three"')
    )


def test_invalid_json_wrong_content_type_unknown_path_and_method(sim: SimClient) -> None:
    h = {"authorization": "Bearer k"}
    r = sim.http.post(
        "/v1/chat/completions", headers={**h, "content-type": "application/json"}, content=b"{nope"
    )
    assert r.status_code == 400 and "parse the JSON" in r.json()["error"]["message"]
    r = sim.http.post(
        "/v1/chat/completions", headers={**h, "content-type": "text/plain"}, content=b"{}"
    )
    assert r.status_code == 400
    r = sim.http.get("/v1/nothing", headers=h)
    assert r.status_code == 404 and "error" in r.json()
    r = sim.http.get("/v1/messages", headers={"x-api-key": "k"})
    assert r.status_code == 405 and r.json()["type"] == "error"
    r = sim.http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["message"].startswith(
        "You didn't provide an API key"
    )
    r = sim.http.post("/v1/messages", json={"model": "x", "max_tokens": 1, "messages": []})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_chunked_request_body_is_accepted(sim: SimClient) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"model":"gpt-4o-mini",'
        yield b'"messages":[{"role":"user","content":"Repeat after me: chunked"}]}'

    r = sim.http.post(
        "/v1/chat/completions",
        headers={"authorization": "Bearer k", "content-type": "application/json"},
        content=gen(),
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "chunked"


@pytest.fixture(scope="module")
def strict() -> Iterator[Proc]:
    proc = start(
        ["simulate", "--port", "0", "--profile", os.path.join(ROOT, "tests/simulate/strict.toml")]
    )
    yield proc
    proc.stop()


def test_strict_profile_checks_key_and_model(strict: Proc) -> None:
    with httpx.Client(base_url=strict.url) as c:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
        assert (
            c.post(
                "/v1/chat/completions", headers={"authorization": "Bearer wrong"}, json=body
            ).status_code
            == 401
        )
        ok = c.post(
            "/v1/chat/completions", headers={"authorization": "Bearer sk-sim-strict"}, json=body
        )
        assert ok.status_code == 200
        r = c.post(
            "/v1/chat/completions",
            headers={"authorization": "Bearer sk-sim-strict"},
            json={**body, "model": "gpt-9"},
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = c.post(
            "/v1/messages",
            headers={"x-api-key": "sk-sim-strict"},
            json={**body, "model": "claude-9", "max_tokens": 5},
        )
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_bad_profile_fails_at_start(tmp_path: object) -> None:
    with pytest.raises(RuntimeError, match="fault"):
        path = os.path.join(str(tmp_path), "bad.toml")
        with open(path, "w") as f:
            f.write('[defaults]\nfault = "explode"\n')
        start(["simulate", "--port", "0", "--profile", path], ready_timeout=10)
