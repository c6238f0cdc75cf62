"""Rescue after the first byte, end to end: a simulator, a gateway, real sockets.

The gateway runs ``rescue_policy.toml``: each primary is on a provider that
gets the ``x-sim`` fault header, its fallback on one that does not. The
prompt makes the simulator's answer exactly a known text of 60 words
("Repeat after me"), whatever the model, so a stream broken after 40 of them
and rescued must read as that text, whole, as one answer. The fallbacks
differ in what they do with the prefill: continue after it, start over,
refuse it (a 400), or never get one (the policy says the model takes none).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.procs import ROOT, Proc, SimClient, metric, start, start_gateway

KEY = "sk-rescue"
WORDS = [f"w{i:02d}" for i in range(60)]
TEXT = " ".join(WORDS)
PROMPT = "Repeat after me: " + TEXT
CUT = "fault=cut,fault_after_tokens=40"
STALL = "fault=stall,fault_after_tokens=40,stall_s=3"  # past the tier's 400 ms idle deadline
MALFORMED = "fault=malformed,fault_after_tokens=40"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimClient]:
    proc = start(
        [
            "simulate",
            "--port",
            "0",
            "--profile",
            os.path.join(ROOT, "tests/server/rescue_profile.toml"),
        ]
    )
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


@pytest.fixture(scope="module")
def gw(sim: SimClient) -> Iterator[Proc]:
    proc = start_gateway(
        sim.url,
        os.path.join(ROOT, "tests/server/rescue_policy.toml"),
        {
            "EDGE_KEYS": KEY,
            "EDGE_OPENAI2_BASE_URL": sim.url + "/v1",
            "EDGE_ANTHROPIC2_BASE_URL": sim.url,
        },
    )
    yield proc
    proc.stop()


def stream(
    gw: Proc, dialect: str, model: str, sim: str, tier: str = "L1", rid: str = "", **extra: Any
) -> list[tuple[str, Any]]:
    """One streamed request: its SSE events as (event name, parsed data)."""
    headers = {"authorization": f"Bearer {KEY}", "x-sim": sim, "x-edge-tier": tier}
    if rid:
        headers["x-request-id"] = rid
    body: dict[str, Any] = {"model": model, "stream": True, **extra}
    body.setdefault("messages", [{"role": "user", "content": PROMPT}])
    if dialect == "anthropic":
        path = "/v1/messages"
        headers["anthropic-version"] = "2023-06-01"
        body.setdefault("max_tokens", 512)
    else:
        path = "/v1/chat/completions"
        body.setdefault("stream_options", {"include_usage": True})
    events: list[tuple[str, Any]] = []
    with httpx.stream("POST", gw.url + path, json=body, headers=headers, timeout=20) as r:
        assert r.status_code == 200, r.read()
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                raw = line[6:]
                events.append((name, raw if raw == "[DONE]" else orjson.loads(raw)))
                name = ""
    return events


def openai_answer(events: list[tuple[str, Any]]) -> dict[str, Any]:
    """An OpenAI stream read back: text, finish reasons, ids, role chunks, usage, errors."""
    chunks = [d for _, d in events if d != "[DONE]"]
    choices = [c["choices"][0] for c in chunks if c.get("choices")]
    return {
        "text": "".join(ch["delta"].get("content") or "" for ch in choices),
        "finishes": [ch["finish_reason"] for ch in choices if ch.get("finish_reason")],
        "ids": {c["id"] for c in chunks if "id" in c},
        "roles": sum(1 for ch in choices if ch["delta"].get("role")),
        "usage": [c["usage"] for c in chunks if c.get("usage")],
        "errors": [c["error"] for c in chunks if "error" in c],
        "done": events[-1][1] == "[DONE]",
    }


def anthropic_answer(events: list[tuple[str, Any]]) -> dict[str, Any]:
    kinds = [name for name, _ in events]
    deltas = [d for n, d in events if n == "content_block_delta"]
    final = [d for n, d in events if n == "message_delta"]
    return {
        "text": "".join(d["delta"].get("text", "") for d in deltas),
        "kinds": kinds,
        "indexes": {d["index"] for d in deltas},
        "stop": [d["delta"]["stop_reason"] for d in final],
        "usage": [d["usage"] for d in final],
        "errors": [d for n, d in events if n == "error"],
    }


def access(gw: Proc, rid: str) -> dict[str, Any]:
    """The request's access line (written as the request ends, a moment after its last byte)."""
    needle = f'"id":"{rid}"'
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in reversed(gw.lines):
            if needle in line:
                return dict(orjson.loads(line))
        time.sleep(0.02)
    raise AssertionError(f"no access line for {rid}")


@pytest.mark.parametrize("fault", [CUT, STALL, MALFORMED], ids=["cut", "stall", "malformed"])
@pytest.mark.parametrize("model", ["oa-to-oa", "oa-to-an"], ids=["same", "translated"])
def test_an_openai_stream_broken_after_40_tokens_is_rescued_whole(
    gw: Proc, sim: SimClient, fault: str, model: str
) -> None:
    since = sim.seq()
    before = metric(gw, "edge_rescues_total", tier="L1", outcome="continued")
    rid = "rs-" + uuid.uuid4().hex
    got = openai_answer(stream(gw, "openai", model, fault, rid=rid))
    assert got["errors"] == [] and got["text"] == TEXT
    assert got["finishes"] == ["stop"] and got["done"]
    assert got["roles"] == 1 and len(got["ids"]) == 1  # one completion, one role chunk
    attempts = sim.attempts(since=since)
    fallback = attempts[-1]
    assert [a["model"] for a in attempts] == ["rs-oa", fallback["model"]]
    assert fallback["outcome"] == "ok" and fallback["billed_output"] == 20  # the rest only
    # usage says what was billed: both attempts, as the gateway's bill has them
    (usage,) = got["usage"]
    line = access(gw, rid)
    assert line["rescue"] == "continued"
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        line["prompt_tokens"],
        line["completion_tokens"],
    )
    assert usage["completion_tokens"] >= 40 + 20
    assert metric(gw, "edge_rescues_total", tier="L1", outcome="continued") == before + 1


@pytest.mark.parametrize("fault", [CUT, STALL, MALFORMED], ids=["cut", "stall", "malformed"])
@pytest.mark.parametrize("model", ["an-to-an", "an-to-oa"], ids=["same", "translated"])
def test_an_anthropic_stream_broken_after_40_tokens_is_rescued_whole(
    gw: Proc, sim: SimClient, fault: str, model: str
) -> None:
    rid = "rs-" + uuid.uuid4().hex
    got = anthropic_answer(stream(gw, "anthropic", model, fault, rid=rid))
    assert got["errors"] == [] and got["text"] == TEXT
    assert got["kinds"].count("message_start") == 1 and got["kinds"][-1] == "message_stop"
    assert got["indexes"] == {0}  # the open text block, continued
    assert got["stop"] == ["end_turn"]
    (usage,) = got["usage"]
    line = access(gw, rid)
    assert usage["output_tokens"] == line["completion_tokens"] >= 60


def test_a_fallback_that_starts_over_has_the_overlap_skipped(gw: Proc, sim: SimClient) -> None:
    since = sim.seq()
    rid = "rs-" + uuid.uuid4().hex
    got = openai_answer(stream(gw, "openai", "oa-to-restart", CUT, rid=rid))
    assert got["errors"] == [] and got["text"] == TEXT and got["finishes"] == ["stop"]
    assert sim.attempts(since=since)[-1]["billed_output"] == 60  # it wrote it all again
    assert access(gw, rid)["rescue"] == "restarted"


def test_a_refused_prefill_is_retried_without_it(gw: Proc, sim: SimClient) -> None:
    since = sim.seq()
    got = anthropic_answer(stream(gw, "anthropic", "an-to-refuse", CUT))
    assert got["errors"] == [] and got["text"] == TEXT and got["stop"] == ["end_turn"]
    tried = [(a["model"], a["outcome"]) for a in sim.attempts(since=since)]
    assert tried == [("rs-an", "cut"), ("rs-an-refuse", "invalid"), ("rs-an-refuse", "ok")]


def test_a_model_known_to_refuse_prefill_is_asked_without_it(gw: Proc, sim: SimClient) -> None:
    since = sim.seq()
    got = anthropic_answer(stream(gw, "anthropic", "an-to-46", MALFORMED))
    assert got["errors"] == [] and got["text"] == TEXT
    tried = [(a["model"], a["outcome"]) for a in sim.attempts(since=since)]
    assert tried == [("rs-an", "malformed"), ("rs-an-46", "ok")]  # no 400 first


def test_the_openai_sdk_reads_a_rescued_stream_as_one_answer(gw: Proc) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
    stream_ = client.chat.completions.create(
        model="oa-to-an",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers={"x-sim": CUT},
    )
    text, finishes = [], []
    for chunk in stream_:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert "".join(text) == TEXT and finishes == ["stop"]


def test_a_half_delivered_tool_call_ends_with_the_error_event(gw: Proc) -> None:
    before = metric(gw, "edge_rescues_total", tier="L1", outcome="not_text")
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {k: {"type": "string"} for k in ("city", "street", "country")},
            },
        },
    }
    events = stream(
        gw,
        "openai",
        "oa-to-oa",
        "fault=cut,fault_after_tokens=2",
        messages=[{"role": "user", "content": "call lookup please"}],
        tools=[tool],
    )
    got = openai_answer(events)
    assert len(got["errors"]) == 1 and not got["done"] and got["finishes"] == []
    assert metric(gw, "edge_rescues_total", tier="L1", outcome="not_text") == before + 1


def test_a_tier_with_rescue_off_ends_with_the_error_event(gw: Proc, sim: SimClient) -> None:
    since = sim.seq()
    before = metric(gw, "edge_rescues_total", tier="L2", outcome="disabled")
    got = openai_answer(stream(gw, "openai", "oa-to-oa", CUT, tier="L2"))
    assert len(got["errors"]) == 1 and not got["done"] and got["finishes"] == []
    assert TEXT.startswith(got["text"]) and got["text"] != TEXT
    assert [a["model"] for a in sim.attempts(since=since)] == ["rs-oa"]  # no fallback asked
    got = anthropic_answer(stream(gw, "anthropic", "an-to-an", CUT, tier="L2"))
    assert len(got["errors"]) == 1 and "message_stop" not in got["kinds"]
    assert metric(gw, "edge_rescues_total", tier="L2", outcome="disabled") == before + 2
