# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled token estimator: one pass over UTF-8 bytes, no decoding, no objects.

Same rules, constants and integer arithmetic as the pure twin
``hotpath/_tokens_py.py`` (read its docstring); the constants are read from
it at import so the two can never drift apart.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from hotpath import _tokens_py as _twin

cdef long WORD_FREE = _twin.WORD_FREE
cdef long WORD_STEP = _twin.WORD_STEP
cdef long CAPS_STEP = _twin.CAPS_STEP
cdef long PUNCT_STEP = _twin.PUNCT_STEP
cdef long SPACE_STEP = _twin.SPACE_STEP
cdef long NEWLINE = _twin.NEWLINE
cdef long NEWLINE_STEP = _twin.NEWLINE_STEP
cdef long HAN = _twin.HAN
cdef long HANGUL = _twin.HANGUL
cdef long KANA = _twin.KANA
cdef long TWO_BYTE = _twin.TWO_BYTE
cdef long SYMBOL = _twin.SYMBOL
cdef long EMOJI = _twin.EMOJI


cdef inline bint is_letter(unsigned char c) nogil:
    return (c >= 97 and c <= 122) or (c >= 65 and c <= 90)


cdef inline bint is_digit(unsigned char c) nogil:
    return c >= 48 and c <= 57


cdef inline bint is_space(unsigned char c) nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef inline long word_cost(long length, long caps) nogil:
    cdef long cost = 100
    cdef long alt
    if length > WORD_FREE:
        cost += 100 * ((length - WORD_FREE + WORD_STEP - 1) // WORD_STEP)
    if caps == length and length > CAPS_STEP:
        alt = 100 * ((length + CAPS_STEP - 1) // CAPS_STEP)
        if alt > cost:
            cost = alt
    return cost


cpdef long estimate_text_tokens(bytes text) except -1:
    """Estimated cl100k_base tokens of one UTF-8 text."""
    cdef const unsigned char* data = <const unsigned char*>PyBytes_AS_STRING(text)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text)
    cdef Py_ssize_t i = 0, start, last_nl, run
    cdef long total = 0, caps
    cdef unsigned char c, second
    with nogil:
        while i < n:
            c = data[i]
            if is_letter(c):
                start = i
                caps = 0
                while i < n:
                    c = data[i]
                    if c >= 65 and c <= 90:
                        caps += 1
                    elif not (c >= 97 and c <= 122):
                        break
                    i += 1
                total += word_cost(i - start, caps)
            elif is_digit(c):
                start = i
                while i < n and is_digit(data[i]):
                    i += 1
                total += 100 * ((i - start + 2) // 3)
            elif is_space(c):
                start = i
                last_nl = -1
                while i < n and is_space(data[i]):
                    if data[i] == 10 or data[i] == 13:
                        last_nl = i
                    i += 1
                if last_nl >= 0:
                    total += NEWLINE + 100 * ((last_nl - start) // NEWLINE_STEP)
                    start = last_nl + 1
                run = i - start
                if run and i < n and not is_digit(data[i]):
                    run -= 1
                if run > 0:
                    total += 100 * ((run + SPACE_STEP - 1) // SPACE_STEP)
            elif c < 128:
                start = i
                while i < n and data[i] < 128 and not is_letter(data[i]) and not is_digit(data[i]) and not is_space(data[i]):
                    i += 1
                run = i - start
                if i < n and (is_letter(data[i]) or data[i] >= 0xC0):
                    run -= 1
                if run > 0:
                    total += 100 * ((run + PUNCT_STEP - 1) // PUNCT_STEP)
                while i < n and (data[i] == 10 or data[i] == 13):
                    i += 1
            elif c >= 0xF0:
                total += EMOJI
                i += 4
            elif c >= 0xE0:
                second = data[i + 1] if i + 1 < n else 0
                if c == 0xE3:
                    total += KANA
                elif c >= 0xE4 and c <= 0xE9:
                    total += HAN
                elif c >= 0xEA and c <= 0xED:
                    total += HANGUL
                elif c == 0xEF and second >= 0xBC and second <= 0xBF:
                    total += KANA
                else:
                    total += SYMBOL
                i += 3
            elif c >= 0xC0:
                total += TWO_BYTE
                i += 2
            else:
                i += 1
    return (total + 50) // 100
