"""The async job queue: requests the sync path refused (``block``), run later, durably.

A job is a chat request as the client sent it (dialect, path, body, the
headers that shape the answer), written to the state backend and on disk
before its ``202 Accepted`` is sent. Workers claim jobs with a lease; the
lease holder alone can finish one, so a job whose worker died (SIGKILL, a
crash) is reclaimed when the lease runs out and completed exactly once.

Lifecycle (``TRANSITIONS``; the backend's conditional updates enforce it)::

    queued --claim--> running --done--> done
      ^                 |  |---fail---> failed --retry--> queued
      |                 |  '--cancel--> cancelled --retry--> queued
      '----backoff------'   (queued --cancel--> cancelled)

A job runs in its own tier on the cheapest acceptable route (the tier's
cheapest candidate that meets its quality floor and can carry it), within
the cap that route sets for every attempt; it reserves against its key's
budget like any request, and a budget still used up defers it (``Deferred``,
not counted as an attempt) to the start of the period that blocked it.

Every run that does not end in an answer counts: a provider failure, an
error of the gateway (a 5xx it rendered, an exception), a run whose result
could not be recorded or whose worker died (its lease ran out and it was
claimed again). Retryable ones are run again after an exponential backoff;
after ``max_attempts`` runs the job is ``failed`` with the last error
recorded (``error``, and a result in the job's dialect), never retried
forever. A client error (a 4xx other than 408/409/429) fails it at once.

Its result is kept for ``retention_s``; the policy's ``jobs.webhook_url``
(never a URL from the request) is told when a job ends: a delivery that
fails (no answer, or not a 2xx) is retried with backoff up to
``webhook_attempts`` times, each attempt recorded on the job
(``notify_attempts``, ``notify_error``); ``notified`` only once delivered.

Each worker runs a ``JobRunner`` with its own concurrency and rate limits,
off the request path: its state calls go to a handle of their own, in a
thread (``offload``), so a lock they wait for never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from edge.errors import EdgeError, render
from edge.observe.log import Log
from edge.state.types import State, StateUnavailable

T = TypeVar("T")

TRANSITIONS: dict[tuple[str, str], str] = {
    ("queued", "claim"): "running",
    ("running", "claim"): "running",  # an expired lease: another worker takes over
    ("running", "done"): "done",
    ("running", "fail"): "failed",
    ("running", "backoff"): "queued",
    ("queued", "cancel"): "cancelled",
    ("running", "cancel"): "cancelled",
    ("failed", "retry"): "queued",
    ("cancelled", "retry"): "queued",
}
FINAL = frozenset({"done", "failed", "cancelled"})
# headers kept with a job: they shape the answer when it runs later
KEPT_HEADERS = (b"anthropic-version", b"anthropic-beta", b"x-edge-tier")


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class JobSettings:
    concurrency: int = 4
    rate_per_s: float = 5.0
    max_attempts: int = 5
    lease_s: float = 30.0
    retention_s: float = 7 * 86400.0
    poll_s: float = 0.5
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0
    webhook_attempts: int = 5
    webhook_backoff_s: float = 1.0

    def backoff(self, attempt: int) -> float:
        """The delay before run ``attempt + 1`` of a job."""
        return float(min(self.backoff_s * 2.0 ** max(0, attempt - 1), self.backoff_max_s))


# (status, headers, body) of a job's answer, in its dialect
Result = tuple[int, list[tuple[bytes, bytes]], bytes]
Execute = Callable[[dict[str, Any]], Awaitable[Result]]


class Deferred(Exception):
    """The job cannot run yet (its key's budget is used up): queued again for ``until``."""

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


def retryable(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def error_text(status: int, body: bytes) -> str:
    """``HTTP 503: <the error's message>`` from an error answer in either dialect."""
    try:
        message = orjson.loads(body)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP {status}"
    return f"HTTP {status}: {str(message)[:300]}"


async def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST a job's end to the policy's webhook; raises unless it answered 2xx."""
    import httpx  # off the request path: the hot path's client is edge.upstream

    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            r = await client.post(url, json=payload)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= r.status_code < 300:
        raise ConnectionError(f"HTTP {r.status_code}")


class JobRunner:
    def __init__(
        self,
        state: State,
        execute: Execute,
        settings: JobSettings,
        log: Log,
        webhook_url: str = "",
        notify: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        on_finish: Callable[[str], None] | None = None,
        available: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        offload: bool = True,
    ) -> None:
        """``state``: a handle of the runner's own when ``offload`` (its calls run in one
        thread, one at a time); ``notify`` raises when a delivery failed."""
        self.state = state
        self.execute = execute
        self.settings = settings
        self.log = log
        self.webhook_url = webhook_url
        self.notify = notify
        self.on_finish = on_finish
        self.available = available  # False while the shared state is known to be down
        self.clock = clock
        self.sleep = sleep
        self._pool = ThreadPoolExecutor(1, "edge-jobs-state") if offload else None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._next_start = 0.0
        self._last_purge = 0.0

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A state call, in the runner's thread (or inline when not offloaded)."""
        if self._pool is None:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._loop())

    def poke(self) -> None:
        """A job was just queued in this worker: look now, not at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; running jobs are abandoned to their leases (another worker or the
        next start finishes them); a webhook still being retried stays recorded as undelivered."""
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _loop(self) -> None:
        s = self.settings
        while True:
            await self._slots.acquire()
            job = None
            try:
                now = self.clock()
                if now - self._last_purge > 3600:
                    self._last_purge = now
                    await self._call(self.state.purge_jobs, now - s.retention_s)
                if self.available():
                    job = await self._call(self.state.claim_job, self.owner, now, s.lease_s)
            except StateUnavailable as exc:
                self.log.event("warning", "job queue unavailable", error=str(exc))
            finally:
                if job is None:
                    self._slots.release()
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), s.poll_s)
                continue
            # the rate limit: starts spaced 1/rate apart
            delay = self._next_start - time.monotonic()
            self._next_start = max(self._next_start, time.monotonic()) + 1.0 / s.rate_per_s
            self._spawn(self._run(job, max(0.0, delay)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: dict[str, Any], delay: float) -> None:
        """One run of a claimed job: its answer recorded, a retry scheduled, or its failure."""
        s = self.settings
        renew = asyncio.get_running_loop().create_task(self._renew(job["id"]))
        try:
            if job["attempts"] > s.max_attempts:
                # claimed again after its lease ran out, more often than it may run: its worker
                # died or could not record a result each time; it does not run again
                why = job["error"] or "its worker stopped or could not record the result"
                await self._fail(job, f"abandoned after {s.max_attempts} attempts: {why}")
                return
            if delay:
                await self.sleep(delay)
            try:
                status, headers, body = await self.execute(job)
                error = "" if status == 200 else error_text(status, body)
            except (asyncio.CancelledError, Deferred, StateUnavailable):
                raise
            except Exception as exc:
                # an error of the gateway itself: a failed run like a provider's
                self.log.event("error", "job error", job=job["id"], error=repr(exc))
                status, headers, body = self._internal(job)
                error = f"gateway error: {exc!r}"[:500]
            now = self.clock()
            if status == 200:
                final = "done"
            elif retryable(status) and job["attempts"] < s.max_attempts:
                backoff = s.backoff(job["attempts"])
                await self._call(
                    self.state.retry_job_later, job["id"], self.owner, now + backoff, error, now
                )
                self.log.event(
                    "warning",
                    "job retry",
                    job=job["id"],
                    status=status,
                    attempt=job["attempts"],
                    backoff_s=backoff,
                    error=error,
                )
                return
            else:
                final = "failed"
                if retryable(status):
                    error = f"failed after {job['attempts']} attempts: {error}"
            await self._finish(job, final, status, headers, body, error, now)
        except asyncio.CancelledError:
            raise
        except Deferred as later:
            await self._call(
                self.state.retry_job_later,
                job["id"],
                self.owner,
                later.until,
                later.reason,
                self.clock(),
                refund=True,
            )
            self.log.event(
                "info", "job deferred", job=job["id"], until=later.until, why=later.reason
            )
        except StateUnavailable as exc:
            # the result cannot be recorded: the lease runs out and the job runs again (an
            # attempt: it counts towards max_attempts)
            self.log.event("warning", "job result not recorded", job=job["id"], error=str(exc))
        finally:
            renew.cancel()
            self._slots.release()

    @staticmethod
    def _internal(job: dict[str, Any]) -> Result:
        status, extra, body = render(
            EdgeError("internal error in the gateway while running the job"),
            "anthropic" if job["dialect"] == "anthropic" else "openai",
            job["id"],
        )
        return status, [(b"content-type", b"application/json"), *extra], body

    async def _fail(self, job: dict[str, Any], error: str) -> None:
        status, headers, body = self._internal(job)
        await self._finish(job, "failed", status, headers, body, error, self.clock())

    async def _finish(
        self,
        job: dict[str, Any],
        final: str,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        error: str,
        now: float,
    ) -> None:
        kept = await self._call(
            self.state.finish_job,
            job["id"],
            self.owner,
            final,
            status,
            orjson.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]).decode(),
            body,
            error,
            now,
        )
        if not kept:  # cancelled meanwhile, or the lease was lost: the result is not ours
            self.log.event("info", "job result dropped", job=job["id"])
            return
        self.log.event("info", "job finished", job=job["id"], status=final, error=error or None)
        if self.on_finish is not None:
            self.on_finish(final)
        if self.webhook_url and self.notify is not None:
            # delivered beside the runner's slots: a slow hook never holds up the queue
            self._spawn(self._deliver(job["id"], {"id": job["id"], "status": final}))

    async def _deliver(self, job_id: str, payload: dict[str, Any]) -> None:
        """Tell the webhook, retried with backoff; every attempt recorded on the job."""
        assert self.notify is not None
        s = self.settings
        for attempt in range(1, s.webhook_attempts + 1):
            try:
                await self.notify(self.webhook_url, payload)
                error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = str(exc) or repr(exc)
            try:
                await self._call(self.state.note_webhook, job_id, attempt, error, not error)
            except StateUnavailable as exc:
                self.log.event("warning", "job webhook not recorded", job=job_id, error=str(exc))
            if not error:
                return
            last = attempt == s.webhook_attempts
            self.log.event(
                "error" if last else "warning",
                "job webhook gave up" if last else "job webhook failed",
                job=job_id,
                attempt=attempt,
                error=error,
            )
            if not last:
                await self.sleep(min(s.webhook_backoff_s * 2 ** (attempt - 1), s.backoff_max_s))

    async def _renew(self, job_id: str) -> None:
        lease = self.settings.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await self._call(
                    self.state.renew_lease, job_id, self.owner, self.clock() + lease
                ):
                    return
            except StateUnavailable:
                continue
