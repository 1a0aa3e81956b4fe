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
from flask import current_app, request

from ..caching import lookup
from ..game.engine import LoadedGame
from .schemas import _iso

IMAGES_PATH = "/api/images/"
JSON = "application/json"


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

    The key is the game's version and expiry, and what its shown turns
    show that can change without the version: their images.  When the
    turns are shown as kept, the kept list's stamp stands for them (one
    stamp, one list of turns; ``RecentTurns``) and nothing is read from
    each turn; otherwise each image's state is in the key, alternatives'
    too.  Any change to what the answer says changes the key, so an entry
    is never stale, only unused.  Bounded in entries and time.
    """

    def __init__(self, maxsize: int = 1000, ttl: float = 60.0):
        self._cache: TTLCache = TTLCache(maxsize=max(maxsize, 1), ttl=max(ttl, 1e-9))
        self._lock = threading.Lock()

    def answer(self, game: LoadedGame) -> bytes:
        """Return the JSON answer of a loaded game: kept, or rendered and kept."""
        key = self.key(game)
        with self._lock:
            body = lookup(self._cache, key)
        if body is None:
            body = current_app.json.dumps({"game": game_json(game.session),
                                           "turns": [turn_json(t) for t in game.turns]}).encode()
            with self._lock:
                self._cache[key] = body
        return body

    @staticmethod
    def key(game: LoadedGame) -> tuple:
        """Return what the rendered answer of a loaded game depends on."""
        session, turns = game.session, game.turns
        if game.stamp is not None:
            shown: tuple = (game.stamp, turns[0]["n"] if turns else None, len(turns))
        else:
            shown = tuple((t["n"], _image_state(t.get("image")),
                           tuple(_image_state(a.get("image")) for a in t.get("alternatives") or ()))
                          for t in turns)
        return (session["_id"], session["version"], session.get("expires_at"),
                session.get("updated_at"), request.script_root, shown)


def _image_state(image: Mapping[str, Any] | None) -> tuple:
    if not image:
        return (None, None, None, None)
    return (image.get("id"), image.get("status"), image.get("provider"),
            bool(image.get("placeholder")))


def responses(success: Mapping[int, Any], *errors: int) -> dict[int, Any]:
    """Return a route's documented answers: its successes and its errors, in the one shape."""
    from .schemas import ErrorBody

    return {**success, **{status: ErrorBody for status in errors}}
