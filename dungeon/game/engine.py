"""The game: creating adventures, playing turns, loading and deleting saved games."""

from __future__ import annotations

import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pymongo.errors import PyMongoError

from ..catalog import GENRES
from ..errors import (
    Conflict,
    NarratorBusy,
    NarratorUnavailable,
    NotFound,
    SessionConflict,
    SessionNotFound,
    StoreUnavailable,
    store_error_fields,
)
from ..images.jobs import ImageJobs, turn_image
from ..images.types import ImageRequest
from ..metrics import Metrics
from ..moderation import TextModerator, image_moderation
from ..narrators.summary import summarize as local_summary
from ..narrators.types import Narration, NarrationContext, Narrator, PastTurn, StoryCard
from ..sessions.cache import RecentTurns
from ..sessions.cards import CardStore, triggered
from ..sessions.store import AlreadyCommitted, SessionStore, new_session_id
from .context import fit

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5
CUE_TURNS = 2  # recent turns whose words can bring a story card into play
IMAGE_MODES = ("every_turn", "on_demand", "off")


@dataclass(frozen=True)
class GameStart:
    """What a new game starts from: its world, and what the player wrote for it."""

    genre: str
    style: str
    title: str | None = None
    prologue: str | None = None
    plot_essentials: str | None = None
    authors_note: str | None = None
    image_mode: str = "every_turn"

    def written(self) -> dict[str, str | None]:
        """Every text the player wrote, by field, for moderation."""
        return {"title": self.title, "custom_prologue": self.prologue,
                "plot_essentials": self.plot_essentials, "authors_note": self.authors_note}

    def memory(self) -> dict[str, str]:
        """The story memory the game keeps."""
        return {name: value for name, value in (("plot_essentials", self.plot_essentials),
                                                ("authors_note", self.authors_note)) if value}
MAX_TURN = 10**9  # beyond any real game, and within what MongoDB integers hold


@dataclass(frozen=True)
class Committed:
    """What a write committed: the game as it now is and the turns it wrote.

    ``replayed`` is True when an earlier attempt with the same request key
    had committed it, and this one only found it.
    """

    session: dict[str, Any]
    turns: list[dict[str, Any]]
    replayed: bool = False
    reference: dict[str, Any] = field(init=False)

    def __post_init__(self):
        # What an Idempotency-Key remembers: enough to answer from fresh state.
        object.__setattr__(self, "reference", {
            "session_id": self.session["_id"],
            "n": self.turns[-1]["n"] if self.turns else None})


class LoadedGame(NamedTuple):
    """A game as a load shows it: the game, its most recent turns, and their stamp.

    ``stamp`` is that of the kept turns (``RecentTurns``) when the turns are
    shown as kept; None when they were read from the database or an image
    of theirs was pending and has just been read again.
    """

    session: dict[str, Any]
    turns: list[dict[str, Any]]
    stamp: int | None


class GameEngine:
    """Plays games: narrates, saves each turn durably, and starts its image.

    Every write carries a request key (the client's ``Idempotency-Key``, or
    a fresh one) that is stored with what it commits.  With ``settle=True``
    (an earlier attempt with that key ended without a known outcome) the
    engine first looks for what that attempt committed and answers it.
    """

    def __init__(self, store: SessionStore, narrator: Narrator, jobs: ImageJobs,
                 metrics: Metrics, config: Mapping[str, Any], moderator: TextModerator,
                 cards: CardStore):
        self.store, self.narrator, self.jobs, self.metrics = store, narrator, jobs, metrics
        self.moderator = moderator
        self.recent = config["RECENT_TURNS"]
        self.context_turns = config["NARRATOR_CONTEXT_TURNS"]
        self.context_chars = config["NARRATOR_CONTEXT_CHARS"]
        self.summary_every = config["SUMMARY_EVERY"]
        self.max_alternatives = config["MAX_ALTERNATIVES"]
        self._narrations = threading.BoundedSemaphore(config["NARRATION_LIMIT"])
        self.cards = cards
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = \
            weakref.WeakValueDictionary()
        self._locks_guard = threading.Lock()

    # --- playing --------------------------------------------------------------

    def create(self, user_id: str, start: GameStart, key: str, settle: bool = False,
               safety: str | None = None) -> Committed:
        """Start a game; a custom prologue is its opening, else the narrator writes one.

        What the player wrote is moderated at their ``safety`` level first.
        """
        self.moderator.check(start.written(), safety)
        if settle:
            earlier = self.store.session_by_key(user_id, key)
            if earlier is not None:
                return self.committed(user_id, earlier["_id"], 0, replayed=True)
        session_id, seed = new_session_id(), secrets.randbits(31)
        title = start.title or f"A {GENRES[start.genre]['title']} Adventure"
        session = {"_id": session_id, "user_id": user_id, "title": title,
                   "genre": start.genre, "style": start.style, "seed": seed,
                   "image_mode": start.image_mode, **start.memory()}
        if start.prologue:
            opening = Narration(start.prologue, start.prologue[:400])
        else:
            opening = self._narrate(self._context(session, [], None, "do", turn=0))
        try:
            session, turn = self._commit(
                session, 0, None, opening, "do", safety,
                lambda turn: self.store.create(session, turn, key))
        except AlreadyCommitted as exc:
            return self.committed(user_id, exc.document["_id"], 0, replayed=True)
        except Exception:
            self.metrics.session_creations.labels("failed").inc()
            raise
        self.metrics.session_creations.labels("created").inc()
        log.info("game created", extra={"session_id": session_id, "user_id": user_id})
        return Committed(session, [turn])

    def act(self, user_id: str, session_id: str, action: str | None, key: str,
            settle: bool = False, safety: str | None = None, mode: str = "do") -> Committed:
        """Play ``action`` in ``mode`` as the next turn; replayed from fresh state after a conflict.

        ``see`` makes a picture of what ``action`` describes (or of the
        current scene when it is None) as a turn of its own, with no narration.
        """
        self.moderator.check({"action": action}, safety)
        with self._session_lock(session_id):
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                session = self.store.load(user_id, session_id)
                earlier = self.store.turn_by_key(session_id, key) if settle else None
                if earlier is None:
                    try:
                        return self._play(session, action, key, safety, mode)
                    except SessionConflict:
                        # Nothing was written: the store dropped its stale
                        # copy, so the next attempt narrates from the real
                        # latest turn.
                        if attempt == COMMIT_ATTEMPTS:
                            raise
                        continue
                    except AlreadyCommitted as exc:
                        earlier = exc.document
                return Committed(self.store.settle(session, earlier), [earlier], replayed=True)
        raise AssertionError("unreachable")

    def _play(self, session: dict[str, Any], action: str | None, key: str,
              safety: str | None, mode: str) -> Committed:
        recent = self.store.recent_for(session, self.context_turns)
        if recent is None:  # a stale copy: its commit would lose the turn number anyway
            self.store.forget_cached(session["user_id"], session["_id"])
            raise SessionConflict()
        history = recent.turns
        if mode == "see":
            narration = _seen(action, history)
        else:
            narration = self._narrate(self._context(session, history, action, mode))
        n = session["turn_count"]
        session, turn = self._commit(
            session, n, action, narration, mode, safety,
            lambda turn: self.store.commit_turn(session, turn, key))
        self._refresh_summary(session)
        return Committed(session, [turn])

    def _commit(self, session: Mapping[str, Any], n: int, action: str | None,
                narration: Narration, mode: str, safety: str | None,
                save: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]):
        """Save turn ``n`` with ``save``, with its image when the game's image mode wants one."""
        turn = {"action": action, "mode": mode, "narration": narration.narration,
                "image_prompt": narration.image_prompt, "image": None}
        if not _makes_image(session.get("image_mode"), mode):
            return save(turn)
        request = ImageRequest(narration.image_prompt, session["genre"], session["style"],
                               moderation=image_moderation(safety))
        with self.jobs.for_turn(session["_id"], n, request, self.store.turns_expiry()) as slot:
            return save({**turn, "image": turn_image(slot)})

    def _context(self, session: Mapping[str, Any], history: list[Mapping[str, Any]],
                 action: str | None, mode: str, turn: int | None = None) -> NarrationContext:
        """Return the narrator's context: the story memory and the recent turns, within budget."""
        # A see turn is a picture's caption, not story: the narrator does not get it.
        past = [PastTurn(t.get("action"), t["narration"], t.get("mode") or "do")
                for t in history if t.get("mode") != "see"]
        cards = self.cards.list(session["_id"]) if session.get("turn_count") else []
        cue = [action or ""] + [t.narration for t in past[-CUE_TURNS:]] + \
            [t.action or "" for t in past[-CUE_TURNS:]]
        chosen = [StoryCard(c["title"], tuple(c["keys"]), c["text"])
                  for c in triggered(cards, cue)]
        context = NarrationContext(
            session["genre"], session["style"], session["title"], session["seed"],
            session.get("turn_count", 0) if turn is None else turn, action, past, mode,
            session.get("plot_essentials"), session.get("authors_note"), chosen,
            session.get("summary"))
        return fit(context, self.context_chars)

    def _refresh_summary(self, session: Mapping[str, Any]) -> None:
        """Bring the running summary up to the turns just before the narrator's window.

        Every ``SUMMARY_EVERY`` turns, by the narrator when it can summarise,
        else locally.  Best effort: a failure keeps the old summary.
        """
        window_start = session["turn_count"] - self.context_turns
        through = session.get("summary_through")
        done = -1 if through is None else through
        if window_start - 1 - done < self.summary_every:
            return
        try:
            turns = [t for t in self.store.recent_turns(session["_id"], window_start - 1 - done,
                                                        before=window_start)]
            past = [PastTurn(t.get("action"), t["narration"], t.get("mode") or "do")
                    for t in turns if t.get("mode") != "see"]
            summarize = getattr(self.narrator, "summarize", None) or local_summary
            summary = summarize(session.get("summary"), past)
            self.store.set_summary(session, summary, window_start - 1)
        except (NarratorUnavailable, PyMongoError, StoreUnavailable) as exc:
            log.warning("story summary not refreshed", extra=store_error_fields(exc))

    def _narrate(self, context: NarrationContext) -> Narration:
        # A narration holds a request thread for up to the narrator's
        # timeouts: past NARRATION_LIMIT at once, the next one is refused
        # rather than queued, so narrations never take every thread.
        if not self._narrations.acquire(blocking=False):
            self.metrics.narrator_attempts.labels(self.narrator.name, "busy").inc()
            raise NarratorBusy()
        try:
            return self._narrate_now(context)
        finally:
            self._narrations.release()

    def _narrate_now(self, context: NarrationContext) -> Narration:
        started, name = time.perf_counter(), self.narrator.name
        try:
            narration = self.narrator.narrate(context)
        except NarratorUnavailable:
            self.metrics.narrator_attempts.labels(name, "failed").inc()
            raise
        except Exception as exc:  # a narrator plugin's bug: the turn fails, nothing is saved
            log.exception("narrator %s raised %s", name, type(exc).__name__)
            self.metrics.narrator_attempts.labels(name, "failed").inc()
            raise NarratorUnavailable() from None
        finally:
            self.metrics.narrator_seconds.labels(name).observe(time.perf_counter() - started)
        self.metrics.narrator_attempts.labels(name, "ok").inc()
        return narration

    @contextmanager
    def _session_lock(self, session_id: str):
        # Actions on one game in one process take turns: they would only
        # conflict on the same turn number.  Other processes are kept in line
        # by the unique turn index.
        with self._locks_guard:
            lock = self._locks.setdefault(session_id, threading.Lock())
        with lock:
            yield

    # --- reading --------------------------------------------------------------

    def load(self, user_id: str, session_id: str) -> LoadedGame:
        """Return a game and its most recent turns, consistent with each other."""
        session = self.store.load(user_id, session_id)
        recent = self.store.recent_for(session, self.recent)
        if recent is None:
            # The cached copy is behind: another process played a turn since
            # (or deleted the game; every game has its opening turn).
            self.store.forget_cached(user_id, session_id)
            session = self.store.load(user_id, session_id)
            recent = RecentTurns(self.store.recent_turns(session_id, self.recent), None)
        if recent.settled:  # every image final: nothing to read again
            return LoadedGame(session, recent.turns, recent.stamp)
        turns = self.images_now(session, recent.turns)
        # A pending image read just now makes these turns differ from the kept ones.
        unchanged = all(shown is kept for shown, kept in zip(turns, recent.turns, strict=True))
        return LoadedGame(session, turns, recent.stamp if unchanged else None)

    def committed(self, user_id: str, session_id: str, n: int,
                  replayed: bool = False) -> Committed:
        """Return game ``session_id`` with its turn ``n`` as they are now (to answer a replay)."""
        session = self._current(user_id, session_id)
        return Committed(session, [self._turn(session, n)], replayed)

    def turns_before(self, user_id: str, session_id: str, before: int | None,
                     limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` turns of a game before turn ``before``."""
        session = self._current(user_id, session_id)
        return self.images_now(session, self.store.recent_turns(session_id, limit, before))

    def _current(self, user_id: str, session_id: str) -> dict[str, Any]:
        """Return the game as the database has it now, its cached copy checked by its last turn.

        Another process may have played or deleted the game since this
        process cached it; the last turn tells (every game has its opening).
        """
        session = self.store.load(user_id, session_id)
        last = self.store.recent_turns(session_id, 1)
        if not last or last[-1]["n"] != session["turn_count"] - 1:
            self.store.forget_cached(user_id, session_id)
            session = self.store.load(user_id, session_id)
        return session

    def images_now(self, session: Mapping[str, Any],
                   turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return ``turns`` with the current state of each image that was pending.

        Reading a pending image may move it on: an abandoned slot is claimed
        again, a missing one is restored as the placeholder.  Best effort: a
        store that cannot answer leaves the image as the turn last recorded
        it, so an answer about a committed write never fails on it.
        """
        return [self._image_now(session, turn) for turn in turns]

    def _image_now(self, session: Mapping[str, Any], turn: dict[str, Any]) -> dict[str, Any]:
        if turn.get("alternatives"):
            alternatives = [self._alternative_now(a) for a in turn["alternatives"]]
            if any(now is not then for now, then in zip(alternatives, turn["alternatives"],
                                                         strict=True)):
                turn = {**turn, "alternatives": alternatives}
        image = turn.get("image") or {}
        if image.get("status") != "pending":
            return turn
        try:
            slot = self.jobs.find_and_reclaim(image["id"])
        except PyMongoError as exc:
            log.warning("turn image state not read", extra=store_error_fields(exc))
            return turn
        if slot is None:
            slot = self._restore_slot(session, turn)
        if slot is None:
            return {**turn, "image": {**image, "status": "failed", "placeholder": True}}
        return {**turn, "image": {**image, **turn_image(slot)}}

    def _alternative_now(self, alternative: dict[str, Any]) -> dict[str, Any]:
        image = alternative.get("image") or {}
        if image.get("status") != "pending":
            return alternative
        try:
            slot = self.jobs.find_and_reclaim(image["id"])
        except PyMongoError:
            return alternative
        return {**alternative, "image": {**image, **turn_image(slot)}} if slot else alternative

    def _restore_slot(self, session: Mapping[str, Any],
                      turn: Mapping[str, Any]) -> dict[str, Any] | None:
        request = ImageRequest(_image_prompt(turn), session["genre"], session["style"])
        try:
            return self.jobs.restore(turn["image"]["id"], session["_id"], turn["n"], request,
                                     turn.get("expires_at"))
        except (PyMongoError, StoreUnavailable) as exc:  # a failed image; the next read retries
            log.warning("missing image slot not restored", extra=store_error_fields(exc))
            return None

    def list_games(self, user_id: str, limit: int, after=None) -> list[dict[str, Any]]:
        """Return the user's games, most recently played first."""
        return self.store.list_games(user_id, limit, after)

    def delete(self, user_id: str, session_id: str) -> None:
        """Delete a game, its turns, cards and images; a retry finishes an interrupted delete."""
        found = self.store.delete(user_id, session_id)
        self.jobs.forget(session_id)
        self.cards.forget(session_id)
        if not found:
            raise SessionNotFound()

    def retry_image(self, user_id: str, session_id: str, n: int, key: str,
                    settle: bool = False, safety: str | None = None) -> Committed:
        """Make turn ``n``'s image again when it ended as a placeholder, or at all if it has none.

        A turn keeps its image prompt, so any turn can have its picture made
        later (a game whose image mode is ``on_demand`` or ``off``).  The new
        image carries ``key``, so a retry of this request that finds it
        answers it rather than asking again.
        """
        session = self._current(user_id, session_id)
        turn = self._image_now(session, self._turn(session, n))
        image = turn.get("image") or {}
        if settle and image.get("request_key") == key:
            return Committed(session, [turn], replayed=True)  # the earlier attempt's image
        if image.get("status") == "pending":
            raise Conflict("This turn's image is still being made.")
        if image and not image.get("placeholder"):
            raise Conflict("This turn already has its image.")
        request = ImageRequest(_image_prompt(turn), session["genre"], session["style"],
                               moderation=image_moderation(safety))
        with self.jobs.for_turn(session_id, n, request, turn.get("expires_at")) as slot:
            fresh = {**turn_image(slot), "request_key": key}
            self.store.set_turn_image(session_id, n, image.get("id"), fresh)
        return Committed(session, [{**turn, "image": fresh}])

    # --- retry, undo, edit --------------------------------------------------------

    def retry_turn(self, user_id: str, session_id: str, n: int, key: str,
                   settle: bool = False, safety: str | None = None) -> Committed:
        """Narrate the last turn again from its action and mode, keeping every alternative.

        The new alternative is chosen; the earlier ones stay, each with its
        image.  A narrator failure changes nothing.
        """
        with self._session_lock(session_id):
            session = self._current(user_id, session_id)
            turn = self._turn(session, n)
            alternatives = _alternatives(turn)
            if settle and any(a.get("request_key") == key for a in alternatives):
                return Committed(session, [turn], replayed=True)
            if n != session["turn_count"] - 1:
                raise Conflict("Only the last turn can be retried.")
            if turn.get("mode") == "see":
                raise Conflict("A see turn has no narration to retry; ask for its image again.")
            if len(alternatives) >= self.max_alternatives:
                raise Conflict(f"A turn keeps at most {self.max_alternatives} alternatives.")
            history = self.store.recent_turns(session_id, self.context_turns, before=n)
            if n == 0 and turn.get("action") is None:
                context = self._context(session, [], None, "do", turn=0)
            else:
                context = self._context(session, history, turn.get("action"),
                                        turn.get("mode") or "do", turn=n)
            narration = self._narrate(context)
            fresh = {"narration": narration.narration, "image_prompt": narration.image_prompt,
                     "image": None, "created_at": self.store.now(), "request_key": key}
            if not _makes_image(session.get("image_mode"), turn.get("mode") or "do"):
                saved = self.store.add_alternative(session, turn, [*alternatives, fresh])
                return Committed(self._current(user_id, session_id), [saved])
            request = ImageRequest(narration.image_prompt, session["genre"], session["style"],
                                   moderation=image_moderation(safety))
            with self.jobs.for_turn(session_id, n, request, turn.get("expires_at")) as slot:
                fresh["image"] = turn_image(slot)
                saved = self.store.add_alternative(session, turn, [*alternatives, fresh])
            return Committed(self._current(user_id, session_id), [saved])

    def choose(self, user_id: str, session_id: str, n: int, index: int) -> dict[str, Any]:
        """Show alternative ``index`` of turn ``n``; return the turn."""
        session = self._current(user_id, session_id)
        turn = self._turn(session, n)
        alternatives = _alternatives(turn)
        if not 0 <= index < len(alternatives):
            raise NotFound(f"Turn {n} has no alternative {index}.")
        saved = self.store.choose_alternative(session, {**turn, "alternatives": alternatives},
                                              index)
        return self.images_now(session, [saved])[0]

    def undo(self, user_id: str, session_id: str, key: str, settle: bool = False) -> Committed:
        """Take back the last turn (never the opening) and its images; answer the game."""
        with self._session_lock(session_id):
            session = self._current(user_id, session_id)
            if settle and key in (session.get("undo_keys") or []):
                return Committed(session, [], replayed=True)
            session, n = self.store.undo_last(session, key)
        try:
            self.jobs.forget(session_id, n)
        except PyMongoError as exc:  # its slots then wait for their expiry
            log.warning("undone turn's images not removed", extra=store_error_fields(exc))
        return Committed(session, [])

    def edit(self, user_id: str, session_id: str, n: int, changes: Mapping[str, str],
             safety: str | None = None) -> dict[str, Any]:
        """Change turn ``n``'s action or narration in place (moderated first); its image stays."""
        self.moderator.check(dict(changes), safety)
        session = self._current(user_id, session_id)
        turn = self._turn(session, n)
        if "action" in changes and turn.get("action") is None:
            raise Conflict("This turn has no action to edit.")
        saved = self.store.edit_turn(session, turn, changes)
        return self.images_now(session, [saved])[0]

    # --- story memory and cards ---------------------------------------------------

    def update(self, user_id: str, session_id: str, changes: Mapping[str, Any],
               cleared: list[str], safety: str | None = None) -> dict[str, Any]:
        """Change a game's title, story memory or image mode (moderated first)."""
        self.moderator.check({k: changes.get(k) for k in ("title", "plot_essentials",
                                                          "authors_note")}, safety)
        return self.store.update_game(user_id, session_id, changes, cleared)

    def list_cards(self, user_id: str, session_id: str) -> list[dict[str, Any]]:
        """Return the game's story cards."""
        self.store.load(user_id, session_id)
        return self.cards.list(session_id)

    def add_card(self, user_id: str, session_id: str, card: Mapping[str, Any], key: str,
                 safety: str | None = None) -> tuple[dict[str, Any], bool]:
        """Add a story card (moderated first); return it and whether it was there already."""
        self._check_card(card, safety)
        self.store.load(user_id, session_id)
        return self.cards.create(session_id, card, key, self.store.turns_expiry())

    def change_card(self, user_id: str, session_id: str, card_id: str,
                    card: Mapping[str, Any], safety: str | None = None) -> dict[str, Any]:
        """Replace a story card's title, keys and text (moderated first)."""
        self._check_card(card, safety)
        self.store.load(user_id, session_id)
        return self.cards.update(session_id, card_id, card)

    def remove_card(self, user_id: str, session_id: str, card_id: str) -> None:
        """Delete a story card."""
        self.store.load(user_id, session_id)
        self.cards.delete(session_id, card_id)

    def _check_card(self, card: Mapping[str, Any], safety: str | None) -> None:
        self.moderator.check({"title": card["title"], "text": card["text"],
                              "keys": ", ".join(card["keys"])}, safety)

    def _turn(self, session: Mapping[str, Any], n: int) -> dict[str, Any]:
        if not 0 <= n <= MAX_TURN:
            raise NotFound(f"Turn {n} does not exist in this game.")
        turn = self.store.turn(session["_id"], n)
        if turn is None:
            raise NotFound(f"Turn {n} does not exist in this game.")
        return turn


def _alternatives(turn: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the turn's alternatives; a turn never retried has its own text as the one."""
    if turn.get("alternatives"):
        return [dict(a) for a in turn["alternatives"]]
    return [{"narration": turn["narration"], "image_prompt": turn.get("image_prompt"),
             "image": turn.get("image"), "created_at": turn["created_at"],
             "request_key": turn.get("request_key")}]


def _makes_image(image_mode: str | None, mode: str) -> bool:
    """Return True if a turn in ``mode`` gets a picture in a game with ``image_mode``."""
    return mode == "see" or (image_mode or "every_turn") == "every_turn"


def _seen(text: str | None, history: list[Mapping[str, Any]]) -> Narration:
    """A ``see`` turn: its caption and the picture of what it describes, or of the scene now."""
    if text:
        return Narration(text, text)
    scene = history[-1] if history else None
    prompt = (scene.get("image_prompt") or scene["narration"][:400]) if scene else "the scene"
    return Narration("You take in the scene.", prompt)


def _image_prompt(turn: Mapping[str, Any]) -> str:
    return turn.get("image_prompt") or turn["narration"][:400]
