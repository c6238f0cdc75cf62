"""Jobs beyond one process: SIGKILL mid-job then a restart finishes it once; the webhook."""

from __future__ import annotations

import http.server
import json
import os
import signal
import tempfile
import threading
import time

import httpx

from tests.procs import ROOT, Proc, SimClient, start_gateway

POLICY = os.path.join(ROOT, "tests/server/cost_policy.toml")
KEY = "sk-cost"


def gateway(sim: SimClient, state_dir: str) -> tuple[Proc, int]:
    proc = start_gateway(
        sim.url,
        POLICY,
        {
            "EDGE_KEYS": KEY,
            "EDGE_STATE_DIR": state_dir,
            "EDGE_JOBS_POLL_S": "0.1",
            "EDGE_JOBS_LEASE_S": "1.5",
        },
    )
    worker = int(httpx.get(proc.url + "/healthz").json()["pid"])
    return proc, worker


def test_sigkill_while_a_job_runs_then_restart_finishes_it_exactly_once(sim: SimClient) -> None:
    state_dir = tempfile.mkdtemp(prefix="edge-kill-")
    since = sim.seq()
    proc, worker = gateway(sim, state_dir)
    auth = {"authorization": f"Bearer {KEY}"}
    try:
        r = httpx.post(
            proc.url + "/v1/chat/completions",
            json={"model": "slowjob", "messages": [{"role": "user", "content": "hi"}]},
            headers={**auth, "x-edge-tier": "B", "prefer": "respond-async"},
        )
        assert r.status_code == 202
        job_id = r.headers["x-edge-job-id"]
        # wait until the job is running upstream (a 2 s answer), then kill everything at once
        deadline = time.monotonic() + 10
        while not sim.attempts("slow-stream", since=since) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.attempts("slow-stream", since=since), "the job never started"
    finally:
        os.kill(worker, signal.SIGKILL)
        os.kill(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
        proc.stop()
    first = sim.attempts("slow-stream", since=since)
    assert len(first) == 1 and not first[0]["completed"]

    proc, _ = gateway(sim, state_dir)  # the same state: the job's lease expires, it is taken over
    try:
        deadline = time.monotonic() + 20
        while True:
            r = httpx.get(f"{proc.url}/v1/jobs/{job_id}", headers=auth)
            if r.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 200 and r.headers["x-edge-job-status"] == "done"
        assert r.json()["choices"][0]["finish_reason"] == "stop"
        attempts = sim.attempts("slow-stream", since=since)
        completed = [a for a in attempts if a["completed"]]
        assert len(attempts) == 2 and len(completed) == 1  # run again once, completed once
        assert attempts[0]["disconnected"]  # the killed worker's call died with it
    finally:
        proc.stop()


def test_the_policys_webhook_hears_of_a_finished_job(sim: SimClient) -> None:
    heard: list[dict[str, str]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            heard.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(POLICY) as f:
        text = f.read().replace(
            "http://127.0.0.1:9/hook", f"http://127.0.0.1:{server.server_port}/hook"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as policy:
        policy.write(text)
    proc = start_gateway(
        sim.url,
        policy.name,
        {
            "EDGE_KEYS": KEY,
            "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="edge-hook-"),
            "EDGE_JOBS_POLL_S": "0.1",
        },
    )
    try:
        r = httpx.post(
            proc.url + "/v1/chat/completions",
            json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
            headers={
                "authorization": f"Bearer {KEY}",
                "x-edge-tier": "B",
                "prefer": "respond-async",
            },
        )
        assert r.status_code == 202
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heard == [{"id": r.headers["x-edge-job-id"], "status": "done"}]
    finally:
        proc.stop()
        server.shutdown()
        server.server_close()
        os.unlink(policy.name)
