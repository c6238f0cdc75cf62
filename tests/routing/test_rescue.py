"""Rescue after the first byte, with scripted fallbacks (no sockets).

A primary's stream breaks after "Hello world" reached the client; a scripted
fallback then continues it, starts it over, refuses the prefill, or writes
something else. What the client gets is checked as one message (its ids,
no second start, one finish, usage that adds both attempts' bills), and
every attempt's ledger row is checked.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from edge.dialects.anthropic import DIALECT as anthropic_dialect
from edge.dialects.canonical import ChatRequest, Message, Part
from edge.dialects.common import ChatInfo
from edge.dialects.core import Dialect, Stream, stream_for
from edge.dialects.openai import DIALECT as openai_dialect
from edge.errors import ServiceUnavailable, UpstreamError
from edge.routing.race import Attempt, Call, Race
from edge.routing.rescue import (
    CONTINUED,
    RESTARTED,
    Continuation,
    Splice,
    Unaligned,
    continuation,
    prefill_refused,
    usage_of,
)
from edge.upstream.connection import UpstreamClosed
from tests.routing.test_race import PROVIDER, Fake, World, run, sse, timing

# ------------------------------------------------------------------ the splice


def feed_all(splice: Splice, pieces: list[str]) -> str:
    out = "".join(splice.feed(p) for p in pieces)
    return out + splice.finish()


def test_a_continuation_is_written_as_it_comes() -> None:
    splice = Splice("Hello world", "Hello world")
    assert splice.feed(" and") == " and"
    assert splice.mode == CONTINUED
    assert feed_all(splice, [" more."]) == " more."


def test_a_restart_is_held_until_it_has_rewritten_the_delivered_text() -> None:
    splice = Splice("Hello world", "Hello world")
    assert splice.feed("Hello") == ""
    assert splice.feed(" wor") == ""
    assert splice.feed("ld and") == " and"
    assert splice.mode == RESTARTED
    assert splice.feed(" more.") == " more."


def test_without_a_prefill_only_a_restart_aligns() -> None:
    assert feed_all(Splice("Hello world", None), ["Hello world", "!"]) == "!"
    with pytest.raises(Unaligned):
        feed_all(Splice("Hello world", None), ["Hello", " there"])
    with pytest.raises(Unaligned):  # ended before it rewrote what the client has
        feed_all(Splice("Hello world", None), ["Hello"])


def test_the_separator_a_prefill_could_not_carry_is_not_written_twice() -> None:
    # Anthropic takes no trailing whitespace: the prefill was "Hello", the client has "Hello "
    splice = Splice("Hello ", "Hello")
    assert splice.feed(" ") == ""
    assert splice.feed("\nworld") == "world"
    assert splice.feed(" again") == " again"
    assert feed_all(Splice("Hello", "Hello"), [" world"]) == " world"  # no gap: kept


def test_a_short_continuation_on_the_delivered_path_is_written_at_the_end() -> None:
    assert feed_all(Splice("Hello world", "Hello world"), ["Hel"]) == "Hel"


def test_the_continuation_request_carries_the_delivered_text_as_the_assistant_turn() -> None:
    req = ChatRequest("m", [Message("user", [Part("text", text="hi")])], max_tokens=100)
    out = continuation(req, "Hello world", 100 - 3)
    assert [m.role for m in out.messages] == ["user", "assistant"]
    assert out.messages[-1].parts[0].text == "Hello world" and out.max_tokens == 97
    assert len(req.messages) == 1  # the caller's request is untouched
    # a caller's own prefill is continued by the delivered text
    req.messages.append(Message("assistant", [Part("text", text="Answer:")]))
    out = continuation(req, " Hello", None)
    assert out.messages[-1].parts[-1].text == "Answer: Hello" and out.max_tokens == 100
    assert req.messages[-1].parts[-1].text == "Answer:"


# ------------------------------------------------------------------ scripted fallbacks


def chunk(cid: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse(
        {"id": cid, "object": "chat.completion.chunk", "created": 5, "model": cid + "-model",
         "choices": [choice]}
    )  # fmt: skip


def answer(cid: str, pieces: list[str], prompt: int = 20, completion: int = 4) -> list[Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0}
    return [
        chunk(cid, {"role": "assistant", "content": ""}),
        *[chunk(cid, {"content": p}) for p in pieces],
        chunk(cid, {}, "stop"),
        sse({"id": cid, "object": "chat.completion.chunk", "choices": [], "usage": usage}),
        b"data: [DONE]\n\n",
    ]


CUT = UpstreamClosed("the provider closed the connection")
BROKEN = [chunk("first", {"role": "assistant", "content": ""}), chunk("first", {"content": "Hello"}),
          chunk("first", {"content": " world"}), CUT]  # fmt: skip
REFUSED = orjson.dumps(
    {
        "error": {
            "type": "invalid_request_error",
            "message": "This model does not support assistant message prefill. The "
            "conversation must end with a user message.",
        }
    }
)


class Client:
    """What a streaming client received, read back as one message."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def add(self, data: bytes) -> None:
        self.data.append(data)

    def chunks(self) -> list[Any]:
        raw = b"".join(self.data)
        return [
            orjson.loads(line[6:]) if line[6:] != b"[DONE]" else "[DONE]"
            for line in raw.split(b"\n")
            if line.startswith(b"data: ")
        ]

    def text(self) -> str:
        return "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in self.chunks()
            if c != "[DONE]" and c.get("choices")
        )


async def broken_answer(
    w: World, client: Client, caller: Dialect = openai_dialect
) -> tuple[Race, Attempt, UpstreamError]:
    """Race to the primary, stream it to the client until it breaks, settle it as delivered."""
    race = w.race(timing(hedging=False))
    winner = await race.run()
    client.add(winner.take_held())
    try:
        while not winner.ended:
            client.add(await winner.step())
    except UpstreamError as err:
        client.add(winner.unsent)
        race.delivered(winner, err)
        return race, winner, err
    raise AssertionError("the primary did not break")


def preparer(
    broken: Attempt, race: Race, asked: list[tuple[str, bool]], *, prefill: bool = True
) -> Any:
    assert isinstance(broken.state, Stream)
    state = broken.state
    delivered = "".join(state.text)
    before = usage_of(race.charges[-1].tokens)

    def prepare(m: Any, with_prefill: bool) -> Call:
        with_prefill = with_prefill and prefill
        asked.append((m.name, with_prefill))
        writer = state.resume()
        assert writer is not None
        splice = Splice(delivered, delivered if with_prefill else None)
        stream = Stream(
            openai_dialect,
            openai_dialect.decoder(),
            Continuation(writer, splice, before, openai_dialect.error_event),
            aggregate=False,
        )
        return Call(m, PROVIDER, b"/", [], b"{}", openai_dialect, stream)

    return prepare


async def rescued(race: Race, attempt: Attempt, client: Client) -> None:
    client.add(attempt.take_held())
    while not attempt.ended:
        client.add(await attempt.step())
    race.finished(attempt)


def test_a_fallback_that_continues_completes_the_one_answer() -> None:
    async def main() -> None:
        w = World([Fake("a", body=BROKEN), Fake("b", body=answer("second", [" and", " more."]))])
        client = Client()
        race, _, _ = await broken_answer(w, client)
        asked: list[tuple[str, bool]] = []
        attempt = await race.rescue(preparer(race.attempts[0], race, asked))
        await rescued(race, attempt, client)
        assert asked == [("b", True)]
        assert client.text() == "Hello world and more."
        chunks = client.chunks()
        assert chunks[-1] == "[DONE]"
        body = [c for c in chunks if c != "[DONE]"]
        # one completion: the first answer's id and model, one role chunk, one finish
        assert {c["id"] for c in body} == {"first"}
        assert {c.get("model") for c in body if c.get("model")} == {"first-model"}
        roles = [c for c in body if c.get("choices") and "role" in c["choices"][0]["delta"]]
        finishes = [c["choices"][0]["finish_reason"] for c in body if c.get("choices")]
        assert len(roles) == 1 and [f for f in finishes if f] == ["stop"]
        # usage says what was billed: the broken attempt's row plus the fallback's usage
        first, second = race.charges
        assert (first.kind, second.kind) == ("answer", "rescue")
        usage = body[-1]["usage"]
        assert usage["prompt_tokens"] == first.tokens.prompt + 20
        assert usage["completion_tokens"] == first.tokens.output + 4
        assert first.tokens.output >= 2 and second.tokens.output == 4
        assert w.events.attempts == [("a", "error"), ("b", "ok")]

    run(main)


def test_a_fallback_that_starts_over_has_its_overlap_skipped() -> None:
    async def main() -> None:
        again = answer("second", ["Hello", " wor", "ld and", " more."])
        w = World([Fake("a", body=BROKEN), Fake("b", body=again)])
        client = Client()
        race, _, _ = await broken_answer(w, client)
        attempt = await race.rescue(preparer(race.attempts[0], race, []))
        await rescued(race, attempt, client)
        assert client.text() == "Hello world and more."
        assert isinstance(attempt.call.state, Stream)

    run(main)


def test_a_refused_prefill_is_asked_once_more_without_it() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("a", body=BROKEN),
                Fake("b", status=400, body=[REFUSED]),
                Fake("b", body=answer("second", ["Hello world", " and more."])),
            ]
        )
        client = Client()
        race, _, _ = await broken_answer(w, client)
        asked: list[tuple[str, bool]] = []
        attempt = await race.rescue(preparer(race.attempts[0], race, asked))
        await rescued(race, attempt, client)
        assert asked == [("b", True), ("b", False)]
        assert client.text() == "Hello world and more."
        # the refusal is no breaker failure, and no bill (the provider took nothing)
        assert w.events.attempts == [("a", "error"), ("b", "rejected"), ("b", "ok")]
        assert [c.kind for c in race.charges] == ["answer", "rescue"]
        assert w.breakers["b"].state.name == "CLOSED"

    run(main)


def test_a_fallback_that_cannot_be_aligned_ends_the_rescue() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("a", body=BROKEN),
                Fake("b", body=answer("second", ["Good", "bye."])),
                Fake("c", body=answer("third", ["Hello world!"])),
            ]
        )
        client = Client()
        race, _, _ = await broken_answer(w, client)
        sent = b"".join(client.data)
        asked: list[tuple[str, bool]] = []
        with pytest.raises(Unaligned):
            await race.rescue(preparer(race.attempts[0], race, asked, prefill=False))
        assert b"".join(client.data) == sent  # nothing of it reached the client
        assert asked == [("b", False)]  # not tried further: the next would not align better
        assert w.events.attempts[-1] == ("b", "unaligned")
        assert [c.kind for c in race.charges] == ["answer", "waste"]
        assert w.breakers["b"].state.name == "CLOSED"

    run(main)


def test_a_fallback_that_fails_before_its_first_token_hands_over_to_the_next() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("a", body=BROKEN),
                Fake("b", status=503, body=[b"{}"]),
                Fake("c", body=answer("third", [" and more."])),
            ]
        )
        client = Client()
        race, _, _ = await broken_answer(w, client)
        asked: list[tuple[str, bool]] = []
        attempt = await race.rescue(preparer(race.attempts[0], race, asked))
        await rescued(race, attempt, client)
        assert asked == [("b", True), ("c", True)]
        assert client.text() == "Hello world and more."

    run(main)


def test_the_fallback_is_taken_on_another_provider_first() -> None:
    async def main() -> None:
        w = World(
            [
                Fake("a", body=BROKEN),
                Fake("b", body=answer("second", [" and more."])),
                Fake("c", body=answer("third", [" and more."])),
            ],
            providers={"a": "p", "b": "p", "c": "q"},
        )
        client = Client()
        race, _, _ = await broken_answer(w, client)
        asked: list[tuple[str, bool]] = []
        attempt = await race.rescue(preparer(race.attempts[0], race, asked))
        await rescued(race, attempt, client)
        assert asked == [("c", True)] and client.text() == "Hello world and more."

    run(main)


def test_a_fallback_that_calls_a_tool_instead_fails_the_stream() -> None:
    async def main() -> None:
        tool = {"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f", "arguments": ""}}]}
        w = World([Fake("a", body=BROKEN), Fake("b", body=[chunk("second", tool)])])
        client = Client()
        race, _, _ = await broken_answer(w, client)
        with pytest.raises(Unaligned):
            await race.rescue(preparer(race.attempts[0], race, []))

    run(main)


def test_with_no_fallback_left_the_rescue_says_so() -> None:
    async def main() -> None:
        w = World([Fake("a", body=BROKEN)])
        client = Client()
        race, _, _ = await broken_answer(w, client)
        race.queue.clear()
        race.again.clear()
        with pytest.raises(ServiceUnavailable):
            await race.rescue(preparer(race.attempts[0], race, []))
        assert [c.kind for c in race.charges] == ["answer"]

    run(main)


# ------------------------------------------------------------------ the Anthropic caller


def event(obj: dict[str, Any]) -> bytes:
    name: str = obj["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def test_an_anthropic_stream_is_continued_on_its_open_text_block() -> None:
    """A pass-through Anthropic stream cut inside its text block, continued by an OpenAI
    fallback: deltas on block 0, then its stop, message_delta and message_stop; no second
    message_start."""

    async def main() -> None:
        start = {"type": "message_start", "message": {"id": "msg_1", "type": "message",
                 "role": "assistant", "model": "claude", "content": [],
                 "usage": {"input_tokens": 11, "output_tokens": 1}}}  # fmt: skip
        block = {"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}}  # fmt: skip

        def delta(text: str) -> dict[str, Any]:
            return {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}  # fmt: skip

        broken = [event(start), event(block), event(delta("Hello")), event(delta(" world")), CUT]
        w = World([Fake("a", body=broken), Fake("b", body=answer("second", [" and more."]))])
        info = ChatInfo("m", True)
        prepare_first = w.prepare

        def prepare(m: Any) -> Call:
            call = prepare_first(m)
            call.upstream_dialect = anthropic_dialect
            call.state = stream_for(anthropic_dialect, anthropic_dialect, info)
            return call

        w.prepare = prepare  # type: ignore[method-assign]
        client = Client()
        race, winner, _ = await broken_answer(w, client, anthropic_dialect)
        attempt = await race.rescue(preparer(winner, race, []))
        await rescued(race, attempt, client)
        raw = b"".join(client.data)
        events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
        kinds = [e["type"] for e in events]
        assert kinds.count("message_start") == 1
        assert kinds[-4:] == [
            "content_block_delta", "content_block_stop", "message_delta", "message_stop",
        ]  # fmt: skip
        deltas = [e for e in events if e["type"] == "content_block_delta"]
        assert {e["index"] for e in deltas} == {0}
        assert "".join(e["delta"]["text"] for e in deltas) == "Hello world and more."
        final = events[-2]
        assert final["delta"]["stop_reason"] == "end_turn"
        first = race.charges[0]
        assert final["usage"]["output_tokens"] == first.tokens.output + 4
        assert final["usage"]["input_tokens"] == first.tokens.input + 20

    run(main)


def test_a_prefill_refusal_is_told_from_other_400s() -> None:
    from edge.errors import UpstreamStatus

    assert prefill_refused(anthropic_dialect.error_from_upstream(400, REFUSED, []))
    ws = b'{"error":{"message":"messages: final assistant content cannot end with trailing whitespace"}}'
    assert prefill_refused(anthropic_dialect.error_from_upstream(400, ws, []))
    assert not prefill_refused(UpstreamStatus(400, "max_tokens: too large"))
    assert not prefill_refused(UpstreamStatus(500, "prefill"))


# ------------------------------------------------------------------ the policy key


def test_rescue_is_on_for_l0_and_l1_off_for_l2_and_overridable() -> None:
    from edge.policy import PolicyError, load_policy

    shipped = load_policy("", {})
    assert {n: t.rescue for n, t in shipped.tiers.items()} == {
        "L0": "continue",
        "L1": "continue",
        "L2": "error",
    }
    env = {"EDGE_L2_RESCUE": "continue", "EDGE_L0_RESCUE": "error"}
    moved = load_policy("", env)
    assert (moved.tiers["L0"].rescue, moved.tiers["L2"].rescue) == ("error", "continue")
    with pytest.raises(PolicyError, match="EDGE_L1_RESCUE"):
        load_policy("", {"EDGE_L1_RESCUE": "contnue"})
