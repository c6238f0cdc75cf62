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
budget like any request, and a budget still used up defers it (``Deferred``)
to the start of the period that blocked it. It is retried with exponential
backoff when the provider fails. Its result is kept for
``retention_s``; the policy's ``jobs.webhook_url`` (never a URL from the
request) is told when a job ends. Each worker runs a ``JobRunner`` with its
own concurrency and rate limits, off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from edge.observe.log import Log
from edge.state.types import State, StateUnavailable

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
    ) -> None:
        self.state = state
        self.execute = execute
        self.settings = settings
        self.log = log
        self.webhook_url = webhook_url
        self.notify = notify
        self.on_finish = on_finish
        self.available = available  # False while the shared state is known to be down
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._next_start = 0.0
        self._last_purge = 0.0

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._loop())

    def poke(self) -> None:
        """A job was just queued in this worker: look now, not at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; running jobs are abandoned to their leases (another worker or the
        next start finishes them)."""
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        s = self.settings
        while True:
            await self._slots.acquire()
            job = None
            try:
                now = time.time()
                if now - self._last_purge > 3600:
                    self._last_purge = now
                    self.state.purge_jobs(now - s.retention_s)
                if self.available():
                    job = self.state.claim_job(self.owner, now, s.lease_s)
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
            task = asyncio.get_running_loop().create_task(self._run(job, max(0.0, delay)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, job: dict[str, Any], delay: float) -> None:
        s = self.settings
        renew = asyncio.get_running_loop().create_task(self._renew(job["id"]))
        try:
            if delay:
                await asyncio.sleep(delay)
            status, headers, body = await self.execute(job)
            now = time.time()
            if status == 200:
                final = "done"
            elif retryable(status) and job["attempts"] < s.max_attempts:
                backoff = min(s.backoff_s * 2 ** (job["attempts"] - 1), s.backoff_max_s)
                self.state.retry_job_later(
                    job["id"], self.owner, now + backoff, f"HTTP {status}", now
                )
                self.log.event(
                    "warning",
                    "job retry",
                    job=job["id"],
                    status=status,
                    attempt=job["attempts"],
                    backoff_s=backoff,
                )
                return
            else:
                final = "failed"
            kept = self.state.finish_job(
                job["id"],
                self.owner,
                final,
                status,
                orjson.dumps(
                    [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]
                ).decode(),
                body,
                "" if final == "done" else f"HTTP {status}",
                now,
            )
            if not kept:  # cancelled meanwhile, or the lease was lost: the result is not ours
                self.log.event("info", "job result dropped", job=job["id"])
                return
            self.log.event("info", "job finished", job=job["id"], status=final)
            if self.on_finish is not None:
                self.on_finish(final)
            if self.webhook_url and self.notify is not None:
                await self.notify(self.webhook_url, {"id": job["id"], "status": final})
                self.state.mark_notified(job["id"])
        except asyncio.CancelledError:
            raise
        except Deferred as later:
            self.state.retry_job_later(
                job["id"], self.owner, later.until, later.reason, time.time()
            )
            self.log.event(
                "info", "job deferred", job=job["id"], until=later.until, why=later.reason
            )
        except StateUnavailable as exc:
            # the result cannot be recorded: the lease runs out and the job runs again
            self.log.event("warning", "job result not recorded", job=job["id"], error=str(exc))
        except Exception as exc:
            # an error of the gateway itself: retried later like a provider failure
            self.log.event("error", "job error", job=job["id"], error=repr(exc))
            now = time.time()
            self.state.retry_job_later(job["id"], self.owner, now + s.backoff_s, repr(exc), now)
        finally:
            renew.cancel()
            self._slots.release()

    async def _renew(self, job_id: str) -> None:
        lease = self.settings.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not self.state.renew_lease(job_id, self.owner, time.time() + lease):
                    return
            except StateUnavailable:
                continue
