"""A job's runs and its webhook are bounded: retried with backoff, then failed, all recorded.

A real ``EmbeddedState`` and ``JobRunner`` (its state calls in its thread), a fake clock and
a fake sleep: nothing here waits for real time; tests wait for what they can observe.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from edge.budget.jobs import Deferred, JobRunner, JobSettings, Result, post_webhook
from edge.cli import main as cli_main
from edge.observe.log import Log
from edge.state.embedded import EmbeddedState

NOW = 1_795_000_000.0


class Clock:
    """Fake time; ``step``: how far each reading moves it (a runner that polls sees time pass)."""

    def __init__(self, step: float = 0.0) -> None:
        self.t = NOW
        self.step = step
        self.slept: list[float] = []
        self.backoffs: list[float] = []

    def __call__(self) -> float:
        self.t += self.step
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def queued(job_id: str = "job_1", dialect: str = "openai") -> dict[str, Any]:
    return {
        "id": job_id,
        "created_at": NOW,
        "updated_at": NOW,
        "status": "queued",
        "tenant": "acme",
        "key_id": "k",
        "tier": "L1",
        "dialect": dialect,
        "path": "/v1/chat/completions",
        "headers": "{}",
        "body": b"{}",
        "reason": "test",
        "next_run_at": NOW,
    }


async def until(done: Callable[[], bool], what: str) -> None:
    """Wait for a condition the runner makes true (checked between its steps)."""
    for _ in range(5_000):
        if done():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never: {what}")


class Spy(EmbeddedState):
    """The runner's own handle, telling the backoff each retry was given."""

    backoffs: list[float]

    def retry_job_later(self, *args: Any, **kwargs: Any) -> bool:
        next_run_at, now = args[2], args[4]
        self.backoffs.append(next_run_at - now)
        return super().retry_job_later(*args, **kwargs)


def runner(
    state_dir: str,
    execute: Callable[[dict[str, Any]], Any],
    clock: Clock,
    webhook_url: str = "",
    **settings: Any,
) -> tuple[JobRunner, list[str]]:
    finished: list[str] = []
    spy = Spy(state_dir)
    spy.backoffs = clock.backoffs
    jobs = JobRunner(
        spy,
        execute,
        JobSettings(**{"poll_s": 0.005, "rate_per_s": 1e6, "max_attempts": 3, **settings}),
        Log(level="error", access=False),
        webhook_url,
        post_webhook,
        finished.append,
        clock=clock,
        sleep=clock.sleep,
    )
    return jobs, finished


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_job_that_hits_a_gateway_error_fails_after_max_attempts(dialect: str) -> None:
    directory = tempfile.mkdtemp()
    state = EmbeddedState(directory)
    state.put_job(queued(dialect=dialect))
    clock = Clock(step=1000.0)  # each poll past any backoff: the next claim finds it due
    runs: list[float] = []

    async def broken(job: dict[str, Any]) -> Result:
        runs.append(clock())
        raise KeyError("a bug in the gateway")

    async def scenario() -> None:
        jobs, finished = runner(directory, broken, clock, lease_s=1e9)
        jobs.start()
        await until(lambda: finished == ["failed"], "the job failed")
        await jobs.stop()

    asyncio.run(scenario())
    assert len(runs) == 3  # bounded: the old runner retried an exception forever
    job = state.get_job("job_1")
    assert job is not None and job["status"] == "failed" and job["attempts"] == 3
    assert (
        job["error"] == "failed after 3 attempts: gateway error: KeyError('a bug in the gateway')"
    )
    assert job["result_status"] == 500
    body = orjson.loads(job["result_body"])
    assert "internal error" in (body["error"]["message"])
    assert (body.get("type") == "error") is (dialect == "anthropic")


def test_provider_failures_back_off_exponentially_then_fail_with_the_last_error() -> None:
    directory = tempfile.mkdtemp()
    state = EmbeddedState(directory)
    state.put_job(queued())
    clock = Clock(step=100.0)

    async def overloaded(job: dict[str, Any]) -> Result:
        body = orjson.dumps({"error": {"message": "upstream overloaded", "type": "server_error"}})
        return 503, [(b"content-type", b"application/json")], body

    async def scenario() -> None:
        jobs, finished = runner(
            directory, overloaded, clock, max_attempts=4, backoff_s=2.0, lease_s=1e9
        )
        jobs.start()
        await until(lambda: finished == ["failed"], "the job failed")
        await jobs.stop()

    asyncio.run(scenario())
    job = state.get_job("job_1")
    assert job is not None and job["status"] == "failed" and job["attempts"] == 4
    assert job["error"] == "failed after 4 attempts: HTTP 503: upstream overloaded"
    assert job["result_status"] == 503
    assert clock.backoffs == [2.0, 4.0, 8.0]


def test_a_job_whose_workers_keep_dying_is_failed_not_run_again() -> None:
    """Claimed and abandoned (lease ran out) as often as it may run: failed, not run."""
    directory = tempfile.mkdtemp()
    state = EmbeddedState(directory)
    state.put_job(queued())
    for n in range(3):
        assert state.claim_job(f"dead-{n}", NOW + 100 * n, lease_s=30) is not None
    clock = Clock()
    clock.t = NOW + 1000
    ran: list[str] = []

    async def execute(job: dict[str, Any]) -> Result:
        ran.append(job["id"])
        return 200, [], b"{}"

    async def scenario() -> None:
        jobs, finished = runner(directory, execute, clock)
        jobs.start()
        await until(lambda: finished == ["failed"], "the job failed")
        await jobs.stop()

    asyncio.run(scenario())
    assert ran == []
    job = state.get_job("job_1")
    assert job is not None and job["status"] == "failed" and job["result_status"] == 500
    assert job["error"].startswith("abandoned after 3 attempts")


def test_a_budget_deferral_is_not_an_attempt() -> None:
    directory = tempfile.mkdtemp()
    state = EmbeddedState(directory)
    state.put_job(queued())
    clock = Clock()
    calls: list[int] = []

    async def execute(job: dict[str, Any]) -> Result:
        calls.append(job["attempts"])
        if len(calls) <= 5:
            clock.t += 86_400
            raise Deferred(clock.t - 1, "budget used up")
        return 200, [(b"content-type", b"application/json")], b"{}"

    async def scenario() -> None:
        jobs, finished = runner(directory, execute, clock)
        jobs.start()
        await until(lambda: finished == ["done"], "the job ran")
        await jobs.stop()

    asyncio.run(scenario())
    assert calls == [1] * 6  # deferred five times, more than max_attempts: still runs
    job = state.get_job("job_1")
    assert job is not None and job["status"] == "done"


class Hook:
    """A real local webhook receiver that fails its first ``failures`` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(json.loads(body))
                ok = len(outer.received) > outer.failures
                self.send_response(204 if ok else 500)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook_factory() -> Iterator[Callable[[int], Hook]]:
    hooks: list[Hook] = []

    def make(failures: int) -> Hook:
        hooks.append(Hook(failures))
        return hooks[-1]

    yield make
    for h in hooks:
        h.server.shutdown()
        h.server.server_close()


def run_one_with_hook(hook: Hook, **settings: Any) -> tuple[dict[str, Any], Clock]:
    directory = tempfile.mkdtemp()
    state = EmbeddedState(directory)
    state.put_job(queued())
    clock = Clock()

    async def execute(job: dict[str, Any]) -> Result:
        return 200, [(b"content-type", b"application/json")], b"{}"

    async def scenario() -> None:
        jobs, finished = runner(directory, execute, clock, hook.url, **settings)
        jobs.start()
        await until(lambda: finished == ["done"], "the job ran")

        def settled() -> bool:
            job = state.get_job("job_1")
            attempts = settings.get("webhook_attempts", 5)
            return job is not None and (job["notified"] or job["notify_attempts"] == attempts)

        await until(settled, "the webhook delivered or given up")
        await jobs.stop()

    asyncio.run(scenario())
    job = state.get_job("job_1")
    assert job is not None
    return job, clock


def test_a_webhook_that_fails_then_succeeds_is_retried_and_recorded(
    hook_factory: Callable[[int], Hook],
) -> None:
    hook = hook_factory(2)
    job, clock = run_one_with_hook(hook, webhook_backoff_s=1.0)
    assert hook.received == [{"id": "job_1", "status": "done"}] * 3
    assert job["notified"] == 1 and job["notify_attempts"] == 3
    assert job["notify_error"] is None
    assert clock.slept == [1.0, 2.0]  # backoff between the attempts


def test_a_webhook_that_never_answers_2xx_is_not_marked_notified(
    hook_factory: Callable[[int], Hook],
) -> None:
    hook = hook_factory(100)
    job, clock = run_one_with_hook(hook, webhook_attempts=3, webhook_backoff_s=0.5)
    assert len(hook.received) == 3  # bounded
    assert job["notified"] == 0 and job["notify_attempts"] == 3
    assert job["notify_error"] == "HTTP 500"
    assert clock.slept == [0.5, 1.0]


def test_jobs_show_tells_a_failed_jobs_error_and_attempts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tempfile.mkdtemp()
    state = EmbeddedState(directory)
    state.put_job(queued())
    assert state.claim_job("w", NOW, 30) is not None
    state.finish_job("job_1", "w", "failed", 500, "[]", b"{}", "failed after 1 attempts: x", NOW)
    state.note_webhook("job_1", 2, "HTTP 500", False)
    assert cli_main(["jobs", "show", "job_1", "--state-dir", directory]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "failed" and shown["attempts"] == 1
    assert shown["error"] == "failed after 1 attempts: x"
    assert (shown["notified"], shown["notify_attempts"], shown["notify_error"]) == (
        0,
        2,
        "HTTP 500",
    )
