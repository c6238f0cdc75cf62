# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled HTTP/1.1 response decoder for upstream connections.

One pass over the bytes: status line, headers, then the body framed by
``Transfer-Encoding: chunked``, ``Content-Length``, or the connection's end.
It hands out de-chunked body bytes; SSE scanning is ``hotpath.sse``'s job.
Same contract as the pure twin ``hotpath/_http_py.py`` (built on h11): read
that docstring for the rules.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp

DEFAULT_MAX_HEAD = 64 * 1024

cdef enum:
    HEAD = 0
    LENGTH = 1
    CHUNK_SIZE = 2
    CHUNK_DATA = 3
    CHUNK_END = 4
    TRAILER = 5
    UNTIL_CLOSE = 6
    DONE = 7

_EMPTY = b""


class HTTPDecodeError(ValueError):
    """The provider's bytes are not a valid HTTP/1.1 response."""


cdef inline Py_ssize_t find_crlf(const char* p, Py_ssize_t start, Py_ssize_t n):
    cdef const char* hit
    cdef Py_ssize_t i = start
    while i < n:
        hit = <const char*>memchr(p + i, 13, n - i)
        if hit == NULL:
            return -1
        i = hit - p
        if i + 1 < n and p[i + 1] == 10:
            return i
        if i + 1 >= n:
            return -1
        i += 1
    return -1


cdef inline bint is_space(char c):
    return c == 32 or c == 9


cdef inline bint is_tchar(unsigned char c):
    if c >= 48 and c <= 57:
        return True
    if (c >= 65 and c <= 90) or (c >= 97 and c <= 122):
        return True
    return memchr(b"!#$%&'*+-.^_`|~", c, 15) != NULL


cdef class ResponseDecoder:

    def __cinit__(self, bytes method=b"POST", Py_ssize_t max_head=DEFAULT_MAX_HEAD):
        self.status = 0
        self.headers = []
        self.keep_alive = True
        self.complete = False
        self._http10 = False
        self._mode = HEAD
        self._left = 0
        self._buf = _EMPTY
        self._body = []
        self._max_head = max_head
        self._head_only = method == b"HEAD"

    @property
    def head_done(self):
        return self._mode != HEAD

    def take_body(self):
        cdef list body = self._body
        if not body:
            return _EMPTY
        self._body = []
        if len(body) == 1:
            return body[0]
        return _EMPTY.join(body)

    def feed(self, bytes data not None):
        cdef bytes buf
        cdef const char* p
        cdef Py_ssize_t n, pos, eol, take
        if self._mode == DONE:
            if PyBytes_GET_SIZE(data):
                raise HTTPDecodeError("bytes after the end of the response")
            return
        if PyBytes_GET_SIZE(self._buf):
            buf = self._buf + data
        else:
            buf = data
        p = PyBytes_AS_STRING(buf)
        n = PyBytes_GET_SIZE(buf)
        pos = 0
        while pos < n and self._mode != DONE:
            if self._mode == HEAD:
                eol = self._head_end(p, pos, n)
                if eol < 0:
                    if n - pos > self._max_head:
                        raise HTTPDecodeError("response head too large")
                    break
                if eol - pos > self._max_head:
                    raise HTTPDecodeError("response head too large")
                pos = self._parse_head(p, pos, eol)
            elif self._mode == LENGTH or self._mode == CHUNK_DATA:
                take = n - pos
                if take > self._left:
                    take = <Py_ssize_t>self._left
                if take:
                    self._body.append(PyBytes_FromStringAndSize(p + pos, take) if (pos or take != n) else buf)
                pos += take
                self._left -= take
                if self._left == 0:
                    if self._mode == LENGTH:
                        self._finish()
                    else:
                        self._mode = CHUNK_END
                elif take == 0:
                    break
            elif self._mode == UNTIL_CLOSE:
                self._body.append(PyBytes_FromStringAndSize(p + pos, n - pos) if pos else buf)
                pos = n
            elif self._mode == CHUNK_END:
                if n - pos < 2:
                    break
                if p[pos] != 13 or p[pos + 1] != 10:
                    raise HTTPDecodeError("chunk data not followed by CRLF")
                pos += 2
                self._mode = CHUNK_SIZE
            elif self._mode == CHUNK_SIZE:
                eol = find_crlf(p, pos, n)
                if eol < 0:
                    if n - pos > 1024:
                        raise HTTPDecodeError("chunk size line too long")
                    break
                self._chunk_size(p, pos, eol)
                pos = eol + 2
            else:  # TRAILER: skip header lines until the blank one
                eol = find_crlf(p, pos, n)
                if eol < 0:
                    if n - pos > self._max_head:
                        raise HTTPDecodeError("trailers too large")
                    break
                if eol == pos:
                    self._finish()
                pos = eol + 2
        if pos >= n:
            self._buf = _EMPTY
        else:
            if self._mode == DONE:
                raise HTTPDecodeError("bytes after the end of the response")
            self._buf = PyBytes_FromStringAndSize(p + pos, n - pos)

    def feed_eof(self):
        """The connection ended: completes a read-until-close body, else it is an error."""
        if self._mode == UNTIL_CLOSE:
            self._finish()
            return
        if self._mode != DONE:
            raise HTTPDecodeError("connection closed before the response was complete")

    cdef void _finish(self):
        self._mode = DONE
        self.complete = True

    cdef Py_ssize_t _head_end(self, const char* p, Py_ssize_t pos, Py_ssize_t n):
        """Index of the LF that ends the head's last line (the blank line follows it), or -1.

        Lines end in CRLF or a bare LF, as h11 (and RFC 9112 section 2.2) accept.
        """
        cdef const char* hit
        cdef Py_ssize_t i = pos
        while i < n:
            hit = <const char*>memchr(p + i, 10, n - i)
            if hit == NULL:
                return -1
            i = hit - p
            if i + 1 < n and p[i + 1] == 10:
                return i
            if i + 2 < n and p[i + 1] == 13 and p[i + 2] == 10:
                return i
            if i + 2 >= n and (i + 1 >= n or p[i + 1] == 13):
                return -1  # the blank line may still be arriving
            i += 1
        return -1

    cdef Py_ssize_t _parse_head(self, const char* p, Py_ssize_t pos, Py_ssize_t end) except -1:
        """Parse the head in p[pos:end] (end = the LF of its last line); return where the body starts."""
        cdef Py_ssize_t eol, lend, i, colon, vstart, vend, k
        cdef long long length = -1
        cdef long long value
        cdef bint chunked = False
        cdef bint close = False
        cdef bint keep = False
        cdef int status = 0
        cdef unsigned char c
        cdef bytes name
        cdef bytes val
        cdef list headers = []
        cdef Py_ssize_t body_start = end + 2 if p[end + 1] == 10 else end + 3
        eol = <const char*>memchr(p + pos, 10, end + 1 - pos) - p
        lend = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
        if lend - pos < 12 or memcmp(p + pos, b"HTTP/1.", 7) != 0 or p[pos + 8] != 32:
            raise HTTPDecodeError("malformed status line")
        if p[pos + 7] == 48:
            self._http10 = True
        elif p[pos + 7] != 49:
            raise HTTPDecodeError("unsupported HTTP version")
        for i in range(pos + 9, pos + 12):
            if p[i] < 48 or p[i] > 57:
                raise HTTPDecodeError("malformed status code")
            status = status * 10 + (p[i] - 48)
        if lend > pos + 12 and p[pos + 12] != 32:
            raise HTTPDecodeError("malformed status line")
        if status < 100:
            raise HTTPDecodeError("malformed status code")
        i = eol + 1
        while i <= end:
            eol = <const char*>memchr(p + i, 10, end + 1 - i) - p
            lend = eol - 1 if eol > i and p[eol - 1] == 13 else eol
            if is_space(p[i]):
                raise HTTPDecodeError("obsolete line folding in headers")
            colon = i
            while colon < lend and p[colon] != 58:
                if not is_tchar(<unsigned char>p[colon]):
                    raise HTTPDecodeError("invalid header name")
                colon += 1
            if colon == lend or colon == i:
                raise HTTPDecodeError("malformed header line")
            vstart = colon + 1
            while vstart < lend and is_space(p[vstart]):
                vstart += 1
            vend = lend
            while vend > vstart and is_space(p[vend - 1]):
                vend -= 1
            for k in range(vstart, vend):
                c = <unsigned char>p[k]
                if c == 0 or (c >= 10 and c <= 13):
                    raise HTTPDecodeError("invalid character in a header value")
            name = PyBytes_FromStringAndSize(p + i, colon - i).lower()
            val = PyBytes_FromStringAndSize(p + vstart, vend - vstart)
            headers.append((name, val))
            if name == b"content-length":
                if vend == vstart or vend - vstart > 18:
                    raise HTTPDecodeError("invalid content-length")
                value = 0
                for k in range(vstart, vend):
                    if p[k] < 48 or p[k] > 57:
                        raise HTTPDecodeError("invalid content-length")
                    value = value * 10 + (p[k] - 48)
                if length >= 0 and length != value:
                    raise HTTPDecodeError("conflicting content-length")
                length = value
            elif name == b"transfer-encoding":
                if val.lower() != b"chunked" or chunked:
                    raise HTTPDecodeError("unsupported transfer-encoding")
                chunked = True
            elif name == b"connection":
                low = val.lower()
                if b"close" in low:
                    close = True
                if b"keep-alive" in low:
                    keep = True
            i = eol + 1
        if 100 <= status < 200:
            # informational (100 Continue, 103 Early Hints): skip it, a real head follows
            return body_start
        self.status = status
        self.headers = headers
        self.keep_alive = not close and (not self._http10 or keep)
        if chunked and length >= 0:
            raise HTTPDecodeError("both transfer-encoding and content-length")
        if self._head_only or status == 204 or status == 304:
            self._finish()
        elif chunked:
            self._mode = CHUNK_SIZE
        elif length >= 0:
            self._left = length
            self._mode = LENGTH
            if length == 0:
                self._finish()
        else:
            self._mode = UNTIL_CLOSE
            self.keep_alive = False
        return body_start

    cdef int _chunk_size(self, const char* p, Py_ssize_t pos, Py_ssize_t eol) except -1:
        cdef long long size = 0
        cdef Py_ssize_t i = pos
        cdef int digits = 0
        cdef char c
        while i < eol:
            c = p[i]
            if c >= 48 and c <= 57:
                size = size * 16 + (c - 48)
            elif c >= 97 and c <= 102:
                size = size * 16 + (c - 87)
            elif c >= 65 and c <= 70:
                size = size * 16 + (c - 55)
            else:
                break
            digits += 1
            if digits > 15:
                raise HTTPDecodeError("chunk size too large")
            i += 1
        if digits == 0:
            raise HTTPDecodeError("invalid chunk size")
        while i < eol and is_space(p[i]):
            i += 1
        if i < eol and p[i] != 59:  # ';' starts chunk extensions, which are ignored
            raise HTTPDecodeError("invalid chunk size")
        if size == 0:
            self._mode = TRAILER
        else:
            self._left = size
            self._mode = CHUNK_DATA
        return 0
