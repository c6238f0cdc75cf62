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
from typing import Any

from edge.budget.media import media_tokens
from edge.budget.prompt_cache import Prefix, PrefixMemory
from edge.policy import Model, Policy, Tier
from edge.routing.breaker import BreakerConfig, Breakers, Listener, State
from hotpath import route
from hotpath.sketch import LatencySketch
from hotpath.tokens import BASE_FAMILY, OVER_BASE, estimate_request_tokens

STRATEGIES = {"quality": route.QUALITY, "value": route.VALUE, "latency": route.LATENCY}
ACTIONS = {route.OK: "ok", route.WARN: "warn", route.DEGRADE: "degrade", route.BLOCK: "block"}


@dataclass(slots=True)
class Decision:
    order: list[Model]  # the primary first, then hedges and fallbacks: all within the cap
    action: str  # ok | warn | degrade | block
    max_tokens: int  # the expected output, or the lowered ceiling of a degrade by max_tokens
    input_tokens: int
    cost_usd: float  # estimated cost of the primary
    degraded: str = ""  # what a degrade did: "model" (a cheaper primary), "max_tokens=N" or "none"
    cap_usd: float = 0.0  # no attempt of this request may be estimated above it
    capped: int = 0  # healthy candidates left out because they cost more than the cap


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
        # a tier's own scores (the hybrid of its answers, edge/quality/hybrid.py) in a table of
        # its own; a tier without one decides on ``table``
        self.tier_tables: dict[str, route.CandidateTable] = {}
        self.tier_quality: dict[str, dict[str, float]] = {}
        self.set_quality({})  # the policy's scores until a gold report says otherwise
        self.pools = {
            name: [self.index[m] for m in tier.pool] for name, tier in policy.tiers.items()
        }
        self.ttft = {name: LatencySketch(window_s=window_s, slots=10) for name in self.names}
        self.p95_ms = [0.0] * len(self.names)
        self.p50_s: dict[str, float] = {}  # typical time to first token, once it is known
        # output tokens per (tier, model) and per tier ("" model): the expected output of a
        # request that sets no max_tokens is the learned P95, refreshed with the rest
        self.output: dict[tuple[str, str], LatencySketch] = {}
        self.expected: dict[tuple[str, str], int] = {}
        self._window_s = window_s
        self.listeners: list[Listener] = []
        self._limits: dict[tuple[str, str], tuple[int, int]] = {}
        # the prompt prefixes each model holds in its cache, as far as this worker sent them
        self.prefixes = PrefixMemory()
        self.explicit_only = [
            policy.providers[policy.models[n].provider].kind == "anthropic" for n in self.names
        ]
        self.caches = [bool(policy.models[n].capabilities & route.CAP_CACHE) for n in self.names]
        self.breakers = Breakers(self.names, breaker_config or BreakerConfig(), self._transition)

    def _transition(self, model: str, old: State, new: State, now: float) -> None:
        """A breaker moved: the table sees it before the next decision, not at the next refresh."""
        self._set_health(self.index[model])
        for listener in self.listeners:
            listener(model, old, new, now)

    def _set_health(self, i: int) -> None:
        b = self.breakers[self.names[i]]
        self.table.set_health(i, int(b.state), self.p95_ms[i], b.last_failure)
        for table in self.tier_tables.values():
            table.set_health(i, int(b.state), self.p95_ms[i], b.last_failure)

    def decide(
        self,
        tier: Tier,
        model: Model | None,
        parts: list[bytes],
        messages: int,
        needs: int,
        max_output: int,
        force: str = "",
        input_tokens: int | None = None,
        prefixes: list[Prefix] | None = None,
        now: float = 0.0,
    ) -> Decision:
        """The candidates in order and the cost action for one request; ``max_output`` is the
        expected output (already capped by the request's max_tokens).

        ``force``: ``cheapest`` degrades to the cheapest candidate meeting the floor whatever
        the cost (a key over its degrade threshold, a queued job); ``block`` blocks (a key over
        its block threshold) unless the tier never blocks. Whatever the action, the cap that
        results binds every candidate (see ``hotpath._route_py``). ``prefixes``: the request's
        cacheable prefixes; a model that holds one (at ``now``) is priced for a cache read."""
        if input_tokens is None:
            input_tokens = self.estimate(parts, messages)
        pool = self.pools.get(tier.name, [])
        pinned = 0
        if model is not None:
            # a named model is the primary, its own fallbacks next, then the tier's pool
            head = [self.index[model.name]] + [self.index[f] for f in model.fallbacks]
            pool = head + [i for i in pool if i not in head]
            pinned = len(head)
        cached = None
        if prefixes:
            memory = self.prefixes
            cached = [
                memory.cached(self.names[i], self.explicit_only[i], prefixes, now)
                if self.caches[i]
                else 0
                for i in pool
            ]
        order, action, max_tokens, cost, capped = self._run(
            tier, pool, pinned, input_tokens, max_output, needs, force, cached
        )
        degraded = ""
        if action == route.DEGRADE:
            if tier.degrade_mode == "max_tokens" and force != "cheapest":
                degraded = f"max_tokens={max_tokens}"
            else:
                plain = self._run(
                    tier, pool, pinned, input_tokens, max_output, needs, "", cached, False
                )[0]
                degraded = "model" if plain[:1] != order[:1] else "none"
        cap = 0.0
        if action != route.BLOCK:
            floor = tier.degrade_usd
            cap = cost if cost > floor else floor
        models = [self.policy.models[self.names[i]] for i in order]
        return Decision(
            models, ACTIONS[action], max_tokens, input_tokens, cost, degraded, cap, capped
        )

    def _run(
        self,
        tier: Tier,
        pool: list[int],
        pinned: int,
        input_tokens: int,
        max_output: int,
        needs: int,
        force: str,
        cached: list[int] | None = None,
        degrade: bool = True,
    ) -> tuple[list[int], int, int, float, int]:
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
        result: tuple[list[int], int, int, float, int] = route.decide(
            self.tier_tables.get(tier.name, self.table),
            pool,
            pinned,
            STRATEGIES[tier.strategy],
            tier.quality_floor,
            float(tier.p95_target_ms),
            tier.warn_usd,
            degrade_usd,
            block_usd,
            tier.degrade_usd,
            tier.never_block,
            mode,
            input_tokens,
            max_output,
            needs,
            cached,
        )
        return result

    def limits(self, tier: Tier, named: Model | None) -> tuple[int, int]:
        """The largest output limit and context window among every candidate that could serve a
        request of ``tier`` naming ``named`` (its fallbacks and the tier's pool included)."""
        key = (tier.name, named.name if named is not None else "")
        found = self._limits.get(key)
        if found is None:
            pool = [self.policy.models[m] for m in tier.pool]
            if named is not None:
                pool += [named, *(self.policy.models[f] for f in named.fallbacks)]
            found = self._limits[key] = (
                max((m.max_output_tokens for m in pool), default=0),
                max((m.context_window for m in pool), default=0),
            )
        return found

    def sent(self, model: Model, prefixes: list[Prefix], now: float) -> None:
        """``model`` took a request with these prefixes: its provider caches them."""
        i = self.index.get(model.name)
        if prefixes and i is not None and self.caches[i]:
            self.prefixes.sent(model.name, self.explicit_only[i], prefixes, now)

    def estimate(
        self, parts: list[bytes], messages: int, media: list[dict[str, Any]] | None = None
    ) -> int:
        """Input tokens of a request in the router's unit, o200k's (the family of the OpenAI
        models): its text, and its images and documents by OpenAI's formula. A model of
        another family pays for its own count through its price in the table (``OVER_BASE``
        times the policy's ``token_factor``)."""
        tokens = estimate_request_tokens(parts, messages, family=BASE_FAMILY)
        for block in media or ():
            tokens += media_tokens(block, BASE_FAMILY)
        return tokens

    def set_quality(
        self, scores: dict[str, float], by_tier: dict[str, dict[str, float]] | None = None
    ) -> None:
        """Measured quality scores: per model (models without one keep the policy's), and, in
        ``by_tier``, a tier's own per model (over the per-model score) for its quality floor."""
        for i, name in enumerate(self.names):
            q = scores.get(name, self.policy.models[name].quality)
            self.quality[name] = q
            self._set_model(self.table, i, q)
        if by_tier is None:
            return
        self.tier_quality = {t: dict(s) for t, s in by_tier.items() if t in self.policy.tiers}
        for tier in list(self.tier_tables):
            if tier not in self.tier_quality:
                del self.tier_tables[tier]
        for tier, tier_scores in self.tier_quality.items():
            table = self.tier_tables.get(tier)
            if table is None:
                table = self.tier_tables[tier] = route.CandidateTable(len(self.names))
            for i, name in enumerate(self.names):
                self._set_model(table, i, tier_scores.get(name, self.quality[name]))
                b = self.breakers[name]
                table.set_health(i, int(b.state), self.p95_ms[i], b.last_failure)

    def _set_model(self, table: route.CandidateTable, i: int, q: float) -> None:
        m = self.policy.models[self.names[i]]
        # the estimate counts o200k tokens; a model that tokenises differently pays for its
        # own count
        factor = OVER_BASE[m.tokenizer] * m.token_factor
        table.set_model(
            i, m.input_usd_per_mtok * factor, m.output_usd_per_mtok, q,
            m.context_window, m.capabilities, m.cached_input_usd_per_mtok * factor,
        )  # fmt: skip

    def expected_output(self, tier: Tier, model: Model | None, max_tokens: int | None) -> int:
        """Output tokens to price a request: the learned P95 for this model in this tier (or
        for the tier, for a route alias), else the policy's prior; never more than the
        request's max_tokens, which is a ceiling and not an expectation."""
        learned = self.expected.get((tier.name, model.name if model is not None else ""))
        expected = learned or tier.expected_output_tokens
        return min(expected, max_tokens) if max_tokens else expected

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

    def typical_ttft_s(self, model: str) -> float:
        """The model's live median time to first token (0 until it has a few answers): the
        least an attempt on it needs."""
        return self.p50_s.get(model, 0.0)

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
            if sketch.count(now) >= 5:
                self.p50_s[name] = sketch.quantile(0.5, now)
            else:
                self.p50_s.pop(name, None)
            self._set_health(i)
