"""The embedded state backend: one SQLite file in WAL mode under ``EDGE_STATE_DIR``.

Every worker process opens the same file; SQLite's write lock
(``BEGIN IMMEDIATE``) makes each reservation and each job claim atomic
across processes. Two connections per process: jobs are written with
``synchronous=FULL`` (a job is on disk before its 202 is sent), budgets and
the ledger with ``synchronous=NORMAL`` (a crash can lose the last moments of
the ledger, never a job).

Tables:

- ``jobs``: the async queue. A job is claimed with a lease
  (``lease_owner``, ``lease_until``); only the lease holder can finish it,
  so a job whose worker died is reclaimed after its lease and completed
  exactly once.
- ``spend``: USD spent per tenant and period (``day:2026-11-26``,
  ``month:2026-11``), settled from real usage.
- ``reservations``: estimates of requests in flight; counted against the
  budget until settled, ignored after ``STALE_S`` (their worker died).
- ``ledger``: one row per answer (and per wasted attempt): tokens by kind and
  cost, for ``/admin/spend``.
- ``answers``, ``feedback``, ``quality_counts``, ``answer_marks``,
  ``rate_buckets``: answer records for feedback (retention period), human
  and online-check counts per day, each worker's written-through mark, the
  feedback rate limit per key (see ``edge/quality/feedback.py``).

The calls are synchronous and short (an indexed row or two); the gateway
makes them on its event loop.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from edge.state.types import (
    JOB_COLUMNS,
    LIVE_ROLLOUT,
    ROLLOUT_COLUMNS,
    STALE_S,
    AnswerRecord,
    FeedbackRow,
    LedgerRow,
    QualityCount,
    Settlement,
    periods,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    dialect TEXT NOT NULL,
    path TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_run_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    result_status INTEGER,
    result_headers TEXT,
    result_body BLOB,
    error TEXT,
    finished_at REAL,
    notified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (status, next_run_at);
CREATE TABLE IF NOT EXISTS spend (
    tenant TEXT NOT NULL,
    period TEXT NOT NULL,
    spent_usd REAL NOT NULL,
    PRIMARY KEY (tenant, period)
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    amount REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_tenant ON reservations (tenant, day);
CREATE TABLE IF NOT EXISTS ledger (
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    tenant TEXT NOT NULL,
    tier TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_day ON ledger (day, tenant);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL,
    policy_path TEXT NOT NULL,
    policy_text TEXT NOT NULL,
    stage INTEGER NOT NULL,
    stage_started_at REAL NOT NULL,
    gold TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    report TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rollout_events (
    rollout TEXT NOT NULL,
    stage INTEGER NOT NULL,
    arm TEXT NOT NULL,
    ts REAL NOT NULL,
    ok INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    cost_usd REAL NOT NULL,
    json_asked INTEGER NOT NULL,
    json_valid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rollout_events_stage ON rollout_events (rollout, stage, arm);
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    tier TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    arm TEXT NOT NULL,
    online TEXT NOT NULL,
    PRIMARY KEY (request_id, key)
);
CREATE INDEX IF NOT EXISTS answers_at ON answers (at);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    answer_at REAL NOT NULL,
    score REAL NOT NULL,
    label TEXT NOT NULL,
    comment TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (request_id, key)
);
CREATE INDEX IF NOT EXISTS feedback_answer_at ON feedback (answer_at);
CREATE TABLE IF NOT EXISTS quality_counts (
    day TEXT NOT NULL,
    tier TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    online_n INTEGER NOT NULL DEFAULT 0,
    online_ok INTEGER NOT NULL DEFAULT 0,
    human_n INTEGER NOT NULL DEFAULT 0,
    human_sum REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, tier, task, model)
);
CREATE TABLE IF NOT EXISTS answer_marks (
    writer TEXT PRIMARY KEY,
    through REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at REAL NOT NULL
);
"""
_ANSWER_COLUMNS = "request_id, key, at, tier, task, model, arm, online"


class EmbeddedState:
    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "edge.db")
        self._jobs = self._connect(full=True)
        self._db = self._connect(full=False)
        self._jobs.executescript(_SCHEMA)

    def _connect(self, full: bool) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._jobs.close()
        self._db.close()

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
    ) -> float:
        """The fraction of the tighter budget that spent + reserved + ``amount`` would use.

        When it is under ``block_at`` the amount is reserved (atomically with the check,
        so concurrent requests cannot all pass on the same headroom)."""
        day, month = periods(now)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            fraction = 0.0
            for period, column, limit in ((day, "day", day_limit), (month, "month", month_limit)):
                if limit == float("inf"):
                    continue
                row = db.execute(
                    "SELECT spent_usd FROM spend WHERE tenant = ? AND period = ?", (tenant, period)
                ).fetchone()
                reserved = db.execute(
                    f"SELECT COALESCE(SUM(amount), 0) FROM reservations "
                    f"WHERE tenant = ? AND {column} = ? AND created_at > ?",
                    (tenant, period, now - STALE_S),
                ).fetchone()[0]
                fraction = max(fraction, ((row[0] if row else 0.0) + reserved + amount) / limit)
            if fraction < block_at:
                db.execute(
                    "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?)",
                    (reservation, tenant, day, month, amount, now),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return fraction

    def settle(self, settlements: Iterable[Settlement], ledger: Iterable[LedgerRow]) -> None:
        """Release reservations, count real costs, append ledger rows: one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for s in settlements:
                if s.reservation:
                    db.execute("DELETE FROM reservations WHERE id = ?", (s.reservation,))
                if s.budgeted and s.cost_usd > 0:
                    for period in periods(s.at):
                        db.execute(
                            "INSERT INTO spend VALUES (?, ?, ?) ON CONFLICT (tenant, period) "
                            "DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd",
                            (s.tenant, period, s.cost_usd),
                        )
            db.executemany(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.ts,
                        periods(r.ts)[0][4:],
                        r.tenant,
                        r.tier,
                        r.provider,
                        r.model,
                        r.kind,
                        r.input_tokens,
                        r.cache_read_tokens,
                        r.cache_write_tokens,
                        r.output_tokens,
                        r.cost_usd,
                        r.request_id,
                    )
                    for r in ledger
                ],
            )
            db.execute("DELETE FROM reservations WHERE created_at < ?", (time.time() - STALE_S,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def spent(self, tenant: str, period: str) -> float:
        row = self._db.execute(
            "SELECT spent_usd FROM spend WHERE tenant = ? AND period = ?", (tenant, period)
        ).fetchone()
        return float(row[0]) if row else 0.0

    def spend_report(self, since_day: str) -> list[dict[str, Any]]:
        """Spend and tokens by tenant, tier, provider, model and kind since a UTC day."""
        rows = self._db.execute(
            "SELECT tenant, tier, provider, model, kind, COUNT(*), SUM(input_tokens), "
            "SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), SUM(cost_usd) "
            "FROM ledger WHERE day >= ? GROUP BY tenant, tier, provider, model, kind "
            "ORDER BY SUM(cost_usd) DESC",
            (since_day,),
        ).fetchall()
        keys = [
            "tenant",
            "tier",
            "provider",
            "model",
            "kind",
            "requests",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "cost_usd",
        ]
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- jobs

    def put_job(self, job: dict[str, Any]) -> None:
        """Insert a queued job; on disk (fsync) when this returns."""
        cols = [c for c in JOB_COLUMNS if c in job]
        self._jobs.execute(
            f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [job[c] for c in cols],
        )

    def claim_job(self, owner: str, now: float, lease_s: float) -> dict[str, Any] | None:
        """Take the next runnable job (queued and due, or running with an expired lease)."""
        db = self._jobs
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT id FROM jobs WHERE (status = 'queued' AND next_run_at <= ?) "
                "OR (status = 'running' AND lease_until < ?) ORDER BY next_run_at LIMIT 1",
                (now, now),
            ).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE jobs SET status = 'running', lease_owner = ?, lease_until = ?, "
                    "attempts = attempts + 1, updated_at = ? WHERE id = ?",
                    (owner, now + lease_s, now, row[0]),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self.get_job(row[0]) if row is not None else None

    def renew_lease(self, job_id: str, owner: str, until: float) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
            (until, job_id, owner),
        )
        return cur.rowcount == 1

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
    ) -> bool:
        """Record the outcome; False when the lease was lost (someone else owns the job now)."""
        cur = self._jobs.execute(
            "UPDATE jobs SET status = ?, result_status = ?, result_headers = ?, result_body = ?, "
            "error = ?, finished_at = ?, updated_at = ?, lease_owner = NULL "
            "WHERE id = ? AND lease_owner = ? AND status = 'running'",
            (status, result_status, result_headers, result_body, error, now, now, job_id, owner),
        )
        return cur.rowcount == 1

    def retry_job_later(
        self, job_id: str, owner: str, next_run_at: float, error: str, now: float
    ) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET status = 'queued', next_run_at = ?, error = ?, lease_owner = NULL, "
            "lease_until = NULL, updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
            (next_run_at, error, now, job_id, owner),
        )
        return cur.rowcount == 1

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self._jobs.execute(
            f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return dict(zip(JOB_COLUMNS, row, strict=True)) if row else None

    def cancel_job(self, job_id: str, now: float) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, "
            "lease_owner = NULL WHERE id = ? AND status IN ('queued', 'running')",
            (now, now, job_id),
        )
        return cur.rowcount == 1

    def requeue_job(self, job_id: str, now: float) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET status = 'queued', next_run_at = ?, attempts = 0, error = NULL, "
            "finished_at = NULL, notified = 0, updated_at = ? "
            "WHERE id = ? AND status IN ('failed', 'cancelled')",
            (now, now, job_id),
        )
        return cur.rowcount == 1

    def mark_notified(self, job_id: str) -> None:
        self._jobs.execute("UPDATE jobs SET notified = 1 WHERE id = ?", (job_id,))

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        cols = (
            "id created_at status tenant tier dialect reason attempts next_run_at error finished_at"
        )
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        rows = self._jobs.execute(
            f"SELECT {', '.join(cols.split())} FROM jobs {where} ORDER BY created_at DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
        return [dict(zip(cols.split(), r, strict=True)) for r in rows]

    def job_counts(self) -> dict[str, int]:
        return dict(
            self._jobs.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        )

    # -- rollouts

    def put_rollout(self, row: dict[str, Any]) -> None:
        """A new rollout supersedes any live one (their traffic returns to the baseline first)."""
        db = self._jobs
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE rollouts SET status = 'aborted', reason = 'superseded', updated_at = ? "
                f"WHERE status IN ({', '.join('?' * len(LIVE_ROLLOUT))})",
                (row["created_at"], *LIVE_ROLLOUT),
            )
            db.execute(
                f"INSERT INTO rollouts ({', '.join(ROLLOUT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(ROLLOUT_COLUMNS))})",
                [row.get(c, "") for c in ROLLOUT_COLUMNS],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def live_rollout(self) -> dict[str, Any] | None:
        row = self._db.execute(
            f"SELECT {', '.join(ROLLOUT_COLUMNS)} FROM rollouts "
            f"WHERE status IN ({', '.join('?' * len(LIVE_ROLLOUT))}) ORDER BY created_at DESC LIMIT 1",
            LIVE_ROLLOUT,
        ).fetchone()
        return dict(zip(ROLLOUT_COLUMNS, row, strict=True)) if row else None

    def last_rollout(self) -> dict[str, Any] | None:
        row = self._db.execute(
            f"SELECT {', '.join(ROLLOUT_COLUMNS)} FROM rollouts ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        return dict(zip(ROLLOUT_COLUMNS, row, strict=True)) if row else None

    def move_rollout(
        self,
        rollout_id: str,
        expect: tuple[str, ...],
        status: str,
        now: float,
        stage: int | None = None,
        reason: str = "",
        report: str = "",
    ) -> bool:
        """Change a rollout's status (and stage) if it is still in one of ``expect``."""
        sets = "status = ?, updated_at = ?"
        args: list[Any] = [status, now]
        if stage is not None:
            sets += ", stage = ?, stage_started_at = ?"
            args += [stage, now]
        if reason:
            sets += ", reason = ?, report = ?"
            args += [reason, report]
        cur = self._db.execute(
            f"UPDATE rollouts SET {sets} WHERE id = ? AND status IN ({', '.join('?' * len(expect))})",
            [*args, rollout_id, *expect],
        )
        return cur.rowcount == 1

    def add_rollout_events(self, rows: list[tuple[Any, ...]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO rollout_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def rollout_events(self, rollout_id: str, stage: int, arm: str) -> list[tuple[Any, ...]]:
        """(ok, latency_ms, cost_usd, json_asked, json_valid) of one arm in one stage."""
        return self._db.execute(
            "SELECT ok, latency_ms, cost_usd, json_asked, json_valid FROM rollout_events "
            "WHERE rollout = ? AND stage = ? AND arm = ?",
            (rollout_id, stage, arm),
        ).fetchall()

    def begin(self) -> None:
        """Serialise a read-decide-write across workers (the rollout controller)."""
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._db.execute("ROLLBACK")

    def purge_jobs(self, finished_before: float) -> int:
        cur = self._jobs.execute(
            "DELETE FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < ?",
            (finished_before,),
        )
        return cur.rowcount

    # -- answers and feedback

    def record_answers(
        self, rows: list[AnswerRecord], writer: str, through: float, retention_s: float
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                f"INSERT OR REPLACE INTO answers ({_ANSWER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.request_id, r.key, r.at, r.tier, r.task, r.model, r.arm, r.online)
                    for r in rows
                ],
            )
            counts: dict[tuple[str, str, str, str], list[int]] = {}
            for r in rows:
                if r.online:
                    c = counts.setdefault((_day(r.at), r.tier, r.task, r.model), [0, 0])
                    c[0] += 1
                    c[1] += r.online == "ok"
            db.executemany(
                "INSERT INTO quality_counts (day, tier, task, model, online_n, online_ok) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, tier, task, model) DO UPDATE SET "
                "online_n = online_n + excluded.online_n, online_ok = online_ok + excluded.online_ok",
                [(*k, n, ok) for k, (n, ok) in counts.items()],
            )
            db.execute(
                "INSERT INTO answer_marks VALUES (?, ?) ON CONFLICT (writer) DO UPDATE SET "
                "through = MAX(through, excluded.through)",
                (writer, through),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def answers_through(self, live_after: float) -> float:
        row = self._db.execute(
            "SELECT MIN(through) FROM answer_marks WHERE through > ?", (live_after,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else float("inf")

    def find_answer(self, request_id: str, key: str | None, since: float) -> AnswerRecord | None:
        if key is None:
            row = self._db.execute(
                f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE request_id = ? AND at >= ? "
                "ORDER BY at DESC LIMIT 1",
                (request_id, since),
            ).fetchone()
        else:
            row = self._db.execute(
                f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE request_id = ? AND key = ? AND at >= ?",
                (request_id, key, since),
            ).fetchone()
        return AnswerRecord(*row) if row else None

    def put_feedback(self, row: FeedbackRow, answer: AnswerRecord, retention_s: float) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute(
                "SELECT score FROM feedback WHERE request_id = ? AND key = ?",
                (row.request_id, row.key),
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.request_id, row.key, row.at, answer.at, row.score, row.label, row.comment,
                 row.source),
            )  # fmt: skip
            added, delta = (0, row.score - old[0]) if old else (1, row.score)
            db.execute(
                "INSERT INTO quality_counts (day, tier, task, model, human_n, human_sum) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, tier, task, model) DO UPDATE SET "
                "human_n = human_n + excluded.human_n, human_sum = human_sum + excluded.human_sum",
                (_day(answer.at), answer.tier, answer.task, answer.model, added, delta),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return old is not None

    def quality_counts(self, since: float) -> list[QualityCount]:
        rows = self._db.execute(
            "SELECT tier, task, model, SUM(online_n), SUM(online_ok), SUM(human_n), SUM(human_sum) "
            "FROM quality_counts WHERE day >= ? GROUP BY tier, task, model",
            (_day(since),),
        ).fetchall()
        return [(t, k, m, int(a), int(b), int(c), float(d)) for t, k, m, a, b, c, d in rows]

    def purge_answers(self, before: float) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            gone = db.execute("DELETE FROM answers WHERE at < ?", (before,)).rowcount
            db.execute("DELETE FROM feedback WHERE answer_at < ?", (before,))
            db.execute("DELETE FROM quality_counts WHERE day < ?", (_day(before),))
            db.execute("DELETE FROM answer_marks WHERE through < ?", (time.time() - 86400,))
            db.execute("DELETE FROM rate_buckets WHERE at < ?", (time.time() - 86400,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(gone)

    def take_token(self, bucket: str, per_s: float, burst: float, now: float) -> float:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT tokens, at FROM rate_buckets WHERE bucket = ?", (bucket,)
            ).fetchone()
            tokens = burst if row is None else min(burst, row[0] + (now - row[1]) * per_s)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / per_s
            if wait == 0.0:
                tokens -= 1.0
            db.execute(
                "INSERT OR REPLACE INTO rate_buckets VALUES (?, ?, ?)", (bucket, tokens, now)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return wait


def _day(at: float) -> str:
    """The UTC day of a moment, ``YYYY-MM-DD`` (the counts' bucket)."""
    return periods(at)[0][4:]
