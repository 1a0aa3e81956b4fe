"""What the per-process caches share: cachetools' TTLCaches, read at the cost of a dict."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from cachetools import Cache


def lookup(cache: Cache, key: Hashable, default: Any = None) -> Any:
    """Return ``cache[key]``, or ``default`` if it is absent or expired.

    The same as ``cache.get(key, default)``, which asks ``key in cache``
    and then ``cache[key]``: two expiry checks and two lookups.  One read
    costs a third as much, and every authenticated request makes several.
    The caller holds the cache's lock, as for any other access.
    """
    try:
        return cache[key]
    except KeyError:
        return default
