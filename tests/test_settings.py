"""Settings from the environment and the policy file: defaults, overrides, errors naming the key."""

from __future__ import annotations

import pytest

from edge.policy import PolicyError, env_names, load_policy, parse_policy
from edge.settings import SettingsError, load_settings


def test_defaults_and_overrides() -> None:
    s = load_settings({})
    assert (s.host, s.port, s.workers, s.max_body_bytes) == ("127.0.0.1", 8080, 1, 32 * 1024 * 1024)
    s = load_settings(
        {"EDGE_PORT": "9000", "EDGE_ACCESS_LOG": "off", "EDGE_DRAIN_S": "2.5"}, workers=3
    )
    assert (s.port, s.access_log, s.drain_s, s.workers) == (9000, False, 2.5, 3)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"EDGE_PORT": "x"}, "EDGE_PORT"),
        ({"EDGE_PORT": "70000"}, "EDGE_PORT"),
        ({"EDGE_ACCESS_LOG": "perhaps"}, "EDGE_ACCESS_LOG"),
        ({"EDGE_HEADER_TIMEOUT_S": "0"}, "EDGE_HEADER_TIMEOUT_S"),
        ({"EDGE_LOG_LEVEL": "loud"}, "EDGE_LOG_LEVEL"),
        ({"EDGE_MAX_BODY_BYTES": "10"}, "EDGE_MAX_BODY_BYTES"),
        ({"EDGE_GC_THRESHOLDS": "20000,20"}, "EDGE_GC_THRESHOLDS"),
        ({"EDGE_GC_THRESHOLDS": "0,10,10"}, "EDGE_GC_THRESHOLDS"),
        ({"EDGE_GC_THRESHOLDS": "many"}, "EDGE_GC_THRESHOLDS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


def test_gc_thresholds_default_and_override() -> None:
    assert load_settings({}).gc == (20000, 20, 50)
    assert load_settings({"EDGE_GC_THRESHOLDS": "700, 10, 10"}).gc == (700, 10, 10)


def test_shipped_policy_loads_with_env_overrides() -> None:
    p = load_policy(
        "",
        {
            "EDGE_L1_SOFT_TIMEOUT_MS": "900",
            "EDGE_L2_POOL": "gpt-4o-mini",
            "EDGE_OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
            "OPENAI_API_KEY": "sk-x",
        },
    )
    assert p.tiers["L1"].soft_timeout_ms == 900
    assert p.tiers["L2"].pool == ("gpt-4o-mini",)
    assert p.providers["openai"].base_url == "http://127.0.0.1:1/v1"
    assert p.providers["openai"].api_key.value == "sk-x"
    assert "sk-x" not in repr(p.providers["openai"])
    assert p.providers["anthropic"].path_prefix == "" and p.providers["openai"].path_prefix == "/v1"
    for m in p.models.values():
        assert m.input_usd_per_mtok > 0
        # embedding models bill input alone
        assert (m.output_usd_per_mtok > 0) == (m.kind == "chat")
        assert all(f in p.models for f in m.fallbacks)


BASE = {
    "providers": {"openai": {"kind": "openai", "base_url": "https://api.openai.com/v1"}},
    "models": {
        "m": {
            "provider": "openai",
            "input_usd_per_mtok": 1,
            "output_usd_per_mtok": 2,
            "context_window": 1000,
        }
    },
}


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        (
            {
                "models": {
                    "m": {"provider": "openai", "output_usd_per_mtok": 2, "context_window": 1}
                }
            },
            "models.m.input_usd_per_mtok: required",
        ),
        (
            {
                "models": {
                    "m": {
                        "provider": "nope",
                        "input_usd_per_mtok": 1,
                        "output_usd_per_mtok": 2,
                        "context_window": 1,
                    }
                }
            },
            "models.m.provider",
        ),
        (
            {"models": {"m": {**BASE["models"]["m"], "input_usd_per_mtok": -1}}},
            "models.m.input_usd_per_mtok",
        ),
        ({"models": {"m": {**BASE["models"]["m"], "fallbacks": ["ghost"]}}}, "models.m.fallbacks"),
        ({"models": {"auto": BASE["models"]["m"]}}, "route alias"),
        (
            {"providers": {"openai": {"kind": "grpc", "base_url": "https://x"}}},
            "providers.openai.kind",
        ),
        (
            {"providers": {"openai": {"kind": "openai", "base_url": "ftp://x"}}},
            "providers.openai.base_url",
        ),
        ({"tiers": {"L1": {"pool": ["ghost"]}}}, "tiers.L1.pool"),
        ({"tiers": {"L1": {"pool": ["m"], "strategy": "vibes"}}}, "tiers.L1.strategy"),
        ({"surprise": 1}, "policy.surprise: unknown key"),
        ({"breakers": {"failure_rate": 1.5}}, "breakers.failure_rate"),
        (
            {"breakers": {"min_atempts": 3}},
            "breakers.min_atempts: unknown key; did you mean 'min_attempts'",
        ),
        ({"breakers": {"cooldown_s": 5.0, "cooldown_max_s": 2.0}}, "breakers.cooldown_max_s"),
    ],
)
def test_bad_policies_name_the_key(patch: dict[str, object], key: str) -> None:
    with pytest.raises(PolicyError, match=key.replace(".", r"\.")):
        parse_policy({**BASE, **patch}, {})


def test_breakers_come_from_the_policy_with_env_overrides() -> None:
    """Window and rate rules and the cool-downs are policy keys; EDGE_BREAKER_<KEY> wins."""
    p = parse_policy(BASE, {})
    assert (p.breakers.failures, p.breakers.window_s) == (5, 30.0)
    assert (p.breakers.failure_rate, p.breakers.min_attempts) == (0.5, 20)
    assert p.breakers.cooldown_max_s <= 5.0  # recovery within about 5 s
    p = parse_policy(
        {**BASE, "breakers": {"failures": 7, "failure_rate": 0.4, "cooldown_s": 2}},
        {"EDGE_BREAKER_FAILURES": "9", "EDGE_BREAKER_MIN_ATTEMPTS": "50"},
    )
    assert p.breakers.failures == 9 and p.breakers.min_attempts == 50
    assert p.breakers.failure_rate == 0.4 and p.breakers.cooldown_s == 2.0
    with pytest.raises(PolicyError, match="set by EDGE_BREAKER_FAILURE_RATE"):
        parse_policy(BASE, {"EDGE_BREAKER_FAILURE_RATE": "0"})
    assert "EDGE_BREAKER_MIN_ATTEMPTS" in env_names(p)
    assert load_policy("", {}).breakers == p.breakers.__class__()  # the shipped table: defaults
