"""Real processes for end-to-end tests: start a command, learn its port, stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        if self.pump is not None:
            self.pump.join(timeout)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    @property
    def output(self) -> str:
        return "".join(self.lines)


def start(
    args: list[str],
    env: dict[str, str] | None = None,
    ready_timeout: float = 20.0,
    ready: str = r"http://[\d.]+:(\d+)",
) -> Proc:
    """Run ``python -m edge.cli ARGS``; the first output line matching ``ready`` gives the port."""
    popen = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found: list[int] = []
    pattern = re.compile(ready)
    is_ready = threading.Event()

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            lines.append(line)
            if not found:
                m = pattern.search(line)
                if m:
                    found.append(int(m.group(1)))
                    is_ready.set()
        is_ready.set()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    if not is_ready.wait(ready_timeout) or not found:
        popen.kill()
        popen.wait()
        thread.join(5)
        if popen.stdout is not None:
            popen.stdout.close()
        raise RuntimeError(f"{' '.join(args)} did not start:\n{''.join(lines)}")
    return Proc(popen, found[0], lines, thread)


class SimClient:
    """Control and observation of a running simulator over HTTP."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.http = httpx.Client(base_url=proc.url, timeout=10.0)

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def openai_base(self) -> str:
        return self.proc.url + "/v1"

    def reset(self) -> None:
        self.http.post("/sim/reset").raise_for_status()

    def outage(self, model: str, seconds: float, status: int = 503) -> None:
        r = self.http.post(
            "/sim/outage", params={"model": model, "seconds": seconds, "status": status}
        )
        r.raise_for_status()

    def stats(self, model: str | None = None, since: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"model": model} if model else {}
        if since:
            params["since"] = since
        r = self.http.get("/sim/stats", params=params)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def attempts(self, model: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.stats(model, since)["attempts"]
        return result

    def seq(self) -> int:
        """The number of attempts seen so far (pass it as ``since`` to see only newer ones)."""
        total: int = self.stats()["total"]
        return total


SERVE_READY = r"listening on http://[\d.]+:(\d+)"


def start_gateway(
    sim_url: str, policy: str, extra_env: dict[str, str] | None = None, workers: int = 1
) -> Proc:
    """``llm-edge serve`` on a free port, its providers pointed at the simulator ``sim_url``."""
    env = {
        "EDGE_SIMULATE": "off",
        "OPENAI_API_KEY": "sk-upstream-openai",
        "ANTHROPIC_API_KEY": "sk-upstream-anthropic",
        "EDGE_OPENAI_BASE_URL": sim_url + "/v1",
        "EDGE_ANTHROPIC_BASE_URL": sim_url,
        "EDGE_POLICY": policy,
        "EDGE_WORKERS": str(workers),
        "EDGE_PORT": "0",
        "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="edge-state-"),
        "EDGE_GOLD_EVERY": "0",  # no scheduled gold runs unless a test asks for them
        **(extra_env or {}),
    }
    return start(["serve"], env=env, ready=SERVE_READY)


def metric(gw: Proc, name: str, admin: str = "", **labels: str) -> float:
    """The sum of a Prometheus series of a running gateway over the samples matching ``labels``
    (``admin``: its admin key, when it has one)."""
    headers = {"authorization": f"Bearer {admin}"} if admin else {}
    text = httpx.get(gw.url + "/metrics", headers=headers).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
