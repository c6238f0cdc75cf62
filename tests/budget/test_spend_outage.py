"""Spend kept while the state is down or busy: bounded by construction, totals exact after."""

from __future__ import annotations

import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from typing import Any, cast

import pytest

from edge.budget.spend import Hold, Spend
from edge.policy import Policy, load_policy
from edge.state.embedded import EmbeddedState
from edge.state.types import LedgerRow, Settlement, StateUnavailable, periods
from tests.procs import ROOT

DAY_START = 1_794_960_000.0  # 2026-11-18 00:00 UTC
COST = 2.0**-10  # exact in binary: sums of it are exact, whatever their order
N = 250_000


class Outage:
    """A state backend that can be lost (a Redis that went away) in front of a real one."""

    def __init__(self, state: EmbeddedState) -> None:
        self.state = state
        self.down = False

    def settle(self, settlements: Iterable[Settlement], ledger: Iterable[LedgerRow]) -> None:
        if self.down:
            raise StateUnavailable("redis at redis://gone: connection refused")
        self.state.settle(settlements, ledger)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)


def test_an_outage_of_250000_settlements_stays_bounded_and_loses_nothing() -> None:
    state = EmbeddedState(tempfile.mkdtemp())
    lost = Outage(state)
    clock = [DAY_START + 3600]
    spend = Spend(cast(Policy, None), cast(Any, lost), clock=lambda: clock[0], pending_max=2_000)
    lost.down = True
    most = before = 0
    for i in range(N):
        if i == N - 50_000:  # the last 50,000 traced: kept, they would take ~20 MB
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        clock[0] += 0.01
        tenant = ("acme", "globex")[i % 2]
        model = ("cheap", "dear")[i % 3 == 0]
        row = LedgerRow(
            clock[0], tenant, "L1", "sim", model, "answer", 7, 2, 1, 5, COST, f"req-{i}"
        )
        spend.settle(Hold("ok", 0.1, "", True), tenant, COST, [row])
        most = max(most, spend.pending)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert not spend.available
    assert most <= 2_000  # at every enqueue, not only at the first failure
    assert grown < 2_000_000
    assert spend.aggregated > N and spend.dropped == 0

    lost.down = False  # the state is back; a tick finds it
    spend.up()
    spend.flush()
    assert spend.pending == 0
    day, month = periods(clock[0])
    assert day == periods(DAY_START)[0]
    total = {t: state.spent(t, day) for t in ("acme", "globex")}
    assert total == {"acme": N / 2 * COST, "globex": N / 2 * COST}  # exact
    assert state.spent("acme", month) == N / 2 * COST
    report = state.spend_report(day[4:])
    assert sum(r["requests"] for r in report) == N
    assert sum(r["input_tokens"] for r in report) == 7 * N
    assert sum(r["output_tokens"] for r in report) == 5 * N
    assert sum(r["cost_usd"] for r in report) == N * COST
    by_model = {(r["tenant"], r["model"]): r["requests"] for r in report}
    assert by_model[("acme", "dear")] == len(range(0, N, 6))  # the detail is kept too
    state.close()


def test_aggregates_past_the_bound_are_dropped_counted_and_told() -> None:
    lost = Outage(EmbeddedState(tempfile.mkdtemp()))
    lost.down = True
    told: list[int] = []
    spend = Spend(cast(Policy, None), cast(Any, lost), clock=lambda: DAY_START, pending_max=100)
    spend.on_drop = told.append
    for i in range(1_000):  # a thousand tenants: a thousand aggregates cannot fit in 100
        spend.settle(Hold("ok", 0.1, "", True), f"t{i}", COST, [])
        assert spend.pending <= 100
    assert spend.dropped > 0 and sum(told) == spend.dropped


def budgeted_policy() -> Policy:
    return load_policy(f"{ROOT}/tests/server/cost_policy.toml", env={})


def test_a_busy_state_costs_a_request_milliseconds_and_nothing_else() -> None:
    """Another process holds SQLite's write lock for long: a budget check on the event loop's
    handle gives up within its short wait (enforced locally for that request); the state is
    not marked down; the settlement waits and is written once the lock is free."""
    directory = tempfile.mkdtemp()
    EmbeddedState(directory).close()
    state = EmbeddedState(directory, wait_ms=10)
    spend = Spend(budgeted_policy(), state, clock=lambda: DAY_START + 60)
    other = sqlite3.connect(state.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        hold = spend.hold("acme", 0.00001)
        assert time.monotonic() - started < 0.5
        assert hold.budgeted and hold.reservation == "" and hold.action == "ok"
        assert spend.available and spend.busy == 1 and spend.errors == 0
        spend.settle(hold, "acme", 0.00002, [])
        assert spend.pending == 1 and spend.available  # kept, tried again later
    finally:
        other.execute("ROLLBACK")
        other.close()
    spend.flush()
    assert spend.pending == 0
    assert state.spent("acme", periods(DAY_START)[0]) == pytest.approx(0.00002)
    held = spend.hold("acme", 0.00001)
    assert held.reservation and held.fraction == pytest.approx(0.3)
