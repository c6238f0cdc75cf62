"""Build the estimator's held-out corpus and its second training set from one split.

    .venv/bin/python tests/data/make_heldout.py

Writes ``tests/data/heldout.jsonl`` (judged on, never fitted on) and
``tests/data/train_sources.jsonl`` (fitted on, beside ``corpus.jsonl``).
Every text comes from files that ship with installed packages (Python's
standard library and its docs, Debian's translations, manual pages, licences,
iso-codes and Node's API docs, the virtualenv's package metadata and JSON
schemas), from a seeded generator, or from texts written for this project
(``heldout_texts.py``, ``train_texts.py``).

Why a split by source and not by document: two chunks of one file share
identifiers, phrasing and translators, so a held-out chunk whose sibling was
fitted on would flatter the estimator. Each source (a file, a doc topic, a
translation domain) goes wholly to one side, chosen by a hash of its name;
the script then checks that no line of 30+ characters appears on both sides
or in ``corpus.jsonl``.

Each held-out line carries the true token counts per family
(``{"cl100k": n, "o200k": n}``) from the ``bpe-openai`` tokenizers, so the
tests need no tokenizer. Installed files differ between machines and
versions: regenerating elsewhere gives a different, equally valid corpus;
refit (bench/fit_tokens.py) if the training side changes.
"""

from __future__ import annotations

import gettext
import gzip
import hashlib
import json
import random
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.data import heldout_texts, train_texts  # noqa: E402

OUT_HELDOUT = ROOT / "tests/data/heldout.jsonl"
OUT_TRAIN = ROOT / "tests/data/train_sources.jsonl"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
SITE = Path(sysconfig.get_paths()["purelib"])
LOCALE = Path("/usr/share/locale")
MAN = Path("/usr/share/man")

CATEGORIES = (
    "english",
    "code",
    "json",
    "chinese",
    "japanese",
    "cyrillic",
    "arabic",
    "hindi",
    "chat",
    "numbers",
)
# Documents per category on each side; the held-out side is what the targets are judged on.
PER_CATEGORY = {"heldout": 40, "train": 90}
MAX_PER_SOURCE = 4  # chunks from one source, so no file dominates a category
LANGS = {
    "chinese": ("zh_CN", "zh_TW"),
    "japanese": ("ja",),
    "cyrillic": ("ru", "uk", "bg", "be", "sr"),
    "arabic": ("ar", "fa"),
    "hindi": ("hi",),
}
# Same script, other languages: training only, where a script has few translations (the
# held-out side keeps to the languages its categories are named for).
# Greek and Korean are trained on so their features get weights, but not judged.
TRAIN_ONLY_LANGS = {"hindi": ("mr", "ne"), "greek": ("el",), "korean": ("ko",)}
SCRIPT = {
    "chinese": re.compile(r"[\u4e00-\u9fff]"),
    "japanese": re.compile(r"[\u3040-\u30ff]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "arabic": re.compile(r"[\u0600-\u06ff]"),
    "hindi": re.compile(r"[\u0900-\u097f]"),
}

Source = tuple[str, str, str]  # (category, source name, text)


def side(name: str) -> str:
    """Two sources in five are held out, by a hash of the source's name (stable across runs)."""
    if name.startswith("train-only:"):
        return "train"
    return "heldout" if hashlib.sha256(name.encode()).digest()[0] % 5 < 2 else "train"


def chunks(text: str, rng: random.Random, lo: int, hi: int) -> list[str]:
    """Cut at line ends into pieces of lo..hi characters (a line longer than that stays whole)."""
    out, pos = [], 0
    while pos < len(text):
        end = text.find("\n", pos + rng.randint(lo, hi))
        end = len(text) if end < 0 else end + 1
        out.append(text[pos:end].strip("\n"))
        pos = end
    return [c for c in out if len(c.strip()) >= lo // 2]


# ---- sources -------------------------------------------------------------------------------


def english() -> Iterator[Source]:
    from pydoc_data.topics import topics  # Python's own reference prose

    for name, text in sorted(topics.items()):
        yield "english", f"pydoc:{name}", text
    for path in sorted(Path("/usr/share/common-licenses").glob("*")):
        if path.is_file():
            yield "english", f"license:{path.name}", path.read_text(errors="replace")


def code() -> Iterator[Source]:
    for path in sorted(STDLIB.glob("*.py")) + sorted(STDLIB.glob("*/*.py")):
        if path.parent.name not in ("test", "site-packages") and path.stat().st_size > 2000:
            yield "code", f"py:{path.relative_to(STDLIB)}", path.read_text(errors="replace")
    for path in sorted(Path("/usr/include").glob("*.h")):
        if path.stat().st_size > 2000:
            yield "code", f"c:{path.name}", path.read_text(errors="replace")
    for path in sorted(Path("/usr/bin").iterdir()):
        try:
            head = path.read_bytes()[:64] if path.is_file() else b""
        except OSError:
            continue
        if head.startswith((b"#!/bin/sh", b"#!/bin/bash", b"#! /bin/sh")):
            text = path.read_text(errors="replace")
            if len(text) > 1500:
                yield "code", f"sh:{path.name}", text
    for path in sorted(SITE.rglob("*.js")):
        text = path.read_text(errors="replace")
        if (
            max(map(len, text.splitlines()), default=0) < 200
        ):  # minified bundles are not code people send
            yield "code", f"js:{path.relative_to(SITE)}", text


def json_sources() -> Iterator[Source]:
    paths = sorted(Path("/usr/share/iso-codes/json").glob("iso_*.json"))
    paths += sorted(Path("/usr/share/doc/nodejs/api").glob("*.json"))
    paths += sorted(Path("/usr/share").glob("cmake*/Templates/MSBuild/FlagTables/*.json"))
    paths += sorted((SITE / "jsonschema_specifications").rglob("*.json"))
    for path in paths:
        yield "json", f"json:{path}", path.read_text(errors="replace")


def translations() -> Iterator[Source]:
    # One source per (category, translation domain): the same program's messages in two
    # languages of one script would be near-copies, so they go to the same side.
    for category, langs, prefix in (
        *((c, ls, "mo") for c, ls in LANGS.items()),
        *((c, ls, "train-only:mo") for c, ls in TRAIN_ONLY_LANGS.items()),
    ):
        domains: dict[str, list[str]] = {}
        for lang in langs:
            for path in sorted((LOCALE / lang / "LC_MESSAGES").glob("*.mo")):
                try:
                    with path.open("rb") as f:
                        catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
                except (OSError, ValueError, UnicodeDecodeError):
                    continue
                texts = [v for k, v in catalog.items() if k and isinstance(v, str) and v.strip()]
                domains.setdefault(path.stem, []).append("\n".join(texts))
        for domain, texts in sorted(domains.items()):
            yield category, f"{prefix}:{category}:{domain}", "\n".join(texts)


ROFF_FONT = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[&|^]")


def manpages() -> Iterator[Source]:
    for category, langs in LANGS.items():
        for lang in langs:
            for path in sorted((MAN / lang).rglob("*.gz")):
                try:
                    raw = gzip.decompress(path.read_bytes()).decode("utf-8")
                except (OSError, UnicodeDecodeError, EOFError):
                    continue
                lines = []
                for line in raw.splitlines():
                    if line.startswith(('.\\"', "'\\\"")):
                        continue
                    if line.startswith("."):
                        line = line.split(" ", 1)[1] if " " in line else ""
                    line = ROFF_FONT.sub("", line).replace("\\-", "-").replace('"', "")
                    if SCRIPT[category].search(line):
                        lines.append(line)
                if len(lines) > 10:
                    yield category, f"man:{category}:{path.name}", "\n".join(lines)


def markdown() -> Iterator[Source]:
    for path in sorted(SITE.glob("*.dist-info/METADATA")):
        text = path.read_text(errors="replace")
        _, _, body = text.partition("\n\n")  # the long description, after the headers
        if len(body) > 1500:
            yield "chat", f"md:{path.parent.name.split('-')[0]}", body


def numbers() -> Iterator[Source]:
    for path in sorted((STDLIB / "test" / "decimaltestdata").glob("*.decTest")):
        text = "\n".join(
            line for line in path.read_text(errors="replace").splitlines() if "->" in line
        )
        yield "numbers", f"dec:{path.name}", text
    tz = Path("/usr/share/zoneinfo/tzdata.zi")
    if tz.exists():
        text = tz.read_text()
        half = text.find("\n", len(text) // 2)
        yield "numbers", "tzdata:first", text[:half]
        yield "numbers", "tzdata:second", text[half:]


# ---- generated documents -------------------------------------------------------------------


def generated_numbers(rng: random.Random, n: int) -> list[str]:
    """Numbers people paste: tables, logs, metrics, ledgers."""
    docs = []
    for i in range(n):
        kind = i % 5
        rows = rng.randint(6, 40)
        if kind == 0:  # CSV with a header, mixed signs, decimals and percentages
            cols = rng.randint(3, 7)
            lines = [",".join(f"col{j}" for j in range(cols))]
            for _ in range(rows):
                cells = []
                for _ in range(cols):
                    r = rng.random()
                    if r < 0.3:
                        cells.append(str(rng.randint(-5000, 99999)))
                    elif r < 0.6:
                        cells.append(f"{rng.uniform(-100, 10000):.{rng.randint(1, 4)}f}")
                    elif r < 0.8:
                        cells.append(f"{rng.uniform(0, 100):.1f}%")
                    else:
                        cells.append(f"{rng.uniform(1e-6, 1e9):.3e}")
                lines.append(",".join(cells))
        elif kind == 1:  # access log lines
            lines = [
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z "
                f"{rng.randint(1, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}:"
                f"{rng.randint(1024, 65535)} {rng.choice(['GET', 'POST'])} /v1/items/{rng.randint(1, 10**6)} "
                f"{rng.choice([200, 200, 201, 404, 429, 500])} {rng.randint(80, 90000)}B {rng.uniform(0.1, 900):.2f}ms"
                for _ in range(rows)
            ]
        elif kind == 2:  # a ledger in a markdown table
            lines = ["| date | account | debit | credit | balance |", "|---|---|---:|---:|---:|"]
            bal = rng.uniform(1000, 50000)
            for _ in range(rows):
                amt = rng.uniform(1, 2500)
                bal -= amt
                lines.append(
                    f"| {rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2025 | {rng.randint(100000, 999999)} "
                    f"| {amt:,.2f} | | {bal:,.2f} |"
                )
        elif kind == 3:  # metric samples, Prometheus style
            lines = [
                f'latency_seconds_bucket{{le="{rng.choice(["0.005", "0.01", "0.025", "0.1", "0.5", "1", "2.5"])}"}} '
                f"{rng.randint(0, 10**7)} {rng.randint(1_700_000_000_000, 1_800_000_000_000)}"
                for _ in range(rows)
            ]
        else:  # a matrix of floats
            lines = [
                " ".join(f"{rng.gauss(0, 3):8.4f}" for _ in range(rng.randint(4, 10)))
                for _ in range(rows)
            ]
        docs.append("\n".join(lines))
    return docs


def generated_json(rng: random.Random, n: int) -> list[str]:
    """API-shaped payloads: chat completions with tool calls, orders, events."""
    docs = []
    names = ["Ana", "Bo", "Chen Wei", "Dmitri", "Fatima", "Kenji", "Lucía", "Priya", "Zoë"]
    for i in range(n):
        kind = i % 3
        obj: object
        if kind == 0:
            obj = {
                "id": f"chatcmpl-{rng.getrandbits(80):020x}",
                "object": "chat.completion",
                "created": rng.randint(1_700_000_000, 1_800_000_000),
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "tool_calls": [
                                {
                                    "id": f"call_{rng.getrandbits(64):016x}",
                                    "type": "function",
                                    "function": {
                                        "name": rng.choice(["get_weather", "lookup_order"]),
                                        "arguments": json.dumps(
                                            {"city": rng.choice(names), "days": rng.randint(1, 9)}
                                        ),
                                    },
                                }
                                for _ in range(rng.randint(1, 3))
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {
                    "prompt_tokens": rng.randint(10, 9000),
                    "completion_tokens": rng.randint(1, 900),
                },
            }
        elif kind == 1:
            obj = {
                "order": rng.randint(10**5, 10**6),
                "customer": {
                    "name": rng.choice(names),
                    "email": f"user{rng.randint(1, 999)}@example.com",
                },
                "lines": [
                    {
                        "sku": f"SKU-{rng.randint(1000, 9999)}",
                        "qty": rng.randint(1, 5),
                        "price": round(rng.uniform(1, 300), 2),
                    }
                    for _ in range(rng.randint(1, 8))
                ],
                "paid": rng.random() < 0.5,
                "notes": None,
            }
        else:
            obj = [
                {
                    "event": rng.choice(["click", "view", "purchase", "signup"]),
                    "ts": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:{rng.randint(0, 59):02d}:00Z",
                    "user_id": rng.randint(1, 10**7),
                    "props": {"path": f"/p/{rng.randint(1, 500)}", "ms": rng.randint(1, 5000)},
                }
                for _ in range(rng.randint(3, 15))
            ]
        docs.append(
            json.dumps(obj, indent=rng.choice([None, 2, 4]), ensure_ascii=rng.random() < 0.5)
        )
    return docs


def json_slices(text: str, rng: random.Random, count: int) -> list[str]:
    """Valid JSON documents of 300-4000 characters cut from one big JSON file."""
    try:
        root = json.loads(text)
    except ValueError:
        return []
    out = []
    for _ in range(count * 4):
        node = root
        for _ in range(8):  # walk down until the piece is small enough
            if len(json.dumps(node)) <= 4000:
                break
            if isinstance(node, dict) and node:
                key = rng.choice(list(node))
                if len(json.dumps(node[key])) < 300:
                    keys = list(node)
                    start = rng.randrange(len(keys))
                    node = {k: node[k] for k in keys[start : start + rng.randint(2, 12)]}
                    continue
                node = node[key]
            elif isinstance(node, list) and node:
                start = rng.randrange(len(node))
                node = node[start : start + rng.randint(1, 10)]
            else:
                break
        piece = json.dumps(node, indent=rng.choice([None, 1, 2, 4]), ensure_ascii=False)
        if 300 <= len(piece) <= 6000 and piece not in out:
            out.append(piece)
        if len(out) == count:
            break
    return out


def chat_transcripts(
    rng: random.Random, n: int, asks: list[str], replies: list[str], pools: dict[str, list[str]]
) -> list[str]:
    """User / assistant turns in markdown: prose, fenced code, lists, tables, other scripts."""
    docs = []
    for _ in range(n):
        turns = []
        for _ in range(rng.randint(1, 3)):
            body = rng.choice(pools[rng.choice(["code", "english", "json", "foreign"])])
            body = body[: rng.randint(200, 900)]
            fence = "```" + rng.choice(["python", "json", "", "bash"]) + "\n" + body + "\n```"
            ask = rng.choice(asks)
            turns.append(f"**User:** {ask}\n\n{fence if rng.random() < 0.6 else body}")
            items = [
                rng.choice(pools["english"])[: rng.randint(40, 160)]
                for _ in range(rng.randint(2, 5))
            ]
            listing = "\n".join(f"{j + 1}. {it.strip()}" for j, it in enumerate(items))
            turns.append(f"**Assistant:** {rng.choice(replies)}\n\n{listing}")
        docs.append("\n\n".join(turns))
    return docs


# ---- assembly ------------------------------------------------------------------------------


def build(seed: int) -> dict[str, list[tuple[str, str, str]]]:
    rng = random.Random(seed)
    sources: dict[str, dict[str, list[tuple[str, str]]]] = {"heldout": {}, "train": {}}
    for category, name, text in (
        *english(),
        *code(),
        *json_sources(),
        *translations(),
        *manpages(),
        *markdown(),
        *numbers(),
    ):
        sources[side(name)].setdefault(category, []).append((name, text))

    out: dict[str, list[tuple[str, str, str]]] = {}
    for which in ("heldout", "train"):
        docs: list[tuple[str, str, str]] = []
        pools: dict[str, list[str]] = {"english": [], "code": [], "json": [], "foreign": []}
        for category in (*CATEGORIES, *(c for c in TRAIN_ONLY_LANGS if c not in CATEGORIES)):
            picked: list[tuple[str, str, str]] = []
            items = sorted(sources[which].get(category, []))
            rng.shuffle(items)
            for name, text in items:
                if category == "json":
                    pieces = json_slices(text, rng, MAX_PER_SOURCE)
                else:
                    lo, hi = (
                        (300, 3000)
                        if category in (*CATEGORIES[:3], "chat", "numbers")
                        else (150, 1200)
                    )
                    found = chunks(text, rng, lo, hi)
                    pieces = rng.sample(found, min(MAX_PER_SOURCE, len(found)))
                picked += [(category, name, p) for p in pieces]
            rng.shuffle(picked)
            docs += picked
            for _, _, p in picked:
                pool = "foreign" if category in LANGS else category
                if category not in CATEGORIES:
                    continue
                if pool in pools:
                    pools[pool].append(p)
        # written texts and generated documents, each on its own side only
        written = heldout_texts if which == "heldout" else train_texts
        for category, attr in (
            ("english", "ENGLISH"),
            ("cyrillic", "RUSSIAN"),
            ("arabic", "ARABIC"),
            ("hindi", "HINDI"),
            ("chinese", "CHINESE"),
            ("japanese", "JAPANESE"),
        ):
            texts = getattr(written, attr, [])
            for j, t in enumerate(texts):
                docs.append((category, f"written:{attr}:{j}", t))
            for j in range(len(texts) // 2):
                docs.append(
                    (category, f"written:{attr}:join{j}", "\n\n".join(rng.sample(texts, 3)))
                )
        gen = random.Random(seed + (1 if which == "heldout" else 2))
        docs += [
            ("numbers", f"gen:numbers:{j}", t) for j, t in enumerate(generated_numbers(gen, 15))
        ]
        docs += [("json", f"gen:json:{j}", t) for j, t in enumerate(generated_json(gen, 12))]
        if which == "heldout":
            asks, replies = heldout_texts.CHAT_ASKS, heldout_texts.CHAT_REPLIES
        else:  # training turns open with sentences of the training prose instead
            asks = [p.split(". ")[0][:120] for p in pools["english"][:20]]
            replies = [p.split(". ")[0][:120] for p in pools["english"][20:40]]
        docs += [
            ("chat", f"gen:chat:{j}", t)
            for j, t in enumerate(chat_transcripts(gen, 15, asks, replies, pools))
        ]
        out[which] = docs
    return out


def cap(docs: list[tuple[str, str, str]], per: int) -> list[tuple[str, str, str]]:
    """At most ``per`` documents a category: written and generated ones first, then sources."""
    kept: list[tuple[str, str, str]] = []
    for category in (*CATEGORIES, *(c for c in TRAIN_ONLY_LANGS if c not in CATEGORIES)):
        mine = [d for d in docs if d[0] == category]
        first = [d for d in mine if d[1].startswith(("written:", "gen:"))]
        rest = [d for d in mine if not d[1].startswith(("written:", "gen:"))]
        kept += (first + rest)[:per]
    return kept


def overlap(a: list[str], b: list[str]) -> set[str]:
    """Lines of 30+ characters found on both sides."""

    def lines(texts: list[str]) -> set[str]:
        return {ln.strip() for t in texts for ln in t.splitlines() if len(ln.strip()) >= 30}

    return lines(a) & lines(b)


def main() -> int:
    import bpe_openai

    sides = build(20261202)
    sides["train"] = cap(sides["train"], PER_CATEGORY["train"])
    corpus = [json.loads(line)["text"] for line in (ROOT / "tests/data/corpus.jsonl").open()]
    # boilerplate lines (licence headers, repeated doc strings) recur across files: a
    # held-out document that shares one with the training side is left out, not kept as a leak
    shared = overlap(
        [t for _, _, t in sides["heldout"]], [t for _, _, t in sides["train"]] + corpus
    )
    clean = [d for d in sides["heldout"] if not any(s in d[2] for s in shared)]
    print(
        f"held-out candidates left out for a line shared with training: {len(sides['heldout']) - len(clean)}"
    )
    sides["heldout"] = cap(clean, PER_CATEGORY["heldout"])
    encoders = {
        "cl100k": bpe_openai.get_encoding("cl100k_base"),
        "o200k": bpe_openai.get_encoding("o200k_base"),
    }
    for which, path in (("heldout", OUT_HELDOUT), ("train", OUT_TRAIN)):
        with path.open("w") as f:
            for category, name, text in sides[which]:
                row: dict[str, object] = {"category": category, "source": name, "text": text}
                if which == "heldout":
                    row["tokens"] = {k: len(e.encode_ordinary(text)) for k, e in encoders.items()}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts: dict[str, int] = {}
        for category, _, _ in sides[which]:
            counts[category] = counts.get(category, 0) + 1
        print(f"{path.relative_to(ROOT)}: {len(sides[which])} documents {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
