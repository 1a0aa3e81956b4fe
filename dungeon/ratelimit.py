"""Per-user request limits, so one client cannot spend the image and narration budget.

Limits are counted by the ``limits`` library (the engine behind
Flask-Limiter) with the sliding-window-counter strategy.  Storage is
``RATE_LIMIT_STORAGE``: ``memory://`` counts per process (with W workers a
user gets up to W times the limit), a ``mongodb://`` URI counts across
processes (needs MongoDB 4.2 or newer).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import limits
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from .errors import ConfigError, TooManyRequests
from .metrics import Metrics

log = logging.getLogger(__name__)

SCOPES = ("guests", "games", "actions", "images", "waits", "links", "redeem")


class RateLimiter:
    """Checks and counts requests per scope (``games``, ``actions``...) and per user."""

    def __init__(self, config: Mapping[str, Any], metrics: Metrics):
        self.limits = {scope: _parse(scope, config[f"RATE_LIMIT_{scope.upper()}"])
                       for scope in SCOPES}
        try:
            storage = storage_from_string(config["RATE_LIMIT_STORAGE"])
        except Exception as exc:  # the library raises several types for a bad URI
            raise ConfigError(f"RATE_LIMIT_STORAGE: {exc}") from None
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self.metrics = metrics

    def check(self, scope: str, key: str) -> None:
        """Count one request of ``key`` in ``scope``; raise TooManyRequests past the limit."""
        item = self.limits[scope]
        if item is None or self.strategy.hit(item, scope, key):
            return
        reset = self.strategy.get_window_stats(item, scope, key).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        self.metrics.rate_limit_rejections.labels(scope).inc()
        log.warning("rate limit reached: %s %s", scope, item, extra={"scope": scope})
        raise TooManyRequests(headers={"Retry-After": str(retry_after)},
                              details={"limit": str(item), "scope": scope})


    def allow(self, scope: str, key: str) -> bool:
        """Count one use of ``key`` in ``scope``; return False past the limit (nothing raised).

        For what can be declined quietly: a wait past the limit is answered
        at once instead.
        """
        item = self.limits[scope]
        if item is None or self.strategy.hit(item, scope, key):
            return True
        self.metrics.rate_limit_rejections.labels(scope).inc()
        return False


def _parse(scope: str, value: str | None):
    if not value:
        return None
    try:
        return limits.parse(value)
    except ValueError:
        raise ConfigError(f"RATE_LIMIT_{scope.upper()}: {value!r} is not a limit such as "
                          "'30/minute' (empty turns it off)") from None
