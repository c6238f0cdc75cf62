"""Pure-Python twin of ``hotpath._route``: the routing decision (no I/O).

Inputs: a ``CandidateTable`` (per model: prices, quality score, context
window, capabilities, and its live health: breaker state, P95 time to first
token, last failure), the tier's pool (indices into the table, in policy
order), the tier's parameters, and the request's estimate. Output: the
candidates in the order to try them (the first is the primary, the rest are
hedges and fallbacks), the cost action, the max_tokens to send, and the
estimated cost of the primary.

Rules:

1. A candidate must have every capability the request needs and a context
   window that fits input plus expected output; otherwise it is out.
2. OPEN breakers are out (HALF_OPEN is passed in as OPEN unless this
   request may be a probe). If that leaves nothing, every eligible candidate
   is tried, least recently failed first: the gateway degrades, it does not
   refuse.
3. The first ``pinned`` pool entries (a named model and its own fallbacks)
   keep their order at the front; the rest are ordered by strategy.
   ``quality``: best quality score first. ``value``: those meeting the
   quality floor and the latency target, cheapest first; then those meeting
   the floor, fastest first; then the rest, best quality first. ``latency``:
   those whose cost is under the tier's degrade threshold, fastest first;
   then the rest, cheapest first. A P95 of 0 means "no data yet" and counts
   as meeting the target. Ties go to pool order.
4. Cost of the primary = input x input price + expected output x output
   price. At or over ``degrade_usd`` (or ``block_usd``): DEGRADE, by moving
   the cheapest candidate that meets the floor to the front (``degrade_mode``
   MODEL), or by lowering max_tokens until the cost fits (MAX_TOKENS; if
   fewer than ``MIN_DEGRADED_TOKENS`` would remain, BLOCK instead, or WARN
   when the tier never blocks). A degrade still at or over ``block_usd``
   is a BLOCK, unless the tier never blocks. At or over ``warn_usd``: WARN.
5. The cap binds every candidate: unless the action is BLOCK, the cap is
   ``max(cap_min_usd, cost of the primary)``, and only candidates whose
   cost (at the max_tokens decided) is within it stay, never the model a
   degrade moved away from. After a degrade by model the ones behind the
   primary are ordered cheapest first (those meeting the floor before the
   rest). ``capped`` counts the healthy candidates the cap took out.

Invariant: the twins return equal results for every input and any pool
size (the float arithmetic is the same expressions in the same order).
"""

from __future__ import annotations

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
QUALITY, VALUE, LATENCY = 0, 1, 2
OK, WARN, DEGRADE, BLOCK = 0, 1, 2, 3
DEGRADE_MODEL, DEGRADE_MAX_TOKENS = 0, 1
CAP_TOOLS, CAP_VISION, CAP_JSON, CAP_THINKING = 1, 2, 4, 8
CAP_LOGPROBS, CAP_MULTI_N, CAP_SEED, CAP_TOP_K = 16, 32, 64, 128
CAP_STOP_MANY, CAP_SERVER_TOOLS, CAP_CACHE, CAP_PREFILL = 256, 512, 1024, 2048
CAP_DOCUMENTS = 4096
MIN_DEGRADED_TOKENS = 64


class CandidateTable:
    __slots__ = (
        "caps",
        "last_failure",
        "n",
        "p95_ms",
        "price_cached",
        "price_in",
        "price_out",
        "quality",
        "state",
        "window",
    )

    def __init__(self, n: int) -> None:
        self.n = n
        self.price_in = [0.0] * n
        self.price_out = [0.0] * n
        self.price_cached = [0.0] * n
        self.quality = [0.0] * n
        self.window = [0] * n
        self.caps = [0] * n
        self.state = [CLOSED] * n
        self.p95_ms = [0.0] * n
        self.last_failure = [0.0] * n

    def set_model(
        self,
        i: int,
        price_in: float,
        price_out: float,
        quality: float,
        window: int,
        caps: int,
        price_cached: float = -1.0,
    ) -> None:
        """``price_cached``: USD per million cache-read input tokens (< 0: the input price)."""
        self.price_in[i] = price_in
        self.price_cached[i] = price_in if price_cached < 0 else price_cached
        self.price_out[i] = price_out
        self.quality[i] = quality
        self.window[i] = window
        self.caps[i] = caps

    def set_health(self, i: int, state: int, p95_ms: float, last_failure: float) -> None:
        self.state[i] = state
        self.p95_ms[i] = p95_ms
        self.last_failure[i] = last_failure

    def cost(self, i: int, input_tokens: int, output_tokens: int, cached: int = 0) -> float:
        """USD for ``input_tokens`` (``cached`` of them read from the prompt cache) and output."""
        return (
            (input_tokens - cached) * self.price_in[i]
            + cached * self.price_cached[i]
            + output_tokens * self.price_out[i]
        ) / 1e6


def decide(
    t: CandidateTable,
    pool: list[int],
    pinned: int,
    strategy: int,
    quality_floor: float,
    p95_target_ms: float,
    warn_usd: float,
    degrade_usd: float,
    block_usd: float,
    cap_min_usd: float,
    never_block: bool,
    degrade_mode: int,
    input_tokens: int,
    max_output: int,
    needs: int,
    cached: list[int] | None = None,
) -> tuple[list[int], int, int, float, int]:
    """(candidates in order, action, max_tokens, estimated cost of the primary, capped).

    ``cached``: per pool entry, the input tokens its provider would read from its prompt cache
    (a prefix this gateway sent it lately), priced at its cache-read price."""
    rank: dict[int, int] = {}
    for r, i in enumerate(pool):
        if not 0 <= i < t.n:
            raise IndexError(i)
        rank.setdefault(i, r)
    eligible = [
        i
        for r, i in enumerate(pool)
        if rank[i] == r
        and (t.caps[i] & needs) == needs
        and t.window[i] >= input_tokens + max_output
    ]
    if not eligible:
        return [], OK, max_output, 0.0, 0

    def cost_of(i: int, out: int) -> float:
        return t.cost(i, input_tokens, out, cached[rank[i]] if cached else 0)

    healthy = [i for i in eligible if t.state[i] != OPEN]
    if not healthy:
        order = sorted(eligible, key=lambda i: (0, t.last_failure[i], rank[i]))
    else:
        order = sorted(
            healthy,
            key=lambda i: _key(
                t, i, rank[i], pinned, strategy, quality_floor, p95_target_ms, degrade_usd,
                cost_of(i, max_output),
            ),
        )  # fmt: skip
    max_tokens = max_output
    cost = cost_of(order[0], max_tokens)
    action = OK
    away = -1
    if cost >= degrade_usd or cost >= block_usd:
        action = DEGRADE
        if degrade_mode == DEGRADE_MODEL:
            cheapest = -1
            best = 0.0
            for i in order:
                if t.quality[i] >= quality_floor:
                    c = cost_of(i, max_tokens)
                    if cheapest < 0 or c < best:
                        cheapest, best = i, c
            if cheapest >= 0 and cheapest != order[0]:
                away = order[0]
                order.remove(cheapest)
                order.insert(0, cheapest)
                cost = best
        else:
            p = order[0]
            k = cached[rank[p]] if cached else 0
            room = degrade_usd * 1e6 - ((input_tokens - k) * t.price_in[p] + k * t.price_cached[p])
            fit = max_tokens
            if t.price_out[order[0]] > 0:
                share = room / t.price_out[order[0]]  # may be +-inf for a vanishing price
                if share < MIN_DEGRADED_TOKENS:
                    fit = -1
                elif share < max_tokens:
                    fit = int(share)
            if fit < MIN_DEGRADED_TOKENS:
                action = WARN if never_block else BLOCK
            else:
                max_tokens = fit
                cost = cost_of(order[0], max_tokens)
        if action == DEGRADE and cost >= block_usd and not never_block:
            action = BLOCK  # even the degrade is over the block threshold
    elif cost >= warn_usd:
        action = WARN
    capped = 0
    if action != BLOCK:
        cap = cost if cost > cap_min_usd else cap_min_usd
        kept = [order[0]]
        for i in order[1:]:
            if i != away and cost_of(i, max_tokens) <= cap:
                kept.append(i)
            elif t.state[i] != OPEN:
                capped += 1
        if away >= 0:
            kept[1:] = sorted(
                kept[1:],
                key=lambda i: (
                    0 if t.quality[i] >= quality_floor else 1,
                    cost_of(i, max_tokens),
                    rank[i],
                ),
            )
        order = kept
    return order, action, max_tokens, cost, capped


def _key(
    t: CandidateTable,
    i: int,
    rank: int,
    pinned: int,
    strategy: int,
    floor: float,
    target: float,
    cap: float,
    cost: float,
) -> tuple[int, float, int]:
    if rank < pinned:
        return (-1, 0.0, rank)
    if strategy == QUALITY:
        return (0, -t.quality[i], rank)
    if strategy == VALUE:
        return _value_key(t, i, rank, floor, target, cost)
    return _latency_key(t, i, rank, cap, cost)


def _value_key(
    t: CandidateTable, i: int, rank: int, floor: float, target: float, cost: float
) -> tuple[int, float, int]:
    meets_floor = t.quality[i] >= floor
    fast = t.p95_ms[i] == 0.0 or t.p95_ms[i] <= target
    if meets_floor and fast:
        return (0, cost, rank)
    if meets_floor:
        return (1, t.p95_ms[i], rank)
    return (2, -t.quality[i], rank)


def _latency_key(
    t: CandidateTable, i: int, rank: int, cap: float, cost: float
) -> tuple[int, float, int]:
    if cost < cap:
        return (0, t.p95_ms[i], rank)
    return (1, cost, rank)
