"""The routing decision for one request, on the compiled hot path.

``Router`` is built once per worker from the policy: a ``CandidateTable``
with every model's prices, quality and context window, and each tier's pool
as table indices. Per request (no I/O): estimate input tokens from the
request's text (``hotpath.tokens``), choose the candidates in order and the
cost action (``hotpath.route``). After the answer, the time to first token
goes into the model's latency sketch (``hotpath.sketch``); ``refresh``
copies the live P95s into the table once a second, so deciding never
computes a quantile.

A request that names a model gets that model first, then its own
fallbacks, then the rest of the tier's pool as decided; a route alias
(``auto``, ``L0``..) gets the decision's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.policy import Model, Policy, Tier
from edge.routing.breaker import BreakerConfig, Breakers, Listener, State
from hotpath import route
from hotpath.sketch import LatencySketch
from hotpath.tokens import estimate_request_tokens

STRATEGIES = {"quality": route.QUALITY, "value": route.VALUE, "latency": route.LATENCY}
ACTIONS = {route.OK: "ok", route.WARN: "warn", route.DEGRADE: "degrade", route.BLOCK: "block"}
ALL_CAPS = route.CAP_TOOLS | route.CAP_VISION | route.CAP_JSON


@dataclass(slots=True)
class Decision:
    order: list[Model]  # the primary first, then hedges and fallbacks
    action: str  # ok | warn | degrade | block
    max_tokens: int
    input_tokens: int
    cost_usd: float  # estimated cost of the primary


class Router:
    def __init__(
        self,
        policy: Policy,
        window_s: float = 300.0,
        breaker_config: BreakerConfig | None = None,
    ) -> None:
        self.policy = policy
        self.names = sorted(policy.models)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.table = route.CandidateTable(len(self.names))
        for i, name in enumerate(self.names):
            m = policy.models[name]
            # the estimate counts cl100k_base tokens; a model that tokenises differently pays for its own count
            self.table.set_model(
                i,
                m.input_usd_per_mtok * m.token_factor,
                m.output_usd_per_mtok,
                m.quality,
                m.context_window,
                ALL_CAPS,
            )
        self.pools = {
            name: [self.index[m] for m in tier.pool] for name, tier in policy.tiers.items()
        }
        self.ttft = {name: LatencySketch(window_s=window_s, slots=10) for name in self.names}
        self.p95_ms = [0.0] * len(self.names)
        self.listeners: list[Listener] = []
        self.breakers = Breakers(self.names, breaker_config or BreakerConfig(), self._transition)

    def _transition(self, model: str, old: State, new: State, now: float) -> None:
        """A breaker moved: the table sees it before the next decision, not at the next refresh."""
        self._set_health(self.index[model])
        for listener in self.listeners:
            listener(model, old, new, now)

    def _set_health(self, i: int) -> None:
        b = self.breakers[self.names[i]]
        self.table.set_health(i, int(b.state), self.p95_ms[i], b.last_failure)

    def decide(
        self,
        tier: Tier,
        model: Model | None,
        parts: list[bytes],
        messages: int,
        needs: int,
        max_output: int,
    ) -> Decision:
        input_tokens = estimate_request_tokens(parts, messages)
        pool = self.pools.get(tier.name, [])
        head: list[int] = []
        if model is not None:
            # a named model is the primary, its own fallbacks next; the cost action is its own
            head = [self.index[model.name]] + [self.index[f] for f in model.fallbacks]
            pool = [i for i in pool if i not in head]
            fits, action, max_tokens, cost = self._run(tier, head[:1], input_tokens, max_output, 0)
            if (
                not fits
            ):  # over the model's context window: the provider will say so; price it anyway
                cost = self.table.cost(head[0], input_tokens, max_output)
        order, pool_action, pool_max, pool_cost = self._run(
            tier, pool, input_tokens, max_output, needs
        )
        if model is None:
            action, max_tokens, cost = pool_action, pool_max, pool_cost
        models = [self.policy.models[self.names[i]] for i in head + order]
        return Decision(models, ACTIONS[action], max_tokens, input_tokens, cost)

    def _run(
        self, tier: Tier, pool: list[int], input_tokens: int, max_output: int, needs: int
    ) -> tuple[list[int], int, int, float]:
        result: tuple[list[int], int, int, float] = route.decide(
            self.table,
            pool,
            STRATEGIES[tier.strategy],
            tier.quality_floor,
            float(tier.p95_target_ms),
            tier.warn_usd,
            tier.degrade_usd,
            tier.block_usd,
            False,
            route.DEGRADE_MODEL,
            input_tokens,
            max_output,
            needs,
        )
        return result

    def record_ttft(self, model: str, seconds: float, now: float) -> None:
        sketch = self.ttft.get(model)
        if sketch is not None:
            sketch.add(seconds, now)

    def refresh(self, now: float) -> None:
        """Move breakers whose cool-down is over to half-open; copy each model's live P95 time
        to first token and breaker state into the decision table."""
        self.breakers.tick(now)
        for i, name in enumerate(self.names):
            sketch = self.ttft[name]
            self.p95_ms[i] = sketch.quantile(0.95, now) * 1000.0 if sketch.count(now) else 0.0
            self._set_health(i)
