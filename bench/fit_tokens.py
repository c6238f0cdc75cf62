"""Refit the token estimator's weights per family and judge them on the held-out corpus.

    .venv/bin/python bench/fit_tokens.py            # fit, print held-out figures and WEIGHTS
    .venv/bin/python bench/fit_tokens.py --tables   # first rewrite hotpath/_tokens_tables.py

Training documents: tests/data/corpus.jsonl and tests/data/train_sources.jsonl,
counted by the real tokenizers (cl100k_base and o200k_base from the
``bpe-openai`` package, offline). Each family gets its own least-squares fit
of the twin's feature counts (``hotpath._tokens_py.count_features``), each
document weighted by the inverse of its token count (so the fit minimises
relative error) and each category by the inverse square root of its size (so
no category drowns the others). The held-out corpus (tests/data/heldout.jsonl,
tests/data/make_heldout.py) is never fitted on: its per-category mean and P95
relative error are what the printout and bench/RESULTS.md report.

``--tables`` derives the character tables from the two vocabularies: per
BMP character its cl100k cost alone and how often it sits inside longer
tokens of each vocabulary, and per family a hashed bitmap of adjacent
non-ASCII character pairs found inside tokens, and per family a Bloom filter
of the tokens that are a run of non-ASCII characters (a word of a non-Latin
script, its leading space included when it has one), and for o200k a Bloom filter of
the tokens that are a run of ASCII letters (" copy", "sign": o200k spends one
token on a common word and several on a rare one). They depend only on the
vocabularies, not on any text.

Needs the dev extra (numpy, bpe-openai); the gateway itself needs neither.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import itertools
import json
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAMILIES = {"cl100k": "cl100k_base", "o200k": "o200k_base"}
TRAIN = [ROOT / "tests/data/corpus.jsonl", ROOT / "tests/data/train_sources.jsonl"]
HELDOUT = ROOT / "tests/data/heldout.jsonl"
TABLES = ROOT / "hotpath/_tokens_tables.py"
# features a family's fit leaves out (weight 0): the other family's greedy cuts
LEFT_OUT = {"cl100k": (53, 54, 55, 56), "o200k": (51, 52)}
BIGRAM_BITS = 15
WORD_BITS = 21


def vocabulary(name: str) -> list[bytes]:
    """Every token of one vocabulary, from the tiktoken file that bpe-openai ships."""
    import bpe_openai

    raw = gzip.decompress(
        (Path(bpe_openai.__file__).parent / "data" / f"{name}.tiktoken.gz").read_bytes()
    )
    return [base64.b64decode(line.split()[0]) for line in raw.splitlines() if line]


def merge_bucket(count: int) -> int:
    return 0 if count == 0 else 1 if count <= 3 else 2 if count <= 20 else 3


def write_tables() -> None:
    import bpe_openai

    if not TABLES.exists():  # the twin imports the tables: give it empty ones to start from
        TABLES.write_text(
            f"BIGRAM_BITS = {BIGRAM_BITS}\nCHAR_TABLE = bytes(0xFF80)\n"
            f"BIGRAM_CL100K = BIGRAM_O200K = bytes({1 << (BIGRAM_BITS - 3)})\n"
            f"WORD_BITS = {WORD_BITS}\nWORDS_CL100K = WORDS_O200K = ASCII_WORDS_O200K = "
            f"bytes({1 << (WORD_BITS - 3)})\n"
        )
    from hotpath._tokens_py import WORD_MAX, ascii_word_slot, bigram_slot, word_probes

    inside: dict[str, dict[int, int]] = {}
    bitmaps: dict[str, bytearray] = {}
    for family, name in FAMILIES.items():
        counts: dict[int, int] = {}
        bitmap = bytearray(1 << (BIGRAM_BITS - 3))
        words = bytearray(1 << (WORD_BITS - 3))
        ascii_words = bytearray(1 << (WORD_BITS - 3))
        for token in vocabulary(name):
            try:
                text = token.decode("utf-8")
            except UnicodeDecodeError:
                continue  # a piece of a character: says nothing about whole characters
            body = token[1:] if token[:1] == b" " else token
            if body and len(token) <= WORD_MAX and all(b >= 0x80 for b in body):
                for probe in word_probes(token):
                    words[probe >> 3] |= 1 << (probe & 7)
            if body and len(token) <= WORD_MAX and all(97 <= (b | 32) <= 122 for b in body):
                index, mask = ascii_word_slot(token)
                for k in range(8):
                    ascii_words[index * 8 + k] |= (mask >> (8 * k)) & 0xFF
            stripped = text.strip()
            if len(stripped) >= 2:
                for ch in set(stripped):
                    if 0x80 <= ord(ch) <= 0xFFFF:
                        counts[ord(ch)] = counts.get(ord(ch), 0) + 1
            for first, second in itertools.pairwise(text):
                if 0x80 <= ord(first) <= 0xFFFF and 0x80 <= ord(second) <= 0xFFFF:
                    slot = bigram_slot(ord(first), ord(second))
                    bitmap[slot >> 3] |= 1 << (slot & 7)
        inside[family] = counts
        bitmaps[family] = bitmap
        bitmaps[f"words_{family}"] = words
        bitmaps[f"ascii_words_{family}"] = ascii_words
    cl100k = bpe_openai.get_encoding("cl100k_base")
    table = bytearray()
    for cp in range(0x80, 0x10000):
        cost = 3 if 0xD800 <= cp <= 0xDFFF else min(3, len(cl100k.encode_ordinary(chr(cp))))
        table.append(
            (cost - 1)
            | merge_bucket(inside["cl100k"].get(cp, 0)) << 2
            | merge_bucket(inside["o200k"].get(cp, 0)) << 4
        )

    def blob(data: bytes) -> str:
        text = base64.b64encode(zlib.compress(bytes(data), 9)).decode()
        return "\n".join(f'    "{text[i : i + 88]}"' for i in range(0, len(text), 88))

    TABLES.write_text(
        f'''"""Character tables of the token estimator, derived from the cl100k_base and o200k_base
vocabularies by ``bench/fit_tokens.py --tables`` (generated: do not edit).

CHAR_TABLE: one byte per code point U+0080..U+FFFF: bits 0-1 the cl100k tokens of
the character alone, minus one; bits 2-3 and 4-5 how often it sits inside longer
cl100k / o200k tokens (0 never, 1 up to 3 tokens, 2 up to 20, 3 more).
BIGRAM_CL100K, BIGRAM_O200K: 2**BIGRAM_BITS-bit maps of adjacent non-ASCII
character pairs found inside tokens, at ``_tokens_py.bigram_slot``.
WORDS_CL100K, WORDS_O200K: 2**WORD_BITS-bit Bloom filters of the tokens that are a
run of non-ASCII characters (leading space included), at ``_tokens_py.word_probes``.
ASCII_WORDS_O200K: a blocked Bloom filter of the same size of o200k's tokens that are
a run of ASCII letters (leading space included), at ``_tokens_py.ascii_word_slot``.
"""

import base64
import zlib

BIGRAM_BITS = {BIGRAM_BITS}
WORD_BITS = {WORD_BITS}

_CHAR_TABLE = (
{blob(table)}
)
_BIGRAM_CL100K = (
{blob(bitmaps["cl100k"])}
)
_BIGRAM_O200K = (
{blob(bitmaps["o200k"])}
)
_WORDS_CL100K = (
{blob(bitmaps["words_cl100k"])}
)
_WORDS_O200K = (
{blob(bitmaps["words_o200k"])}
)
_ASCII_WORDS_O200K = (
{blob(bitmaps["ascii_words_o200k"])}
)

CHAR_TABLE = zlib.decompress(base64.b64decode(_CHAR_TABLE))
BIGRAM_CL100K = zlib.decompress(base64.b64decode(_BIGRAM_CL100K))
BIGRAM_O200K = zlib.decompress(base64.b64decode(_BIGRAM_O200K))
WORDS_CL100K = zlib.decompress(base64.b64decode(_WORDS_CL100K))
WORDS_O200K = zlib.decompress(base64.b64decode(_WORDS_O200K))
ASCII_WORDS_O200K = zlib.decompress(base64.b64decode(_ASCII_WORDS_O200K))
'''
    )
    print(f"wrote {TABLES.relative_to(ROOT)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", action="store_true", help="rewrite hotpath/_tokens_tables.py first")
    args = ap.parse_args()
    if args.tables:
        write_tables()
        # the twin was imported with the old tables to write the new ones: count with these
        import importlib

        import hotpath._tokens_py
        import hotpath._tokens_tables

        importlib.reload(hotpath._tokens_tables)
        importlib.reload(hotpath._tokens_py)
    import bpe_openai
    import numpy as np

    from hotpath._tokens_py import NFEAT, count_features

    encoders = {f: bpe_openai.get_encoding(n) for f, n in FAMILIES.items()}
    train = [json.loads(line) for path in TRAIN for line in path.read_text().splitlines()]
    held = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    for doc in held:  # the stored truths must be what the tokenizers say today
        for family, enc in encoders.items():
            assert doc["tokens"][family] == len(enc.encode_ordinary(doc["text"])), doc["source"]
    x_train = np.array([count_features(d["text"].encode()) for d in train], dtype=float)
    x_held = np.array([count_features(d["text"].encode()) for d in held], dtype=float)
    sizes: dict[str, int] = {}
    for d in train:
        sizes[d["category"]] = sizes.get(d["category"], 0) + 1
    judged = {d["category"] for d in held}
    # scripts trained on but not judged (Greek, Korean) get their features weighted without
    # pulling the shared character features away from the judged categories
    balance = np.array(
        [(1.0 if d["category"] in judged else 0.2) / np.sqrt(sizes[d["category"]]) for d in train]
    )

    for family, enc in encoders.items():
        y = np.array([len(enc.encode_ordinary(d["text"])) for d in train], dtype=float)
        w = balance / y
        used = [k for k in range(NFEAT) if k not in LEFT_OUT[family]]
        coef = np.zeros(NFEAT)
        coef[used], *_ = np.linalg.lstsq(x_train[:, used] * w[:, None], y * w, rcond=None)
        weights = np.array([round(v * 1000) for v in coef], dtype=np.int64)
        truth = np.array([d["tokens"][family] for d in held], dtype=float)
        est = np.maximum(0, (x_held.astype(np.int64) @ weights + 500) // 1000)
        err = np.abs(est - truth) / truth
        fit_err = np.abs(np.maximum(0, (x_train.astype(np.int64) @ weights + 500) // 1000) - y) / y
        print(f"\n{family}: held-out ({len(held)} documents; in-sample mean {fit_err.mean():.1%})")
        print(f"  {'category':10s} {'docs':>4s} {'mean':>6s} {'p95':>6s}")
        by: dict[str, list[float]] = {}
        for d, e in zip(held, err, strict=True):
            by.setdefault(d["category"], []).append(float(e))
        for category, errors in by.items():
            s = sorted(errors)
            mean, p95 = sum(s) / len(s), s[int(0.95 * len(s))]
            flag = "" if mean <= 0.04 and p95 <= 0.10 else "  (over target)"
            print(f"  {category:10s} {len(s):4d} {mean:6.1%} {p95:6.1%}{flag}")
        assert len(weights) == NFEAT
        print(f"{family.upper()} = {tuple(int(v) for v in weights)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
