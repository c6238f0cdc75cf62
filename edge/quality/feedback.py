"""Answer records and human feedback on them (``POST /v1/edge/feedback``, ``feedback import``).

Every chat answer's request id is recorded with its key's digest, tier, task
label, model, rollout arm and online-check verdict (never prompt text), for
the policy's ``quality.retention_days``. Records are batched per worker like
settlements and written every ``FLUSH_S`` (and at each tick), off the request
path. Feedback names an answer by its ``x-request-id``; it is accepted only
from the key that made the request: records are looked up by (request id,
key digest), so another key's answer and an id that never existed are the
same miss, answered by the same 404 after the same steps: ids cannot be
probed.

The race: feedback may arrive right after its answer, while the record is
still in a batch, possibly another worker's (or instance's). Each write
also moves the writer's mark (``answers_through``): every answer it
accounted before the mark is written. The worker taking feedback first
writes its own batch; on a miss it waits until every live writer's mark
has passed the moment the feedback arrived (plus ``MARK_SLACK_S`` for clocks
of other hosts), looking again each ``POLL_S``, and only then answers 404.
An answer accounted before the feedback arrived is then certain to be
found; a miss costs its caller at most ``MISS_WAIT_S`` (writers mark at
least once a tick; one that has not marked for ``MARK_STALE_S`` is dead and
its batch lost with it). Waiting on the marks, rather than a fixed delay,
stays correct when a worker's flush timer runs late under load, and costs a
found record nothing.

Feedback is rate-limited per key by a token bucket in the state backend
(every worker and instance share it): ``quality.feedback_per_minute``, a
burst of as many, then a 429 with ``retry-after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from edge.errors import InvalidRequest, NotFound, RateLimited
from edge.quality.hybrid import QualityConfig
from edge.state.types import AnswerRecord, FeedbackRow, State, StateUnavailable

MISS_WAIT_S = 3.0  # the longest a miss waits for the writers' marks
MARK_STALE_S = 5.0  # a writer that has not marked for this long is gone
MARK_SLACK_S = 0.2  # clock differences between hosts
POLL_S = 0.05
PURGE_EVERY_S = 600.0
MAX_LABEL = 64
MAX_COMMENT = 2000
FIELDS = ("request_id", "score", "thumbs", "label", "comment")
_ID_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")


@dataclass(frozen=True, slots=True)
class Given:
    """A checked feedback body."""

    request_id: str
    score: float
    label: str
    comment: str


def check_feedback(body: Any) -> Given:
    """A feedback body, or a 400 naming the field at fault."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    for name in body:
        if name not in FIELDS:
            raise InvalidRequest(
                f"{name}: unknown field; a feedback has {', '.join(FIELDS)}", param=name
            )
    rid = body.get("request_id")
    if not isinstance(rid, str) or not 1 <= len(rid) <= 128 or not set(rid) <= _ID_OK:
        raise InvalidRequest(
            "request_id: required, the answer's x-request-id (1-128 of A-Z a-z 0-9 - _ . :)",
            param="request_id",
        )
    score, thumbs = body.get("score"), body.get("thumbs")
    if (score is None) == (thumbs is None):
        raise InvalidRequest(
            "score: give either score (0 to 1) or thumbs (up or down)", param="score"
        )
    if thumbs is not None:
        if thumbs not in ("up", "down"):
            raise InvalidRequest('thumbs: must be "up" or "down"', param="thumbs")
        value = 1.0 if thumbs == "up" else 0.0
    else:
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise InvalidRequest("score: must be a number from 0 to 1", param="score")
        value = float(score)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise InvalidRequest("score: must be a number from 0 to 1", param="score")
    label, comment = body.get("label", ""), body.get("comment", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL or not label.isprintable():
        raise InvalidRequest(
            f"label: must be a string of at most {MAX_LABEL} printable characters", param="label"
        )
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise InvalidRequest(
            f"comment: must be a string of at most {MAX_COMMENT} characters", param="comment"
        )
    return Given(rid, value, label, comment)


class Feedback:
    """One worker's answer records (batched) and the feedback it takes.

    With ``writer`` (a state handle of its own) the batches are written on one
    thread, off the event loop: a request never waits for them, and the order
    of batches (and so of the written-through marks) is kept. Without it (the
    CLI, tests) they are written in place."""

    FLUSH_S = 0.25

    def __init__(
        self,
        state: State,
        config: Callable[[], QualityConfig],
        clock: Callable[[], float] = time.time,
        writer: State | None = None,
    ) -> None:
        self.state = state
        self.config = config  # the active policy's [quality] table
        self.clock = clock
        self.writer = f"{socket.gethostname()}:{os.getpid()}"
        self.handle = writer
        self._pool = ThreadPoolExecutor(1, "edge-answers") if writer is not None else None
        self._pending: asyncio.Future[None] | None = None  # the last batch handed to the thread
        self._rows: list[AnswerRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._purged = 0.0
        self.on_accept: Callable[[], None] | None = None  # a feedback changed the counts

    # -- records

    def record(
        self, request_id: str, key: str, tier: str, task: str, model: str, arm: str, online: str
    ) -> None:
        """An answer was served: its record is written within ``FLUSH_S``."""
        self._rows.append(
            AnswerRecord(request_id, key, self.clock(), tier, task, model, arm, online)
        )
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_S, self._write_behind)

    def _take(self) -> tuple[list[AnswerRecord], float]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._rows = self._rows, []
        return rows, self.clock()  # every answer accounted so far is in ``rows``

    def _failed(self, rows: list[AnswerRecord]) -> None:
        self._rows = (rows + self._rows)[-100_000:]  # written when the state is back

    def flush(self) -> None:
        """Write the batch and move this writer's mark (a no-op batch still marks), in place
        (shutdown, the CLI; the event loop hands batches to the thread: ``_write_behind``)."""
        rows, through = self._take()
        try:
            self.state.record_answers(rows, self.writer, through, self.config().retention_s)
        except Exception:
            self._failed(rows)
            raise

    def _write_behind(self) -> asyncio.Future[None] | None:
        """Hand the batch to the writer thread (in place without one); the future of it."""
        if self._pool is None or self.handle is None:
            with contextlib.suppress(StateUnavailable):
                self.flush()
            return None
        rows, through = self._take()
        handle, retention = self.handle, self.config().retention_s
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._pool, handle.record_answers, rows, self.writer, through, retention
        )

        def done(f: asyncio.Future[None]) -> None:
            if f.cancelled() or f.exception() is not None:
                self._failed(rows)

        future.add_done_callback(done)
        self._pending = future
        return future

    async def written(self) -> None:
        """Every answer accounted so far is written (or has failed to be: then kept)."""
        future = self._write_behind()
        if future is not None:
            with contextlib.suppress(Exception):
                await future

    def tick(self, now: float) -> None:
        """Each second: write (and mark), and now and then drop what the retention passed."""
        try:
            if self._pool is None:
                self.flush()
            else:
                self._write_behind()
            if now - self._purged >= PURGE_EVERY_S:
                self._purged = now
                before = now - self.config().retention_s
                if self._pool is not None and self.handle is not None:
                    # a large delete: on the writer's thread, never on the event loop
                    purge = asyncio.get_running_loop().run_in_executor(
                        self._pool, self.handle.purge_answers, before
                    )
                    purge.add_done_callback(_ignore_failure)
                else:
                    self.state.purge_answers(before)
        except StateUnavailable:
            pass  # kept; the next tick tries again

    def close(self) -> None:
        """Wait for the writer thread, then write what is left in place."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.flush()

    # -- feedback

    async def submit(self, key: str, body: Any) -> dict[str, Any]:
        """Feedback from the key ``key`` (its digest): stored, or an ``EdgeError``."""
        given = check_feedback(body)
        cfg = self.config()
        per_s = cfg.feedback_per_minute / 60.0
        wait = self.state.take_token(
            f"feedback:{key}", per_s, max(1.0, cfg.feedback_per_minute), self.clock()
        )
        if wait > 0:
            raise RateLimited(
                f"too many feedbacks from this key: at most {cfg.feedback_per_minute:g} a "
                "minute; retry later",
                code="rate_limit_exceeded",
                headers=[(b"retry-after", str(max(1, math.ceil(wait))).encode())],
            )
        answer = await self.find(given.request_id, key)
        if answer is None:
            # the same words for an id of another key and one that never existed
            raise NotFound(
                "request_id: no answer with this id from this key within the retention "
                f"period ({cfg.retention_days:g} days)",
                param="request_id",
                code="request_not_found",
            )
        replaced = self.state.put_feedback(
            FeedbackRow(
                given.request_id, key, self.clock(), given.score, given.label, given.comment, "api"
            ),
            answer,
            cfg.retention_s,
        )
        if self.on_accept is not None:
            self.on_accept()
        return {
            "object": "edge.feedback",
            "request_id": given.request_id,
            "score": given.score,
            "label": given.label,
            "replaced": replaced,
        }

    async def find(self, request_id: str, key: str) -> AnswerRecord | None:
        """The answer of ``key`` with that id, waiting out the batches of answers accounted
        before now (see the module docstring)."""
        await self.written()
        arrived = self.clock()
        since = arrived - self.config().retention_s
        while True:
            marked = self.state.answers_through(self.clock() - MARK_STALE_S)  # before the look
            found = self.state.find_answer(request_id, key, since)
            if found is not None:
                return found
            if marked >= arrived + MARK_SLACK_S or self.clock() >= arrived + MISS_WAIT_S:
                return None
            await asyncio.sleep(POLL_S)


def _ignore_failure(future: asyncio.Future[int]) -> None:
    """A purge that failed (the state was down) is tried again at the next one."""
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class Imported:
    accepted: int = 0
    replaced: int = 0
    unknown: int = 0
    invalid: list[str] | None = None


def import_lines(state: State, cfg: QualityConfig, lines: list[str], now: float) -> Imported:
    """``llm-edge feedback import``: each line a feedback body; its id must name an answer
    within the retention period (any key's: an operator's tool; the latest answer when
    several keys used the same client-chosen id)."""
    import orjson

    result = Imported(invalid=[])
    assert result.invalid is not None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            given = check_feedback(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            result.invalid.append(f"line {n}: not JSON: {exc}")
            continue
        except InvalidRequest as err:
            result.invalid.append(f"line {n}: {err.message}")
            continue
        answer = state.find_answer(given.request_id, None, now - cfg.retention_s)
        if answer is None:
            result.unknown += 1
            continue
        row = FeedbackRow(
            given.request_id, answer.key, now, given.score, given.label, given.comment, "import"
        )
        if state.put_feedback(row, answer, cfg.retention_s):
            result.replaced += 1
        result.accepted += 1
    return result
