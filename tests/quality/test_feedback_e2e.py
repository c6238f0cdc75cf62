"""Feedback end to end: the official SDKs get answers through a two-worker gateway (real
sockets, simulated providers), httpx posts feedback on their x-request-id, on both state
backends. Own ids accepted (also right after the answer, whichever worker takes it), other
keys' and unknown ids the same 404, the rate limit, the hybrid score moving by the formula's
amount, and ``llm-edge feedback import``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.conftest import RedisServer
from tests.procs import ROOT, Proc, SimClient, metric, start_gateway

POLICY = str(Path(__file__).parent / "feedback_policy.toml")
KEYS = "sk-fb-a,sk-fb-b,sk-fb-c"
HELLO = [{"role": "user", "content": "Repeat after me: fine"}]


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    env = {"EDGE_STATE_DIR": tempfile.mkdtemp(prefix="edge-fb-")}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        env["EDGE_REDIS_URL"] = server.url
    return env


@pytest.fixture
def gw(sim: SimClient, backend: dict[str, str]) -> Iterator[Proc]:
    proc = start_gateway(sim.url, POLICY, {"EDGE_KEYS": KEYS, **backend}, workers=2)
    yield proc
    proc.stop()


def post(gw: Proc, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/edge/feedback",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=10.0,
    )


def score(gw: Proc, task: str, model: str, source: str) -> float:
    return metric(gw, "edge_quality_score", tier="L1", task=task, model=model, source=source)


def samples(gw: Proc, task: str, model: str, source: str) -> float:
    return metric(gw, "edge_quality_samples", tier="L1", task=task, model=model, source=source)


def wait_for(what: str, ok: object, timeout: float = 20.0) -> None:
    """Until ``ok()`` is true (scores refresh on each worker every 5 s)."""
    deadline = time.monotonic() + timeout
    while not ok():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def shrunk(prior: float, n: float, total: float, k: float) -> float:
    return (total + k * prior) / (n + k)


def hybrid(prior: float, online: tuple[int, int], human: tuple[int, float]) -> float:
    """docs/CONFIG.md's formula with the default weights (0.5 / 0.2 / 0.3) and prior
    strengths (10 / 50 / 20); no gold report in these tests."""
    parts = []
    for (n, total), w, k in ((online, 0.2, 50.0), (human, 0.3, 20.0)):
        if n:
            parts.append((w * n / (n + k), shrunk(prior, n, total, k)))
    return sum(a * q for a, q in parts) / sum(a for a, _ in parts) if parts else prior


def test_feedback_in_both_dialects(gw: Proc, sim: SimClient, backend: dict[str, str]) -> None:
    with (
        openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-fb-a", max_retries=0) as oa,
        anthropic.Anthropic(base_url=gw.url, api_key="sk-fb-a", max_retries=0) as an,
    ):
        raw = oa.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers={"x-edge-task": "checkout"}
        )
        oa_id = raw.headers["x-request-id"]
        # right after the answer, on a new connection: either worker, its record maybe still
        # in the answering worker's batch
        r = post(gw, "sk-fb-a", {"request_id": oa_id, "score": 0.25, "label": "too short"})
        assert r.status_code == 200, r.text
        assert r.json() == {"object": "edge.feedback", "request_id": oa_id, "score": 0.25,
                            "label": "too short", "replaced": False}  # fmt: skip

        raw_an = an.messages.with_raw_response.create(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=HELLO,
            extra_headers={"x-edge-task": "tagging"},
        )
        an_id = raw_an.headers["x-request-id"]
        assert raw_an.headers["request-id"] == an_id

        # an unlisted task label is recorded as "other"; a malformed one is a 400
        oa.chat.completions.create(
            model="claude-haiku-4-5", messages=HELLO, extra_headers={"x-edge-task": "misc"}
        )
        with pytest.raises(openai.BadRequestError) as bad:
            oa.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, extra_headers={"x-edge-task": "no good"}
            )
        assert bad.value.body["param"] == "x-edge-task"

    # before any feedback on it, the Anthropic answer's score is its online check alone
    wait_for(
        "the anthropic answer's online check",
        lambda: samples(gw, "tagging", "claude-haiku-4-5", "online") == 1,
    )
    before = hybrid(0.8, (1, 1), (0, 0.0))
    wait_for(
        "the score before",
        lambda: (
            score(gw, "tagging", "claude-haiku-4-5", "hybrid") == pytest.approx(before, abs=1e-12)
        ),
    )

    # another key's answer and an id that never was: the same 404, word for word
    foreign = post(gw, "sk-fb-b", {"request_id": an_id, "thumbs": "down"})
    unknown = post(gw, "sk-fb-b", {"request_id": "req_never_was", "thumbs": "down"})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()
    assert foreign.json()["error"]["code"] == "request_not_found"

    r = post(gw, "sk-fb-a", {"request_id": an_id, "thumbs": "down", "comment": "wrong tag"})
    assert r.status_code == 200 and r.json()["score"] == 0.0
    after = hybrid(0.8, (1, 1), (1, 0.0))
    wait_for(
        "the score after",
        lambda: (
            score(gw, "tagging", "claude-haiku-4-5", "hybrid") == pytest.approx(after, abs=1e-12)
        ),
    )
    assert before - after == pytest.approx(0.032967, abs=1e-6)  # docs/CONFIG.md's example

    want = hybrid(0.9, (1, 1), (1, 0.25))
    wait_for(
        "the openai answer's score",
        lambda: score(gw, "checkout", "gpt-4o-mini", "hybrid") == pytest.approx(want, abs=1e-12),
    )
    assert score(gw, "checkout", "gpt-4o-mini", "human") == 0.25
    assert score(gw, "all", "gpt-4o-mini", "hybrid") == pytest.approx(want, abs=1e-12)
    wait_for("the other task", lambda: samples(gw, "other", "claude-haiku-4-5", "online") == 1)

    # a second feedback on the same answer replaces the first
    r = post(gw, "sk-fb-a", {"request_id": oa_id, "score": 1})
    assert r.status_code == 200 and r.json()["replaced"] is True
    again = hybrid(0.9, (1, 1), (1, 1.0))
    wait_for(
        "the replaced score",
        lambda: score(gw, "checkout", "gpt-4o-mini", "hybrid") == pytest.approx(again, abs=1e-12),
    )

    # the import: an operator's batch; ids must exist, any key's
    lines = Path(tempfile.mkdtemp()) / "labels.jsonl"
    lines.write_text(
        f'{{"request_id": "{an_id}", "score": 0.5, "label": "ok-ish"}}\n'
        '{"request_id": "req_nobody", "thumbs": "up"}\n'
        '{"request_id": "x", "score": 7}\n'
    )
    env = {**os.environ, "EDGE_POLICY": POLICY, **backend}
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "feedback", "import", str(lines)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # one invalid line
    assert "1 accepted (1 replacing an earlier one), 1 unknown" in done.stdout
    assert "1 invalid" in done.stdout and "line 3: score" in done.stderr
    imported = hybrid(0.8, (1, 1), (1, 0.5))
    wait_for(
        "the imported score",
        lambda: (
            score(gw, "tagging", "claude-haiku-4-5", "hybrid") == pytest.approx(imported, abs=1e-12)
        ),
    )


def test_bad_feedback_and_the_rate_limit(gw: Proc) -> None:
    r = post(gw, "sk-fb-c", {"request_id": "req_x", "score": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "score"
    assert httpx.post(gw.url + "/v1/edge/feedback", json={}).status_code == 401
    # four a minute (the test policy): the fifth is refused, with when to retry
    codes = [
        post(gw, "sk-fb-c", {"request_id": f"req_{i}", "thumbs": "up"}).status_code
        for i in range(4)
    ]
    assert codes == [404] * 4
    limited = post(gw, "sk-fb-c", {"request_id": "req_5", "thumbs": "up"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    # another key has its own bucket
    assert post(gw, "sk-fb-b", {"request_id": "req_6", "thumbs": "up"}).status_code == 404


def test_a_streamed_answer_is_checked_online_too(gw: Proc) -> None:
    """The online checks judge every answer that ended, a stream as much as a whole body."""
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-fb-c", max_retries=0) as oa:
        chunks: list[ChatCompletionChunk] = list(
            oa.chat.completions.create(
                model="gpt-4o-mini",
                messages=HELLO,
                stream=True,
                extra_headers={"x-edge-task": "tagging"},
            )
        )
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    wait_for(
        "the streamed answer's online check",
        lambda: samples(gw, "tagging", "gpt-4o-mini", "online") == 1,
    )
