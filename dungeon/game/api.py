"""The game's JSON API: catalog, guest identity, games and their turns."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, g, request
from pymongo.errors import PyMongoError

from .. import catalog, logs
from ..auth import require_user
from ..errors import ValidationFailed, known_not_committed, store_error_fields
from ..game.engine import Committed
from ..images.api import image_url
from ..sessions.idempotency import fingerprint, request_key
from ..state import get_state
from ..validation import Text, json_body, query_int

log = logging.getLogger(__name__)
bp = Blueprint("game", __name__, url_prefix="/api")

CREATE_SCHEMA = {
    "genre": Text(choices=catalog.GENRES),
    "style": Text(choices=catalog.STYLES),
    "title": Text(required=False, max_length=80),
    "custom_prologue": Text(required=False, max_length=4000, multiline=True),
}
ACTION_SCHEMA = {"action": Text(max_length=500)}
MAX_PAGE = 100
CURSOR_YEARS = (1970, 9998)  # what a game's last activity can be, with room for either end


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
    body = json_body(CREATE_SCHEMA)

    def run(key: str, settle: bool) -> Committed:
        return _engine().create(g.user_id, body["genre"], body["style"], key,
                                body.get("title"), body.get("custom_prologue"), settle)

    def answer(committed: Committed):
        _maybe_wait(committed.turns)
        turns = _engine().images_now(committed.session, committed.turns)
        return {"game": game_json(committed.session), "turns": [turn_json(t) for t in turns]}, 201

    return _idempotent("create_game", body, "games", run, answer)


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
    body = json_body(ACTION_SCHEMA)

    def run(key: str, settle: bool) -> Committed:
        return _engine().act(g.user_id, session_id, body["action"], key, settle)

    return _idempotent(f"take_action:{session_id}", body, "actions", run, _turn_answer(201))


@bp.post("/games/<session_id>/turns/<int:n>/image")
def retry_turn_image(session_id: str, n: int):
    """Ask again for a turn's image when it ended as a placeholder."""

    def run(key: str, settle: bool) -> Committed:
        return _engine().retry_image(g.user_id, session_id, n, key, settle)

    def answer(committed: Committed):
        _maybe_wait(committed.turns)
        turn = _engine().images_now(committed.session, committed.turns)[0]
        return {"turn": turn_json(turn)}, 202

    return _idempotent(f"retry_turn_image:{session_id}:{n}", {}, "images", run, answer)


@bp.delete("/games/<session_id>")
def delete_game(session_id: str):
    """Delete a game and all its turns."""
    _engine().delete(g.user_id, session_id)
    return "", 204


_PUBLIC = {"get_catalog", "create_guest"}


# --- helpers -------------------------------------------------------------------

def _engine():
    return get_state().game


def _idempotent(route: str, body: dict[str, Any], limit: str,
                run: Callable[[str, bool], Committed],
                answer: Callable[[Committed], tuple[dict[str, Any], int]]):
    """Run a write at most once per ``Idempotency-Key``; every retry gets what it committed.

    The one owner of a keyed write's lifecycle: claim the key (or find the
    earlier request's result and answer it from the current state, before
    any rate limit is counted), run the write with the key stored in what it
    commits, then record the result.  A failure that proves nothing was
    saved forgets the claim; any other keeps it, released, so that the
    retry settles what the failed attempt may have committed.
    """
    key = request.headers.get("Idempotency-Key")
    state = get_state()
    claim = state.idempotency.claim(g.user_id, key, fingerprint(route, body)) \
        if key is not None else None
    if claim is not None and claim.result is not None:
        replay = _engine().committed(g.user_id, claim.result["session_id"], claim.result["n"],
                                     replayed=True)
        return _answered(answer, replay)
    try:
        state.limiter.check(limit, g.user_id)
        committed = run(claim.key if claim else request_key(), bool(claim and claim.takeover))
    except Exception as exc:
        if claim is not None:
            if known_not_committed(exc):
                state.idempotency.abandon(claim)
            else:
                state.idempotency.release(claim)
        raise
    if claim is not None:
        try:
            state.idempotency.finish(claim, committed.reference)
        except PyMongoError as exc:
            # Committed all the same: the retry takes the claim over and
            # finds the commit by its key.
            log.warning("idempotency result not recorded", extra=store_error_fields(exc))
            state.idempotency.release(claim)
    return _answered(answer, committed)


def _answered(answer: Callable[[Committed], tuple[dict[str, Any], int]], committed: Committed):
    body, status = answer(committed)
    headers = {"Idempotent-Replayed": "true"} if committed.replayed else {}
    return body, status, headers


def _turn_answer(status: int) -> Callable[[Committed], tuple[dict[str, Any], int]]:
    def answer(committed: Committed):
        _maybe_wait(committed.turns)
        turn = _engine().images_now(committed.session, committed.turns)[0]
        return {"game": game_json(committed.session), "turn": turn_json(turn)}, status

    return answer


def _maybe_wait(turns: list[dict[str, Any]]) -> None:
    """With ``?wait=image``, wait (within the image deadline) for the turns' images."""
    if request.args.get("wait") != "image":
        return
    for turn in turns:
        get_state().jobs.wait(turn["image"]["id"])


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


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """Return the position a list cursor names; 422 naming ``cursor`` when it names none."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        active, session_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(session_id, str) or len(session_id) > 64:
            raise ValueError("bad id")
        moment = datetime.fromisoformat(active)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        moment = moment.astimezone(UTC)  # OverflowError at the ends of the calendar
        if not CURSOR_YEARS[0] <= moment.year <= CURSOR_YEARS[1]:
            raise ValueError("out of range")
        return moment, session_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError,
            RecursionError):
        raise ValidationFailed("The query parameter cursor is not valid.",
                               details={"fields": {"cursor": "is not a valid cursor"}}) from None
