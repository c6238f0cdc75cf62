# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled token estimator: the feature counts of ``hotpath/_tokens_py.py``,
16 bytes at a time (SSE2 where the compiler has it; the same counts from a
scalar loop elsewhere), and the same integer weights, read from the twin.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from hotpath import _tokens_py as _twin


cdef extern from "_tokcount.h":
    enum: NFEAT
    void count_features(const unsigned char* d, Py_ssize_t n, long long* out) nogil


cdef long long WEIGHTS[NFEAT]
for _i, _w in enumerate(_twin.WEIGHTS):
    WEIGHTS[_i] = _w


cpdef long estimate_text_tokens(bytes text) except -1:
    """Estimated cl100k_base tokens of one UTF-8 text."""
    cdef long long counts[NFEAT]
    cdef long long total = 0
    cdef int k
    cdef const unsigned char* data = <const unsigned char*>PyBytes_AS_STRING(text)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text)
    with nogil:
        count_features(data, n, counts)
        for k in range(NFEAT):
            total += WEIGHTS[k] * counts[k]
    if total < 0:
        return 0
    return <long>((total + 500) // 1000)


def feature_counts(bytes text):
    """The raw counts (for tests: the SIMD and scalar paths must agree with the twin)."""
    cdef long long counts[NFEAT]
    count_features(<const unsigned char*>PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), counts)
    return [counts[k] for k in range(NFEAT)]
