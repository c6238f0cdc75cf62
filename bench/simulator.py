"""Throughput of the simulated providers: it must never be a benchmark's bottleneck.

Runs ``llm-edge simulate --profile instant`` pinned to core 0 and drives it
with wrk pinned to core 1, for each request shape below, then rewrites the
simulator section of bench/RESULTS.md. Target: >= 5,000 non-streaming req/s
on one core.

    .venv/bin/python bench/simulator.py [--duration 10] [--connections 32] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import start  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
TARGET_RPS = 5000.0

PROMPT = "Summarise the incident report in three short bullet points for the on-call channel."
SHAPES = {
    "OpenAI non-streaming": (
        "/v1/chat/completions",
        {"authorization": "Bearer sk-bench"},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "Anthropic non-streaming": (
        "/v1/messages",
        {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"},
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": PROMPT}],
        },
    ),
    "OpenAI streaming (24 chunks)": (
        "/v1/chat/completions",
        {"authorization": "Bearer sk-bench"},
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "Anthropic streaming (24 chunks)": (
        "/v1/messages",
        {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"},
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        },
    ),
}


def write_section(marker: str, title: str, block: str) -> None:
    """Replace the ``<!-- marker:begin -->`` .. ``end`` section of RESULTS.md (or append it)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    body = f"{begin}\n{block}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _m: body, text, flags=re.S)
    else:
        text += f"\n## {title}\n\n{body}\n"
    RESULTS.write_text(text)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (Debian package)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench: wrk is required (apt-get install wrk)")
    return found


def pin(core: int) -> list[str]:
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and (os.cpu_count() or 1) >= 2
        else []
    )


def wrk_script(path: str, headers: dict[str, str], body: dict[str, object]) -> str:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(json.dumps(body))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def run_wrk(
    wrk: str, url: str, script: str, duration: int, connections: int
) -> tuple[float, str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                *pin(1),
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"bench: {errors.group(1)} error responses:\n{out}")
    return rps, p50.group(1) if p50 else "?", p99.group(1) if p99 else "?"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    wrk = ensure_wrk()
    env = {"PYTHONPATH": str(ROOT)}
    proc = start(["simulate", "--port", "0", "--profile", "instant"], env=env)
    # re-pin the running simulator to core 0 (start() cannot prefix taskset to `python -m`)
    if pin(0):
        subprocess.run(
            ["taskset", "-pc", "0", str(proc.popen.pid)], check=True, capture_output=True
        )
    rows = []
    try:
        time.sleep(0.2)
        for name, (path, headers, body) in SHAPES.items():
            rps, p50, p99 = run_wrk(
                wrk,
                proc.url + path,
                wrk_script(path, headers, body),
                args.duration,
                args.connections,
            )
            rows.append((name, rps, p50, p99))
            print(f"{name:34s} {rps:10.0f} req/s  p50 {p50:>8s}  p99 {p99:>8s}", flush=True)
    finally:
        proc.stop()
    ok = rows[0][1] >= TARGET_RPS and rows[1][1] >= TARGET_RPS
    table = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"simulator pinned to core 0, wrk (1 thread, {args.connections} connections, {args.duration} s) to core 1.",
        "Command: `.venv/bin/python bench/simulator.py` (part of `make bench`).",
        "",
        "| request shape | req/s (one core) | p50 | p99 |",
        "|---|---:|---:|---:|",
        *[f"| {n} | {r:,.0f} | {a} | {b} |" for n, r, a, b in rows],
        "",
        f"Target >= {TARGET_RPS:,.0f} non-streaming req/s on one core: {'met' if ok else 'MISSED'}.",
    ]
    if not args.no_write:
        write_section("simulator", "Simulated providers: throughput", "\n".join(table))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
