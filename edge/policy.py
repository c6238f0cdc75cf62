"""The routing policy: providers, models with prices and fallbacks, tiers.

A TOML file (``EDGE_POLICY``; the shipped default is
``edge/policies/default.toml``) becomes a frozen ``Policy``. Environment
overrides are applied here, once: ``EDGE_<PROVIDER>_BASE_URL`` for a
provider's base URL, ``EDGE_<TIER>_<KEY>`` for any tier key,
``EDGE_BREAKER_<KEY>`` for any key of the ``[breakers]`` table. Provider keys
are read from each provider's ``api_key_env`` and kept in a ``Secret`` whose
repr never shows them. Every mistake is a ``PolicyError`` naming the key.
"""

from __future__ import annotations

import difflib
import os
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from edge.quality.hybrid import ONLINE_CHECKS, QualityConfig
from edge.routing.breaker import BreakerConfig
from edge.routing.capabilities import CAPABILITIES, KIND_DEFAULTS, bits
from edge.server.admission import AdmissionConfig

KINDS = ("openai", "anthropic")
MODEL_KINDS = ("chat", "embedding")  # what a model answers: chat routes or /v1/embeddings
STRATEGIES = ("quality", "value", "latency")
ALIASES = ("auto", "L0", "L1", "L2")
FAMILIES = ("cl100k", "o200k", "claude")
TOKENIZERS = {"openai": "o200k", "anthropic": "claude"}  # a model's default estimator family


class PolicyError(ValueError):
    """The policy file or an override is invalid."""


class Secret:
    """A credential: usable as ``.value``, never printed."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    kind: str
    base_url: str
    api_key_env: str
    api_key: Secret
    anthropic_version: str = "2023-06-01"
    # anthropic-beta names (fnmatch patterns) passed on, and refused with a 400; any other
    # beta is not forwarded (see edge/server/relay.py ``betas_for``)
    betas_pass: tuple[str, ...] = ()
    betas_refuse: tuple[str, ...] = ()
    # a simulated provider (edge/simulate): the only kind the x-sim fault header is forwarded to
    simulated: bool = False
    # the base URL's parts, split once (every upstream call reads them)
    scheme: str = field(init=False)
    host: str = field(init=False)
    port: int = field(init=False)
    path_prefix: str = field(init=False)
    host_header: bytes = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        object.__setattr__(self, "scheme", parts.scheme)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "path_prefix", parts.path.rstrip("/"))
        header = host if port in (80, 443) else f"{host}:{port}"
        object.__setattr__(self, "host_header", header.encode())


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    provider: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cached_input_usd_per_mtok: float
    cache_write_usd_per_mtok: float
    quality: float
    context_window: int
    max_output_tokens: int
    default_max_tokens: int
    fallbacks: tuple[str, ...]
    upstream_model: str
    token_factor: float = 1.0  # this model's tokens per token of its family's estimate
    capabilities: int = 0  # CAP_* bits (edge.routing.capabilities): what it can carry
    tokenizer: str = "o200k"  # the estimator family: cl100k | o200k | claude
    aliases: tuple[str, ...] = ()  # other ids clients send for it (dated snapshots)
    released: str = ""  # YYYY-MM-DD, for the models lists' creation dates
    kind: str = "chat"  # chat | embedding: the routes it serves, never the other's


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    pool: tuple[str, ...]
    strategy: str
    soft_timeout_ms: int
    first_token_timeout_ms: int
    idle_timeout_ms: int
    total_timeout_ms: int
    p95_target_ms: int
    quality_floor: float
    warn_usd: float
    degrade_usd: float
    block_usd: float
    degrade_mode: str = "model"  # model | max_tokens
    never_block: bool = False  # answer over-threshold requests now (degraded), never as a job
    expected_output_tokens: int = 512  # until the tier has learned its P95 output length
    rank: int = 0  # entitlement order: a key allowed rank r may use tiers of rank >= r (L0 = 0)
    hedge_budget_percent: float = 10.0  # hedges as a share of this tier's requests (a minute)
    # admission (edge/server/admission.py): its own concurrency cap (0: the worker's alone),
    # its queue's length, and the longest a request of it waits for a slot
    max_in_flight: int = 0
    max_queued: int = 64
    max_queue_ms: int = 10000
    # the share of a model's provider quota this tier leaves to higher tiers (0..1)
    quota_reserve: float = 0.0
    rescue: str = "continue"  # a stream broken after bytes reached the client: continue | error


@dataclass(frozen=True, slots=True)
class Budget:
    """A tenant's spend budget: USD per UTC day and month, thresholds as fractions of them."""

    tenant: str
    day_usd: float
    month_usd: float
    warn: float = 0.8
    degrade: float = 0.9
    block: float = 1.0
    overdraft: float = 0.0  # a share past ``block`` that never-block tiers may still spend


ROLLOUT_KEYS = ("holdback_percent",)


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """The ``[rollout]`` table: how a rollout of a candidate against this policy is run."""

    holdback_percent: float = 5.0  # of traffic kept on the baseline at the last stage


@dataclass(frozen=True, slots=True)
class Policy:
    providers: dict[str, Provider]
    models: dict[str, Model]
    tiers: dict[str, Tier]
    default_tier: str
    prices_date: str
    source: str = ""
    simulated: frozenset[str] = field(default_factory=frozenset)
    budgets: dict[str, Budget] = field(default_factory=dict)
    webhook_url: str = ""
    aliases: dict[str, str] = field(default_factory=dict)  # a model's other id -> its name
    breakers: BreakerConfig = field(default_factory=BreakerConfig)  # per model, every worker
    quality: QualityConfig = field(default_factory=QualityConfig)  # the hybrid score, feedback
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)  # per worker
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)  # how candidates roll out

    def model_named(self, name: str) -> Model | None:
        """A model by its name or one of its aliases (a dated id)."""
        model = self.models.get(name)
        if model is None and name in self.aliases:
            model = self.models[self.aliases[name]]
        return model

    def budget_for(self, tenant: str) -> Budget | None:
        return self.budgets.get(tenant) or self.budgets.get("default")

    def provider_of(self, model: Model) -> Provider:
        return self.providers[model.provider]

    def with_base_urls(self, base_urls: Mapping[str, str], simulated: bool) -> Policy:
        """A copy with providers pointed elsewhere (the embedded simulator)."""
        providers = {
            name: Provider(
                p.name,
                p.kind,
                base_urls.get(name, p.base_url),
                p.api_key_env,
                p.api_key or Secret("sim"),
                p.anthropic_version,
                p.betas_pass,
                p.betas_refuse,
                name in base_urls if simulated else p.simulated,
            )
            for name, p in self.providers.items()
        }
        sim = frozenset(n for n, p in providers.items() if p.simulated)
        return replace(self, providers=providers, simulated=sim)


def _get(table: Mapping[str, Any], key: str, where: str, kind: type, default: Any = None) -> Any:
    if key not in table:
        if default is None:
            raise PolicyError(f"{where}.{key}: required")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PolicyError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _coerce_env(name: str, raw: str, current: Any) -> Any:
    try:
        if isinstance(current, tuple):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        if isinstance(current, bool):
            low = raw.strip().lower()
            if low not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                raise ValueError(raw)
            return low in ("1", "true", "on", "yes")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
    except ValueError:
        raise PolicyError(f"{name}: invalid value {raw!r}") from None
    return raw


PROVIDER_KEYS = ("kind", "base_url", "api_key_env", "anthropic_version", "betas", "simulated")
# Betas a provider takes by default: they change how an answer streams or what it may hold,
# not what it costs. Refused by default: betas that run billed server tools the estimate
# cannot price, or that need state held at the provider (files, skills).
BETAS_PASS = (
    "prompt-caching-*", "interleaved-thinking-*", "fine-grained-tool-streaming-*",
    "token-efficient-tools-*", "output-128k-*", "context-1m-*", "context-management-*",
    "structured-outputs-*", "extended-cache-ttl-*", "effort-*",
)  # fmt: skip
BETAS_REFUSE = (
    "web-search-*", "web-fetch-*", "code-execution-*", "computer-use-*", "mcp-client-*",
    "files-api-*", "skills-*",
)  # fmt: skip
MODEL_KEYS = (
    "provider", "upstream_model", "input_usd_per_mtok", "output_usd_per_mtok",
    "cached_input_usd_per_mtok", "cache_write_usd_per_mtok", "quality", "context_window",
    "max_output_tokens", "default_max_tokens", "fallbacks", "token_factor", "tokenizer",
    "capabilities", "aliases", "released", "kind",
)  # fmt: skip
TIER_KEYS = (
    "pool", "strategy", "soft_timeout_ms", "first_token_timeout_ms", "idle_timeout_ms",
    "total_timeout_ms", "p95_target_ms", "quality_floor", "warn_usd", "degrade_usd",
    "block_usd", "degrade_mode", "never_block", "expected_output_tokens", "rank",
    "hedge_budget_percent",
    "max_in_flight", "max_queued", "max_queue_ms", "quota_reserve",
    "rescue",
)  # fmt: skip
# A tier's hedge budget when neither the policy nor EDGE_HEDGE_BUDGET_PERCENT sets it, by rank:
# the critical tier may spend the most on its tail, the batch tier the least.
HEDGE_BUDGET_BY_RANK = (25.0, 15.0, 8.0)
ADMISSION_KEYS = ("max_in_flight", "max_queued", "priority", "quota_aware")
# What a stream broken after its first byte does: continued on a fallback, or ended with the
# dialect's error event. On by default for the interactive tiers (rank 0 and 1); a batch tier's
# client retries a whole answer more cheaply than the gateway stitches one.
RESCUE_MODES = ("continue", "error")
BUDGET_KEYS = ("day_usd", "month_usd", "warn", "degrade", "block", "overdraft")
BREAKER_KEYS = (
    "failures", "window_s", "failure_rate", "min_attempts", "cooldown_s", "cooldown_max_s",
    "probes", "successes", "jitter",
)  # fmt: skip


def _known(table: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    """A mistyped key fails the start naming the nearest valid one (``qualty``: ``quality``)."""
    for key in table:
        if key not in keys:
            near = difflib.get_close_matches(key, keys, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid: {', '.join(keys)}"
            raise PolicyError(f"{where}.{key}: unknown key{hint}")


def env_names(policy: Policy) -> set[str]:
    """Every ``EDGE_*`` variable this policy reads (provider URLs, tier overrides)."""
    names = {f"EDGE_{p.upper()}_BASE_URL" for p in policy.providers}
    for tier in policy.tiers:
        names |= {f"EDGE_{tier.upper()}_{key.upper()}" for key in TIER_KEYS}
    names |= {f"EDGE_ADMISSION_{key.upper()}" for key in ADMISSION_KEYS}
    return names | {f"EDGE_BREAKER_{key.upper()}" for key in BREAKER_KEYS}


def _admission(table: Mapping[str, Any], env: Mapping[str, str]) -> AdmissionConfig:
    """The ``[admission]`` table over the defaults, then ``EDGE_ADMISSION_<KEY>`` over both."""
    where = "admission"
    _known(table, ADMISSION_KEYS, where)
    default = AdmissionConfig()
    values: dict[str, Any] = {}
    for key in ADMISSION_KEYS:
        current = getattr(default, key)
        values[key] = _get(table, key, where, type(current), current)
        env_name = f"EDGE_ADMISSION_{key.upper()}"
        if env.get(env_name):
            values[key] = _coerce_env(env_name, env[env_name], current)
        if isinstance(values[key], int) and not isinstance(values[key], bool) and values[key] < 0:
            source = f" (set by {env_name})" if env.get(env_name) else ""
            raise PolicyError(f"{where}.{key}: must not be negative{source}")
    return AdmissionConfig(**values)


def _breakers(table: Mapping[str, Any], env: Mapping[str, str]) -> BreakerConfig:
    """The ``[breakers]`` table over the defaults, then ``EDGE_BREAKER_<KEY>`` over both."""
    where = "breakers"
    _known(table, BREAKER_KEYS, where)
    default = BreakerConfig()
    values: dict[str, Any] = {}
    named: dict[str, str] = {}
    for key in BREAKER_KEYS:
        current = getattr(default, key)
        values[key] = _get(table, key, where, type(current), current)
        env_name = f"EDGE_BREAKER_{key.upper()}"
        if env.get(env_name):
            values[key] = _coerce_env(env_name, env[env_name], current)
            named[key] = env_name

    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            source = f" (set by {named[key]})" if key in named else ""
            raise PolicyError(f"{where}.{key}: {why}{source}")

    need(values["failures"] >= 0, "failures", "must not be negative (0 turns the count rule off)")
    need(values["window_s"] > 0, "window_s", "must be greater than 0")
    need(0 < values["failure_rate"] <= 1, "failure_rate", "must be in (0, 1]")
    need(values["min_attempts"] >= 1, "min_attempts", "must be at least 1")
    need(values["cooldown_s"] > 0, "cooldown_s", "must be greater than 0")
    need(
        values["cooldown_max_s"] >= values["cooldown_s"],
        "cooldown_max_s",
        "must be at least cooldown_s",
    )
    need(values["probes"] >= 1, "probes", "must be at least 1")
    need(values["successes"] >= 1, "successes", "must be at least 1")
    need(0 <= values["jitter"] <= 1, "jitter", "must be between 0 and 1")
    return BreakerConfig(**values)


QUALITY_KEYS = (
    "tasks", "retention_days", "feedback_per_minute", "weight_gold", "weight_online",
    "weight_human", "prior_gold", "prior_online", "prior_human", "online_checks",
)  # fmt: skip


def _quality(table: Mapping[str, Any]) -> QualityConfig:
    """The ``[quality]`` table over the defaults (edge/quality/hybrid.py)."""
    from edge.quality.tasks import POLICY_LABEL, RESERVED

    where = "quality"
    _known(table, QUALITY_KEYS, where)
    default = QualityConfig()
    values: dict[str, Any] = {}
    for key in QUALITY_KEYS:
        current = getattr(default, key)
        if isinstance(current, tuple):
            raw = _get(table, key, where, list, list(current))
            if not all(isinstance(v, str) for v in raw):
                raise PolicyError(f"{where}.{key}: expected a list of strings")
            values[key] = tuple(raw)
        else:
            values[key] = _get(table, key, where, type(current), current)
    for task in values["tasks"]:
        if POLICY_LABEL.fullmatch(task) is None:
            raise PolicyError(
                f"{where}.tasks: {task!r} is not a task label (1-64 of a-z, 0-9, '_', '.', '-')"
            )
        if task in RESERVED:
            raise PolicyError(
                f"{where}.tasks: {task!r} is reserved ({', '.join(sorted(RESERVED))})"
            )
    if len(values["tasks"]) > 50:
        raise PolicyError(f"{where}.tasks: at most 50 labels (each is a metric series)")
    for check in values["online_checks"]:
        if check not in ONLINE_CHECKS:
            raise PolicyError(
                f"{where}.online_checks: unknown check {check!r}; known: {', '.join(ONLINE_CHECKS)}"
            )
    if values["retention_days"] <= 0:
        raise PolicyError(f"{where}.retention_days: must be greater than 0")
    if values["feedback_per_minute"] <= 0:
        raise PolicyError(f"{where}.feedback_per_minute: must be greater than 0")
    for source in ("gold", "online", "human"):
        if values[f"weight_{source}"] < 0:
            raise PolicyError(f"{where}.weight_{source}: must not be negative")
        if values[f"prior_{source}"] < 0:
            raise PolicyError(f"{where}.prior_{source}: must not be negative")
    return QualityConfig(**values)


def _check_tier(where: str, values: dict[str, Any], models: Mapping[str, Model]) -> None:
    for key in ("soft_timeout_ms", "first_token_timeout_ms", "idle_timeout_ms"):
        if values[key] <= 0:
            raise PolicyError(f"{where}.{key}: must be greater than 0")
    if not values["soft_timeout_ms"] < values["first_token_timeout_ms"]:
        raise PolicyError(
            f"{where}.soft_timeout_ms: must be less than first_token_timeout_ms (a hedge must have time to win)"
        )
    if not values["first_token_timeout_ms"] <= values["total_timeout_ms"]:
        raise PolicyError(f"{where}.total_timeout_ms: must be at least first_token_timeout_ms")
    if values["degrade_mode"] not in ("model", "max_tokens"):
        raise PolicyError(f"{where}.degrade_mode: must be model or max_tokens")
    if not 0 <= values["warn_usd"] <= values["degrade_usd"] <= values["block_usd"]:
        raise PolicyError(
            f"{where}: thresholds must satisfy 0 <= warn_usd <= degrade_usd <= block_usd"
        )
    if not 0 <= values["hedge_budget_percent"] <= 100:
        raise PolicyError(f"{where}.hedge_budget_percent: must be between 0 and 100")
    if values["rescue"] not in RESCUE_MODES:
        raise PolicyError(f"{where}.rescue: must be one of {', '.join(RESCUE_MODES)}")
    if values["expected_output_tokens"] < 1:
        raise PolicyError(f"{where}.expected_output_tokens: must be at least 1")
    for key in ("max_in_flight", "max_queued", "max_queue_ms"):
        if values[key] < 0:
            raise PolicyError(f"{where}.{key}: must not be negative (max_in_flight 0: no cap)")
    if not 0.0 <= values["quota_reserve"] < 1.0:
        raise PolicyError(f"{where}.quota_reserve: must be at least 0 and below 1")
    if values["strategy"] not in STRATEGIES:
        raise PolicyError(f"{where}.strategy: must be one of {STRATEGIES}")
    for m in values["pool"]:
        if m not in models:
            raise PolicyError(f"{where}.pool: unknown model {m!r}")
        if models[m].kind != "chat":
            raise PolicyError(
                f"{where}.pool: {m!r} is an embedding model; tiers route chat requests only"
            )


def parse_policy(data: Mapping[str, Any], env: Mapping[str, str], source: str = "") -> Policy:
    known = (
        "providers", "models", "tiers", "default_tier", "prices_date", "budgets", "jobs",
        "breakers", "quality", "admission", "rollout",
    )  # fmt: skip
    _known(data, known, "policy")
    providers: dict[str, Provider] = {}
    for name, t in dict(data.get("providers", {})).items():
        where = f"providers.{name}"
        _known(t, PROVIDER_KEYS, where)
        kind = _get(t, "kind", where, str)
        if kind not in KINDS:
            raise PolicyError(f"{where}.kind: must be one of {KINDS}")
        base = env.get(f"EDGE_{name.upper()}_BASE_URL") or _get(t, "base_url", where, str)
        if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).hostname:
            raise PolicyError(f"{where}.base_url: not an http(s) URL: {base!r}")
        key_env = _get(t, "api_key_env", where, str, "")
        version = _get(t, "anthropic_version", where, str, "2023-06-01")
        betas = _get(
            t, "betas", where, dict, {"pass": list(BETAS_PASS), "refuse": list(BETAS_REFUSE)}
        )
        _known(betas, ("pass", "refuse"), f"{where}.betas")
        lists = [_get(betas, k, f"{where}.betas", list, []) for k in ("pass", "refuse")]
        if not all(isinstance(p, str) for p in lists[0] + lists[1]):
            raise PolicyError(f"{where}.betas: expected lists of beta names (patterns allowed)")
        providers[name] = Provider(
            name,
            kind,
            base,
            key_env,
            Secret(env.get(key_env, "") if key_env else ""),
            version,
            tuple(lists[0]),
            tuple(lists[1]),
            _get(t, "simulated", where, bool, False),
        )
    if not providers:
        raise PolicyError("providers: at least one provider is required")

    models: dict[str, Model] = {}
    for name, t in dict(data.get("models", {})).items():
        where = f"models.{name}"
        _known(t, MODEL_KEYS, where)
        provider = _get(t, "provider", where, str)
        if provider not in providers:
            raise PolicyError(f"{where}.provider: unknown provider {provider!r}")
        prices = [_get(t, k, where, float) for k in ("input_usd_per_mtok", "output_usd_per_mtok")]
        cached = _get(t, "cached_input_usd_per_mtok", where, float, prices[0])
        write = _get(t, "cache_write_usd_per_mtok", where, float, prices[0])
        for key, value in zip(
            (
                "input_usd_per_mtok",
                "output_usd_per_mtok",
                "cached_input_usd_per_mtok",
                "cache_write_usd_per_mtok",
            ),
            (*prices, cached, write),
            strict=True,
        ):
            if value < 0:
                raise PolicyError(f"{where}.{key}: must not be negative")
        quality = _get(t, "quality", where, float, 0.9)
        if not 0.0 <= quality <= 1.0:
            raise PolicyError(f"{where}.quality: must be between 0 and 1")
        window = _get(t, "context_window", where, int)
        max_out = _get(t, "max_output_tokens", where, int, 4096)
        default_max = _get(t, "default_max_tokens", where, int, min(4096, max_out))
        fallbacks = tuple(_get(t, "fallbacks", where, list, []))
        factor = _get(t, "token_factor", where, float, 1.0)
        if not 0.2 <= factor <= 5.0:
            raise PolicyError(f"{where}.token_factor: must be between 0.2 and 5")
        kind = providers[provider].kind
        caps = _get(t, "capabilities", where, list, list(KIND_DEFAULTS[kind]))
        for cap in caps:
            if cap not in CAPABILITIES:
                raise PolicyError(
                    f"{where}.capabilities: unknown capability {cap!r}; known: {sorted(CAPABILITIES)}"
                )
        tokenizer = _get(t, "tokenizer", where, str, TOKENIZERS[kind])
        if tokenizer not in FAMILIES:
            raise PolicyError(f"{where}.tokenizer: must be one of {FAMILIES}")
        if max_out < 1 or default_max < 1 or default_max > max_out:
            raise PolicyError(f"{where}: need 1 <= default_max_tokens <= max_output_tokens")
        model_kind = _get(t, "kind", where, str, "chat")
        if model_kind not in MODEL_KINDS:
            raise PolicyError(f"{where}.kind: must be one of {MODEL_KINDS}")
        if model_kind == "embedding":
            if kind != "openai":
                raise PolicyError(
                    f"{where}.kind: an embedding model needs an openai-kind provider "
                    f"({provider!r} is {kind}; Anthropic has no embeddings API)"
                )
            if prices[1] != 0:
                raise PolicyError(f"{where}.output_usd_per_mtok: an embedding model's must be 0")
        models[name] = Model(
            name,
            provider,
            prices[0],
            prices[1],
            cached,
            write,
            quality,
            window,
            max_out,
            default_max,
            fallbacks,
            _get(t, "upstream_model", where, str, name),
            factor,
            bits(caps),
            tokenizer,
            tuple(_get(t, "aliases", where, list, [])),
            _get(t, "released", where, str, ""),
            model_kind,
        )
    aliases: dict[str, str] = {}
    for m in models.values():
        for fb in m.fallbacks:
            if fb not in models:
                raise PolicyError(f"models.{m.name}.fallbacks: unknown model {fb!r}")
            if models[fb].kind != m.kind:
                raise PolicyError(
                    f"models.{m.name}.fallbacks: {fb!r} is a {models[fb].kind} model, "
                    f"{m.name!r} a {m.kind} one"
                )
        if m.name in ALIASES:
            raise PolicyError(f"models.{m.name}: the name is a route alias")
        for alias in m.aliases:
            if not isinstance(alias, str) or not alias:
                raise PolicyError(f"models.{m.name}.aliases: expected non-empty strings")
            if alias in models or alias in ALIASES or alias in aliases:
                raise PolicyError(f"models.{m.name}.aliases: {alias!r} names another model")
            aliases[alias] = m.name
        if m.released:
            try:
                time.strptime(m.released, "%Y-%m-%d")
            except ValueError:
                raise PolicyError(f"models.{m.name}.released: expected YYYY-MM-DD") from None

    tiers: dict[str, Tier] = {}
    for position, (name, t) in enumerate(dict(data.get("tiers", {})).items()):
        where = f"tiers.{name}"
        _known(t, TIER_KEYS, where)
        values: dict[str, Any] = {
            "rank": _get(t, "rank", where, int, _default_rank(name, position)),
            "pool": tuple(_get(t, "pool", where, list)),
            "strategy": _get(t, "strategy", where, str, "value"),
            "soft_timeout_ms": _get(t, "soft_timeout_ms", where, int, 1500),
            "first_token_timeout_ms": _get(t, "first_token_timeout_ms", where, int, 6000),
            "idle_timeout_ms": _get(t, "idle_timeout_ms", where, int, 10000),
            "total_timeout_ms": _get(t, "total_timeout_ms", where, int, 120000),
            "p95_target_ms": _get(t, "p95_target_ms", where, int, 3000),
            "quality_floor": _get(t, "quality_floor", where, float, 0.97),
            "warn_usd": _get(t, "warn_usd", where, float, 0.01),
            "degrade_usd": _get(t, "degrade_usd", where, float, 0.02),
            "block_usd": _get(t, "block_usd", where, float, 0.05),
            "degrade_mode": _get(t, "degrade_mode", where, str, "model"),
            "never_block": _get(t, "never_block", where, bool, False),
            "expected_output_tokens": _get(t, "expected_output_tokens", where, int, 512),
            "max_in_flight": _get(t, "max_in_flight", where, int, 0),
            "max_queued": _get(t, "max_queued", where, int, 64),
            "max_queue_ms": _get(t, "max_queue_ms", where, int, 10000),
            "quota_reserve": _get(t, "quota_reserve", where, float, 0.0),
        }
        values["hedge_budget_percent"] = _get(
            t, "hedge_budget_percent", where, float, _hedge_budget_default(values["rank"], env)
        )
        values["rescue"] = _get(
            t, "rescue", where, str, "continue" if values["rank"] <= 1 else "error"
        )
        overridden: dict[str, str] = {}
        for key, current in list(values.items()):
            env_name = f"EDGE_{name.upper()}_{key.upper()}"
            if env.get(env_name):
                values[key] = _coerce_env(env_name, env[env_name], current)
                overridden[key] = env_name
        try:
            _check_tier(where, values, models)
        except PolicyError as exc:
            # a value from the environment is named by its variable: that is where to fix it
            named = [v for k, v in overridden.items() if k in str(exc)]
            if named:
                raise PolicyError(f"{exc} (set by {', '.join(named)})") from None
            raise
        tiers[name] = Tier(name=name, **values)
    default_tier = str(data.get("default_tier", "L1"))
    if tiers and default_tier not in tiers:
        raise PolicyError(f"default_tier: unknown tier {default_tier!r}")
    budgets: dict[str, Budget] = {}
    for tenant, t in dict(data.get("budgets", {})).items():
        where = f"budgets.{tenant}"
        _known(t, BUDGET_KEYS, where)
        b = Budget(
            tenant,
            _get(t, "day_usd", where, float, float("inf")),
            _get(t, "month_usd", where, float, float("inf")),
            _get(t, "warn", where, float, 0.8),
            _get(t, "degrade", where, float, 0.9),
            _get(t, "block", where, float, 1.0),
            _get(t, "overdraft", where, float, 0.0),
        )
        if b.day_usd == float("inf") and b.month_usd == float("inf"):
            raise PolicyError(f"{where}: set day_usd, month_usd or both")
        if min(b.day_usd, b.month_usd) <= 0:
            raise PolicyError(f"{where}: budgets must be greater than 0")
        if not 0 < b.warn <= b.degrade <= b.block:
            raise PolicyError(f"{where}: thresholds must satisfy 0 < warn <= degrade <= block")
        if not 0.0 <= b.overdraft <= 1.0:
            raise PolicyError(f"{where}.overdraft: must be between 0 and 1")
        budgets[tenant] = b
    jobs = dict(data.get("jobs", {}))
    if unknown_jobs := set(jobs) - {"webhook_url"}:
        raise PolicyError(f"jobs: unknown keys {sorted(unknown_jobs)}")
    webhook = _get(jobs, "webhook_url", "jobs", str, "")
    if webhook and urlsplit(webhook).scheme not in ("http", "https"):
        raise PolicyError(f"jobs.webhook_url: not an http(s) URL: {webhook!r}")
    return Policy(
        providers,
        models,
        tiers,
        default_tier,
        str(data.get("prices_date", "")),
        source,
        frozenset(n for n, p in providers.items() if p.simulated),
        budgets,
        webhook,
        aliases,
        _breakers(dict(data.get("breakers", {})), env),
        _quality(dict(data.get("quality", {}))),
        _admission(dict(data.get("admission", {})), env),
        _rollout(dict(data.get("rollout", {}))),
    )


def _rollout(table: Mapping[str, Any]) -> RolloutPolicy:
    _known(table, ROLLOUT_KEYS, "rollout")
    holdback = _get(table, "holdback_percent", "rollout", float, RolloutPolicy().holdback_percent)
    if not 0 <= holdback < 50:
        raise PolicyError("rollout.holdback_percent: must be at least 0 and below 50")
    return RolloutPolicy(holdback)


def _hedge_budget_default(rank: int, env: Mapping[str, str]) -> float:
    """A tier's hedge budget when its table does not set one: ``EDGE_HEDGE_BUDGET_PERCENT``
    for every such tier when set (the process setting checks its range), else by rank."""
    raw = env.get("EDGE_HEDGE_BUDGET_PERCENT")
    if raw:
        return float(_coerce_env("EDGE_HEDGE_BUDGET_PERCENT", raw, 0.0))
    return HEDGE_BUDGET_BY_RANK[min(max(rank, 0), len(HEDGE_BUDGET_BY_RANK) - 1)]


def _default_rank(name: str, position: int) -> int:
    """``L<n>`` ranks n (L0 highest); other names rank by their place in the file."""
    if len(name) > 1 and name[0] == "L" and name[1:].isdigit():
        return int(name[1:])
    return position


def load_policy(path: str = "", env: Mapping[str, str] | None = None) -> Policy:
    """Load ``path`` (or the shipped default) and apply environment overrides."""
    env = os.environ if env is None else env
    try:
        if path:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        else:
            data = tomllib.loads(
                resources.files("edge").joinpath("policies", "default.toml").read_text()
            )
    except OSError as exc:
        raise PolicyError(f"policy {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy {path or 'default'}: {exc}") from None
    return parse_policy(data, env, path or "default")
