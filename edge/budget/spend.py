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
kept and written when it returns, and ``available`` says so. A state that is
there but busy past the call's short wait (``StateBusy``) is the same for
one call only: that request is enforced locally, a flush is tried again.

What is kept is bounded, whatever the outage's length: past ``pending_max``
rows (checked at every enqueue), the oldest half is folded into aggregates,
one settlement per tenant, day and month, one ledger row per tenant, tier,
provider, model, kind and day, carrying the totals (cost, tokens, the number
of requests). Nothing is dropped while the aggregates fit in ``pending_max``
(they number tenants x models x days); past that the oldest aggregate is
dropped, counted (``dropped``) and logged. A reservation whose release is
folded away is released by the backend itself after ``STALE_S``.
Writing back happens in batches of ``BATCH`` rows, each its own short
transaction.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from edge.policy import Policy
from edge.state.types import LedgerRow, Settlement, State, StateBusy, StateUnavailable, periods

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
    BATCH = 1000  # rows per write: another worker's holds wait for one batch at most

    def __init__(
        self,
        policy: Policy,
        state: State,
        clock: Callable[[], float] = time.time,
        pending_max: int = 10_000,
    ) -> None:
        self.policy = policy
        self.state = state
        self.clock = clock
        self.pending_max = pending_max
        self._settlements: list[Settlement] = []  # oldest first
        self._ledger: list[LedgerRow] = []
        # the folded oldest: (tenant, day, month) -> one budgeted settlement with their cost;
        # (day, tenant, tier, provider, model, kind) -> one ledger row with their totals
        self._spent: dict[tuple[str, str, str], Settlement] = {}
        self._rows: dict[tuple[str, ...], LedgerRow] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.known: dict[str, float] = {}  # tenant -> its budget share, as the state last said
        self.local: dict[str, float] = {}  # tenant -> USD let through here while the state was down
        self.available = True
        self.errors = 0
        self.busy = 0  # calls that found the state busy past their wait
        self.aggregated = 0  # settlements and ledger rows folded into aggregates
        self.dropped = 0  # aggregates dropped (past pending_max of them): spend not written
        self.on_change: Callable[[bool, str], None] | None = None
        self.on_drop: Callable[[int], None] | None = None

    @property
    def pending(self) -> int:
        """Settlements and ledger rows waiting to be written, aggregates included."""
        return len(self._settlements) + len(self._ledger) + len(self._spent) + len(self._rows)

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
        if self.pending > self.pending_max:
            self._fold()
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_S, self.flush)

    def _fold(self) -> None:
        """Fold the oldest half of what waits into the aggregates (amortised constant time)."""
        half_s, half_l = (len(self._settlements) + 1) // 2, (len(self._ledger) + 1) // 2
        for s in self._settlements[:half_s]:
            self.aggregated += 1
            if not s.budgeted or s.cost_usd <= 0:
                continue  # a release alone: the backend releases it itself after STALE_S
            day, month = periods(s.at)
            key = (s.tenant, day, month)
            into = self._spent.get(key)
            if into is None:
                self._spent[key] = Settlement("", s.tenant, s.cost_usd, s.at, True)
            else:
                into.cost_usd += s.cost_usd
        for r in self._ledger[:half_l]:
            self.aggregated += 1
            key2 = (periods(r.ts)[0], r.tenant, r.tier, r.provider, r.model, r.kind)
            row = self._rows.get(key2)
            if row is None:
                self._rows[key2] = LedgerRow(
                    r.ts, r.tenant, r.tier, r.provider, r.model, r.kind, r.input_tokens,
                    r.cache_read_tokens, r.cache_write_tokens, r.output_tokens, r.cost_usd, "",
                    r.requests,
                )  # fmt: skip
            else:
                row.input_tokens += r.input_tokens
                row.cache_read_tokens += r.cache_read_tokens
                row.cache_write_tokens += r.cache_write_tokens
                row.output_tokens += r.output_tokens
                row.cost_usd += r.cost_usd
                row.requests += r.requests
        del self._settlements[:half_s]
        del self._ledger[:half_l]
        # the aggregates themselves past the bound (tenants x models x days of outage): the
        # oldest go, counted and told, never silently
        gone = 0
        while self.pending > self.pending_max:
            if len(self._spent) >= len(self._rows):
                del self._spent[next(iter(self._spent))]
            else:
                del self._rows[next(iter(self._rows))]
            gone += 1
        if gone:
            self.dropped += gone
            if self.on_drop is not None:
                self.on_drop(gone)

    def flush(self) -> None:
        """Write what waits, oldest (the aggregates) first, in batches; kept on failure."""
        self._timer = None
        if not self.pending or not self.available:
            return  # nothing to write, or kept until a tick finds the state again
        spent, rows = list(self._spent.items()), list(self._rows.items())
        settlements = [s for _, s in spent] + self._settlements
        ledger = [r for _, r in rows] + self._ledger
        n = self.BATCH
        done = 0
        try:
            while done < max(len(settlements), len(ledger)):
                self.state.settle(settlements[done : done + n], ledger[done : done + n])
                done += n
        except StateUnavailable as exc:
            # what was not written stays, oldest first, and is written when the state answers
            # again: nothing lost (nothing was added meanwhile: this is all synchronous)
            self._spent = dict(spent[done:])
            self._rows = dict(rows[done:])
            self._settlements = self._settlements[max(0, done - len(spent)) :]
            self._ledger = self._ledger[max(0, done - len(rows)) :]
            self.down(exc)
            if isinstance(exc, StateBusy):
                self._retry_later()
            return
        self._spent, self._rows, self._settlements, self._ledger = {}, {}, [], []
        self.up()

    def _retry_later(self) -> None:
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no loop: the next flush call writes it
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def up(self) -> None:
        if not self.available:
            self.available = True
            if self.on_change is not None:
                self.on_change(True, "")

    def down(self, exc: Exception) -> None:
        """A call failed: the state is down (``StateUnavailable``), or was only busy for that
        call (``StateBusy``: counted, the state stays up)."""
        if isinstance(exc, StateBusy):
            self.busy += 1
            return
        self.errors += 1
        if self.available:
            self.available = False
            if self.on_change is not None:
                self.on_change(False, str(exc))
