"""How a simulated model behaves: latency, length, errors and faults.

A ``Behaviour`` is a frozen bundle of knobs. A ``Profile`` holds the defaults
and one behaviour per model name; a request may override any knob with the
``x-sim`` header (``x-sim: fault=cut,fault_after_tokens=5``), so one simulator
serves many scenarios at once. Profiles come from a TOML file or a named
preset shipped in ``edge/simulate/profiles/``.

Knob reference (also in docs/CONFIG.md):

- ``ttft_ms``: fixed time to first token; or ``ttft_p50_ms`` + ``ttft_p95_ms``
  for a lognormal draw per attempt.
- ``gap_ms``: time between tokens; ``output_tokens``: answer length.
- ``error_status`` (500, 503, 529, 429, 400, ...) with ``error_rate`` (0..1)
  or ``error_count`` (only the first N attempts of that model fail);
  ``retry_after_s`` adds ``Retry-After`` (429/503/529); ``error_code`` picks
  a 400 flavour: ``context_length_exceeded`` or ``content_policy``.
- ``fault``: ``reset`` (connection reset before headers), ``hang`` (no
  response at all), ``slow_first_token`` (first token after ``stall_s``),
  ``cut`` (connection closed after ``fault_after_tokens`` tokens, no
  terminator), ``stall`` (a pause of ``stall_s`` after ``fault_after_tokens``
  tokens), ``malformed`` (one unparsable chunk after ``fault_after_tokens``
  tokens), ``no_done`` (stream ends cleanly without ``[DONE]`` /
  ``message_stop``); with ``fault_rate`` or ``fault_count`` like errors.
- ``outage_s``: every attempt fails with ``outage_status`` (or a reset when
  it is 0) for the first N seconds after start or ``POST /sim/reset``.
- ``prefill``: what a final assistant message (a prefill) gets: ``continue``
  (the answer goes on after it), ``restart`` (the answer from its start, as
  a model that writes a new turn), ``refuse`` (a 400, as Claude 4.6 and later
  answer one).
- ``tool_call``: ``auto (call a tool the prompt names, or when forced),
  ``always``, ``never``.
- Quality: a harmful request (building a bomb, writing malware, ...) is
  refused, except for a ``miss_refusal_rate`` share of requests, which get a
  compliant answer; ``break_json_rate`` of JSON answers are cut into invalid
  JSON. Both are drawn from the request's seed: the same request always
  gets the same answer.
- Prompt caching (``cache`` decides, ``prefix`` finds the prefixes):
  ``cache_min_tokens`` is the shortest prefix cached (0: by model name, 2048
  for a Haiku, 1024 otherwise, as Anthropic documents it for Haiku 3/3.5 and
  Sonnet/Opus 4; OpenAI's automatic caching starts at 1024 too);
  ``cache_ttl_s`` is how long an OpenAI-style automatic cache entry lives
  after its last use (Anthropic's lifetime comes from each breakpoint's
  ``ttl``).
- Quota (per model, fixed windows from the start or ``POST /sim/reset``):
  ``quota_requests`` requests and ``quota_tokens`` tokens (the prompt plus
  ``output_tokens``) per ``quota_window_s``; every answer of the model
  carries its provider's rate-limit headers (OpenAI ``x-ratelimit-*``, Go
  durations; Anthropic ``anthropic-ratelimit-*``, RFC 3339 instants), and a
  request past either limit is a 429 with ``retry-after`` until the window
  turns.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

FAULTS = frozenset(
    {"none", "reset", "hang", "slow_first_token", "cut", "stall", "malformed", "no_done"}
)
TOOL_CALL_MODES = frozenset({"auto", "always", "never"})
PREFILL_MODES = frozenset({"continue", "restart", "refuse"})
ERROR_CODES = frozenset({"", "context_length_exceeded", "content_policy"})
_Z95 = 1.6448536269514722  # standard normal quantile at 0.95


class ProfileError(ValueError):
    """A profile file, preset name or ``x-sim`` override is invalid."""


@dataclass(frozen=True, slots=True)
class Behaviour:
    ttft_ms: float = 0.0
    ttft_p50_ms: float = 0.0
    ttft_p95_ms: float = 0.0
    gap_ms: float = 0.0
    output_tokens: int = 24
    error_status: int = 0
    error_rate: float = 1.0
    error_count: int = 0
    retry_after_s: float = -1.0
    error_code: str = ""
    fault: str = "none"
    fault_rate: float = 1.0
    fault_count: int = 0
    fault_after_tokens: int = 3
    stall_s: float = 5.0
    outage_s: float = 0.0
    outage_status: int = 503
    tool_call: str = "auto"
    prefill: str = "continue"
    context_window: int = 200_000
    miss_refusal_rate: float = 0.0
    break_json_rate: float = 0.0
    cache_min_tokens: int = 0
    cache_ttl_s: float = 300.0
    quota_requests: int = 0  # requests per window (0: no quota)
    quota_tokens: int = 0  # input + output tokens per window (0: no quota)
    quota_window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ProfileError(
                f"fault: unknown value {self.fault!r}; expected one of {sorted(FAULTS)}"
            )
        if self.tool_call not in TOOL_CALL_MODES:
            raise ProfileError(f"tool_call: unknown value {self.tool_call!r}")
        if self.prefill not in PREFILL_MODES:
            raise ProfileError(
                f"prefill: unknown value {self.prefill!r}; expected one of {sorted(PREFILL_MODES)}"
            )
        if self.error_code not in ERROR_CODES:
            raise ProfileError(f"error_code: unknown value {self.error_code!r}")
        if self.error_status and not 400 <= self.error_status <= 599:
            raise ProfileError(f"error_status: {self.error_status} is not an HTTP error status")
        if self.outage_status and not 400 <= self.outage_status <= 599:
            raise ProfileError(f"outage_status: {self.outage_status} is not an HTTP error status")
        for name in ("error_rate", "fault_rate", "miss_refusal_rate", "break_json_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ProfileError(f"{name}: must be between 0 and 1")
        for name in (
            "ttft_ms",
            "ttft_p50_ms",
            "ttft_p95_ms",
            "gap_ms",
            "stall_s",
            "outage_s",
            "cache_min_tokens",
            "cache_ttl_s",
            "quota_requests",
            "quota_tokens",
        ):
            if getattr(self, name) < 0:
                raise ProfileError(f"{name}: must not be negative")
        if self.quota_window_s <= 0:
            raise ProfileError("quota_window_s: must be greater than 0")
        if self.output_tokens < 1:
            raise ProfileError("output_tokens: must be at least 1")
        if bool(self.ttft_p50_ms) != bool(self.ttft_p95_ms) or self.ttft_p95_ms < self.ttft_p50_ms:
            raise ProfileError("ttft_p50_ms and ttft_p95_ms: set both, with p95 >= p50")

    def ttft_s(self, rng: random.Random) -> float:
        """Draw this attempt's time to first token, in seconds."""
        if self.ttft_p50_ms:
            mu = math.log(self.ttft_p50_ms)
            sigma = (math.log(self.ttft_p95_ms) - mu) / _Z95
            return rng.lognormvariate(mu, sigma) / 1000.0
        return self.ttft_ms / 1000.0

    def cache_min(self, model: str) -> int:
        """The shortest prefix this model caches, in tokens."""
        if self.cache_min_tokens:
            return self.cache_min_tokens
        return 2048 if "haiku" in model.lower() else 1024

    def with_overrides(self, values: dict[str, Any]) -> Behaviour:
        return replace(self, **_coerce(values))


_TYPES = {f.name: f.type for f in fields(Behaviour)}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in values.items():
        kind = _TYPES.get(key)
        if kind is None:
            raise ProfileError(f"{key}: unknown behaviour knob")
        try:
            if kind == "float":
                out[key] = float(raw)
            elif kind == "int":
                out[key] = int(raw)
            else:
                out[key] = str(raw)
        except (TypeError, ValueError):
            raise ProfileError(f"{key}: invalid value {raw!r}") from None
    return out


def parse_override(header: str) -> dict[str, str]:
    """Parse ``k=v,k=v`` (``;`` also separates) from the ``x-sim`` header."""
    out: dict[str, str] = {}
    for part in header.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise ProfileError(f"x-sim: expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    _coerce(out)  # validate names and types now
    return out


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    defaults: Behaviour
    models: dict[str, Behaviour]
    strict_models: bool = False
    seed: int = 0
    api_key: str = ""

    def behaviour(self, model: str) -> Behaviour | None:
        """The model's behaviour; ``None`` when the profile is strict and does not know it."""
        found = self.models.get(model)
        if found is not None:
            return found
        return None if self.strict_models else self.defaults

    def model_names(self) -> list[str]:
        return sorted(self.models)


def profile_from_mapping(name: str, data: dict[str, Any]) -> Profile:
    known = {"defaults", "models", "strict_models", "seed", "api_key"}
    unknown = set(data) - known
    if unknown:
        raise ProfileError(f"{name}: unknown top-level keys {sorted(unknown)}")
    defaults = Behaviour().with_overrides(dict(data.get("defaults", {})))
    models: dict[str, Behaviour] = {}
    for model, knobs in dict(data.get("models", {})).items():
        if not isinstance(knobs, dict):
            raise ProfileError(f"models.{model}: expected a table")
        try:
            models[model] = defaults.with_overrides(knobs)
        except ProfileError as exc:
            raise ProfileError(f"models.{model}.{exc}") from None
    return Profile(
        name=name,
        defaults=defaults,
        models=models,
        strict_models=bool(data.get("strict_models", False)),
        seed=int(data.get("seed", 0)),
        api_key=str(data.get("api_key", "")),
    )


def preset_names() -> list[str]:
    folder = resources.files("edge.simulate").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(spec: str) -> Profile:
    """Load a preset by name (``default``, ``instant``, ...) or a TOML file by path."""
    if spec.endswith(".toml") or "/" in spec:
        path = Path(spec)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(f"profile {spec}: {exc}") from None
        return profile_from_mapping(path.stem, data)
    if spec not in preset_names():
        raise ProfileError(f"unknown profile {spec!r}; presets: {', '.join(preset_names())}")
    text = resources.files("edge.simulate").joinpath("profiles", spec + ".toml").read_text()
    return profile_from_mapping(spec, tomllib.loads(text))
