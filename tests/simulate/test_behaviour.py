"""Profiles, presets and x-sim overrides."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from edge.simulate.behaviour import (
    Behaviour,
    ProfileError,
    load_profile,
    parse_override,
    preset_names,
)


def test_presets_load() -> None:
    assert {"default", "instant", "heavy-tail"} <= set(preset_names())
    for name in preset_names():
        p = load_profile(name)
        assert p.name == name and p.model_names()


def test_profile_file_models_inherit_defaults(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text("strict_models = true\n[defaults]\ngap_ms = 7\n[models.a]\nerror_status = 529\n")
    p = load_profile(str(f))
    a = p.behaviour("a")
    assert a is not None and a.gap_ms == 7 and a.error_status == 529
    assert p.behaviour("unknown") is None


@pytest.mark.parametrize(
    "text",
    [
        '[defaults]\nfault = "explode"\n',
        "[defaults]\nerror_rate = 2\n",
        "[models.x]\nbogus = 1\n",
        "wat = 1\n",
        "[defaults]\nttft_p50_ms = 5\n",
    ],
)
def test_bad_profiles_fail_naming_the_key(tmp_path: Path, text: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ProfileError):
        load_profile(str(f))


def test_unknown_preset() -> None:
    with pytest.raises(ProfileError, match="presets"):
        load_profile("nope")


def test_override_parsing() -> None:
    assert parse_override("fault=cut, fault_after_tokens=5;stall_s=1.5") == {
        "fault": "cut",
        "fault_after_tokens": "5",
        "stall_s": "1.5",
    }
    b = Behaviour().with_overrides(parse_override("fault=cut,fault_after_tokens=5"))
    assert b.fault == "cut" and b.fault_after_tokens == 5
    with pytest.raises(ProfileError):
        parse_override("fault_after_tokens=five")
    with pytest.raises(ProfileError):
        parse_override("novalue")


def test_lognormal_ttft_hits_its_quantiles() -> None:
    b = Behaviour(ttft_p50_ms=400, ttft_p95_ms=4000)
    rng = random.Random(5)
    draws = sorted(b.ttft_s(rng) for _ in range(20000))
    p50 = statistics.median(draws)
    p95 = draws[int(0.95 * len(draws))]
    assert 0.37 < p50 < 0.43
    assert 3.6 < p95 < 4.4
    assert Behaviour(ttft_ms=120).ttft_s(rng) == 0.12
