# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled token estimator: the feature counts of ``hotpath/_tokens_py.py``,
16 bytes at a time (SSE2 where the compiler has it; the same counts from a
scalar loop elsewhere). The weights of every family and the character tables
are copied from the twin at import, so the two can never disagree on them.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy

from hotpath import _tokens_py as _twin


cdef extern from "_tokcount.h":
    enum: NFEAT
    enum: TC_WORD_BITS
    enum: TC_WORD_PROBES
    enum: TC_WORD_MAX
    enum: TC_PIECE_CHARS
    unsigned char tc_char_table[0xFF80]
    unsigned char tc_bigram_cl[4096]
    unsigned char tc_bigram_o[4096]
    unsigned char tc_words_cl[262144]
    unsigned char tc_words_o[262144]
    unsigned char tc_ascii_words_o[262144]
    void count_features(const unsigned char* d, Py_ssize_t n, long long* out) nogil


cdef enum:
    NFAMILIES = 3

cdef long long WEIGHTS[NFAMILIES][NFEAT]
if len(_twin.WEIGHTS) != NFAMILIES or any(len(w) != NFEAT for w in _twin.WEIGHTS):
    raise ImportError("hotpath._tokens_py has a different feature or family count")
for _f, _ws in enumerate(_twin.WEIGHTS):
    for _i, _w in enumerate(_ws):
        WEIGHTS[_f][_i] = _w


if (TC_WORD_BITS, TC_WORD_PROBES, TC_WORD_MAX, TC_PIECE_CHARS) != (
    _twin.WORD_BITS, _twin.WORD_PROBES, _twin.WORD_MAX, _twin.PIECE_CHARS
):
    raise ImportError("hotpath._tokens_py has different word-filter constants")


cdef void _copy_table(unsigned char* dst, bytes src, Py_ssize_t size) except *:
    if PyBytes_GET_SIZE(src) != size:
        raise ImportError("hotpath._tokens_tables does not match _tokcount.h")
    memcpy(dst, PyBytes_AS_STRING(src), size)


_copy_table(tc_char_table, _twin.CHAR_TABLE, 0xFF80)
_copy_table(tc_bigram_cl, _twin.BIGRAM_CL100K, 4096)
_copy_table(tc_bigram_o, _twin.BIGRAM_O200K, 4096)
_copy_table(tc_words_cl, _twin.WORDS_CL100K, 262144)
_copy_table(tc_words_o, _twin.WORDS_O200K, 262144)
_copy_table(tc_ascii_words_o, _twin.ASCII_WORDS_O200K, 262144)


cpdef long estimate_text_tokens(bytes text, int family=0) except -1:
    """Estimated tokens of one UTF-8 text; ``family`` 0 cl100k, 1 o200k, 2 claude."""
    cdef long long counts[NFEAT]
    cdef long long total = 0
    cdef long long* w
    cdef int k
    cdef const unsigned char* data = <const unsigned char*>PyBytes_AS_STRING(text)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text)
    if family < 0 or family >= NFAMILIES:
        raise ValueError(f"unknown family index {family}")
    w = WEIGHTS[family]
    with nogil:
        count_features(data, n, counts)
        for k in range(NFEAT):
            total += w[k] * counts[k]
    if total < 0:
        return 0
    return <long>((total + 500) // 1000)


def feature_counts(bytes text):
    """The raw counts (for tests: the SIMD and scalar paths must agree with the twin)."""
    cdef long long counts[NFEAT]
    count_features(<const unsigned char*>PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), counts)
    return [counts[k] for k in range(NFEAT)]
