"""Fault scripts are plain step lists (no sockets)."""

from __future__ import annotations

from edge.simulate import script
from edge.simulate.script import (
    ACCEPT,
    CLOSE,
    DONE,
    INPUT_USAGE,
    SLEEP,
    USAGE,
    WRITE,
    StreamParts,
)

PARTS = StreamParts(preamble=b"P", tokens=[b"t1", b"t2", b"t3"], end=b"E", terminator=b"T")
KW = {
    "ttft_s": 0.0,
    "gap_s": 0.0,
    "fault": "none",
    "fault_after": 1,
    "stall_s": 2.0,
    "malformed": b"M",
}


def ops(steps: list[script.Step]) -> list[int]:
    return [s[0] for s in steps]


def test_instant_stream_is_one_write() -> None:
    steps = script.stream_steps(b"H", PARTS, **KW)
    assert ops(steps) == [WRITE, DONE]
    payload = steps[0][1]
    assert payload == b"H1\r\nP\r\n2\r\nt1\r\n2\r\nt2\r\n2\r\nt3\r\n1\r\nE\r\n1\r\nT\r\n0\r\n\r\n"
    assert steps[0][2] == 3


def test_ttft_and_gaps_become_sleeps() -> None:
    steps = script.stream_steps(b"H", PARTS, **{**KW, "ttft_s": 0.5, "gap_s": 0.1})
    assert ops(steps) == [WRITE, SLEEP, WRITE, SLEEP, WRITE, SLEEP, WRITE, DONE]
    assert [s[1] for s in steps if s[0] == SLEEP] == [0.5, 0.1, 0.1]


def test_cut_closes_without_terminator() -> None:
    steps = script.stream_steps(b"H", PARTS, **{**KW, "fault": "cut", "fault_after": 2})
    assert ops(steps) == [WRITE, CLOSE]
    assert steps[0][2] == 2 and b"T" not in bytes(steps[0][1])


def test_stall_malformed_no_done() -> None:
    stall = script.stream_steps(b"H", PARTS, **{**KW, "fault": "stall"})
    assert ops(stall) == [WRITE, SLEEP, WRITE, DONE] and stall[1][1] == 2.0
    bad = script.stream_steps(b"H", PARTS, **{**KW, "fault": "malformed"})
    assert b"1\r\nM\r\n2\r\nt2" in bytes(bad[0][1])
    nodone = script.stream_steps(b"H", PARTS, **{**KW, "fault": "no_done"})
    assert b"1\r\nT\r\n" not in bytes(nodone[0][1]) and bytes(nodone[0][1]).endswith(b"0\r\n\r\n")


def test_body_faults() -> None:
    ok = script.body_steps(b"H", b"{}", delay_s=0.2, tokens=4, fault="none", stall_s=1.0)
    assert ops(ok) == [SLEEP, WRITE, DONE] and ok[1][2] == 4
    cut = script.body_steps(b"H", b"{1234}", delay_s=0.0, tokens=4, fault="cut", stall_s=1.0)
    assert ops(cut) == [WRITE, CLOSE] and cut[0][1] == b"H{12"
    assert script.fault_steps("reset") == [(script.RESET, b"", 0, 0)]
    assert script.fault_steps("cut") is None


def test_writes_carry_their_tokens_and_billing_marks() -> None:
    parts = StreamParts(
        preamble=b"P",
        tokens=[b"t1", b"t2", b"t3"],
        end=b"E",
        terminator=b"T",
        start_usage=True,
        end_usage=True,
    )
    slow = script.stream_steps(b"H", parts, **{**KW, "ttft_s": 0.5, "gap_s": 0.1})
    writes = [(s[2], s[3]) for s in slow if s[0] == WRITE]
    assert writes == [(0, ACCEPT | INPUT_USAGE), (1, 0), (1, 0), (1, INPUT_USAGE | USAGE)]
    # merged writes keep every mark and every token
    assert script.stream_steps(b"H", parts, **KW)[0][2:] == (3, ACCEPT | INPUT_USAGE | USAGE)
    cut = script.stream_steps(b"H", parts, **{**KW, "fault": "cut", "fault_after": 2})
    assert cut[0][2:] == (2, ACCEPT | INPUT_USAGE)
    # OpenAI without include_usage: the head is accepted, no usage ever goes out
    plain = script.stream_steps(b"H", PARTS, **KW)
    assert plain[0][2:] == (3, ACCEPT)


def test_body_write_bills_the_whole_answer_even_when_cut() -> None:
    ok = script.body_steps(b"H", b"{}", delay_s=0.0, tokens=4, fault="none", stall_s=1.0)
    assert ok[0][2:] == (4, ACCEPT | INPUT_USAGE | USAGE)
    cut = script.body_steps(b"H", b"{1234}", delay_s=0.0, tokens=4, fault="cut", stall_s=1.0)
    assert cut[0][2:] == (4, ACCEPT)
