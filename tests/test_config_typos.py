"""An operator's typo fails the start naming the nearest valid name, never silently ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from typing import Any

import pytest

from edge.policy import PolicyError, env_names, load_policy, parse_policy
from edge.settings import unknown_names
from tests.procs import ROOT

SHIPPED = os.path.join(ROOT, "edge/policies/default.toml")


def shipped() -> dict[str, Any]:
    with open(SHIPPED, "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize(
    ("table", "name", "typo", "want"),
    [
        ("tiers", "L1", "soft_timout_ms", "soft_timeout_ms"),
        ("tiers", "L1", "stratgy", "strategy"),
        ("models", "gpt-4o", "qualty", "quality"),
        ("providers", "openai", "base_ur", "base_url"),
    ],
)
def test_a_mistyped_policy_key_fails_naming_the_nearest(
    table: str, name: str, typo: str, want: str
) -> None:
    data = shipped()
    data[table][name][typo] = data[table][name].get(want, 1)
    with pytest.raises(PolicyError, match=f"{typo}: unknown key; did you mean '{want}'"):
        parse_policy(data, {})


def test_a_mistyped_budget_or_top_level_key_fails() -> None:
    data = shipped()
    data["budgets"] = {"acme": {"day_usd": 1.0, "overdraf": 0.1}}
    with pytest.raises(PolicyError, match="overdraft"):
        parse_policy(data, {})
    data = shipped()
    data["tier"] = {}
    with pytest.raises(PolicyError, match="did you mean 'tiers'"):
        parse_policy(data, {})


def test_unknown_edge_variables_are_named_with_the_nearest() -> None:
    names = env_names(load_policy(SHIPPED, {}))
    env = {"EDGE_L1_SOFT_TIMOUT_MS": "300", "EDGE_L1_SOFT_TIMEOUT_MS": "300", "HOME": "/"}
    assert unknown_names(env, names) == [
        "EDGE_L1_SOFT_TIMOUT_MS (did you mean EDGE_L1_SOFT_TIMEOUT_MS?)"
    ]
    assert unknown_names({"EDGE_OPENAI_BASE_URL": "x", "EDGE_PORT": "1"}, names) == []


def test_the_start_fails_on_an_unknown_variable() -> None:
    env = {**os.environ, "EDGE_PORT": "0", "EDGE_WORKES": "2"}
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "EDGE_WORKES (did you mean EDGE_WORKERS?)" in r.stderr


def test_an_out_of_range_override_names_its_variable() -> None:
    with pytest.raises(PolicyError, match=r"soft_timeout_ms.*\(set by EDGE_L1_SOFT_TIMEOUT_MS\)"):
        load_policy(SHIPPED, {"EDGE_L1_SOFT_TIMEOUT_MS": "-5"})
    with pytest.raises(PolicyError, match=r"thresholds.*set by EDGE_L2_WARN_USD"):
        load_policy(SHIPPED, {"EDGE_L2_WARN_USD": "9"})


def test_policy_check_prints_the_resolved_policy_or_names_the_mistake(tmp_path: Any) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "edge.cli", "policy", "check", SHIPPED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    resolved = json.loads(ok.stdout)
    assert resolved["tiers"]["L1"]["soft_timeout_ms"] == 1500
    assert "thinking" in resolved["models"]["claude-haiku-4-5"]["capabilities"]
    bad = tmp_path / "bad.toml"
    with open(SHIPPED) as f:
        bad.write_text(f.read().replace("quality = 0.97\n", "qualty = 0.97\n", 1))
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "policy", "check", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "did you mean 'quality'" in r.stderr
