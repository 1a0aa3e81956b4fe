"""The game: creating adventures, playing turns, loading and deleting saved games."""

from __future__ import annotations

import logging
import secrets
import threading
import time
import weakref
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from ..catalog import GENRES
from ..errors import Conflict, NarratorUnavailable, NotFound, SessionConflict
from ..images.jobs import ImageJobs, turn_image
from ..images.types import ImageRequest
from ..metrics import Metrics
from ..narrators.types import Narration, NarrationContext, Narrator, PastTurn
from ..sessions.store import SessionStore, new_session_id

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5
MAX_TURN = 10**9  # beyond any real game, and within what MongoDB integers hold


class GameEngine:
    """Plays games: narrates, saves each turn durably, and starts its image."""

    def __init__(self, store: SessionStore, narrator: Narrator, jobs: ImageJobs,
                 metrics: Metrics, config: Mapping[str, Any]):
        self.store, self.narrator, self.jobs, self.metrics = store, narrator, jobs, metrics
        self.recent = config["RECENT_TURNS"]
        self.context_turns = config["NARRATOR_CONTEXT_TURNS"]
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = \
            weakref.WeakValueDictionary()
        self._locks_guard = threading.Lock()

    # --- playing --------------------------------------------------------------

    def create(self, user_id: str, genre: str, style: str, title: str | None = None,
               prologue: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Start a game; a custom prologue is its opening, else the narrator writes one."""
        session_id, seed = new_session_id(), secrets.randbits(31)
        title = title or f"A {GENRES[genre]['title']} Adventure"
        if prologue:
            opening = Narration(prologue, prologue[:400])
        else:
            opening = self._narrate(NarrationContext(genre, style, title, seed, 0))
        slot = self.jobs.reserve(session_id, 0, ImageRequest(opening.image_prompt, genre, style))
        session = {"_id": session_id, "user_id": user_id, "title": title, "genre": genre,
                   "style": style, "seed": seed}
        try:
            session, turn = self.store.create(session, _turn(None, opening, slot))
        except Exception:
            self.metrics.session_creations.labels("failed").inc()
            self.jobs.discard(slot)
            raise
        self.metrics.session_creations.labels("created").inc()
        self.jobs.submit(slot)
        log.info("game created", extra={"session_id": session_id, "user_id": user_id})
        return session, [turn]

    def act(self, user_id: str, session_id: str,
            action: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Play ``action`` as the next turn; retried from fresh state if a stale copy lost."""
        with self._session_lock(session_id):
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                session = self.store.load(user_id, session_id)
                try:
                    return self._play(session, action)
                except SessionConflict:
                    # Nothing was written: the store dropped its stale copy,
                    # so the next attempt narrates from the real latest turn.
                    if attempt == COMMIT_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    def _play(self, session: dict[str, Any], action: str) -> tuple[dict[str, Any], dict]:
        history = self.store.recent_turns(session["_id"], self.context_turns)
        context = NarrationContext(
            session["genre"], session["style"], session["title"], session["seed"],
            session["turn_count"], action,
            [PastTurn(t.get("action"), t["narration"]) for t in history])
        narration = self._narrate(context)
        slot = self.jobs.reserve(session["_id"], session["turn_count"],
                                 ImageRequest(narration.image_prompt, session["genre"],
                                              session["style"]))
        try:
            session, turn = self.store.commit_turn(session, _turn(action, narration, slot))
        except Exception:
            self.jobs.discard(slot)
            raise
        self.jobs.submit(slot)
        return session, turn

    def _narrate(self, context: NarrationContext) -> Narration:
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

    def load(self, user_id: str,
             session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Return a game and its most recent turns, consistent with each other."""
        session = self.store.load(user_id, session_id)
        turns = self.store.recent_turns(session_id, self.recent)
        if not turns or turns[-1]["n"] != session["turn_count"] - 1:
            # The cached copy is behind: another process played a turn since
            # (or deleted the game; every game has its opening turn).
            self.store.cache.invalidate((user_id, session_id))
            session = self.store.load(user_id, session_id)
            turns = self.store.recent_turns(session_id, self.recent)
        return session, [self.fresh_image(turn) for turn in turns]

    def turns_before(self, user_id: str, session_id: str, before: int | None,
                     limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` turns of a game before turn ``before``."""
        self.store.load(user_id, session_id)
        return [self.fresh_image(t) for t in self.store.recent_turns(session_id, limit, before)]

    def fresh_image(self, turn: dict[str, Any]) -> dict[str, Any]:
        """Return ``turn`` with its image's current state if it was pending."""
        image = turn.get("image") or {}
        if image.get("status") == "pending":
            slot = self.jobs.find(image["id"])  # reclaims an abandoned image
            if slot is not None:
                turn = {**turn, "image": turn_image(slot)}
        return turn

    def list_games(self, user_id: str, limit: int, after=None) -> list[dict[str, Any]]:
        """Return the user's games, most recently played first."""
        return self.store.list_games(user_id, limit, after)

    def delete(self, user_id: str, session_id: str) -> None:
        """Delete a game and its turns."""
        self.store.delete(user_id, session_id)

    def retry_image(self, user_id: str, session_id: str, n: int) -> dict[str, Any]:
        """Ask again for the image of turn ``n`` when it ended as a placeholder."""
        session = self.store.load(user_id, session_id)
        if n > MAX_TURN:
            raise NotFound(f"Turn {n} does not exist in this game.")
        turns = self.store.recent_turns(session_id, 1, before=n + 1)
        if not turns or turns[0]["n"] != n:
            raise NotFound(f"Turn {n} does not exist in this game.")
        turn = self.fresh_image(turns[0])
        image = turn.get("image") or {}
        if image.get("status") == "pending":
            raise Conflict("This turn's image is still being made.")
        if not image.get("placeholder"):
            raise Conflict("This turn already has its image.")
        slot = self.jobs.reserve(session_id, n, ImageRequest(
            turn.get("image_prompt") or turn["narration"][:400], session["genre"],
            session["style"]))
        self.store.set_turn_image(session_id, n, turn_image(slot))
        self.jobs.submit(slot)
        return {**turn, "image": turn_image(slot)}


def _turn(action: str | None, narration: Narration, slot: Mapping[str, Any]) -> dict[str, Any]:
    return {"action": action, "narration": narration.narration,
            "image_prompt": narration.image_prompt, "image": turn_image(slot)}
