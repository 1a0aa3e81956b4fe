"""The per-process lookup cache of game sessions: cachetools' TTLCache behind a lock."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from cachetools import TTLCache

from ..caching import lookup

Key = tuple[str, str]  # (user id, session id): a user never reads another's entry


class SessionCache:
    """Holds copies of session documents; never holds a miss.

    cachetools caches are not thread-safe, and gthread workers serve requests
    on several threads, so every access takes the lock.  Copies go in and
    come out, so no caller can change a cached document by accident; a
    session document is flat (strings, numbers, datetimes, all immutable), so
    a shallow copy is a full one.
    """

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic):
        self.enabled = maxsize > 0 and ttl > 0
        self._cache: TTLCache = TTLCache(max(maxsize, 1), max(ttl, 1e-9), timer=timer)
        # Who each cached game belongs to, to forget a game known by its id alone.
        self._owners: TTLCache = TTLCache(max(maxsize, 1), max(ttl, 1e-9), timer=timer)
        self._lock = threading.Lock()

    def get(self, key: Key) -> dict[str, Any] | None:
        """Return a copy of the cached document for ``key``, or None."""
        if not self.enabled:
            return None
        with self._lock:
            document = lookup(self._cache, key)
        return dict(document) if document is not None else None

    def put(self, key: Key, document: dict[str, Any]) -> None:
        """Store a copy of ``document`` unless the cache already holds a newer version."""
        if not self.enabled:
            return
        with self._lock:
            current = lookup(self._cache, key)
            if current is None or current["version"] <= document["version"]:
                self._cache[key] = dict(document)
                self._owners[key[1]] = key[0]

    def invalidate(self, key: Key) -> None:
        """Forget ``key``."""
        with self._lock:
            self._cache.pop(key, None)

    def invalidate_session(self, session_id: str) -> None:
        """Forget the game ``session_id``, whoever it was cached for (a change from elsewhere)."""
        with self._lock:
            owner = self._owners.pop(session_id, None)
            if owner is not None:
                self._cache.pop((owner, session_id), None)

    def clear(self) -> None:
        """Forget every game."""
        with self._lock:
            self._cache.clear()
            self._owners.clear()

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)


class RecentTurns(NamedTuple):
    """A game's most recent turns, and the stamp of the kept list they come from.

    Every change to a kept list gives it a new stamp, unique in the process,
    so one stamp always stands for the same turns: what a reader rendered
    from them stays right for as long as the stamp does.  None: the turns
    were not kept (the cache is off).
    """

    turns: list[Mapping[str, Any]]
    stamp: int | None
    settled: bool = False  # no image of theirs (nor of an earlier version of one) is pending


class TurnCache:
    """The most recent turns of games, each list kept for one version of its game.

    A list is served only for the version it was read at, so a turn
    committed anywhere (which moves the version) retires it; changes that
    keep the version (an image made) invalidate it explicitly.  Kept turns
    are read-only mappings, so readers share them without copying and none
    can change a kept turn by accident (a change makes a new dict).
    """

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic):
        self.enabled = maxsize > 0 and ttl > 0
        # session id -> (version, turns, stamp, settled)
        self._cache: TTLCache = TTLCache(max(maxsize, 1), max(ttl, 1e-9), timer=timer)
        self._lock = threading.Lock()
        self._stamps = itertools.count(1)

    def get(self, session_id: str, version: int, limit: int | None = None) -> RecentTurns | None:
        """Return the (last ``limit``) turns kept for ``version`` of the game; or None."""
        if not self.enabled:
            return None
        with self._lock:
            found = lookup(self._cache, session_id)
        if found is None or found[0] != version:
            return None
        kept = found[1] if limit is None else found[1][-limit:]
        return RecentTurns(list(kept), found[2], found[3])

    def put(self, session_id: str, version: int, turns: list[dict[str, Any]]) -> int | None:
        """Keep copies of ``turns`` as those of ``version`` of the game; return their stamp."""
        if not self.enabled:
            return None
        with self._lock:
            kept = tuple(_frozen(t) for t in turns)
            stamp = next(self._stamps)
            self._cache[session_id] = (version, kept, stamp, _settled(kept))
        return stamp

    def extend(self, session_id: str, version: int, new_version: int, turn: dict[str, Any],
               keep: int) -> None:
        """Add a turn committed on ``version``: the list now stands for ``new_version``."""
        if not self.enabled:
            return
        with self._lock:
            found = lookup(self._cache, session_id)
            if found is not None and found[0] == version:
                turns = (*found[1], _frozen(turn))[-keep:]
                self._cache[session_id] = (new_version, turns, next(self._stamps),
                                           _settled(turns))
            else:
                self._cache.pop(session_id, None)

    def update_image(self, session_id: str, n: int, slot_id: str,
                     image: dict[str, Any]) -> None:
        """Record a finished image on the kept copy of its turn, as the database did."""
        with self._lock:
            found = lookup(self._cache, session_id)
            if found is None:
                return
            turns = tuple(_frozen(_with_image(t, slot_id, image)) if t["n"] == n else t
                          for t in found[1])
            self._cache[session_id] = (found[0], turns, next(self._stamps), _settled(turns))

    def invalidate(self, session_id: str | None) -> None:
        """Forget a game's turns; every game's with None."""
        with self._lock:
            if session_id is None:
                self._cache.clear()
            else:
                self._cache.pop(session_id, None)


def _with_image(turn: Mapping[str, Any], slot_id: str, image: dict[str, Any]) -> dict[str, Any]:
    """Return ``turn`` with the image of slot ``slot_id`` finished, wherever it shows it."""
    def finished(holder: Mapping[str, Any]) -> Mapping[str, Any]:
        shown = holder.get("image") or {}
        return {**holder, "image": {**shown, **image}} if shown.get("id") == slot_id else holder

    changed = dict(finished(turn))
    if turn.get("alternatives"):
        changed["alternatives"] = [finished(a) for a in turn["alternatives"]]
    return changed


def _frozen(turn: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(turn))


def _settled(turns: tuple[Mapping[str, Any], ...]) -> bool:
    """Return True if no image the turns show, in any of their versions, is still pending.

    Computed when a list is kept, so a reader of a settled list need not
    look at each image again.
    """
    return not any((image or {}).get("status") == "pending"
                   for turn in turns
                   for image in (turn.get("image"),
                                 *(a.get("image") for a in turn.get("alternatives") or ())))
