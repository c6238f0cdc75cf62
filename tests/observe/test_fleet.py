"""Fleet figures that tell the truth: merged across hosts and workers, gauges of the living."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.observe.fleet import Fleet
from edge.observe.log import Log
from edge.observe.metrics import GAUGE_TTL_S, Metrics, StateView
from edge.observe.stats import fleet_stats
from edge.policy import load_policy
from edge.quality.rollout import RolloutConfig
from edge.state.embedded import EmbeddedState

POLICY = Path(__file__).parents[1] / "server" / "policy.toml"


class Health:
    available = True

    def down(self, exc: Exception) -> None:
        self.available = False


def fleet_of(m: Metrics, folder: str) -> Fleet:
    return Fleet(m, EmbeddedState(folder), folder, Health(), Log("error"), lambda _: None)


def other_worker(folder: str, name: str, snap: dict[str, Any]) -> None:
    with open(os.path.join(folder, f"{name}.json"), "wb") as f:
        f.write(orjson.dumps(snap))


def test_two_hosts_with_different_monotonic_clocks_merge_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host A booted a minute ago, host B three months ago: their monotonic clocks are 90 days
    apart, their wall clocks agree. Each one's sketch must count in the merge."""
    a, b = Metrics(), Metrics()
    monkeypatch.setattr(time, "monotonic", lambda: 60.0)
    a.observe_stats("L1", "openai", "gpt-4o-mini", True, 0.100, 0.05)
    monkeypatch.setattr(time, "monotonic", lambda: 90 * 86400.0)
    b.observe_stats("L1", "openai", "gpt-4o-mini", True, 2.000, 1.5)
    monkeypatch.undo()
    folder = str(tmp_path)
    other_worker(folder, "host-b", b.snapshot())
    merged = fleet_of(a, folder).merged()
    assert merged.workers == 2
    now = time.time()
    assert merged.latency[("tier", "L1")].count(now) == 2
    assert merged.first_token[("model", "openai", "gpt-4o-mini")].count(now) == 2
    stats = fleet_stats(
        merged,
        load_policy(str(POLICY)),
        EmbeddedState(folder),
        RolloutConfig(),
        quality={},
        jobs={},
        state_available=True,
    )
    assert stats["tiers"]["L1"]["latency_ms"]["p50"] == pytest.approx(100, rel=0.02)
    sketch = merged.latency[("tier", "L1")]
    assert sketch.quantile(0.0, now) == pytest.approx(0.1, rel=0.02)  # A's
    assert sketch.quantile(1.0, now) == pytest.approx(2.0, rel=0.02)  # and B's


def test_a_dead_workers_gauges_expire_its_counters_stay(tmp_path: Path) -> None:
    folder = str(tmp_path)
    live, dead = Metrics(), Metrics()
    live.watch_state(lambda: StateView(True, 0))
    dead.watch_state(lambda: StateView(False, 3, pending=7))
    dead.in_flight = 5
    dead.observe("chat", "openai", "L1", "openai", "gpt-4o-mini", 200, 0.1, 0.05)
    dead.watch_breakers(lambda: [("openai", "gpt-4o-mini", 2)])
    snap = dead.snapshot()
    snap["at"] = time.time() - GAUGE_TTL_S - 1  # its last word, before it died
    other_worker(folder, "dead", snap)
    merged = fleet_of(live, folder).merged()
    text = merged.render().decode()
    assert merged.workers == 1  # the living
    assert merged.in_flight == 0 and merged.breaker_figures() == []
    assert "edge_state_up 1.0" in text and "edge_spend_pending_rows 0.0" in text
    assert "edge_state_errors_total 3.0" in text  # a counter never goes backwards
    assert 'edge_requests_total{dialect="openai"' in text
    # while it was alive, the same snapshot counted whole
    snap["at"] = time.time()
    other_worker(folder, "dead", snap)
    merged = fleet_of(live, folder).merged()
    text = merged.render().decode()
    assert merged.workers == 2 and merged.in_flight == 5
    assert "edge_state_up 0.0" in text and "edge_spend_pending_rows 7.0" in text
    assert merged.breaker_figures() == [("openai", "gpt-4o-mini", 2)]


def test_state_up_is_exported_from_every_worker(tmp_path: Path) -> None:
    folder = str(tmp_path)
    one, two = Metrics(), Metrics()
    one.watch_state(lambda: StateView(True, 1))
    two.watch_state(lambda: StateView(True, 2))
    other_worker(folder, "two", two.snapshot())
    text = fleet_of(one, folder).merged().render().decode()
    assert "edge_state_up 1.0" in text and "edge_state_errors_total 3.0" in text


def test_a_model_that_fails_most_attempts_is_not_shown_as_healthy(tmp_path: Path) -> None:
    m = Metrics()
    for outcome in ("http_500", "http_500", "timeout", "http_500", "reset", "ok", "lost"):
        m.attempt("openai", "gpt-4o-mini", outcome)
    m.attempt("anthropic", "claude-haiku-4-5", "http_503")  # failed, never served
    m.observe("chat", "openai", "L1", "openai", "gpt-4o-mini", 200, 0.1, 0.05)
    m.observe_stats("L1", "openai", "gpt-4o-mini", True, 0.1, 0.05)
    m.job_run("L1", 200)
    m.job_run("L1", 503)
    stats = fleet_stats(
        m,
        load_policy(str(POLICY)),
        EmbeddedState(str(tmp_path)),
        RolloutConfig(),
        quality={},
        jobs={},
        state_available=True,
    )
    mini = stats["models"]["openai/gpt-4o-mini"]
    assert mini["served_success_rate"] == mini["success_rate"] == 1.0
    assert mini["attempts"] == 6  # the lost race judged nothing
    assert mini["attempt_success_rate"] == pytest.approx(1 / 6)
    haiku = stats["models"]["anthropic/claude-haiku-4-5"]
    assert haiku["requests"] == 0 and haiku["attempt_success_rate"] == 0.0
    assert stats["tiers"]["L1"]["requests"] == 1  # the job's runs are apart
    assert stats["job_runs"] == {"L1:200": 1, "L1:503": 1}
