"""Answer records, feedback, quality counts, writers' marks and the feedback rate limit: one
test body for both state backends (SQLite and Redis), each call on a handle of its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.state.embedded import EmbeddedState
from edge.state.types import AnswerRecord, FeedbackRow
from tests.conftest import Backend

NOW = 1_795_000_000.0
DAY = 86400.0
KEEP = 30 * DAY


def answer(rid: str, key: str = "ka", at: float = NOW, online: str = "ok") -> AnswerRecord:
    return AnswerRecord(rid, key, at, "L1", "checkout", "m", "", online)


def test_an_answer_is_found_only_under_its_own_key(new: Callable[[], Backend]) -> None:
    new().record_answers([answer("r1"), answer("r2", online="json")], "w1", NOW, KEEP)
    state = new()
    found = state.find_answer("r1", "ka", NOW - KEEP)
    assert found == answer("r1")
    assert state.find_answer("r1", "kb", NOW - KEEP) is None  # another key's: a miss
    assert state.find_answer("nope", "ka", NOW - KEEP) is None
    assert state.find_answer("r1", "ka", NOW + 1) is None  # older than the retention
    assert state.find_answer("r1", None, NOW - KEEP) == answer("r1")  # an operator's import
    assert state.quality_counts(NOW - KEEP) == [("L1", "checkout", "m", 2, 1, 0, 0.0)]


def test_feedback_is_counted_once_per_answer_and_a_second_replaces_it(
    new: Callable[[], Backend],
) -> None:
    a = answer("r1")
    new().record_answers([a], "w1", NOW, KEEP)
    first = FeedbackRow("r1", "ka", NOW + 1, 0.25, "", "", "api")
    assert new().put_feedback(first, a, KEEP) is False
    assert new().put_feedback(FeedbackRow("r1", "ka", NOW + 2, 1.0, "ok", "", "api"), a, KEEP)
    assert new().quality_counts(NOW - KEEP) == [("L1", "checkout", "m", 1, 1, 1, 1.0)]


def test_marks_say_up_to_when_every_live_writer_has_written(new: Callable[[], Backend]) -> None:
    state = new()
    assert state.answers_through(NOW - 5) == float("inf")  # no writer: nothing is pending
    new().record_answers([], "w1", NOW, KEEP)
    new().record_answers([answer("r")], "w2", NOW + 1, KEEP)
    assert state.answers_through(NOW - 5) == NOW
    new().record_answers([], "w1", NOW + 2, KEEP)
    assert state.answers_through(NOW - 5) == NOW + 1
    assert state.answers_through(NOW + 1.5) == NOW + 2  # w2 stopped marking: gone


def test_the_token_bucket_is_shared(new: Callable[[], Backend]) -> None:
    per_s, burst = 4 / 60, 4.0
    waits = [new().take_token("feedback:k", per_s, burst, NOW) for _ in range(5)]
    assert waits[:4] == [0.0] * 4 and waits[4] == pytest.approx(15.0)
    assert new().take_token("feedback:other", per_s, burst, NOW) == 0.0
    assert new().take_token("feedback:k", per_s, burst, NOW + 15.0) == 0.0  # refilled one


def test_purge_drops_what_the_retention_passed(new: Callable[[], Backend]) -> None:
    old, recent = answer("old", at=NOW - 40 * DAY), answer("new")
    new().record_answers([old, recent], "w1", NOW, KEEP)
    new().put_feedback(FeedbackRow("old", "ka", NOW, 0.0, "", "", "api"), old, KEEP)
    state = new()
    state.purge_answers(NOW - KEEP)
    assert state.find_answer("old", "ka", NOW - KEEP) is None
    if isinstance(state, EmbeddedState):  # Redis lets the keys expire by themselves
        assert state.find_answer("old", "ka", 0.0) is None
    assert state.find_answer("new", "ka", NOW - KEEP) == recent
    assert state.quality_counts(NOW - KEEP) == [("L1", "checkout", "m", 1, 1, 0, 0.0)]
