"""How the API shows what the service keeps: games, turns and images as JSON.

Every route answers through these functions, so a game, a turn or an image
looks the same wherever it appears.  They are on the hot path of every game
read, so image URLs are built from a prefix, not by ``url_for`` per turn.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache
from flask import request

from .schemas import _iso

IMAGES_PATH = "/api/images/"


def image_url(image_id: str) -> str:
    """Return the URL, on this service, of an image (a turn's slot or a stored image)."""
    return f"{request.script_root}{IMAGES_PATH}{image_id}"


def image_json(image: Mapping[str, Any]) -> dict[str, Any]:
    """Return the one image object: ``id, url, status, provider, placeholder``."""
    return {"id": image["id"], "url": image_url(image["id"]), "status": image.get("status"),
            "provider": image.get("provider"), "placeholder": bool(image.get("placeholder"))}


def game_json(session: Mapping[str, Any]) -> dict[str, Any]:
    """Return the client's view of a game."""
    return {"id": session["_id"], "title": session["title"], "genre": session["genre"],
            "style": session["style"], "status": session["status"],
            "turn_count": session["turn_count"], "version": session["version"],
            "created_at": _iso(session["created_at"]), "updated_at": _iso(session["updated_at"]),
            "expires_at": _iso(session.get("expires_at")),
            "plot_essentials": session.get("plot_essentials"),
            "authors_note": session.get("authors_note"),
            "image_mode": session.get("image_mode") or "every_turn"}


def turn_json(turn: Mapping[str, Any]) -> dict[str, Any]:
    """Return the client's view of a turn; the narration exactly as it was saved."""
    image = turn.get("image")
    # A turn never retried has one narration, already given: its list stays
    # empty rather than repeat it (it halves a game's answer).
    alternatives = turn.get("alternatives") or []
    chosen = turn.get("chosen", 0)
    return {"n": turn["n"], "action": turn.get("action"), "mode": turn.get("mode") or "do",
            "narration": turn["narration"],
            "image": image_json(image) if image else None,
            "created_at": _iso(turn["created_at"]),
            "alternatives": [{"narration": a["narration"],
                              "image": image_json(image if i == chosen else a["image"])
                              if (image if i == chosen else a.get("image")) else None,
                              "created_at": _iso(a["created_at"])}
                             for i, a in enumerate(alternatives)],
            "chosen": chosen}


def card_json(card: Mapping[str, Any]) -> dict[str, Any]:
    """Return the client's view of a story card."""
    return {"id": card["_id"], "title": card["title"], "keys": list(card["keys"]),
            "text": card["text"], "created_at": _iso(card["created_at"]),
            "updated_at": _iso(card["updated_at"])}


def may_wait() -> bool:
    """Return True if this request may hold its answer for ``?wait=image``.

    Waits are counted per client address (``RATE_LIMIT_WAITS``); past the
    limit the answer comes at once, with the image pending, never an error.
    """
    from ..state import get_state

    state = get_state()
    if state.limiter.allow("waits", request.remote_addr or "unknown"):
        return True
    state.metrics.image_waits_declined.labels("rate_limited").inc()
    return False


class RenderedGames:
    """Answers of ``GET /api/games/<id>`` already rendered, by everything they show.

    The key is the game's version and expiry, and each shown turn's image
    state: any change to what the answer says changes the key, so an entry
    is never stale, only unused.  Bounded in entries and time.
    """

    def __init__(self, maxsize: int = 1000, ttl: float = 60.0):
        self._cache: TTLCache = TTLCache(maxsize=max(maxsize, 1), ttl=max(ttl, 1e-9))
        self._lock = threading.Lock()

    @staticmethod
    def key(session: Mapping[str, Any], turns: list[Mapping[str, Any]]) -> tuple:
        """Return what the rendered answer of ``session`` with ``turns`` depends on."""
        images = tuple((t["n"], *(_image_state(t.get("image")))) for t in turns)
        return (session["_id"], session["version"], session.get("expires_at"),
                session.get("updated_at"), request.script_root, images)

    def get(self, key: tuple) -> bytes | None:
        """Return the answer kept for ``key``, or None."""
        with self._lock:
            return self._cache.get(key)

    def put(self, key: tuple, body: bytes) -> None:
        """Keep the answer ``body`` for ``key``."""
        with self._lock:
            self._cache[key] = body


def _image_state(image: Mapping[str, Any] | None) -> tuple:
    if not image:
        return (None, None, None, None)
    return (image.get("id"), image.get("status"), image.get("provider"),
            bool(image.get("placeholder")))


def responses(success: Mapping[int, Any], *errors: int) -> dict[int, Any]:
    """Return a route's documented answers: its successes and its errors, in the one shape."""
    from .schemas import ErrorBody

    return {**success, **{status: ErrorBody for status in errors}}
