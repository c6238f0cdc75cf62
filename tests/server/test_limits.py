"""Ingress limits and connection life: sizes, deadlines, connection cap, disconnects, pooling."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.procs import Proc, SimClient, start_gateway
from tests.server.conftest import GW_KEY, POLICY
from tests.server.test_errors import AUTH, raw, split


@pytest.fixture(scope="module")
def tight(sim: SimClient) -> Iterator[Proc]:
    """A gateway with small limits and short deadlines."""
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": GW_KEY,
            "EDGE_MAX_BODY_BYTES": "4096",
            "EDGE_MAX_HEADER_BYTES": "2048",
            "EDGE_HEADER_TIMEOUT_S": "1",
            "EDGE_BODY_TIMEOUT_S": "1",
            "EDGE_KEEPALIVE_TIMEOUT_S": "1",
            "EDGE_MAX_CONNECTIONS": "6",
            "EDGE_WRITE_TIMEOUT_S": "1",
        },
    )
    yield proc
    proc.stop()


def test_oversized_headers_get_431(tight: Proc) -> None:
    req = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4000 + b"\r\n\r\n"
    status, headers, body = split(raw(tight.port, req))
    assert status == 431 and headers["connection"] == "close"
    assert body["error"]["type"] == "invalid_request_error"


def test_oversized_body_by_length_and_by_count(tight: Proc) -> None:
    big = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * 5000 + b'"}]}'
    r = httpx.post(
        tight.url + "/v1/chat/completions",
        content=big,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = httpx.post(
        tight.url + "/v1/messages",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"


def test_slowloris_head_is_cut_off(tight: Proc) -> None:
    t0 = time.monotonic()
    got = b""
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        s.settimeout(0.1)
        while (
            not got and time.monotonic() - t0 < 6
        ):  # one header byte every 0.1 s would never finish
            try:
                s.sendall(b"x")
                got = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
    elapsed = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408")
    assert elapsed < 2.5  # the 1 s head deadline is not extended by trickled bytes


def test_body_deadline(tight: Proc) -> None:
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + GW_KEY.encode() + b"\r\ncontent-length: 100\r\n\r\n{"
        )
        got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 408")


def test_idle_keepalive_connection_is_closed(tight: Proc) -> None:
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        assert s.recv(4096) == b""  # closed by the server
        assert 0.5 < time.monotonic() - t0 < 4.0


def test_connection_cap(tight: Proc) -> None:
    held = [socket.create_connection(("127.0.0.1", tight.port), timeout=5) for _ in range(6)]
    try:
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        status, headers, _ = split(raw(tight.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"))
        assert status == 503 and headers["retry-after"] == "1"
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the slots free up once the server notices the closes
        if httpx.get(tight.url + "/healthz").status_code == 200:
            break
    assert httpx.get(tight.url + "/healthz").status_code == 200


def test_client_disconnect_mid_stream_closes_the_upstream_connection(
    gateway: Proc, fresh_sim: SimClient
) -> None:
    body = {
        "model": "slow-an",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=AUTH) as r:
        for line in r.iter_lines():
            if "content_block_delta" in line:
                break
    deadline = time.monotonic() + 5
    attempt = None
    while time.monotonic() < deadline:
        attempts = fresh_sim.attempts()
        if attempts and attempts[0]["disconnected"]:
            attempt = attempts[0]
            break
        time.sleep(0.05)
    assert attempt is not None, fresh_sim.attempts()
    assert not attempt["completed"] and attempt["tokens_sent"] < 40


def _pool_events(gateway: Proc) -> dict[str, int]:
    text = httpx.get(gateway.url + "/metrics").text
    return {
        m.group(1): int(float(m.group(2)))
        for m in re.finditer(r'edge_upstream_connection_events_total\{event="(\w+)"\} (\S+)', text)
    }


def test_upstream_connections_are_reused(gateway: Proc) -> None:
    before = _pool_events(gateway)
    with httpx.Client() as c:
        for _ in range(10):
            r = c.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                headers=AUTH,
            )
            assert r.status_code == 200
    after = _pool_events(gateway)
    assert after["reused"] - before["reused"] >= 9
    assert after["opened"] - before["opened"] <= 1


def test_concurrent_streams_all_complete(gateway: Proc) -> None:
    errors: list[str] = []

    def one(i: int) -> None:
        body = {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": f"Repeat after me: n{i}"}],
        }
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10
        ) as r:
            text = r.read().decode()
        if f'"content":"n{i}"' not in text or "[DONE]" not in text:
            errors.append(text[:200])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_request_framed_two_ways_is_answered_then_the_connection_closes(gateway: Proc) -> None:
    """Content-Length and Transfer-Encoding together (RFC 9112 6.1): the answer, then close,
    so a proxy that framed by the length cannot slip a second request in behind it."""
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
    chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + GW_KEY.encode() + b"\r\ncontent-length: 5\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    smuggled = b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
    started = time.monotonic()
    resp = raw(gateway.port, head + chunked + smuggled, timeout=10.0)
    assert time.monotonic() - started < 9  # closed by the gateway, not by our timeout
    assert resp.count(b"HTTP/1.1 ") == 1  # the smuggled request was never answered
    status, headers, _ = split(resp)
    assert status == 200 and headers.get("connection") == "close"


def test_errors_no_handler_saw_are_logged(tight: Proc) -> None:
    """Framing, limits and deadlines answer on the connection itself: each still leaves an
    access log line with its status and the client's address."""
    huge = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8000 + b"\r\n\r\n"
    status, _, _ = split(raw(tight.port, huge))
    assert status == 431
    deadline = time.monotonic() + 5
    while not any('"status":431' in line and '"peer":"127.0.0.1:' in line for line in tight.lines):
        assert time.monotonic() < deadline, "no log line for the 431"
        time.sleep(0.05)


def test_a_failed_admin_key_is_logged_and_counted(gateway: Proc) -> None:
    r = httpx.get(gateway.url + "/admin/spend", headers={"authorization": "Bearer guess"})
    assert r.status_code in (401, 403)
    rid = r.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while not any(rid in line and '"target":"/admin/spend"' in line for line in gateway.lines):
        assert time.monotonic() < deadline, "no log line for the refused admin request"
        time.sleep(0.05)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_clients_that_pipeline_and_never_read_cost_no_memory_and_no_slot(tight: Proc) -> None:
    """As many connections as the gateway allows (6 here) each pipeline a thousand requests
    for an 8 KB page and read nothing: the gateway answers until the socket buffers are full,
    serves no more until the client reads, and lets go of a client that reads nothing within
    the write timeout (1 s here). Memory stays flat and the slots come back."""
    pid = int(httpx.get(tight.url + "/healthz").json()["pid"])
    before = rss_mb(pid)
    one = b"GET /dashboard HTTP/1.1\r\nhost: x\r\n\r\n"
    socks = []
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", tight.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        try:
            for _ in range(1000):
                s.send(one * 20)
        except BlockingIOError:
            pass  # the gateway stopped reading: its side is full too
        socks.append(s)
    try:
        deadline = time.monotonic() + 10
        while True:  # the slots come back once the write timeout has let the readers go
            try:
                if httpx.get(tight.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the non-reading clients still hold every slot"
            time.sleep(0.2)
        grown = rss_mb(pid) - before
        assert grown < 20, f"the worker grew {grown:.1f} MB for clients that read nothing"
    finally:
        for s in socks:
            s.close()


def test_a_request_without_a_valid_key_is_refused_before_its_body(tight: Proc) -> None:
    """The key is checked on the head: a keyless client announcing a large body gets its 401
    at once, without the gateway reading (and buffering) the body."""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 4000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        s.sendall(head)  # and not one byte of the body
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 401 ")
    wrong = head.replace(b"\r\n\r\n", b"\r\nauthorization: Bearer nope\r\n\r\n")
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        s.sendall(wrong)
        assert s.recv(65536).startswith(b"HTTP/1.1 401 ")


def test_a_client_that_half_closes_after_its_request_gets_its_answer(gateway: Proc) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Repeat after me: half"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + GW_KEY.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(head + body)
        s.shutdown(socket.SHUT_WR)  # done sending; still reading
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and b'"content":"half"' in data
