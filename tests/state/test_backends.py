"""One test body for both state backends: embedded (SQLite) and Redis.

Each test gets ``new``, which opens another handle on the same store (another
worker process, another gateway instance), so atomicity is tested across
handles, not within one.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from edge.state.embedded import EmbeddedState
from edge.state.redis_state import RedisState
from edge.state.types import ControllerBusy, LedgerRow, Settlement, periods
from tests.conftest import Backend

NOW = 1_795_000_000.0  # 2026-11-18


def test_concurrent_reservations_cannot_pass_on_the_same_headroom(
    new: Callable[[], Backend],
) -> None:
    """Eight handles race for a budget of ten estimates."""
    new()  # the schema, once
    granted: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        state = new()  # its own connections, as a worker process has
        for i in range(5):
            rid = f"{n}-{i}"
            fraction = state.reserve(rid, "t", 1.0, float("inf"), 0.1, 1.0 + 1e-9, NOW)
            if fraction < 1.0 + 1e-9:
                with lock:
                    granted.append(rid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10  # exactly the headroom, not one more


def test_settling_releases_the_reservation_and_counts_the_real_cost(
    new: Callable[[], Backend],
) -> None:
    state = new()
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
    assert report[0]["requests"] == 1 and report[0]["output_tokens"] == 5


def state_job(now: float) -> dict[str, Any]:
    return {
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


def test_a_job_is_finished_only_by_its_lease_holder(new: Callable[[], Backend]) -> None:
    state, other = new(), new()
    now = time.time()
    state.put_job(state_job(now))
    assert state.job_counts() == {"queued": 1}
    a = state.claim_job("a", now, lease_s=5)
    assert other.job_counts() == {"running": 1}
    assert a is not None and a["attempts"] == 1
    assert other.claim_job("b", now + 1, lease_s=5) is None  # a holds it
    b = other.claim_job("b", now + 6, lease_s=5)  # a's lease ran out: b takes over
    assert b is not None and b["attempts"] == 2
    assert not state.finish_job("job_1", "a", "done", 200, "[]", b"late", "", now + 7)
    assert not state.renew_lease("job_1", "a", now + 20)
    assert other.finish_job("job_1", "b", "done", 200, "[]", b"ok", "", now + 7)
    job = state.get_job("job_1")
    assert job is not None and job["status"] == "done" and job["result_body"] == b"ok"
    assert not state.cancel_job("job_1", now + 8)  # done is final
    assert state.job_counts() == {"done": 1}
    second = {**state_job(now), "id": "job_2"}
    state.put_job(second)
    assert other.cancel_job("job_2", now) and state.job_counts() == {"done": 1, "cancelled": 1}
    assert state.requeue_job("job_2", now) and other.job_counts() == {"done": 1, "queued": 1}
    assert state.purge_jobs(now + 8) == 1 and state.get_job("job_1") is None
    assert state.job_counts() == {"queued": 1}


def test_rollouts_are_one_state_for_every_handle(new: Callable[[], Backend]) -> None:
    a, b = new(), new()
    row: dict[str, Any] = {
        "id": "ro_1",
        "created_at": NOW,
        "updated_at": NOW,
        "status": "running",
        "policy_path": "/p.toml",
        "policy_text": "x = 1",
        "stage": 0,
        "stage_started_at": NOW,
        "gold": "r.json",
    }
    a.put_rollout(row)
    live = b.live_rollout()
    assert live is not None and live["id"] == "ro_1" and live["stage"] == 0
    assert b.move_rollout("ro_1", ("running",), "running", NOW + 1, stage=1)
    assert not a.move_rollout("ro_1", ("paused",), "running", NOW + 2)  # not in an expected status
    a.add_rollout_events([("ro_1", 1, "canary", NOW, 1, 12.5, 0.001, 1, 0)])
    assert b.rollout_events("ro_1", 1, "canary") == [(1, 12.5, 0.001, 1, 0, "", "", "")]
    a.add_rollout_events([("ro_1", 1, "canary", NOW, 0, 9.0, 0.002, 0, 0, "L0", "checkout", "m")])
    assert b.rollout_events("ro_1", 1, "canary")[1] == (0, 9.0, 0.002, 0, 0, "L0", "checkout", "m")
    a.begin()
    if isinstance(b, RedisState):  # another instance's controller skips its turn, never waits
        with pytest.raises(ControllerBusy):
            b.begin()
    a.commit()
    b.begin()  # free again
    b.commit()
    assert b.move_rollout("ro_1", ("running",), "rolled_back", NOW + 3, reason="r", report="{}")
    assert a.live_rollout() is None
    last = a.last_rollout()
    assert last is not None and last["status"] == "rolled_back" and last["reason"] == "r"
    a.put_rollout({**row, "id": "ro_2", "created_at": NOW + 4})
    live = b.live_rollout()
    assert live is not None and live["id"] == "ro_2"


def test_a_reservation_is_one_statement_on_its_own_keys_rows() -> None:
    """No transaction spanning Python code: the check and the hold are one INSERT (its
    trigger sums it on the key's rows), so the write lock is held for one statement; the
    figures read are the key's own rows, not a sum over every hold in flight."""
    state = EmbeddedState(tempfile.mkdtemp())
    for i in range(50):  # holds in flight of another key: nothing the reservation reads
        state.reserve(f"o{i}", "other", 100.0, float("inf"), 0.1, 1.0, NOW)
    seen: list[str] = []
    state._db.set_trace_callback(seen.append)
    assert state.reserve("r1", "t", 1.0, 10.0, 0.25, 1.0, NOW) == pytest.approx(0.25)
    state._db.set_trace_callback(None)
    assert not [s for s in seen if s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    writes = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    # (the trace names the statement once more for each trigger program it runs)
    assert len(set(writes)) == 1 and "INSERT INTO reservations" in writes[0]
    assert not [s for s in seen if "SUM(" in s.upper()]
    state.close()


def test_a_lock_held_elsewhere_fails_a_call_fast_instead_of_stalling() -> None:
    """Another process holds the write lock (a long transaction): a handle with a short wait
    says ``StateBusy`` within it, for reservations, settlements and jobs alike."""
    directory = tempfile.mkdtemp()
    EmbeddedState(directory).close()  # the schema
    state = EmbeddedState(directory, wait_ms=10)
    import sqlite3

    from edge.state.types import StateBusy

    other = sqlite3.connect(state.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for call in (
            lambda: state.reserve("r1", "t", 1.0, 10.0, 0.25, 1.0, NOW),
            lambda: state.settle([Settlement("", "t", 0.1, NOW, True)], []),
            lambda: state.put_job(state_job(NOW)),
        ):
            started = time.monotonic()
            with pytest.raises(StateBusy):
                call()
            assert time.monotonic() - started < 0.5  # the old 30 s busy timeout: never again
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert state.reserve("r1", "t", 1.0, 10.0, 0.25, 1.0, NOW) == pytest.approx(0.25)
    state.close()


def test_holds_of_a_dead_worker_stop_counting_after_stale_s(new: Callable[[], Backend]) -> None:
    from edge.state.types import STALE_S

    state = new()
    now = time.time()
    # a worker reserved most of the budget, then died (never settled)
    assert state.reserve("dead", "t", 1.0, float("inf"), 0.9, 1.0, now - STALE_S - 60) < 1.0
    assert state.reserve("r1", "t", 1.0, float("inf"), 0.5, 1.0, now - STALE_S - 30) >= 1.0
    state.settle([], [])  # any worker's next settlement (embedded) or reservation (Redis)
    assert state.reserve("r2", "t", 1.0, float("inf"), 0.5, 1.0, now) == pytest.approx(0.5)
    # and a settled hold is released exactly: its amount, no float drift
    state.settle([Settlement("r2", "t", 0.0, now, True)], [])
    assert state.reserve("r3", "t", 1.0, float("inf"), 0.999, 1.0, now) == pytest.approx(0.999)


def test_an_aggregated_ledger_row_counts_its_requests(new: Callable[[], Backend]) -> None:
    state = new()
    row = LedgerRow(NOW, "t", "L1", "openai", "m", "answer", 30, 0, 0, 15, 0.75, "", requests=3)
    one = LedgerRow(NOW, "t", "L1", "openai", "m", "answer", 10, 0, 0, 5, 0.25, "req")
    state.settle([], [row, one])
    report = state.spend_report(periods(NOW)[0][4:])
    assert report[0]["requests"] == 4 and report[0]["input_tokens"] == 40
    assert report[0]["cost_usd"] == pytest.approx(1.0)


def test_a_deferred_run_is_refunded_and_webhook_attempts_are_recorded(
    new: Callable[[], Backend],
) -> None:
    state = new()
    now = time.time()
    state.put_job(state_job(now))
    job = state.claim_job("a", now, lease_s=5)
    assert job is not None and job["attempts"] == 1
    assert state.retry_job_later("job_1", "a", now + 60, "budget", now, refund=True)
    job = state.get_job("job_1")
    assert job is not None and job["attempts"] == 0 and job["status"] == "queued"
    job = state.claim_job("a", now + 61, lease_s=5)
    assert job is not None and job["attempts"] == 1
    assert state.finish_job("job_1", "a", "done", 200, "[]", b"{}", "", now + 62)
    state.note_webhook("job_1", 1, "HTTP 500", False)
    job = state.get_job("job_1")
    assert job is not None and (job["notified"], job["notify_attempts"]) == (0, 1)
    assert job["notify_error"] == "HTTP 500"
    state.note_webhook("job_1", 2, "", True)
    job = state.get_job("job_1")
    assert job is not None and (job["notified"], job["notify_attempts"]) == (1, 2)
    assert job["notify_error"] is None


def test_an_older_state_file_is_brought_up_to_the_schema() -> None:
    """A file of the previous schema, with a hold in flight: migrated at open, the hold summed."""
    import sqlite3

    directory = tempfile.mkdtemp()
    import os

    db = sqlite3.connect(os.path.join(directory, "edge.db"), isolation_level=None)
    db.executescript(
        "CREATE TABLE spend (tenant TEXT NOT NULL, period TEXT NOT NULL, spent_usd REAL NOT NULL,"
        " PRIMARY KEY (tenant, period));"
        "CREATE TABLE reservations (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, day TEXT NOT NULL,"
        " month TEXT NOT NULL, amount REAL NOT NULL, created_at REAL NOT NULL);"
    )
    day, month = periods(NOW)
    db.execute("INSERT INTO reservations VALUES ('old', 't', ?, ?, 0.5, ?)", (day, month, NOW))
    db.close()
    state = EmbeddedState(directory)
    assert state.reserve("r1", "t", 1.0, float("inf"), 0.6, 1.0, NOW) >= 1.0  # 0.5 still held
    state.settle([Settlement("old", "t", 0.0, NOW, True)], [])
    assert state.reserve("r2", "t", 1.0, float("inf"), 0.6, 1.0, NOW) == pytest.approx(0.6)
    state.close()


def test_stored_responses_are_shared_until_they_expire(new: Callable[[], Backend]) -> None:
    state, other = new(), new()
    now = time.time()
    state.put_response("resp_1", "key_a", now + 60, b'[{"type":"message"}]', b'{"id":"resp_1"}')
    got = other.get_response("resp_1", now)
    assert got is not None and got.key_id == "key_a"
    assert got.input_items == b'[{"type":"message"}]' and got.body == b'{"id":"resp_1"}'
    assert other.get_response("resp_1", now + 61) is None  # past its retention
    assert other.get_response("resp_2", now) is None
    assert other.delete_response("resp_1") and not state.delete_response("resp_1")
    assert state.get_response("resp_1", now) is None
    state.put_response("resp_old", "key_a", now - 1, b"[]", b"{}")  # already expired
    assert other.get_response("resp_old", now) is None
