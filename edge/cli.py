"""Command line: ``llm-edge serve | simulate | jobs | spend``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from edge.simulate.behaviour import ProfileError, load_profile, preset_names

if TYPE_CHECKING:
    from edge.state.types import State


def _simulate(args: argparse.Namespace) -> int:
    import uvloop

    from edge.simulate.server import start

    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"llm-edge simulate: {exc}", file=sys.stderr)
        return 2

    tls = None
    if args.tls_cert:
        import ssl

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key or None)

    async def main() -> None:
        server, _ = await start(args.host, args.port, profile, reuse_port=args.reuse_port, tls=tls)
        port = server.sockets[0].getsockname()[1]
        scheme = "https" if tls else "http"
        print(
            f"llm-edge simulate: simulated OpenAI + Anthropic providers on {scheme}://{args.host}:{port} "
            f"(profile {profile.name})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    uvloop.run(main())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from edge.server.serve import run
    from edge.settings import SettingsError, load_settings

    try:
        settings = load_settings(
            host=args.host, port=args.port, workers=args.workers, policy=args.policy
        )
    except SettingsError as exc:
        print(f"llm-edge serve: cannot start: {exc}", file=sys.stderr)
        return 2
    return run(settings)


def _state(args: argparse.Namespace) -> State:
    """The state the gateway uses: EDGE_REDIS_URL, else EDGE_STATE_DIR (``--state-dir`` wins)."""
    from edge.settings import load_settings
    from edge.state import open_state

    settings = load_settings()
    if args.state_dir:
        return open_state(args.state_dir)
    return open_state(settings.state_dir, settings.redis_url)


def _jobs(args: argparse.Namespace) -> int:
    """``llm-edge jobs list|show|retry``: the queue in EDGE_STATE_DIR, read directly."""
    import time

    import orjson

    state = _state(args)
    try:
        if args.action == "list":
            rows = state.list_jobs(args.status, args.limit)
            print(f"{'id':<28} {'status':<10} {'tier':<5} {'dialect':<10} {'tries':>5}  created")
            for r in rows:
                created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"]))
                print(
                    f"{r['id']:<28} {r['status']:<10} {r['tier']:<5} {r['dialect']:<10} "
                    f"{r['attempts']:>5}  {created}Z"
                )
            return 0
        if not args.id:
            print(f"llm-edge jobs {args.action}: a job id is required", file=sys.stderr)
            return 2
        job = state.get_job(args.id)
        if job is None:
            print(f"llm-edge jobs: no job {args.id}", file=sys.stderr)
            return 1
        if args.action == "show":
            shown = {k: v for k, v in job.items() if k not in ("body", "result_body")}
            shown["result"] = orjson.loads(job["result_body"]) if job["result_body"] else None
            print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
            return 0
        if not state.requeue_job(args.id, time.time()):
            print(
                f"llm-edge jobs retry: job {args.id} is {job['status']}; "
                "only failed or cancelled jobs are retried",
                file=sys.stderr,
            )
            return 1
        print(f"{args.id} queued again")
        return 0
    finally:
        state.close()


def _spend(args: argparse.Namespace) -> int:
    """``llm-edge spend``: spend and tokens by tenant, tier, provider, model, since a day."""
    import time

    from edge.state.types import periods

    state = _state(args)
    try:
        since = args.since or periods(time.time())[0][4:]
        rows = state.spend_report(since)
    finally:
        state.close()
    print(f"spend since {since} (UTC)")
    print(
        f"{'tenant':<14} {'tier':<5} {'provider':<10} {'model':<22} {'kind':<7} "
        f"{'requests':>8} {'input':>9} {'cached':>8} {'output':>9} {'usd':>12}"
    )
    total = 0.0
    for r in rows:
        total += r["cost_usd"] or 0.0
        print(
            f"{r['tenant']:<14} {r['tier']:<5} {r['provider']:<10} {r['model']:<22} {r['kind']:<7} "
            f"{r['requests']:>8} {r['input_tokens']:>9} {r['cache_read_tokens']:>8} "
            f"{r['output_tokens']:>9} {r['cost_usd']:>12.6f}"
        )
    print(f"{'total':<98} {total:>12.6f}")
    return 0


def _feedback(args: argparse.Namespace) -> int:
    """``llm-edge feedback import FILE.jsonl``: feedback from a labelling tool, in a batch."""
    import time

    from edge.policy import PolicyError, load_policy
    from edge.quality.feedback import import_lines
    from edge.settings import SettingsError, load_settings

    try:
        policy = load_policy(args.policy or load_settings().policy)
        with open(args.file) as f:
            lines = f.read().splitlines()
    except (PolicyError, SettingsError) as exc:
        print(f"llm-edge feedback: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"llm-edge feedback: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    state = _state(args)
    try:
        result = import_lines(state, policy.quality, lines, time.time())
    finally:
        state.close()
    invalid = result.invalid or []
    print(
        f"feedback import {args.file}: {result.accepted} accepted ({result.replaced} replacing "
        f"an earlier one), {result.unknown} unknown (no answer with that id within "
        f"{policy.quality.retention_days:g} days), {len(invalid)} invalid"
    )
    for why in invalid[:50]:
        print(f"  invalid {why}", file=sys.stderr)
    return 1 if invalid else 0


def _policy_check(args: argparse.Namespace) -> int:
    """Validate a policy with this environment's overrides and print what it resolves to."""
    import json
    import os

    from edge.policy import BREAKER_KEYS, PolicyError, env_names, load_policy
    from edge.routing.capabilities import names_of
    from edge.settings import unknown_names

    try:
        policy = load_policy(args.file)
        if typos := unknown_names(os.environ, env_names(policy)):
            raise PolicyError(f"unknown EDGE_* variables: {', '.join(typos)}")
    except PolicyError as exc:
        print(f"llm-edge policy check: {exc}", file=sys.stderr)
        return 2
    resolved = {
        "default_tier": policy.default_tier,
        "prices_date": policy.prices_date,
        "providers": {
            n: {"kind": p.kind, "base_url": p.base_url, "key_set": bool(p.api_key)}
            for n, p in policy.providers.items()
        },
        "models": {
            n: {
                "provider": m.provider,
                "usd_per_mtok": [m.input_usd_per_mtok, m.output_usd_per_mtok],
                "quality": m.quality,
                "context_window": m.context_window,
                "max_output_tokens": m.max_output_tokens,
                "tokenizer": m.tokenizer,
                "capabilities": names_of(m.capabilities),
                "aliases": list(m.aliases),
                "fallbacks": list(m.fallbacks),
            }
            for n, m in policy.models.items()
        },
        "tiers": {n: {k: getattr(t, k) for k in t.__slots__} for n, t in policy.tiers.items()},
        "budgets": {n: {k: getattr(b, k) for k in b.__slots__} for n, b in policy.budgets.items()},
        "breakers": {k: getattr(policy.breakers, k) for k in BREAKER_KEYS},
    }
    print(json.dumps(resolved, indent=2, default=list))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-edge", description="LLM routing gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the gateway (settings from EDGE_* variables; flags override)"
    )
    serve.add_argument("--host", default=None, help="listen address (EDGE_HOST, default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=None, help="listen port (EDGE_PORT, default 8080)"
    )
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (EDGE_WORKERS, default 1)"
    )
    serve.add_argument(
        "--policy", default=None, help="policy TOML (EDGE_POLICY, default: the shipped policy)"
    )
    serve.set_defaults(func=_serve)
    sim = sub.add_parser("simulate", help="run the simulated OpenAI + Anthropic providers")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument(
        "--profile",
        default="default",
        help=f"preset name ({', '.join(preset_names())}) or a TOML file",
    )
    sim.add_argument(
        "--reuse-port", action="store_true", help="share the port with other processes"
    )
    sim.add_argument("--tls-cert", default="", help="serve HTTPS with this certificate (PEM)")
    sim.add_argument(
        "--tls-key", default="", help="the certificate's private key (PEM), if not in --tls-cert"
    )
    sim.set_defaults(func=_simulate)
    jobs = sub.add_parser("jobs", help="the async job queue (EDGE_STATE_DIR)")
    jobs.add_argument("action", choices=["list", "show", "retry"])
    jobs.add_argument("id", nargs="?", default="")
    jobs.add_argument("--status", default=None, help="list only jobs in this status")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--state-dir", default="", help="default: EDGE_STATE_DIR")
    jobs.set_defaults(func=_jobs)
    spend = sub.add_parser("spend", help="spend by tenant, tier, provider and model")
    spend.add_argument("--since", default="", help="first UTC day, YYYY-MM-DD (default today)")
    spend.add_argument("--state-dir", default="", help="default: EDGE_STATE_DIR")
    spend.set_defaults(func=_spend)
    feedback = sub.add_parser(
        "feedback", help="feedback import FILE.jsonl: human feedback from a labelling tool"
    )
    feedback.add_argument("action", choices=["import"])
    feedback.add_argument(
        "file", help="JSONL, a line per answer: request_id, score or thumbs, label, comment"
    )
    feedback.add_argument("--policy", default="", help="default: EDGE_POLICY (its [quality])")
    feedback.add_argument("--state-dir", default="", help="default: EDGE_STATE_DIR")
    feedback.set_defaults(func=_feedback)
    check = sub.add_parser(
        "policy", help="policy check FILE: validate a policy (with EDGE_* overrides), print it"
    )
    check.add_argument("action", choices=["check"])
    check.add_argument("file", nargs="?", default="", help="default: the shipped policy")
    check.set_defaults(func=_policy_check)
    from edge.quality.runner import add_parser as add_gold
    from edge.quality.runner import add_rollout_parser

    add_gold(sub)
    add_rollout_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
