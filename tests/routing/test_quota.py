"""Provider quotas: both providers' rate-limit headers parsed (bad values ignored), and the
room a model has for a request, on a fake clock."""

from __future__ import annotations

import pytest

from edge.routing.quota import Figure, Quotas, go_duration_s, read_headers, rfc3339_s

WALL = 1_755_780_000.0  # 2025-08-21T12:40:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1.5s", 1.5), ("1h2m3s", 3723.0), ("0", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "6m0", "-1s", "soon"])
def test_what_is_no_go_duration(text: str) -> None:
    assert go_duration_s(text) is None


def test_rfc3339_instants() -> None:
    assert rfc3339_s("2025-08-21T12:40:59Z") == WALL + 59
    assert rfc3339_s("2025-08-21T12:40:59.500Z") == WALL + 59.5
    assert rfc3339_s("2025-08-21T14:40:59+02:00") == WALL + 59
    assert rfc3339_s("2025-08-21T12:40:59") is None  # no offset: no instant
    assert rfc3339_s("tomorrow") is None


def h(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_openai_headers() -> None:
    got = read_headers(
        h(
            x_ratelimit_limit_requests="60",
            x_ratelimit_remaining_requests="59",
            x_ratelimit_reset_requests="1s",
            x_ratelimit_limit_tokens="150000",
            x_ratelimit_remaining_tokens="149984",
            x_ratelimit_reset_tokens="6m0s",
        ),
        WALL,
    )
    assert got == {
        "requests": Figure(60, 59, 1.0),
        "tokens": Figure(150000, 149984, 360.0),
    }


def test_anthropic_headers() -> None:
    got = read_headers(
        h(
            anthropic_ratelimit_requests_limit="50",
            anthropic_ratelimit_requests_remaining="0",
            anthropic_ratelimit_requests_reset="2025-08-21T12:40:59Z",
            anthropic_ratelimit_input_tokens_limit="40000",
            anthropic_ratelimit_input_tokens_remaining="39000",
            anthropic_ratelimit_input_tokens_reset="2025-08-21T12:40:01Z",
            anthropic_ratelimit_output_tokens_limit="8000",
            anthropic_ratelimit_output_tokens_remaining="8000",
            anthropic_ratelimit_output_tokens_reset="2025-08-21T12:40:00Z",
            retry_after="59",
        ),
        WALL,
    )
    assert got == {
        "requests": Figure(50, 0, 59.0),
        "input_tokens": Figure(40000, 39000, 1.0),
        "output_tokens": Figure(8000, 8000, 0.0),
    }


def test_bad_values_are_ignored_never_raised() -> None:
    got = read_headers(
        h(
            x_ratelimit_remaining_requests="lots",
            x_ratelimit_reset_requests="1s",
            x_ratelimit_remaining_tokens="10",
            x_ratelimit_reset_tokens="whenever",
        ),
        WALL,
    )
    assert got == {}
    # no reset: nothing to wait on
    assert read_headers(h(anthropic_ratelimit_requests_remaining="3"), WALL) == {}


def test_room_counts_what_is_in_flight_and_forgets_a_figure_after_its_reset() -> None:
    q = Quotas()
    assert q.room("m", 100, 50, 0.0, 0.0) == 0.0  # never heard of: no limit known
    q.sent("m", 100, 50)
    q.answered(
        "m", 100, 50, h(x_ratelimit_remaining_requests="2", x_ratelimit_reset_requests="10s"), 0.0
    )
    assert q.room("m", 100, 50, 0.0, 1.0) == 0.0
    q.sent("m", 100, 50)
    q.sent("m", 100, 50)  # two in flight: the two left are spoken for
    assert q.room("m", 100, 50, 0.0, 1.0) == pytest.approx(9.0)
    q.answered("m", 100, 50, None, 2.0)  # one failed before its head: no longer in flight
    assert q.room("m", 100, 50, 0.0, 2.0) == 0.0
    assert q.room("m", 100, 50, 0.0, 10.0) == 0.0  # reset: whole again


def test_a_reserve_holds_a_lower_tier_while_the_top_tier_still_has_room() -> None:
    q = Quotas()
    q.sent("m", 10, 10)
    q.answered(
        "m",
        10,
        10,
        h(
            x_ratelimit_limit_tokens="1000",
            x_ratelimit_remaining_tokens="250",
            x_ratelimit_reset_tokens="2s",
        ),
        0.0,
    )
    assert q.room("m", 100, 100, 0.0, 0.5) == 0.0  # L0: 250 left covers 200
    assert q.room("m", 100, 100, 0.2, 0.5) == pytest.approx(1.5)  # L2 leaves 200 of it: 50 < 200
    assert q.figures(0.5) == [("m", "tokens", 250)]


def test_after_a_known_limit_resets_what_is_in_flight_still_counts() -> None:
    q = Quotas()
    q.sent("m", 1, 1)
    q.answered(
        "m",
        1,
        1,
        h(
            x_ratelimit_limit_requests="2",
            x_ratelimit_remaining_requests="0",
            x_ratelimit_reset_requests="1s",
        ),
        0.0,
    )
    assert q.room("m", 1, 1, 0.0, 0.5) == pytest.approx(0.5)
    # the window turned: two may go, not every request that waited for it
    for _ in range(2):
        assert q.room("m", 1, 1, 0.0, 1.0) == 0.0
        q.sent("m", 1, 1)
    assert q.room("m", 1, 1, 0.0, 1.0) > 0
