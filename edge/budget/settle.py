"""Settle a finished request: its real usage into the metrics, the ledger and the key's budget.

The serving attempt's usage (split by kind and priced once, in ``Outcome``)
is counted in the metrics and teaches the router the tier's expected output.
The ledger gets a row for the answer and one per attempt that did not serve
(``waste``, priced from its own token counts; never counted against a
budget), and the request's budget hold is released with the real cost
(``Spend.settle``, written in batches).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edge.budget.pricing import Tokens, cost_usd
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
        if out.status == 200 and tokens.output:
            router.record_output(out.tier, model.name, tokens.output, now)
    if out.hold is None and model is None and not out.wasted:
        return cost
    wall = time.time()
    rows = []
    if model is not None:
        rows.append(
            LedgerRow(
                wall,
                out.tenant,
                out.tier,
                out.provider,
                out.model,
                "answer",
                tokens.input,
                tokens.cache_read,
                tokens.cache_write,
                tokens.output,
                cost,
                request_id,
            )
        )
    for wasted, n_in, n_out in out.wasted:
        waste_cost = cost_usd(wasted, Tokens(n_in, 0, 0, n_out))
        rows.append(
            LedgerRow(
                wall,
                out.tenant,
                out.tier,
                wasted.provider,
                wasted.name,
                "waste",
                n_in,
                0,
                0,
                n_out,
                waste_cost,
                request_id,
            )
        )
    spend.settle(out.hold or Hold("ok", 0.0, "", False), out.tenant, cost, rows)
    return cost
