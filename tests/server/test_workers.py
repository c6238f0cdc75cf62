"""Process model: several workers on one port, crash restart, graceful drain on SIGTERM, start-up errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest

from tests.procs import ROOT, SERVE_READY, SimClient, start, start_gateway
from tests.server.conftest import GW_KEY, POLICY
from tests.server.test_errors import AUTH


def pids_seen(url: str, tries: int = 60) -> set[int]:
    seen = set()
    for _ in range(tries):
        with httpx.Client() as c:  # a new connection each time, so SO_REUSEPORT spreads them
            seen.add(c.get(url + "/healthz").json()["pid"])
    return seen


def test_two_workers_share_the_port_and_a_crashed_one_is_replaced(sim: SimClient) -> None:
    proc = start_gateway(sim.url, POLICY, {"EDGE_KEYS": GW_KEY}, workers=2)
    try:
        pids = pids_seen(proc.url)
        assert len(pids) == 2
        for _ in range(20):
            r = httpx.post(
                proc.url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                headers=AUTH,
            )
            assert r.status_code == 200
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        now: set[int] = set()
        while time.monotonic() < deadline:
            try:
                now = pids_seen(proc.url, 20)
            except httpx.HTTPError:
                continue
            if len(now) == 2 and victim not in now:
                break
        assert len(now) == 2 and victim not in now, now
        assert "worker exited; restarting" in proc.output
    finally:
        assert proc.stop() == 0


def test_sigterm_drains_an_in_flight_stream(sim: SimClient) -> None:
    proc = start_gateway(sim.url, POLICY, {"EDGE_KEYS": GW_KEY, "EDGE_DRAIN_S": "20"})
    body = {
        "model": "slow-an",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    events: list[str] = []
    started = threading.Event()

    def consume() -> None:
        with httpx.stream(
            "POST", proc.url + "/v1/messages", json=body, headers=AUTH, timeout=30
        ) as r:
            for line in r.iter_lines():
                if line.startswith("event:"):
                    events.append(line[6:].strip())
                    if events.count("content_block_delta") == 3:
                        started.set()

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(10)
    proc.popen.send_signal(signal.SIGTERM)
    # new connections are refused while the stream drains
    deadline = time.monotonic() + 5
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            httpx.get(proc.url + "/healthz", timeout=1)
        except httpx.HTTPError:
            refused = True
    t.join(30)
    assert refused
    assert events[-1] == "message_stop" and events.count("content_block_delta") == 40
    assert proc.popen.wait(20) == 0
    proc.stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGE_PORT": "notaport"}, "EDGE_PORT"),
        ({"EDGE_WORKERS": "0"}, "EDGE_WORKERS"),
        ({"EDGE_POLICY": "/nonexistent/policy.toml"}, "policy /nonexistent/policy.toml"),
        ({"EDGE_HOST": "0.0.0.0"}, "no gateway keys"),
        ({"EDGE_L1_SOFT_TIMEOUT_MS": "soon"}, "EDGE_L1_SOFT_TIMEOUT_MS"),
        ({"EDGE_SIMULATE": "maybe"}, "EDGE_SIMULATE"),
        ({"EDGE_STATE_DIR": "/proc/no-state-here"}, "EDGE_STATE_DIR /proc/no-state-here"),
    ],
)
def test_bad_configuration_fails_at_start_naming_the_key(env: dict[str, str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "EDGE_SIMULATE": "auto", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert message in r.stderr


def test_embedded_simulator_when_no_provider_key() -> None:
    no_keys = {
        "EDGE_SIMULATE": "auto",
        "EDGE_SIM_PROFILE": "instant",
        "EDGE_PORT": "0",
        "OPENAI_API_KEY": "",
        "ANTHROPIC_API_KEY": "",
        "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="edge-state-"),
    }
    proc = start(["serve"], env=no_keys, ready=SERVE_READY)
    try:
        assert "SIMULATED" in proc.lines[0], proc.lines[0]
        r = httpx.post(
            proc.url + "/v1/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Repeat after me: offline"}],
            },
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "offline"
        assert httpx.get(proc.url + "/readyz").json()["simulated"] == ["anthropic", "openai"]
    finally:
        assert proc.stop() == 0
