"""The embedded state backend: atomic reservations across connections, job leases."""

from __future__ import annotations

import tempfile
import threading
import time

import pytest

from edge.budget.pricing import Tokens, cost_usd, split_usage
from edge.policy import Model, PolicyError, parse_policy
from edge.state.embedded import EmbeddedState, LedgerRow, Settlement, periods

NOW = 1_795_000_000.0  # 2026-11-18


def test_concurrent_reservations_cannot_pass_on_the_same_headroom() -> None:
    """Eight processes' worth of connections race for a budget of ten estimates."""
    directory = tempfile.mkdtemp()
    EmbeddedState(directory).close()  # the schema, once
    granted: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        state = EmbeddedState(directory)  # its own connections, as a worker process has
        for i in range(5):
            rid = f"{n}-{i}"
            fraction = state.reserve(rid, "t", 1.0, float("inf"), 0.1, 1.0 + 1e-9, NOW)
            if fraction < 1.0 + 1e-9:
                with lock:
                    granted.append(rid)
        state.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10  # exactly the headroom, not one more


def test_settling_releases_the_reservation_and_counts_the_real_cost() -> None:
    state = EmbeddedState(tempfile.mkdtemp())
    assert state.reserve("r1", "t", 1.0, 10.0, 0.6, 1.0, NOW) == pytest.approx(0.6)
    assert state.reserve("r2", "t", 1.0, 10.0, 0.6, 1.0, NOW) >= 1.0  # blocked: not reserved
    row = LedgerRow(NOW, "t", "L1", "openai", "m", "answer", 10, 0, 0, 5, 0.25, "req")
    state.settle([Settlement("r1", "t", 0.25, NOW, True)], [row])
    day, month = periods(NOW)
    assert state.spent("t", day) == pytest.approx(0.25) == state.spent("t", month)
    # the reservation is gone: 0.25 spent + 0.6 fits now
    assert state.reserve("r3", "t", 1.0, 10.0, 0.6, 1.0, NOW) == pytest.approx(0.85)
    report = state.spend_report(day[4:])
    assert report[0]["tenant"] == "t" and report[0]["cost_usd"] == pytest.approx(0.25)
    state.close()


def test_a_job_is_finished_only_by_its_lease_holder() -> None:
    state = EmbeddedState(tempfile.mkdtemp())
    now = time.time()
    state.put_job(
        {
            "id": "job_1",
            "created_at": now,
            "updated_at": now,
            "status": "queued",
            "tenant": "t",
            "key_id": "k",
            "tier": "L1",
            "dialect": "openai",
            "path": "/v1/chat/completions",
            "headers": "{}",
            "body": b"{}",
            "reason": "test",
            "next_run_at": now,
        }
    )
    a = state.claim_job("a", now, lease_s=5)
    assert a is not None and a["attempts"] == 1
    assert state.claim_job("b", now + 1, lease_s=5) is None  # a holds it
    b = state.claim_job("b", now + 6, lease_s=5)  # a's lease ran out: b takes over
    assert b is not None and b["attempts"] == 2
    assert not state.finish_job("job_1", "a", "done", 200, "[]", b"late", "", now + 7)
    assert not state.renew_lease("job_1", "a", now + 20)
    assert state.finish_job("job_1", "b", "done", 200, "[]", b"ok", "", now + 7)
    job = state.get_job("job_1")
    assert job is not None and job["status"] == "done" and job["result_body"] == b"ok"
    assert not state.cancel_job("job_1", now + 8)  # done is final
    assert state.purge_jobs(now + 8) == 1 and state.get_job("job_1") is None
    state.close()


def test_usage_of_either_provider_is_priced_by_kind() -> None:
    m = Model("m", "p", 2.0, 8.0, 0.5, 2.5, 0.9, 1000, 100, 100, (), "m")
    oa = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    an = {
        "input_tokens": 600,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 200,
        "output_tokens": 100,
    }
    assert split_usage(oa) == Tokens(600, 400, 0, 100)
    assert split_usage(an) == Tokens(600, 400, 200, 100)
    assert cost_usd(m, split_usage(oa)) == pytest.approx((600 * 2 + 400 * 0.5 + 100 * 8) / 1e6)
    assert cost_usd(m, split_usage(an)) == pytest.approx(
        (600 * 2 + 400 * 0.5 + 200 * 2.5 + 100 * 8) / 1e6
    )
    assert split_usage(None) == Tokens()


BASE = {
    "providers": {"p": {"kind": "openai", "base_url": "http://x/v1"}},
    "models": {
        "m": {
            "provider": "p",
            "input_usd_per_mtok": 1.0,
            "output_usd_per_mtok": 2.0,
            "context_window": 1000,
        }
    },
    "tiers": {"L1": {"pool": ["m"]}},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"models": {"m": {"provider": "p", "input_usd_per_mtok": 1.0, "context_window": 9}}},
            "models.m.output_usd_per_mtok: required",
        ),
        ({"budgets": {"acme": {"warn": 0.5}}}, "budgets.acme: set day_usd, month_usd or both"),
        (
            {"budgets": {"acme": {"day_usd": 1.0, "warn": 0.9, "degrade": 0.5}}},
            "budgets.acme: thresholds",
        ),
        ({"tiers": {"L1": {"pool": ["m"], "degrade_mode": "cheaper"}}}, "tiers.L1.degrade_mode"),
        (
            {"tiers": {"L1": {"pool": ["m"], "warn_usd": 0.5, "block_usd": 0.1}}},
            "tiers.L1: thresholds",
        ),
        ({"jobs": {"webhook_url": "ftp://x"}}, "jobs.webhook_url"),
    ],
)
def test_price_and_budget_mistakes_fail_the_start(change: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy({**BASE, **change}, {})


def test_budgets_and_never_block_parse() -> None:
    p = parse_policy(
        {
            **BASE,
            "budgets": {"acme": {"day_usd": 5.0}, "default": {"month_usd": 50.0}},
            "tiers": {"L1": {"pool": ["m"], "never_block": True}},
        },
        {"EDGE_L1_NEVER_BLOCK": "false"},
    )
    assert p.tiers["L1"].never_block is False  # the environment wins
    acme, someone = p.budget_for("acme"), p.budget_for("someone")
    assert acme is not None and acme.day_usd == 5.0
    assert someone is not None and someone.month_usd == 50.0 and someone.tenant == "default"
