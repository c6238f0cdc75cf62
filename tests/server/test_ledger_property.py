"""The bill is the providers' bill, whatever path a request took (a property test).

Random requests (either dialect, streamed or not, a tier or a named model, a
client that stays or leaves after a few chunks) go through a real gateway to
simulated providers that misbehave on a share of attempts (slow first tokens
that start hedges, stalls past the first-token deadline that get an attempt replaced
beside its hedge, cut and malformed streams, 500s, resets). Then, per
request, the gateway's ledger (its SQLite file) is held against what the
simulator says it billed for every attempt (``/sim/stats``):

- every attempt a provider billed has its ledger row, and every ledger row is
  an attempt a provider billed: nothing missing, nothing invented (the one
  exception is named below);
- where the provider's usage reached the gateway, the row is that usage to
  the token; where it could not (a stream cut or left before its usage), the
  input is the estimate and the output the estimate of the text that came;
- every attempt went to a model among the request's candidates, which the
  decision keeps within the request's cost cap (tests/hotpath/test_route.py
  proves that part for any input);
- a stream broken after its first byte and rescued (tiers P and Q continue
  one, tier R does not) leaves the broken attempt's ``answer`` row, for what
  it produced, and one ``rescue`` row for the fallback that continued it.

The exception: an attempt the gateway gave up (a lost race, a client that
left) before it read the provider's answer head is not billed by the gateway,
while the provider may have written that head a moment before. The access
log's ``path`` says how far each attempt got; the test allows a missing row
only for an attempt the gateway itself reports as never past ``connecting``.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge.policy import load_policy
from tests.procs import ROOT, Proc, SimClient, start, start_gateway

POLICY = os.path.join(ROOT, "tests/server/ledger_policy.toml")
PROFILE = os.path.join(ROOT, "tests/server/ledger_profile.toml")
KEY = "sk-ledger"
UPSTREAM = {name: m.upstream_model for name, m in load_policy(POLICY, {}).models.items()}
GATEWAY_NAME = {v: k for k, v in UPSTREAM.items()}
TARGETS = ["auto", "slow", "cut", "e500", "reset", "malformed", "stall", "dear"]


@pytest.fixture(scope="module")
def lsim() -> Iterator[SimClient]:
    proc = start(["simulate", "--port", "0", "--profile", PROFILE])
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


@pytest.fixture(scope="module")
def state_dir() -> str:
    return tempfile.mkdtemp(prefix="edge-ledger-")


@pytest.fixture(scope="module")
def lgw(lsim: SimClient, state_dir: str) -> Iterator[Proc]:
    proc = start_gateway(
        lsim.url,
        POLICY,
        {
            "EDGE_KEYS": f"{KEY}=P@ledger",
            "EDGE_STATE_DIR": state_dir,
            "EDGE_HEDGE_BUDGET_PERCENT": "100",
            "EDGE_HEDGE_BUDGET_MIN": "100000",
            "EDGE_BREAKERS": "off",  # every attempt reaches its provider: faults, not breakers
        },
    )
    yield proc
    proc.stop()


def body_for(dialect: str, target: str, stream: bool, words: int) -> dict[str, Any]:
    text = "tell me about the weather " * words
    body: dict[str, Any] = {"model": target, "stream": stream}
    if dialect == "anthropic":
        body |= {"max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    else:
        body |= {"messages": [{"role": "user", "content": text}]}
    return body


def send(
    gw: Proc, dialect: str, tier: str, body: dict[str, Any], rid: str, leave_after: int | None
) -> None:
    """One request on a raw socket; leave after ``leave_after`` body chunks (None: read all)."""
    payload = orjson.dumps(body)
    path = b"/v1/messages" if dialect == "anthropic" else b"/v1/chat/completions"
    head = (
        b"POST " + path + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + KEY.encode() + b"\r\nanthropic-version: 2023-06-01\r\n"
        b"x-edge-tier: " + tier.encode() + b"\r\nx-request-id: " + rid.encode() + b"\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(payload)
    )
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(head + payload)
        seen = 0
        while leave_after != 0:
            chunk = s.recv(65536)
            if not chunk:
                return
            seen += 1
            if leave_after is not None and seen >= leave_after:
                return  # the client leaves: the socket closes here


def ledger_rows(state_dir: str, rid: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(os.path.join(state_dir, "edge.db"))
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ledger WHERE request_id = ?", (rid,))]
    finally:
        db.close()


def access_line(gw: Proc, rid: str) -> dict[str, Any] | None:
    needle = f'"id":"{rid}"'
    for line in reversed(gw.lines):
        if needle in line:
            return dict(orjson.loads(line))
    return None


def settled(gw: Proc, sim: SimClient, state_dir: str, rids: list[str]) -> dict[str, Any]:
    """Wait until every request has its access line, the simulator's records are final and
    the ledger has been written (it is flushed a moment after each request ends)."""
    deadline = time.monotonic() + 15
    while True:
        lines = {rid: access_line(gw, rid) for rid in rids}
        attempts = [a for a in sim.attempts() if a["client_request_id"] in rids]
        final = all(a["ended_at"] is not None for a in attempts)
        final = final and sim.stats().get("open", 0) == 0
        if all(lines.values()) and final:
            time.sleep(0.6)  # past the ledger's flush interval (0.25 s)
            return {"lines": lines, "attempts": attempts}
        assert time.monotonic() < deadline, "requests or simulator records never settled"
        time.sleep(0.05)


def tokens(row_or_attempt: dict[str, Any], *, ledger: bool) -> tuple[int, int]:
    if ledger:
        r = row_or_attempt
        return r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"], r[
            "output_tokens"
        ]
    a = row_or_attempt
    return a["billed_input"] + a["billed_cache_read"] + a["billed_cache_write"], a["billed_output"]


def best_is_answer(rows: list[dict[str, Any]], name: str) -> bool:
    return any(r["kind"] in ("answer", "rescue") and r["model"] == name for r in rows)


def check_request(
    rid: str,
    line: dict[str, Any],
    attempts: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    left: bool,
) -> None:
    # every attempt went to a candidate of the request (all within its cap)
    candidates = set(line.get("candidates") or [])
    for a in attempts:
        assert GATEWAY_NAME[a["model"]] in candidates, (rid, a["model"], candidates)
    billed = [a for a in attempts if a["billed_input"] or a["billed_output"]]
    unmatched = list(rows)
    for a in billed:
        name = GATEWAY_NAME[a["model"]]
        want_in, want_out = tokens(a, ledger=False)
        match = [r for r in unmatched if r["model"] == name]
        if not match:
            # the one window where the two may differ: given up before its head was read
            unread = [
                p
                for p in line.get("attempts_path") or []
                if p.startswith(name + ":") and p.endswith(":connecting")
            ]
            assert unread and a["disconnected"], (rid, "billed attempt missing", a, rows, line)
            line["attempts_path"].remove(unread[0])  # each such attempt excuses one row
            continue
        # the provider's final usage is what the gateway read when the answer came whole
        exact = (
            a["usage_sent"] and best_is_answer(rows, name) and line["status"] == 200 and not left
        )
        best = min(match, key=lambda r: abs(tokens(r, ledger=True)[1] - want_out))
        unmatched.remove(best)
        got_in, got_out = tokens(best, ledger=True)
        if exact:
            assert (got_in, got_out) == (want_in, want_out), (rid, a, best)
        else:
            # estimated: the prompt from the gateway's estimate, the output from the text
            assert abs(got_in - want_in) <= max(4, 0.35 * want_in), (rid, a, best)
            assert abs(got_out - want_out) <= max(3, 0.5 * want_out), (rid, a, best)
    assert unmatched == [], (rid, "ledger rows no provider billed", unmatched, billed)
    answers = [r for r in rows if r["kind"] == "answer"]
    assert len(answers) <= 1, (rid, answers)
    if line["status"] == 200:
        assert len(answers) == 1, (rid, rows)
    rescues = [r for r in rows if r["kind"] == "rescue"]
    assert len(rescues) <= 1 and (not rescues or answers), (rid, rows)
    if line.get("rescue") in ("continued", "restarted") and not left:
        assert rescues and line["status"] == 200, (rid, rows, line)


request = st.tuples(
    st.sampled_from(["openai", "anthropic"]),
    st.sampled_from(["P", "Q", "R"]),
    st.sampled_from(TARGETS),
    st.booleans(),  # stream
    st.integers(1, 40),  # prompt words
    st.one_of(st.none(), st.integers(0, 4)),  # chunks read before the client leaves
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=st.lists(request, min_size=3, max_size=6))
def test_the_ledger_is_what_the_providers_billed(
    lgw: Proc, lsim: SimClient, state_dir: str, requests: list[tuple[Any, ...]]
) -> None:
    rids, leaving = [], {}
    for dialect, tier, target, stream, words, leave_after in requests:
        rid = "lp-" + uuid.uuid4().hex
        rids.append(rid)
        leaving[rid] = leave_after is not None
        send(lgw, dialect, tier, body_for(dialect, target, stream, words), rid, leave_after)
    done = settled(lgw, lsim, state_dir, rids)
    for rid in rids:
        line = done["lines"][rid]
        attempts = [a for a in done["attempts"] if a["client_request_id"] == rid]
        rows = ledger_rows(state_dir, rid)
        event(f"status {line['status']}, {len(attempts)} attempt(s)")
        if line.get("rescue"):
            event(f"rescue {line['rescue']}")
        # every request was planned and raced: answered, failed by its providers, or left
        assert line["status"] in (200, 499, 502, 503, 504), (rid, line)
        assert line.get("candidates"), (rid, line)
        check_request(rid, line, attempts, rows, leaving[rid])
