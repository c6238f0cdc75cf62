"""Tiers under pressure: offered load at 3x what the providers' quotas allow.

The simulated providers run ``bench/pressure_profile.toml``: two models, one
per provider, each with a quota of 15 requests a second (30 in all), answers
in about half a second. The gateway (``bench/pressure_policy.toml``, one
worker) may use both for every tier. An open-loop client sends 90
non-streaming requests a second (3x the quotas), 20% L0 / 40% L1 / 40% L2
(``model: auto`` with ``x-edge-tier``), and records status and latency.

Runs:

- tiers: admission by priority, L1 and L2 leaving 60% / 80% of each quota
  to the tiers above them, quota awareness on;
- tiers alike (FIFO): no priority, no reserves, no per-tier caps; quota
  awareness on;
- tiers, quota awareness off: the upstream 429s the gateway would spend.

Target: L0's P95 within its target (3 s) with >= 99% answered, and L2 shed
(429) before L1 and L0.

    .venv/bin/python bench/pressure.py [--quick] [--rate N] [--seconds S] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.overhead import KEY, Service, launch  # noqa: E402
from bench.simulator import write_section  # noqa: E402

TIERS = ("L0", "L1", "L1", "L2", "L2")  # 20% / 40% / 40%, interleaved
P95_TARGET_S = 3.0
QUOTA_PER_S = 30.0
PROMPT = [{"role": "user", "content": "Classify this support ticket in one word: refund."}]

FIFO = {
    "EDGE_ADMISSION_PRIORITY": "off",
    "EDGE_L1_QUOTA_RESERVE": "0",
    "EDGE_L2_QUOTA_RESERVE": "0",
    "EDGE_L1_MAX_IN_FLIGHT": "0",
    "EDGE_L2_MAX_IN_FLIGHT": "0",
    "EDGE_L1_MAX_QUEUE_MS": "2000",
    "EDGE_L2_MAX_QUEUE_MS": "2000",
}


@dataclass
class Sample:
    tier: str
    status: int
    latency: float


@dataclass
class Run:
    name: str
    samples: list[Sample] = field(default_factory=list)
    upstream: int = 0
    upstream_429: int = 0
    sheds: dict[str, float] = field(default_factory=dict)
    avoided: dict[str, float] = field(default_factory=dict)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(port: int, tier: str) -> Sample:
    body = json.dumps({"model": "auto", "messages": PROMPT}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n"
        f"x-edge-tier: {tier}\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        raw = await reader.read()  # to the end (connection: close)
    finally:
        writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
    return Sample(tier, status, time.monotonic() - t0)


async def load(port: int, rate: float, seconds: float) -> list[Sample]:
    tasks: list[asyncio.Task[Sample]] = []
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(port, TIERS[i % len(TIERS)])))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [
        r if isinstance(r, Sample) else Sample(TIERS[i % len(TIERS)], 0, float("nan"))
        for i, r in enumerate(results)
    ]


def scrape(port: int, family: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(family + "{"):
            tier = line.split('tier="', 1)[1].split('"', 1)[0] if 'tier="' in line else ""
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            key = f"{tier}/{value}" if tier else value
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def measure(sim: Service, name: str, env: dict[str, str], rate: float, seconds: float) -> Run:
    url = f"http://127.0.0.1:{sim.port}"
    httpx.post(url + "/sim/reset").raise_for_status()
    gateway = launch(
        ["serve"],
        {
            "EDGE_SIMULATE": "off",
            "EDGE_PORT": "0",
            "EDGE_WORKERS": "1",
            "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="edge-bench-state-"),
            "EDGE_POLICY": str(ROOT / "bench/pressure_policy.toml"),
            "EDGE_KEYS": f"{KEY}=L0",
            "EDGE_ACCESS_LOG": "off",
            "OPENAI_API_KEY": "sk-upstream",
            "ANTHROPIC_API_KEY": "sk-upstream",
            "EDGE_OPENAI_BASE_URL": url + "/v1",
            "EDGE_ANTHROPIC_BASE_URL": url,
            **env,
        },
        0,
        r"listening on http://[\d.]+:(\d+)",
    )
    try:
        print(f"bench: {name}: {rate:g} req/s for {seconds:g} s", flush=True)
        run = Run(name, asyncio.run(load(gateway.port, rate, seconds)))
        stats = httpx.get(url + "/sim/stats").json()
        run.upstream = int(stats["total"])
        run.upstream_429 = sum(m["outcomes"].get("quota", 0) for m in stats["by_model"].values())
        run.sheds = scrape(gateway.port, "edge_shed_total", "reason")
        run.avoided = scrape(gateway.port, "edge_quota_avoided_total", "action")
    finally:
        gateway.stop()
    return run


def rows(run: Run) -> list[str]:
    out = []
    for tier in ("L0", "L1", "L2"):
        mine = [s for s in run.samples if s.tier == tier]
        ok = [s.latency for s in mine if s.status == 200]
        shed = sum(s.status == 429 for s in mine)
        other = len(mine) - len(ok) - shed
        n = max(1, len(mine))
        reasons = ", ".join(
            f"{k.split('/', 1)[1]} {v:.0f}"
            for k, v in sorted(run.sheds.items())
            if k.startswith(tier + "/") and v
        )
        out.append(
            f"| {run.name} | {tier} | {len(mine)} | {len(ok) / n:.1%} | {shed / n:.1%} "
            f"| {other / n:.1%} | {pct(ok, 0.5):.2f} / {pct(ok, 0.95):.2f} / {pct(ok, 0.99):.2f} "
            f"| {reasons or '-'} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 s per run")
    ap.add_argument("--rate", type=float, default=3 * QUOTA_PER_S, help="requests per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    sim = launch(
        ["simulate", "--port", "0", "--profile", str(ROOT / "bench/pressure_profile.toml")],
        {},
        1,
        r"http://[\d.]+:(\d+)",
    )
    try:
        runs = [
            measure(sim, "tiers", {}, args.rate, seconds),
            measure(sim, "tiers alike (FIFO)", FIFO, args.rate, seconds),
            measure(
                sim,
                "tiers, quota-unaware",
                {"EDGE_ADMISSION_QUOTA_AWARE": "off"},
                args.rate,
                seconds,
            ),
        ]
    finally:
        sim.stop()
    lines = [
        f"Measured {datetime.date.today().isoformat()}, `.venv/bin/python bench/pressure.py"
        f"{' --quick' if args.quick else ''}`: {args.rate:g} non-streaming req/s for "
        f"{seconds:g} s per run ({args.rate / QUOTA_PER_S:.1f}x the providers' quotas of "
        f"{QUOTA_PER_S:g} req/s together), 20% L0 / 40% L1 / 40% L2, one gateway worker, "
        "simulator on `bench/pressure_profile.toml`, gateway on `bench/pressure_policy.toml`. "
        "A shared 2-core machine: figures move from run to run.",
        "",
        "| run | tier | requests | answered | shed (429) | other errors "
        "| latency of answers p50 / p95 / p99 (s) | gateway sheds by reason |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        lines += rows(run)
    lines.append("")
    for run in runs:
        avoided = ", ".join(f"{k} {v:.0f}" for k, v in sorted(run.avoided.items())) or "none"
        lines.append(
            f"- {run.name}: {run.upstream} upstream requests, {run.upstream_429} of them refused "
            f"by the provider's quota (429); calls the gateway did not make on quota: {avoided}."
        )
    tiers = runs[0]
    l0 = [s for s in tiers.samples if s.tier == "L0"]
    ok = [s.latency for s in l0 if s.status == 200]
    answered = len(ok) / max(1, len(l0))
    p95 = pct(ok, 0.95)
    lines.append(
        f"- Target (tiers run): L0 P95 {p95:.2f} s within {P95_TARGET_S:g} s "
        f"({'met' if p95 <= P95_TARGET_S else 'missed'}) with {answered:.1%} answered "
        f"(>= 99%: {'met' if answered >= 0.99 else 'missed'})."
    )
    lines.append(
        f"- Upstream 429s avoided by quota awareness: {runs[2].upstream_429} in the run without "
        f"it against {runs[0].upstream_429} with it."
    )
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_section("pressure", "Tiers under pressure (bench/pressure.py)", block)


if __name__ == "__main__":
    main()
