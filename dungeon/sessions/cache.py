"""The per-process lookup cache of game sessions: cachetools' TTLCache behind a lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

Key = tuple[str, str]  # (user id, session id): a user never reads another's entry


class SessionCache:
    """Holds copies of session documents; never holds a miss.

    cachetools caches are not thread-safe, and gthread workers serve requests
    on several threads, so every access takes the lock.  Copies go in and
    come out, so no caller can change a cached document by accident; a
    session document is flat (strings, numbers, datetimes, all immutable), so
    a shallow copy is a full one.
    """

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic,
                 on_hit: Callable[[], None] | None = None,
                 on_miss: Callable[[], None] | None = None):
        self.enabled = maxsize > 0 and ttl > 0
        self._cache: TTLCache = TTLCache(max(maxsize, 1), max(ttl, 1e-9), timer=timer)
        self._lock = threading.Lock()
        self._on_hit, self._on_miss = on_hit, on_miss

    def get(self, key: Key) -> dict[str, Any] | None:
        """Return a copy of the cached document for ``key``, or None."""
        if not self.enabled:
            return None
        with self._lock:
            document = self._cache.get(key)
        callback = self._on_hit if document is not None else self._on_miss
        if callback is not None:
            callback()
        return dict(document) if document is not None else None

    def put(self, key: Key, document: dict[str, Any]) -> None:
        """Store a copy of ``document`` unless the cache already holds a newer version."""
        if not self.enabled:
            return
        with self._lock:
            current = self._cache.get(key)
            if current is None or current["version"] <= document["version"]:
                self._cache[key] = dict(document)

    def invalidate(self, key: Key) -> None:
        """Forget ``key``."""
        with self._lock:
            self._cache.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)
