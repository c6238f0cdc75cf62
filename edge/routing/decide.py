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
    degraded: str = ""  # what a degrade did: "model" (a cheaper primary), "max_tokens=N" or "none"


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
        self.quality: dict[str, float] = {}
        self.set_quality({})  # the policy's scores until a gold report says otherwise
        self.pools = {
            name: [self.index[m] for m in tier.pool] for name, tier in policy.tiers.items()
        }
        self.ttft = {name: LatencySketch(window_s=window_s, slots=10) for name in self.names}
        self.p95_ms = [0.0] * len(self.names)
        # output tokens per (tier, model) and per tier ("" model): the expected output of a
        # request that sets no max_tokens is the learned P95, refreshed with the rest
        self.output: dict[tuple[str, str], LatencySketch] = {}
        self.expected: dict[tuple[str, str], int] = {}
        self._window_s = window_s
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
        force: str = "",
    ) -> Decision:
        """``force``: ``cheapest`` degrades to the cheapest candidate meeting the floor whatever
        the cost (a key over its degrade threshold, a queued job); ``block`` blocks (a key over
        its block threshold) unless the tier never blocks."""
        input_tokens = estimate_request_tokens(parts, messages)
        pool = self.pools.get(tier.name, [])
        head: list[int] = []
        if model is not None:
            # a named model is the primary, its own fallbacks next; the cost action is its own
            head = [self.index[model.name]] + [self.index[f] for f in model.fallbacks]
            pool = [i for i in pool if i not in head]
            fits, action, max_tokens, cost = self._run(
                tier, head[:1], input_tokens, max_output, 0, force=force
            )
            if (
                not fits
            ):  # over the model's context window: the provider will say so; price it anyway
                cost = self.table.cost(head[0], input_tokens, max_output)
        order, pool_action, pool_max, pool_cost = self._run(
            tier, pool, input_tokens, max_output, needs, force=force
        )
        if model is None:
            action, max_tokens, cost = pool_action, pool_max, pool_cost
        chosen = head + order
        degraded = ""
        if action == route.DEGRADE:
            if tier.degrade_mode == "max_tokens" and force != "cheapest":
                degraded = f"max_tokens={max_tokens}"
            elif model is None:
                # decide moved the cheapest candidate meeting the floor first, if it was not
                plain = self._run(tier, pool, input_tokens, max_output, needs, degrade=False)[0]
                degraded = "model" if plain[:1] != order[:1] else "none"
            else:
                # the named model is over the degrade threshold: the cheapest of its fallbacks
                # and the pool that meets the floor and the request's needs serves instead
                alt, _, _, alt_cost = self._run(
                    tier, chosen, input_tokens, max_output, needs, force=force or "model"
                )
                if alt and alt[0] != chosen[0]:
                    chosen.remove(alt[0])
                    chosen.insert(0, alt[0])
                    cost = alt_cost
                    degraded = "model"
                else:
                    degraded = "none"  # nothing cheaper meets the floor
        models = [self.policy.models[self.names[i]] for i in chosen]
        return Decision(models, ACTIONS[action], max_tokens, input_tokens, cost, degraded)

    def _run(
        self,
        tier: Tier,
        pool: list[int],
        input_tokens: int,
        max_output: int,
        needs: int,
        degrade: bool = True,
        force: str = "",
    ) -> tuple[list[int], int, int, float]:
        inf = float("inf")
        degrade_usd = tier.degrade_usd if degrade else inf
        block_usd = tier.block_usd if degrade else inf
        mode = (
            route.DEGRADE_MAX_TOKENS if tier.degrade_mode == "max_tokens" else route.DEGRADE_MODEL
        )
        if force == "cheapest":
            degrade_usd, block_usd, mode = 0.0, inf, route.DEGRADE_MODEL
        elif force == "block":
            block_usd = 0.0
        elif force == "model":
            mode = route.DEGRADE_MODEL
        result: tuple[list[int], int, int, float] = route.decide(
            self.table,
            pool,
            STRATEGIES[tier.strategy],
            tier.quality_floor,
            float(tier.p95_target_ms),
            tier.warn_usd,
            degrade_usd,
            block_usd,
            tier.never_block,
            mode,
            input_tokens,
            max_output,
            needs,
        )
        return result

    def set_quality(self, scores: dict[str, float]) -> None:
        """Quality scores measured by a gold run; models it did not score keep the policy's."""
        for i, name in enumerate(self.names):
            m = self.policy.models[name]
            q = scores.get(name, m.quality)
            self.quality[name] = q
            # the estimate counts cl100k_base tokens; a model that tokenises differently pays
            # for its own count
            self.table.set_model(
                i, m.input_usd_per_mtok * m.token_factor, m.output_usd_per_mtok, q,
                m.context_window, ALL_CAPS,
            )  # fmt: skip

    def expected_output(self, tier: Tier, model: Model | None) -> int:
        """Output tokens to price a request without max_tokens: the learned P95 for this
        model in this tier (or for the tier, for a route alias), else the policy's default."""
        learned = self.expected.get((tier.name, model.name if model is not None else ""))
        return learned or tier.expected_output_tokens

    def record_output(self, tier: str, model: str, tokens: int, now: float) -> None:
        if tokens <= 0:
            return
        for key in ((tier, model), (tier, "")):
            sketch = self.output.get(key)
            if sketch is None:
                sketch = self.output[key] = LatencySketch(window_s=self._window_s * 12, slots=12)
            sketch.add(float(tokens), now)

    def record_ttft(self, model: str, seconds: float, now: float) -> None:
        sketch = self.ttft.get(model)
        if sketch is not None:
            sketch.add(seconds, now)

    def refresh(self, now: float) -> None:
        """Move breakers whose cool-down is over to half-open; copy each model's live P95 time
        to first token and breaker state into the decision table."""
        self.breakers.tick(now)
        for key, sketch in self.output.items():
            if sketch.count(now) >= 20:  # a few answers are no distribution
                self.expected[key] = int(sketch.quantile(0.95, now) + 0.5)
            else:
                self.expected.pop(key, None)
        for i, name in enumerate(self.names):
            sketch = self.ttft[name]
            self.p95_ms[i] = sketch.quantile(0.95, now) * 1000.0 if sketch.count(now) else 0.0
            self._set_health(i)
