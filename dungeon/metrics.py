"""Prometheus metrics of one application, in a registry of its own.

Each app gets its own ``CollectorRegistry`` so that apps built side by side
(in tests, or two in one process) never clash over metric names.
"""

from __future__ import annotations

import os
from typing import Any

from flask import current_app
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)

# Methods counted by name; any other a client sends counts as "other", so no
# client can add label values (and series) without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120)

# This process's id, refreshed in every forked child.
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def process_id() -> int:
    """Return this process's id, as ``os.getpid()`` would, without a system call."""
    return _PID[0]


# Under gunicorn (PROMETHEUS_MULTIPROC_DIR set before prometheus_client was
# imported) every value write checks the process id, to notice a fork: a
# getpid system call per write, four or more a request, which measurably
# slowed cached game reads under load (docs/benchmarks.md).  The id is the
# same, read from memory; prometheus_client's rule for an identifier (distinct
# among running processes) holds.  Swapped here, at import, before any metric
# of the service has a value; the master imports this before it forks.
if getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.MultiProcessValue(process_identifier=process_id)


class Metrics:
    """The domain metrics the service records; names are stable and documented."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.image_attempts = Counter(
            "dungeon_image_attempts", "Image provider attempts by outcome.",
            ["provider", "outcome"], registry=r)
        self.image_attempt_seconds = Histogram(
            "dungeon_image_attempt_seconds", "Duration of one image provider attempt.",
            ["provider"], buckets=_LATENCY_BUCKETS, registry=r)
        self.image_requests = Counter(
            "dungeon_image_requests", "Image requests by result (generated or placeholder).",
            ["result"], registry=r)
        self.image_fallbacks = Counter(
            "dungeon_image_fallbacks", "Times the chain moved on from a provider.",
            ["from_provider"], registry=r)
        self.circuit_state = Gauge(
            "dungeon_provider_circuit_state",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
            ["provider"], registry=r, multiprocess_mode="max")

        self.session_lookups = Counter(
            "dungeon_session_lookups", "Game lookups by outcome: hit (cache), found (database), "
            "not_found, expired, conflict (a stale copy met a newer turn).", ["outcome"],
            registry=r)
        self.session_creations = Counter(
            "dungeon_session_creations", "Games created, by outcome.", ["outcome"], registry=r)
        self.session_load_seconds = Histogram(
            "dungeon_session_load_seconds", "Time to read a game from the database (a lookup "
            "the cache did not answer; hits are counted in dungeon_session_lookups).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r)
        self.session_cache_size = Gauge(
            "dungeon_session_cache_size", "Games held in the lookup cache.", registry=r,
            multiprocess_mode="livesum")
        self.rate_limit_rejections = Counter(
            "dungeon_rate_limit_rejections", "Requests refused with 429, by scope.",
            ["scope"], registry=r)
        self.http_requests = Counter(
            "dungeon_http_requests", "HTTP requests by method, route rule and status.",
            ["method", "route", "status"], registry=r)
        self.http_request_seconds = Histogram(
            "dungeon_http_request_seconds", "HTTP request duration by method and route rule.",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.model_shutdown = Gauge(
            "dungeon_provider_model_shutdown_timestamp_seconds",
            "Announced shutdown time of each configured provider's model (Unix seconds).",
            ["provider", "model"], registry=r, multiprocess_mode="max")
        self.image_queue_overflows = Counter(
            "dungeon_image_queue_overflows", "Turn images given the placeholder at once because "
            "every image thread and queue place was taken.", registry=r)
        self.image_waits_declined = Counter(
            "dungeon_image_waits_declined", "?wait=image requests answered at once, by reason "
            "(busy: the process's wait limit; client_busy: the client's own waits at once; "
            "rate_limited: the client's rate).", ["reason"],
            registry=r)
        self.image_requests_refused = Counter(
            "dungeon_image_requests_refused", "POST /api/images refused with 503 because the "
            "process's limit of concurrent image requests was reached.", registry=r)
        self.provider_disabled = Gauge(
            "dungeon_provider_disabled", "1 when a provider was disabled (its model is gone).",
            ["provider"], registry=r, multiprocess_mode="max")
        self.narrator_attempts = Counter(
            "dungeon_narrator_attempts", "Narrations by narrator and outcome.",
            ["narrator", "outcome"], registry=r)
        self.narrator_seconds = Histogram(
            "dungeon_narrator_seconds", "Time to narrate one turn.", ["narrator"],
            buckets=_LATENCY_BUCKETS, registry=r)

        # (metric, label values) -> that labelled child, for the hot paths
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def count_lookup(self, outcome: str) -> None:
        """Count one game lookup by its outcome."""
        self._child(self.session_lookups, outcome).inc()

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request by method, route rule (never the raw path) and status.

        The label values are bounded: route rules and statuses are the
        application's own, and methods are folded into ``METHODS``.
        """
        if method not in METHODS:
            method = "other"
        self._child(self.http_requests, method, route, str(status)).inc()
        self._child(self.http_request_seconds, method, route).observe(seconds)

    def _child(self, metric: Any, *values: str) -> Any:
        """Return ``metric.labels(*values)``, looked up once per combination.

        ``labels()`` takes a lock and builds its key on every call, which
        every request would pay.  Two threads that miss at once both call
        it and get the same child.
        """
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Return the current value of one sample (0.0 when it has none yet)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


def get_metrics() -> Metrics:
    """Return the current application's metrics."""
    return current_app.extensions["dungeon"].metrics


def scrape_registry(metrics: Metrics) -> CollectorRegistry:
    """Return the registry a scrape reads.

    Under gunicorn with several workers (``PROMETHEUS_MULTIPROC_DIR`` set),
    each worker writes its values to files; a fresh registry per scrape
    collects every worker's, so any worker answers with the totals.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return metrics.registry
