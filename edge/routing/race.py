"""The race: first-token hedging, immediate failover and deadlines for one request.

``Race.run`` returns the first attempt that produced a first content token
(or a complete answer); every other attempt is cancelled at once by closing
its connection, which never goes back to the pool. The caller then streams
the rest from the winner (``Attempt.step``). Nothing here writes to the
client: the race ends before the first byte does, which is what makes a
failover or a hedge invisible to the caller.

Rules, per request:

- Candidates come from the routing decision in order, except that a hedge
  or a failover takes the best candidate on a provider other than those in
  flight and those that already failed this request, when there is one:
  slowness and outages are correlated per provider, so a second model of
  the same provider is the last place to look. A candidate whose
  breaker is open (or that asked us to wait with ``Retry-After``) is
  skipped; a half-open one is taken only as one of its bounded probes. When
  every candidate is refused, the least recently failed one is still tried
  once: the gateway degrades, it does not refuse.
- Soft timeout: a lone attempt without a first token after the tier's
  ``soft_timeout_ms`` gets a hedge on the next candidate, if the tier's
  hedge budget allows (a share of its requests over a sliding minute). At most
  two attempts are in flight; at most ``max_attempts`` are made in all. When
  the candidates run out, those that failed in a way a fresh attempt can fix
  (timeouts, resets, 5xx, 429) are tried again, still within that bound.
- A failure before the first token (connect error, reset, 5xx, 529, 429, a
  broken or malformed stream, a timeout) starts the next candidate at once,
  unless another attempt is already racing (that one is the failover).
  A context-length rejection of a request the policy said fits proves that
  model's declared window wrong for this request, not every window: the
  race moves on to the candidates whose declared window is at least the
  failing one's (never a smaller one), and ends only when none is left; any
  other 4xx (content filter, invalid request) stops new attempts and, when
  nothing else is in flight, is the answer.
- Deadlines: first token per attempt (an attempt silent past it is replaced,
  not waited on: alone, by the next candidate, and with nothing left to try
  it keeps its chance; beside a racing hedge, by the next candidate or a
  fresh attempt of its own model; see ``Race._replace``), idle between
  chunks (the connection's), and a total deadline for the whole request
  that nothing outlives.

Every await here may be cancelled (the client left, a deadline passed); the
attempts' connections are closed synchronously in ``finally`` blocks, so
cancellation never leaks a connection or a probe slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

from edge.budget.pricing import Tokens, cost_usd
from edge.dialects.common import StreamBroken, StreamState
from edge.dialects.core import Dialect
from edge.errors import (
    EdgeError,
    PoolSaturated,
    ServiceUnavailable,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from edge.routing.account import (
    ANSWER,
    RELEASE,
    RESCUE,
    SLOW,
    SUCCESS,
    TABLE,
    WASTE,
    End,
    Phase,
    billed,
)
from edge.routing.breaker import Admit, Breaker, Breakers
from edge.routing.rescue import Unaligned
from edge.routing.rescue import prefill_refused as _prefill_refused
from hotpath.sse import SSEError, SSEScanner
from hotpath.tokens import OVER_BASE

if TYPE_CHECKING:
    from edge.policy import Model, Provider
    from edge.upstream.connection import ResponseHead


class Upstream(Protocol):
    """One HTTP exchange with a provider, as the race sees it."""

    async def head(self) -> ResponseHead: ...

    async def read(self) -> bytes: ...

    def close(self) -> None:
        """Release the connection if the response was read to its end, else close it (idempotent)."""
        ...


@dataclass(slots=True)
class Call:
    """Everything one attempt sends, and the state that reads its answer."""

    model: Model
    provider: Provider
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    upstream_dialect: Dialect
    state: StreamState
    # input this attempt sends beyond the request's estimate (o200k base): a rescue's prefill
    extra_input: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    """One attempt's row in the bill (see ``edge.routing.account``)."""

    model: Model
    kind: str  # answer | waste
    tokens: Tokens
    charged: bool  # counts against the key's budget

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.model, self.tokens)


Connect = Callable[[Call, float], Awaitable[Upstream]]  # (call, idle timeout in s)
Prepare = Callable[["Model"], Call]  # raises EdgeError when the model cannot serve the request


@dataclass(frozen=True, slots=True)
class Timing:
    soft_timeout_s: float
    first_token_timeout_s: float
    idle_timeout_s: float
    total_timeout_s: float
    max_attempts: int = 3
    hedging: bool = True
    hedge_ratio: float | None = None  # the tier's hedge budget (None: the budget's own)
    hedge_min: int | None = None


class HedgeBudget:
    """Hedges allowed as a share of requests over a sliding window (one-second buckets)."""

    __slots__ = ("_hedges", "_requests", "_second", "min_per_window", "ratio", "window")

    def __init__(self, ratio: float, min_per_window: int, window_s: int = 60) -> None:
        self.ratio = ratio
        self.min_per_window = min_per_window
        self.window = window_s
        self._requests = [0] * window_s
        self._hedges = [0] * window_s
        self._second = 0

    def _roll(self, now: float) -> int:
        sec = int(now)
        if sec != self._second:
            if sec - self._second >= self.window:
                self._requests = [0] * self.window
                self._hedges = [0] * self.window
            else:
                for s in range(self._second + 1, sec + 1):
                    self._requests[s % self.window] = 0
                    self._hedges[s % self.window] = 0
            self._second = sec
        return sec % self.window

    def note_request(self, now: float) -> None:
        slot = self._roll(now)  # first: rolling may replace the lists
        self._requests[slot] += 1

    def try_spend(self, now: float) -> bool:
        slot = self._roll(now)
        allowed = max(float(self.min_per_window), self.ratio * sum(self._requests))
        if sum(self._hedges) + 1 > allowed:
            return False
        self._hedges[slot] += 1
        return True


class HedgeBudgets:
    """One ``HedgeBudget`` per tier and worker: a tier's hedges are a share of its own
    requests, so a flood of batch traffic neither earns nor spends the critical tier's."""

    __slots__ = ("_by_tier", "min_per_window", "ratio")

    def __init__(self, ratio: float = 0.1, min_per_window: int = 3) -> None:
        self.ratio = ratio  # for a tier whose timing names no budget
        self.min_per_window = min_per_window
        self._by_tier: dict[str, HedgeBudget] = {}

    def for_tier(self, tier: str, ratio: float | None, min_per_window: int | None) -> HedgeBudget:
        budget = self._by_tier.get(tier)
        if budget is None:
            budget = self._by_tier[tier] = HedgeBudget(self.ratio, self.min_per_window)
        # the tier's current figures (a policy reload or a rollout's candidate may change them)
        if ratio is not None:
            budget.ratio = ratio
        if min_per_window is not None:
            budget.min_per_window = min_per_window
        return budget

    def seat(self, tier: str, budget: HedgeBudget) -> None:
        """Use ``budget`` for ``tier`` (tests, and a worker that shares one)."""
        self._by_tier[tier] = budget


class RaceEvents(Protocol):
    """Where the race reports what happened (metrics, the latency sketches)."""

    def attempt(self, provider: str, model: str, outcome: str) -> None: ...

    def hedge(self, tier: str, outcome: str) -> None: ...

    def waste(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None: ...

    def censored_ttft(self, model: str, seconds: float, now: float) -> None: ...

    def rescue(self, tier: str, outcome: str) -> None: ...


@dataclass(slots=True)
class Shared:
    """What every race of a worker shares."""

    breakers: Breakers
    budgets: HedgeBudgets
    events: RaceEvents
    clock: Callable[[], float] = time.monotonic


def retry_after_s(err: UpstreamStatus) -> float:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); 0 if none."""
    headers = dict(err.headers)
    raw = headers.get(b"retry-after-ms")
    try:
        if raw is not None:
            return max(0.0, float(raw) / 1000.0)
        raw = headers.get(b"retry-after")
        if raw is None:
            return 0.0
        text = raw.decode("latin-1").strip()
        try:
            return max(0.0, float(text))
        except ValueError:
            return max(0.0, parsedate_to_datetime(text).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return 0.0


# What a failed attempt means for the breaker and for the race.
NEXT, WIDER, STOP = "next", "wider", "stop"


def classify(err: EdgeError) -> tuple[bool, str, str]:
    """(counts as a breaker failure, what the race does next, the attempt outcome label)."""
    if isinstance(err, UpstreamStatus):
        s = err.upstream_status
        if s == 429:
            return True, NEXT, "rate_limited"
        if s >= 500 or s == 408:
            return True, NEXT, "error"
        if s in (401, 403, 404):
            return False, NEXT, "rejected"  # the provider refused the gateway's key or model
        if err.code == "context_length_exceeded":
            return False, WIDER, "rejected"
        return False, STOP, "rejected"
    if isinstance(err, Unaligned):
        return False, STOP, "unaligned"  # the gateway's join failed, not the provider
    if isinstance(err, PoolSaturated):
        return False, NEXT, "saturated"  # our own connection limit, not the provider's fault
    if isinstance(err, UpstreamTimeout):
        return True, NEXT, "timeout"
    if isinstance(err, UpstreamError):
        return True, NEXT, "error"
    return False, STOP, "rejected"


class Attempt:
    """One upstream call of a race: opened, read to its first token, then streamed."""

    __slots__ = (
        "accounted",
        "admit",
        "breaker",
        "call",
        "closed",
        "ended",
        "expired",
        "first_token_at",
        "hedge_checked",
        "held",
        "kind",
        "overdue",
        "phase",
        "scanner",
        "started",
        "tail",
        "task",
        "unsent",
        "upstream",
        "upstream_id",
    )

    def __init__(self, call: Call, kind: str, admit: Admit, breaker: Breaker, now: float) -> None:
        self.call = call
        self.kind = kind  # primary | hedge | failover
        self.admit = admit
        self.breaker = breaker
        self.started = now
        self.first_token_at: float | None = None
        self.upstream: Upstream | None = None
        self.task: asyncio.Task[None] | None = None
        self.held: list[bytes] = []
        self.tail = b""
        self.unsent = b""  # bytes for the client made before a step failed (see ``step``)
        self.scanner = SSEScanner()
        self.upstream_id = ""
        self.ended = False
        self.closed = False
        self.expired = False
        self.hedge_checked = False
        self.overdue = False  # past its first-token deadline with no replacement
        self.phase = Phase.NEVER_SENT  # how far it got: what a provider may have billed
        self.accounted = False

    @property
    def state(self) -> StreamState:
        return self.call.state

    async def open(self, connect: Connect, idle_timeout_s: float) -> None:
        """Connect, send, and read until the first content token or the end of the answer."""
        try:
            self.upstream = await connect(self.call, idle_timeout_s)
            self.phase = Phase.CONNECTING
            head = await self.upstream.head()
            for name, value in head.headers:
                if name in (b"x-request-id", b"request-id"):
                    self.upstream_id = value.decode("latin-1")
            if head.status_code != 200:
                raw = await _read_all(self.upstream)
                raise self.call.upstream_dialect.error_from_upstream(
                    head.status_code, raw, list(head.headers)
                )
            self.phase = Phase.SENT
            while not self.state.first_token and not self.ended:
                self.held.append(await self.step())
            if self.state.first_token:
                self.phase = Phase.FIRST_TOKEN
        except BaseException:
            self.close()
            raise

    async def step(self) -> bytes:
        """Read one upstream chunk; the bytes it makes for the client (the tail at the end)."""
        assert self.upstream is not None
        state = self.state
        try:
            chunk = await self.upstream.read()
        except UpstreamError:
            if self.expired:
                raise UpstreamTimeout("the request ran past its tier's total deadline") from None
            if _complete(state):
                chunk = b""  # the answer and its usage are in: a missing terminator loses nothing
            else:
                raise
        if not chunk:
            self.ended = True
            if self.scanner.has_pending and not _complete(state):
                raise StreamBroken("provider stream ended inside an event")
            self.tail = state.close()
            return self.tail
        try:
            events = self.scanner.feed(chunk)
        except SSEError as exc:
            raise StreamBroken(f"provider stream: {exc}") from None
        out = []
        try:
            for name, data in events:
                piece = state.feed(name, data)
                if piece:
                    out.append(piece)
                if state.done and state.cut:  # the answer ended here (a stop sequence): the rest
                    # is not wanted (a cut is always done: checked first, it costs nothing)
                    self.ended = True
                    self.upstream.close()
                    self.tail = state.close()
                    out.append(self.tail)
                    break
        except StreamBroken:
            # the events before the bad one are in the state: their bytes are kept, so what
            # the client is sent is what the state counts (a rescue continues from it)
            self.unsent = b"".join(out)
            raise
        return b"".join(out)

    def take_held(self) -> bytes:
        data = b"".join(self.held)
        self.held.clear()
        return data

    def expire(self) -> None:
        """The total deadline passed: fail the read in progress."""
        self.expired = True
        if self.upstream is not None:
            self.upstream.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.upstream is not None:
            self.upstream.close()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()


def _text(pieces: list[str]) -> bytes:
    return "".join(p for p in pieces if isinstance(p, str)).encode()


def _complete(state: StreamState) -> bool:
    return bool(getattr(state, "complete", False))


async def _read_all(up: Upstream, limit: int = 1024 * 1024) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await up.read():
        size += len(chunk)
        if size > limit:
            raise UpstreamError("provider error response too large")
        parts.append(chunk)
    return b"".join(parts)


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a loser's failure is recorded by the race, not logged by asyncio


class Race:
    """The attempts of one request; see the module docstring."""

    def __init__(
        self,
        shared: Shared,
        candidates: list[Model],
        prepare: Prepare,
        connect: Connect,
        timing: Timing,
        *,
        tier: str,
        input_tokens: int,
        started: float,
        first_call: Call | None = None,
        capped: int = 0,
        cap_usd: float = 0.0,
    ) -> None:
        self.shared = shared
        self.queue = list(candidates)
        self.prepare = prepare
        self.connect = connect
        self.timing = timing
        self.tier = tier
        self.input_tokens = input_tokens
        self.deadline = started + timing.total_timeout_s
        self.first_call = first_call
        self.live: list[Attempt] = []
        self.attempts: list[Attempt] = []
        self.denied: list[Model] = []
        self.again: list[Model] = []  # failed, retryable: tried again when the queue runs out
        self.forced = False
        self.stopped = False  # a 4xx said no further attempt can help
        self.min_window = 0
        self.failed_providers: set[str] = set()
        self.last_error: EdgeError | None = None
        self.stop_error: EdgeError | None = None
        self.hedged = False
        self.capped = capped  # healthy candidates the cost cap left out
        self.cap_usd = cap_usd
        self._wake: asyncio.Future[None] | None = None
        self.charges: list[Charge] = []  # every attempt's row, once each
        self.path: list[str] = []  # every attempt as "model:end:phase", for the access log
        self.budget = shared.budgets.for_tier(tier, timing.hedge_ratio, timing.hedge_min)
        self.budget.note_request(shared.clock())

    # -- launching

    def _next_candidate(self, now: float) -> tuple[Call, Admit, Breaker] | None:
        breakers = self.shared.breakers
        while True:
            if not self.queue and self.again:
                # a second round on the models that failed in a way a fresh attempt can fix
                # (a timeout, a reset, a 5xx): one stall is no verdict on the next attempt
                self.queue, self.again = self.again, []
            if not self.queue:
                break
            model = self.queue.pop(self._best_index())
            if model.context_window < self.min_window:
                continue  # declared smaller than a window that already proved too small
            breaker = breakers[model.name]
            admit = breaker.admit(now)
            if admit is Admit.DENY:
                self.denied.append(model)
                continue
            call = self._call(model)
            if call is None:
                breaker.release(admit)
                continue
            return call, admit, breaker
        if not self.attempts and not self.forced and self.denied:
            # every candidate refused by its breaker: try the least recently failed one anyway
            self.forced = True
            model = min(self.denied, key=lambda m: breakers[m.name].last_failure)
            call = self._call(model)
            if call is not None:
                return call, Admit.PASS, breakers[model.name]
        return None

    def _best_index(self) -> int:
        """The first queued candidate on a provider not in flight and not failed in this
        request; the first one when every candidate is on such a provider."""
        if not self.live and not self.failed_providers:
            return 0  # (the first attempt of a request: nothing to avoid)
        avoid = self.failed_providers.union(a.call.model.provider for a in self.live)
        if avoid:
            for i, model in enumerate(self.queue):
                if model.provider not in avoid and model.context_window >= self.min_window:
                    return i
        return 0

    def _call(self, model: Model) -> Call | None:
        if self.first_call is not None and self.first_call.model is model:
            call, self.first_call = self.first_call, None
            return call
        try:
            return self.prepare(model)
        except EdgeError:
            return None  # this model cannot honour the request (a parameter, a capability)

    def _launch(self, kind: str, now: float) -> bool:
        if self.stopped or len(self.attempts) >= self.timing.max_attempts:
            return False
        picked = self._next_candidate(now)
        if picked is None:
            return False
        call, admit, breaker = picked
        attempt = Attempt(call, kind, admit, breaker, now)
        task = asyncio.get_running_loop().create_task(
            attempt.open(self.connect, self.timing.idle_timeout_s)
        )
        task.add_done_callback(_consume)
        task.add_done_callback(self._poke)
        attempt.task = task
        self.live.append(attempt)
        self.attempts.append(attempt)
        return True

    # -- the race

    def _poke(self, _: object = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _sleep_until(self, delay: float) -> None:
        """Until an attempt finishes or ``delay`` seconds pass (one future, one timer: cheaper
        than ``asyncio.wait`` on the path every request takes)."""
        if any(a.task is not None and a.task.done() for a in self.live):
            return
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(max(0.0, delay), self._poke)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    async def run(self) -> Attempt:
        """The winning attempt, read to its first content token; the others are cancelled."""
        clock = self.shared.clock
        try:
            while True:
                now = clock()
                if not self.live and not self._launch(
                    "failover" if self.attempts else "primary", now
                ):
                    raise self._final_error()
                if now >= self.deadline:
                    raise UpstreamTimeout(
                        f"no answer within the tier's total deadline ({self.timing.total_timeout_s:g} s)"
                    )
                await self._sleep_until(self._next_wake(now) - now)
                now = clock()
                for attempt in list(self.live):
                    if attempt.task is None or not attempt.task.done():
                        continue
                    self.live.remove(attempt)
                    assert attempt.task is not None
                    exc = attempt.task.exception()
                    if exc is None:
                        attempt.first_token_at = now
                        self._crown(attempt, now)
                        return attempt
                    if not isinstance(exc, EdgeError):
                        raise exc
                    self._failed(attempt, exc, now)
                self._deadlines(now)
        except BaseException:
            now = clock()
            end = End.TIMEOUT if now >= self.deadline else End.CANCELLED
            for attempt in self.live:
                self._settle(attempt, end, now)
            self.live.clear()
            raise

    def _next_wake(self, now: float) -> float:
        wake = self.deadline
        t = self.timing
        if self._can_start():
            for attempt in self.live:
                if not attempt.overdue:
                    wake = min(wake, attempt.started + t.first_token_timeout_s)
        if len(self.live) == 1 and not self.live[0].hedge_checked and t.hedging:
            wake = min(wake, self.live[0].started + t.soft_timeout_s)
        return wake

    def _can_start(self) -> bool:
        return not self.stopped and len(self.attempts) < self.timing.max_attempts

    def _deadlines(self, now: float) -> None:
        t = self.timing
        for late in list(self.live):
            if not late.overdue and now >= late.started + t.first_token_timeout_s:
                late.overdue = True  # decided once: replaced now, or kept as the last chance
                self._replace(late, now)
        if len(self.live) == 1 and t.hedging:
            lone = self.live[0]
            if not lone.hedge_checked and now >= lone.started + t.soft_timeout_s:
                lone.hedge_checked = True
                if len(self.attempts) >= t.max_attempts or not self._has_candidates():
                    return
                if not self.budget.try_spend(now):
                    self.shared.events.hedge(self.tier, "skipped_budget")
                    return
                if self._launch("hedge", now):
                    self.hedged = True
                else:  # candidates left, but none whose breaker admits an attempt now
                    self.shared.events.hedge(self.tier, "skipped_breaker")

    def _replace(self, late: Attempt, now: float) -> bool:
        """Start a fresh attempt in place of one silent past its first-token deadline.

        Waiting on it is what makes the tail: the hedge budget lets only a share of slow
        requests hedge, and a stall belongs to the attempt, not the model. Alone, it is
        replaced by another candidate only (with nothing else to try, killing it would
        just turn a slow answer into an error); beside a rival that still covers the
        request, by a fresh attempt of its own model when no other candidate is left. A
        replacement keeps the number in flight, so it needs no hedge budget; it counts
        against ``max_attempts``."""
        if not self._can_start():
            return False
        if len(self.live) > 1:
            self._again(late.call.model)
        if not self._launch("failover", now):
            return False
        self.live.remove(late)
        self._settle(late, End.REPLACED, now)
        self.failed_providers.add(late.call.model.provider)
        if self.stop_error is None:
            self.last_error = UpstreamTimeout(
                f"{late.call.model.name} sent no first token within "
                f"{self.timing.first_token_timeout_s:g} s"
            )
        return True

    def _has_candidates(self) -> bool:
        return any(m.context_window >= self.min_window for m in self.queue)

    def _failed(self, attempt: Attempt, err: EdgeError, now: float) -> None:
        then = self._settle(attempt, End.FAILED, now, err)
        self.failed_providers.add(attempt.call.model.provider)
        if then == WIDER:
            self.min_window = max(self.min_window, attempt.call.model.context_window)
            if not self._has_candidates():
                self.stopped = True
        elif then == STOP:
            self.stopped = True
        if self.stop_error is None or then == STOP:
            self.last_error = err
        if self.stopped and self.stop_error is None:
            self.stop_error = err  # the provider's decisive answer outranks later failures
        if not self.stopped and not self.live:
            # nothing else racing: the next candidate now (a live hedge is already the failover)
            self._launch("failover", now)

    def _again(self, model: Model) -> None:
        if model not in self.again and model not in self.queue:
            self.again.append(model)

    def _final_error(self) -> EdgeError:
        if self.stop_error is not None:
            return self.stop_error
        if self.capped:
            # dearer models were healthy, but the request's cost cap keeps them out: say so,
            # and when to come back, rather than pass on the last cheap model's failure
            now = self.shared.clock()
            reopen = [
                self.shared.breakers[m.name].open_until - now
                for m in self.denied
                if self.shared.breakers[m.name].open_until > now
            ]
            wait = max(1, int(min(reopen) + 0.999)) if reopen else 5
            return ServiceUnavailable(
                f"no model within this request's cost cap (${self.cap_usd:.4f} estimated) can "
                f"serve it right now; {self.capped} dearer model(s) were not tried",
                code="no_model_within_cap",
                headers=[(b"retry-after", b"%d" % wait)],
            )
        if self.last_error is not None:
            return self.last_error
        return ServiceUnavailable("no configured model can serve this request right now")

    def _crown(self, winner: Attempt, now: float) -> None:
        if winner.kind == "hedge":
            self.shared.events.hedge(self.tier, "won")
        for attempt in self.live:
            self._settle(attempt, End.LOST, now)
            if attempt.kind == "hedge":
                self.shared.events.hedge(self.tier, "lost")
        self.live.clear()

    def _settle(self, attempt: Attempt, end: End, now: float, err: EdgeError | None = None) -> str:
        """Close an attempt and account for it, once, by ``account.TABLE``: the breaker's
        verdict, the ledger row and budget charge, the metrics. Returns what the race does
        next after a failure (``NEXT`` otherwise)."""
        attempt.close()
        if attempt.accounted:
            return NEXT
        attempt.accounted = True
        rule = TABLE[end]
        model = attempt.call.model
        events = self.shared.events
        label, then = rule.outcome, NEXT
        if attempt.kind == "hedge" and end in (End.FAILED, End.REPLACED):
            # a hedge that failed before its first token, or was replaced as too slow (one won
            # or lost is counted by ``_crown``, one cancelled below)
            events.hedge(self.tier, "failed" if end == End.FAILED else "replaced")
        if rule.breaker == SUCCESS:
            attempt.breaker.success(attempt.admit, now)
        elif rule.breaker == SLOW:
            attempt.breaker.slow(attempt.admit, now)
            events.censored_ttft(model.name, now - attempt.started, now)
            self._again(model)
        elif rule.breaker == RELEASE:
            attempt.breaker.release(attempt.admit)
            if attempt.first_token_at is None:
                # it was still waiting: a lower bound of its time to first token keeps the
                # sketch honest about a model whose slow attempts always lose
                events.censored_ttft(model.name, now - attempt.started, now)
            if end in (End.CANCELLED, End.TIMEOUT) and attempt.kind == "hedge":
                events.hedge(self.tier, "cancelled")
        else:
            assert err is not None
            counts, then, error_label = classify(err)
            label = label or error_label
            if counts:
                after = retry_after_s(err) if isinstance(err, UpstreamStatus) else 0.0
                attempt.breaker.failure(attempt.admit, now, after)
                self._again(model)
            else:
                attempt.breaker.release(attempt.admit)
        events.attempt(model.provider, model.name, label)
        self.path.append(f"{model.name}:{end.name.lower()}:{attempt.phase.name.lower()}")
        ledger = rule.ledger
        if ledger == ANSWER and attempt.kind == "rescue":
            ledger = RESCUE  # the rest of an answer another attempt began (account.py)
        if attempt.phase >= Phase.SENT:
            state = attempt.state
            tokens = billed(
                attempt.phase,
                state.usage,
                state.complete,
                b"" if state.complete and state.usage else _text(state.output),
                int(
                    (self.input_tokens + attempt.call.extra_input)
                    * OVER_BASE[model.tokenizer]
                    * model.token_factor
                    + 0.5
                ),
                model.tokenizer,
            )
            self.charges.append(Charge(model, ledger, tokens, rule.charged))
            if ledger == WASTE:
                events.waste(model.provider, model.name, tokens.prompt, tokens.output)
        return then

    # -- after the winner

    def finished(self, winner: Attempt) -> None:
        """The winner's answer reached the client whole."""
        winner.phase = Phase.SERVED
        self._settle(winner, End.SERVED, self.shared.clock())

    def broke(self, winner: Attempt, err: EdgeError) -> None:
        """The winner failed after its first token, before the client saw any of it: it is
        waste, and a retry may follow (non-streaming only)."""
        self._settle(winner, End.BROKEN, self.shared.clock(), err)
        self.last_error = err

    def delivered(self, winner: Attempt, err: EdgeError) -> None:
        """The winner failed after bytes of it reached the client: billed as the answer."""
        self._settle(winner, End.DELIVERED, self.shared.clock(), err)
        self.failed_providers.add(winner.call.model.provider)  # a rescue looks elsewhere first
        self.last_error = err

    def abandoned(self, winner: Attempt) -> None:
        """The client left while the winner was being served: still the key's answer."""
        self._settle(winner, End.LEFT, self.shared.clock())

    # -- rescue after the first byte (edge.routing.rescue)

    async def rescue(self, prepare: Callable[[Model, bool], Call], tries: int = 2) -> Attempt:
        """A fallback opened to its first token to continue the answer the last winner broke.

        ``prepare(model, prefill)`` builds the continuation call (with the delivered text as
        an assistant prefill, or without it). Candidates come as for a failover, another
        provider first; a model that refuses the prefill is asked once more without it (not
        counted in ``tries``). No hedging: one attempt at a time, each within the tier's
        first-token deadline and the request's total deadline. Every attempt settles through
        the same table (its answer row is ``rescue``). Raises the last failure when no
        candidate could start (``Unaligned`` at once: the join failed, not the provider).
        """
        clock = self.shared.clock
        bare: set[str] = set()  # models asked without the prefill
        self.prepare = lambda model: prepare(model, model.name not in bare)
        self.first_call = None
        last: EdgeError = ServiceUnavailable("no fallback is left to continue the answer")
        while tries > 0:
            now = clock()
            if now >= self.deadline:
                last = UpstreamTimeout("the request's total deadline passed before the rescue")
                break
            picked = self._next_candidate(now)
            if picked is None:
                break
            call, admit, breaker = picked
            attempt = Attempt(call, "rescue", admit, breaker, now)
            self.attempts.append(attempt)
            wait = min(self.deadline, now + self.timing.first_token_timeout_s) - now
            try:
                await asyncio.wait_for(attempt.open(self.connect, self.timing.idle_timeout_s), wait)
            except TimeoutError:
                self._settle(attempt, End.REPLACED, clock())
                last = UpstreamTimeout(f"{call.model.name} sent no first token in time")
                tries -= 1
                continue
            except EdgeError as err:
                self._settle(attempt, End.FAILED, clock(), err)
                self.failed_providers.add(call.model.provider)
                last = err
                if isinstance(err, Unaligned):
                    break
                if call.model.name not in bare and _prefill_refused(err):
                    bare.add(call.model.name)
                    self.queue.insert(0, call.model)  # the same model, once, without it
                    continue
                tries -= 1
                continue
            except BaseException:
                self._settle(attempt, End.CANCELLED, clock())
                raise
            attempt.first_token_at = clock()
            return attempt
        raise last

    def rescued(self, outcome: str) -> None:
        """Count how a rescue ended (``edge_rescues_total{tier,outcome}``)."""
        self.shared.events.rescue(self.tier, outcome)

    def answer(self) -> Charge | None:
        """The row of the attempt that served (or was serving) the answer, if any."""
        for charge in self.charges:
            if charge.kind == ANSWER:
                return charge
        return None
