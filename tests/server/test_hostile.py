"""Hostile clients against a real gateway process: bounded memory, and honest clients served.

Memory is the worker's peak RSS during an attack (its VmHWM, reset through
/proc/PID/clear_refs first) minus its RSS before: generous bounds here;
bench/attacks.py gives the exact figures.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.procs import Proc, SimClient, start_gateway
from tests.server.conftest import GW_KEY, POLICY
from tests.server.test_errors import split

MIB = 1024 * 1024
ADMIN = "sk-admin-hostile"


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def peak_growth_mb(pid: int, attack: Callable[[], None]) -> float:
    """The worker's peak RSS during ``attack`` over its RSS before, in MB."""
    before = rss_kb(pid)
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    attack()
    return (rss_kb(pid, "VmHWM") - before) / 1024


def gauges(gw: Proc) -> dict[str, float]:
    text = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    out = {}
    for line in text.splitlines():
        if line.startswith(("edge_request_body", "edge_request_bodies", "edge_auth_")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def head(path: str, length: int, key: str | None = GW_KEY, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: x", "content-type: application/json"]
    if key:
        lines.append(f"authorization: Bearer {key}")
    lines.append("transfer-encoding: chunked" if chunked else f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Sender:
    """A connection that sends ``data`` from a thread (blocked while the gateway does not read)
    and reads the answer, if any, from the main thread."""

    def __init__(self, port: int, data: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._send, args=(data,), daemon=True)
        self.thread.start()

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(data)
        self.done.set()

    def answer(self, timeout: float = 20.0) -> bytes:
        self.sock.settimeout(timeout)
        got = b""
        while b"\r\n\r\n" not in got or not _complete(got):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


def _complete(resp: bytes) -> bool:
    headpart, _, body = resp.partition(b"\r\n\r\n")
    for line in headpart.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.fixture(scope="module")
def guarded(sim: SimClient) -> Iterator[Proc]:
    """Shipped limits (32 MiB bodies, 64 MiB body budget, JSON limits), keys, an admin key,
    and failed auth slowed after 2 failures (at most 0.5 s)."""
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": GW_KEY,
            "EDGE_ADMIN_KEY": ADMIN,
            "EDGE_AUTH_FAILURES": "2",
            "EDGE_AUTH_DELAY_MAX_S": "0.5",
        },
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def budgeted(sim: SimClient) -> Iterator[Proc]:
    """8 MiB bodies, a 16 MiB body budget: two bodies at a time."""
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": GW_KEY,
            "EDGE_ADMIN_KEY": ADMIN,
            "EDGE_MAX_BODY_BYTES": str(8 * MIB),
            "EDGE_MAX_BUFFERED_BYTES": str(16 * MIB),
        },
    )
    yield proc
    proc.stop()


def pid_of(gw: Proc) -> int:
    return int(httpx.get(gw.url + "/healthz").json()["pid"])


def test_keyless_bodies_cost_nothing_on_any_route(guarded: Proc) -> None:
    """Ten keyless 32 MiB - 1 bodies to a keyed route, an unknown route and a route without
    POST: each is refused from its head (401, 404, 405) and its body never buffered."""
    size = 32 * MIB - 1
    body = b"x" * size

    def attack() -> None:
        senders = []
        for i in range(10):
            path = ("/v1/chat/completions", "/no/such/route", "/healthz")[i % 3]
            senders.append(Sender(guarded.port, head(path, size, key=None) + body))
        try:
            statuses = [split(s.answer())[0] for s in senders]
        finally:
            for s in senders:
                s.close()
        assert statuses == [(401, 404, 405)[i % 3] for i in range(10)]

    grown = peak_growth_mb(pid_of(guarded), attack)
    assert grown < 40, f"the worker grew {grown:.1f} MB for ten keyless bodies"
    assert httpx.get(guarded.url + "/healthz").status_code == 200


@pytest.mark.parametrize(
    "path,shape", [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")]
)
def test_a_dense_json_body_is_refused_before_it_is_expanded(
    guarded: Proc, path: str, shape: str
) -> None:
    """An authenticated 32 MiB `{"model":"auto","messages":[{},{},...]}` (once +987 MB): a
    400 naming the limit, in the caller's dialect, with the worker's memory flat."""
    prefix = b'{"model":"auto","max_tokens":5,"messages":['
    n = (32 * MIB - len(prefix) - 2) // 3
    body = prefix + b"{}," * n + b"{}]}"
    status: list[int] = []
    error: list[dict[str, str]] = []

    def attack() -> None:
        s = Sender(guarded.port, head(path, len(body)) + body)
        try:
            st, _, payload = split(s.answer())
        finally:
            s.close()
        status.append(st)
        error.append(payload["error"])
        if shape == "anthropic":
            assert payload["type"] == "error"

    grown = peak_growth_mb(pid_of(guarded), attack)
    assert grown < 40, f"the worker grew {grown:.1f} MB for a {len(body) // MIB} MiB body"
    assert status == [400]
    assert "EDGE_MAX_JSON_ITEMS" in error[0]["message"]
    assert error[0]["type"] == "invalid_request_error"
    ok = httpx.post(
        guarded.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {GW_KEY}"},
    )
    assert ok.status_code == 200


def test_too_deep_and_too_many_messages_are_400s_naming_the_limit(guarded: Proc) -> None:
    auth = {"authorization": f"Bearer {GW_KEY}", "content-type": "application/json"}
    deep = b'{"model":"auto","messages":[{"role":"user","content":"x"}],"metadata":' + (
        b"[" * 100 + b"]" * 100 + b"}"
    )
    r = httpx.post(guarded.url + "/v1/chat/completions", content=deep, headers=auth)
    assert r.status_code == 400 and "EDGE_MAX_JSON_DEPTH" in r.json()["error"]["message"]
    many = {
        "model": "auto",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}] * 10_001,
    }
    r = httpx.post(guarded.url + "/v1/messages", json=many, headers=auth)
    assert r.status_code == 400
    assert r.json()["type"] == "error" and "EDGE_MAX_MESSAGES" in r.json()["error"]["message"]


def test_keyed_bodies_wait_for_the_budget_and_honest_clients_are_served(budgeted: Proc) -> None:
    """Ten key-holding clients each send 8 MiB - 1 of an 8 MiB body and stop: two bodies are
    read (the 16 MiB budget), eight wait unread. A client that then sends a whole request
    waits its turn and is answered once a slot of the budget frees."""
    size = 8 * MIB
    partial = b"x" * (size - 1)
    senders: list[Sender] = []

    def attack() -> None:
        for _ in range(10):
            senders.append(Sender(budgeted.port, head("/v1/chat/completions", size) + partial))
        wait_for(
            lambda: (
                gauges(budgeted).get('edge_request_body_bytes{state="read"}') == 2 * (size - 1)
                and gauges(budgeted).get("edge_request_bodies_waiting") == 8
            ),
            "two bodies read and eight waiting",
        )

    try:
        grown = peak_growth_mb(pid_of(budgeted), attack)
        assert grown < 45, f"the worker grew {grown:.1f} MB for ten 8 MiB bodies"
        body = (
            b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Repeat after me: ok"}]}'
        )
        honest = Sender(budgeted.port, head("/v1/chat/completions", len(body)) + body)
        wait_for(
            lambda: gauges(budgeted).get("edge_request_bodies_waiting") == 9, "the honest waiter"
        )
        for s in senders:  # the attackers give up; the honest client's turn comes
            s.close()
        resp = honest.answer()
        honest.close()
        assert resp.startswith(b"HTTP/1.1 200 ") and b'"content":"ok"' in resp
    finally:
        for s in senders:
            s.close()
    wait_for(
        lambda: gauges(budgeted).get('edge_request_body_bytes{state="reserved"}') == 0,
        "the budget to empty",
    )


def test_a_chunked_body_over_the_budget_is_a_503_with_retry_after(budgeted: Proc) -> None:
    size = 8 * MIB
    holders = [
        Sender(budgeted.port, head("/v1/chat/completions", size) + b"x" * (size - 1))
        for _ in range(2)
    ]
    try:
        wait_for(
            lambda: gauges(budgeted).get('edge_request_body_bytes{state="reserved"}') == 2 * size,
            "the budget to be full",
        )
        chunk = b'{"model":"auto","messages":[]}'
        s = Sender(
            budgeted.port,
            head("/v1/messages", 0, chunked=True) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk),
        )
        status, headers, payload = split(s.answer())
        s.close()
        assert status == 503 and headers["retry-after"] == "1"
        assert payload["type"] == "error" and payload["error"]["type"] == "overloaded_error"
    finally:
        for h in holders:
            h.close()


def test_repeated_failed_auth_from_one_peer_is_slowed_and_counted(guarded: Proc) -> None:
    """After two failures (this gateway's setting) each failed key waits, doubling from
    0.25 s up to 0.5 s; others on the worker are answered meanwhile; counted per route."""
    before = gauges(guarded)
    route = 'edge_auth_failures_total{credential="gateway",route="/v1/chat/completions"}'
    admin = 'edge_auth_failures_total{credential="admin",route="/admin/spend"}'
    bad = {"authorization": "Bearer guess"}
    took = []
    for _ in range(4):
        t0 = time.monotonic()
        r = httpx.post(guarded.url + "/v1/chat/completions", json={}, headers=bad)
        took.append(time.monotonic() - t0)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert took[-1] >= 0.45  # the cap (0.5 s): the fourth failure of the window at least

    done = threading.Event()

    def slow_guess() -> None:
        httpx.get(guarded.url + "/admin/spend", headers=bad, timeout=10)
        done.set()

    thread = threading.Thread(target=slow_guess)
    thread.start()
    try:
        # while that answer waits, the worker serves others
        assert httpx.get(guarded.url + "/healthz").status_code == 200
    finally:
        thread.join(10)
    assert done.is_set()
    after = gauges(guarded)
    assert after[route] - before.get(route, 0) == 4
    assert after[admin] - before.get(admin, 0) == 1
    delayed = 'edge_auth_delayed_total{route="/v1/chat/completions"}'
    assert after[delayed] - before.get(delayed, 0) >= 2


def test_an_error_from_the_head_is_answered_on_a_reused_connection(guarded: Proc) -> None:
    """A keep-alive connection that already had an answer still gets the 401 (or 413) its
    next request earns from its head, not a silent close."""
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first = b""
        while not _complete(first):
            first += s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        s.sendall(head("/v1/chat/completions", 10, key=None))
        second = b""
        while chunk := s.recv(65536):
            second += chunk
    assert second.startswith(b"HTTP/1.1 401 ")
