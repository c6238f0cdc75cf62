# Interface of the compiled SSE scanner; see _sse.pyx.

cdef class SSEScanner:
    cdef bytes _partial
    cdef bytes _name
    cdef list _data
    cdef Py_ssize_t _pending
    cdef Py_ssize_t _max
    cdef bint _skip_lf

    cdef int _line(self, const char* p, Py_ssize_t n, list events) except -1
