"""Saved games in MongoDB: sessions, their turns, and the cache in front of lookups.

A session document holds the game's summary and a ``version``; each turn is
a document of its own, unique by (session id, turn number), so a long game
never grows one document without bound and two writers can never both commit
the same turn.  Writes use the configured write concern (``majority`` and the
journal by default) and reads go to the primary: a game is reported created
only once the server has confirmed it durably, and is found by the next read.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from ..errors import SessionConflict, SessionNotFound
from ..metrics import Metrics
from .cache import SessionCache

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
# Turns outlive their session by this much, and their expiry is pushed in
# steps of it, so sliding a game's expiry costs one bulk write a week, not
# one per read.
TURN_EXPIRY_SLACK = timedelta(days=7)


def utcnow() -> datetime:
    """Return the current time, timezone-aware, at MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_session_id() -> str:
    """Return a new opaque, unguessable session id."""
    return secrets.token_urlsafe(16)


def valid_session_id(session_id: str) -> bool:
    """Return True if ``session_id`` has the shape of a session id."""
    return isinstance(session_id, str) and bool(SESSION_ID.match(session_id))


def write_concern(config: Mapping[str, Any]) -> WriteConcern:
    """Return the write concern game writes use."""
    w = config["MONGO_WRITE_CONCERN"]
    return WriteConcern(w=int(w) if str(w).isdigit() else w, j=config["MONGO_JOURNAL"],
                        wtimeout=config["MONGO_TIMEOUT_MS"])


class SessionStore:
    """Reads and writes games; every write is guarded, every miss explained in the log."""

    def __init__(self, database, config: Mapping[str, Any], metrics: Metrics, *,
                 now: Callable[[], datetime] = utcnow,
                 timer: Callable[[], float] = time.monotonic):
        options = {"write_concern": write_concern(config),
                   "read_preference": ReadPreference.PRIMARY}
        self.sessions = database.get_collection("sessions", **options)
        self.turns = database.get_collection("turns", **options)
        self.metrics = metrics
        self.now = now
        self.expiry = timedelta(days=config["SESSION_EXPIRY_DAYS"])
        self.touch_every = timedelta(seconds=config["SESSION_TOUCH_SECONDS"])
        self.cache = SessionCache(
            config["SESSION_CACHE_SIZE"], config["SESSION_CACHE_TTL"], timer=timer,
            on_hit=metrics.session_cache_hits.inc, on_miss=metrics.session_cache_misses.inc)

    def ensure_indexes(self) -> None:
        """Create the indexes the store relies on; safe to run on every start."""
        self.sessions.create_index([("user_id", ASCENDING), ("last_active_at", DESCENDING),
                                    ("_id", DESCENDING)], name="user_recent")
        self.sessions.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)
        self.turns.create_index([("session_id", ASCENDING), ("n", ASCENDING)],
                                name="session_turn", unique=True)
        self.turns.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    # --- create ---------------------------------------------------------------

    def create(self, session: dict[str, Any],
               opening: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Store a new game and its opening turn; return both once the server confirmed them."""
        now = self.now()
        expiry = self._expiry_fields(now, force=True)
        opening = {**opening, "session_id": session["_id"], "n": 0, "created_at": now,
                   "expires_at": expiry.get("turns_expire_at")}
        document = {**session, "version": 1, "turn_count": 1, "status": "active",
                    "created_at": now, "updated_at": now, "last_active_at": now, **expiry}
        # The turn goes first: a crash in between leaves an orphan turn that
        # expires, never a game without its opening.
        self.turns.insert_one(opening)
        self.sessions.insert_one(document)
        self.cache.put(_key(document), document)
        self._cache_size()
        return document, opening

    # --- read -----------------------------------------------------------------

    def load(self, user_id: str, session_id: str) -> dict[str, Any]:
        """Return the game ``session_id`` of ``user_id``, or raise SessionNotFound."""
        started = time.perf_counter()
        try:
            return self._load(user_id, session_id)
        finally:
            self.metrics.session_load_seconds.observe(time.perf_counter() - started)

    def _load(self, user_id: str, session_id: str) -> dict[str, Any]:
        if not valid_session_id(session_id):
            self._lookup("not_found")
            log.info("session lookup refused: malformed id", extra={"user_id": user_id})
            raise SessionNotFound()
        document = self.cache.get((user_id, session_id))
        outcome = "hit"
        if document is None:
            document, outcome = self._load_from_db(user_id, session_id), "found"
        now = self.now()
        if document.get("expires_at") and document["expires_at"] <= now:
            self.cache.invalidate((user_id, session_id))
            self._miss("expired", user_id, session_id)
        document = self._touch(document, now)
        self._lookup(outcome)
        return document

    def _load_from_db(self, user_id: str, session_id: str) -> dict[str, Any]:
        # One query by both ids: a session is only ever found for its owner.
        document = self.sessions.find_one({"_id": session_id, "user_id": user_id})
        if document is None:
            self._explain_miss(user_id, session_id)
        document = self._repair_turn_count(document)
        self.cache.put(_key(document), document)
        self._cache_size()
        return document

    def _explain_miss(self, user_id: str, session_id: str) -> None:
        """Log why a lookup missed, then raise; the client never learns which."""
        other = self.sessions.find_one({"_id": session_id}, {"user_id": 1})
        if other is not None:
            self._miss("not_found", user_id, session_id, "owned by another user",
                       owner_id=other["user_id"])
        self._miss("not_found", user_id, session_id,
                   "no such session (never created, deleted, or expired and removed)")

    def _miss(self, outcome: str, user_id: str, session_id: str, why: str | None = None,
              **fields: Any) -> None:
        self._lookup(outcome)
        log.warning("session lookup missed: %s", why or outcome,
                    extra={"session_id": session_id, "user_id": user_id, **fields})
        raise SessionNotFound()

    def _repair_turn_count(self, document: dict[str, Any]) -> dict[str, Any]:
        """Make ``turn_count`` match the stored turns after a crash between the two writes."""
        last = self.turns.find_one({"session_id": document["_id"]}, {"n": 1},
                                   sort=[("n", DESCENDING)])
        if last is None or last["n"] < document["turn_count"]:
            return document
        log.warning("session turn count repaired from %s to %s", document["turn_count"],
                    last["n"] + 1, extra={"session_id": document["_id"]})
        repaired = self.sessions.find_one_and_update(
            {"_id": document["_id"]}, {"$max": {"turn_count": last["n"] + 1},
                                       "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        return repaired or document

    def recent_turns(self, session_id: str, limit: int,
                     before: int | None = None) -> list[dict[str, Any]]:
        """Return up to ``limit`` turns before turn ``before`` (default: the latest), in order."""
        query: dict[str, Any] = {"session_id": session_id}
        if before is not None:
            query["n"] = {"$lt": before}
        found = list(self.turns.find(query, sort=[("n", DESCENDING)], limit=limit))
        return found[::-1]

    def list_games(self, user_id: str, limit: int,
                   after: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        """Return ``user_id``'s games, most recently played first, after the cursor position."""
        query: dict[str, Any] = {"user_id": user_id, "$or": [{"expires_at": None},
                                                            {"expires_at": {"$gt": self.now()}}]}
        if after is not None:
            active, session_id = after
            query["$and"] = [{"$or": [{"last_active_at": {"$lt": active}},
                                      {"last_active_at": active, "_id": {"$lt": session_id}}]}]
        cursor = self.sessions.find(query, sort=[("last_active_at", DESCENDING),
                                                 ("_id", DESCENDING)], limit=limit)
        return list(cursor)

    # --- write ----------------------------------------------------------------

    def commit_turn(self, session: dict[str, Any],
                    turn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Commit ``turn`` as the next turn of ``session``; return the session and the turn.

        The unique (session, number) insert is the commit point: when the copy
        of ``session`` was stale, that number is taken and SessionConflict is
        raised with nothing written.  The session is then advanced under its
        version guard.
        """
        n, now = session["turn_count"], self.now()
        expiry = self._expiry_fields(now, session)
        try:
            self.turns.insert_one({**turn, "session_id": session["_id"], "n": n,
                                   "created_at": now, "expires_at": expiry.get(
                                       "turns_expire_at", session.get("turns_expire_at"))})
        except DuplicateKeyError:
            self.cache.invalidate(_key(session))
            self._lookup("conflict")
            log.info("turn %s already taken: stale copy of the session", n,
                     extra={"session_id": session["_id"], "user_id": session["user_id"]})
            raise SessionConflict() from None
        stored = {**turn, "session_id": session["_id"], "n": n, "created_at": now}
        update = {"$max": {"turn_count": n + 1}, "$inc": {"version": 1},
                  "$set": {"updated_at": now, "last_active_at": now, **expiry}}
        document = self._advance(session, update)
        self.cache.put(_key(document), document)
        return document, stored

    def _advance(self, session: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        guard = {"_id": session["_id"], "user_id": session["user_id"]}
        document = self.sessions.find_one_and_update(
            {**guard, "version": session["version"]}, update,
            return_document=ReturnDocument.AFTER)
        if document is None:
            # Someone else moved the version (a repair, another process's
            # touch); the turn is committed all the same, and $max keeps the
            # count from going backwards.
            document = self.sessions.find_one_and_update(
                guard, update, return_document=ReturnDocument.AFTER)
        if document is None:
            self.turns.delete_one({"session_id": session["_id"], "n": session["turn_count"]})
            self._miss("not_found", session["user_id"], session["_id"], "deleted during a turn")
        return document

    def delete(self, user_id: str, session_id: str) -> None:
        """Delete a game and its turns, or raise SessionNotFound."""
        if not valid_session_id(session_id):
            raise SessionNotFound()
        result = self.sessions.delete_one({"_id": session_id, "user_id": user_id})
        self.cache.invalidate((user_id, session_id))
        self._cache_size()
        if result.deleted_count == 0:
            self._explain_miss(user_id, session_id)
        self.turns.delete_many({"session_id": session_id})

    def update_turn_image(self, session_id: str, n: int, slot_id: str,
                          image: Mapping[str, Any]) -> None:
        """Record a finished image on its turn, unless the turn has moved on to another image."""
        self.turns.update_one({"session_id": session_id, "n": n, "image.id": slot_id},
                              {"$set": {f"image.{k}": v for k, v in image.items()}})

    def set_turn_image(self, session_id: str, n: int, image: Mapping[str, Any]) -> None:
        """Give a turn a new image (a retry)."""
        self.turns.update_one({"session_id": session_id, "n": n}, {"$set": {"image": image}})

    # --- expiry ---------------------------------------------------------------

    def _touch(self, document: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Push the game's expiry forward, at most once per ``SESSION_TOUCH_SECONDS``."""
        if now - document["last_active_at"] < self.touch_every:
            return document
        expiry = self._expiry_fields(now, document)
        touched = self.sessions.find_one_and_update(
            {"_id": document["_id"], "user_id": document["user_id"]},
            {"$set": {"last_active_at": now, **expiry}}, return_document=ReturnDocument.AFTER)
        if touched is None:
            self._miss("not_found", document["user_id"], document["_id"], "deleted meanwhile")
        self.cache.put(_key(touched), touched)
        return touched

    def _expiry_fields(self, now: datetime, session: Mapping[str, Any] | None = None,
                       force: bool = False) -> dict[str, Any]:
        if not self.expiry:
            return {"expires_at": None}
        expires = now + self.expiry
        fields: dict[str, Any] = {"expires_at": expires}
        current = (session or {}).get("turns_expire_at")
        if force or current is None or current < expires:
            fields["turns_expire_at"] = expires + TURN_EXPIRY_SLACK
            if session is not None and not force:
                self.turns.update_many({"session_id": session["_id"]},
                                       {"$set": {"expires_at": fields["turns_expire_at"]}})
        return fields

    # --- metrics --------------------------------------------------------------

    def _lookup(self, outcome: str) -> None:
        self.metrics.session_lookups.labels(outcome).inc()

    def _cache_size(self) -> None:
        self.metrics.session_cache_size.set(len(self.cache))


def _key(document: Mapping[str, Any]) -> tuple[str, str]:
    return document["user_id"], document["_id"]
