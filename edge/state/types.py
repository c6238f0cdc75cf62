"""What every state backend offers: the ``State`` calls, their rows and their errors.

``EmbeddedState`` (SQLite) and ``RedisState`` implement ``State``; the rest
of the gateway knows only this module (``open_state`` picks the backend).
Jobs and rollouts travel as plain dicts keyed by ``JOB_COLUMNS`` and
``ROLLOUT_COLUMNS``; stored Responses answers as ``StoredResponse`` (expired
ones are never returned, and purged on the way); budgets count per UTC day and month (``periods``); a
reservation older than ``STALE_S`` no longer counts (its worker died).

Errors: ``StateUnavailable`` (the shared backend cannot be reached: the
gateway degrades, never fails a request for it), ``StateBusy`` (a kind of
``StateUnavailable``: the backend is there but did not answer within the
short wait a call on the event loop is allowed, ``EDGE_STATE_WAIT_MS``; the
call is skipped or kept for later, the backend is not marked down) and
``ControllerBusy`` (``begin``: another instance holds the rollout
controller's turn).

Every call is short and bounded: a handle opened with ``wait_ms`` never waits
longer than that for a lock (SQLite) or an answer (Redis). Calls that may wait
longer (the job runner's) go to a handle of their own, in a thread.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

STALE_S = 600.0

ROLLOUT_COLUMNS = [
    "id",
    "created_at",
    "updated_at",
    "status",
    "policy_path",
    "policy_text",
    "stage",
    "stage_started_at",
    "gold",
    "reason",
    "report",
]
LIVE_ROLLOUT = ("running", "paused", "completed", "promoted")

JOB_COLUMNS = [
    "id",
    "created_at",
    "updated_at",
    "status",
    "tenant",
    "key_id",
    "tier",
    "dialect",
    "path",
    "headers",
    "body",
    "reason",
    "attempts",
    "next_run_at",
    "lease_owner",
    "lease_until",
    "result_status",
    "result_headers",
    "result_body",
    "error",
    "finished_at",
    "notified",
    "notify_attempts",
    "notify_error",
]


def event_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A rollout outcome as stored: (rollout, stage, arm, ts, ok, latency_ms, cost_usd,
    json_asked, json_valid, tier, task, model); a row without the last three gets ``""``."""
    return (*row, "", "", "")[:12] if len(row) < 12 else tuple(row)


def periods(now: float) -> tuple[str, str]:
    """The UTC day and month a moment falls in: ``day:YYYY-MM-DD``, ``month:YYYY-MM``."""
    return _periods_of_day(int(now // 86400))  # (a UTC day is 86,400 Unix seconds)


@functools.lru_cache(maxsize=8)
def _periods_of_day(day: int) -> tuple[str, str]:
    t = time.gmtime(day * 86400)
    return time.strftime("day:%Y-%m-%d", t), time.strftime("month:%Y-%m", t)


@dataclass(slots=True)
class LedgerRow:
    ts: float
    tenant: str
    tier: str
    provider: str
    model: str
    kind: str  # answer | waste
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: float
    request_id: str  # "" for a row that aggregates several (``requests`` > 1)
    requests: int = 1  # answers (or wasted attempts) this row counts


@dataclass(slots=True)
class Settlement:
    """A finished request: its reservation released, its real cost counted (``budgeted``)."""

    reservation: str
    tenant: str
    cost_usd: float
    at: float
    budgeted: bool


@dataclass(slots=True)
class StoredResponse:
    """A Responses API answer kept for ``previous_response_id`` and ``GET /v1/responses/{id}``:
    its input items (the whole conversation it answered) and its Response object, as JSON;
    only the key that made it (``key_id``) may read it."""

    key_id: str
    input_items: bytes
    body: bytes


@dataclass(slots=True)
class AnswerRecord:
    """One answer, kept for the retention period so feedback can find it (no prompt text)."""

    request_id: str
    key: str  # the gateway key's SHA-256 digest (hex; "open" on a gateway without keys)
    at: float  # when it was accounted (unix seconds)
    tier: str
    task: str
    model: str
    arm: str  # the rollout arm, "" without a rollout
    online: str  # the online checks' verdict: "ok" or the failed check


@dataclass(slots=True)
class FeedbackRow:
    """A score on one answer, from its key (the API) or an operator (an import)."""

    request_id: str
    key: str
    at: float
    score: float  # 0..1 (thumbs: up 1, down 0)
    label: str
    comment: str
    source: str  # api | import


# (tier, task, model, online answers, online passed, human feedbacks, sum of their scores)
QualityCount = tuple[str, str, str, int, int, int, float]


class StateUnavailable(RuntimeError):
    """The shared state backend cannot be reached."""


class StateBusy(StateUnavailable):
    """The backend did not answer within the call's short wait (a lock held elsewhere, a slow
    round trip): this call only; the backend is not known to be down."""


class ControllerBusy(RuntimeError):
    """Another instance holds the rollout controller's turn (try at the next tick)."""


class State(Protocol):
    """The calls the gateway makes on its state; each is short and synchronous."""

    @property
    def path(self) -> str:
        """Where the state lives: the SQLite file, or the Redis URL."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    # -- budgets

    def reserve(
        self,
        reservation: str,
        tenant: str,
        day_limit: float,
        month_limit: float,
        amount: float,
        block_at: float,
        now: float,
    ) -> float: ...

    def settle(self, settlements: Iterable[Settlement], ledger: Iterable[LedgerRow]) -> None: ...

    def spent(self, tenant: str, period: str) -> float: ...

    def spend_report(self, since_day: str) -> list[dict[str, Any]]: ...

    # -- jobs

    def put_job(self, job: dict[str, Any]) -> None: ...

    def claim_job(self, owner: str, now: float, lease_s: float) -> dict[str, Any] | None: ...

    def renew_lease(self, job_id: str, owner: str, until: float) -> bool: ...

    def finish_job(
        self,
        job_id: str,
        owner: str,
        status: str,
        result_status: int,
        result_headers: str,
        result_body: bytes,
        error: str,
        now: float,
    ) -> bool: ...

    def retry_job_later(
        self,
        job_id: str,
        owner: str,
        next_run_at: float,
        error: str,
        now: float,
        refund: bool = False,
    ) -> bool:
        """Queue a running job again for ``next_run_at``; ``refund``: this run does not count
        against its attempts (it was deferred, not failed)."""
        ...

    def get_job(self, job_id: str) -> dict[str, Any] | None: ...

    def cancel_job(self, job_id: str, now: float) -> bool: ...

    def requeue_job(self, job_id: str, now: float) -> bool: ...

    def note_webhook(self, job_id: str, attempts: int, error: str, delivered: bool) -> None:
        """Record a webhook delivery attempt of a finished job (``notified`` once delivered)."""
        ...

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]: ...

    def job_counts(self) -> dict[str, int]: ...

    def purge_jobs(self, finished_before: float) -> int: ...

    # -- stored responses (the Responses API's store=true)

    def put_response(
        self, response_id: str, key_id: str, expires_at: float, input_items: bytes, body: bytes
    ) -> None: ...

    def get_response(self, response_id: str, now: float) -> StoredResponse | None: ...

    def delete_response(self, response_id: str) -> bool: ...

    # -- rollouts

    def put_rollout(self, row: dict[str, Any]) -> None: ...

    def live_rollout(self) -> dict[str, Any] | None: ...

    def last_rollout(self) -> dict[str, Any] | None: ...

    def move_rollout(
        self,
        rollout_id: str,
        expect: tuple[str, ...],
        status: str,
        now: float,
        stage: int | None = None,
        reason: str = "",
        report: str = "",
    ) -> bool: ...

    def add_rollout_events(self, rows: list[tuple[Any, ...]]) -> None: ...

    def rollout_events(self, rollout_id: str, stage: int, arm: str) -> list[tuple[Any, ...]]:
        """(ok, latency_ms, cost_usd, json_asked, json_valid, tier, task, model) of one arm in
        one stage."""
        ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    # -- answers and feedback (edge/quality/feedback.py)

    def record_answers(
        self, rows: list[AnswerRecord], writer: str, through: float, retention_s: float
    ) -> None:
        """Keep answer records, count their online checks per day, and mark ``writer``'s
        records as written up to ``through`` (every answer it accounted before then)."""
        ...

    def answers_through(self, live_after: float) -> float:
        """The earliest ``through`` mark among writers that marked after ``live_after``
        (``inf`` when none did): every answer accounted before it is findable."""
        ...

    def find_answer(self, request_id: str, key: str | None, since: float) -> AnswerRecord | None:
        """The answer of ``key`` (any key's latest when None) with that id, at or after
        ``since``."""
        ...

    def put_feedback(self, row: FeedbackRow, answer: AnswerRecord, retention_s: float) -> bool:
        """Store a feedback (a second one on the same answer replaces the first: True) and
        count it in the answer's day."""
        ...

    def quality_counts(self, since: float) -> list[QualityCount]:
        """Online checks and human feedback per (tier, task, model) since a moment (by day)."""
        ...

    def purge_answers(self, before: float) -> int:
        """Drop answer records, feedback and counts older than ``before``."""
        ...

    def take_token(self, bucket: str, per_s: float, burst: float, now: float) -> float:
        """A token bucket shared by every worker: 0 when a token was taken, else the
        seconds until one is available."""
        ...

    # -- the scheduled gold run (edge/quality/schedule.py)

    def gold_lease(self, owner: str, now: float, ttl_s: float) -> bool:
        """Take the scheduled gold run's turn for ``ttl_s`` from ``now``, or renew it when
        ``owner`` holds it: True when ``owner`` holds it now (one owner at a time across every
        worker and instance; an expired lease is anyone's)."""
        ...

    def gold_release(self, owner: str) -> None:
        """Give the turn back (only its owner can)."""
        ...

    def gold_marks(self) -> dict[str, str]:
        """What the scheduled gold run remembers, by name (see edge/quality/schedule.py)."""
        ...

    def put_gold_marks(self, marks: dict[str, str]) -> None: ...
