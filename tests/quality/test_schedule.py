"""The scheduled gold run across handles of one state (two workers on SQLite, two instances
sharing Redis): it runs once, on the period, on a changed policy, on a changed model version.

Time is a fake clock; the run is a fake that counts its calls and can be held open, so the
"another worker is running it" window is exercised without sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from edge.observe.log import Log
from edge.quality import schedule
from edge.quality.schedule import GoldSchedule, Outcome
from tests.conftest import Backend

T0 = 1_795_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeRun:
    """Counts runs; each waits for ``release`` so a run can be held in progress."""

    def __init__(self, report: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.report = report or {"pass": True, "why": [], "by_model": {}}

    async def __call__(self, trigger: str, why: str) -> dict[str, Any]:
        self.calls.append((trigger, why))
        await self.release.wait()
        return self.report


def worker(
    state: Backend, clock: Clock, run: FakeRun, digest: str = "d1", **kw: Any
) -> GoldSchedule:
    return GoldSchedule(
        state, 7 * DAY, digest, run, Log("error", access=False), clock=clock, check_s=0, **kw
    )


async def settle(*workers: GoldSchedule) -> None:
    for w in workers:
        if w.task is not None:
            await w.task


def test_due_is_pure_and_ordered() -> None:
    assert schedule.due({}, T0, DAY, "d") is None  # a first start is the baseline
    marks = {schedule.LAST_RUN: repr(T0), schedule.DIGEST: "d"}
    assert schedule.due(marks, T0 + DAY - 1, DAY, "d") is None
    assert schedule.due(marks, T0 + DAY, DAY, "d") == ("schedule", "86400 s since the last run")
    assert schedule.due(marks, T0 + DAY, 0, "d") is None  # 0: no period
    assert schedule.due(marks, T0 + 1, DAY, "e") == ("policy", "policy digest d -> e")
    changed = {**marks, schedule.CHANGED: repr(T0 + 5), schedule.CHANGE: "m: a -> b"}
    assert schedule.due(changed, T0 + 6, DAY, "d") == ("model", "m: a -> b")
    # a change from before the last run started was judged by it
    assert schedule.due({**changed, schedule.LAST_RUN: repr(T0 + 6)}, T0 + 7, DAY, "d") is None


def test_the_period_runs_once_across_two_workers(new: Callable[[], Backend]) -> None:
    async def go() -> None:
        clock, run = Clock(), FakeRun()
        a, b = worker(new(), clock, run), worker(new(), clock, run)
        a.tick()
        b.tick()
        assert run.calls == []  # the first start is the baseline
        clock.now += 7 * DAY
        run.release.clear()
        a.tick()
        b.tick()  # a holds the turn: b does not run
        await asyncio.sleep(0)
        assert run.calls == [("schedule", "604800 s since the last run")]
        assert a.task is not None and b.task is None
        run.release.set()
        await settle(a, b)
        clock.now += 1
        b.tick()  # the turn is free, but the marks say it ran
        a.tick()
        await settle(a, b)
        assert len(run.calls) == 1
        clock.now += 7 * DAY
        b.tick()
        a.tick()
        await settle(a, b)
        assert [c[0] for c in run.calls] == ["schedule", "schedule"]

    asyncio.run(go())


def test_a_dead_workers_turn_expires(new: Callable[[], Backend]) -> None:
    s1, s2 = new(), new()
    assert s1.gold_lease("a", T0, 60)
    assert not s2.gold_lease("b", T0 + 59, 60)
    assert s1.gold_lease("a", T0 + 59, 60)  # renewed to T0 + 119
    assert not s2.gold_lease("b", T0 + 100, 60)
    assert s2.gold_lease("b", T0 + 119, 60)
    s1.gold_release("a")  # not its turn any more: no effect
    assert not s1.gold_lease("a", T0 + 120, 60)
    s2.gold_release("b")
    assert s1.gold_lease("a", T0 + 120, 60)


def test_a_changed_policy_digest_runs_on_restart(new: Callable[[], Backend]) -> None:
    async def go() -> None:
        clock, run = Clock(), FakeRun()
        first = worker(new(), clock, run, "d1")
        first.tick()
        clock.now += 60
        worker(new(), clock, run, "d1").tick()  # a restart on the same policy
        assert run.calls == []
        clock.now += 60
        restarted = worker(new(), clock, run, "d2")
        restarted.tick()
        await settle(restarted)
        assert run.calls == [("policy", "policy digest d1 -> d2")]
        again = worker(new(), clock, run, "d2")
        again.tick()
        await settle(again)
        assert len(run.calls) == 1

    asyncio.run(go())


def test_a_changed_model_version_runs_once(new: Callable[[], Backend]) -> None:
    async def go() -> None:
        clock, run = Clock(), FakeRun()
        a, b = worker(new(), clock, run), worker(new(), clock, run)
        a.saw("gpt-4o-mini", schedule.version_of("gpt-4o-mini-2024-07-18", "fp_1"))
        a.tick()
        b.saw("gpt-4o-mini", schedule.version_of("gpt-4o-mini-2024-07-18", "fp_1"))
        b.tick()
        clock.now += 30
        a.tick()
        b.tick()
        assert run.calls == []  # first sightings and the same version: nothing changed
        clock.now += 30
        b.saw("gpt-4o-mini", schedule.version_of("gpt-4o-mini-2024-07-18", "fp_2"))
        a.saw("gpt-4o-mini", schedule.version_of("gpt-4o-mini-2024-07-18", "fp_2"))
        b.tick()
        a.tick()
        await settle(a, b)
        assert run.calls == [
            ("model", "gpt-4o-mini: gpt-4o-mini-2024-07-18|fp_1 -> gpt-4o-mini-2024-07-18|fp_2")
        ]
        clock.now += 30
        a.tick()
        b.tick()
        await settle(a, b)
        assert len(run.calls) == 1

    asyncio.run(go())


def test_a_version_change_during_a_run_runs_again(new: Callable[[], Backend]) -> None:
    async def go() -> None:
        clock, run = Clock(), FakeRun()
        a, b = worker(new(), clock, run), worker(new(), clock, run)
        a.saw("m", "m-1")
        a.tick()
        clock.now += 7 * DAY
        run.release.clear()
        a.tick()
        await asyncio.sleep(0)
        clock.now += 5
        b.saw("m", "m-2")
        b.tick()  # seen while a's run is in progress: b may not run it
        assert b.task is None
        run.release.set()
        await settle(a, b)
        clock.now += 5
        b.tick()
        await settle(a, b)
        assert [c[0] for c in run.calls] == ["schedule", "model"]

    asyncio.run(go())


def test_a_regression_is_judged_and_reported(new: Callable[[], Backend]) -> None:
    async def go() -> None:
        report = {
            "pass": False,
            "why": ["success rate 90.0% is under the floor 97.0%"],
            "by_model": {
                "cheap": {"cases": 12, "success_rate": 0.75},
                "good": {"cases": 12, "success_rate": 1.0},
                "thin": {"cases": 3, "success_rate": 0.0},  # too few cases to judge
                "was-low": {"cases": 12, "success_rate": 0.5},
            },
        }
        clock, run = Clock(), FakeRun(report)
        done: list[Outcome] = []

        async def on_done(o: Outcome) -> None:
            done.append(o)

        floors = {"cheap": 0.9, "good": 0.97, "thin": 0.9, "was-low": 0.9}
        state = new()
        w = worker(
            state, clock, run, floors=floors, before=lambda: {"was-low": 0.5}, on_done=on_done
        )
        w.tick()
        clock.now += 7 * DAY
        w.tick()
        await settle(w)
        assert len(done) == 1
        assert done[0].verdict == "regression"
        assert done[0].models == {"cheap": "gold score 75.0% under its floor 90.0%"}
        assert done[0].failures == report["why"]
        marks = state.gold_marks()
        assert marks[schedule.VERDICT] == "regression"
        assert "under the floor" in marks[schedule.WHY]
        assert schedule.model_floors({"L0": ("a", "b"), "L1": ("b",)}, {"L0": 0.97, "L1": 0.9}) == {
            "a": 0.97,
            "b": 0.97,
        }

    asyncio.run(go())
