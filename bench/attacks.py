"""Hostile clients against one gateway worker: its peak memory under each attack.

Each attack runs against a fresh-enough worker (one gateway, one worker,
simulated providers in-process, keys and an admin key set, shipped limits):
the figure is the worker's peak RSS during the attack (VmHWM, reset through
/proc/PID/clear_refs just before) minus its RSS before, and its RSS a second
after the attackers left. Target: every attack within +20 MB.

    .venv/bin/python bench/attacks.py [--no-write]

Writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulator import write_section  # noqa: E402

KEY, ADMIN = "sk-bench-attacks", "sk-bench-admin"
MIB = 1024 * 1024
TARGET_MB = 20.0


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


class Sender:
    """One connection sending ``data`` from a thread; reading is up to the caller."""

    def __init__(self, port: int, data: bytes, rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._send, args=(data,), daemon=True)
        self.thread.start()

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(data)

    def status(self, timeout: float = 30.0) -> int:
        self.sock.settimeout(timeout)
        got = b""
        while b"\r\n" not in got:
            chunk = self.sock.recv(4096)
            if not chunk:
                return 0
            got += chunk
        return int(got.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


def post_head(path: str, length: int, key: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: x", "content-type: application/json"]
    if key:
        lines.append(f"authorization: Bearer {key}")
    lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def pipelined_metrics(port: int) -> str:
    one = f"GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\n\r\n".encode()
    s = Sender(port, one * 1000, rcvbuf=4096)
    time.sleep(3.0)  # the gateway answers until the socket buffers are full, then waits
    s.close()
    return "1 connection, 1,000 pipelined `GET /metrics` (admin key), nothing read, held 3 s"


def non_reading(port: int) -> str:
    one = b"GET /dashboard HTTP/1.1\r\nhost: x\r\n\r\n"
    senders = [Sender(port, one * 1000, rcvbuf=4096) for _ in range(20)]
    time.sleep(3.0)
    for s in senders:
        s.close()
    return (
        "20 connections, each 1,000 pipelined `GET /dashboard` (8 KB each), nothing read, held 3 s"
    )


def keyless_bodies(port: int) -> str:
    size = 32 * MIB - 1
    body = b"x" * size
    paths = ["/v1/chat/completions", "/v1/messages", "/no/such/route", "/healthz", "/admin/spend"]
    senders = [Sender(port, post_head(paths[i % 5], size, None) + body) for i in range(10)]
    statuses = sorted({s.status() for s in senders})
    for s in senders:
        s.close()
    return f"10 keyless connections, 32 MiB - 1 bodies to keyed, unknown and GET routes (answers {statuses})"


def dense_json(port: int) -> str:
    prefix = b'{"model":"auto","messages":['
    body = prefix + b"{}," * ((32 * MIB - len(prefix) - 4) // 3) + b"{}]}"
    s = Sender(port, post_head("/v1/chat/completions", len(body), KEY) + body)
    status = s.status()
    s.close()
    return f'authenticated {len(body) / MIB:.0f} MiB `{{"model":"auto","messages":[{{}},{{}},...]}}` (answer {status})'


def keyed_bodies(port: int) -> str:
    size = 32 * MIB
    partial = b"x" * (size - 1)
    senders = [
        Sender(port, post_head("/v1/chat/completions", size, KEY) + partial) for _ in range(10)
    ]
    time.sleep(3.0)
    for s in senders:
        s.close()
    return (
        "10 connections with a valid key, each 32 MiB - 1 of a 32 MiB body, held 3 s "
        "(bounded by EDGE_MAX_BUFFERED_BYTES, 64 MiB: two bodies read, eight wait unread)"
    )


ATTACKS: list[tuple[str, Callable[[int], str]]] = [
    ("pipelined /metrics x1000, unread", pipelined_metrics),
    ("20 non-reading connections", non_reading),
    ("10 keyless 32 MiB bodies", keyless_bodies),
    ("authenticated 32 MiB `[{},...]`", dense_json),
    ("10 keyed 32 MiB bodies (budget)", keyed_bodies),
]


def start_gateway() -> tuple[subprocess.Popen[bytes], int, Path]:
    log = Path(tempfile.mkstemp(prefix="bench-attacks-", suffix=".log")[1])
    env = {
        **os.environ,
        "EDGE_SIMULATE": "on",
        "EDGE_KEYS": KEY,
        "EDGE_ADMIN_KEY": ADMIN,
        "EDGE_PORT": "0",
        "EDGE_WORKERS": "1",
        "EDGE_ACCESS_LOG": "off",
        "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="bench-attacks-state-"),
    }
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "serve"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening on http://[\d.]+:(\d+)", log.read_text(errors="replace"))
        if m:
            return popen, int(m.group(1)), log
        if popen.poll() is not None:
            break
        time.sleep(0.05)
    popen.kill()
    sys.exit(f"bench: the gateway did not start:\n{log.read_text()}")


def warm(url: str) -> None:
    """Every path the attacks touch, once, so their first-use costs are not counted."""
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(20):
            c.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
                headers=auth,
            )
            c.post(
                "/v1/chat/completions", json={"model": "auto", "messages": [{}] * 10}, headers=auth
            )
            c.get("/metrics", headers={"authorization": f"Bearer {ADMIN}"})
            c.get("/dashboard")
        c.post("/v1/chat/completions", content=b"{}", headers={"content-type": "application/json"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = ap.parse_args()
    popen, port, log = start_gateway()
    rows = []
    try:
        url = f"http://127.0.0.1:{port}"
        pid = int(httpx.get(url + "/healthz").json()["pid"])
        warm(url)
        for name, attack in ATTACKS:
            before = status_kb(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            what = attack(port)
            peak = (status_kb(pid, "VmHWM") - before) / 1024
            time.sleep(1.0)
            after = (status_kb(pid, "VmRSS") - before) / 1024
            alive = httpx.get(url + "/healthz", timeout=10).status_code == 200
            rows.append((name, what, before / 1024, peak, after, alive))
            print(f"{name:40s} peak {peak:+7.1f} MB  after {after:+7.1f} MB  serving={alive}")
    finally:
        popen.terminate()
        popen.wait(30)
        log.unlink(missing_ok=True)
    lines = [
        f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores: one "
        "gateway worker (simulated providers in-process, keys and an admin key set, shipped "
        "limits). Peak: the worker's VmHWM during the attack (reset through /proc/PID/clear_refs "
        "just before) minus its RSS before; after: its RSS a second after the attackers left.",
        "Command: `.venv/bin/python bench/attacks.py` (part of `make bench`).",
        "",
        "| attack | what was sent | RSS before | peak | after | still serving | within +20 MB |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, what, before_mb, peak, after, alive in rows:
        lines.append(
            f"| {name} | {what} | {before_mb:.1f} MB | {peak:+.1f} MB | {after:+.1f} MB | "
            f"{'yes' if alive else 'NO'} | {'yes' if peak <= TARGET_MB else 'no'} |"
        )
    lines += [
        "",
        "The last row is not an attack without a key: it is the body budget at work. Bodies "
        "that will be used are held in full, so a key holder sending the largest bodies costs "
        "the worker up to `EDGE_MAX_BUFFERED_BYTES` (64 MiB by default); a lower budget lowers "
        "it (it must still hold one `EDGE_MAX_BODY_BYTES` body). The keyless rows cost nothing "
        "because their heads are refused (401/404/405) before a body byte is read, and the "
        "dense JSON body is refused after its first few hundred kilobytes.",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_section(
            "attacks", "Hostile clients: worker memory per attack (bench/attacks.py)", block
        )


if __name__ == "__main__":
    main()
