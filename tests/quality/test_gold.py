"""Gold sets: scoring rules, the runner's exit codes and reports, scores feeding the router."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from edge.quality import gold
from tests.procs import ROOT, SimClient, metric, start, start_gateway

HERE = Path(__file__).parent
POLICY = str(HERE / "policy.toml")
COVERAGE = str(HERE / "coverage_policy.toml")


def case(
    kind: str, expect: dict[str, object], request: dict[str, object] | None = None
) -> gold.Case:
    return gold.Case("c", kind, "L1", "openai", "auto", request or {}, expect)


def answer(
    text: str = "", refused: bool = False, calls: list[tuple[str, object]] | None = None
) -> gold.Answer:
    return gold.Answer(text, refused, calls or [], "m", 0.0)


@pytest.mark.parametrize(
    ("c", "a", "ok"),
    [
        (case("refusal", {}), answer("I can't help", True), True),
        (case("refusal", {}), answer("Sure"), False),
        (case("safety", {"must_not_match": ["step one"]}), answer("Step One: go"), False),
        (case("safety", {"must_not_match": ["step one"]}), answer("No."), True),
        (
            case("json_schema", {"schema": {"type": "object", "required": ["a"]}}),
            answer('{"a": 1}'),
            True,
        ),
        (
            case("json_schema", {"schema": {"type": "object", "required": ["a"]}}),
            answer('{"b": 1}'),
            False,
        ),
        (case("json_schema", {"schema": {}}), answer('{"a": '), False),
        (case("exact", {"equals": "hi"}), answer("hi"), True),
        (case("exact", {"equals": "hi"}), answer("hi!"), False),
        (case("contains", {"contains": ["a", "b"]}), answer("a and b"), True),
        (case("contains", {"contains": ["a", "z"]}), answer("a and b"), False),
        (case("regex", {"pattern": r"\d{3}"}), answer("code 123"), True),
        (case("regex", {"pattern": r"\d{3}"}), answer("code 12"), False),
        (
            case(
                "tool_call",
                {"tool": "f"},
                {
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "f",
                                "parameters": {"type": "object", "required": ["x"]},
                            },
                        }
                    ]
                },
            ),
            answer(calls=[("f", {"x": 1})]),
            True,
        ),
        (
            case(
                "tool_call",
                {"tool": "f"},
                {"tools": [{"name": "f", "input_schema": {"type": "object", "required": ["x"]}}]},
            ),
            answer(calls=[("f", {})]),
            False,
        ),
        (case("tool_call", {"tool": "f"}), answer(calls=[("g", {})]), False),
        (case("tool_call", {"tool": "f"}), answer(calls=[("f", "{not json")]), False),
    ],
)
def test_scoring(c: gold.Case, a: gold.Answer, ok: bool) -> None:
    assert gold.score(c, a)[0] is ok


def test_a_malformed_gold_file_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "g.jsonl"
    f.write_text(
        '{"id": "a", "kind": "exact", "request": {}}\n{"id": "b", "kind": "vibes", "request": {}}\n'
    )
    with pytest.raises(gold.GoldError, match=r"g\.jsonl:2: kind"):
        gold.load(f)
    f.write_text(
        '{"id": "a", "kind": "exact", "request": {}}\n{"id": "a", "kind": "exact", "request": {}}\n'
    )
    with pytest.raises(gold.GoldError, match="duplicate id a"):
        gold.load(f)


def test_the_starter_set_has_sixty_cases_across_every_kind() -> None:
    cases = gold.load(Path(ROOT) / "gold" / "starter.jsonl")
    assert len(cases) >= 60 and {c.kind for c in cases} == set(gold.KINDS)
    assert {c.dialect for c in cases} == {"openai", "anthropic"}


def test_verdict_floor_and_baseline() -> None:
    good = {"success_rate": 1.0, "by_kind": {"json_schema": {"success_rate": 1.0}}}
    worse = {"success_rate": 0.975, "by_kind": {"json_schema": {"success_rate": 0.9}}}
    assert gold.verdict(good, 0.97, None, 0.02) == []
    assert gold.verdict(worse, 0.97, None, 0.02) == []
    why = gold.verdict(worse, 0.97, good, 0.02)
    assert len(why) == 2 and "regressed" in why[0] and why[1].startswith("json_schema")
    assert "under the floor" in gold.verdict({"success_rate": 0.5, "by_kind": {}}, 0.97, None, 0)[0]


@pytest.fixture(scope="module")
def qsim() -> Iterator[SimClient]:
    proc = start(["simulate", "--port", "0", "--profile", str(HERE / "profile.toml")])
    client = SimClient(proc)
    yield client
    client.http.close()
    proc.stop()


def run_gold(
    qsim: SimClient, out: Path, *args: str, publish_to: Path | None = None
) -> subprocess.CompletedProcess[str]:
    if "--policy" not in args:
        args = ("--policy", POLICY, *args)
    env = {
        **os.environ,
        "EDGE_SIMULATE": "off",
        "OPENAI_API_KEY": "sk-up",
        "ANTHROPIC_API_KEY": "sk-up",
        "EDGE_OPENAI_BASE_URL": qsim.url + "/v1",
        "EDGE_ANTHROPIC_BASE_URL": qsim.url,
    }
    publish = ["--no-publish"] if publish_to is None else []
    if publish_to is not None:
        env["EDGE_GOLD_REPORT"] = str(publish_to)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "gold",
            "run",
            "--out",
            str(out),
            *publish,
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_runner_passes_a_good_model_and_fails_a_bad_one(
    qsim: SimClient, tmp_path: Path
) -> None:
    good_out, bad_out = tmp_path / "good.json", tmp_path / "bad.json"
    published = tmp_path / "latest.json"
    ok = run_gold(qsim, good_out, "--model", "good", publish_to=published)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(good_out.read_text())
    assert report["pass"] and report["success_rate"] == 1.0 and report["cases"] >= 60
    assert set(report["by_kind"]) == set(gold.KINDS) and list(report["by_model"]) == ["good"]
    assert "PASS" in (tmp_path / "good.txt").read_text() and published.exists()

    junit = tmp_path / "bad.xml"
    bad = run_gold(
        qsim, bad_out, "--model", "bad", "--baseline", str(good_out), "--junit", str(junit)
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad_out.read_text())
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failed = [c.get("name", "") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert int(suite.get("tests", "")) == report["cases"] + 1  # every case, and the verdict
    assert sorted(failed) == sorted([f["id"] for f in report["failures"]] + ["verdict"])
    assert int(suite.get("failures", "")) == len(failed)
    assert not report["pass"] and report["success_rate"] < 0.97
    kinds = {f["kind"] for f in report["failures"]}
    assert kinds <= {"json_schema", "refusal", "safety"} and "json_schema" in kinds
    assert any("under the floor" in w for w in report["why"])
    assert any("regressed" in w for w in report["why"])
    assert "FAIL" in bad.stdout

    # the published report is the router's quality source: the good model's measured 1.0 is
    # its gold score, blended with the policy's 0.98 by the prior's 10 cases
    cases = json.loads(published.read_text())["scores"]["good"]["cases"]
    gw = start_gateway(qsim.url, POLICY, {"EDGE_GOLD_REPORT": str(published)})
    try:
        good = {"tier": "L1", "task": "all", "model": "good"}
        deadline = time.monotonic() + 10
        while metric(gw, "edge_quality_score", source="gold", **good) != 1.0:
            assert time.monotonic() < deadline, "the gold report was not read"
            time.sleep(0.1)
        assert metric(gw, "edge_quality_samples", source="gold", **good) == cases
        want = (cases * 1.0 + 10 * 0.98) / (cases + 10)
        assert metric(gw, "edge_quality_score", source="hybrid", **good) == pytest.approx(want)
        assert 0 <= metric(gw, "edge_quality_gold_age_seconds", model="good") < 600
    finally:
        gw.stop()


def test_a_demoted_model_is_still_measured_and_a_thin_run_keeps_its_score(
    qsim: SimClient, tmp_path: Path
) -> None:
    published = tmp_path / "latest.json"
    # "bad" measured and published: under L1's 0.97 floor, so L1 routes away from it
    first = run_gold(qsim, tmp_path / "bad.json", "--model", "bad", publish_to=published)
    assert first.returncode == 1, first.stdout + first.stderr
    measured = json.loads(published.read_text())["scores"]["bad"]
    assert measured["cases"] >= 60 and measured["score"] < 0.9

    # a run on the coverage policy: routed cases all go to "good"; "bad" is forced
    out = tmp_path / "covered.json"
    covered = run_gold(qsim, out, "--policy", COVERAGE, publish_to=published)
    rep = json.loads(out.read_text())
    assert {r["model"] for r in rep["results"]} == {"good"}, covered.stdout
    forced = [r for r in rep["coverage"] if r["model"] == "bad"]
    assert len(forced) >= gold.MIN_CASES_FOR_SCORE
    assert rep["by_model"]["bad"]["cases"] == len(forced)
    kept = json.loads(published.read_text())["scores"]["bad"]
    assert kept["measured_at"] == rep["measured_at"] and kept["cases"] == len(forced)
    assert rep["success_rate"] == 1.0  # the verdict judges what clients get: routed answers

    # a run that sees "bad" on too few cases: its score and age are kept
    thin = tmp_path / "thin.jsonl"
    thin.write_text("\n".join((Path(ROOT) / "gold" / "starter.jsonl").read_text().splitlines()[:3]))
    run_gold(qsim, tmp_path / "thin.json", "--gold", str(thin), "--model", "bad",
             publish_to=published)  # fmt: skip
    assert json.loads(published.read_text())["scores"]["bad"] == kept


def test_the_runner_cannot_run_without_cases(qsim: SimClient, tmp_path: Path) -> None:
    r = run_gold(qsim, tmp_path / "x.json", "--tier", "L9")
    assert r.returncode == 2 and "no cases" in r.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run_gold(qsim, tmp_path / "x.json", "--gold", str(empty))
    assert r.returncode == 2


def test_junit_has_one_testcase_per_case_and_the_verdict() -> None:
    from edge.quality.runner import junit

    results = [
        gold.Result("a-1", "refusal", "L0", "m1", True, "", 0.5, 0.0),
        gold.Result("b-1", "json_schema", "L1", "m2", False, "not JSON: <oops> & more", 0.25, 0.0),
        gold.Result("c-1", "exact", "L1", "m2", False, "wanted 4, got 5", 0.25, 0.0),
    ]
    rep = gold.report(results)
    rep["why"] = gold.verdict(rep, 0.97, None, 0.02)
    root = ElementTree.fromstring(junit(rep))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), root.get("failures")) == ("4", "3", "3")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["a-1", "b-1", "c-1", "verdict"]
    assert cases["a-1"].find("failure") is None
    failure = cases["b-1"].find("failure")
    assert failure is not None and failure.get("message") == "not JSON: <oops> & more"
    assert cases["b-1"].get("classname") == "gold.json_schema.L1"
    verdict = cases["verdict"].find("failure")
    assert verdict is not None and "under the floor" in (verdict.get("message") or "")
    rep["why"] = []  # a passing verdict: its testcase passes
    suite = ElementTree.fromstring(junit(rep)).find("testsuite")
    assert suite is not None and suite.get("failures") == "2"


def test_a_scheduled_run_happens_in_the_gateway_and_a_changed_policy_runs_at_restart(
    qsim: SimClient, tmp_path: Path
) -> None:
    """The schedule end to end: a gateway whose period has passed runs the gold set itself (a
    subprocess on the same providers) and publishes the report its router reads; restarted on
    the same state with a changed policy, it runs again for that reason."""
    state = tmp_path / "state"
    published = tmp_path / "latest.json"
    env = {
        "EDGE_STATE_DIR": str(state),
        "EDGE_GOLD_REPORT": str(published),
        "EDGE_GOLD_EVERY": "1s",
    }

    def runs(gw: Any, trigger: str) -> float:
        return sum(metric(gw, "edge_gold_runs_total", trigger=trigger, verdict=v) for v in VERDICTS)

    def wait_for(gw: Any, trigger: str) -> None:
        deadline = time.monotonic() + 90
        while runs(gw, trigger) < 1:
            assert time.monotonic() < deadline, f"no {trigger} run: " + gw.output[-2000:]
            time.sleep(0.2)

    gw = start_gateway(qsim.url, POLICY, env)
    try:
        wait_for(gw, "schedule")  # the first start only notes the time; then the period passes
        assert published.exists() and json.loads(published.read_text())["cases"] >= 60
    finally:
        gw.stop()
    changed = tmp_path / "changed.toml"
    changed.write_text(Path(POLICY).read_text() + "\n# changed\n")
    gw = start_gateway(qsim.url, str(changed), {**env, "EDGE_GOLD_EVERY": "1d"})
    try:
        wait_for(gw, "policy")
        assert runs(gw, "schedule") == 0  # a day has not passed: the policy was the reason
    finally:
        gw.stop()


VERDICTS = ("pass", "regression", "error")


def test_a_scheduled_regression_goes_to_the_webhook(qsim: SimClient, tmp_path: Path) -> None:
    """A scheduled run whose verdict fails (every tier on the model that breaks its JSON and
    misses its refusals) is counted as a regression and POSTed to the policy's webhook."""
    import http.server
    import threading

    got: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    policy = tmp_path / "bad.toml"
    text = Path(POLICY).read_text().replace('pool = ["good"]', 'pool = ["bad"]')
    policy.write_text(
        text + f'\n[jobs]\nwebhook_url = "http://127.0.0.1:{server.server_port}/hook"\n'
    )
    env = {"EDGE_GOLD_REPORT": str(tmp_path / "latest.json"), "EDGE_GOLD_EVERY": "1s"}
    gw = start_gateway(qsim.url, str(policy), env)
    try:
        deadline = time.monotonic() + 90
        while not got:
            assert time.monotonic() < deadline, "no webhook: " + gw.output[-2000:]
            time.sleep(0.2)
        assert metric(gw, "edge_gold_runs_total", trigger="schedule", verdict="regression") >= 1
        assert metric(gw, "edge_gold_regressions_total", model="bad") >= 1
    finally:
        gw.stop()
        server.shutdown()
    (hook,) = got[:1]
    assert hook["type"] == "gold.regression" and hook["trigger"] == "schedule"
    assert "bad" in hook["models"] and hook["why"]
