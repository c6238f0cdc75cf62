"""Command line: ``llm-edge serve`` and ``llm-edge simulate``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from edge.simulate.behaviour import ProfileError, load_profile, preset_names


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
