"""Settle a finished request: its bill into the metrics, the ledger and the key's budget.

Every attempt that a provider billed left one row in ``Outcome.charges``
(``edge.routing.account`` decides which, once per attempt, on every path):
the answer's (served whole, broken after bytes reached the client, or left
behind by a client that went away) and the waste of the others (lost hedges,
failures after a provider took the request). All of them go to the ledger;
the ones marked ``charged`` (the answer) count against the key's budget,
whose hold is released with that real cost (``Spend.settle``, written in
batches). The answer's usage also teaches the router the tier's expected
output.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edge.budget.spend import Hold
from edge.state.types import LedgerRow

if TYPE_CHECKING:
    from edge.budget.spend import Spend
    from edge.observe.metrics import Metrics
    from edge.routing.decide import Router
    from edge.server.relay import Outcome


def settle(
    out: Outcome, request_id: str, now: float, spend: Spend, metrics: Metrics, router: Router
) -> float:
    """Real usage -> cost, tokens by kind, the ledger, the key's budget; the learned output."""
    model, tokens, cost = out.served_by, out.tokens, out.cost_usd
    if model is not None:
        metrics.add_tokens(out.provider, out.model, tokens)
        metrics.cost(out.provider, out.model, out.tier, cost)
        if out.status == 200 and tokens.output and not 0 < out.ceiling <= tokens.output:
            # only answers that ended by themselves: one cut by its own max_tokens would let
            # any caller talk the tier's expected output (and every estimate) down
            router.record_output(out.tier, model.name, tokens.output, now)
    if out.hold is None and not out.charges:
        return cost
    wall = time.time()
    rows = [
        LedgerRow(
            wall,
            out.tenant,
            out.tier,
            c.model.provider,
            c.model.name,
            c.kind,
            c.tokens.input,
            c.tokens.cache_read,
            c.tokens.cache_write,
            c.tokens.output,
            c.cost_usd,
            request_id,
        )
        for c in out.charges
    ]
    charged = sum(c.cost_usd for c in out.charges if c.charged)
    spend.settle(out.hold or Hold("ok", 0.0, "", False), out.tenant, charged, rows)
    return charged
