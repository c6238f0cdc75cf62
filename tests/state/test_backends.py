"""One test body for both state backends: embedded (SQLite) and Redis.

Each test gets ``new``, which opens another handle on the same store (another
worker process, another gateway instance), so atomicity is tested across
handles, not within one.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge.state.embedded import EmbeddedState
from edge.state.redis_state import RedisState
from edge.state.types import ControllerBusy, LedgerRow, Settlement, periods
from tests.conftest import RedisServer

NOW = 1_795_000_000.0  # 2026-11-18
Backend = EmbeddedState | RedisState


@pytest.fixture(params=["embedded", "redis"])
def new(request: pytest.FixtureRequest) -> Iterator[Callable[[], Backend]]:
    opened: list[Backend] = []
    if request.param == "embedded":
        directory = tempfile.mkdtemp()

        def make() -> Backend:
            opened.append(EmbeddedState(directory))
            return opened[-1]
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()

        def make() -> Backend:
            opened.append(RedisState(server.url))
            return opened[-1]

    yield make
    for state in opened:
        state.close()


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
    assert b.rollout_events("ro_1", 1, "canary") == [(1, 12.5, 0.001, 1, 0)]
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
