"""Prometheus metrics of the gateway, on a registry of its own (one per app).

With several workers (``--workers N``) each process counts its own requests;
``streamops serve`` then sets ``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics``
of any worker reports the sum of all of them (prometheus-client's
multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Metrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        # In multiprocess mode values live in files; the collector reads them all.
        reg: Any = None if self.multiprocess else self.registry
        ns = "streamops_gateway"
        self.requests = Counter(
            f"{ns}_requests",
            "Requests by key, route and HTTP status.",
            ["key", "route", "status"],
            registry=reg,
        )
        self.stops = Counter(
            f"{ns}_stream_stops",
            "Answers by key, route and stop reason.",
            ["key", "route", "reason"],
            registry=reg,
        )
        self.active = Gauge(
            f"{ns}_active_streams",
            "Streams being served now.",
            ["route"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.tokens_in = Counter(f"{ns}_tokens_in", "Prompt tokens by key.", ["key"], registry=reg)
        self.tokens_out = Counter(
            f"{ns}_tokens_out", "Completion tokens delivered by key.", ["key"], registry=reg
        )
        self.cost = Counter(
            f"{ns}_cost_usd",
            "Cost of delivered answers (when the policy knows a price).",
            ["key"],
            registry=reg,
        )
        self.redactions = Counter(
            f"{ns}_redactions",
            "Redactions by rule and direction (input, output).",
            ["rule", "direction"],
            registry=reg,
        )
        self.upstream_errors = Counter(
            f"{ns}_upstream_errors",
            "Upstream failures by upstream and kind.",
            ["upstream", "kind"],
            registry=reg,
        )
        self.ttft = Histogram(
            f"{ns}_ttft_seconds",
            "Time to first token the client saw.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.added = Histogram(
            f"{ns}_added_ttft_seconds",
            "Time to first token added by the gateway: from the upstream's first event"
            " arriving to the first byte sent to the client.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.rejected = Counter(
            f"{ns}_rejected",
            "Requests refused before the upstream was called, by reason.",
            ["key", "route", "reason"],
            registry=reg,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (prometheus-client locks on each call)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
