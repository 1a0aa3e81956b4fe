"""For the load balancer and the operator: liveness, readiness and metrics."""

from __future__ import annotations

import logging
import time

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..db import ping
from ..metrics import get_metrics, scrape_registry
from ..state import get_state
from .schemas import Health, Readiness

log = logging.getLogger(__name__)
bp = APIBlueprint("operations", __name__, abp_tags=[Tag(
    name="operations", description="For load balancers and monitoring; keep them internal.")])

METRICS_TEXT = {"description": "Prometheus text format.",
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}


@bp.get("/healthz", responses={200: Health})
def healthz():
    """Answer as long as the process serves requests; checks no dependency."""
    return {"status": "ok"}


@bp.get("/readyz", responses={200: Readiness, 503: Readiness})
def readyz():
    """Report each dependency; 503 only when the store, without which nothing works, is down.

    A provider that is down is reported but does not make the instance
    unready: the placeholder covers it.
    """
    state = get_state()
    store = _check_store(state.db)
    if store["ok"] and not state.indexes.ensure():
        store = {**store, "ok": False,
                 "error": f"indexes not created: {state.indexes.error or 'unknown reason'}"}
    if state.sessions.embedded_warning:
        store = {**store, "warning": state.sessions.embedded_warning}
    body = {"status": "ready" if store["ok"] else "unavailable",
            "checks": {"store": store, "image_providers": state.images.status()}}
    return body, 200 if store["ok"] else 503


@bp.get("/metrics", responses={200: METRICS_TEXT})
def metrics_view():
    """Expose the metrics in Prometheus text format."""
    registry = scrape_registry(get_metrics())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _check_store(database) -> dict[str, object]:
    started = time.perf_counter()
    try:
        ping(database)
    except Exception as exc:  # any failure to answer means "not ready", whatever its type
        log.warning("store ping failed: %s", type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
