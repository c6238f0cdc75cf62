"""Key budgets: reserve the estimate at entry, settle real usage at the end.

At entry a request of a tenant with a budget (``[budgets.<tenant>]`` or
``[budgets.default]`` in the policy) reserves its estimated cost in the
state backend, atomically with the check against its day and month budgets.
The projected use (spent + reserved + this estimate, as a fraction of the
tighter budget) picks the action: ``warn``, ``degrade`` or ``block`` at the
budget's thresholds. So concurrent requests overshoot a block threshold by
at most the estimates in flight, never by their number.

At the end the reservation is released and the real cost (from the
provider's usage, cache reads and writes priced as such) is counted, with a
ledger row per answer; attempts that did not serve (lost hedges, failures)
go to the ledger as ``waste``, not against the budget. Settlements are
batched and written every ``FLUSH_S`` in one transaction: until then a
reservation still counts, which errs on the safe side.

When the shared state (Redis) is lost, budgets are enforced locally from the
last shared figure plus what this worker let through since, settlements are
kept and written when it returns, and ``available`` says so.
"""

from __future__ import annotations

import asyncio
import calendar
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from edge.policy import Policy
from edge.state.types import LedgerRow, Settlement, State, StateUnavailable

ORDER = {"ok": 0, "warn": 1, "degrade": 2, "block": 3}


def stronger(a: str, b: str) -> str:
    return a if ORDER[a] >= ORDER[b] else b


@dataclass(slots=True)
class Hold:
    """A tenant's budget check for one request."""

    action: str  # ok | warn | degrade | block
    fraction: float  # projected share of the tighter budget
    reservation: str  # "" when nothing was reserved
    budgeted: bool
    period: str = ""  # when blocked: the budget that blocked it, "day" or "month"
    resets_at: float = 0.0  # and when that period turns (UTC, unix seconds)


NO_BUDGET = Hold("ok", 0.0, "", False)


def period_end(period: str, now: float) -> float:
    """The start of the next UTC day or month after ``now``."""
    if period == "day":
        return (int(now // 86400) + 1) * 86400.0
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)))


class Spend:
    FLUSH_S = 0.25

    def __init__(
        self, policy: Policy, state: State, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy
        self.state = state
        self.clock = clock
        self._settlements: list[Settlement] = []
        self._ledger: list[LedgerRow] = []
        self._timer: asyncio.TimerHandle | None = None
        self.known: dict[str, float] = {}  # tenant -> its budget share, as the state last said
        self.local: dict[str, float] = {}  # tenant -> USD let through here while the state was down
        self.available = True
        self.errors = 0
        self.on_change: Callable[[bool, str], None] | None = None

    def hold(self, tenant: str, estimate_usd: float, overdraft: bool = False) -> Hold:
        """Check and reserve the estimate. A key's budget is hard at every tier: past its
        block threshold the request is refused (or queued, if it asked to be). ``overdraft``
        (a tier that never blocks): the budget's own ``overdraft`` share past the threshold
        is still allowed, degraded; an operator's explicit choice, 0 unless set."""
        budget = self.policy.budget_for(tenant)
        if budget is None:
            return NO_BUDGET
        reservation = uuid.uuid4().hex
        limit = min(budget.day_usd, budget.month_usd)
        block_at = budget.block + (budget.overdraft if overdraft else 0.0)
        try:
            if not self.available:
                # known down: no call (each would wait for a timeout); a tick looks for it
                raise StateUnavailable("the shared state is down")
            fraction = self.state.reserve(
                reservation,
                tenant,
                budget.day_usd,
                budget.month_usd,
                estimate_usd,
                block_at,
                self.clock(),
            )
            self.up()
            self.known[tenant] = fraction - estimate_usd / limit  # the shared view, last seen
            self.local.pop(tenant, None)
        except StateUnavailable as exc:
            # the shared state is gone: enforce locally, from the last shared figure plus what
            # this worker has let through since; never looser than before the outage
            self.down(exc)
            reservation = ""
            self.local[tenant] = self.local.get(tenant, 0.0) + estimate_usd
            fraction = self.known.get(tenant, 0.0) + self.local[tenant] / limit
        if fraction >= block_at:
            period = self._blocking_period(tenant, budget.month_usd, estimate_usd, block_at)
            return Hold("block", fraction, "", True, period, period_end(period, self.clock()))
        if fraction >= budget.block:
            return Hold("degrade", fraction, reservation, True)  # within the overdraft
        action = (
            "degrade" if fraction >= budget.degrade else "warn" if fraction >= budget.warn else "ok"
        )
        return Hold(action, fraction, reservation, True)

    def _blocking_period(
        self, tenant: str, month_usd: float, estimate_usd: float, block_at: float
    ) -> str:
        """Which budget blocked: the month's, if it alone is past the threshold, else the day's
        (a check that reserves nothing: a threshold of 0 never admits)."""
        if month_usd == float("inf") or not self.available:
            return "day"
        try:
            month = self.state.reserve(
                "", tenant, float("inf"), month_usd, estimate_usd, 0.0, self.clock()
            )
        except StateUnavailable as exc:
            self.down(exc)
            return "day"
        return "month" if month >= block_at else "day"

    def settle(self, hold: Hold, tenant: str, cost_usd: float, rows: list[LedgerRow]) -> None:
        """Count a finished request (its cost is 0 when it failed); written within FLUSH_S."""
        if hold.reservation or hold.budgeted:
            self._settlements.append(
                Settlement(hold.reservation, tenant, cost_usd, self.clock(), hold.budgeted)
            )
        self._ledger += rows
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        self._timer = None
        if (not self._settlements and not self._ledger) or not self.available:
            return  # nothing to write, or kept until a tick finds the state again
        try:
            self.state.settle(self._settlements, self._ledger)
        except StateUnavailable as exc:
            # kept (bounded) and written when the state is back: spend re-syncs, nothing lost
            self.down(exc)
            self._settlements = self._settlements[-100_000:]
            self._ledger = self._ledger[-100_000:]
            return
        self.up()
        self._settlements, self._ledger = [], []

    def up(self) -> None:
        if not self.available:
            self.available = True
            if self.on_change is not None:
                self.on_change(True, "")

    def down(self, exc: Exception) -> None:
        self.errors += 1
        if self.available:
            self.available = False
            if self.on_change is not None:
                self.on_change(False, str(exc))
