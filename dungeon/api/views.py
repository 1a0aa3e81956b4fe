"""How the API shows what the service keeps: games, turns and images as JSON.

Every route answers through these functions, so a game, a turn or an image
looks the same wherever it appears.  They are on the hot path of every game
read, so image URLs are built from a prefix, not by ``url_for`` per turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    alternatives = turn.get("alternatives") or [
        {"narration": turn["narration"], "image": image, "created_at": turn["created_at"]}]
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


def responses(success: Mapping[int, Any], *errors: int) -> dict[int, Any]:
    """Return a route's documented answers: its successes and its errors, in the one shape."""
    from .schemas import ErrorBody

    return {**success, **{status: ErrorBody for status in errors}}
