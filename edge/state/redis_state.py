"""The shared state backend: Redis, for any number of gateway instances (``EDGE_REDIS_URL``).

The ``State`` calls (``edge.state.types``); every read-decide-write is one Lua
script, so it is atomic across instances:

- budgets: ``spend:{tenant}:{period}`` (INCRBYFLOAT, expiring after the
  period); ``held:{tenant}:{period}`` hashes of reservation -> amount in
  integer nano-USD plus their running sum (field ``~sum``), and
  ``heldt:{tenant}:{period}`` (reservation -> time, to release the holds of
  dead workers after ``STALE_S``). ``reserve`` reads the key's own figures
  (constant time, whatever is in flight), releases a few stale holds, and
  holds only under the block threshold. The ledger is aggregated per day in
  ``ledger:{day}``.
- jobs: a hash per job, ``jobs:ready`` (due time) and ``jobs:leases`` (lease
  expiry) sorted sets; ``claim`` takes a due job or one whose lease expired,
  ``finish`` only for the lease holder: a job of a dead instance is taken
  over after its lease and completed exactly once.
- stored responses: a hash per response (``resp:{id}``: key, input items,
  body) that Redis expires after the retention period.
- rollouts: a hash per rollout, ``rollouts`` (by creation), per stage and arm
  lists of outcomes; the controller's turn is a ``SET NX PX`` lock.
- answers and feedback: ``answer:{request_id}`` and ``feedback:{request_id}``
  hashes of key digest -> record (expiring with the retention period),
  ``quality:{day}`` counts per (tier, task, model), ``answers:marks`` (each
  writer's written-through time), ``rate:{bucket}`` token buckets (a script).
- the scheduled gold run: ``gold:lease`` (a hash of owner and expiry, taken
  or renewed by a script against the caller's clock) and ``gold:marks`` (a
  hash: the last run, the policy digest, each model's last seen version).

Calls have a short socket timeout (the handle's ``wait_ms``;
``EDGE_STATE_WAIT_MS`` on the request path); a lost Redis raises
``StateUnavailable`` and the gateway degrades (see ``edge/server/app.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import redis

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
    StateUnavailable,
    StoredResponse,
    event_row,
    periods,
)

P = "edge:"


_RESERVE = """
local now, stale, amount, block_at = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local nano = tonumber(ARGV[8])
local used = {0, 0}
for i = 1, 2 do
  -- a few holds of dead workers go at each call (bounded work, whatever is in flight)
  local old = redis.call('ZRANGEBYSCORE', KEYS[4 + i], '-inf', '(' .. (now - stale), 'LIMIT', 0, 16)
  for _, id in ipairs(old) do
    local amt = redis.call('HGET', KEYS[2 + i], id)
    if amt then
      redis.call('HDEL', KEYS[2 + i], id)
      redis.call('HINCRBY', KEYS[2 + i], '~sum', -tonumber(amt))
    end
    redis.call('ZREM', KEYS[4 + i], id)
  end
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0') + tonumber(redis.call('HGET', KEYS[2 + i], '~sum') or '0') * 1e-9
end
local fraction = 0
for i = 1, 2 do
  local limit = tonumber(ARGV[4 + i])
  if limit > 0 then
    local f = (used[i] + amount) / limit
    if f > fraction then fraction = f end
  end
end
if ARGV[7] ~= '' and fraction < block_at then
  for i = 1, 2 do
    redis.call('HSET', KEYS[2 + i], ARGV[7], nano)
    redis.call('HINCRBY', KEYS[2 + i], '~sum', nano)
    redis.call('ZADD', KEYS[4 + i], now, ARGV[7])
    redis.call('EXPIRE', KEYS[2 + i], 40 * 86400)
    redis.call('EXPIRE', KEYS[4 + i], 40 * 86400)
  end
end
return tostring(fraction)
"""

_RELEASE = """
for i = 1, 2 do
  local amt = redis.call('HGET', KEYS[i], ARGV[1])
  if amt then
    redis.call('HDEL', KEYS[i], ARGV[1])
    redis.call('HINCRBY', KEYS[i], '~sum', -tonumber(amt))
  end
  redis.call('ZREM', KEYS[2 + i], ARGV[1])
end
return 1
"""

_CLAIM = """
local now, lease, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, 1)
local id = expired[1]
if not id then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
  id = due[1]
end
if not id then return false end
redis.call('ZREM', KEYS[1], id)
redis.call('ZADD', KEYS[2], now + lease, id)
local job = ARGV[4] .. id
redis.call('HSET', job, 'status', 'running', 'lease_owner', owner, 'lease_until', now + lease, 'updated_at', now)
redis.call('HINCRBY', job, 'attempts', 1)
return id
"""

_IF_OWNER = """
local job = KEYS[1]
if redis.call('HGET', job, 'status') ~= 'running' or redis.call('HGET', job, 'lease_owner') ~= ARGV[1] then
  return 0
end
local id = ARGV[2]
redis.call('ZREM', KEYS[2], id)
for i = 4, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), id) end
if KEYS[4] ~= '' then redis.call('ZADD', KEYS[4], 0, id) end
return 1
"""

_GOLD_LEASE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local expiry = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if owner and owner ~= ARGV[1] and owner ~= '' and expiry > tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', ARGV[3])
return 1
"""

_GOLD_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '', 'until', '0')
end
return 1
"""

_RENEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[3])
return 1
"""

_MOVE = """
local s = redis.call('HGET', KEYS[1], 'status')
if not s then return 0 end
local ok = false
for i = 3, #ARGV do if ARGV[i] == s then ok = true end end
if not ok then return 0 end
local fields = cjson.decode(ARGV[1])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
if ARGV[2] ~= '' then redis.call('DEL', KEYS[2]) end
return 1
"""

_FEEDBACK = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
local score = tonumber(ARGV[3])
if old then
  local before = cjson.decode(old)
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[4] .. '|human_sum', score - tonumber(before['score']))
else
  redis.call('HINCRBY', KEYS[2], ARGV[4] .. '|human_n', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[4] .. '|human_sum', score)
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
if old then return 1 end
return 0
"""

_TOKEN = """
local per_s, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, at = burst, now
local row = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if row[1] then tokens = math.min(burst, tonumber(row[1]) + (now - tonumber(row[2])) * per_s) end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / per_s end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / per_s) + 60)
return tostring(wait)
"""

_INT = {"created_at", "updated_at", "next_run_at", "lease_until", "finished_at", "stage_started_at"}


class RedisState:
    def __init__(self, url: str, wait_ms: float = 500.0) -> None:
        """``wait_ms``: the longest a call waits to connect, or for an answer."""
        self.url = url
        self.path = url
        self.wait_ms = wait_ms
        timeout_s = wait_ms / 1000.0
        self.r = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=False
        )
        self._reserve = self.r.register_script(_RESERVE)
        self._release = self.r.register_script(_RELEASE)
        self._claim = self.r.register_script(_CLAIM)
        self._if_owner = self.r.register_script(_IF_OWNER)
        self._renew = self.r.register_script(_RENEW)
        self._gold_lease = self.r.register_script(_GOLD_LEASE)
        self._gold_release = self.r.register_script(_GOLD_RELEASE)
        self._move = self.r.register_script(_MOVE)
        self._feedback = self.r.register_script(_FEEDBACK)
        self._token = self.r.register_script(_TOKEN)
        # the liveness probe of a lost Redis: quick to say no, so a tick never stalls on it
        probe_s = min(timeout_s, 0.1)
        self._probe = redis.Redis.from_url(
            url, socket_timeout=probe_s, socket_connect_timeout=probe_s
        )
        self._lock = ""

    def _do(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StateUnavailable(f"redis at {self.url}: {exc}") from None

    def ping(self) -> None:
        self._do(self._probe.ping)

    def close(self) -> None:
        self.r.close()
        self._probe.close()

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
        day, month = periods(now)
        keys = [
            f"{P}spend:{tenant}:{day}",
            f"{P}spend:{tenant}:{month}",
            f"{P}held:{tenant}:{day}",
            f"{P}held:{tenant}:{month}",
            f"{P}heldt:{tenant}:{day}",
            f"{P}heldt:{tenant}:{month}",
        ]
        inf = float("inf")
        args = [
            repr(now),
            repr(STALE_S),
            repr(amount),
            repr(block_at) if block_at != inf else "1e308",
            repr(day_limit) if day_limit != inf else "0",
            repr(month_limit) if month_limit != inf else "0",
            reservation,
            str(round(amount * 1e9)),
        ]
        return float(self._do(self._reserve, keys=keys, args=args))

    def settle(self, settlements: Iterable[Settlement], ledger: Iterable[LedgerRow]) -> None:
        pipe = self.r.pipeline(transaction=True)
        for s in settlements:
            day, month = periods(s.at)
            if s.reservation:
                self._release(
                    keys=[
                        f"{P}held:{s.tenant}:{day}",
                        f"{P}held:{s.tenant}:{month}",
                        f"{P}heldt:{s.tenant}:{day}",
                        f"{P}heldt:{s.tenant}:{month}",
                    ],
                    args=[s.reservation],
                    client=pipe,
                )
            if s.budgeted and s.cost_usd > 0:
                for period, ttl in ((day, 2 * 86400), (month, 40 * 86400)):
                    pipe.incrbyfloat(f"{P}spend:{s.tenant}:{period}", s.cost_usd)
                    pipe.expire(f"{P}spend:{s.tenant}:{period}", ttl)
        for row in ledger:
            key = f"{P}ledger:{periods(row.ts)[0][4:]}"
            group = "|".join((row.tenant, row.tier, row.provider, row.model, row.kind))
            for name, value in (
                ("requests", row.requests),
                ("input_tokens", row.input_tokens),
                ("cache_read_tokens", row.cache_read_tokens),
                ("cache_write_tokens", row.cache_write_tokens),
                ("output_tokens", row.output_tokens),
            ):
                pipe.hincrby(key, f"{group}|{name}", value)
            pipe.hincrbyfloat(key, f"{group}|cost_usd", row.cost_usd)
            pipe.expire(key, 400 * 86400)
        self._do(pipe.execute)

    def spent(self, tenant: str, period: str) -> float:
        value = self._do(self.r.get, f"{P}spend:{tenant}:{period}")
        return float(value or 0.0)

    def spend_report(self, since_day: str) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for raw in self._do(lambda: list(self.r.scan_iter(f"{P}ledger:*", count=500))):
            day = raw.decode().rsplit(":", 1)[1]
            if day < since_day:
                continue
            for field, value in self._do(self.r.hgetall, raw).items():
                *group, name = field.decode().split("|")
                key = "|".join(group)
                row = rows.setdefault(
                    key,
                    dict(zip(("tenant", "tier", "provider", "model", "kind"), group, strict=True)),
                )
                v = float(value) if name == "cost_usd" else int(value)
                row[name] = row.get(name, 0) + v
        out = sorted(rows.values(), key=lambda r: -r.get("cost_usd", 0.0))
        for r in out:
            for name in (
                "requests",
                "input_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "output_tokens",
                "cost_usd",
            ):
                r.setdefault(name, 0)
        return out

    # -- jobs

    def _job_key(self, job_id: str) -> str:
        return f"{P}job:{job_id}"

    def put_job(self, job: dict[str, Any]) -> None:
        fields: dict[Any, Any] = {k: _enc(v) for k, v in job.items() if v is not None}
        fields.setdefault("attempts", b"0")
        fields.setdefault("notified", b"0")
        fields.setdefault("notify_attempts", b"0")
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self._job_key(job["id"]), mapping=fields)
        pipe.zadd(f"{P}jobs:ready", {job["id"]: float(job["next_run_at"])})
        pipe.zadd(f"{P}jobs:all", {job["id"]: float(job["created_at"])})
        self._do(pipe.execute)

    def claim_job(self, owner: str, now: float, lease_s: float) -> dict[str, Any] | None:
        job_id = self._do(
            self._claim,
            keys=[f"{P}jobs:ready", f"{P}jobs:leases"],
            args=[repr(now), repr(lease_s), owner, f"{P}job:"],
        )
        return self.get_job(job_id.decode()) if job_id else None

    def renew_lease(self, job_id: str, owner: str, until: float) -> bool:
        return bool(
            self._do(
                self._renew,
                keys=[self._job_key(job_id), f"{P}jobs:leases"],
                args=[owner, repr(until), job_id],
            )
        )

    def _owned(self, job_id: str, owner: str, requeue_at: float | None, **fields: Any) -> bool:
        flat: list[Any] = []
        for k, v in fields.items():
            flat += [k, _enc(v)]
        final = fields["status"] if fields["status"] in ("done", "failed") else ""
        return bool(
            self._do(
                self._if_owner,
                keys=[
                    self._job_key(job_id),
                    f"{P}jobs:leases",
                    f"{P}jobs:ready",
                    f"{P}jobs:status:{final}" if final else "",
                ],
                args=[owner, job_id, "" if requeue_at is None else repr(requeue_at), *flat],
            )
        )

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
        return self._owned(
            job_id,
            owner,
            None,
            status=status,
            result_status=result_status,
            result_headers=result_headers,
            result_body=result_body,
            error=error,
            finished_at=now,
            updated_at=now,
            lease_owner="",
        )

    def retry_job_later(
        self,
        job_id: str,
        owner: str,
        next_run_at: float,
        error: str,
        now: float,
        refund: bool = False,
    ) -> bool:
        fields: dict[str, Any] = {}
        if refund:  # read here: only the lease holder may write it, and the script checks that
            job = self.get_job(job_id)
            if job is not None and job["attempts"]:
                fields["attempts"] = job["attempts"] - 1
        return self._owned(
            job_id,
            owner,
            next_run_at,
            status="queued",
            next_run_at=next_run_at,
            error=error,
            lease_owner="",
            updated_at=now,
            **fields,
        )

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        raw = self._do(self.r.hgetall, self._job_key(job_id))
        if not raw:
            return None
        job: dict[str, Any] = {c: None for c in JOB_COLUMNS}
        for k, v in raw.items():
            name = k.decode()
            if name in ("body", "result_body"):
                job[name] = v
            elif name in ("attempts", "result_status", "notified", "notify_attempts"):
                job[name] = int(v) if v else None
            elif name in _INT:
                job[name] = float(v) if v else None
            else:
                job[name] = v.decode()
        for name in ("lease_owner", "error", "notify_error"):
            if job.get(name) == "":
                job[name] = None
        return job

    def cancel_job(self, job_id: str, now: float) -> bool:
        job = self.get_job(job_id)
        if job is None or job["status"] not in ("queued", "running"):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self._job_key(job_id),
            mapping={
                "status": "cancelled",
                "finished_at": repr(now),
                "updated_at": repr(now),
                "lease_owner": "",
            },
        )
        pipe.zrem(f"{P}jobs:ready", job_id)
        pipe.zrem(f"{P}jobs:leases", job_id)
        pipe.zadd(f"{P}jobs:status:cancelled", {job_id: 0})
        self._do(pipe.execute)
        return True

    def requeue_job(self, job_id: str, now: float) -> bool:
        job = self.get_job(job_id)
        if job is None or job["status"] not in ("failed", "cancelled"):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self._job_key(job_id),
            mapping={"status": "queued", "next_run_at": repr(now), "attempts": "0", "error": "",
                     "finished_at": "", "notified": "0", "notify_attempts": "0", "notify_error": "",
                     "updated_at": repr(now)},
        )  # fmt: skip
        pipe.zadd(f"{P}jobs:ready", {job_id: now})
        pipe.zrem(f"{P}jobs:status:{job['status']}", job_id)
        self._do(pipe.execute)
        return True

    def note_webhook(self, job_id: str, attempts: int, error: str, delivered: bool) -> None:
        self._do(
            self.r.hset,
            self._job_key(job_id),
            mapping={
                "notified": "1" if delivered else "0",
                "notify_attempts": str(attempts),
                "notify_error": error,
            },
        )

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        ids = self._do(self.r.zrevrange, f"{P}jobs:all", 0, -1)
        out = []
        for raw in ids:
            job = self.get_job(raw.decode())
            if job is None or (status and job["status"] != status):
                continue
            out.append({k: job[k] for k in ("id", "created_at", "status", "tenant", "tier", "dialect",
                                           "reason", "attempts", "next_run_at", "error", "finished_at")})  # fmt: skip
            if len(out) >= limit:
                break
        return out

    def job_counts(self) -> dict[str, int]:
        """Jobs by status, from the status sets (constant time: it is read at every scrape)."""
        pipe = self.r.pipeline(transaction=False)
        names = ("queued", "running", "done", "failed", "cancelled")
        pipe.zcard(f"{P}jobs:ready")
        pipe.zcard(f"{P}jobs:leases")
        for name in names[2:]:
            pipe.zcard(f"{P}jobs:status:{name}")
        return {n: c for n, c in zip(names, self._do(pipe.execute), strict=True) if c}

    def purge_jobs(self, finished_before: float) -> int:
        gone = 0
        for raw in self._do(self.r.zrange, f"{P}jobs:all", 0, -1):
            job = self.get_job(raw.decode())
            if (
                job
                and job["status"] in ("done", "failed", "cancelled")
                and (job["finished_at"] or 0) < finished_before
            ):
                self._do(self.r.delete, self._job_key(job["id"]))
                self._do(self.r.zrem, f"{P}jobs:all", job["id"])
                self._do(self.r.zrem, f"{P}jobs:status:{job['status']}", job["id"])
                gone += 1
        return gone

    # -- metrics of every instance (for fleet-wide stats)

    def publish_snapshot(self, name: str, data: bytes, ttl_s: int = 30) -> None:
        self._do(self.r.set, f"{P}snapshot:{name}", data, ex=ttl_s)

    def snapshots(self) -> list[bytes]:
        keys = self._do(lambda: list(self.r.scan_iter(f"{P}snapshot:*", count=500)))
        return [v for v in (self._do(self.r.mget, keys) if keys else []) if v]

    # -- rollouts

    def put_rollout(self, row: dict[str, Any]) -> None:
        live = self.live_rollout()
        pipe = self.r.pipeline(transaction=True)
        if live is not None:
            pipe.hset(
                f"{P}rollout:{live['id']}", mapping={"status": "aborted", "reason": "superseded"}
            )
        pipe.hset(
            f"{P}rollout:{row['id']}", mapping={c: _enc(row.get(c, "")) for c in ROLLOUT_COLUMNS}
        )
        pipe.zadd(f"{P}rollouts", {row["id"]: float(row["created_at"])})
        self._do(pipe.execute)

    def _rollout(self, rollout_id: str) -> dict[str, Any] | None:
        raw = self._do(self.r.hgetall, f"{P}rollout:{rollout_id}")
        if not raw:
            return None
        out: dict[str, Any] = {}
        for k, v in raw.items():
            name = k.decode()
            if name == "stage":
                out[name] = int(v)
            elif name in _INT:
                out[name] = float(v)
            else:
                out[name] = v.decode()
        return out

    def live_rollout(self) -> dict[str, Any] | None:
        for raw in self._do(self.r.zrevrange, f"{P}rollouts", 0, 20):
            r = self._rollout(raw.decode())
            if r is not None and r["status"] in LIVE_ROLLOUT:
                return r
        return None

    def last_rollout(self) -> dict[str, Any] | None:
        ids = self._do(self.r.zrevrange, f"{P}rollouts", 0, 0)
        return self._rollout(ids[0].decode()) if ids else None

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
        import orjson

        fields: dict[str, Any] = {"status": status, "updated_at": repr(now)}
        if stage is not None:
            fields.update(stage=str(stage), stage_started_at=repr(now))
        if reason:
            fields.update(reason=reason, report=report)
        return bool(
            self._do(
                self._move,
                keys=[f"{P}rollout:{rollout_id}", ""],
                args=[orjson.dumps(fields).decode(), "", *expect],
            )
        )

    def add_rollout_events(self, rows: list[tuple[Any, ...]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for row in rows:
            rollout_id, stage, arm, _ts, ok, lat, cost, asked, valid, tier, task, model = event_row(
                row
            )
            pipe.rpush(
                f"{P}rollout:{rollout_id}:{stage}:{arm}",
                f"{ok}|{lat!r}|{cost!r}|{asked}|{valid}|{tier}|{task}|{model}",
            )
        self._do(pipe.execute)

    def rollout_events(self, rollout_id: str, stage: int, arm: str) -> list[tuple[Any, ...]]:
        out = []
        for raw in self._do(self.r.lrange, f"{P}rollout:{rollout_id}:{stage}:{arm}", 0, -1):
            # an entry of an older gateway has no tier, task or model
            ok, lat, cost, asked, valid, *rest = raw.decode().split("|", 7)
            tier, task, model = (*rest, "", "", "")[:3]
            out.append(
                (int(ok), float(lat), float(cost), int(asked), int(valid), tier, task, model)
            )
        return out

    def begin(self) -> None:
        """The rollout controller's turn: one instance at a time (a short lock, never waited
        for: the event loop must not block; the next tick tries again)."""
        token = secrets.token_hex(8)
        if not self._do(self.r.set, f"{P}rollout:lock", token, nx=True, px=5000):
            raise ControllerBusy("another instance is evaluating the rollout")
        self._lock = token

    def commit(self) -> None:
        if self._lock and self._do(self.r.get, f"{P}rollout:lock") == self._lock.encode():
            self._do(self.r.delete, f"{P}rollout:lock")
        self._lock = ""

    rollback = commit

    # -- stored responses

    def put_response(
        self, response_id: str, key_id: str, expires_at: float, input_items: bytes, body: bytes
    ) -> None:
        key = f"{P}resp:{response_id}"
        pipe = self.r.pipeline()
        fields: dict[Any, Any] = {"key_id": key_id, "body": body}
        fields.update(expires_at=repr(expires_at), input_items=input_items)
        pipe.hset(key, mapping=fields)
        pipe.expireat(key, int(expires_at) + 1)
        self._do(pipe.execute)

    def get_response(self, response_id: str, now: float) -> StoredResponse | None:
        raw = self._do(self.r.hgetall, f"{P}resp:{response_id}")
        if not raw or b"body" not in raw or float(raw[b"expires_at"]) < now:
            return None  # (Redis drops it at its expiry; a clock a little ahead sees it first)
        return StoredResponse(raw[b"key_id"].decode(), raw[b"input_items"], raw[b"body"])

    def delete_response(self, response_id: str) -> bool:
        return bool(self._do(self.r.delete, f"{P}resp:{response_id}"))

    # -- answers and feedback

    def record_answers(
        self, rows: list[AnswerRecord], writer: str, through: float, retention_s: float
    ) -> None:
        import orjson

        ttl = max(1, int(retention_s))
        pipe = self.r.pipeline(transaction=True)
        for r in rows:
            record = orjson.dumps([r.at, r.tier, r.task, r.model, r.arm, r.online])
            pipe.hset(f"{P}answer:{r.request_id}", r.key, record)
            pipe.expire(f"{P}answer:{r.request_id}", ttl)
            if r.online:
                day = f"{P}quality:{_day(r.at)}"
                group = f"{r.tier}|{r.task}|{r.model}"
                pipe.hincrby(day, f"{group}|online_n", 1)
                pipe.hincrby(day, f"{group}|online_ok", int(r.online == "ok"))
                pipe.expire(day, ttl + 2 * 86400)
        pipe.hset(f"{P}answers:marks", writer, repr(through))
        self._do(pipe.execute)

    def answers_through(self, live_after: float) -> float:
        marks = [float(v) for v in self._do(self.r.hvals, f"{P}answers:marks")]
        live = [m for m in marks if m > live_after]
        return min(live) if live else float("inf")

    def find_answer(self, request_id: str, key: str | None, since: float) -> AnswerRecord | None:
        import orjson

        name = f"{P}answer:{request_id}"
        if key is None:
            found = [
                (k.decode(), orjson.loads(v)) for k, v in self._do(self.r.hgetall, name).items()
            ]
        else:
            raw = self._do(self.r.hget, name, key)
            found = [(key, orjson.loads(raw))] if raw else []
        rows = [AnswerRecord(request_id, k, *v) for k, v in found if v[0] >= since]
        return max(rows, key=lambda r: r.at) if rows else None

    def put_feedback(self, row: FeedbackRow, answer: AnswerRecord, retention_s: float) -> bool:
        import orjson

        record = orjson.dumps(
            {"at": row.at, "score": row.score, "label": row.label, "comment": row.comment,
             "source": row.source, "answer_at": answer.at}
        )  # fmt: skip
        ttl = max(1, int(answer.at + retention_s - row.at))
        return bool(
            self._do(
                self._feedback,
                keys=[f"{P}feedback:{row.request_id}", f"{P}quality:{_day(answer.at)}"],
                args=[
                    row.key,
                    record,
                    repr(row.score),
                    f"{answer.tier}|{answer.task}|{answer.model}",
                    ttl,
                    int(retention_s) + 2 * 86400,
                ],
            )
        )

    def quality_counts(self, since: float) -> list[QualityCount]:
        first = _day(since)
        days = [
            raw for raw in self._do(lambda: list(self.r.scan_iter(f"{P}quality:*", count=500)))
            if raw.decode().rsplit(":", 1)[1] >= first
        ]  # fmt: skip
        acc: dict[tuple[str, str, str], list[float]] = {}
        names = ("online_n", "online_ok", "human_n", "human_sum")
        for raw in days:
            for field, value in self._do(self.r.hgetall, raw).items():
                tier, task, model, name = field.decode().rsplit("|", 3)
                acc.setdefault((tier, task, model), [0.0] * 4)[names.index(name)] += float(value)
        return [(*k, int(v[0]), int(v[1]), int(v[2]), v[3]) for k, v in acc.items()]

    def purge_answers(self, before: float) -> int:
        """Records, feedback and counts expire by themselves; dead writers' marks go here."""
        marks = self._do(self.r.hgetall, f"{P}answers:marks")
        dead = [k for k, v in marks.items() if float(v) < before]
        if dead:
            self._do(self.r.hdel, f"{P}answers:marks", *dead)
        return 0

    def take_token(self, bucket: str, per_s: float, burst: float, now: float) -> float:
        return float(
            self._do(
                self._token, keys=[f"{P}rate:{bucket}"], args=[repr(per_s), repr(burst), repr(now)]
            )
        )

    # -- the scheduled gold run (edge/quality/schedule.py)

    def gold_lease(self, owner: str, now: float, ttl_s: float) -> bool:
        args = [owner, repr(now), repr(now + ttl_s)]
        return bool(self._do(self._gold_lease, keys=[f"{P}gold:lease"], args=args))

    def gold_release(self, owner: str) -> None:
        self._do(self._gold_release, keys=[f"{P}gold:lease"], args=[owner])

    def gold_marks(self) -> dict[str, str]:
        raw = self._do(self.r.hgetall, f"{P}gold:marks")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def put_gold_marks(self, marks: dict[str, str]) -> None:
        if marks:
            self._do(self.r.hset, f"{P}gold:marks", mapping=marks)


def _day(at: float) -> str:
    return periods(at)[0][4:]


def _enc(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()
