"""``llm-edge gold run``: a gold set through a gateway, a report, an exit code.

With ``--gateway URL`` the cases go to a running gateway; otherwise one is
started for the run with ``--policy`` (its providers from the environment,
simulated when no key is set), on a free port, with a state of its own.
Exit codes: 0 passed, 1 under the floor or regressed, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from edge.quality import gold

DEFAULT_GOLD = os.environ.get("EDGE_GOLD_SET") or str(
    Path(__file__).resolve().parent.parent.parent / "gold" / "starter.jsonl"
)


def start_gateway(policy: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """A gateway of its own for the run, with a key entitled to the policy's highest tier (a
    gold set covers every tier)."""
    from edge.policy import load_policy

    tiers = load_policy(policy).tiers
    top = min(tiers.values(), key=lambda t: t.rank).name if tiers else ""
    key = "sk-gold-" + secrets.token_hex(8)
    fd, log_path = tempfile.mkstemp(prefix="gold-gateway-", suffix=".log")
    env = {
        **os.environ,
        "EDGE_PORT": "0",
        "EDGE_HOST": "127.0.0.1",
        "EDGE_WORKERS": "1",
        "EDGE_KEYS": f"{key}={top}" if top else key,
        "EDGE_ACCESS_LOG": "off",
        "EDGE_STATE_DIR": tempfile.mkdtemp(prefix="gold-state-"),
    }
    if policy:
        env["EDGE_POLICY"] = policy
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "serve"], env=env, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = Path(log_path).read_text(errors="replace")
        m = re.search(r"listening on (http://[\d.]+:\d+)", text)
        if m:
            return proc, m.group(1), key
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the gateway did not start:\n{Path(log_path).read_text()}")


def main(args: argparse.Namespace) -> int:
    from edge.settings import load_settings

    try:
        cases = gold.load(args.gold)
    except (OSError, gold.GoldError) as exc:
        print(f"llm-edge gold: {exc}", file=sys.stderr)
        return 2
    if args.tier:
        cases = [c for c in cases if c.tier == args.tier]
    if not cases:
        print("llm-edge gold: no cases to run", file=sys.stderr)
        return 2
    baseline = None
    if args.baseline:
        try:
            baseline = orjson.loads(Path(args.baseline).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"llm-edge gold: baseline {args.baseline}: {exc}", file=sys.stderr)
            return 2
    pools = {} if args.model else _pools(args.policy)
    proc = None
    try:
        if args.gateway:
            url, key = args.gateway.rstrip("/"), args.key
        else:
            proc, url, key = start_gateway(args.policy)
        results = asyncio.run(gold.run(cases, url, key, args.model or None, args.concurrency))
        # every pool model is measured, routed to or not (a demoted one above all)
        forced = gold.coverage(cases, results, pools)
        covered = asyncio.run(gold.run(forced, url, key, None, args.concurrency)) if forced else []
    except RuntimeError as exc:
        print(f"llm-edge gold: {exc}", file=sys.stderr)
        return 2
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    rep = gold.report(
        results,
        covered,
        gold=str(args.gold),
        policy=args.policy or "(the gateway's)",
        model=args.model or None,
        tier=args.tier or None,
        floor=args.floor,
        baseline=args.baseline or None,
    )
    why = gold.verdict(rep, args.floor, baseline, args.margin)
    rep["why"], rep["pass"] = why, not why
    target = Path(load_settings().gold_report_path)
    # the kept per-model scores: this run's where it measured enough cases, else the published
    # report's (a model this run barely saw keeps its last measured score)
    previous: dict[str, object] = {}
    if args.publish:
        try:
            previous = gold_scores_of(orjson.loads(target.read_bytes()))
        except (OSError, orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
            previous = {}
    rep["scores"] = gold.stable_scores(previous, rep, rep["measured_at"])
    data = orjson.dumps(rep, option=orjson.OPT_INDENT_2)
    Path(args.out).write_bytes(data)
    text = gold.summary(rep)
    Path(args.out).with_suffix(".txt").write_text(text + "\n")
    if args.publish:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)  # the gateways watching it never read half a report
    if args.junit:
        Path(args.junit).write_bytes(junit(rep))
    print(text)
    print(f"report: {args.out}")
    return 0 if not why else 1


def junit(rep: dict[str, Any]) -> bytes:
    """The report as JUnit XML for CI systems: one testcase per routed gold case (class: its
    kind), a failure with its reason; a failed verdict (the floor, a regression) is one more
    failing testcase, ``verdict``, so a CI that counts failures sees the run's result."""
    from xml.etree import ElementTree as ET

    results = rep.get("results", [])
    why = rep.get("why", [])
    failed = sum(1 for r in results if not r["ok"]) + (1 if why else 0)
    suite = ET.Element(
        "testsuite",
        name="llm-edge gold",
        tests=str(len(results) + 1),
        failures=str(failed),
        errors="0",
        time=f"{sum(r['latency_s'] for r in results):.3f}",
        timestamp=str(rep.get("created", "")),
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"gold.{r['kind']}.{r['tier']}",
            name=str(r["id"]),
            time=f"{r['latency_s']:.3f}",
        )
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="model", value=str(r["model"]))
        if not r["ok"]:
            failure = ET.SubElement(case, "failure", message=str(r["why"])[:500], type=r["kind"])
            failure.text = (
                f"{r['id']} ({r['kind']}, tier {r['tier']}, model {r['model']}): {r['why']}"
            )
    verdict = ET.SubElement(suite, "testcase", classname="gold", name="verdict", time="0")
    if why:
        ET.SubElement(
            verdict, "failure", message="; ".join(why)[:500], type="verdict"
        ).text = "\n".join(why)
    root = ET.Element("testsuites", name="llm-edge gold", tests=suite.get("tests", "0"))
    root.set("failures", str(failed))
    root.append(suite)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def gold_scores_of(rep: dict[str, Any]) -> dict[str, Any]:
    """A published report's kept scores, as the report stores them."""
    return {
        m: {"score": g.score, "cases": g.cases, "measured_at": g.measured_at}
        for m, g in gold.kept_scores(rep).items()
    }


def _pools(policy_path: str) -> dict[str, tuple[str, ...]]:
    """Each tier's pool in the policy the run judges (``--policy``, else ``EDGE_POLICY``,
    else the shipped one); none when it cannot be read (no coverage then)."""
    from edge.policy import PolicyError, load_policy
    from edge.settings import SettingsError, load_settings

    try:
        policy = load_policy(policy_path or load_settings().policy)
    except (PolicyError, SettingsError) as exc:
        print(f"llm-edge gold: no pool coverage: {exc}", file=sys.stderr)
        return {}
    return {name: tier.pool for name, tier in policy.tiers.items()}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser("gold", help="gold-set regression runs")
    gsub = g.add_subparsers(dest="gold_command", required=True)
    r = gsub.add_parser("run", help="send a gold set through a gateway and score it")
    r.add_argument("--gold", default=DEFAULT_GOLD, help="the gold set (JSONL; EDGE_GOLD_SET)")
    r.add_argument("--policy", default="", help="start a gateway on this policy for the run")
    r.add_argument("--gateway", default="", help="use this running gateway instead")
    r.add_argument("--key", default=os.environ.get("EDGE_GOLD_KEY", ""), help="its gateway key")
    r.add_argument("--tier", default="", help="only the cases of this tier")
    r.add_argument("--model", default="", help="send every case to this model")
    r.add_argument("--baseline", default="", help="an earlier report to compare with")
    r.add_argument("--floor", type=float, default=0.97, help="minimum success rate")
    r.add_argument("--margin", type=float, default=0.02, help="allowed drop from the baseline")
    r.add_argument("--out", default="gold-report.json", help="the JSON report (+ .txt summary)")
    r.add_argument("--concurrency", type=int, default=8)
    r.add_argument("--junit", default="", help="also write JUnit XML (one testcase per case)")
    r.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="do not make this report the router's quality source (EDGE_GOLD_REPORT)",
    )
    r.set_defaults(func=main)


def rollout_main(args: argparse.Namespace) -> int:
    """``llm-edge rollout start|status|pause|resume|promote|abort`` on EDGE_STATE_DIR."""
    from edge.policy import PolicyError, load_policy
    from edge.quality import rollout
    from edge.settings import SettingsError, load_settings
    from edge.state import open_state

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"llm-edge rollout: {exc}", file=sys.stderr)
        return 2
    state = open_state(
        args.state_dir or settings.state_dir, "" if args.state_dir else settings.redis_url
    )
    config = rollout.RolloutConfig(stages=settings.stages)
    now = time.time()
    try:
        if args.action == "start":
            if not args.policy:
                print("llm-edge rollout start: --policy is required", file=sys.stderr)
                return 2
            try:
                load_policy(args.policy)
            except PolicyError as exc:
                print(f"llm-edge rollout start: {exc}", file=sys.stderr)
                return 2
            report = args.gold_report
            if not report:
                # the gold set must pass on the candidate before any traffic sees it
                report = str(Path(state.path).parent / "gold" / f"candidate-{int(now)}.json")
                Path(report).parent.mkdir(parents=True, exist_ok=True)
                gold_run = subprocess.run(
                    [sys.executable, "-m", "edge.cli", "gold", "run", "--policy", args.policy,
                     "--gold", args.gold, "--out", report, "--no-publish"],
                    capture_output=True, text=True,
                )  # fmt: skip
                print(gold_run.stdout, end="")
                if gold_run.returncode != 0:
                    print(
                        "llm-edge rollout start: the gold set did not pass on the candidate; "
                        f"not started (report: {report})\n{gold_run.stderr}",
                        file=sys.stderr,
                    )
                    return 1
            elif not orjson.loads(Path(report).read_bytes()).get("pass"):
                print(
                    f"llm-edge rollout start: {report} did not pass; not started", file=sys.stderr
                )
                return 1
            rollout_id = "ro_" + secrets.token_hex(6)
            state.put_rollout(
                {
                    "id": rollout_id,
                    "created_at": now,
                    "updated_at": now,
                    "status": "running",
                    "policy_path": os.path.abspath(args.policy),
                    "policy_text": Path(args.policy).read_text(),
                    "stage": 0,
                    "stage_started_at": now,
                    "gold": report,
                }
            )
            print(f"{rollout_id} started: {config.stages[0]}% of traffic on {args.policy}")
            return 0
        if args.action == "status":
            print(orjson.dumps(rollout.status(state, config), option=orjson.OPT_INDENT_2).decode())
            return 0
        live = state.live_rollout()
        if live is None:
            print("llm-edge rollout: no live rollout", file=sys.stderr)
            return 1
        event = {"pause": "pause", "resume": "resume", "promote": "promote", "abort": "abort"}[
            args.action
        ]
        target = next(t for (s, e), t in rollout.TRANSITIONS.items() if e == event)
        if not state.move_rollout(
            live["id"], rollout.sources(event), target, now, reason=f"{event} by an operator"
        ):
            print(
                f"llm-edge rollout {args.action}: {live['id']} is {live['status']}", file=sys.stderr
            )
            return 1
        print(f"{live['id']}: {live['status']} -> {target}")
        if target == "promoted":
            print(f"point EDGE_POLICY at {live['policy_path']} before the next restart")
        return 0
    finally:
        state.close()


def add_rollout_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("rollout", help="progressive rollout of a candidate policy")
    r.add_argument("action", choices=["start", "status", "pause", "resume", "promote", "abort"])
    r.add_argument("--policy", default="", help="start: the candidate policy")
    r.add_argument("--gold", default=DEFAULT_GOLD, help="start: the gold set it must pass")
    r.add_argument("--gold-report", default="", help="start: a passing report instead of a run")
    r.add_argument("--state-dir", default="", help="default: EDGE_STATE_DIR")
    r.set_defaults(func=rollout_main)
