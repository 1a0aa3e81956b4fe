"""The game's JSON API: catalog, guest identity, games and their turns."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, g, request

from .. import catalog, logs
from ..auth import require_user
from ..errors import ValidationFailed
from ..images.api import image_url
from ..sessions.idempotency import fingerprint
from ..state import get_state
from ..validation import Text, json_body, query_int

bp = Blueprint("game", __name__, url_prefix="/api")

CREATE_SCHEMA = {
    "genre": Text(choices=catalog.GENRES),
    "style": Text(choices=catalog.STYLES),
    "title": Text(required=False, max_length=80),
    "custom_prologue": Text(required=False, max_length=4000, multiline=True),
}
ACTION_SCHEMA = {"action": Text(max_length=500)}
MAX_PAGE = 100


# --- public routes -------------------------------------------------------------

@bp.get("/catalog")
def get_catalog():
    """List the genres and art styles a game can have."""
    return catalog.as_json()


@bp.post("/auth/guest")
def create_guest():
    """Make a new guest user and return a bearer token for it."""
    get_state().limiter.check("guests", request.remote_addr or "unknown")
    issued = get_state().signer.issue_guest()
    return {**issued, "token_type": "Bearer"}, 201


# --- games ---------------------------------------------------------------------

@bp.url_value_preprocessor
def bind_session_id(_endpoint, values):
    """Put the game's id on every log line of a request about one game."""
    if values and "session_id" in values:
        logs.bind(session_id=str(values["session_id"])[:64])


@bp.before_request
def authenticate():
    """Every game route needs a valid bearer token, except a CORS preflight.

    A browser sends the preflight ``OPTIONS`` without credentials, by design;
    refusing it would block every cross-origin call.  flask-cors answers it.
    """
    if request.method == "OPTIONS":
        return
    if request.endpoint and request.endpoint.split(".")[-1] in _PUBLIC:
        return
    require_user(get_state().signer)
    if request.method != "GET":
        get_state().indexes.require()


@bp.post("/games")
def create_game():
    """Start an adventure; the opening passage is turn 0."""
    get_state().limiter.check("games", g.user_id)
    body = json_body(CREATE_SCHEMA)

    def run():
        session, turns = _engine().create(g.user_id, body["genre"], body["style"],
                                          body.get("title"), body.get("custom_prologue"))
        _maybe_wait(turns)
        return {"game": game_json(session), "turns": [turn_json(t) for t in _reread(turns)]}, 201

    return _idempotent("create_game", body, run)


@bp.get("/games")
def list_games():
    """List my games, most recently played first, a page at a time."""
    limit = query_int("limit", 20, 1, MAX_PAGE)
    after = _decode_cursor(request.args.get("cursor"))
    games = _engine().list_games(g.user_id, limit + 1, after)
    page, more = games[:limit], len(games) > limit
    cursor = _encode_cursor(page[-1]) if more and page else None
    return {"games": [game_json(s) for s in page], "next_cursor": cursor}


@bp.get("/games/<session_id>")
def get_game(session_id: str):
    """Load a saved game with its most recent turns."""
    session, turns = _engine().load(g.user_id, session_id)
    return {"game": game_json(session), "turns": [turn_json(t) for t in turns]}


@bp.get("/games/<session_id>/turns")
def get_turns(session_id: str):
    """Page back through a game's turns: those before turn ``before``."""
    before = request.args.get("before")
    before_n = query_int("before", 0, 0, 10**9) if before is not None else None
    limit = query_int("limit", 20, 1, MAX_PAGE)
    turns = _engine().turns_before(g.user_id, session_id, before_n, limit)
    return {"turns": [turn_json(t) for t in turns]}


@bp.post("/games/<session_id>/actions")
def take_action(session_id: str):
    """Play the player's action as the next turn."""
    get_state().limiter.check("actions", g.user_id)
    body = json_body(ACTION_SCHEMA)

    def run():
        session, turn = _engine().act(g.user_id, session_id, body["action"])
        _maybe_wait([turn])
        return {"game": game_json(session), "turn": turn_json(_reread([turn])[0])}, 201

    return _idempotent(f"take_action:{session_id}", body, run)


@bp.post("/games/<session_id>/turns/<int:n>/image")
def retry_turn_image(session_id: str, n: int):
    """Ask again for a turn's image when it ended as a placeholder."""
    get_state().limiter.check("images", g.user_id)
    turn = _engine().retry_image(g.user_id, session_id, n)
    _maybe_wait([turn])
    return {"turn": turn_json(_reread([turn])[0])}, 202


@bp.delete("/games/<session_id>")
def delete_game(session_id: str):
    """Delete a game and all its turns."""
    _engine().delete(g.user_id, session_id)
    return "", 204


_PUBLIC = {"get_catalog", "create_guest"}


# --- helpers -------------------------------------------------------------------

def _engine():
    return get_state().game


def _idempotent(route: str, body: dict[str, Any], run: Callable[[], tuple[dict, int]]):
    """Run ``run`` once per ``Idempotency-Key``; a retry gets the first answer."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return run()
    keys = get_state().idempotency
    earlier = keys.begin(g.user_id, key, fingerprint(route, body))
    if earlier is not None:
        return earlier["body"], earlier["status"], {"Idempotent-Replayed": "true"}
    try:
        answer, status = run()
    except Exception:
        keys.abandon(g.user_id, key)
        raise
    keys.finish(g.user_id, key, status, answer)
    return answer, status


def _maybe_wait(turns: list[dict[str, Any]]) -> None:
    """With ``?wait=image``, wait (within the image deadline) for the turns' images."""
    if request.args.get("wait") != "image":
        return
    for turn in turns:
        get_state().jobs.wait(turn["image"]["id"])


def _reread(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_engine().fresh_image(turn) for turn in turns]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def game_json(session: dict[str, Any]) -> dict[str, Any]:
    """Return the client's view of a game."""
    return {"id": session["_id"], "title": session["title"], "genre": session["genre"],
            "style": session["style"], "status": session["status"],
            "turn_count": session["turn_count"], "version": session["version"],
            "created_at": _iso(session["created_at"]), "updated_at": _iso(session["updated_at"]),
            "expires_at": _iso(session.get("expires_at"))}


def turn_json(turn: dict[str, Any]) -> dict[str, Any]:
    """Return the client's view of a turn; the narration exactly as it was saved."""
    image = turn.get("image") or {}
    return {"n": turn["n"], "action": turn.get("action"), "narration": turn["narration"],
            "image": {"id": image.get("id"), "url": image_url(image["id"]) if image else None,
                      "status": image.get("status"), "provider": image.get("provider"),
                      "placeholder": bool(image.get("placeholder"))},
            "created_at": _iso(turn["created_at"])}


def _encode_cursor(session: dict[str, Any]) -> str:
    raw = json.dumps([session["last_active_at"].isoformat(), session["_id"]])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None):
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        active, session_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(session_id, str) or len(session_id) > 64:
            raise ValueError("bad id")
        return datetime.fromisoformat(active), session_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(details={"fields": {"cursor": "is not a valid cursor"}}) from None
