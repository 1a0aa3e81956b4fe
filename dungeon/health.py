"""Liveness and readiness endpoints for the load balancer and the orchestrator."""

from __future__ import annotations

import logging
import time

from flask import Blueprint

from .db import ping
from .state import get_state

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer as long as the process serves requests; checks no dependency."""
    return {"status": "ok"}


@bp.get("/readyz")
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
    body = {"status": "ready" if store["ok"] else "unavailable",
            "checks": {"store": store, "image_providers": state.images.status()}}
    return body, 200 if store["ok"] else 503


def _check_store(database) -> dict[str, object]:
    started = time.perf_counter()
    try:
        ping(database)
    except Exception as exc:  # any failure to answer means "not ready", whatever its type
        log.warning("store ping failed: %s", type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
