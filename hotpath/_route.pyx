# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled routing decision; same rules and arithmetic as ``hotpath/_route_py.py``.

The candidate table is C arrays, updated by setters when prices or health
change; ``decide`` sorts the candidates with an insertion sort on the same keys as
the twin (stable, ties broken by pool order), in arrays sized to the pool.
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc

from hotpath import _route_py as _twin

cdef long CLOSED = _twin.CLOSED
cdef long OPEN = _twin.OPEN
cdef long QUALITY = _twin.QUALITY
cdef long VALUE = _twin.VALUE
cdef long OK = _twin.OK
cdef long WARN = _twin.WARN
cdef long DEGRADE = _twin.DEGRADE
cdef long BLOCK = _twin.BLOCK
cdef long DEGRADE_MODEL = _twin.DEGRADE_MODEL
cdef long MIN_DEGRADED_TOKENS = _twin.MIN_DEGRADED_TOKENS


cdef class CandidateTable:

    def __cinit__(self, long n):
        self.n = n
        self.price_in = <double*>PyMem_Calloc(n + 1, sizeof(double))
        self.price_out = <double*>PyMem_Calloc(n + 1, sizeof(double))
        self.price_cached = <double*>PyMem_Calloc(n + 1, sizeof(double))
        self.quality = <double*>PyMem_Calloc(n + 1, sizeof(double))
        self.window = <long*>PyMem_Calloc(n + 1, sizeof(long))
        self.caps = <long*>PyMem_Calloc(n + 1, sizeof(long))
        self.state = <long*>PyMem_Calloc(n + 1, sizeof(long))
        self.p95_ms = <double*>PyMem_Calloc(n + 1, sizeof(double))
        self.last_failure = <double*>PyMem_Calloc(n + 1, sizeof(double))
        if not (self.price_in and self.price_out and self.price_cached and self.quality and self.window and self.caps and self.state and self.p95_ms and self.last_failure):
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.price_in)
        PyMem_Free(self.price_out)
        PyMem_Free(self.price_cached)
        PyMem_Free(self.quality)
        PyMem_Free(self.window)
        PyMem_Free(self.caps)
        PyMem_Free(self.state)
        PyMem_Free(self.p95_ms)
        PyMem_Free(self.last_failure)

    def set_model(self, long i, double price_in, double price_out, double quality, long window, long caps, double price_cached=-1.0):
        self._check(i)
        self.price_in[i] = price_in
        self.price_cached[i] = price_in if price_cached < 0 else price_cached
        self.price_out[i] = price_out
        self.quality[i] = quality
        self.window[i] = window
        self.caps[i] = caps

    def set_health(self, long i, long state, double p95_ms, double last_failure):
        self._check(i)
        self.state[i] = state
        self.p95_ms[i] = p95_ms
        self.last_failure[i] = last_failure

    def _check(self, long i):
        if i < 0 or i >= self.n:
            raise IndexError(i)

    cpdef double cost(self, long i, long input_tokens, long output_tokens, long cached=0) noexcept:
        return (
            (input_tokens - cached) * self.price_in[i]
            + cached * self.price_cached[i]
            + output_tokens * self.price_out[i]
        ) / 1e6


cdef inline bint key_less(long ga, double va, long ra, long gb, double vb, long rb) noexcept:
    if ga != gb:
        return ga < gb
    if va != vb:
        return va < vb
    return ra < rb


cdef void sort_keys(long* idx, long* grp, double* val, long* rnk, long n) noexcept:
    """Insertion sort on (group, value, rank): stable like the twin's ``sorted``."""
    cdef long i, gi, ri, j, k
    cdef double v
    for j in range(1, n):
        i, gi, v, ri = idx[j], grp[j], val[j], rnk[j]
        k = j - 1
        while k >= 0 and key_less(gi, v, ri, grp[k], val[k], rnk[k]):
            idx[k + 1], grp[k + 1], val[k + 1], rnk[k + 1] = idx[k], grp[k], val[k], rnk[k]
            k -= 1
        idx[k + 1], grp[k + 1], val[k + 1], rnk[k + 1] = i, gi, v, ri


def decide(
    CandidateTable t not None,
    list pool not None,
    long pinned,
    long strategy,
    double quality_floor,
    double p95_target_ms,
    double warn_usd,
    double degrade_usd,
    double block_usd,
    double cap_min_usd,
    bint never_block,
    long degrade_mode,
    long input_tokens,
    long max_output,
    long needs,
    list cached=None,
):
    """(candidates in order, action, max_tokens, estimated cost of the primary, capped)."""
    cdef long npool = len(pool)
    cdef long size = npool + 1
    cdef long* idx = <long*>PyMem_Malloc(size * sizeof(long))
    cdef long* grp = <long*>PyMem_Malloc(size * sizeof(long))
    cdef double* val = <double*>PyMem_Malloc(size * sizeof(double))
    cdef long* rnk = <long*>PyMem_Malloc(size * sizeof(long))
    cdef long* first = <long*>PyMem_Malloc((t.n + 1) * sizeof(long))
    cdef long* kc = <long*>PyMem_Malloc(size * sizeof(long))
    cdef long r
    try:
        if not (idx and grp and val and rnk and first and kc):
            raise MemoryError()
        for r in range(npool):
            kc[r] = cached[r] if cached is not None else 0
        return _decide(
            t, pool, npool, idx, grp, val, rnk, first, kc, pinned, strategy, quality_floor,
            p95_target_ms, warn_usd, degrade_usd, block_usd, cap_min_usd, never_block,
            degrade_mode, input_tokens, max_output, needs,
        )
    finally:
        PyMem_Free(idx)
        PyMem_Free(grp)
        PyMem_Free(val)
        PyMem_Free(rnk)
        PyMem_Free(first)
        PyMem_Free(kc)


cdef tuple _decide(
    CandidateTable t,
    list pool,
    long npool,
    long* idx,
    long* grp,
    double* val,
    long* rnk,
    long* first,
    long* kc,
    long pinned,
    long strategy,
    double quality_floor,
    double p95_target_ms,
    double warn_usd,
    double degrade_usd,
    double block_usd,
    double cap_min_usd,
    bint never_block,
    long degrade_mode,
    long input_tokens,
    long max_output,
    long needs,
):
    cdef long n = 0, healthy = 0, k, j, i, r, gi, cheapest, fit, max_tokens, action
    cdef long away = -1, capped = 0
    cdef double v, c, best, cost, room, share, cap
    for i in range(t.n):
        first[i] = -1
    for r in range(npool):
        i = pool[r]
        if i < 0 or i >= t.n:
            raise IndexError(i)
        if first[i] >= 0:
            continue  # a model listed twice keeps its first place
        first[i] = r
        if (t.caps[i] & needs) == needs and t.window[i] >= input_tokens + max_output:
            idx[n] = i
            rnk[n] = r
            n += 1
            if t.state[i] != OPEN:
                healthy += 1
    if n == 0:
        return [], OK, max_output, 0.0, 0
    # keys, then drop open breakers unless nothing else is left
    k = 0
    for j in range(n):
        i = idx[j]
        r = rnk[j]
        if healthy == 0:
            gi, v = 0, t.last_failure[i]
        elif t.state[i] == OPEN:
            continue
        elif r < pinned:
            gi, v = -1, 0.0
        elif strategy == QUALITY:
            gi, v = 0, -t.quality[i]
        elif strategy == VALUE:
            if t.quality[i] >= quality_floor and (t.p95_ms[i] == 0.0 or t.p95_ms[i] <= p95_target_ms):
                gi, v = 0, t.cost(i, input_tokens, max_output, kc[r])
            elif t.quality[i] >= quality_floor:
                gi, v = 1, t.p95_ms[i]
            else:
                gi, v = 2, -t.quality[i]
        else:
            c = t.cost(i, input_tokens, max_output, kc[r])
            if c < degrade_usd:
                gi, v = 0, t.p95_ms[i]
            else:
                gi, v = 1, c
        idx[k], grp[k], val[k], rnk[k] = i, gi, v, r
        k += 1
    n = k
    sort_keys(idx, grp, val, rnk, n)
    max_tokens = max_output
    cost = t.cost(idx[0], input_tokens, max_tokens, kc[rnk[0]])
    action = OK
    if cost >= degrade_usd or cost >= block_usd:
        action = DEGRADE
        if degrade_mode == DEGRADE_MODEL:
            cheapest = -1
            best = 0.0
            for j in range(n):
                i = idx[j]
                if t.quality[i] >= quality_floor:
                    c = t.cost(i, input_tokens, max_tokens, kc[rnk[j]])
                    if cheapest < 0 or c < best:
                        cheapest, best = j, c
            if cheapest > 0:
                away = idx[0]
                i, r = idx[cheapest], rnk[cheapest]
                for j in range(cheapest, 0, -1):
                    idx[j] = idx[j - 1]
                    rnk[j] = rnk[j - 1]
                idx[0], rnk[0] = i, r
                cost = best
        else:
            i, k = idx[0], kc[rnk[0]]
            room = degrade_usd * 1e6 - ((input_tokens - k) * t.price_in[i] + k * t.price_cached[i])
            fit = max_tokens
            if t.price_out[idx[0]] > 0:
                share = room / t.price_out[idx[0]]  # may be +-inf for a vanishing price
                if share < MIN_DEGRADED_TOKENS:
                    fit = -1
                elif share < max_tokens:
                    fit = <long>share
            if fit < MIN_DEGRADED_TOKENS:
                action = WARN if never_block else BLOCK
            else:
                max_tokens = fit
                cost = t.cost(idx[0], input_tokens, max_tokens, kc[rnk[0]])
        if action == DEGRADE and cost >= block_usd and not never_block:
            action = BLOCK  # even the degrade is over the block threshold
    elif cost >= warn_usd:
        action = WARN
    if action != BLOCK:
        cap = cost if cost > cap_min_usd else cap_min_usd
        k = 1
        for j in range(1, n):
            i = idx[j]
            if i != away and t.cost(i, input_tokens, max_tokens, kc[rnk[j]]) <= cap:
                idx[k], rnk[k] = i, rnk[j]
                k += 1
            elif t.state[i] != OPEN:
                capped += 1
        n = k
        if away >= 0:
            # after a degrade: cheapest first behind the primary, those meeting the floor first
            for j in range(1, n):
                i = idx[j]
                grp[j] = 0 if t.quality[i] >= quality_floor else 1
                val[j] = t.cost(i, input_tokens, max_tokens, kc[rnk[j]])
            sort_keys(idx + 1, grp + 1, val + 1, rnk + 1, n - 1)
    return [idx[j] for j in range(n)], action, max_tokens, cost, capped
