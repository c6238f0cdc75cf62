"""``llm-edge serve``: a supervisor and ``EDGE_WORKERS`` worker processes.

The supervisor loads and checks everything first (settings, policy, keys:
a bad value fails the start with a message naming it), reserves the port
with an SO_REUSEPORT socket that never listens, forks the workers, and waits
until each reports it is listening. Each worker binds the same port with
SO_REUSEPORT (the kernel spreads connections), runs uvloop, and serves. A
worker that dies is restarted (with a short backoff if it keeps dying).

SIGHUP reloads the gateway keys (``EDGE_KEYS`` and ``EDGE_KEYS_FILE``): the
supervisor reloads its copy (for workers it forks later) and forwards the
signal; each worker reloads its own, without a restart or a dropped
connection. A file that does not load (or would leave no key) keeps the old
keys and is logged as an error. A worker ignores SIGHUP until its handler is
installed, then reloads once, so a reload sent while it started is not lost.

SIGTERM or SIGINT drains: the supervisor forwards SIGTERM; each worker stops
accepting, closes idle keep-alive connections, lets in-flight requests and
streams finish for up to ``EDGE_DRAIN_S``, then exits. Workers still alive
after that (plus a grace period) are killed.

With no provider key set, every worker starts the simulated providers
in-process and routes to them; the first log line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import select
import shutil
import signal
import socket
import sqlite3
import sys
import time

from edge.observe.log import Log
from edge.policy import Policy, PolicyError, env_names, load_policy
from edge.server.auth import Keyring, KeysError
from edge.settings import Settings, unknown_names
from edge.state import open_state
from edge.state.types import StateUnavailable

SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def load_keys(settings: Settings, policy: Policy) -> Keyring:
    """The gateway keys, checked against the policy's tiers (``KeysError`` when they do not)."""
    keys = Keyring.load(settings.keys, settings.keys_file)
    if unknown := keys.tiers() - set(policy.tiers):
        raise KeysError(
            f"EDGE_KEYS: keys declare tiers the policy does not have: {sorted(unknown)}; "
            f"configured: {sorted(policy.tiers)}"
        )
    return keys


def reload_keys(keys: Keyring, settings: Settings, policy: Policy, log: Log) -> bool:
    """Reload ``keys`` in place; on any error keep them and say so loudly."""
    try:
        fresh = load_keys(settings, policy)
        if fresh.open and not keys.open:
            raise KeysError("no key left (an empty key set would open the gateway)")
    except KeysError as exc:
        log.error(
            "gateway keys NOT reloaded: keeping the previous keys",
            error=str(exc),
            keys_file=settings.keys_file or None,
        )
        return False
    if not keys.same(fresh):
        keys.replace(fresh)
        log.warning("gateway keys reloaded", keys=len(fresh), pid=os.getpid())
    return True


def wants_simulation(settings: Settings, policy: Policy) -> bool:
    if settings.simulate == "on":
        return True
    if settings.simulate == "off":
        return False
    return not any(p.api_key for p in policy.providers.values())


def run(settings: Settings) -> int:
    log = Log(settings.log_level, settings.access_log)
    try:
        policy = load_policy(settings.policy)
        if typos := unknown_names(os.environ, env_names(policy)):
            raise PolicyError(f"unknown EDGE_* variables: {', '.join(typos)}")
        keys = load_keys(settings, policy)
        if settings.simulate != "off":
            from edge.simulate.behaviour import ProfileError, load_profile

            try:
                load_profile(settings.sim_profile)
            except ProfileError as exc:
                raise PolicyError(f"EDGE_SIM_PROFILE: {exc}") from None
        try:
            os.makedirs(settings.state_dir, exist_ok=True)
            open_state(settings.state_dir, settings.redis_url).close()
        except StateUnavailable as exc:
            raise PolicyError(f"EDGE_REDIS_URL: cannot reach the shared state: {exc}") from None
        except (OSError, sqlite3.Error) as exc:
            raise PolicyError(f"EDGE_STATE_DIR {settings.state_dir}: {exc}") from None
    except (PolicyError, KeysError) as exc:
        log.error(f"cannot start: {exc}")
        return 2
    if keys.open and not settings.loopback:
        log.error(
            "cannot start: no gateway keys (EDGE_KEYS / EDGE_KEYS_FILE) and EDGE_HOST is not loopback; "
            "an open gateway would spend your provider budget for anyone who can reach it"
        )
        return 2
    simulate = wants_simulation(settings, policy)
    if simulate:
        log.warning(
            "NO PROVIDER KEYS: serving from the SIMULATED providers (profile "
            f"{settings.sim_profile!r}); answers are generated locally, not by OpenAI or Anthropic. "
            "Set OPENAI_API_KEY / ANTHROPIC_API_KEY to use the real providers."
        )
    else:
        for p in policy.providers.values():
            if not p.api_key:
                log.warning(
                    f"provider {p.name} has no key in {p.api_key_env or '(no api_key_env)'}; its calls go unauthenticated"
                )
    if keys.open:
        log.warning(
            "no gateway keys configured: the gateway is open to every local process (loopback only)"
        )

    # every worker writes its metrics here each second; any worker's /metrics reads them all
    runs = os.path.join(settings.state_dir, "metrics")
    with contextlib.suppress(OSError):
        for old in os.listdir(runs):
            shutil.rmtree(os.path.join(runs, old), ignore_errors=True)
    metrics_dir = os.path.join(runs, f"run-{os.getpid()}")
    os.makedirs(metrics_dir, exist_ok=True)
    settings = dataclasses.replace(settings, metrics_dir=metrics_dir)

    reserve = socket.socket(
        socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM
    )
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserve.bind((settings.host, settings.port))
    except OSError as exc:
        log.error(f"cannot start: cannot bind {settings.host}:{settings.port}: {exc.strerror}")
        return 2
    port = reserve.getsockname()[1]
    return Supervisor(settings, policy, keys, simulate, port, reserve, log).run()


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        keys: Keyring,
        simulate: bool,
        port: int,
        reserve: socket.socket,
        log: Log,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.keys = keys
        self.simulate = simulate
        self.port = port
        self.reserve = reserve
        self.log = log
        self.children: dict[int, int] = {}  # pid -> slot
        self.crashes: dict[int, list[float]] = {}
        self.ready_r, self.ready_w = os.pipe()

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        for slot in range(self.settings.workers):
            self.spawn(slot)
        if not self.wait_ready(self.settings.workers, 60.0):
            self.log.error("workers did not start listening in time")
            self.stop_all(5.0)
            return 1
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        self.log.info(
            f"listening on http://{host}:{self.port}",
            workers=self.settings.workers,
            policy=self.policy.source,
        )
        while True:
            info = signal.sigtimedwait(SIGNALS, 1.0)
            self.drain_ready_pipe()
            if info is None:
                continue
            if info.si_signo == signal.SIGHUP:
                reload_keys(self.keys, self.settings, self.policy, self.log)
                for pid in list(self.children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGHUP)
                continue
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                self.log.info(
                    "draining",
                    signal=signal.Signals(info.si_signo).name,
                    drain_s=self.settings.drain_s,
                )
                self.stop_all(self.settings.drain_s + 5.0)
                return 0
            self.reap_and_restart()

    def spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's handler
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
                os.close(self.ready_r)
                self.reserve.close()
                code = worker_main(
                    self.settings, self.policy, self.keys, self.simulate, self.port, self.ready_w
                )
            except BaseException as exc:  # a worker must never return into the supervisor's code
                print(f"worker crashed: {exc!r}", file=sys.stderr)
            finally:
                os._exit(code)
        self.children[pid] = slot

    def wait_ready(self, n: int, timeout: float) -> bool:
        got = 0
        deadline = time.monotonic() + timeout
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.ready_r], [], [], left)
            if r:
                got += len(os.read(self.ready_r, 64))
        return True

    def drain_ready_pipe(self) -> None:
        while select.select([self.ready_r], [], [], 0)[0]:
            os.read(self.ready_r, 64)

    def reap_and_restart(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            recent = [t for t in self.crashes.get(slot, []) if now - t < 30.0] + [now]
            self.crashes[slot] = recent
            backoff = min(0.1 * 2 ** (len(recent) - 1), 5.0) if len(recent) > 1 else 0.0
            self.log.error(
                "worker exited; restarting", pid=pid, exit=code, slot=slot, backoff_s=backoff
            )
            if backoff:
                time.sleep(backoff)
            self.spawn(slot)

    def stop_all(self, grace: float) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                signal.sigtimedwait({signal.SIGCHLD}, 0.1)
                continue
            self.children.pop(pid, None)
        for pid in list(self.children):
            self.log.warning("worker did not drain in time; killing it", pid=pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.children.clear()


def worker_main(
    settings: Settings, policy: Policy, keys: Keyring, simulate: bool, port: int, ready_fd: int
) -> int:
    import uvloop

    return uvloop.run(_worker(settings, policy, keys, simulate, port, ready_fd))


async def _worker(
    settings: Settings, policy: Policy, keys: Keyring, simulate: bool, port: int, ready_fd: int
) -> int:
    from edge.server.app import Gateway
    from edge.server.protocol import ConnectionTracker

    log = Log(settings.log_level, settings.access_log)
    loop = asyncio.get_running_loop()
    log.buffer_on(loop)
    sim_server = None
    if simulate:
        from edge.simulate.behaviour import load_profile
        from edge.simulate.server import start as start_simulator

        sim_server, _ = await start_simulator("127.0.0.1", 0, load_profile(settings.sim_profile))
        sim_port = sim_server.sockets[0].getsockname()[1]
        urls = {
            name: f"http://127.0.0.1:{sim_port}" + ("/v1" if p.kind == "openai" else "")
            for name, p in policy.providers.items()
        }
        policy = policy.with_base_urls(urls, simulated=True)
    tracker = ConnectionTracker(settings.body_budget)
    gateway = Gateway(settings, policy, keys, log, tracker)
    gateway.start_refresh(loop)
    gateway.start_jobs()
    server = await loop.create_server(
        gateway.protocol, settings.host, port, reuse_port=True, backlog=2048
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_keys, keys, settings, policy, log)
    reload_keys(keys, settings, policy, log)  # a SIGHUP ignored while this worker started
    # what is alive now (modules, tables, the policy) lives as long as the worker: kept out of
    # the cyclic collector's scans, which then run every ``gc_thresholds[0]`` allocations
    # instead of every 700 (measured: +3-6% requests a core-second, bench/RESULTS.md)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.gc)
    os.write(ready_fd, b"1")
    await stop.wait()
    server.close()
    tracker.drain()
    busy = tracker.busy()
    if busy:
        log.info("draining in-flight requests", in_flight=busy)
        try:
            await asyncio.wait_for(tracker.idle_event.wait(), settings.drain_s)
        except TimeoutError:
            log.warning(
                "drain deadline passed; closing remaining connections", in_flight=tracker.busy()
            )
    for conn in list(tracker.connections):
        conn.close()
    await gateway.close()
    gateway.pool.close()
    gateway.stop_refresh()
    if sim_server is not None:
        sim_server.close()
    log.flush()
    return 0
