"""The embedded state backend: one SQLite file in WAL mode under ``EDGE_STATE_DIR``.

Every worker process opens the same file. Two connections per handle: jobs
are written with ``synchronous=FULL`` (a job is on disk before its 202 is
sent), budgets and the ledger with ``synchronous=NORMAL`` (a crash can lose
the last moments of the ledger, never a job).

Tables:

- ``jobs``: the async queue. A job is claimed with a lease
  (``lease_owner``, ``lease_until``); only the lease holder can finish it,
  so a job whose worker died is reclaimed after its lease and completed
  exactly once.
- ``spend``: one row per tenant and period (``day:2026-11-26``,
  ``month:2026-11``): USD spent (settled from real usage) and the estimates
  reserved by requests in flight (``reserved_nusd``, integer nano-USD, so
  holds and releases sum exactly). The key's own rows are all a reservation
  reads: its cost does not grow with the requests in flight.
- ``reservations``: one row per estimate in flight. Inserting one is the
  reservation: a single ``INSERT ... SELECT ... WHERE`` that checks the key's
  day and month rows for headroom, and whose trigger adds the amount to them,
  so the check and the hold are one statement (atomic across processes, the
  write lock held for that statement only, no transaction spanning Python
  code). Deleting one (settled, or older than ``STALE_S``: its worker died)
  releases it through the other trigger.
- ``ledger``: one row per answer (and per wasted attempt), or one row that
  aggregates several (``requests``): tokens by kind and cost, for
  ``/admin/spend``.
- ``responses``: Responses API answers kept (``store``) until ``expires_at``,
  with their input items and the key that made them; each write also deletes
  a few expired rows, so the table holds about the retention period's worth.
- ``answers``, ``feedback``, ``quality_counts``, ``answer_marks``,
  ``rate_buckets``: answer records for feedback (retention period), human
  and online-check counts per day, each worker's written-through mark, the
  feedback rate limit per key (see ``edge/quality/feedback.py``).
- ``gold_lease``, ``gold_marks``: the scheduled gold run's turn (one row: a
  lease by owner and expiry, taken or renewed in one ``UPDATE``, so no
  transaction is held while the run lasts) and what it remembers (the last
  run, the policy digest, each model's last seen version; see
  ``edge/quality/schedule.py``).

Waits are bounded: the busy timeout is the handle's ``wait_ms`` (the
gateway's request path: ``EDGE_STATE_WAIT_MS``); a lock held longer raises
``StateBusy`` instead of stalling the event loop.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from edge.state.types import (
    JOB_COLUMNS,
    LIVE_ROLLOUT,
    ROLLOUT_COLUMNS,
    STALE_S,
    AnswerRecord,
    ControllerBusy,
    FeedbackRow,
    LedgerRow,
    QualityCount,
    Settlement,
    StateBusy,
    StoredResponse,
    event_row,
    periods,
)

P = ParamSpec("P")
R = TypeVar("R")

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
    notified INTEGER NOT NULL DEFAULT 0,
    notify_attempts INTEGER NOT NULL DEFAULT 0,
    notify_error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (status, next_run_at);
CREATE TABLE IF NOT EXISTS spend (
    tenant TEXT NOT NULL,
    period TEXT NOT NULL,
    spent_usd REAL NOT NULL,
    reserved_nusd INTEGER NOT NULL DEFAULT 0,
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
CREATE INDEX IF NOT EXISTS reservations_age ON reservations (created_at);
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
    request_id TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1
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
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    input_items BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
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
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS gold_lease (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gold_marks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at REAL NOT NULL
);
"""
_ANSWER_COLUMNS = "request_id, key, at, tier, task, model, arm, online"

# the reservations' amounts, summed on the key's rows (created by the first hold of a period)
_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS reservation_held AFTER INSERT ON reservations BEGIN
    INSERT INTO spend (tenant, period, spent_usd, reserved_nusd)
    VALUES (NEW.tenant, NEW.day, 0, CAST(round(NEW.amount * 1e9) AS INTEGER)),
           (NEW.tenant, NEW.month, 0, CAST(round(NEW.amount * 1e9) AS INTEGER))
    ON CONFLICT (tenant, period)
    DO UPDATE SET reserved_nusd = reserved_nusd + excluded.reserved_nusd;
END;
CREATE TRIGGER IF NOT EXISTS reservation_released AFTER DELETE ON reservations BEGIN
    UPDATE spend SET reserved_nusd = reserved_nusd - CAST(round(OLD.amount * 1e9) AS INTEGER)
    WHERE tenant = OLD.tenant AND period IN (OLD.day, OLD.month);
END;
"""

# columns added since the first schema: (table, column, definition)
_ADDED = (
    ("spend", "reserved_nusd", "INTEGER NOT NULL DEFAULT 0"),
    ("ledger", "requests", "INTEGER NOT NULL DEFAULT 1"),
    ("jobs", "notify_attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "notify_error", "TEXT"),
    # rollout outcomes by tier, task label and serving model (the per-tier guards)
    ("rollout_events", "tier", "TEXT NOT NULL DEFAULT ''"),
    ("rollout_events", "task", "TEXT NOT NULL DEFAULT ''"),
    ("rollout_events", "model", "TEXT NOT NULL DEFAULT ''"),
)

# one statement: the hold, only if both of the key's periods have headroom for it
_RESERVE = """
INSERT INTO reservations (id, tenant, day, month, amount, created_at)
SELECT :id, :tenant, :day, :month, :amount, :now
WHERE (:day_cap IS NULL OR COALESCE((SELECT spent_usd + reserved_nusd * 1e-9 FROM spend
                                     WHERE tenant = :tenant AND period = :day), 0)
                           + :amount < :day_cap)
  AND (:month_cap IS NULL OR COALESCE((SELECT spent_usd + reserved_nusd * 1e-9 FROM spend
                                       WHERE tenant = :tenant AND period = :month), 0)
                             + :amount < :month_cap)
"""

_LOCKED = ("database is locked", "database table is locked", "database is busy")


def _bounded(fn: Callable[P, R]) -> Callable[P, R]:
    """A lock held longer than the handle's wait becomes ``StateBusy``, not a stall."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if str(exc) in _LOCKED:
                raise StateBusy(f"sqlite: {exc} ({fn.__name__})") from None
            raise

    return call


class EmbeddedState:
    def __init__(self, directory: str, wait_ms: float = 2000.0) -> None:
        """``wait_ms``: the longest any call waits for another process's lock."""
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "edge.db")
        self.wait_ms = wait_ms
        # the schema (and its migration) may wait: it runs once, before serving
        self._jobs = self._connect(full=True, wait_ms=max(wait_ms, 5000.0))
        self._db = self._connect(full=False, wait_ms=wait_ms)
        self._migrate(self._jobs)
        self._jobs.execute(f"PRAGMA busy_timeout={int(wait_ms)}")

    def _connect(self, full: bool, wait_ms: float) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=wait_ms / 1000.0, isolation_level=None, check_same_thread=False
        )
        db.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Create the schema, or bring an older file up to it (in one transaction)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, column, definition in _ADDED:
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                    if column == "reserved_nusd":  # the holds in flight, summed once
                        db.execute(
                            "INSERT OR IGNORE INTO spend (tenant, period, spent_usd) "
                            "SELECT tenant, day, 0 FROM reservations "
                            "UNION SELECT tenant, month, 0 FROM reservations"
                        )
                        db.execute(
                            "UPDATE spend SET reserved_nusd = (SELECT "
                            "COALESCE(SUM(CAST(round(amount * 1e9) AS INTEGER)), 0) "
                            "FROM reservations r WHERE r.tenant = spend.tenant "
                            "AND spend.period IN (r.day, r.month))"
                        )
            db.execute("DROP INDEX IF EXISTS reservations_tenant")
            for statement in _TRIGGERS.split("END;"):
                if statement.strip():
                    db.execute(statement + "END;")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_bounded
    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    @_bounded
    def close(self) -> None:
        self._jobs.close()
        self._db.close()

    # -- budgets

    @_bounded
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

        When it is under ``block_at`` the amount is reserved, atomically with the check (one
        statement), so concurrent requests cannot all pass on the same headroom."""
        day, month = periods(now)
        inf = float("inf")
        caps = {
            "day_cap": None if day_limit == inf or block_at == inf else block_at * day_limit,
            "month_cap": None if month_limit == inf or block_at == inf else block_at * month_limit,
        }
        held = False
        if reservation and block_at > 0:
            held = (
                self._db.execute(
                    _RESERVE,
                    {
                        "id": reservation,
                        "tenant": tenant,
                        "day": day,
                        "month": month,
                        "amount": amount,
                        "now": now,
                        **caps,
                    },
                ).rowcount
                == 1
            )
        # the key's rows as they are now (a read: it waits for no one)
        used = dict(
            self._db.execute(
                "SELECT period, spent_usd + reserved_nusd * 1e-9 FROM spend "
                "WHERE tenant = ? AND period IN (?, ?)",
                (tenant, day, month),
            ).fetchall()
        )
        fraction = 0.0
        for period, limit in ((day, day_limit), (month, month_limit)):
            if limit != inf:
                # held: the rows count this request already; else as if it were added
                fraction = max(fraction, (used.get(period, 0.0) + (0 if held else amount)) / limit)
        # others' holds and releases since the statement may move the figure: the statement's
        # verdict stands, the fraction stays on its side of the threshold
        if held:
            return min(fraction, block_at * (1 - 1e-12))
        return max(fraction, block_at) if block_at > 0 and reservation else fraction

    @_bounded
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
                            "INSERT INTO spend (tenant, period, spent_usd) VALUES (?, ?, ?) "
                            "ON CONFLICT (tenant, period) "
                            "DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd",
                            (s.tenant, period, s.cost_usd),
                        )
            db.executemany(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        r.requests,
                    )
                    for r in ledger
                ],
            )
            # holds of workers that died: released (their rows' sums drop with them)
            db.execute("DELETE FROM reservations WHERE created_at < ?", (time.time() - STALE_S,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_bounded
    def spent(self, tenant: str, period: str) -> float:
        row = self._db.execute(
            "SELECT spent_usd FROM spend WHERE tenant = ? AND period = ?", (tenant, period)
        ).fetchone()
        return float(row[0]) if row else 0.0

    @_bounded
    def spend_report(self, since_day: str) -> list[dict[str, Any]]:
        """Spend and tokens by tenant, tier, provider, model and kind since a UTC day."""
        rows = self._db.execute(
            "SELECT tenant, tier, provider, model, kind, SUM(requests), SUM(input_tokens), "
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

    @_bounded
    def put_job(self, job: dict[str, Any]) -> None:
        """Insert a queued job; on disk (fsync) when this returns."""
        cols = [c for c in JOB_COLUMNS if c in job]
        self._jobs.execute(
            f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [job[c] for c in cols],
        )

    @_bounded
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

    @_bounded
    def renew_lease(self, job_id: str, owner: str, until: float) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
            (until, job_id, owner),
        )
        return cur.rowcount == 1

    @_bounded
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

    @_bounded
    def retry_job_later(
        self,
        job_id: str,
        owner: str,
        next_run_at: float,
        error: str,
        now: float,
        refund: bool = False,
    ) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET status = 'queued', next_run_at = ?, error = ?, lease_owner = NULL, "
            "lease_until = NULL, updated_at = ?, attempts = attempts - ? "
            "WHERE id = ? AND lease_owner = ? AND status = 'running'",
            (next_run_at, error, now, int(refund), job_id, owner),
        )
        return cur.rowcount == 1

    @_bounded
    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self._jobs.execute(
            f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return dict(zip(JOB_COLUMNS, row, strict=True)) if row else None

    @_bounded
    def cancel_job(self, job_id: str, now: float) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, "
            "lease_owner = NULL WHERE id = ? AND status IN ('queued', 'running')",
            (now, now, job_id),
        )
        return cur.rowcount == 1

    @_bounded
    def requeue_job(self, job_id: str, now: float) -> bool:
        cur = self._jobs.execute(
            "UPDATE jobs SET status = 'queued', next_run_at = ?, attempts = 0, error = NULL, "
            "finished_at = NULL, notified = 0, notify_attempts = 0, notify_error = NULL, updated_at = ? "
            "WHERE id = ? AND status IN ('failed', 'cancelled')",
            (now, now, job_id),
        )
        return cur.rowcount == 1

    @_bounded
    def note_webhook(self, job_id: str, attempts: int, error: str, delivered: bool) -> None:
        self._jobs.execute(
            "UPDATE jobs SET notified = ?, notify_attempts = ?, notify_error = ? WHERE id = ?",
            (int(delivered), attempts, error or None, job_id),
        )

    @_bounded
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

    @_bounded
    def job_counts(self) -> dict[str, int]:
        return dict(
            self._jobs.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        )

    # -- rollouts

    @_bounded
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

    @_bounded
    def live_rollout(self) -> dict[str, Any] | None:
        row = self._db.execute(
            f"SELECT {', '.join(ROLLOUT_COLUMNS)} FROM rollouts "
            f"WHERE status IN ({', '.join('?' * len(LIVE_ROLLOUT))}) ORDER BY created_at DESC LIMIT 1",
            LIVE_ROLLOUT,
        ).fetchone()
        return dict(zip(ROLLOUT_COLUMNS, row, strict=True)) if row else None

    @_bounded
    def last_rollout(self) -> dict[str, Any] | None:
        row = self._db.execute(
            f"SELECT {', '.join(ROLLOUT_COLUMNS)} FROM rollouts ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        return dict(zip(ROLLOUT_COLUMNS, row, strict=True)) if row else None

    @_bounded
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

    @_bounded
    def add_rollout_events(self, rows: list[tuple[Any, ...]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO rollout_events (rollout, stage, arm, ts, ok, latency_ms, cost_usd, "
                "json_asked, json_valid, tier, task, model) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [event_row(r) for r in rows],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_bounded
    def rollout_events(self, rollout_id: str, stage: int, arm: str) -> list[tuple[Any, ...]]:
        """(ok, latency_ms, cost_usd, json_asked, json_valid, tier, task, model) of one arm in
        one stage."""
        return self._db.execute(
            "SELECT ok, latency_ms, cost_usd, json_asked, json_valid, tier, task, model "
            "FROM rollout_events "
            "WHERE rollout = ? AND stage = ? AND arm = ?",
            (rollout_id, stage, arm),
        ).fetchall()

    def begin(self) -> None:
        """Serialise a read-decide-write across workers (the rollout controller); a lock held
        past the wait is another worker's turn."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if str(exc) in _LOCKED:
                raise ControllerBusy("another worker holds the state's write lock") from None
            raise

    @_bounded
    def commit(self) -> None:
        self._db.execute("COMMIT")

    @_bounded
    def rollback(self) -> None:
        self._db.execute("ROLLBACK")

    @_bounded
    def purge_jobs(self, finished_before: float) -> int:
        cur = self._jobs.execute(
            "DELETE FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < ?",
            (finished_before,),
        )
        return cur.rowcount

    # -- stored responses

    @_bounded
    def put_response(
        self, response_id: str, key_id: str, expires_at: float, input_items: bytes, body: bytes
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (response_id, key_id, expires_at, input_items, body),
            )
            db.execute(
                "DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                "WHERE expires_at < ? LIMIT 16)",
                (time.time(),),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_bounded
    def get_response(self, response_id: str, now: float) -> StoredResponse | None:
        row = self._db.execute(
            "SELECT key_id, input_items, body FROM responses WHERE id = ? AND expires_at >= ?",
            (response_id, now),
        ).fetchone()
        return StoredResponse(row[0], bytes(row[1]), bytes(row[2])) if row else None

    @_bounded
    def delete_response(self, response_id: str) -> bool:
        cur = self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cur.rowcount == 1

    # -- answers and feedback

    @_bounded
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

    @_bounded
    def answers_through(self, live_after: float) -> float:
        row = self._db.execute(
            "SELECT MIN(through) FROM answer_marks WHERE through > ?", (live_after,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else float("inf")

    @_bounded
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

    @_bounded
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

    @_bounded
    def quality_counts(self, since: float) -> list[QualityCount]:
        rows = self._db.execute(
            "SELECT tier, task, model, SUM(online_n), SUM(online_ok), SUM(human_n), SUM(human_sum) "
            "FROM quality_counts WHERE day >= ? GROUP BY tier, task, model",
            (_day(since),),
        ).fetchall()
        return [(t, k, m, int(a), int(b), int(c), float(d)) for t, k, m, a, b, c, d in rows]

    @_bounded
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

    @_bounded
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

    # -- the scheduled gold run (edge/quality/schedule.py)

    @_bounded
    def gold_lease(self, owner: str, now: float, ttl_s: float) -> bool:
        db = self._db
        db.execute("INSERT OR IGNORE INTO gold_lease VALUES ('gold', '', 0)")
        cur = db.execute(
            "UPDATE gold_lease SET owner = ?, until = ? "
            "WHERE name = 'gold' AND (owner = ? OR until <= ?)",
            (owner, now + ttl_s, owner, now),
        )  # one statement: atomic across processes
        return cur.rowcount == 1

    @_bounded
    def gold_release(self, owner: str) -> None:
        self._db.execute(
            "UPDATE gold_lease SET owner = '', until = 0 WHERE name = 'gold' AND owner = ?",
            (owner,),
        )

    @_bounded
    def gold_marks(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT name, value FROM gold_marks").fetchall())

    @_bounded
    def put_gold_marks(self, marks: dict[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO gold_marks VALUES (?, ?)", list(marks.items()))


def _day(at: float) -> str:
    """The UTC day of a moment, ``YYYY-MM-DD`` (the counts' bucket)."""
    return periods(at)[0][4:]
