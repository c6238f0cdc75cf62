"""The hybrid quality score: gold runs, online checks and human feedback, blended (pure).

Per (tier, task, model) three sources say how good a model's answers are,
each as a count ``n`` and a mean ``m`` in [0, 1]:

- ``gold``: the model's last measured gold success rate over its cases (one
  score per model, the same in every tier and task; ``edge/quality/gold.py``);
- ``online``: the share of live answers that passed the automatic checks
  (``edge/quality/online.py``), over the retention period;
- ``human``: the mean feedback score (thumbs up 1, down 0) over the same period.

Each source alone is shrunk toward the prior ``p`` (the model's policy
``quality``) by ``k_s`` pseudo-observations, and weighs in with its policy
weight ``w_s`` times its confidence ``n / (n + k_s)``::

    q_s    = (n_s * m_s + k_s * p) / (n_s + k_s)
    a_s    = w_s * n_s / (n_s + k_s)
    hybrid = sum(a_s * q_s) / sum(a_s)        (p when no source has data)

So a handful of observations barely moves a score, a source without data
takes no share (a measured bad gold score is not diluted by the absence of
feedback), and the result moves continuously as evidence arrives. The
tier-level score a tier routes on sums each source's evidence over every
task of that tier (gold is per model already).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SOURCES = ("gold", "online", "human")
ONLINE_CHECKS = ("json", "tool_args", "empty", "length", "refusal")
ALL_TASKS = "all"  # the task label of the tier-level score (every task together)
OTHER_TASK = "other"  # a request's label the policy does not list


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """The policy's ``[quality]`` table."""

    tasks: tuple[str, ...] = ()  # the task labels x-edge-task may carry (others: "other")
    retention_days: float = 30.0  # answer records and feedback are kept this long
    feedback_per_minute: float = 60.0  # per gateway key (a bucket of as many, refilled evenly)
    weight_gold: float = 0.5
    weight_online: float = 0.2
    weight_human: float = 0.3
    prior_gold: float = 10.0  # pseudo-observations of the prior, per source
    prior_online: float = 50.0
    prior_human: float = 20.0
    online_checks: tuple[str, ...] = ONLINE_CHECKS  # the checks an answer must pass

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0

    def weight(self, source: str) -> float:
        return float(getattr(self, f"weight_{source}"))

    def prior(self, source: str) -> float:
        return float(getattr(self, f"prior_{source}"))


@dataclass(slots=True)
class Evidence:
    """Observations of one source: how many, and the sum of their scores."""

    n: float = 0.0
    total: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def add(self, other: Evidence) -> None:
        self.n += other.n
        self.total += other.total


@dataclass(frozen=True, slots=True)
class GoldScore:
    """A model's last measured gold score: kept until a run with enough cases replaces it."""

    score: float
    cases: int
    measured_at: float  # unix seconds


def shrunk(prior: float, ev: Evidence, k: float) -> float:
    """One source's score, shrunk toward the prior by ``k`` pseudo-observations."""
    if ev.n + k <= 0:
        return prior
    return (ev.total + k * prior) / (ev.n + k)


def blend(prior: float, evidence: Mapping[str, Evidence], cfg: QualityConfig) -> float:
    """The hybrid score of one (tier, task, model) (formula in the module docstring)."""
    num = den = 0.0
    for source in SOURCES:
        ev = evidence.get(source)
        if ev is None or ev.n <= 0:
            continue
        k = cfg.prior(source)
        a = cfg.weight(source) * ev.n / (ev.n + k)
        num += a * shrunk(prior, ev, k)
        den += a
    return num / den if den > 0 else prior


# (tier, task, model) -> source -> evidence (online and human, from the state backend)
Counts = dict[tuple[str, str, str], dict[str, Evidence]]


def counts_of(rows: Iterable[tuple[str, str, str, int, int, int, float]]) -> Counts:
    """The state's rows (tier, task, model, online_n, online_ok, human_n, human_sum) as evidence."""
    out: Counts = {}
    for tier, task, model, online_n, online_ok, human_n, human_sum in rows:
        ev = out.setdefault((tier, task, model), {"online": Evidence(), "human": Evidence()})
        ev["online"].add(Evidence(float(online_n), float(online_ok)))
        ev["human"].add(Evidence(float(human_n), float(human_sum)))
    return out


@dataclass(slots=True)
class Row:
    """One exported score: per source the raw mean and its count, and the hybrid."""

    tier: str
    task: str
    model: str
    prior: float
    evidence: dict[str, Evidence] = field(default_factory=dict)
    hybrid: float = 0.0


def table(
    tiers: Mapping[str, Iterable[str]],
    priors: Mapping[str, float],
    gold: Mapping[str, GoldScore],
    counts: Counts,
    cfg: QualityConfig,
) -> list[Row]:
    """Every score to export and route on: per tier, each model of its pool (and any model
    with evidence in it) for all tasks together (``task="all"``), and each (task, model)
    with evidence of its own."""
    rows: list[Row] = []
    by_tier: dict[tuple[str, str], dict[str, Evidence]] = {}
    for (tier, _task, model), ev in counts.items():
        acc = by_tier.setdefault((tier, model), {"online": Evidence(), "human": Evidence()})
        for source, e in ev.items():
            acc[source].add(e)
    for tier, pool in tiers.items():
        models = list(dict.fromkeys([*pool, *(m for t, m in by_tier if t == tier)]))
        for model in models:
            if model not in priors:
                continue  # a model no longer in the policy
            rows.append(_row(tier, ALL_TASKS, model, priors, gold, by_tier.get((tier, model)), cfg))
    for (tier, task, model), ev in sorted(counts.items()):
        if tier in tiers and model in priors:
            rows.append(_row(tier, task, model, priors, gold, ev, cfg))
    return rows


def _row(
    tier: str,
    task: str,
    model: str,
    priors: Mapping[str, float],
    gold: Mapping[str, GoldScore],
    ev: dict[str, Evidence] | None,
    cfg: QualityConfig,
) -> Row:
    evidence = {s: Evidence(e.n, e.total) for s, e in (ev or {}).items() if e.n > 0}
    g = gold.get(model)
    if g is not None and g.cases > 0:
        evidence["gold"] = Evidence(float(g.cases), g.score * g.cases)
    prior = priors[model]
    return Row(tier, task, model, prior, evidence, blend(prior, evidence, cfg))


def routing(rows: Iterable[Row]) -> dict[str, dict[str, float]]:
    """The tier-level hybrid (all tasks) per tier and model: what each tier's floor judges."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.task == ALL_TASKS:
            out.setdefault(r.tier, {})[r.model] = r.hybrid
    return out
