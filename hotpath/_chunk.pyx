# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled reader of a provider's common stream chunk: the text of an event that holds one
piece of text and nothing else, without parsing its JSON.

Same contract as the pure twin ``hotpath/_chunk_py.py`` (read its docstring);
one pass over the bytes with C pointers, and one Python object made: the text.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp


cdef Py_ssize_t _find(const char* p, Py_ssize_t start, Py_ssize_t stop,
                      const char* needle, Py_ssize_t m) noexcept nogil:
    """The first position of ``needle`` in ``p[start:stop]``, or -1."""
    cdef const char* at
    cdef Py_ssize_t i = start
    if m == 0:
        return start
    while stop - i >= m:
        at = <const char*>memchr(p + i, needle[0], stop - i - m + 1)
        if at == NULL:
            return -1
        i = at - p
        if memcmp(at, needle, m) == 0:
            return i
        i += 1
    return -1


def quoted_text(bytes data not None, bytes head not None, bytes tail not None,
                bytes absent_after not None=b"", bytes absent_before not None=b""):
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t hn = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t tn = PyBytes_GET_SIZE(tail)
    cdef Py_ssize_t i, start, end
    cdef char c
    i = _find(p, 0, n, PyBytes_AS_STRING(head), hn)
    if i <= 0:
        return None  # (a chunk's JSON object opens before any field it holds)
    start = i + hn
    end = start
    while end < n:
        c = p[end]
        if c == 34:  # the closing quote
            break
        if c == 92:  # an escape: JSON decodes it, not this
            return None
        end += 1
    if end >= n or end == start:
        return None
    if n - end < tn or memcmp(p + end, PyBytes_AS_STRING(tail), tn) != 0:
        return None
    if PyBytes_GET_SIZE(absent_after) and _find(
        p, end, n, PyBytes_AS_STRING(absent_after), PyBytes_GET_SIZE(absent_after)
    ) >= 0:
        return None
    if PyBytes_GET_SIZE(absent_before) and _find(
        p, 0, i, PyBytes_AS_STRING(absent_before), PyBytes_GET_SIZE(absent_before)
    ) >= 0:
        return None
    return PyUnicode_DecodeUTF8(p + start, end - start, NULL)
