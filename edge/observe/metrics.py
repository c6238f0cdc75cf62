"""Prometheus metrics of one worker (multi-worker aggregation arrives with issue 9).

Names follow Prometheus conventions (base units, ``_total``, ``_seconds``);
labels are bounded: dialect, provider and model come from the policy (an
unknown model is ``-``), status is the HTTP status. Label children are cached
so the request path does one dict lookup per observation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# OpenTelemetry GenAI duration buckets, extended to two minutes: LLM calls are slow.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
    120.0,
)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    60.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "edge_requests",
            "Requests answered",
            ["dialect", "provider", "model", "status"],
            registry=r,
        )
        self.errors = Counter(
            "edge_request_errors",
            "Requests answered with an error",
            ["dialect", "error_type"],
            registry=r,
        )
        self.duration = Histogram(
            "edge_request_duration_seconds",
            "Time from request to last byte",
            ["dialect", "provider", "model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "edge_time_to_first_token_seconds",
            "Time from request to first content token",
            ["dialect", "provider", "model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "edge_tokens", "Tokens by direction", ["provider", "model", "direction"], registry=r
        )
        self.in_flight = Gauge("edge_requests_in_flight", "Requests being served", registry=r)
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram, Histogram]] = {}

    def observe(
        self,
        dialect: str,
        provider: str,
        model: str,
        status: int,
        duration: float,
        ttft: float | None,
    ) -> None:
        key = (dialect, provider, model, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self.requests.labels(*key),
                self.duration.labels(dialect, provider, model),
                self.ttft.labels(dialect, provider, model),
            )
        requests, hist, ttft_hist = child
        requests.inc()
        hist.observe(duration)
        if ttft is not None:
            ttft_hist.observe(ttft)

    def error(self, dialect: str, error_type: str) -> None:
        self.errors.labels(dialect, error_type).inc()

    def add_tokens(self, provider: str, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens.labels(provider, model, "input").inc(prompt)
        if completion:
            self.tokens.labels(provider, model, "output").inc(completion)

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        """Export the upstream pool's figures, read at scrape time."""
        self.registry.register(_PoolCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._stats()
        conns = GaugeMetricFamily(
            "edge_upstream_connections", "Upstream connections", labels=["state"]
        )
        conns.add_metric(["open"], s["open"])
        conns.add_metric(["idle"], s["idle"])
        yield conns
        events = CounterMetricFamily(
            "edge_upstream_connection_events",
            "Upstream connections opened, reused, discarded",
            labels=["event"],
        )
        for event in ("opened", "reused", "discarded"):
            events.add_metric([event], s[f"{event}_total"])
        yield events
