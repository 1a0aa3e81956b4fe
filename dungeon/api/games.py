"""Games and their turns: start, play, load, page back, retry a turn's image, delete."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag
from pymongo.errors import PyMongoError

from .. import logs
from ..auth import require_user
from ..errors import ValidationFailed, known_not_committed, store_error_fields
from ..game.engine import Committed, GameStart
from ..sessions.idempotency import request_key
from ..state import get_state
from .schemas import (
    Action,
    CardAnswer,
    CardBody,
    CardPath,
    Cards,
    Choice,
    GameCreated,
    GameList,
    GameLoaded,
    GameOnly,
    GamePath,
    Games,
    GameUpdate,
    IdempotencyHeader,
    NewGame,
    TurnEdit,
    TurnList,
    TurnOnly,
    TurnPath,
    TurnPlayed,
    Turns,
    Waiting,
)
from .views import JSON, card_json, game_json, may_wait, responses, turn_json

log = logging.getLogger(__name__)
bp = APIBlueprint("games", __name__, url_prefix="/api/games",
                  abp_tags=[Tag(name="games", description="Saved games and their turns.")],
                  abp_security=[{"bearer": []}])

CURSOR_YEARS = (1970, 9998)  # what a game's last activity can be, with room for either end
# Errors every game route may answer, beside its own.
COMMON = (401, 422, 503)
WRITE = (*COMMON, 400, 404, 409, 429)


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
    method = request.method
    if method == "OPTIONS":
        return
    state = get_state()
    require_user(state.signer)
    if method != "GET":
        state.indexes.require()


@bp.post("", responses=responses({201: GameCreated}, *WRITE))
def create_game(body: NewGame, query: Waiting, header: IdempotencyHeader):
    """Start an adventure; the opening passage is turn 0.

    The answer comes as soon as the opening is saved; its image follows
    (`image.status` is `pending` until then), unless `?wait=image`.
    """
    fields = body.model_dump(exclude_none=True)

    start = GameStart(body.genre, body.style, body.title, body.custom_prologue,
                      body.plot_essentials, body.authors_note, body.image_mode or "every_turn")

    def run(key: str, settle: bool) -> Committed:
        return _engine().create(g.user_id, start, key, settle, _safety())

    def answer(committed: Committed):
        _maybe_wait(query, committed.turns)
        turns = _engine().images_now(committed.session, committed.turns)
        return {"game": game_json(committed.session), "turns": [turn_json(t) for t in turns]}, 201

    return _idempotent("create_game", fields, header, "games", run, answer)


@bp.get("", responses=responses({200: Games}, *COMMON))
def list_games(query: GameList):
    """List my games, most recently played first, a page at a time."""
    after = _decode_cursor(query.cursor)
    games = _engine().list_games(g.user_id, query.limit + 1, after)
    page, more = games[:query.limit], len(games) > query.limit
    cursor = _encode_cursor(page[-1]) if more and page else None
    return {"games": [game_json(s) for s in page], "next_cursor": cursor}


@bp.get("/<session_id>", responses=responses({200: GameLoaded}, *COMMON, 404))
def get_game(path: GamePath):
    """Load a saved game with its most recent turns."""
    state = get_state()
    loaded = state.game.load(g.user_id, path.session_id)
    return Response(state.rendered.answer(loaded), content_type=JSON)


@bp.get("/<session_id>/turns", responses=responses({200: Turns}, *COMMON, 404))
def get_turns(path: GamePath, query: TurnList):
    """Page back through a game's turns: those before turn `before`, oldest first."""
    turns = _engine().turns_before(g.user_id, path.session_id, query.before, query.limit)
    return {"turns": [turn_json(t) for t in turns]}


@bp.post("/<session_id>/actions", responses=responses({201: TurnPlayed}, *WRITE))
def take_action(path: GamePath, body: Action, query: Waiting, header: IdempotencyHeader):
    """Play the player's action as the next turn, in its mode (`do` unless said otherwise)."""

    def run(key: str, settle: bool) -> Committed:
        return _engine().act(g.user_id, path.session_id, body.action, key, settle, _safety(),
                             body.mode)

    fields = body.model_dump(exclude_none=True)
    if fields.get("mode") == "do":
        del fields["mode"]  # a retry from a client that never sent a mode is the same request
    return _idempotent(f"take_action:{path.session_id}", fields, header, "actions",
                       run, _turn_answer(query, 201))


@bp.post("/<session_id>/turns/<int:n>/image",
         responses=responses({202: TurnOnly}, *WRITE))
def retry_turn_image(path: TurnPath, query: Waiting, header: IdempotencyHeader):
    """Ask again for a turn's image when it ended as a placeholder."""

    def run(key: str, settle: bool) -> Committed:
        return _engine().retry_image(g.user_id, path.session_id, path.n, key, settle,
                                     _safety())

    def answer(committed: Committed):
        _maybe_wait(query, committed.turns)
        turn = _engine().images_now(committed.session, committed.turns)[0]
        return {"turn": turn_json(turn)}, 202

    return _idempotent(f"retry_turn_image:{path.session_id}:{path.n}", {}, header, "images",
                       run, answer)


@bp.post("/<session_id>/turns/<int:n>/retry", responses=responses({201: TurnPlayed}, *WRITE))
def retry_turn(path: TurnPath, query: Waiting, header: IdempotencyHeader):
    """Narrate the last turn again from its action and mode; every alternative is kept.

    The new alternative is chosen and has its own image; a failure (the
    narrator unavailable, say) leaves the earlier ones as they were.
    """

    def run(key: str, settle: bool) -> Committed:
        return _engine().retry_turn(g.user_id, path.session_id, path.n, key, settle, _safety())

    return _idempotent(f"retry_turn:{path.session_id}:{path.n}", {}, header, "actions", run,
                       _turn_answer(query, 201))


@bp.put("/<session_id>/turns/<int:n>/choice", responses=responses({200: TurnOnly}, *WRITE))
def choose_alternative(path: TurnPath, body: Choice, header: IdempotencyHeader):
    """Show alternative `index` of a turn (choosing it again changes nothing)."""
    return {"turn": turn_json(_engine().choose(g.user_id, path.session_id, path.n, body.index))}


@bp.put("/<session_id>/turns/<int:n>", responses=responses({200: TurnOnly}, *WRITE))
def edit_turn(path: TurnPath, body: TurnEdit, header: IdempotencyHeader):
    """Change a past turn's action or narration in place; its image stays."""
    turn = _engine().edit(g.user_id, path.session_id, path.n,
                          body.model_dump(exclude_none=True), _safety())
    return {"turn": turn_json(turn)}


@bp.delete("/<session_id>/turns/last", responses=responses({200: GameOnly}, *WRITE))
def undo_turn(path: GamePath, header: IdempotencyHeader):
    """Take back the last turn (never the opening) and its images; `turn_count` goes down.

    With an Idempotency-Key, a retry never takes back a second turn.
    """

    def run(key: str, settle: bool) -> Committed:
        return _engine().undo(g.user_id, path.session_id, key, settle)

    def answer(committed: Committed):
        return {"game": game_json(committed.session)}, 200

    def replay(_result) -> Committed:
        return Committed(_engine().load(g.user_id, path.session_id).session, [], replayed=True)

    return _idempotent(f"undo:{path.session_id}", {}, header, "actions", run, answer, replay)


@bp.patch("/<session_id>", responses=responses({200: GameOnly}, *COMMON, 400, 404))
def update_game(path: GamePath, body: GameUpdate, header: IdempotencyHeader):
    """Change a game's title, story memory (plot essentials, author's note) or image mode.

    A field left out is kept; `clear` empties memory fields.  Applying the
    same change twice leaves the game as once, so a retry is safe.
    """
    changes = body.model_dump(exclude_none=True, exclude={"clear"})
    game = _engine().update(g.user_id, path.session_id, changes, body.clear, _safety())
    return {"game": game_json(game)}


@bp.get("/<session_id>/cards", responses=responses({200: Cards}, *COMMON, 404))
def list_cards(path: GamePath):
    """List the game's story cards."""
    return {"cards": [card_json(c) for c in _engine().list_cards(g.user_id, path.session_id)]}


@bp.post("/<session_id>/cards", responses=responses({201: CardAnswer}, *WRITE))
def create_card(path: GamePath, body: CardBody, header: IdempotencyHeader):
    """Add a story card (at most 50 a game); a retry with its Idempotency-Key gets the same card."""
    key = header.idempotency_key or request_key()
    digest = get_state().idempotency.digest("create_card", body.model_dump())
    card, replayed = _engine().add_card(g.user_id, path.session_id, body.model_dump(),
                                        f"{key}:{digest}", _safety())
    return {"card": card_json(card)}, 201, ({"Idempotent-Replayed": "true"} if replayed else {})


@bp.put("/<session_id>/cards/<card_id>", responses=responses({200: CardAnswer}, *WRITE))
def update_card(path: CardPath, body: CardBody, header: IdempotencyHeader):
    """Replace a story card's title, keys and text (a retry is safe: the same change again)."""
    card = _engine().change_card(g.user_id, path.session_id, path.card_id, body.model_dump(),
                                 _safety())
    return {"card": card_json(card)}


@bp.delete("/<session_id>/cards/<card_id>", responses=responses({204: None}, *COMMON, 404))
def delete_card(path: CardPath, header: IdempotencyHeader):
    """Delete a story card (deleting one already gone answers 204 too)."""
    _engine().remove_card(g.user_id, path.session_id, path.card_id)
    return "", 204


@bp.delete("/<session_id>", responses=responses({204: None}, *COMMON, 404))
def delete_game(path: GamePath):
    """Delete a game, its turns and its images."""
    _engine().delete(g.user_id, path.session_id)
    return "", 204


# --- helpers -------------------------------------------------------------------

def _engine():
    return get_state().game


def _safety() -> str | None:
    """The safety level the player chose (None: the service's default)."""
    return get_state().users.safety_level(g.user_id)


def _idempotent(route: str, body: dict[str, Any], header: IdempotencyHeader, limit: str,
                run: Callable[[str, bool], Committed],
                answer: Callable[[Committed], tuple[dict[str, Any], int]],
                replay: Callable[[dict[str, Any]], Committed] | None = None):
    """Run a write at most once per ``Idempotency-Key``; every retry gets what it committed.

    The one owner of a keyed write's lifecycle: claim the key (or find the
    earlier request's result and answer it from the current state, before
    any rate limit is counted), run the write with the key stored in what it
    commits, then record the result.  A failure that proves nothing was
    saved forgets the claim; any other keeps it, released, so that the
    retry settles what the failed attempt may have committed.
    """
    key = header.idempotency_key
    state = get_state()
    claim = state.idempotency.claim(g.user_id, key, state.idempotency.digest(route, body)) \
        if key is not None else None
    if claim is not None and claim.legacy_answer is not None:
        earlier = claim.legacy_answer
        return earlier.get("body", {}), earlier.get("status", 200), {"Idempotent-Replayed": "true"}
    if claim is not None and claim.result is not None:
        if replay is not None:
            return _answered(answer, replay(claim.result))
        earlier = _engine().committed(g.user_id, claim.result["session_id"], claim.result["n"],
                                      replayed=True)
        return _answered(answer, earlier)
    takeover = bool(claim and claim.takeover)
    try:
        if not takeover:  # a takeover retries a request already counted
            state.limiter.check(limit, g.user_id)
        committed = run(claim.request_key if claim else request_key(), takeover)
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


def _turn_answer(query: Waiting, status: int) -> Callable[[Committed], tuple[dict, int]]:
    def answer(committed: Committed):
        _maybe_wait(query, committed.turns)
        turn = _engine().images_now(committed.session, committed.turns)[0]
        return {"game": game_json(committed.session), "turn": turn_json(turn)}, status

    return answer


def _maybe_wait(query: Waiting, turns: list[dict[str, Any]]) -> None:
    """With ``?wait=image``, wait (within the image deadline) for the turns' images."""
    if query.wait != "image" or not may_wait():
        return
    for turn in turns:
        if turn.get("image"):
            get_state().jobs.wait(turn["image"]["id"], client=request.remote_addr or "unknown")


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
