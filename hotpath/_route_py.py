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
   window that fits input plus output; otherwise it is out.
2. OPEN breakers are out (HALF_OPEN is passed in as OPEN unless this
   request may be a probe). If that leaves nothing, every eligible candidate
   is tried, least recently failed first: the gateway degrades, it does not
   refuse.
3. Order by strategy. ``quality``: best quality score first. ``value``:
   those meeting the quality floor and the latency target, cheapest first;
   then those meeting the floor, fastest first; then the rest, best quality
   first. ``latency``: those whose cost is under the tier's degrade threshold
   (its cap), fastest first; then the rest, cheapest first. A P95 of 0 means
   "no data yet" and counts as meeting the target. Ties go to pool order.
4. Cost of the primary = input x input price + expected output x output
   price. At or over ``block_usd`` (unless the tier never blocks): BLOCK. At
   or over ``degrade_usd``: DEGRADE, by moving the cheapest candidate that
   meets the floor to the front (``degrade_mode`` MODEL), or by lowering
   max_tokens until the cost fits (MAX_TOKENS; if fewer than
   ``MIN_DEGRADED_TOKENS`` would remain, BLOCK instead, or WARN when the tier
   never blocks). At or over ``warn_usd``: WARN.

Invariant: the twins return equal results for every input (the float
arithmetic is the same expressions in the same order).
"""

from __future__ import annotations

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
QUALITY, VALUE, LATENCY = 0, 1, 2
OK, WARN, DEGRADE, BLOCK = 0, 1, 2, 3
DEGRADE_MODEL, DEGRADE_MAX_TOKENS = 0, 1
CAP_TOOLS, CAP_VISION, CAP_JSON = 1, 2, 4
MIN_DEGRADED_TOKENS = 64


class CandidateTable:
    __slots__ = (
        "caps",
        "last_failure",
        "n",
        "p95_ms",
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
        self.quality = [0.0] * n
        self.window = [0] * n
        self.caps = [0] * n
        self.state = [CLOSED] * n
        self.p95_ms = [0.0] * n
        self.last_failure = [0.0] * n

    def set_model(
        self, i: int, price_in: float, price_out: float, quality: float, window: int, caps: int
    ) -> None:
        self.price_in[i] = price_in
        self.price_out[i] = price_out
        self.quality[i] = quality
        self.window[i] = window
        self.caps[i] = caps

    def set_health(self, i: int, state: int, p95_ms: float, last_failure: float) -> None:
        self.state[i] = state
        self.p95_ms[i] = p95_ms
        self.last_failure[i] = last_failure

    def cost(self, i: int, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price_in[i] + output_tokens * self.price_out[i]) / 1e6


def decide(
    t: CandidateTable,
    pool: list[int],
    strategy: int,
    quality_floor: float,
    p95_target_ms: float,
    warn_usd: float,
    degrade_usd: float,
    block_usd: float,
    never_block: bool,
    degrade_mode: int,
    input_tokens: int,
    max_output: int,
    needs: int,
) -> tuple[list[int], int, int, float]:
    """(candidates in order, action, max_tokens, estimated cost of the primary)."""
    rank = {i: r for r, i in enumerate(pool)}
    eligible = [
        i for i in pool if (t.caps[i] & needs) == needs and t.window[i] >= input_tokens + max_output
    ]
    if not eligible:
        return [], OK, max_output, 0.0
    healthy = [i for i in eligible if t.state[i] != OPEN]
    if not healthy:
        order = sorted(eligible, key=lambda i: (t.last_failure[i], rank[i]))
    else:
        if strategy == QUALITY:
            order = sorted(healthy, key=lambda i: (-t.quality[i], rank[i]))
        elif strategy == VALUE:
            order = sorted(
                healthy,
                key=lambda i: _value_key(
                    t, i, rank[i], quality_floor, p95_target_ms, input_tokens, max_output
                ),
            )
        else:
            order = sorted(
                healthy,
                key=lambda i: _latency_key(t, i, rank[i], degrade_usd, input_tokens, max_output),
            )
    max_tokens = max_output
    cost = t.cost(order[0], input_tokens, max_tokens)
    action = OK
    if cost >= block_usd and not never_block:
        action = BLOCK
    elif cost >= degrade_usd:
        action = DEGRADE
        if degrade_mode == DEGRADE_MODEL:
            cheapest = -1
            best = 0.0
            for i in order:
                if t.quality[i] >= quality_floor:
                    c = t.cost(i, input_tokens, max_tokens)
                    if cheapest < 0 or c < best:
                        cheapest, best = i, c
            if cheapest >= 0 and cheapest != order[0]:
                order.remove(cheapest)
                order.insert(0, cheapest)
                cost = best
        else:
            room = degrade_usd * 1e6 - input_tokens * t.price_in[order[0]]
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
                cost = t.cost(order[0], input_tokens, max_tokens)
    elif cost >= warn_usd:
        action = WARN
    return order, action, max_tokens, cost


def _value_key(
    t: CandidateTable,
    i: int,
    rank: int,
    floor: float,
    target: float,
    input_tokens: int,
    max_output: int,
) -> tuple[int, float, int]:
    meets_floor = t.quality[i] >= floor
    fast = t.p95_ms[i] == 0.0 or t.p95_ms[i] <= target
    if meets_floor and fast:
        return (0, t.cost(i, input_tokens, max_output), rank)
    if meets_floor:
        return (1, t.p95_ms[i], rank)
    return (2, -t.quality[i], rank)


def _latency_key(
    t: CandidateTable, i: int, rank: int, cap: float, input_tokens: int, max_output: int
) -> tuple[int, float, int]:
    c = t.cost(i, input_tokens, max_output)
    if c < cap:
        return (0, t.p95_ms[i], rank)
    return (1, c, rank)
