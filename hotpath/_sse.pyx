# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled SSE scanner: split a byte stream into ``(name, data)`` events.

Same contract as the pure twin ``hotpath/_sse_py.py`` (read its docstring for
the parsing rules). The loop walks the bytes once with a C pointer and builds
Python objects only for the fields it keeps: the event name and data lines.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp

cdef enum:
    LF = 10
    CR = 13
    COLON = 58
    SPACE = 32

DEFAULT_MAX_EVENT_BYTES = 1 << 20

_EMPTY = b""
_LF = b"\n"


class SSEError(ValueError):
    """The stream holds an event larger than the scanner's limit."""


cdef class SSEScanner:

    def __cinit__(self, Py_ssize_t max_event_bytes=DEFAULT_MAX_EVENT_BYTES):
        self._partial = _EMPTY
        self._name = _EMPTY
        self._data = []
        self._pending = 0
        self._max = max_event_bytes
        self._skip_lf = False

    @property
    def has_pending(self):
        return PyBytes_GET_SIZE(self._partial) > 0 or len(self._data) > 0 or PyBytes_GET_SIZE(self._name) > 0

    def feed(self, bytes chunk not None):
        cdef list events = []
        cdef bytes buf
        cdef const char* p
        cdef Py_ssize_t n, pos, i, end, nxt
        cdef char c
        if PyBytes_GET_SIZE(chunk) == 0:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if PyBytes_AS_STRING(chunk)[0] == LF:
                chunk = chunk[1:]
        if PyBytes_GET_SIZE(self._partial) > 0:
            buf = self._partial + chunk
        else:
            buf = chunk
        p = PyBytes_AS_STRING(buf)
        n = PyBytes_GET_SIZE(buf)
        pos = 0
        i = 0
        while i < n:
            c = p[i]
            if c == LF:
                end = i
                nxt = i + 1
            elif c == CR:
                end = i
                if i + 1 < n:
                    nxt = i + 2 if p[i + 1] == LF else i + 1
                else:
                    nxt = n
                    self._skip_lf = True
            else:
                i += 1
                continue
            self._line(p + pos, end - pos, events)
            pos = nxt
            i = nxt
        if pos == 0:
            self._partial = buf
        elif pos < n:
            self._partial = PyBytes_FromStringAndSize(p + pos, n - pos)
        else:
            self._partial = _EMPTY
        if self._pending + PyBytes_GET_SIZE(self._partial) > self._max:
            raise SSEError(f"SSE event exceeds {self._max} bytes")
        return events

    cdef int _line(self, const char* p, Py_ssize_t n, list events) except -1:
        cdef Py_ssize_t colon, vstart
        if n == 0:
            if len(self._data) > 0:
                events.append((self._name, _LF.join(self._data)))
            self._name = _EMPTY
            self._data = []
            self._pending = 0
            return 0
        if p[0] == COLON:
            return 0
        colon = 0
        while colon < n and p[colon] != COLON:
            colon += 1
        if colon == n:
            vstart = n
        else:
            vstart = colon + 1
            if vstart < n and p[vstart] == SPACE:
                vstart += 1
        if colon == 4 and memcmp(p, b"data", 4) == 0:
            self._data.append(PyBytes_FromStringAndSize(p + vstart, n - vstart))
            self._pending += n - vstart + 1
            if self._pending > self._max:
                raise SSEError(f"SSE event exceeds {self._max} bytes")
        elif colon == 5 and memcmp(p, b"event", 5) == 0:
            self._name = PyBytes_FromStringAndSize(p + vstart, n - vstart)
        return 0
