"""The simulated OpenAI + Anthropic provider: one asyncio protocol, both dialects.

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses`` (stateless: every
``GET /v1/responses/{id}`` is a 404), ``POST /v1/responses/input_tokens``,
``POST /v1/embeddings`` (``embed``) and ``GET /v1/models`` (OpenAI);
``POST /v1/messages``, ``POST /v1/messages/count_tokens`` and ``GET /v1/models``
with an ``anthropic-version`` header (Anthropic); ``GET /sim/stats``,
``POST /sim/reset``, ``POST /sim/outage``, ``GET /healthz`` (simulator control).

Per request: frame it (``http1``), decode and validate it in its dialect
(``generate``), pick an outcome from the model's ``Behaviour`` (answer, error,
outage or fault), render it (``openai_wire`` / ``responses_wire`` / ``anthropic_wire``), turn it
into steps (``script``), and execute the steps with ``call_later`` timers.
Requests on one connection are answered in order; a closed connection stops
its response at once and is recorded as a disconnect with the bytes sent.

Billing (see ``recorder``): an accepted attempt's input split is decided with
the answer (``cache`` on the prompt's ``prefix`` points) and billed by the
write that carries the 200 head; each later write adds the output tokens it
carries. A write is made only while the transport is open, so a token is
billed exactly when it was handed to the connection.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable
from email.utils import formatdate
from types import ModuleType
from typing import Any, cast
from urllib.parse import parse_qs

import orjson

from edge.simulate import anthropic_wire, embed, openai_wire, prefix, responses_wire, script
from edge.simulate.behaviour import Behaviour, Profile, ProfileError, parse_override
from edge.simulate.cache import PromptCache
from edge.simulate.generate import (
    Answer,
    InvalidRequest,
    answer,
    input_tokens,
    read_anthropic,
    read_responses,
)
from edge.simulate.http1 import BadRequest, Request, RequestReader, response_head
from edge.simulate.recorder import Attempt, Recorder

JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"
CACHE_STEP = 128  # OpenAI caches prefixes in 128-token increments


class Simulator:
    """State shared by every connection: profile, records, counters, randomness."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.recorder = Recorder()
        self.cache = PromptCache()
        self.rng = random.Random(profile.seed)
        self._errors: dict[str, int] = {}
        self._faults: dict[str, int] = {}
        self._overrides: dict[bytes, dict[str, str]] = {}
        self.outages: dict[str, tuple[float, int]] = {}  # model -> (until, status; 0 = reset)
        self.quotas: dict[str, list[float]] = {}  # model -> [window start, requests, tokens]
        self.quota_refused = 0
        self._date = b""
        self._date_at = 0.0
        self.created = int(time.time())

    def reset(self) -> None:
        self.recorder.reset()
        self.cache.clear()
        self.rng = random.Random(self.profile.seed)
        self._errors.clear()
        self._faults.clear()
        self.outages.clear()
        self.quotas.clear()
        self.quota_refused = 0

    def date(self) -> bytes:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date_at = now
            self._date = formatdate(now, usegmt=True).encode()
        return self._date

    def behaviour(self, model: str, header: bytes | None) -> Behaviour | None:
        beh = self.profile.behaviour(model)
        if beh is None or not header:
            return beh
        values = self._overrides.get(header)
        if values is None:
            values = parse_override(header.decode("latin-1"))
            if len(self._overrides) > 1024:
                self._overrides.clear()
            self._overrides[header] = values
        return beh.with_overrides(values)

    def outcome(self, model: str, beh: Behaviour) -> str:
        """Pick what happens to this attempt: ok, outage, error, or a fault name."""
        if beh.outage_s and self.recorder.now() < beh.outage_s:
            return "outage"
        outage = self.outages.get(model)
        if outage is not None and self.recorder.now() < outage[0]:
            return "outage"
        if beh.error_status and self._fires(self._errors, model, beh.error_count, beh.error_rate):
            return "error"
        if beh.fault != "none" and self._fires(
            self._faults, model, beh.fault_count, beh.fault_rate
        ):
            return beh.fault
        return "ok"

    def quota(self, model: str, beh: Behaviour, tokens: int) -> tuple[bool, Quota | None]:
        """Take one request of ``tokens`` from the model's window: whether it fits, and the
        figures its answer tells (None: the model has no quota)."""
        if not beh.quota_requests and not beh.quota_tokens:
            return True, None
        now = self.recorder.now()
        window = beh.quota_window_s
        start = now - now % window
        used = self.quotas.get(model)
        if used is None or used[0] != start:
            used = self.quotas[model] = [start, 0.0, 0.0]
        fits = (not beh.quota_requests or used[1] < beh.quota_requests) and (
            not beh.quota_tokens or used[2] + tokens <= beh.quota_tokens
        )
        if fits:
            used[1] += 1
            used[2] += tokens
        else:
            self.quota_refused += 1
        return fits, Quota(
            beh.quota_requests,
            max(0, beh.quota_requests - int(used[1])),
            beh.quota_tokens,
            max(0, beh.quota_tokens - int(used[2])),
            start + window - now,
        )

    def _fires(self, counts: dict[str, int], model: str, limit: int, rate: float) -> bool:
        if limit:
            done = counts.get(model, 0)
            if done >= limit:
                return False
            counts[model] = done + 1
            return True
        return rate >= 1.0 or self.rng.random() < rate


class Quota:
    """A model's quota figures for one answer's headers."""

    __slots__ = ("requests", "requests_left", "reset_in_s", "tokens", "tokens_left")

    def __init__(
        self, requests: int, requests_left: int, tokens: int, tokens_left: int, reset_in_s: float
    ) -> None:
        self.requests, self.requests_left = requests, requests_left
        self.tokens, self.tokens_left = tokens, tokens_left
        self.reset_in_s = reset_in_s

    def headers(self, anthropic: bool) -> list[tuple[bytes, bytes]]:
        out = []
        if anthropic:
            at = time.time() + self.reset_in_s
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
            reset = b"%s.%03dZ" % (stamp.encode(), int(at % 1 * 1000))
            for kind, limit, left in (
                (b"requests", self.requests, self.requests_left),
                (b"tokens", self.tokens, self.tokens_left),
            ):
                if limit:
                    out += [
                        (b"anthropic-ratelimit-" + kind + b"-limit", b"%d" % limit),
                        (b"anthropic-ratelimit-" + kind + b"-remaining", b"%d" % left),
                        (b"anthropic-ratelimit-" + kind + b"-reset", reset),
                    ]
            return out
        ms = max(1, int(self.reset_in_s * 1000 + 0.5))
        duration = b"%dms" % ms if ms < 1000 else b"%gs" % round(ms / 1000, 3)
        for kind, limit, left in (
            (b"requests", self.requests, self.requests_left),
            (b"tokens", self.tokens, self.tokens_left),
        ):
            if limit:
                out += [
                    (b"x-ratelimit-limit-" + kind, b"%d" % limit),
                    (b"x-ratelimit-remaining-" + kind, b"%d" % left),
                    (b"x-ratelimit-reset-" + kind, duration),
                ]
        return out


def _prefill_refusal(prefill: str, beh: Behaviour, dialect: ModuleType) -> str:
    """The 400 a final assistant message gets ("" when it is taken), worded as Anthropic's."""
    if not prefill:
        return ""
    if beh.prefill == "refuse":
        return (
            "This model does not support assistant message prefill. The conversation must "
            "end with a user message."
        )
    if dialect is anthropic_wire and prefill != prefill.rstrip():
        return "messages: final assistant content cannot end with trailing whitespace"
    return ""


def _retry_after(seconds: float) -> bytes:
    return (b"%d" % seconds) if seconds == int(seconds) else repr(seconds).encode()


class SimProtocol(asyncio.Protocol):
    __slots__ = (
        "_attempt",
        "_closed",
        "_input",
        "_keep_alive",
        "_loop",
        "_paused",
        "_queue",
        "_reader",
        "_sim",
        "_step",
        "_steps",
        "_timer",
        "_transport",
    )

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._reader = RequestReader()
        self._queue: list[Request] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._steps: list[script.Step] | None = None
        self._step = 0
        self._attempt: Attempt | None = None
        self._input = (0, 0, 0)  # the attempt's input: uncached, cache read, cache write
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._closed = False
        self._keep_alive = True

    # -- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._queue.extend(self._reader.feed(data))
        except BadRequest as exc:
            self._queue.clear()
            if self._steps is None:
                dialect = openai_wire
                self._send(
                    exc.status,
                    dialect.error(exc.status, exc.message),
                    JSON,
                    dialect,
                    keep_alive=False,
                )
            else:
                self._keep_alive = False
            return
        if self._steps is None:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rec = self._attempt
        if rec is not None and self._steps is not None:
            rec.disconnected = True
            rec.ended_at = self._sim.recorder.now()
        self._steps = None
        self._queue.clear()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._steps is not None and self._timer is None:
            self._run()

    # -- request handling

    def _next(self) -> None:
        while self._queue and self._steps is None and not self._closed:
            req = self._queue.pop(0)
            self._keep_alive = req.keep_alive
            self._handle(req)

    def _handle(self, req: Request) -> None:
        path, method = req.path, req.method
        if path == b"/v1/chat/completions":
            if method != b"POST":
                return self._not_allowed(openai_wire)
            return self._complete(req, openai_wire)
        if path == b"/v1/responses":
            if method != b"POST":
                return self._not_allowed(openai_wire)
            return self._complete(req, responses_wire)
        if path == b"/v1/responses/input_tokens":
            if method != b"POST":
                return self._not_allowed(openai_wire)
            return self._input_tokens(req)
        if path.startswith(b"/v1/responses/"):
            # it keeps no responses: any id is unknown (the API's 404 for one)
            if not self._authorized(req, openai_wire):
                return None
            rid = path[len(b"/v1/responses/") :].split(b"/", 1)[0].decode("latin-1")
            message = f"Response with id '{rid}' not found."
            body = {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            return self._send(404, orjson.dumps({"error": body}), JSON, openai_wire)
        if path == b"/v1/embeddings":
            if method != b"POST":
                return self._not_allowed(openai_wire)
            return self._embeddings(req)
        if path == b"/v1/messages":
            if method != b"POST":
                return self._not_allowed(anthropic_wire)
            return self._complete(req, anthropic_wire)
        if path == b"/v1/messages/count_tokens":
            if method != b"POST":
                return self._not_allowed(anthropic_wire)
            return self._count_tokens(req)
        if path == b"/v1/models":
            dialect = anthropic_wire if b"anthropic-version" in req.headers else openai_wire
            if method != b"GET":
                return self._not_allowed(dialect)
            if not self._authorized(req, dialect):
                return None
            return self._send(
                200,
                dialect.models(self._sim.profile.model_names(), self._sim.created),
                JSON,
                dialect,
            )
        if path == b"/sim/stats" and method == b"GET":
            q = parse_qs(req.query.decode("latin-1"))
            model = q.get("model", [None])[0]
            since = int(q.get("since", ["0"])[0] or 0)
            return self._send(200, self._sim.recorder.stats(model, since), JSON, None)
        if path == b"/sim/outage" and method == b"POST":
            q = parse_qs(req.query.decode("latin-1"))
            try:
                name = q["model"][0]
                seconds = float(q.get("seconds", ["0"])[0])
                status = int(q.get("status", ["503"])[0])
            except (KeyError, ValueError):
                return self._send(
                    400, b'{"error":"expected ?model=M&seconds=S[&status=N]"}', JSON, None
                )
            self._sim.outages[name] = (self._sim.recorder.now() + seconds, status)
            return self._send(200, b'{"outage":true}', JSON, None)
        if path == b"/sim/reset" and method == b"POST":
            self._sim.reset()
            return self._send(200, b'{"reset":true}', JSON, None)
        if path == b"/healthz" and method == b"GET":
            return self._send(200, b'{"status":"ok"}', JSON, None)
        dialect = (
            anthropic_wire
            if path.startswith(b"/v1/messages") or b"anthropic-version" in req.headers
            else openai_wire
        )
        message = f"Unknown request URL: {req.method.decode('latin-1')} {path.decode('latin-1')}."
        return self._send(404, dialect.error(404, message), JSON, dialect)

    def _not_allowed(self, dialect: ModuleType) -> None:
        self._send(405, dialect.error(405, "Method not allowed."), JSON, dialect)

    def _authorized(self, req: Request, dialect: ModuleType) -> bool:
        key = req.headers.get(b"x-api-key") if dialect is anthropic_wire else None
        if key is None:
            auth = req.headers.get(b"authorization", b"")
            key = auth[7:] if auth[:7].lower() == b"bearer " else None
        want = self._sim.profile.api_key
        if key and (not want or key.decode("latin-1") == want):
            return True
        shown = key.decode("latin-1") if key else ""
        # OpenAI quotes the refused key, masked: its first characters and its last four
        message = (
            "invalid x-api-key"
            if dialect is anthropic_wire
            else f"Incorrect API key provided: {shown[:3]}*****{shown[-4:]}. You can find your "
            "API key at https://platform.openai.com/account/api-keys."
        )
        if not key:
            message = (
                "x-api-key header is required"
                if dialect is anthropic_wire
                else "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth."
            )
        self._send(401, dialect.error(401, message), JSON, dialect)
        return False

    def _decode(self, req: Request, dialect: ModuleType) -> Any:
        ctype = req.headers.get(b"content-type", b"")
        if not ctype.startswith(b"application/json"):
            self._send(
                400, dialect.error(400, "Content-Type must be application/json."), JSON, dialect
            )
            return None
        try:
            return orjson.loads(req.body)
        except orjson.JSONDecodeError as exc:
            self._send(
                400,
                dialect.error(400, f"We could not parse the JSON body of your request: {exc}"),
                JSON,
                dialect,
            )
            return None

    def _count_tokens(self, req: Request) -> None:
        dialect = anthropic_wire
        if not self._authorized(req, dialect):
            return
        body = self._decode(req, dialect)
        if body is None:
            return
        try:
            ask = read_anthropic(body, count_only=True)
        except InvalidRequest as exc:
            self._send(400, dialect.error(400, exc.message, param=exc.param), JSON, dialect)
            return
        self._send(200, b'{"input_tokens":%d}' % input_tokens(ask), JSON, dialect)

    def _input_tokens(self, req: Request) -> None:
        dialect = openai_wire
        if not self._authorized(req, dialect):
            return
        body = self._decode(req, dialect)
        if body is None:
            return
        try:
            ask = read_responses(body)
        except InvalidRequest as exc:
            self._send(400, dialect.error(400, exc.message, param=exc.param), JSON, dialect)
            return
        payload = b'{"object":"response.input_tokens","input_tokens":%d}' % input_tokens(ask)
        self._send(200, payload, JSON, dialect)

    def _embeddings(self, req: Request) -> None:
        sim, dialect = self._sim, openai_wire
        begun = self._begin(req, dialect, embed.read)
        if begun is None:
            return
        ask, _, beh = begun
        rid = dialect.new_ids()[1]
        rec = self._record(req, dialect, ask.model, False, rid)
        outcome = sim.outcome(ask.model, beh)
        if self._refused(rec, outcome, beh, dialect, ask.model, rid):
            return
        payload, tokens = embed.answer(ask)
        self._input = (tokens, 0, 0)
        rec.status = 200
        head = self._head(200, JSON, dialect, rid, len(payload))
        steps = script.body_steps(
            head, payload, delay_s=beh.ttft_s(sim.rng), tokens=0, fault="none", stall_s=0.0
        )
        self._start(steps)

    def _begin(
        self, req: Request, dialect: ModuleType, read: Callable[[Any], Any]
    ) -> tuple[Any, Any, Behaviour] | None:
        """Authorize, decode, read (400 naming the field) and find the model's behaviour
        (404): the request, its body and behaviour, or None when it was answered."""
        if not self._authorized(req, dialect):
            return None
        body = self._decode(req, dialect)
        if body is None:
            return None
        try:
            ask = read(body)
            beh = self._sim.behaviour(ask.model, req.headers.get(b"x-sim"))
        except (InvalidRequest, ProfileError) as exc:
            param = getattr(exc, "param", None)
            self._send(400, dialect.error(400, str(exc), param=param), JSON, dialect)
            return None
        if beh is None:
            self._send(
                404,
                dialect.error(404, f"model: {ask.model}", code="model_not_found"),
                JSON,
                dialect,
            )
            return None
        return ask, body, beh

    def _record(
        self, req: Request, dialect: ModuleType, model: str, stream: bool, rid: str
    ) -> Attempt:
        rec = self._sim.recorder.add(
            dialect.NAME,
            model,
            stream,
            rid,
            req.headers.get(b"x-request-id", b"").decode("latin-1"),
            req.headers.get(b"x-stainless-retry-count", b"").decode("latin-1"),
        )
        self._attempt = rec
        return rec

    def _refused(
        self,
        rec: Attempt,
        outcome: str,
        beh: Behaviour,
        dialect: ModuleType,
        model: str,
        rid: str,
    ) -> bool:
        """An outage or error outcome answered (its status, Retry-After, or a reset): True."""
        rec.outcome = outcome
        if outcome not in ("outage", "error"):
            return False
        sim = self._sim
        status = beh.outage_status if outcome == "outage" else beh.error_status
        live = sim.outages.get(model)
        if outcome == "outage" and live is not None and sim.recorder.now() < live[0]:
            status = live[1]
        if outcome == "outage" and status == 0:
            rec.outcome = "reset"
            self._start(script.fault_steps("reset") or [])
            return True
        rec.status = status
        code = (beh.error_code or None) if outcome == "error" else None
        extra: list[tuple[bytes, bytes]] = []
        if beh.retry_after_s >= 0 and status in (429, 503, 529):
            extra.append((b"retry-after", _retry_after(beh.retry_after_s)))
        err = dialect.error(status, code=code, request_id=rid)
        self._send(status, err, JSON, dialect, rid=rid, extra=extra)
        return True

    def _complete(self, req: Request, dialect: ModuleType) -> None:
        sim = self._sim
        begun = self._begin(req, dialect, dialect.read)
        if begun is None:
            return
        ask, body, beh = begun
        try:
            points = prefix.anthropic(body) if dialect is anthropic_wire else []
        except InvalidRequest as exc:
            self._send(400, dialect.error(400, exc.message, param=exc.param), JSON, dialect)
            return
        cid, rid = dialect.new_ids()
        rec = self._record(req, dialect, ask.model, ask.stream, rid)
        refusal = _prefill_refusal(ask.prefill, beh, dialect)
        if refusal:
            rec.outcome, rec.status = "invalid", 400
            self._send(400, dialect.error(400, refusal), JSON, dialect, rid=rid)
            return
        fits, quota = sim.quota(ask.model, beh, input_tokens(ask) + beh.output_tokens)
        limits = quota.headers(dialect is anthropic_wire) if quota is not None else []
        if not fits:
            assert quota is not None
            rec.outcome, rec.status = "quota", 429
            wait = b"%d" % max(1, int(quota.reset_in_s + 0.999))
            err = dialect.error(429, request_id=rid)
            self._send(429, err, JSON, dialect, rid=rid, extra=[(b"retry-after", wait), *limits])
            return
        outcome = sim.outcome(ask.model, beh)
        if self._refused(rec, outcome, beh, dialect, ask.model, rid):
            return
        early = script.fault_steps(outcome)
        if early is not None:
            self._start(early)
            return
        try:
            ans: Answer = answer(
                ask,
                beh.output_tokens,
                beh.tool_call,
                beh.miss_refusal_rate,
                beh.break_json_rate,
                beh.prefill,
            )
        except InvalidRequest as exc:
            rec.outcome, rec.status = "invalid", 400
            self._send(
                400, dialect.error(400, exc.message, param=exc.param), JSON, dialect, rid=rid
            )
            return
        if ans.input_tokens > beh.context_window:
            rec.outcome, rec.status = "error", 400
            err = dialect.error(400, code="context_length_exceeded", request_id=rid)
            self._send(400, err, JSON, dialect, rid=rid)
            return
        # the prompt is processed (and cached) now: the 200 head goes out with the next write
        min_tokens = beh.cache_min(ask.model)
        if dialect is not anthropic_wire and ans.input_tokens >= min_tokens:
            walk = prefix.responses if dialect is responses_wire else prefix.openai
            points = walk(body, first=min_tokens, step=CACHE_STEP, ttl_s=beh.cache_ttl_s)
        if points:
            split = sim.cache.use(
                points, time.monotonic(), min_tokens=min_tokens, writes=dialect is anthropic_wire
            )
            ans.cache_read, ans.cache_write = split.read, split.write
        self._input = (ans.uncached_input, ans.cache_read, ans.cache_write)
        rec.status = 200
        ttft = beh.ttft_s(sim.rng)
        gap = beh.gap_ms / 1000.0
        fault = outcome if outcome != "ok" else "none"
        if ask.stream:
            head = self._head(200, SSE, dialect, rid, None, limits)
            parts = dialect.stream(ans, ask, ask.model, cid, sim.created)
            steps = script.stream_steps(
                head,
                parts,
                ttft_s=ttft,
                gap_s=gap,
                fault=fault,
                fault_after=beh.fault_after_tokens,
                stall_s=beh.stall_s,
                malformed=dialect.malformed(cid),
            )
        else:
            if dialect is responses_wire:  # its answer echoes the request's settings
                payload = responses_wire.completion(ans, ask, ask.model, cid, sim.created)
            else:
                payload = dialect.completion(ans, ask.model, cid, sim.created)
            head = self._head(200, JSON, dialect, rid, len(payload), limits)
            pieces = max(len(ans.tokens), ans.output_tokens)
            steps = script.body_steps(
                head,
                payload,
                delay_s=ttft + gap * (pieces - 1),
                tokens=ans.output_tokens,
                fault=fault,
                stall_s=beh.stall_s,
            )
        self._start(steps)

    # -- responses

    def _head(
        self,
        status: int,
        ctype: bytes,
        dialect: ModuleType | None,
        rid: str,
        length: int | None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> bytes:
        headers = [(b"date", self._sim.date()), (b"content-type", ctype)]
        if length is None:
            headers += [(b"transfer-encoding", b"chunked"), (b"cache-control", b"no-cache")]
        else:
            headers.append((b"content-length", b"%d" % length))
        if dialect is not None:
            headers.append((dialect.REQUEST_ID_HEADER, rid.encode()))
            if dialect is not anthropic_wire:
                headers += [(b"openai-version", b"2020-10-01"), (b"openai-processing-ms", b"1")]
        if extra:
            headers += extra
        if not self._keep_alive:
            headers.append((b"connection", b"close"))
        return response_head(status, headers)

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: bytes,
        dialect: ModuleType | None,
        *,
        rid: str = "",
        keep_alive: bool = True,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if not keep_alive:
            self._keep_alive = False
        if dialect is not None and not rid:
            rid = dialect.new_ids()[1]
        head = self._head(status, ctype, dialect, rid, len(body), extra)
        self._start([(script.WRITE, head + body, 0, 0), (script.DONE, b"", 0, 0)])

    def _start(self, steps: list[script.Step]) -> None:
        self._steps = steps
        self._step = 0
        self._run()

    def _wake(self) -> None:
        self._timer = None
        self._run()

    def _run(self) -> None:
        steps = self._steps
        transport = self._transport
        rec = self._attempt
        while steps is not None and transport is not None and not self._closed:
            if self._paused:
                return
            if transport.is_closing():
                # closed under us (the peer left, connection_lost is on its way and ends
                # the record): a write now would be dropped, so it must not be billed
                return
            op, payload, tokens, marks = steps[self._step]
            self._step += 1
            if op == script.WRITE:
                assert isinstance(payload, bytes)
                transport.write(payload)
                if rec is not None:
                    rec.wrote(len(payload), tokens, marks, self._input)
            elif op == script.SLEEP:
                assert isinstance(payload, float)
                self._timer = self._loop.call_later(payload, self._wake)
                return
            elif op == script.DONE:
                self._end(completed=True)
                if not self._keep_alive:
                    transport.close()
                    return
                self._next()
                return
            elif op == script.HANG:
                return
            elif op == script.CLOSE:
                self._end(completed=False)
                transport.close()
                return
            else:  # RESET: linger 0 makes close() send RST instead of FIN
                self._end(completed=False)
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return

    def _end(self, completed: bool) -> None:
        rec = self._attempt
        if rec is not None:
            rec.completed = completed
            rec.ended_at = self._sim.recorder.now()
        self._attempt = None
        self._steps = None


async def start(
    host: str,
    port: int,
    profile: Profile,
    *,
    reuse_port: bool = False,
    tls: ssl.SSLContext | None = None,
) -> tuple[asyncio.Server, Simulator]:
    """Start listening (over TLS when ``tls`` is given); returns the server and its state."""
    sim = Simulator(profile)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SimProtocol(sim), host, port, reuse_port=reuse_port or None, backlog=4096, ssl=tls
    )
    return server, sim
