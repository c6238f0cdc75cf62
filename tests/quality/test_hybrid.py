"""The hybrid score (blend and shrinkage), task labels, online checks, feedback bodies, stable
gold scores and coverage, and the router's per-tier quality: pure functions, no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import InvalidRequest
from edge.policy import load_policy
from edge.quality import gold
from edge.quality.feedback import check_feedback
from edge.quality.hybrid import (
    Evidence,
    GoldScore,
    QualityConfig,
    blend,
    counts_of,
    routing,
    shrunk,
    table,
)
from edge.quality.online import check_answer
from edge.quality.tasks import task_of
from edge.routing.decide import Router

CFG = QualityConfig()  # weights 0.5 / 0.2 / 0.3, priors 10 / 50 / 20 pseudo-observations


def test_no_evidence_is_the_prior() -> None:
    assert blend(0.9, {}, CFG) == 0.9
    assert blend(0.9, {"human": Evidence(0, 0)}, CFG) == 0.9


def test_one_source_is_its_shrunk_mean() -> None:
    # gold alone: (n*m + k*p) / (n + k) = (20*0.5 + 10*0.9) / 30
    ev = {"gold": Evidence(20, 10)}
    assert blend(0.9, ev, CFG) == pytest.approx((10 + 9) / 30, abs=1e-15)
    # a measured bad score is not diluted by sources without data
    assert blend(0.9, ev, CFG) < 0.65


def test_small_counts_barely_move_a_score() -> None:
    one_bad = shrunk(0.9, Evidence(1, 0.0), CFG.prior_human)
    assert one_bad == pytest.approx(18 / 21)  # one thumbs-down: 0.9 -> 0.857
    many_bad = shrunk(0.9, Evidence(1000, 0.0), CFG.prior_human)
    assert many_bad == pytest.approx(18 / 1020) and many_bad < 0.02


def test_the_blend_weighs_each_source_by_weight_and_confidence() -> None:
    p = 0.8
    ev = {"gold": Evidence(40, 36), "online": Evidence(100, 95), "human": Evidence(5, 2)}
    q = {
        "gold": (36 + 10 * p) / 50,
        "online": (95 + 50 * p) / 150,
        "human": (2 + 20 * p) / 25,
    }
    a = {"gold": 0.5 * 40 / 50, "online": 0.2 * 100 / 150, "human": 0.3 * 5 / 25}
    want = sum(a[s] * q[s] for s in q) / sum(a.values())
    assert blend(p, ev, CFG) == pytest.approx(want, abs=1e-15)


def test_weights_and_priors_come_from_the_policy() -> None:
    only_human = QualityConfig(weight_gold=0.0, weight_online=0.0, prior_human=0.0)
    ev = {"gold": Evidence(50, 0), "online": Evidence(50, 0), "human": Evidence(2, 1.5)}
    assert blend(0.9, ev, only_human) == 0.75  # no shrinkage, the human mean alone


def test_the_table_has_tier_level_rows_and_task_rows() -> None:
    counts = counts_of(
        [
            ("L1", "checkout", "m", 10, 9, 2, 1.0),
            ("L1", "other", "m", 30, 30, 0, 0.0),
            ("L9", "checkout", "m", 5, 5, 0, 0.0),  # a tier the policy no longer has
        ]
    )
    rows = table(
        {"L1": ["m", "n"]}, {"m": 0.9, "n": 0.7}, {"n": GoldScore(1.0, 20, 0.0)}, counts, CFG
    )
    by = {(r.tier, r.task, r.model): r for r in rows}
    assert set(by) == {("L1", "all", "m"), ("L1", "all", "n"), ("L1", "checkout", "m"),
                       ("L1", "other", "m")}  # fmt: skip
    tier_m = by[("L1", "all", "m")]
    assert (tier_m.evidence["online"].n, tier_m.evidence["online"].total) == (40, 39)
    assert (tier_m.evidence["human"].n, tier_m.evidence["human"].total) == (2, 1.0)
    assert by[("L1", "all", "n")].hybrid == pytest.approx((20 + 7) / 30)
    assert routing(rows) == {"L1": {"m": tier_m.hybrid, "n": by[("L1", "all", "n")].hybrid}}


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, "none"),
        (b"checkout", "checkout"),
        (b"Checkout", "checkout"),
        (b"tagging.v2", "other"),
    ],
)
def test_task_labels_are_bounded(header: bytes | None, want: str) -> None:
    assert task_of(("checkout",), header) == want


@pytest.mark.parametrize("header", [b"", b"a b", b"x" * 65, b"-lead", "caf\u00e9".encode()])
def test_a_malformed_task_label_is_a_400_naming_the_header(header: bytes) -> None:
    with pytest.raises(InvalidRequest) as err:
        task_of(("checkout",), header)
    assert err.value.param == "x-edge-task"


@pytest.mark.parametrize(
    ("text", "tools", "finish", "json_asked", "want"),
    [
        ("Paris.", [], "stop", False, "ok"),
        ('{"a": 1}', [], "stop", True, "ok"),
        ('{"a": ', [], "stop", True, "json"),
        ("", ['{"city": "Paris"}'], "tool_calls", False, "ok"),
        ("", [""], "tool_calls", False, "ok"),  # no arguments: {}
        ("", ['{"city": '], "tool_calls", False, "tool_args"),
        ("  ", [], "stop", False, "empty"),
        ("Paris is", [], "length", False, "length"),
        ("I can't help with that.", [], "stop", False, "refusal"),
        ("Sure.", [], "content_filter", False, "refusal"),
    ],
)
def test_online_checks(
    text: str, tools: list[str], finish: str, json_asked: bool, want: str
) -> None:
    assert check_answer(text, tools, finish, json_asked, CFG.online_checks) == want


def test_online_checks_the_policy_leaves_out_do_not_count() -> None:
    assert check_answer("I cannot do that", [], "stop", False, ("json", "empty")) == "ok"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": "a b", "score": 1}, "request_id"),
        ({"request_id": "r"}, "score"),
        ({"request_id": "r", "score": 1, "thumbs": "up"}, "score"),
        ({"request_id": "r", "score": 1.5}, "score"),
        ({"request_id": "r", "score": True}, "score"),
        ({"request_id": "r", "score": "1"}, "score"),
        ({"request_id": "r", "thumbs": "sideways"}, "thumbs"),
        ({"request_id": "r", "score": 1, "label": "x" * 65}, "label"),
        ({"request_id": "r", "score": 1, "comment": "x" * 2001}, "comment"),
        ({"request_id": "r", "score": 1, "rating": 5}, "rating"),
    ],
)
def test_bad_feedback_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_feedback(body)
    assert err.value.param == param and err.value.status == 400


def test_thumbs_are_one_and_zero() -> None:
    assert check_feedback({"request_id": "r", "thumbs": "up"}).score == 1.0
    assert check_feedback({"request_id": "r", "thumbs": "down", "label": "wrong"}).score == 0.0


def _report(by_model: dict[str, tuple[int, float]]) -> dict[str, Any]:
    return {"by_model": {m: {"cases": n, "success_rate": r} for m, (n, r) in by_model.items()}}


def test_a_gold_score_is_kept_when_a_run_has_too_few_cases() -> None:
    first = gold.stable_scores({}, _report({"a": (40, 0.5), "b": (30, 1.0)}), 100.0)
    assert first["a"] == {"score": 0.5, "cases": 40, "measured_at": 100.0}
    # a run that saw "a" on 3 cases only: its 1.0 is no measurement; "b" is measured again
    second = gold.stable_scores(first, _report({"a": (3, 1.0), "b": (12, 0.75)}), 200.0)
    assert second["a"] == {"score": 0.5, "cases": 40, "measured_at": 100.0}
    assert second["b"] == {"score": 0.75, "cases": 12, "measured_at": 200.0}
    kept = gold.kept_scores({"scores": second})
    assert kept["a"] == GoldScore(0.5, 40, 100.0)


def test_coverage_forces_the_routed_cases_on_models_measured_too_little() -> None:
    cases = [gold.Case(f"c{i}", "exact", "L1", "openai", "auto", {}, {}) for i in range(12)]
    cases.append(gold.Case("named", "exact", "L1", "openai", "x", {}, {}))
    routed = [gold.Result(c.id, c.kind, c.tier, "good", True, "", 0.0, 0.0) for c in cases]
    forced = gold.coverage(cases, routed, {"L1": ("good", "demoted")})
    assert [c.model for c in forced] == ["demoted"] * 12  # every routed case, by name
    assert gold.coverage(cases, routed, {"L1": ("good",)}) == []


def test_each_tier_routes_on_its_own_quality() -> None:
    policy = load_policy("", {})
    r = Router(policy)
    hello = [b"What is the capital of France?"]
    assert r.decide(policy.tiers["L1"], None, hello, 1, 0, 512).order[0].name == "gpt-4o-mini"
    # L1's hybrid says gpt-4o-mini is under L1's floor; L2 keeps the per-model score
    r.set_quality({}, {"L1": {"gpt-4o-mini": 0.5}})
    assert r.decide(policy.tiers["L1"], None, hello, 1, 0, 512).order[0].name != "gpt-4o-mini"
    l2 = r.decide(policy.tiers["L2"], None, hello, 1, 0, 512)
    assert "gpt-4o-mini" in [m.name for m in l2.order]
    r.set_quality({}, {})
    assert r.decide(policy.tiers["L1"], None, hello, 1, 0, 512).order[0].name == "gpt-4o-mini"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "I can't",
                "I can\u2019t",
                "I cannot",
                "I won't",
                "I will not",
                "I'm not able to",
                "I am unable to",
                "I am not able to",
                "can't help",
                "cannot assist",
                "unable to help",
                "Sure",
                "here is",
                "the answer",
                "helpful",
                "I",
                "am",
                "not",
                " ",
                ".",
            ]
        ),
        max_size=12,
    ).map(" ".join)
)
def test_the_refusal_prefilter_never_changes_the_verdict(text: str) -> None:
    from edge.quality.gold import REFUSAL
    from edge.quality.online import _refuses

    assert _refuses(text) == (REFUSAL.search(text) is not None)
