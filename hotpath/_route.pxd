# Interface of the compiled routing decision; see _route.pyx.

cdef class CandidateTable:
    cdef readonly long n
    cdef double* price_in
    cdef double* price_out
    cdef double* price_cached
    cdef double* quality
    cdef long* window
    cdef long* caps
    cdef long* state
    cdef double* p95_ms
    cdef double* last_failure

    cpdef double cost(self, long i, long input_tokens, long output_tokens, long cached=*) noexcept
