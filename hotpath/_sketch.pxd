# Interface of the compiled latency sketch; see _sketch.pyx.

cdef class LatencySketch:
    cdef readonly double alpha
    cdef double _gamma_log
    cdef long _offset
    cdef long _size
    cdef long _slots
    cdef double _slot_s
    cdef long long* _counts
    cdef long long* _epochs

    cdef inline long _index(self, double value) noexcept nogil
    cdef long _live(self, double now, long* out) noexcept
    cdef double _value(self, long index) noexcept
    cpdef void add(self, double value, double now) noexcept
