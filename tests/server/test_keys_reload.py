"""EDGE_KEYS_FILE of sha256 digests, reloaded on SIGHUP by every worker without a restart."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.procs import Proc, SimClient, start_gateway
from tests.server.conftest import POLICY

KEY_A, KEY_B = "sk-reload-a", "sk-reload-b=="  # B ends in base64 padding


def digest_entry(key: str, suffix: str = "") -> str:
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}{suffix}\n"


def write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def status(gw: Proc, key: str) -> int:
    # a fresh connection each time, so SO_REUSEPORT spreads them over both workers
    return httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code


def wait_for_lines(gw: Proc, text: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(text in line for line in gw.lines) < count:
        assert time.monotonic() < deadline, f"fewer than {count} lines with {text!r}:\n{gw.output}"
        time.sleep(0.05)


@pytest.fixture
def keys_file() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="edge-keys-")
    path = os.path.join(folder, "keys")
    write(
        path,
        "# digests only: the plain keys are not on this host\n" + digest_entry(KEY_A, "=L1@acme"),
    )
    yield path


def test_sighup_swaps_the_keys_in_every_worker_and_a_bad_file_keeps_them(
    sim: SimClient, keys_file: str
) -> None:
    gw = start_gateway(sim.url, POLICY, {"EDGE_KEYS_FILE": keys_file}, workers=2)
    try:
        assert all(status(gw, KEY_A) == 200 for _ in range(10))
        assert status(gw, KEY_B) == 401

        write(keys_file, digest_entry(KEY_B, "=L2@beta"))
        gw.popen.send_signal(signal.SIGHUP)
        wait_for_lines(gw, "gateway keys reloaded", 3)  # the supervisor and both workers
        assert all(status(gw, KEY_A) == 401 for _ in range(10))
        assert all(status(gw, KEY_B) == 200 for _ in range(10))

        write(keys_file, "sha256:not-hex\n")
        gw.popen.send_signal(signal.SIGHUP)
        wait_for_lines(gw, "gateway keys NOT reloaded", 3)
        assert all(status(gw, KEY_B) == 200 for _ in range(10))

        write(keys_file, "# nobody\n")  # an empty set would open the gateway: refused too
        gw.popen.send_signal(signal.SIGHUP)
        wait_for_lines(gw, "gateway keys NOT reloaded", 6)
        assert all(status(gw, KEY_B) == 200 for _ in range(10))
        assert status(gw, KEY_A) == 401
        assert gw.popen.poll() is None
    finally:
        gw.stop()
