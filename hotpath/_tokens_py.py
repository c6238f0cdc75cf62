"""Pure-Python twin of ``hotpath._tokens``: estimate tokens from UTF-8 bytes, per tokenizer family.

The estimate is a weighted count of byte and character features that track
how GPT-style BPE tokenizers cut text. One pass counts the features; each
family (cl100k_base, o200k_base, and "claude" as a factor over o200k) only
has its own weights. A feature looks at a byte ``a``, the byte before ``p``
and the byte after ``x`` (0 beyond either end):

 0 a letter run starts after a space (" word": the space joins the word)
 1 a letter run starts after anything else;  2 letters
 3 digits;  4 digit runs (digits go in groups of up to three)
 5 ASCII punctuation;  6 ... right before a letter (".get" is one piece)
 7 spaces or tabs;  8 ... after another one;  9 ... right before a digit (never joined)
10 line-break runs;  11 line breaks
12 punctuation runs;  13 punctuation after a space (" {" is one piece)
14 the last space of a run of two or more (indentation is one piece, then " word")
15 a line break right after punctuation (o200k folds it into the punctuation)
16 an upper-case letter between upper and lower case ("HTTPServer": o200k cuts before S)
17 tabs
18 a multi-byte character right after ASCII other than a space
19 ASCII right after a multi-byte character
20 a two-byte character not preceded by another multi-byte character
21 a two-byte character right after a space (a word of a non-Latin alphabet)
22 Latin-1 and Latin extended;  23 Greek;  24 Cyrillic;  25 Hebrew and Arabic scripts
26 four-byte characters (emoji);  27 Hangul;  28 Han ideographs
   -- the rest are per character (a valid two- or three-byte UTF-8 sequence):
29 kana;  30 hiragana;  31 CJK punctuation;  32 full-width forms
33 other three-byte characters
34 Devanagari;  35 ... consonants and vowels;  36 ... vowel signs;  37 ... virama
38 a Devanagari character right after a space
39 cl100k's token count of the character alone (1-3), summed
40 how often the character occurs inside longer cl100k tokens (0-3), summed
41 the same in o200k, summed
42 a pair of adjacent non-ASCII characters found inside some cl100k token
43 the same in o200k

44 digits that start a new group of three inside a run (the fourth, seventh, ...):
   with 4, digit runs cost exactly what both vocabularies charge, ceil(length / 3)
45 a run of non-ASCII bytes (with the space before it, if any) that is a whole
   cl100k token;  46 ... its characters;  47 ... its bytes
48-50 the same for o200k
51 the cl100k tokens of such a run (at most U+0FFF: no CJK) cut greedily, longest
   token first, from the same filter;  52 ... its characters
53-54 the same cut with o200k's filter, of a run of any length;  55-56 ... of a
   run with CJK in it
57 an ASCII letter piece (a letter run, cut before an upper-case letter that follows a
   lower-case one, as o200k cuts "camelCase") that, with the space before it if any,
   is a whole o200k token;  58 ... its bytes (space included);  59 a piece that is not;
   60 ... its bytes

39-43 come from the tokenizers' vocabularies (``hotpath/_tokens_tables.py``,
written by bench/fit_tokens.py): rare Han characters cost cl100k two or three
tokens, and o200k merges common pairs of Cyrillic, Arabic, Devanagari and
CJK characters, which byte classes alone cannot see. The pair test is a
32,768-bit hashed bitmap per family (false positives included in the fit).
45-50 answer the question byte features cannot: is this Cyrillic, Arabic or
Devanagari word one token of the vocabulary (a common word) or several (a rare
one)? Each vocabulary's tokens that are a run of non-ASCII characters, with or
without a leading space, are in a 2**21-bit Bloom filter per family (four
probes of an FNV-1a hash, ``word_probes``); a run found there counts as a
word, and its characters and bytes let the fit take back what the per-
character features charged for it. The greedy cuts (51-56, tokens of at
most PIECE_CHARS characters) go further: they count the pieces a word that is
not one token falls into, and the pieces of a CJK sentence. Each family's
weights use its own cut only (bench/fit_tokens.py LEFT_OUT).
57-60 ask the same of ASCII words: o200k has " camel" and "Case" as tokens but
cuts " copysign", " dqcps" and " pyzmq" into three pieces each, which byte
features price as one word. The o200k tokens that are a run of ASCII letters
(leading space included, about 106,000) are in a third filter of the same
size, ``ASCII_WORDS_O200K``, blocked (its two bits in one 64-bit word, at a
hash of the piece's first and last eight bytes, ``ascii_word_slot``: an English
text has a piece every six bytes, so the look-up must cost a few nanoseconds
and few branches); each piece is looked up once, whole. cl100k's
weights use the same counts (the two vocabularies share most English words).

Weights (thousandths of a token) are fitted per family by least squares on
tests/data/corpus.jsonl and tests/data/train_sources.jsonl, and judged on
tests/data/heldout.jsonl, which the fit never sees (bench/fit_tokens.py
prints the per-category figures; bench/RESULTS.md records them).

Counts are integers and the sums integer arithmetic, so the twins agree
exactly; the compiled one counts 16 bytes at a time (hotpath/_tokcount.h).

Invariant: the twins return equal results for every input and family.
"""

from __future__ import annotations

from hotpath._tokens_tables import (
    ASCII_WORDS_O200K,
    BIGRAM_BITS,
    BIGRAM_CL100K,
    BIGRAM_O200K,
    CHAR_TABLE,
    WORD_BITS,
    WORDS_CL100K,
    WORDS_O200K,
)

NFEAT = 61
# vocabulary tokens are far shorter; a longer run is never looked up whole
WORD_MAX = 64
# the longest token (in characters) the greedy cuts try
PIECE_CHARS = 8
# bits per word in the filters: the cuts look up to PIECE_CHARS lengths at every
# character, so false positives must stay near 1e-4 (four probes at 2**21 bits)
WORD_PROBES = 4
_M64 = (1 << 64) - 1
FAMILY_INDEX = {"cl100k": 0, "o200k": 1, "claude": 2}

CL100K = (
    -928,
    249,
    -585,
    -60,
    1278,
    111,
    -286,
    580,
    -594,
    319,
    803,
    110,
    639,
    60,
    695,
    -726,
    843,
    199,
    -407,
    136,
    245,
    -1007,
    -537,
    73,
    166,
    72,
    2319,
    -360,
    -87,
    -31,
    -72,
    -725,
    -247,
    -363,
    -9,
    66,
    -88,
    -169,
    -1207,
    1132,
    30,
    -14,
    -627,
    -133,
    1191,
    918,
    1415,
    -810,
    393,
    -452,
    146,
    406,
    -452,
    0,
    0,
    0,
    0,
    696,
    598,
    787,
    745,
)
O200K = (
    -963,
    -1,
    -821,
    3,
    1136,
    112,
    -302,
    124,
    -138,
    693,
    669,
    259,
    679,
    440,
    825,
    -902,
    423,
    412,
    87,
    -185,
    331,
    -119,
    114,
    -7,
    -11,
    -5,
    558,
    19,
    39,
    41,
    -17,
    -420,
    -196,
    149,
    -462,
    442,
    616,
    -67,
    -288,
    124,
    14,
    -25,
    -39,
    6,
    993,
    -229,
    92,
    -8,
    77,
    -229,
    77,
    0,
    0,
    975,
    -67,
    1018,
    -114,
    990,
    826,
    1407,
    930,
)

# Anthropic publishes no tokenizer. The one published side-by-side measurement
# (Claude 3.5 Sonnet against GPT-4o's o200k, May 2025) found 16% more tokens for
# English prose, 21% for maths and 30% for Python code; 6/5 sits between prose and
# code. Not fitted on a Claude tokenizer: calibrate with count_tokens where it matters.
CLAUDE_OVER_O200K = (6, 5)
CLAUDE = tuple(w * CLAUDE_OVER_O200K[0] // CLAUDE_OVER_O200K[1] for w in O200K)

WEIGHTS = (CL100K, O200K, CLAUDE)


def _space(b: int) -> bool:
    return b == 32 or b == 9


def _char(data: bytes, n: int, i: int, o: list[int]) -> None:
    """Features 29-43 of the two- or three-byte character whose lead byte is at ``i``."""
    a = data[i]
    if a < 0xE0:
        if i + 1 >= n or data[i + 1] & 0xC0 != 0x80:
            return
        cp = ((a & 0x1F) << 6) | (data[i + 1] & 0x3F)
    else:
        if i + 2 >= n or data[i + 1] & 0xC0 != 0x80 or data[i + 2] & 0xC0 != 0x80:
            return
        cp = ((a & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)
        if cp < 0x80:  # overlong: not a character the tables know
            return
    if 0x3040 <= cp <= 0x30FF:
        o[29] += 1
        if cp <= 0x309F:
            o[30] += 1
    elif 0x3000 <= cp <= 0x303F:
        o[31] += 1
    elif 0xFF00 <= cp <= 0xFFEF:
        o[32] += 1
    elif 0x900 <= cp <= 0x97F:
        o[34] += 1
        if 0x904 <= cp <= 0x939:
            o[35] += 1
        elif cp <= 0x903 or 0x93A <= cp <= 0x94F:
            o[36] += 1
            if cp == 0x94D:
                o[37] += 1
        if i and _space(data[i - 1]):
            o[38] += 1
    elif cp >= 0x800 and not 0x3000 <= cp <= 0xDFFF:
        o[33] += 1
    t = CHAR_TABLE[cp - 0x80]
    o[39] += (t & 3) + 1
    o[40] += (t >> 2) & 3
    o[41] += (t >> 4) & 3
    # the character before, when it is a two- or three-byte one ending right here
    if i >= 2 and data[i - 1] & 0xC0 == 0x80:
        b = data[i - 2]
        if 0xC2 <= b <= 0xDF:
            pcp = ((b & 0x1F) << 6) | (data[i - 1] & 0x3F)
        elif i >= 3 and b & 0xC0 == 0x80 and 0xE0 <= data[i - 3] <= 0xEF:
            pcp = ((data[i - 3] & 0x0F) << 12) | ((b & 0x3F) << 6) | (data[i - 1] & 0x3F)
        else:
            pcp = 0
        if pcp >= 0x80:
            h = bigram_slot(pcp, cp)
            o[42] += (BIGRAM_CL100K[h >> 3] >> (h & 7)) & 1
            o[43] += (BIGRAM_O200K[h >> 3] >> (h & 7)) & 1


def bigram_slot(first: int, second: int) -> int:
    """The bitmap slot of a pair of code points (multiplicative hashing, 32-bit)."""
    mixed = ((first * 0x9E3779B1) & 0xFFFFFFFF) ^ ((second * 0x85EBCA77) & 0xFFFFFFFF)
    return mixed >> (32 - BIGRAM_BITS)


def _probes(h: int) -> list[int]:
    """The WORD_PROBES Bloom-filter bits of a word's FNV-1a hash (double hashing)."""
    step = (((h ^ (h >> 15)) * 0x85EBCA77) & 0xFFFFFFFF) | 1
    return [((h + k * step) & 0xFFFFFFFF) >> (32 - WORD_BITS) for k in range(WORD_PROBES)]


def _found(bits: bytes, h: int) -> bool:
    return all((bits[b >> 3] >> (b & 7)) & 1 for b in _probes(h))


def word_probes(word: bytes) -> list[int]:
    """The Bloom-filter bits of a word (FNV-1a, 32-bit, then double hashing)."""
    h = 0x811C9DC5
    for b in word:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return _probes(h)


def _pieces(data: bytes, start: int, end: int, bits: bytes) -> int:
    """Pieces of data[start:end] cut greedily, longest vocabulary token (of at most
    PIECE_CHARS characters) first; a character no token holds is a piece of its own."""
    count = 0
    i = start
    while i < end:
        h = 0x811C9DC5
        step = best = seen = 0
        for k in range(i, end):
            h = ((h ^ data[k]) * 0x01000193) & 0xFFFFFFFF
            if k + 1 == end or not 0x80 <= data[k + 1] <= 0xBF:  # a character ends here
                step = step or k + 1
                if _found(bits, h):
                    best = k + 1
                seen += 1
                if seen == PIECE_CHARS:
                    break
        count += 1
        i = best or step
    return count


def _word(data: bytes, start: int, end: int, o: list[int]) -> None:
    """Features 45-56 of the non-ASCII run data[start:end] (its leading space included)."""
    h = 0x811C9DC5
    chars = top = 0
    for k in range(start, end):
        h = ((h ^ data[k]) * 0x01000193) & 0xFFFFFFFF
        chars += data[k] >= 0xC0
        top = max(top, data[k])
    cjk = top >= 0xE1  # a character past U+0FFF: not an alphabet or an Indic script
    o[55 if cjk else 53] += _pieces(data, start, end, WORDS_O200K)
    o[56 if cjk else 54] += chars
    if end - start > WORD_MAX:
        return
    for base, bits in ((45, WORDS_CL100K), (48, WORDS_O200K)):
        if _found(bits, h):
            o[base] += 1
            o[base + 1] += chars
            o[base + 2] += end - start
    if not cjk:
        o[51] += _pieces(data, start, end, WORDS_CL100K)
        o[52] += chars


def ascii_word_slot(word: bytes) -> tuple[int, int]:
    """The filter word (64-bit, index) and its bits (mask) of an ASCII word: a hash of
    its length, its first eight bytes (zero-padded) and, past eight, its last eight
    (a word of 16 bytes or fewer is all there; a longer one is its ends), two bits
    in one word."""
    first = int.from_bytes(word[:8], "little")
    last = int.from_bytes(word[-8:], "little") if len(word) > 8 else 0
    h = ((first ^ len(word)) * 0xFF51AFD7ED558CCD) ^ (last * 0xC4CEB9FE1A85EC53)
    h &= _M64
    h ^= h >> 32
    mask = 0
    for k in range(0, 12, 6):
        mask |= 1 << ((h >> k) & 63)
    return h >> (64 - WORD_BITS + 6), mask


def _ascii_word(data: bytes, start: int, end: int, o: list[int]) -> None:
    """Features 57-60 of the ASCII letter piece data[start:end] (its leading space included)."""
    size = end - start
    if size <= WORD_MAX:
        index, mask = ascii_word_slot(data[start:end])
        if int.from_bytes(ASCII_WORDS_O200K[index * 8 : index * 8 + 8], "little") & mask == mask:
            o[57] += 1
            o[58] += size
            return
    o[59] += 1
    o[60] += size


def count_features(data: bytes) -> list[int]:
    """The NFEAT feature counts of ``data`` (see the module docstring)."""
    o = [0] * NFEAT
    n = len(data)
    # where the current digit run, non-ASCII run and ASCII letter piece start
    digits_from = words_from = letters_from = 0
    for i in range(n):
        a = data[i]
        p = data[i - 1] if i else 0
        x = data[i + 1] if i + 1 < n else 0
        letter = 97 <= (a | 32) <= 122
        digit = 48 <= a <= 57
        space = _space(a)
        space_p = _space(p)
        newline = a == 10 or a == 13
        punct = a < 128 and not (letter or digit or space or newline)
        punct_p = i > 0 and not (
            p >= 128 or 97 <= (p | 32) <= 122 or 48 <= p <= 57 or space_p or p == 10 or p == 13
        )
        if letter:
            o[2] += 1
            if not 97 <= (p | 32) <= 122:
                o[0 if space_p else 1] += 1
            if 65 <= a <= 90 and 65 <= p <= 90 and 97 <= x <= 122:
                o[16] += 1
            if not 97 <= (p | 32) <= 122 or (65 <= a <= 90 and 97 <= p <= 122):
                letters_from = i - 1 if p == 32 else i
            if not 97 <= (x | 32) <= 122 or (65 <= x <= 90 and 97 <= a <= 122):
                _ascii_word(data, letters_from, i + 1, o)
        elif digit:
            o[3] += 1
            if not 48 <= p <= 57:
                o[4] += 1
                digits_from = i
            elif (i - digits_from) % 3 == 0:
                o[44] += 1
        elif punct:
            o[5] += 1
            if 97 <= (x | 32) <= 122:
                o[6] += 1
            if not punct_p:
                o[12] += 1
            if space_p:
                o[13] += 1
        elif space:
            o[7] += 1
            if space_p:
                o[8] += 1
                if not _space(x):
                    o[14] += 1
            if 48 <= x <= 57:
                o[9] += 1
            if a == 9:
                o[17] += 1
        elif newline:
            o[11] += 1
            if p != 10 and p != 13:
                o[10] += 1
            if punct_p:
                o[15] += 1
        if a < 0x80:
            if 0x80 <= p <= 0xBF:
                o[19] += 1
            continue
        if p < 0x80:
            words_from = i - 1 if p == 32 else i
        if x < 0x80:
            _word(data, words_from, i + 1, o)
        if a >= 0xC0:
            if p < 0x80 and not space_p:
                o[18] += 1
            if a < 0xE0:
                if not 0x80 <= p <= 0xBF:
                    o[20] += 1
                if space_p:
                    o[21] += 1
                if 0xC2 <= a <= 0xCA:
                    o[22] += 1
                elif 0xCD <= a <= 0xCF:
                    o[23] += 1
                elif 0xD0 <= a <= 0xD4:
                    o[24] += 1
                elif a >= 0xD6:
                    o[25] += 1
            elif a >= 0xF0:
                o[26] += 1
            elif 0xEA <= a <= 0xED:
                o[27] += 1
            elif 0xE4 <= a <= 0xE9:
                o[28] += 1
            if 0xC2 <= a <= 0xEF:
                _char(data, n, i, o)
    return o


def estimate_text_tokens(data: bytes, family: int = 0) -> int:
    """Estimated tokens of one UTF-8 text for a family index (0 cl100k, 1 o200k, 2 claude)."""
    weights = WEIGHTS[family]
    total = 0
    for w, c in zip(weights, count_features(data), strict=True):
        total += w * c
    return 0 if total < 0 else (total + 500) // 1000
