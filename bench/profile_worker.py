"""Where one gateway worker spends its time under non-streaming load.

Starts the simulator (core 1) and a one-worker gateway (core 0) as
bench/overhead.py does, drives 32 requests in flight with wrk, samples the
worker with py-spy for a few seconds and prints the functions with the
largest inclusive and self shares. py-spy is installed into the venv on
first use.

    .venv/bin/python bench/profile_worker.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.overhead import WrkResult, start_pair, worker_pid, wrk  # noqa: E402


def frame_name(frame: str) -> str:
    m = re.match(r"(.*?) \((.*?):(\d+)\)", frame)
    return f"{m.group(1)} [{Path(m.group(2)).name}]" if m else frame


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--raw", help="keep py-spy's collapsed stacks in this file (to compare runs)")
    args = ap.parse_args()
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    sim, gw = start_pair()
    raw = Path(args.raw) if args.raw else Path(tempfile.mkstemp(suffix=".txt")[1])
    try:
        pid = worker_pid(gw.port)
        result: list[WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                wrk(f"http://127.0.0.1:{gw.port}", 32, args.seconds + 3, watch_pid=pid)
            )
        )
        load.start()
        subprocess.run(
            [
                str(py_spy),
                "record",
                "-p",
                str(pid),
                "-d",
                str(args.seconds),
                "-r",
                "500",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
        load.join()
    finally:
        gw.stop()
        sim.stop()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += n
        own[frame_name(frames[-1])] += n
    if result:  # with py-spy attached: compare runs by share, not by rate
        r = result[0]
        print(f"{r.rps:,.0f} req/s at {r.cpu:.0%} of a core while sampled")
    print(f"{total} samples\n-- inclusive")
    for name, n in inclusive.most_common(40):
        print(f"{n / total:6.1%} {name}")
    print("-- self")
    for name, n in own.most_common(20):
        print(f"{n / total:6.1%} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
