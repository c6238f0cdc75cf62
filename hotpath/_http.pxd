# Interface of the compiled upstream response decoder; see _http.pyx.

cdef class ResponseDecoder:
    cdef public int status
    cdef public list headers
    cdef public bint keep_alive
    cdef public bint complete
    cdef bint _http10
    cdef int _mode
    cdef long long _left
    cdef bytes _buf
    cdef list _body
    cdef Py_ssize_t _max_head
    cdef bint _head_only

    cdef void _finish(self)
    cdef Py_ssize_t _head_end(self, const char* p, Py_ssize_t pos, Py_ssize_t n)
    cdef Py_ssize_t _parse_head(self, const char* p, Py_ssize_t pos, Py_ssize_t end) except -1
    cdef int _chunk_size(self, const char* p, Py_ssize_t pos, Py_ssize_t eol) except -1
