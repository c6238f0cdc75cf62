"""What the dialect core costs per streamed event, on a simulated provider's real bytes.

Starts the simulator (bench profile), takes one streamed answer of the ``bench``
model (8 tokens: 12 SSE events, as ``bench/overhead.py``'s load gets), and times
the gateway's stream state on it in-process: a text event relayed to a streaming
client and folded for a non-streaming one, whole answers both ways, and the
request check of the same chat body. Best of 5 batches.

    .venv/bin/python bench/stream_events.py
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench.overhead import PROMPT, launch  # noqa: E402
from edge.dialects.common import ChatInfo  # noqa: E402
from edge.dialects.core import stream_for  # noqa: E402
from edge.dialects.openai import DIALECT  # noqa: E402


def best_us(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> int:
    sim = launch(
        ["simulate", "--port", "0", "--profile", str(ROOT / "bench/profile.toml")],
        {},
        1,
        r"http://[\d.]+:(\d+)",
    )
    body = {"model": "bench", "messages": PROMPT, "stream": True}
    try:
        raw = httpx.post(
            f"http://127.0.0.1:{sim.port}/v1/chat/completions",
            json={**body, "stream_options": {"include_usage": True}},
            headers={"authorization": "Bearer sk-bench"},
        ).content
    finally:
        sim.stop()
    events = [(b"", b[6:]) for b in raw.split(b"\n\n") if b.startswith(b"data: ")]
    text = events[2]

    def answer(stream: bool) -> None:
        s = stream_for(DIALECT, DIALECT, ChatInfo("bench", stream, True))
        for name, data in events:
            s.feed(name, data)
        if not stream:
            s.final_body()

    rows = []
    for stream, how in ((True, "relayed to a streaming client"), (False, "folded")):
        s = stream_for(DIALECT, DIALECT, ChatInfo("bench", stream, True))
        s.feed(*events[0])
        s.feed(*events[1])
        rows.append((f"text event, {how}", best_us(lambda s=s: s.feed(*text), 100_000)))
        rows.append(
            (
                f"whole {len(events)}-event answer, {how}",
                best_us(lambda st=stream: answer(st), 2000),
            )
        )
    parsed = orjson.loads(orjson.dumps({"model": "bench", "messages": PROMPT}))
    rows.append(
        ("check_request, the chat body", best_us(lambda: DIALECT.check_request(parsed), 100_000))
    )
    for what, us in rows:
        print(f"{what:48} {us:7.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
