"""Pure-Python twin of ``hotpath._tokens``: estimate tokens from UTF-8 bytes.

The estimate follows how cl100k-style tokenizers cut text before BPE runs
(letters, digits in groups of three, punctuation runs, whitespace runs), and
charges each piece an expected token count, without decoding to ``str`` or
building per-token objects:

- a run of letters: 1 token up to ``WORD_FREE`` letters, then one more per
  ``WORD_STEP`` letters; a capitals-only run one per ``CAPS_STEP``;
- digits: one token per group of up to three;
- a run of ASCII punctuation: one token per ``PUNCT_STEP`` characters;
- one leading mark joins the word after it (``.get``, ``(self``) and line
  breaks right after punctuation join it;
- a single space before a word or punctuation is free (it joins the piece;
  not before digits); longer runs of spaces or tabs cost one token per
  ``SPACE_STEP``; whitespace up to the last line break of a run costs
  ``NEWLINE`` plus one token per ``NEWLINE_STEP`` characters;
- other scripts by code point: kana and CJK punctuation 1, Han ideographs
  ``HAN``, Hangul ``HANGUL``, two-byte letters (Latin accents, Cyrillic,
  Greek, ...) ``TWO_BYTE``, other three-byte symbols ``SYMBOL``, four-byte
  characters (emoji) ``EMOJI`` tokens each.

The constants were fitted on tests/data/corpus.jsonl against the real
cl100k_base tokenizer (bench/hotpath.py prints the accuracy table). Both
twins compute in integer arithmetic on the same constants (scaled by 100),
so they agree exactly.

Invariant: the twins return equal results for every input.
"""

from __future__ import annotations

# costs in hundredths of a token
WORD_FREE = 11
WORD_STEP = 3
CAPS_STEP = 3
PUNCT_STEP = 1
SPACE_STEP = 24
NEWLINE = 70
NEWLINE_STEP = 7
HAN = 110
HANGUL = 150
KANA = 100
TWO_BYTE = 70
SYMBOL = 220
EMOJI = 260


def _word(length: int, caps: int) -> int:
    cost = 100
    if length > WORD_FREE:
        cost += 100 * ((length - WORD_FREE + WORD_STEP - 1) // WORD_STEP)
    if caps == length and length > CAPS_STEP:
        cost = max(cost, 100 * ((length + CAPS_STEP - 1) // CAPS_STEP))
    return cost


def estimate_text_tokens(data: bytes) -> int:
    """Estimated cl100k_base tokens of one UTF-8 text."""
    n = len(data)
    i = 0
    total = 0  # hundredths
    while i < n:
        c = data[i]
        if (97 <= c <= 122) or (65 <= c <= 90):
            start = i
            caps = 0
            while i < n:
                c = data[i]
                if 65 <= c <= 90:
                    caps += 1
                elif not 97 <= c <= 122:
                    break
                i += 1
            total += _word(i - start, caps)
        elif 48 <= c <= 57:
            start = i
            while i < n and 48 <= data[i] <= 57:
                i += 1
            total += 100 * ((i - start + 2) // 3)
        elif c == 32 or c == 9 or c == 10 or c == 13:
            start = i
            last_nl = -1
            while i < n and (data[i] == 32 or data[i] == 9 or data[i] == 10 or data[i] == 13):
                if data[i] == 10 or data[i] == 13:
                    last_nl = i
                i += 1
            if last_nl >= 0:
                total += NEWLINE + 100 * ((last_nl - start) // NEWLINE_STEP)
                start = last_nl + 1
            run = i - start
            if run and i < n and not (48 <= data[i] <= 57):
                run -= 1  # the last space joins the word or punctuation after it
            if run > 0:
                total += 100 * ((run + SPACE_STEP - 1) // SPACE_STEP)
        elif c < 128:
            start = i
            while i < n and data[i] < 128 and _is_punct(data[i]):
                i += 1
            run = i - start
            if i < n and ((97 <= data[i] <= 122) or (65 <= data[i] <= 90) or data[i] >= 0xC0):
                run -= 1  # one leading mark joins the word after it (".get", "(self")
            if run > 0:
                total += 100 * ((run + PUNCT_STEP - 1) // PUNCT_STEP)
            while i < n and (data[i] == 10 or data[i] == 13):
                i += 1  # line breaks right after punctuation join it
        elif c >= 0xF0:
            total += EMOJI
            i += 4
        elif c >= 0xE0:
            total += _three_byte(c, data[i + 1] if i + 1 < n else 0)
            i += 3
        elif c >= 0xC0:
            total += TWO_BYTE
            i += 2
        else:
            i += 1  # a stray continuation byte
    return (total + 50) // 100


def _is_punct(c: int) -> bool:
    return not (
        (97 <= c <= 122)
        or (65 <= c <= 90)
        or (48 <= c <= 57)
        or c == 32
        or c == 9
        or c == 10
        or c == 13
    )


def _three_byte(lead: int, second: int) -> int:
    if lead == 0xE3:
        return KANA  # U+3000-U+3FFF: CJK punctuation, hiragana, katakana
    if 0xE4 <= lead <= 0xE9:
        return HAN  # U+4000-U+9FFF: CJK ideographs
    if 0xEA <= lead <= 0xED:
        return HANGUL
    if lead == 0xEF and 0xBC <= second <= 0xBF:
        return KANA  # fullwidth forms
    return SYMBOL
