"""Pure-Python twin of ``hotpath._tokens``: estimate tokens from UTF-8 bytes.

The estimate is a weighted count of byte features that track how
cl100k-style tokenizers cut text before BPE runs. Each feature looks at one
byte, the byte before and the byte after (nothing beyond the ends):

 0 a letter run starts after a space (" word": the space joins the word)
 1 a letter run starts after anything else (a word with no space before it)
 2 letters
 3 digits;  4 digit runs (digits go in groups of up to three)
 5 ASCII punctuation;  6 punctuation right before a letter (".get" is one piece)
 7 spaces or tabs;  8 ... after another one;  9 ... right before a digit (never joined)
10 line-break runs;  11 line breaks
12 kana, CJK punctuation and full-width forms;  13 Han ideographs
14 other three-byte characters;  15 four-byte characters (emoji)
16 lower-to-upper case changes (camelCase)
17 two-byte characters (accents, Cyrillic, Greek...);  18 Hangul

Weights (thousandths of a token) were fitted by least squares on
tests/data/corpus.jsonl against the real cl100k_base tokenizer, weighting
each document by the inverse of its token count; two features absent from
the corpus carry fixed priors (17: 0.7, 18: 1.5). Five-fold cross-validated
error: MAE 3.5%, P95 9.6% (bench/hotpath.py prints the accuracy table;
bench/fit_tokens.py reproduces the fit).
The counts are integers and the sum is integer arithmetic, so the twins
agree exactly; the compiled one counts 16 bytes at a time (hotpath/_tokcount.h).

Invariant: the twins return equal results for every input.
"""

from __future__ import annotations

WEIGHTS = (
    184,
    954,
    -7,
    328,
    987,
    332,
    104,
    932,
    -883,
    -483,
    -323,
    1227,
    1015,
    1120,
    1275,
    2311,
    1530,
    700,
    1500,
)


def count_features(data: bytes) -> list[int]:
    """The 19 feature counts of ``data`` (see the module docstring)."""
    o = [0] * 19
    n = len(data)
    for i in range(n):
        a = data[i]
        p = data[i - 1] if i else 0
        x = data[i + 1] if i + 1 < n else 0
        letter = 97 <= (a | 32) <= 122
        letter_p = 97 <= (p | 32) <= 122
        digit = 48 <= a <= 57
        space = a in (32, 9)
        space_p = p in (32, 9)
        newline = a in (10, 13)
        punct = a < 128 and not (letter or digit or space or newline)
        fullwidth = a == 0xEF and 0xBC <= x <= 0xBF
        if letter:
            o[2] += 1
            if not letter_p:
                o[0 if space_p else 1] += 1
        elif digit:
            o[3] += 1
            if not 48 <= p <= 57:
                o[4] += 1
        elif punct:
            o[5] += 1
            if 97 <= (x | 32) <= 122:
                o[6] += 1
        elif space:
            o[7] += 1
            if space_p:
                o[8] += 1
            if 48 <= x <= 57:
                o[9] += 1
        elif newline:
            o[11] += 1
            if p not in (10, 13):
                o[10] += 1
        elif a == 0xE3 or fullwidth:
            o[12] += 1
        elif 0xE4 <= a <= 0xE9:
            o[13] += 1
        elif 0xEA <= a <= 0xED:
            o[18] += 1
        elif 0xE0 <= a <= 0xEF:
            o[14] += 1
        elif a >= 0xF0:
            o[15] += 1
        elif 0xC0 <= a <= 0xDF:
            o[17] += 1
        if 65 <= a <= 90 and 97 <= p <= 122:
            o[16] += 1
    return o


def estimate_text_tokens(data: bytes) -> int:
    """Estimated cl100k_base tokens of one UTF-8 text."""
    total = sum(w * c for w, c in zip(WEIGHTS, count_features(data), strict=True))
    return 0 if total < 0 else (total + 500) // 1000
