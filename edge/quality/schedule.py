"""The scheduled gold run: one instance at a time, on a period, a changed policy, a changed model.

Every worker ticks a ``GoldSchedule``; the state backend holds what it
remembers (``gold_marks``) and whose turn it is (``gold_lease``, a lease by
owner and expiry against the caller's clock, renewed while the run lasts, so a
dead worker's turn passes on). A run is due (``due``, pure) when:

- ``policy``: the policy digest in the state is not the active policy's (a
  restart loaded a changed policy);
- ``model``: a provider answered a model with another version than the one
  last seen (the answered ``model`` id, OpenAI's ``system_fingerprint``) after
  the last run started (``versions`` records each model's last version, and
  when one changed, ``changed_at``);
- ``schedule``: ``EDGE_GOLD_EVERY`` has passed since the last run started.

A state with no marks is a first start: the policy digest and the time are
recorded as the baseline, nothing runs. The run itself is the injected
``Run`` (async: the gateway's is ``llm-edge gold run`` in a subprocess, never
on the event loop); its report is judged (``regressions``: the verdict, and
each model whose score fell under the highest floor of the tiers holding it),
and a regression is logged, counted and sent to the policy's webhook.
The turn is taken only after the marks say a run is due, and the marks are
read again under it, so two workers that saw the same reason run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge.observe.log import Log
from edge.quality.gold import MIN_CASES_FOR_SCORE
from edge.state.types import State, StateUnavailable

TRIGGERS = ("policy", "model", "schedule")
LAST_RUN = "last_run_at"  # when the last run started (unix seconds)
DIGEST = "policy_digest"
CHANGED = "changed_at"  # when a model's version last changed
CHANGE = "change"  # what changed, for the run's reason
VERDICT = "last_verdict"  # pass | regression | error
WHY = "last_why"
TRIGGER = "last_trigger"
MODEL = "model:"  # + model name -> its last seen version

Run = Callable[[str, str], Awaitable[dict[str, Any]]]  # (trigger, why) -> the report


def policy_digest(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(raw).hexdigest()[:16]


def version_of(model: str, fingerprint: str) -> str:
    """What identifies a model version as a provider answered it."""
    return f"{model}|{fingerprint}" if fingerprint else model


def due(marks: dict[str, str], now: float, every_s: float, digest: str) -> tuple[str, str] | None:
    """(trigger, why) when a run is due, else None (a first start is the baseline: None)."""
    if not marks.get(LAST_RUN):
        return None
    if marks.get(DIGEST, digest) != digest:
        return "policy", f"policy digest {marks[DIGEST]} -> {digest}"
    last = float(marks[LAST_RUN])
    if float(marks.get(CHANGED) or 0) > last:  # changed after the last run started
        return "model", marks.get(CHANGE, "a model version changed")
    if every_s > 0 and now - last >= every_s:
        return "schedule", f"{now - last:.0f} s since the last run"
    return None


def baseline(marks: dict[str, str], now: float, digest: str) -> dict[str, str]:
    """The marks a first start records (empty when the state has them already)."""
    return {} if marks.get(LAST_RUN) else {LAST_RUN: repr(now), DIGEST: digest}


def versions(marks: dict[str, str], seen: dict[str, str], now: float) -> dict[str, str]:
    """The marks to write for versions answered (``seen``, model -> version): each model's
    version, and ``changed_at``/``change`` when one differs from the version recorded."""
    out: dict[str, str] = {}
    changes = []
    for model, version in sorted(seen.items()):
        before = marks.get(MODEL + model)
        if before == version:
            continue
        out[MODEL + model] = version
        if before is not None:
            changes.append(f"{model}: {before} -> {version}")
    if changes:
        out[CHANGED] = repr(now)
        out[CHANGE] = "; ".join(changes)
    return out


def regressions(
    report: dict[str, Any], floors: dict[str, float], before: dict[str, float]
) -> dict[str, str]:
    """Each model measured on enough cases whose score is under its floor and was not before
    (``before``: its kept score ahead of this run; a model new to gold counts when under)."""
    out = {}
    for model, g in report.get("by_model", {}).items():
        floor = floors.get(model)
        if floor is None or g.get("cases", 0) < MIN_CASES_FOR_SCORE:
            continue
        score = float(g["success_rate"])
        if score < floor and before.get(model, 1.0) >= floor:
            out[model] = f"gold score {score:.1%} under its floor {floor:.1%}"
    return out


def model_floors(
    pools: dict[str, tuple[str, ...]], tier_floors: dict[str, float]
) -> dict[str, float]:
    """Each pool model's floor: the highest quality floor among the tiers holding it."""
    out: dict[str, float] = {}
    for tier, pool in pools.items():
        for model in pool:
            out[model] = max(out.get(model, 0.0), tier_floors.get(tier, 0.0))
    return out


@dataclass(slots=True)
class Outcome:
    """A finished scheduled run, for the metrics, the webhook and the dashboard."""

    trigger: str
    why: str
    verdict: str  # pass | regression | error
    failures: list[str] = field(default_factory=list)  # the report's reasons
    models: dict[str, str] = field(default_factory=dict)  # regressed model -> why


class GoldSchedule:
    """One worker's part: it reports the versions it saw and, in its turn, runs the gold set."""

    def __init__(
        self,
        state: State,
        every_s: float,
        digest: str,
        run: Run,
        log: Log,
        *,
        floors: dict[str, float] | None = None,
        before: Callable[[], dict[str, float]] = dict,
        on_done: Callable[[Outcome], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        check_s: float = 10.0,
        lease_s: float = 60.0,
    ) -> None:
        self.state = state
        self.every_s = every_s
        self.digest = digest
        self.run = run
        self.log = log
        self.floors = floors or {}
        self.before = before
        self.on_done = on_done
        self.clock = clock
        self.check_s = check_s
        self.lease_s = lease_s
        self.owner = secrets.token_hex(8)
        self.seen: dict[str, str] = {}  # model -> the version it answered with last
        self._synced: dict[str, str] = {}
        self._checked = -float("inf")
        self._renewed = 0.0
        self.task: asyncio.Task[None] | None = None
        self.last: Outcome | None = None
        self.marks: dict[str, str] = {}  # as last read: for the stats and the dashboard

    def saw(self, model: str, version: str) -> None:
        """An answer came from ``model`` at ``version`` (the request path: a dict write)."""
        if version:
            self.seen[model] = version

    def tick(self) -> None:
        """Report new versions, keep a running turn, and start a run when one is due."""
        now = self.clock()
        try:
            self._sync(now)
            if self.task is not None:
                if now - self._renewed >= self.lease_s / 3 and self.state.gold_lease(
                    self.owner, now, self.lease_s
                ):
                    self._renewed = now
                return
            if now - self._checked < self.check_s:
                return
            self._checked = now
            self._check(now)
        except StateUnavailable as exc:
            self.log.event("warning", "gold schedule: state unavailable", error=str(exc))

    def _sync(self, now: float) -> None:
        fresh = {m: v for m, v in self.seen.items() if self._synced.get(m) != v}
        if not fresh:
            return
        marks = versions(self.state.gold_marks(), fresh, now)
        if marks:
            self.state.put_gold_marks(marks)
            if CHANGE in marks:
                self.log.event("warning", "model version changed", change=marks[CHANGE])
        self._synced.update(fresh)

    def view(self) -> dict[str, Any]:
        """The schedule as last read, for ``/v1/edge/stats`` and the dashboard."""
        m = self.marks
        return {
            "every_s": self.every_s,
            "running": self.task is not None,
            "last_run_at": float(m[LAST_RUN]) if m.get(LAST_RUN) else None,
            "last_trigger": m.get(TRIGGER, ""),
            "last_verdict": m.get(VERDICT, ""),
            "last_why": m.get(WHY, ""),
        }

    def _check(self, now: float) -> None:
        marks = self.marks = self.state.gold_marks()
        first = baseline(marks, now, self.digest)
        if first:
            self.state.put_gold_marks(first)
            return
        if due(marks, now, self.every_s, self.digest) is None:
            return
        if not self.state.gold_lease(self.owner, now, self.lease_s):
            return  # another worker's turn
        marks = self.state.gold_marks()  # again, under the turn: it may have just run
        reason = due(marks, now, self.every_s, self.digest)
        if reason is None:
            self.state.gold_release(self.owner)
            return
        # the run's start is its mark: a version change during the run causes another
        self.state.put_gold_marks({LAST_RUN: repr(now), DIGEST: self.digest})
        self._renewed = now
        self.task = asyncio.get_running_loop().create_task(self._run(*reason))

    async def _run(self, trigger: str, why: str) -> None:
        self.log.event("info", "scheduled gold run", trigger=trigger, why=why)
        before = self.before()
        try:
            report = await self.run(trigger, why)
        except Exception as exc:  # could not run: counted, the next reason runs again
            outcome = Outcome(trigger, why, "error", [f"{type(exc).__name__}: {exc}"])
        else:
            models = regressions(report, self.floors, before)
            failures = [str(w) for w in report.get("why", [])]
            verdict = "regression" if failures or models else "pass"
            outcome = Outcome(trigger, why, verdict, failures, models)
        self.last = outcome
        level = "info" if outcome.verdict == "pass" else "error"
        self.log.event(
            level,
            "gold regression" if outcome.verdict == "regression" else "scheduled gold run done",
            trigger=trigger,
            verdict=outcome.verdict,
            failures=outcome.failures,
            models=outcome.models,
        )
        try:
            self.state.put_gold_marks(
                {
                    VERDICT: outcome.verdict,
                    TRIGGER: trigger,
                    WHY: "; ".join([*outcome.failures, *outcome.models.values()])[:500],
                }
            )
            self.state.gold_release(self.owner)
        except StateUnavailable as exc:  # the lease expires by itself
            self.log.event("warning", "gold schedule: state unavailable", error=str(exc))
        finally:
            self.task = None
        if self.on_done is not None:
            await self.on_done(outcome)

    async def close(self) -> None:
        """Stop a run in progress (its subprocess ends with it); the turn expires."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def run_gold_subprocess(policy: str, out_dir: str) -> dict[str, Any]:
    """``llm-edge gold run`` on ``policy`` in a subprocess (a gateway of its own on the same
    providers), awaited without blocking the loop; its report, published as the router's
    gold source. Its gateway gets no shared state and no schedule of its own."""
    import os
    import sys
    from pathlib import Path

    import orjson

    out = Path(out_dir) / f"scheduled-{int(time.time())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "EDGE_REDIS_URL"}
    env["EDGE_GOLD_EVERY"] = "0"
    args = ["gold", "run", "--out", str(out), "--junit", str(out.with_suffix(".xml"))]
    if policy:
        args += ["--policy", policy]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", *args,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode not in (0, 1) or not out.exists():
        raise RuntimeError(f"gold run exited {proc.returncode}: {err.decode()[-500:]}")
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    return report
