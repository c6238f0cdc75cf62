"""The policies a worker serves: the active one and, during a rollout, its candidate.

An ``Engine`` is a policy with its router and race state. ``Engines`` holds
the active policy's engine for the worker's life and, while a rollout is
live, the candidate's (the canary), loaded from the rollout's row in the
state backend, so every worker of every instance serves the same candidate.
Each tick runs the rollout controller and loads or drops the canary
(``watch_rollout``), reads a new gold report's kept per-model scores
(``watch_gold``), and every ``QUALITY_REFRESH_S`` blends them with the
online checks and human feedback in the state backend into the hybrid
scores (``watch_quality``, edge/quality/hybrid.py): each tier's quality
floor judges the tier-level hybrid of each model, in the active and the
canary router. Breaker transitions of either engine are counted and logged.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, replace

import orjson

from edge.observe.log import Log
from edge.observe.metrics import Metrics
from edge.policy import Policy, PolicyError, parse_policy
from edge.quality import hybrid
from edge.quality.gold import kept_scores
from edge.quality.hybrid import GoldScore
from edge.quality.rollout import Rollouts
from edge.routing.breaker import State
from edge.routing.decide import Router
from edge.routing.race import HedgeBudgets, Shared
from edge.settings import Settings
from edge.state.types import State as Store
from edge.state.types import StateUnavailable

QUALITY_REFRESH_S = 5.0


class RaceEvents:
    """What races report, into the metrics and the routing sketches."""

    def __init__(self, metrics: Metrics, router: Router) -> None:
        self.metrics = metrics
        self.router = router

    def attempt(self, provider: str, model: str, outcome: str) -> None:
        self.metrics.attempt(provider, model, outcome)

    def hedge(self, tier: str, outcome: str) -> None:
        self.metrics.hedge(tier, outcome)

    def waste(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
        self.metrics.waste(provider, model, input_tokens, output_tokens)

    def censored_ttft(self, model: str, seconds: float, now: float) -> None:
        self.router.record_ttft(model, seconds, now)

    def rescue(self, tier: str, outcome: str) -> None:
        self.metrics.rescue(tier, outcome)


@dataclass(slots=True)
class Engine:
    """A policy with its router and race state: the active one, or a rollout's candidate."""

    policy: Policy
    router: Router
    race: Shared
    rollout: str = ""  # the rollout id, for a candidate


class Engines:
    """The active policy's engine, and a live rollout's candidate beside it."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        metrics: Metrics,
        log: Log,
        rollouts: Rollouts,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self.log = log
        self.rollouts = rollouts
        self.active = self._engine(policy)
        self.canary: Engine | None = None  # the candidate policy of a live rollout
        self._gold_mtime = 0.0
        self.gold: dict[str, GoldScore] = {}  # each model's last measured gold score
        self.counts: hybrid.Counts = {}  # online checks and feedback, from the state
        self.scores: list[hybrid.Row] = []  # the active policy's, as exported
        self.canary_scores: list[hybrid.Row] = []  # a live candidate's (its own tier pools)
        self._hybrid: dict[tuple[str, str, str], float] = {}
        self._counted = -QUALITY_REFRESH_S
        rollouts.quality = self.hybrid_score  # for the rollout guards

    def refresh(self, now: float) -> None:
        """Copy live latency figures into the routing tables."""
        self.active.router.refresh(now)
        if self.canary is not None:
            self.canary.router.refresh(now)

    def _engine(self, policy: Policy, rollout: str = "") -> Engine:
        # the policy's thresholds (a rollout's candidate brings its own); EDGE_BREAKERS=off
        # turns them all off
        config = replace(policy.breakers, enabled=self.settings.breakers)
        router = Router(policy, breaker_config=config)
        router.listeners.append(self._breaker_moved)
        race = Shared(
            router.breakers,
            # each tier's share comes with its timing; the floor is the process's
            HedgeBudgets(
                self.settings.hedge_budget_percent / 100.0, self.settings.hedge_budget_min
            ),
            RaceEvents(self.metrics, router),
        )
        return Engine(policy, router, race, rollout)

    def _breaker_moved(self, model: str, old: State, new: State, now: float) -> None:
        known = self.policy.models.get(model) or (
            self.canary.policy.models.get(model) if self.canary is not None else None
        )
        provider = known.provider if known is not None else "-"
        self.metrics.breaker_transition(provider, model, old.name.lower(), new.name.lower())
        self.log.event(
            "warning" if new is State.OPEN else "info",
            "breaker",
            provider=provider,
            model=model,
            from_state=old.name.lower(),
            to_state=new.name.lower(),
        )

    def watch_gold(self) -> None:
        """The latest gold report's kept per-model scores become the gold source of the
        hybrid scores (a model measured with too few cases keeps its last score)."""
        path = self.settings.gold_report_path
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return
        if mtime == self._gold_mtime:
            return
        self._gold_mtime = mtime
        try:
            with open(path, "rb") as f:
                gold = kept_scores(orjson.loads(f.read()))
        except (OSError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            self.log.event("warning", "gold report unreadable", path=path, error=str(exc))
            return
        self.gold = gold
        self.apply_quality()
        scores = {m: g.score for m, g in gold.items()}
        self.log.event("info", "quality scores from gold report", path=path, scores=scores)

    def watch_quality(self, state: Store, now: float, force: bool = False) -> None:
        """Every ``QUALITY_REFRESH_S`` (or when forced): the online and human counts of the
        retention period from the state, blended with gold into the routers' scores."""
        if not force and now - self._counted < QUALITY_REFRESH_S:
            return
        self._counted = now
        try:
            rows = state.quality_counts(time.time() - self.policy.quality.retention_s)
        except StateUnavailable:
            return  # the last counts stand
        self.counts = hybrid.counts_of(rows)
        self.apply_quality()

    def apply_quality(self) -> None:
        """Gold and the counts -> each engine's routing scores (per model: gold alone; per
        tier: the tier-level hybrid)."""
        self.scores = self._apply(self.active)
        self.canary_scores = self._apply(self.canary) if self.canary is not None else []
        self._index()

    def _index(self) -> None:
        self._hybrid = {
            (r.tier, r.task, r.model): r.hybrid for r in (*self.canary_scores, *self.scores)
        }  # the active policy's rows last: they win

    def _apply(self, engine: Engine) -> list[hybrid.Row]:
        policy = engine.policy
        cfg = self.policy.quality
        priors = {n: m.quality for n, m in policy.models.items() if m.kind == "chat"}
        rows = hybrid.table(
            {n: t.pool for n, t in policy.tiers.items()}, priors, self.gold, self.counts, cfg
        )
        base = {
            n: hybrid.blend(p, {"gold": _evidence(self.gold[n])} if n in self.gold else {}, cfg)
            for n, p in priors.items()
        }
        engine.router.set_quality(base, hybrid.routing(rows))
        return rows

    def hybrid_score(self, tier: str, task: str, model: str) -> float | None:
        """The hybrid score of (tier, task, model) (``all``: the tier's), if it has one: the
        active policy's, else a live candidate's (a model only its pools hold): what the
        rollout guards compare. Both blend the same evidence."""
        return self._hybrid.get((tier, task, model))

    def gold_ages(self, now: float) -> dict[str, float]:
        """Seconds since each model's kept gold score was measured."""
        return {m: max(0.0, now - g.measured_at) for m, g in self.gold.items()}

    def watch_rollout(self, state_up: bool) -> None:
        """Run the rollout controller, and serve the live rollout's candidate beside the policy."""
        if not state_up:
            return  # the shared state is down: keep the rollout as last seen
        try:
            self.rollouts.control(time.time())
        except Exception as exc:  # the state is busy or broken: keep serving, try next tick
            self.log.event("warning", "rollout controller", error=repr(exc))
        live = self.rollouts.live
        if live is None:
            if self.canary is not None:
                self.log.event("info", "rollout ended: all traffic on the active policy")
            self.canary = None
            return
        if self.canary is not None and self.canary.rollout == live["id"]:
            return
        try:
            candidate = parse_policy(
                tomllib.loads(live["policy_text"]), os.environ, live["policy_path"]
            )
        except (PolicyError, tomllib.TOMLDecodeError) as exc:
            self.log.event("error", "rollout candidate policy invalid", error=str(exc))
            return
        if self.policy.simulated:
            shared = {
                n: p.base_url for n, p in self.policy.providers.items() if n in candidate.providers
            }
            candidate = candidate.with_base_urls(shared, simulated=True)
        self.canary = self._engine(candidate, live["id"])
        self.canary_scores = self._apply(self.canary)
        self._index()
        self.log.event(
            "warning", "rollout candidate loaded", rollout=live["id"], stage=live["stage"]
        )


def _evidence(g: GoldScore) -> hybrid.Evidence:
    return hybrid.Evidence(float(g.cases), g.score * g.cases)
