# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled windowed latency sketch; same contract as ``hotpath/_sketch_py.py``.

Counts live in one C array (slots x buckets); ``add`` is a log, a division
and an increment.
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.math cimport ceil, exp, floor, log
from libc.string cimport memcpy, memset

from hotpath import _sketch_py as _twin

cdef double MIN_VALUE = _twin.MIN_VALUE
cdef double MAX_VALUE = _twin.MAX_VALUE


cdef class LatencySketch:

    def __cinit__(self, double window_s=60.0, long slots=6, double alpha=0.01):
        if not (0 < alpha < 1) or slots < 1 or window_s <= 0:
            raise ValueError("alpha must be in (0, 1), slots >= 1, window_s > 0")
        self.alpha = alpha
        self._gamma_log = log((1 + alpha) / (1 - alpha))
        self._offset = <long>ceil(log(MIN_VALUE) / self._gamma_log)
        self._size = <long>ceil(log(MAX_VALUE) / self._gamma_log) - self._offset + 1
        self._slots = slots
        self._slot_s = window_s / slots
        self._counts = <long long*>PyMem_Calloc(slots * self._size, sizeof(long long))
        self._epochs = <long long*>PyMem_Calloc(slots, sizeof(long long))
        if self._counts == NULL or self._epochs == NULL:
            raise MemoryError()
        for s in range(slots):
            self._epochs[s] = -1

    def __dealloc__(self):
        PyMem_Free(self._counts)
        PyMem_Free(self._epochs)

    cdef inline long _index(self, double value) noexcept nogil:
        if value <= MIN_VALUE:
            return 0
        if value >= MAX_VALUE:
            return self._size - 1
        return <long>ceil(log(value) / self._gamma_log) - self._offset

    cpdef void add(self, double value, double now) noexcept:
        cdef long long epoch = <long long>floor(now / self._slot_s)
        cdef long slot = <long>(epoch % self._slots)
        cdef long long* counts = self._counts + slot * self._size
        if self._epochs[slot] != epoch:
            memset(counts, 0, self._size * sizeof(long long))
            self._epochs[slot] = epoch
        counts[self._index(value)] += 1

    cdef long _live(self, double now, long* out) noexcept:
        cdef long long epoch = <long long>floor(now / self._slot_s)
        cdef long n = 0
        cdef long s
        for s in range(self._slots):
            if self._epochs[s] >= 0 and 0 <= epoch - self._epochs[s] < self._slots:
                out[n] = s
                n += 1
        return n

    def count(self, double now):
        cdef long live[256]
        cdef long n = self._live(now, live) if self._slots <= 256 else 0
        cdef long long total = 0
        cdef long k, i
        for k in range(n):
            for i in range(self._size):
                total += self._counts[live[k] * self._size + i]
        return total

    def quantile(self, double q, double now):
        """The ``q`` quantile (0..1) of the values in the window; 0.0 when it is empty."""
        cdef long live[256]
        cdef long n = self._live(now, live) if self._slots <= 256 else 0
        cdef long long total = 0
        cdef long long seen = 0
        cdef long k, i
        cdef double rank
        for k in range(n):
            for i in range(self._size):
                total += self._counts[live[k] * self._size + i]
        if total == 0:
            return 0.0
        rank = q * (total - 1)
        for i in range(self._size):
            for k in range(n):
                seen += self._counts[live[k] * self._size + i]
            if seen > rank:
                return self._value(i)
        return self._value(self._size - 1)

    cdef double _value(self, long index) noexcept:
        cdef double gamma = exp(self._gamma_log)
        return 2.0 * exp((index + self._offset) * self._gamma_log) / (gamma + 1.0)

    def merge(self, LatencySketch other not None):
        """Add ``other``'s counts (same shape) slot by slot, keeping the newer epoch of each slot."""
        cdef long s, i
        cdef long long mine, theirs
        if other._size != self._size or other._slots != self._slots or other._slot_s != self._slot_s:
            raise ValueError("sketches of different shapes cannot be merged")
        for s in range(self._slots):
            mine, theirs = self._epochs[s], other._epochs[s]
            if theirs < 0 or theirs < mine:
                continue
            if theirs > mine:
                memcpy(self._counts + s * self._size, other._counts + s * self._size, self._size * sizeof(long long))
                self._epochs[s] = theirs
            else:
                for i in range(self._size):
                    self._counts[s * self._size + i] += other._counts[s * self._size + i]

    def dump(self):
        """The sketch as plain data (its live slots, sparse), for another process to ``load``."""
        cdef long s, i
        cdef long long c
        slots = []
        for s in range(self._slots):
            if self._epochs[s] < 0:
                continue
            nonzero = {}
            for i in range(self._size):
                c = self._counts[s * self._size + i]
                if c:
                    nonzero[str(i)] = c
            slots.append([s, self._epochs[s], nonzero])
        return {"alpha": self.alpha, "slots": self._slots, "slot_s": self._slot_s, "data": slots}

    def load(self, state):
        """Replace the counts with a ``dump`` of a sketch of the same shape."""
        cdef long s, i
        if state["alpha"] != self.alpha or state["slots"] != self._slots or state["slot_s"] != self._slot_s:
            raise ValueError("the dump is of a sketch of another shape")
        for s in range(self._slots):
            self._epochs[s] = -1
            for i in range(self._size):
                self._counts[s * self._size + i] = 0
        for s, epoch, nonzero in state["data"]:
            if not 0 <= s < self._slots:
                raise ValueError("slot out of range")
            self._epochs[s] = epoch
            for key, c in nonzero.items():
                i = int(key)
                if not 0 <= i < self._size:
                    raise ValueError("bucket out of range")
                self._counts[s * self._size + i] = c

