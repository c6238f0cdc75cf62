"""Every worker's metrics together: each worker publishes a snapshot, any worker merges them.

Each tick a worker writes its metrics snapshot (counters, histograms, dumped
latency sketches, in-flight, pool and breaker gauges) to its file in
``EDGE_STATE_DIR/metrics/run-<supervisor pid>/`` (atomic rename) and, with
Redis, to the shared state under its name (``host:pid``; 30 s expiry).
``merged`` adds the others' last snapshots to this worker's live figures:
the instance's workers, or with ``instances`` every instance's. A dead
worker's snapshot stays for the run, so counters never go backwards; its
gauges (in flight, pools, breakers, admission, the state's reachability)
count only while its snapshot is younger than ``GAUGE_TTL_S``. Latency
sketches are kept on the wall clock, so two hosts' slots line up (each
host's monotonic clock counts from its own boot).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from edge.observe.log import Log
from edge.observe.metrics import GAUGE_TTL_S, Metrics
from edge.state.redis_state import RedisState
from edge.state.types import State, StateUnavailable


class Health(Protocol):
    """Whether the shared state answers, as last seen (``Spend`` keeps it); told of a loss."""

    available: bool

    def down(self, exc: Exception) -> None: ...


class Fleet:
    def __init__(
        self,
        metrics: Metrics,
        state: State,
        folder: str,
        health: Health,
        log: Log,
        gauges: Callable[[Metrics], None],
    ) -> None:
        self.metrics = metrics
        self.state = state
        self.folder = folder  # this run's snapshots, one file per worker ("" = none)
        self.health = health
        self.log = log
        self.gauges = gauges  # sets the gauges read from shared figures on a merged view
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def shared(self) -> bool:
        """Whether every instance publishes its workers' snapshots to the same state (Redis)."""
        return isinstance(self.state, RedisState)

    def merged(self, instances: bool = False) -> Metrics:
        """Every worker's metrics together: this one's live, the others' last snapshots; with
        ``instances`` (and Redis), every instance's workers, as they published them."""
        snaps = [self.metrics.snapshot()]
        folder = self.folder
        if instances and isinstance(self.state, RedisState):
            try:
                for raw in self.state.snapshots():
                    snap = orjson.loads(raw)
                    if snap.get("name") != self.name:  # this worker's is live above
                        snaps.append(snap)
            except StateUnavailable as exc:
                self.health.down(exc)
        elif folder:
            mine = f"{os.getpid()}.json"
            with contextlib.suppress(OSError):
                for name in os.listdir(folder):
                    if name == mine or not name.endswith(".json"):
                        continue
                    with (
                        contextlib.suppress(OSError, orjson.JSONDecodeError),
                        open(os.path.join(folder, name), "rb") as f,
                    ):
                        snaps.append(orjson.loads(f.read()))
        if len(snaps) == 1:
            return self.metrics
        agg = Metrics()
        self.gauges(agg)
        now, live = time.time(), 0
        for snap in snaps:
            # a snapshot not renewed for GAUGE_TTL_S is a dead worker's: its counts stay,
            # its gauges (in flight, pools, breakers, the state's reachability) expire
            at = snap.get("at")
            fresh = isinstance(at, (int, float)) and now - at <= GAUGE_TTL_S
            live += fresh
            agg.absorb(orjson.loads(orjson.dumps(snap)), live=fresh)
        agg.workers = live
        return agg

    def publish(self) -> None:
        """Write this worker's snapshot where the others read it."""
        snap = self.metrics.snapshot()
        snap["name"] = self.name
        data = orjson.dumps(snap)
        if isinstance(self.state, RedisState) and self.health.available:
            try:  # the fleet's view: every instance's workers, breakers included
                self.state.publish_snapshot(self.name, data)
            except StateUnavailable as exc:
                self.health.down(exc)
        folder = self.folder
        if not folder:
            return
        path = os.path.join(folder, f"{os.getpid()}.json")
        try:
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            self.log.event("warning", "metrics snapshot not written", error=str(exc))
