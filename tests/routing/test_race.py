"""The race with fake upstreams: hedging, failover order, budgets, deadlines, cancellation.

Fakes follow a script per model; a step can hang until the attempt is closed,
which is how every await of the race is shown to be cancellation-safe. Soft
timeouts here are tens of milliseconds: assertions are about order and
about what was closed, never about exact times.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from edge.dialects.common import ChatInfo
from edge.dialects.core import stream_for
from edge.dialects.openai import DIALECT as openai_dialect
from edge.errors import EdgeError, PoolSaturated, UpstreamError, UpstreamStatus, UpstreamTimeout
from edge.policy import Model, Provider, Secret
from edge.routing.breaker import Admit, BreakerConfig, Breakers, State
from edge.routing.race import (
    Attempt,
    Call,
    HedgeBudget,
    HedgeBudgets,
    Race,
    Shared,
    Timing,
    retry_after_s,
)
from edge.upstream.connection import ResponseHead, UpstreamClosed

PROVIDER = Provider("p", "openai", "http://127.0.0.1:1/v1", "", Secret("k"))
HANG = "hang"


def model(name: str, window: int = 100_000, provider: str = "p") -> Model:
    return Model(name, provider, 1.0, 1.0, 1.0, 1.0, 0.99, window, 4096, 1024, (), name)


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def token(text: str) -> bytes:
    return sse({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]})


ROLE = sse({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
FINISH = sse(
    {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
)
USAGE = sse(
    {"id": "c", "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
)
DONE = b"data: [DONE]\n\n"
ANSWER = [ROLE, token("hi"), token("!"), FINISH, USAGE, DONE]


class Fake:
    """One scripted upstream: a status, then body steps (bytes, an exception, or HANG)."""

    def __init__(
        self,
        name: str,
        status: int = 200,
        body: list[Any] | None = None,
        hang_connect: bool = False,
        hang_head: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
        connect_error: EdgeError | None = None,
    ) -> None:
        self.name = name
        self.connect_error = connect_error
        self.status = status
        self.steps = list(ANSWER if body is None else body)
        self.hang_connect = hang_connect
        self.hang_head = hang_head
        self.headers = headers or []
        self.closed = False
        self.complete = False
        self.reached_hang = asyncio.Event()
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def _hang(self) -> None:
        self.reached_hang.set()
        await self._gone  # raises once closed, like a real aborted connection

    async def head(self) -> ResponseHead:
        if self.hang_head:
            await self._hang()
        return ResponseHead(self.status, [(b"x-request-id", self.name.encode()), *self.headers])

    async def read(self) -> bytes:
        if self.closed:
            raise UpstreamClosed("closed")
        if not self.steps:
            self.complete = True
            return b""
        step = self.steps.pop(0)
        if step is HANG:
            await self._hang()
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, asyncio.Event):  # a gate: wait for the test to open it
            self.reached_hang.set()
            opened: asyncio.Future[Any] = asyncio.ensure_future(step.wait())
            try:
                waits: list[asyncio.Future[Any]] = [opened, self._gone]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                opened.cancel()
            if self.closed:
                raise UpstreamClosed("closed by the gateway")
            return await self.read()
        assert isinstance(step, bytes)
        return step

    def close(self) -> None:
        self.closed = True
        if not self._gone.done():
            self._gone.set_exception(UpstreamClosed("closed by the gateway"))
            self._gone.exception()


class Events:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.hedges: list[str] = []
        self.wasted: list[tuple[str, int, int]] = []
        self.censored: list[tuple[str, float]] = []
        self.rescues: list[str] = []

    def attempt(self, provider: str, model: str, outcome: str) -> None:
        self.attempts.append((model, outcome))

    def hedge(self, tier: str, outcome: str) -> None:
        self.hedges.append(outcome)

    def waste(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
        self.wasted.append((model, input_tokens, output_tokens))

    def censored_ttft(self, model: str, seconds: float, now: float) -> None:
        self.censored.append((model, seconds))

    def rescue(self, tier: str, outcome: str) -> None:
        self.rescues.append(outcome)


class World:
    """Models, their scripted upstreams, and a race factory."""

    def __init__(
        self,
        fakes: list[Fake],
        windows: dict[str, int] | None = None,
        budget: HedgeBudget | None = None,
        breaker: BreakerConfig | None = None,
        providers: dict[str, str] | None = None,
    ) -> None:
        windows = windows or {}
        providers = providers or {}
        self.scripts: dict[str, list[Fake]] = {}
        for f in fakes:  # a name given twice: its second Fake serves the second attempt
            self.scripts.setdefault(f.name, []).append(f)
        self.fakes = {name: queue[0] for name, queue in self.scripts.items()}
        self.models = [
            model(name, windows.get(name, 100_000), providers.get(name, "p"))
            for name in self.scripts
        ]
        self.events = Events()
        self.breakers = Breakers(
            [m.name for m in self.models], breaker or BreakerConfig(), rng=random.Random(0)
        )
        self.shared = Shared(self.breakers, HedgeBudgets(), self.events)
        self.shared.budgets.seat("L1", budget or HedgeBudget(1.0, 10))
        self.connected: list[tuple[str, float]] = []
        self.connecting = asyncio.Event()

    def prepare(self, m: Model) -> Call:
        return Call(
            m,
            PROVIDER,
            b"/",
            [],
            b"{}",
            openai_dialect,
            stream_for(openai_dialect, openai_dialect, ChatInfo("m", True, True)),
        )

    async def connect(self, call: Call, idle: float) -> Fake:
        queue = self.scripts[call.model.name]
        fake = queue.pop(0) if len(queue) > 1 else queue[0]
        self.connected.append((fake.name, self.shared.clock()))
        if fake.connect_error is not None:
            raise fake.connect_error
        if fake.hang_connect:
            self.connecting.set()
            await fake._hang()
        return fake

    def race(self, timing: Timing, order: list[str] | None = None) -> Race:
        by_name = {m.name: m for m in self.models}
        candidates = [by_name[n] for n in order] if order else list(self.models)
        return Race(
            self.shared,
            candidates,
            self.prepare,
            self.connect,
            timing,
            tier="L1",
            input_tokens=7,
            started=self.shared.clock(),
        )

    def order(self) -> list[str]:
        return [name for name, _ in self.connected]


def timing(
    soft: float = 0.05,
    first_token: float = 5.0,
    total: float = 10.0,
    attempts: int = 3,
    hedging: bool = True,
) -> Timing:
    return Timing(soft, first_token, 5.0, total, attempts, hedging)


async def finish(race: Race, winner: Attempt) -> bytes:
    out = [winner.take_held()]
    while not winner.ended:
        out.append(await winner.step())
    race.finished(winner)
    return b"".join(out)


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def no_tasks_left() -> bool:
    current = asyncio.current_task()
    return all(t is current or t.done() for t in asyncio.all_tasks())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


# -- the race


def test_a_fast_primary_wins_alone() -> None:
    async def main() -> None:
        w = World([Fake("a"), Fake("b")])
        race = w.race(timing())
        winner = await race.run()
        body = await finish(race, winner)
        assert winner.call.model.name == "a" and not race.hedged and w.order() == ["a"]
        assert b"[DONE]" in body and winner.state.usage == {
            "prompt_tokens": 3,
            "completion_tokens": 2,
        }
        assert w.events.attempts == [("a", "ok")] and w.events.hedges == []

    run(main)


def test_hedge_fires_at_the_soft_timeout_and_the_first_token_wins() -> None:
    async def main() -> None:
        w = World([Fake("a", hang_head=True), Fake("b")])
        race = w.race(timing(soft=0.05))
        winner = await race.run()
        assert winner.call.model.name == "b" and winner.kind == "hedge" and race.hedged
        (_, t_a), (_, t_b) = w.connected
        assert t_b - t_a >= 0.05  # not before the soft timeout
        assert w.fakes["a"].closed  # the loser's connection is closed at once
        await settle()
        assert no_tasks_left()
        await finish(race, winner)
        assert w.events.hedges == ["won"]
        assert ("a", "lost") in w.events.attempts and ("b", "ok") in w.events.attempts
        assert w.events.censored and w.events.censored[0][0] == "a"  # its wait is remembered
        # no answer head came: the provider never took the request, nothing is billed
        assert w.events.wasted == [] and [c.kind for c in race.charges] == ["answer"]

    run(main)


def test_a_primary_that_answers_after_the_hedge_started_wins_and_the_hedge_is_cancelled() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        a = Fake("a", body=[ROLE, gate, token("late"), FINISH, USAGE, DONE])
        b = Fake("b", hang_head=True)
        w = World([a, b])
        race = w.race(timing(soft=0.03))
        task = asyncio.ensure_future(race.run())
        await b.reached_hang.wait()  # the hedge is in flight
        gate.set()  # now the primary's first token arrives
        winner = await task
        assert winner.call.model.name == "a" and race.hedged
        assert b.closed and w.events.hedges == ["lost"]
        assert ("b", "lost") in w.events.attempts

    run(main)


def test_no_hedge_beyond_the_budget() -> None:
    async def main() -> None:
        a = Fake("a", body=[ROLE, HANG])
        w = World([a, Fake("b")], budget=HedgeBudget(0.0, 0))
        race = w.race(timing(soft=0.02, first_token=0.15))
        winner = await race.run()
        # no hedge: b only ran as the failover after a's first-token deadline
        assert w.order() == ["a", "b"] and winner.kind == "failover" and not race.hedged
        assert w.events.hedges == ["skipped_budget"]
        assert ("a", "timeout") in w.events.attempts

    run(main)


def test_the_hedge_budget_is_a_share_of_requests_over_a_sliding_minute() -> None:
    budget = HedgeBudget(0.1, 1)
    now = 1000.0
    for _ in range(30):
        budget.note_request(now)
    assert [budget.try_spend(now) for _ in range(4)] == [True, True, True, False]
    assert not budget.try_spend(now + 59)  # the same minute
    assert budget.try_spend(now + 61)  # the old second slid out: only the floor of 1 is left
    assert not budget.try_spend(now + 61)


def test_failover_is_immediate_and_in_decision_order() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("a", status=503),
                Fake("b", status=429, headers=[(b"retry-after", b"30")]),
                Fake("c"),
            ]
        )
        race = w.race(timing(soft=5.0))
        winner = await race.run()
        assert w.order() == ["a", "b", "c"] and winner.call.model.name == "c"
        assert w.connected[-1][1] - w.connected[0][1] < 1.0  # nobody waited for a soft timeout
        assert not race.hedged
        now = w.shared.clock()
        assert w.breakers["b"].admit(now) is Admit.DENY  # Retry-After: avoided for 30 s
        assert w.breakers["a"].admit(now) is Admit.PASS  # one 503 does not trip a breaker
        assert w.events.attempts[:2] == [("a", "error"), ("b", "rate_limited")]

    run(main)


def test_a_saturated_pool_fails_over_and_is_no_verdict_on_the_provider() -> None:
    async def main() -> None:
        w = World(
            [Fake("a", connect_error=PoolSaturated("all connections busy")), Fake("b")],
            breaker=BreakerConfig(failures=1),
        )
        winner = await w.race(timing(soft=5.0)).run()
        assert w.order() == ["a", "b"] and winner.call.model.name == "b"
        assert w.events.attempts[0] == ("a", "saturated")
        assert w.breakers["a"].state is State.CLOSED  # one provider failure would have tripped it
        assert w.breakers["a"].admit(w.shared.clock()) is Admit.PASS

    run(main)


# -- diversity: a hedge or failover leaves the providers in flight or failed


def test_a_hedge_goes_to_another_provider_than_the_slow_one() -> None:
    async def main() -> None:
        w = World(
            [Fake("oa-1", hang_head=True), Fake("oa-2"), Fake("an-1")],
            providers={"oa-1": "openai", "oa-2": "openai", "an-1": "anthropic"},
        )
        race = w.race(timing(soft=0.02))
        winner = await race.run()
        assert race.hedged and w.order() == ["oa-1", "an-1"]
        assert winner.call.model.name == "an-1"

    run(main)


def test_a_failover_goes_to_another_provider_than_the_failed_one() -> None:
    async def main() -> None:
        w = World(
            [Fake("oa-1", status=503), Fake("oa-2", status=503), Fake("an-1", status=500)],
            providers={"oa-1": "openai", "oa-2": "openai", "an-1": "anthropic"},
        )
        race = w.race(timing(soft=5.0))
        with pytest.raises(UpstreamStatus):
            await race.run()
        # another provider first; once every provider failed, the decision's order again
        assert w.order() == ["oa-1", "an-1", "oa-2"]

    run(main)


def test_with_no_other_provider_the_decision_order_holds() -> None:
    async def main() -> None:
        w = World(
            [Fake("oa-1", status=503), Fake("oa-2"), Fake("oa-3")],
            providers={"oa-1": "openai", "oa-2": "openai", "oa-3": "openai"},
        )
        winner = await w.race(timing(soft=5.0)).run()
        assert w.order() == ["oa-1", "oa-2"] and winner.call.model.name == "oa-2"

    run(main)


def test_another_provider_whose_breaker_is_open_is_passed_over() -> None:
    async def main() -> None:
        w = World(
            [Fake("oa-1", status=503), Fake("an-1"), Fake("oa-2"), Fake("an-2")],
            providers={
                "oa-1": "openai",
                "oa-2": "openai",
                "an-1": "anthropic",
                "an-2": "anthropic",
            },
            breaker=BreakerConfig(failures=1, cooldown_s=60, cooldown_max_s=60),
        )
        w.breakers["an-1"].failure(Admit.PASS, w.shared.clock())
        winner = await w.race(timing(soft=5.0)).run()
        assert w.order() == ["oa-1", "an-2"] and winner.call.model.name == "an-2"

    run(main)


CONTEXT_LENGTH = (
    b'{"error":{"message":"too long","type":"invalid_request_error",'
    b'"code":"context_length_exceeded"}}'
)


def test_context_length_moves_to_a_window_at_least_as_large_never_a_smaller_one() -> None:
    async def main() -> None:
        small = Fake("small", status=400, body=[CONTEXT_LENGTH])
        w = World(
            [small, Fake("smaller"), Fake("large")],
            windows={"small": 8000, "smaller": 4000, "large": 200_000},
        )
        race = w.race(timing())
        winner = await race.run()
        assert w.order() == ["small", "large"] and winner.call.model.name == "large"

    run(main)


def test_a_context_length_error_proves_one_declared_window_wrong_not_all() -> None:
    """The declared windows say nothing else is larger: the others as large are still tried
    (the provider just proved a declared window wrong), rather than ending the request."""

    async def main() -> None:
        w = World(
            [
                Fake("a", status=400, body=[CONTEXT_LENGTH]),
                Fake("b", status=400, body=[CONTEXT_LENGTH]),
                Fake("c"),
            ],
            windows={"a": 128_000, "b": 128_000, "c": 128_000},
        )
        winner = await w.race(timing(soft=5.0)).run()
        assert w.order() == ["a", "b", "c"] and winner.call.model.name == "c"
        assert w.breakers["a"].window.failure_times == deque()  # the request's fault, not a's

    run(main)


def test_context_length_everywhere_is_the_answer() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("a", status=400, body=[CONTEXT_LENGTH]),
                Fake("b", status=400, body=[CONTEXT_LENGTH]),
            ]
        )
        with pytest.raises(UpstreamStatus) as info:
            await w.race(timing(soft=5.0)).run()
        assert info.value.code == "context_length_exceeded" and w.order() == ["a", "b"]

    run(main)


def test_a_content_filter_rejection_is_the_answer() -> None:
    async def main() -> None:
        body = b'{"error":{"message":"rejected by the safety system","type":"invalid_request_error","code":"content_policy_violation"}}'
        w = World([Fake("a", status=400, body=[body]), Fake("b")])
        race = w.race(timing())
        with pytest.raises(UpstreamStatus) as err:
            await race.run()
        assert err.value.upstream_status == 400 and "safety system" in err.value.message
        assert w.order() == ["a"]
        assert not w.breakers["a"].window.failure_times  # a 400 is not the provider's failure

    run(main)


def test_the_last_failure_is_the_answer_when_every_candidate_fails() -> None:
    async def main() -> None:
        w = World([Fake("a", status=500), Fake("b", status=503, headers=[(b"retry-after", b"2")])])
        race = w.race(timing(attempts=2))
        with pytest.raises(UpstreamStatus) as err:
            await race.run()
        assert err.value.upstream_status == 503 and w.order() == ["a", "b"]

    run(main)


def test_when_candidates_run_out_the_retryable_failures_get_a_second_round() -> None:
    async def main() -> None:
        w = World([Fake("a", status=503), Fake("a"), Fake("b", status=500), Fake("c", status=401)])
        race = w.race(timing(attempts=4))
        winner = await race.run()
        # c's 401 is not retried (the same key would be refused again); a's 503 is
        assert w.order() == ["a", "b", "c", "a"] and winner.call.model.name == "a"

    run(main)


def test_attempts_are_bounded_per_request() -> None:
    async def main() -> None:
        w = World([Fake(n, status=500) for n in "abcde"])
        race = w.race(timing(attempts=3))
        with pytest.raises(UpstreamStatus):
            await race.run()
        assert w.order() == ["a", "b", "c"]

    run(main)


def test_a_stream_that_breaks_before_its_first_token_fails_over() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("cut", body=[ROLE, UpstreamClosed("reset")]),
                Fake("junk", body=[ROLE, b"data: {not json\n\n"]),
                Fake("ok"),
            ]
        )
        race = w.race(timing())
        winner = await race.run()
        assert w.order() == ["cut", "junk", "ok"] and winner.call.model.name == "ok"
        assert [o for _, o in w.events.attempts] == ["error", "error"]

    run(main)


def test_a_finished_answer_whose_connection_breaks_before_done_is_complete() -> None:
    async def main() -> None:
        w = World([Fake("a", body=[ROLE, token("x"), FINISH, USAGE, UpstreamClosed("gone")])])
        race = w.race(timing())
        winner = await race.run()
        body = await finish(race, winner)
        assert body.endswith(DONE) and winner.state.usage is not None

    run(main)


def test_the_first_token_deadline_fails_a_silent_attempt() -> None:
    async def main() -> None:
        w = World([Fake("a", hang_head=True), Fake("b")])
        race = w.race(timing(first_token=0.05, hedging=False))
        winner = await race.run()
        assert winner.call.model.name == "b" and w.fakes["a"].closed
        assert w.events.attempts[0] == ("a", "timeout")
        # a slow verdict: the rate rule sees it, the count rule does not (see test_tail)
        assert w.breakers["a"].window.totals(w.shared.clock()) == (1, 1)
        assert len(w.breakers["a"].window.failure_times) == 0

    run(main)


def test_a_late_lone_attempt_with_nothing_to_replace_it_keeps_its_chance() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        a = Fake("a", body=[ROLE, gate, *ANSWER[1:]])
        w = World([a])
        race = w.race(timing(first_token=0.03, hedging=False))
        task = asyncio.ensure_future(race.run())
        await a.reached_hang.wait()
        await asyncio.sleep(0.06)  # past its first-token deadline: no candidate to replace it
        assert not a.closed and not task.done()
        gate.set()
        winner = await task
        assert winner.call.model.name == "a" and w.order() == ["a"]

    run(main)


def test_a_failure_while_a_hedge_races_starts_no_third_attempt() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        a = Fake("a", body=[ROLE, gate, UpstreamClosed("reset")])
        b = Fake("b", body=[ROLE, HANG])
        # one hedge in the budget: b's own soft timeout cannot start c, only a failover could
        w = World([a, b, Fake("c")], budget=HedgeBudget(1.0, 1))
        race = w.race(timing(soft=0.02))
        task = asyncio.ensure_future(race.run())
        await b.reached_hang.wait()  # the hedge on b is racing
        gate.set()  # a fails: b is already the failover, c is not started
        await settle()
        assert w.order() == ["a", "b"] and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)


def test_the_total_deadline_ends_the_race() -> None:
    async def main() -> None:
        w = World([Fake("a", hang_head=True), Fake("b", hang_head=True)])
        race = w.race(timing(soft=0.01, total=0.1))
        with pytest.raises(UpstreamTimeout):
            await race.run()
        assert w.fakes["a"].closed and w.fakes["b"].closed
        await settle()
        assert no_tasks_left()

    run(main)


def test_open_breakers_are_skipped_and_half_open_ones_get_one_probe() -> None:
    async def main() -> None:
        w = World(
            [Fake("a"), Fake("b")], breaker=BreakerConfig(failures=1, cooldown_s=0.05, jitter=0)
        )
        now = w.shared.clock()
        w.breakers["a"].failure(Admit.PASS, now)
        assert w.breakers["a"].state is State.OPEN
        winner = await w.race(timing()).run()
        assert winner.call.model.name == "b" and w.order() == ["b"]
        await asyncio.sleep(0.06)  # the cool-down passes; the next race probes a
        race = w.race(timing())
        winner = await race.run()
        assert winner.call.model.name == "a" and winner.admit is Admit.PROBE
        other = w.race(timing())  # the probe slot is taken: this one goes to b
        assert (await other.run()).call.model.name == "b"
        await finish(race, winner)
        assert w.breakers["a"].probes_in_flight == 0 and w.breakers["a"].probe_successes == 1

    run(main)


def test_when_every_breaker_is_open_the_least_recently_failed_is_tried() -> None:
    async def main() -> None:
        w = World([Fake("a"), Fake("b")], breaker=BreakerConfig(failures=1, cooldown_s=60))
        now = w.shared.clock()
        w.breakers["b"].failure(Admit.PASS, now - 5)
        w.breakers["a"].failure(Admit.PASS, now - 1)
        winner = await w.race(timing()).run()
        assert winner.call.model.name == "b" and w.order() == ["b"]

    run(main)


def test_a_candidate_that_cannot_honour_the_request_is_skipped() -> None:
    async def main() -> None:
        w = World([Fake("a", status=500), Fake("b"), Fake("c")])
        prepare = w.prepare

        def picky(m: Model) -> Call:
            if m.name == "b":
                raise EdgeError("b cannot take this parameter")
            return prepare(m)

        w.prepare = picky  # type: ignore[method-assign]
        winner = await w.race(timing()).run()
        assert w.order() == ["a", "c"] and winner.call.model.name == "c"

    run(main)


# -- cancellation at every await


@pytest.mark.parametrize("where", ["connect", "head", "body", "hedge"])
def test_cancelling_the_request_at_any_await_closes_everything(where: str) -> None:
    async def main() -> None:
        a = Fake(
            "a",
            hang_connect=where == "connect",
            hang_head=where in ("head", "hedge"),
            body=[ROLE, HANG] if where == "body" else None,
        )
        b = Fake("b", hang_head=True)
        w = World([a, b], breaker=BreakerConfig(failures=1, cooldown_s=0.0, jitter=0))
        w.breakers["a"].failure(Admit.PASS, w.shared.clock())  # half-open next: a is a probe
        race = w.race(timing(soft=0.02 if where == "hedge" else 5.0))
        task = asyncio.ensure_future(race.run())
        await (
            b.reached_hang.wait()
            if where == "hedge"
            else (w.connecting.wait() if where == "connect" else a.reached_hang.wait())
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle()
        assert no_tasks_left()
        assert where == "connect" or a.closed
        assert b.closed or where != "hedge"
        assert w.breakers["a"].probes_in_flight == 0  # the probe slot came back
        if where == "hedge":
            assert w.events.hedges == ["cancelled"]

    run(main)


def test_cancelling_while_streaming_the_winner_closes_it() -> None:
    async def main() -> None:
        a = Fake("a", body=[ROLE, token("x"), HANG])
        w = World([a])
        race = w.race(timing())
        winner = await race.run()
        step = asyncio.ensure_future(winner.step())
        await a.reached_hang.wait()
        step.cancel()
        with pytest.raises(asyncio.CancelledError):
            await step
        race.abandoned(winner)
        assert a.closed and w.events.attempts == [("a", "cancelled")]
        # the client left, the answer was still being made for it: billed as its answer
        (charge,) = race.charges
        assert charge.kind == "answer" and charge.charged and charge.tokens.output >= 1

    run(main)


def test_the_total_deadline_fails_a_winner_that_stalls_mid_stream() -> None:
    async def main() -> None:
        a = Fake("a", body=[ROLE, token("x"), HANG])
        w = World([a])
        race = w.race(timing())
        winner = await race.run()
        asyncio.get_running_loop().call_later(0.02, winner.expire)
        with pytest.raises(UpstreamTimeout):
            while not winner.ended:
                await winner.step()

    run(main)


def test_retry_after_forms() -> None:
    def err(headers: list[tuple[bytes, bytes]]) -> UpstreamStatus:
        return UpstreamStatus(429, "slow down", headers=headers)

    assert retry_after_s(err([(b"retry-after", b"3")])) == 3.0
    assert retry_after_s(err([(b"retry-after-ms", b"250"), (b"retry-after", b"9")])) == 0.25
    assert retry_after_s(err([(b"retry-after", b"Wed, 21 Oct 2015 07:28:00 GMT")])) == 0.0
    assert retry_after_s(err([(b"retry-after", b"soon")])) == 0.0
    assert retry_after_s(err([])) == 0.0
    assert isinstance(UpstreamError("x"), EdgeError)
