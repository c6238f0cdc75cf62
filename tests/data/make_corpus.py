"""Build tests/data/corpus.jsonl: the token-estimator corpus, by category.

Every text is either written for this project (corpus_texts.py), generated
here from a fixed seed, or taken from this repository's own sources and
docs. Run from the repository root: ``.venv/bin/python tests/data/make_corpus.py``.

The committed corpus.jsonl is the reference the estimator's weights were
fitted on. Sources change, so regenerating it gives a different corpus:
refit with bench/fit_tokens.py if you do.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.data.corpus_texts import CHINESE, ENGLISH, JAPANESE  # noqa: E402

OUT = ROOT / "tests/data/corpus.jsonl"
WORDS = [
    "latency",
    "budget",
    "provider",
    "request",
    "token",
    "stream",
    "model",
    "cost",
    "quality",
    "tier",
    "hedge",
    "breaker",
    "retry",
    "window",
    "fallback",
    "gateway",
    "answer",
    "client",
    "server",
    "policy",
    "metric",
    "sketch",
    "decision",
    "estimate",
    "price",
    "cache",
    "usage",
    "error",
    "timeout",
    "limit",
    "queue",
    "job",
    "rollout",
    "canary",
    "baseline",
]


def chunks(text: str, rng: random.Random, lo: int, hi: int) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        size = rng.randint(lo, hi)
        end = text.find("\n", pos + size)
        end = len(text) if end < 0 else end + 1
        out.append(text[pos:end])
        pos = end
    return [c for c in out if c.strip()]


def main() -> None:
    rng = random.Random(20261126)
    docs: list[tuple[str, str]] = []
    # English prose: hand-written paragraphs, alone and joined
    for p in ENGLISH:
        docs.append(("english", p))
    for _ in range(8):
        docs.append(("english", "\n\n".join(rng.sample(ENGLISH, 3))))
    # source code: this repository's Python and Cython
    code = "".join(p.read_text() for p in sorted((ROOT / "edge").rglob("*.py")))
    docs += [("code", c) for c in rng.sample(chunks(code, rng, 600, 3000), 16)]
    pyx = "".join(p.read_text() for p in sorted((ROOT / "hotpath").glob("*.pyx")))
    docs += [("code", c) for c in rng.sample(chunks(pyx, rng, 600, 2500), 4)]
    # markdown: this repository's docs
    md = "".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    docs += [("markdown", c) for c in rng.sample(chunks(md, rng, 500, 2500), 16)]

    # JSON: API-like payloads, compact and indented
    def value(depth: int) -> object:
        kind = rng.random()
        if depth > 2 or kind < 0.35:
            return rng.choice(
                [
                    rng.randint(0, 10 ** rng.randint(1, 7)),
                    round(rng.uniform(-1000, 1000), rng.randint(1, 4)),
                    rng.choice(WORDS),
                    True,
                    None,
                ]
            )
        if kind < 0.7:
            return {
                rng.choice(WORDS) + "_" + rng.choice(WORDS): value(depth + 1)
                for _ in range(rng.randint(1, 5))
            }
        return [value(depth + 1) for _ in range(rng.randint(1, 4))]

    for i in range(16):
        obj = {
            "id": f"req_{rng.getrandbits(64):016x}",
            "items": [value(0) for _ in range(rng.randint(3, 12))],
        }
        docs.append(("json", json.dumps(obj, indent=2 if i % 2 else None, ensure_ascii=False)))
    # numbers: tables, ids, prices, timestamps
    for _ in range(12):
        rows = [
            ",".join(
                str(
                    rng.choice(
                        [
                            rng.randint(0, 99999),
                            round(rng.uniform(0, 500), 2),
                            rng.randint(10**9, 10**10),
                        ]
                    )
                )
                for _ in range(rng.randint(3, 8))
            )
            for _ in range(rng.randint(5, 30))
        ]
        docs.append(("numbers", "\n".join(rows)))
    for _ in range(4):
        docs.append(
            (
                "numbers",
                " ".join(
                    f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/20{rng.randint(10, 30)} {rng.uniform(0, 1e6):.2f}"
                    for _ in range(rng.randint(10, 40))
                ),
            )
        )
    # Chinese and Japanese: hand-written paragraphs, alone and joined
    for lang, texts in (("chinese", CHINESE), ("japanese", JAPANESE)):
        docs += [(lang, t) for t in texts]
        docs += [(lang, "".join(rng.sample(texts, 4))) for _ in range(4)]
    # emoji: mixed into sentences, and in runs
    emoji = "😀😂🥲😍🤔👍👎🙏🔥✨🎉🚀💡📈📉⚠️✅❌🧪🐛🛠️🌧️☀️🍕☕❤️👩‍💻🇯🇵🇫🇷"
    for _ in range(12):
        words = []
        for _ in range(rng.randint(8, 40)):
            words.append(
                rng.choice(WORDS)
                if rng.random() < 0.6
                else "".join(rng.choice(emoji) for _ in range(rng.randint(1, 3)))
            )
        docs.append(("emoji", " ".join(words)))
    # whitespace-heavy: deep indentation, aligned columns, blank lines, tabs
    for _ in range(12):
        lines = []
        for _ in range(rng.randint(10, 40)):
            indent = rng.choice([" " * rng.randint(0, 24), "\t" * rng.randint(0, 4)])
            body = " ".join(
                rng.choice(WORDS).ljust(rng.randint(4, 16)) for _ in range(rng.randint(1, 4))
            )
            lines.append(indent + body + " " * rng.randint(0, 6))
            if rng.random() < 0.3:
                lines.append("")
        docs.append(("whitespace", "\n".join(lines)))
    with OUT.open("w") as f:
        for category, text in docs:
            f.write(json.dumps({"category": category, "text": text}, ensure_ascii=False) + "\n")
    print(f"{len(docs)} documents -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
