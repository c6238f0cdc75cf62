"""The SLO, proven under load: locust against the gateway on a realistic bad hour.

Starts the simulated providers on ``bench/slo_profile.toml`` (heavy-tail
time to first token, 3% stalls, 2% 429s and 500s) and a gateway on the
shipped policy pointed at them, then runs locust headless
(``bench/locustfile.py``: both dialects, streaming and not, L0/L1/L2) for a
fixed time; a third of the way in, gpt-4o-mini (L1's and L2's primary) goes
down for a quarter of the run. Prints a table per tier (P50/P95/P99 end to
end, TTFT, failure rate, cost per 1k requests, hedge rate) and exits non-zero
when any tier's P95 is 3 s or more or its failure rate is over 1%. Then runs
the same load with hedging and breakers off, to show the difference.

    .venv/bin/python bench/slo.py [--quick] [--seconds S] [--users N] [--no-compare] [--no-write]

``--quick`` (a minute in all, no comparison) is what ``make test`` runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.overhead import Service, launch  # noqa: E402
from bench.simulator import pin, write_section  # noqa: E402

KEY = "sk-bench"
ADMIN = "sk-bench-admin"
P95_TARGET_MS = 3000.0
MAX_FAILURE_RATE = 0.01
TIERS = ("L0", "L1", "L2")


@dataclass
class TierRow:
    tier: str
    requests: int
    failures: int
    p50: float
    p95: float
    p99: float
    ttft_p50: float
    ttft_p95: float
    cost_per_1k: float | None
    hedge_rate: float | None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def ok(self) -> bool:
        return (
            self.requests > 0 and self.p95 < P95_TARGET_MS and self.failure_rate <= MAX_FAILURE_RATE
        )


def gateway(sim: Service, extra: dict[str, str]) -> Service:
    url = f"http://127.0.0.1:{sim.port}"
    return launch(
        ["serve"],
        {
            "EDGE_SIMULATE": "off",
            "EDGE_PORT": "0",
            "EDGE_WORKERS": "1",
            "EDGE_KEYS": f"{KEY}=L0",  # the load covers every tier
            "EDGE_ADMIN_KEY": ADMIN,  # the stats are the admin's
            "EDGE_ACCESS_LOG": "off",
            "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="edge-slo-state-"),
            "OPENAI_API_KEY": "sk-upstream",
            "ANTHROPIC_API_KEY": "sk-upstream",
            "EDGE_OPENAI_BASE_URL": url + "/v1",
            "EDGE_ANTHROPIC_BASE_URL": url,
            **extra,
        },
        0,
        r"listening on http://[\d.]+:(\d+)",
    )


def run_load(sim: Service, extra: dict[str, str], seconds: int, users: int) -> list[TierRow]:
    sim_url = f"http://127.0.0.1:{sim.port}"
    httpx.post(sim_url + "/sim/reset").raise_for_status()
    gw = gateway(sim, extra)
    out = Path(tempfile.mkdtemp(prefix="edge-slo-")) / "run"
    outage = threading.Timer(
        seconds / 3,
        lambda: httpx.post(
            sim_url + "/sim/outage",
            params={"model": "gpt-4o-mini", "seconds": seconds / 4, "status": 503},
        ),
    )
    try:
        outage.start()
        done = subprocess.run(
            [
                *pin(1),
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "bench/locustfile.py"),
                "--headless",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{seconds}s",
                "--host",
                f"http://127.0.0.1:{gw.port}",
                "--csv",
                str(out),
                "--only-summary",
                "--stop-timeout",
                "15",
            ],
            cwd=ROOT,
            env={**os.environ, "EDGE_BENCH_KEY": KEY},
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        if not Path(f"{out}_stats.csv").exists():
            sys.exit(f"bench: locust wrote no stats:\n{done.stdout}\n{done.stderr}")
        stats = httpx.get(
            f"http://127.0.0.1:{gw.port}/v1/edge/stats",
            headers={"authorization": f"Bearer {ADMIN}"},
        ).json()
    finally:
        outage.cancel()
        gw.stop()
    rows: dict[tuple[str, str], dict[str, str]] = {}
    with open(f"{out}_stats.csv") as f:
        for r in csv.DictReader(f):
            rows[(r["Type"], r["Name"])] = r
    result = []
    for tier in TIERS:
        e2e = rows.get(("POST", tier))
        ttft = rows.get(("TTFT", tier)) or {}
        t = stats["tiers"].get(tier, {})
        if e2e is None:
            result.append(TierRow(tier, 0, 0, 0, 0, 0, 0, 0, None, None))
            continue
        result.append(
            TierRow(
                tier,
                int(e2e["Request Count"]),
                int(e2e["Failure Count"]),
                float(e2e["50%"]),
                float(e2e["95%"]),
                float(e2e["99%"]),
                float(ttft.get("50%") or 0),
                float(ttft.get("95%") or 0),
                t.get("cost_per_1k_usd"),
                t.get("hedge_rate"),
            )
        )
    return result


def table(title: str, rows: list[TierRow]) -> list[str]:
    lines = [
        f"**{title}**",
        "",
        "| tier | requests | failed | end to end p50 / p95 / p99 (ms) | TTFT p50 / p95 (ms) | cost per 1k | hedge rate | SLO |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cost = "-" if r.cost_per_1k is None else f"${r.cost_per_1k:.4f}"
        hedge = "-" if r.hedge_rate is None else f"{r.hedge_rate:.1%}"
        lines.append(
            f"| {r.tier} | {r.requests} | {r.failure_rate:.2%} | {r.p50:.0f} / {r.p95:.0f} / {r.p99:.0f} "
            f"| {r.ttft_p50:.0f} / {r.ttft_p95:.0f} | {cost} | {hedge} | {'met' if r.ok else 'MISSED'} |"
        )
    return [*lines, ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="45 s, no comparison (make test)")
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    seconds = 45 if args.quick else args.seconds
    compare = not (args.quick or args.no_compare)
    sim = launch(
        ["simulate", "--port", "0", "--profile", str(ROOT / "bench/slo_profile.toml")],
        {},
        1,
        r"http://[\d.]+:(\d+)",
    )
    try:
        print(f"bench: SLO run, {args.users} users for {seconds} s", flush=True)
        main_rows = run_load(sim, {}, seconds, args.users)
        off_rows = None
        if compare:
            print("bench: the same with hedging and breakers off", flush=True)
            off_rows = run_load(
                sim, {"EDGE_HEDGING": "off", "EDGE_BREAKERS": "off"}, seconds, args.users
            )
    finally:
        sim.stop()
    command = f".venv/bin/python bench/slo.py{' --quick' if args.quick else ''}"
    lines = [
        f"Measured {datetime.date.today().isoformat()}, `{command}`: {args.users} locust users "
        f"(both dialects, 60% streaming, L0/L1/L2 = 2/5/3) for {seconds} s against one gateway "
        "worker on the shipped policy; simulator on `bench/slo_profile.toml`, gpt-4o-mini down "
        "for a quarter of the run. SLO: P95 < 3 s and failures <= 1% per tier.",
        "",
        *table("hedging and breakers on (the defaults)", main_rows),
    ]
    if off_rows is not None:
        lines += table("hedging and breakers off", off_rows)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_section("slo", "SLO under load (bench/slo.py, locust)", block)
    missed = [r.tier for r in main_rows if not r.ok]
    if missed:
        print(f"bench: SLO MISSED for {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
