"""Saved games in MongoDB: sessions, their turns, and the cache in front of lookups.

A session document holds the game's summary and a ``version``; each turn is
a document of its own, unique by (session id, turn number), so a long game
never grows one document without bound and two writers can never both commit
the same turn.  Writes use the configured write concern (``majority`` and the
journal by default) and reads go to the primary: a game is reported created
once the server acknowledged it under that concern, or, when the answer was
lost, once a majority read found it; it is found by the next read.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import (
    DuplicateKeyError,
    PyMongoError,
)
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from ..db import insert_settled, quietly
from ..errors import (
    Conflict,
    ImageReplaced,
    NotCommitted,
    NothingSaved,
    OutcomeUnknown,
    SessionConflict,
    SessionNotFound,
    store_error_fields,
)
from ..metrics import Metrics
from .cache import RecentTurns, SessionCache, TurnCache
from .changes import LOCAL, VERSION, Coherence
from .crypto import SESSION_FIELDS, TURN_FIELDS, FieldCipher

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
# Turns outlive their session by this much, and their expiry is pushed in
# steps of it, so sliding a game's expiry costs one bulk write a week, not
# one per read.
TURN_EXPIRY_SLACK = timedelta(days=7)
# Only documents written with a key take part in its unique index: games and
# turns saved before keys were stored have none.
HAS_KEY = {"request_key": {"$type": "string"}}
UNDO_KEYS = 20  # request keys of a game's recent undos, so a retry never undoes twice


class AlreadyCommitted(NotCommitted):
    """This attempt saved nothing: an earlier attempt with the same key committed ``document``."""

    def __init__(self, document: dict[str, Any]):
        super().__init__("already committed under this key")
        self.document = document


def utcnow() -> datetime:
    """Return the current time, timezone-aware, at MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_session_id() -> str:
    """Return a new opaque, unguessable session id."""
    return secrets.token_urlsafe(16)


def valid_session_id(session_id: str) -> bool:
    """Return True if ``session_id`` has the shape of a session id."""
    return isinstance(session_id, str) and bool(SESSION_ID.fullmatch(session_id))


def write_concern(config: Mapping[str, Any]) -> WriteConcern:
    """Return the write concern game writes use."""
    w = config["MONGO_WRITE_CONCERN"]
    return WriteConcern(w=int(w) if str(w).isdigit() else w, j=config["MONGO_JOURNAL"],
                        wtimeout=config["MONGO_TIMEOUT_MS"])


class SessionStore:
    """Reads and writes games; every write is guarded, every miss explained in the log."""

    def __init__(self, database, config: Mapping[str, Any], metrics: Metrics, *,
                 now: Callable[[], datetime] = utcnow,
                 timer: Callable[[], float] = time.monotonic,
                 on_turns_expiry: Callable[[str, datetime], None] | None = None,
                 coherence: Coherence | None = None, cipher: FieldCipher | None = None):
        options = {"write_concern": write_concern(config),
                   "read_preference": ReadPreference.PRIMARY}
        self.sessions = database.get_collection("sessions", **options)
        self.turns = database.get_collection("turns", **options)
        self.metrics = metrics
        self.cipher = cipher or FieldCipher()
        self.now = now
        self.expiry = timedelta(days=config["SESSION_EXPIRY_DAYS"])
        self.touch_every = timedelta(seconds=config["SESSION_TOUCH_SECONDS"])
        # Told when a game's turns get a later expiry, so what hangs off them
        # (their image slots) lives as long.
        self.on_turns_expiry = on_turns_expiry or (lambda _session_id, _when: None)
        # Its hits and misses are counted by outcome, once per lookup (_lookup).
        self.cache = SessionCache(config["SESSION_CACHE_SIZE"], config["SESSION_CACHE_TTL"],
                                  timer=timer)
        # The most recent turns of cached games, by game and version: a load
        # of a game this process knows current reads nothing (dungeon/sessions/changes.py).
        self.coherence = coherence or Coherence(VERSION)
        self.turn_cache = TurnCache(config["SESSION_CACHE_SIZE"], config["SESSION_CACHE_TTL"],
                                    timer=timer)
        self.keep_turns = max(config["RECENT_TURNS"], config["NARRATOR_CONTEXT_TURNS"])
        # The embedded store's cost grows with every game it holds (it scans
        # them all); past this many it says so, once.
        self.embedded_limit = config["EMBEDDED_MAX_GAMES"] \
            if self.coherence.mode == LOCAL else None
        self.embedded_warning: str | None = None

    def ensure_indexes(self) -> None:
        """Create the indexes the store relies on; safe to run on every start."""
        self.sessions.create_index([("user_id", ASCENDING), ("last_active_at", DESCENDING),
                                    ("_id", DESCENDING)], name="user_recent")
        self.sessions.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)
        self.sessions.create_index([("user_id", ASCENDING), ("request_key", ASCENDING)],
                                   name="user_request_key", unique=True,
                                   partialFilterExpression=HAS_KEY)
        self.turns.create_index([("session_id", ASCENDING), ("n", ASCENDING)],
                                name="session_turn", unique=True)
        self.turns.create_index([("session_id", ASCENDING), ("request_key", ASCENDING)],
                                name="session_request_key", unique=True,
                                partialFilterExpression=HAS_KEY)
        self.turns.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    # --- create ---------------------------------------------------------------

    def create(self, session: dict[str, Any], opening: dict[str, Any],
               key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Store a new game and its opening turn; return both once the server confirmed them.

        The session insert is the commit point, and it carries ``key``: a
        write whose answer was lost is settled by one read, and a second
        game under the same key is refused by the unique index
        (AlreadyCommitted names the first).
        """
        now = self.now()
        expiry = self._expiry_fields(now)
        opening = {**opening, "_id": ObjectId(), "session_id": session["_id"], "n": 0,
                   "request_key": key, "created_at": now,
                   "expires_at": expiry.get("turns_expire_at")}
        document = {**session, "version": 1, "turn_count": 1, "status": "active",
                    "request_key": key, "created_at": now, "updated_at": now,
                    "last_active_at": now, **expiry}
        # The turn goes first: a crash in between leaves an orphan turn that
        # expires, never a game without its opening.
        insert_settled(self.turns, self._sealed_turn(opening))
        try:
            insert_settled(self.sessions, self._sealed_session(document))
        except NothingSaved:
            quietly("remove an unused opening", self.turns.delete_one,
                    {"_id": opening["_id"]})
            raise
        except DuplicateKeyError:
            earlier = self.session_by_key(session["user_id"], key)
            if earlier is None:
                raise
            quietly("remove an unused opening", self.turns.delete_one,
                    {"_id": opening["_id"]})
            raise AlreadyCommitted(earlier) from None
        self.cache.put(_key(document), document)
        self._cache_size()
        self._check_embedded_size()
        return document, opening

    def _check_embedded_size(self) -> None:
        if self.embedded_limit is None or self.embedded_warning is not None:
            return
        held = self.sessions.estimated_document_count()
        if held > self.embedded_limit:
            self.embedded_warning = (
                f"the embedded store holds {held} games (more than EMBEDDED_MAX_GAMES="
                f"{self.embedded_limit}): every query scans them all and a restart loses them; "
                "set DUNGEON_MONGO_URI to keep games in MongoDB")
            log.warning(self.embedded_warning)

    def session_by_key(self, user_id: str, key: str) -> dict[str, Any] | None:
        """Return the game ``user_id`` created with request key ``key``, if any."""
        return self._session(self.sessions.find_one({"user_id": user_id, "request_key": key}))

    def turn_by_key(self, session_id: str, key: str) -> dict[str, Any] | None:
        """Return the turn of ``session_id`` committed with request key ``key``, if any."""
        return self._turn(self.turns.find_one({"session_id": session_id, "request_key": key}))

    # --- read -----------------------------------------------------------------

    def load(self, user_id: str, session_id: str) -> dict[str, Any]:
        """Return the game ``session_id`` of ``user_id``, or raise SessionNotFound."""
        if not valid_session_id(session_id):
            self._lookup("not_found")
            log.info("session lookup refused: malformed id", extra={"user_id": user_id})
            raise SessionNotFound()
        key = (user_id, session_id)
        document = self.cache.get(key)
        now = self.now()
        if document is not None and not _expired(document, now):
            outcome = "hit"
        else:
            # A copy past its expiry may be behind: another process may have
            # moved the expiry since.  Only the database can say the game is gone.
            if document is not None:
                self.cache.invalidate(key)
            document, outcome = self._load_from_db(user_id, session_id), "found"
            if _expired(document, now):
                self.cache.invalidate(key)
                self._miss("expired", user_id, session_id)
        document = self._touch(document, now)
        self._lookup(outcome)
        return document

    def _load_from_db(self, user_id: str, session_id: str) -> dict[str, Any]:
        """Read a game for its owner (one query by both ids), and keep it; timed."""
        started = time.perf_counter()
        try:
            document = self._session(self.sessions.find_one({"_id": session_id,
                                                              "user_id": user_id}))
            if document is None:
                self._explain_miss(user_id, session_id)
            document = self._repair_turn_count(document)
            if not document.pop("uncacheable", False):
                self.cache.put(_key(document), document)
                self._cache_size()
            return document
        finally:
            self.metrics.session_load_seconds.observe(time.perf_counter() - started)

    def _explain_miss(self, user_id: str, session_id: str,
                      other: Mapping[str, Any] | None | bool = False) -> NoReturn:
        """Log why a lookup missed, then raise; the client never learns which."""
        if other is False:
            other = self.sessions.find_one({"_id": session_id}, {"user_id": 1})
        if other is not None:
            self._miss("not_found", user_id, session_id, "owned by another user",
                       owner_id=other["user_id"])
        self._miss("not_found", user_id, session_id,
                   "no such session (never created, deleted, or expired and removed)")

    def _miss(self, outcome: str, user_id: str, session_id: str, why: str | None = None,
              **fields: Any) -> NoReturn:
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
        if last["_id"] in _undone_ids(document):
            # An undo's commit landed but its clean-up did not: finish it.
            quietly("finish an undo", self.turns.delete_one, {"_id": last["_id"]})
            return document
        log.warning("session turn count repaired from %s to %s", document["turn_count"],
                    last["n"] + 1, extra={"session_id": document["_id"]})
        try:
            repaired = self.sessions.find_one_and_update(
                {"_id": document["_id"]}, {"$max": {"turn_count": last["n"] + 1},
                                           "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER)
        except PyMongoError as exc:
            # The turns are what was committed; the count follows them.  The
            # repair is written again by the next load.
            log.warning("turn count repair not saved", extra=store_error_fields(exc))
            return {**document, "turn_count": last["n"] + 1, "uncacheable": True}
        return self._session(repaired) or document

    def recent_for(self, session: Mapping[str, Any], limit: int) -> RecentTurns | None:
        """Return the ``limit`` most recent turns of ``session``, or None if the copy is stale.

        Served from this process's copy when it is known current: at no cost
        where the cache is coherent, after one read of the game's version by
        ``_id`` elsewhere.  Otherwise read, and kept if they agree with the
        session.  None tells the caller its copy of the session is behind
        (or the game is gone) and must be loaded again.  The turns come with
        the stamp of the kept list (``RecentTurns``).
        """
        session_id, version = session["_id"], session["version"]
        cached = self.turn_cache.get(session_id, version, limit)
        if cached is not None and (self.coherence.trusted() or
                                   self._version_is(session_id, version)):
            return cached
        turns = self.recent_turns(session_id, max(limit, self.keep_turns))
        if not turns or turns[-1]["n"] != session["turn_count"] - 1:
            return None
        stamp = self.turn_cache.put(session_id, version, turns)
        return RecentTurns(turns[-limit:], stamp)

    def _version_is(self, session_id: str, version: int) -> bool:
        found = self.sessions.find_one({"_id": session_id}, {"version": 1, "turn_count": 1})
        if found is None or found["version"] != version:
            return False
        # A turn stored without its session being advanced (a crash between
        # the two writes) moves no version: the next number taken tells.
        return self.turns.find_one({"session_id": session_id, "n": found["turn_count"]},
                                   {"_id": 1}) is None

    def forget_turns(self, session_id: str | None) -> None:
        """Drop this process's copy of a game's recent turns (of every game with None)."""
        self.turn_cache.invalidate(session_id)

    def recent_turns(self, session_id: str, limit: int,
                     before: int | None = None) -> list[dict[str, Any]]:
        """Return up to ``limit`` turns before turn ``before`` (default: the latest), in order."""
        query: dict[str, Any] = {"session_id": session_id}
        if before is not None:
            query["n"] = {"$lt": before}
        found = list(self.turns.find(query, sort=[("n", DESCENDING)], limit=limit))
        return [self._turn(turn) for turn in reversed(found)]

    def exists(self, session_id: str) -> bool:
        """Return True if a game with this id exists (for whom does not matter)."""
        return self.sessions.find_one({"_id": session_id}, {"_id": 1}) is not None

    def turn(self, session_id: str, n: int) -> dict[str, Any] | None:
        """Return turn ``n`` of ``session_id``, or None."""
        return self._turn(self.turns.find_one({"session_id": session_id, "n": n}))

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
        return [self._session(session) for session in cursor]

    # --- write ----------------------------------------------------------------

    def commit_turn(self, session: dict[str, Any], turn: dict[str, Any],
                    key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Commit ``turn`` as the next turn of ``session``; return the session and the turn.

        The unique (session, number) insert is the commit point, and it
        carries ``key``.  When the copy of ``session`` was stale, that number
        is taken and SessionConflict is raised with nothing written; when an
        earlier attempt already committed under ``key``, AlreadyCommitted
        names its turn.  A lost answer is settled by one read (see
        ``_insert``).  Once the turn is stored, the session is advanced under
        its version guard; if that write fails the turn stands all the same
        and the count is repaired from the turns on the next load.
        """
        n, now = session["turn_count"], self.now()
        expiry = self._expiry_for_turn(now, session)
        document = {**turn, "_id": ObjectId(), "session_id": session["_id"], "n": n,
                    "request_key": key, "created_at": now,
                    "expires_at": expiry.get("turns_expire_at", session.get("turns_expire_at"))}
        try:
            insert_settled(self.turns, self._sealed_turn(document))
        except OutcomeUnknown:
            # The turn may be stored without the session counting it: this
            # process's copies must not hide it; the next load repairs the count.
            self.forget_cached(session["user_id"], session["_id"])
            raise
        except DuplicateKeyError:
            earlier = self.turn_by_key(session["_id"], key)
            if earlier is not None:
                raise AlreadyCommitted(earlier) from None
            if self._clear_undone(session["_id"], n):
                return self.commit_turn(session, turn, key)  # the number is free again
            self.cache.invalidate(_key(session))
            self._lookup("conflict")
            log.info("turn %s already taken: stale copy of the session", n,
                     extra={"session_id": session["_id"], "user_id": session["user_id"]})
            raise SessionConflict() from None
        update = {"$max": {"turn_count": n + 1}, "$inc": {"version": 1},
                  "$set": {"updated_at": now, "last_active_at": now, **expiry}}
        advanced = self._advance(session, n, update, document["_id"])
        # The next load of this version finds its turns here.
        self.turn_cache.extend(session["_id"], session["version"], advanced["version"],
                               document, self.keep_turns)
        return advanced, document

    def _clear_undone(self, session_id: str, n: int) -> bool:
        """Delete turn ``n`` if an undo took it but did not finish; return True if it did."""
        fresh = self.sessions.find_one({"_id": session_id}, {"undone": 1}) or {}
        taken = self.turns.find_one({"session_id": session_id, "n": n}, {"_id": 1})
        if taken is None or taken["_id"] not in _undone_ids(fresh):
            return False
        self.turns.delete_one({"_id": taken["_id"]})
        return True

    # --- undo, alternatives, edits ------------------------------------------------

    def undo_last(self, session: Mapping[str, Any], key: str) -> tuple[dict[str, Any], int]:
        """Take back the last turn (never the opening); return the game and the number undone.

        The commit point is the session's count going down, guarded by the
        version and the count, so a concurrent action or undo makes this one
        a SessionConflict with nothing changed.  The turn is deleted after;
        until then its id waits in ``undone``, so a load, a commit on that
        number and a retry all know it is gone.  ``key`` is kept among the
        game's recent undo keys, so a retry with it never undoes a second turn.
        """
        n = session["turn_count"] - 1
        if n < 1:
            raise Conflict("The opening of a game cannot be undone.")
        turn = self.turns.find_one({"session_id": session["_id"], "n": n}, {"_id": 1})
        if turn is None:
            self.forget_cached(session["user_id"], session["_id"])
            raise SessionConflict()
        now = self.now()
        try:
            document = self._session(self.sessions.find_one_and_update(
                {"_id": session["_id"], "user_id": session["user_id"],
                 "version": session["version"], "turn_count": n + 1},
                {"$set": {"turn_count": n, "updated_at": now, "last_active_at": now},
                 "$inc": {"version": 1},
                 "$push": {"undone": {"turn_id": turn["_id"], "n": n},
                           "undo_keys": {"$each": [key], "$slice": -UNDO_KEYS}}},
                return_document=ReturnDocument.AFTER))
        finally:
            # Applied or not, this process's copy is behind: the retry reads
            # the game as the database has it (and finishes the undo there).
            self.forget_cached(session["user_id"], session["_id"])
        if document is None:
            raise SessionConflict()
        quietly("delete an undone turn", self.turns.delete_one, {"_id": turn["_id"]})
        quietly("finish an undo", self.sessions.update_one, {"_id": session["_id"]},
                {"$pull": {"undone": {"turn_id": turn["_id"]}}})
        self.cache.put(_key(document), document)
        return document, n

    def add_alternative(self, session: Mapping[str, Any], turn: Mapping[str, Any],
                        alternatives: list[dict[str, Any]]) -> dict[str, Any]:
        """Give ``turn`` its list of alternatives, the last one chosen; return the turn.

        Guarded on the count of alternatives it replaces: a concurrent retry
        makes this one an ImageReplaced conflict with nothing written.
        """
        alternatives = _with_current_image(turn, alternatives)
        chosen = alternatives[-1]
        fields = {"alternatives": alternatives, "chosen": len(alternatives) - 1,
                  "alt_count": len(alternatives), "narration": chosen["narration"],
                  "image_prompt": chosen["image_prompt"], "image": chosen.get("image")}
        return self._rewrite_turn(session, turn, fields)

    def choose_alternative(self, session: Mapping[str, Any], turn: Mapping[str, Any],
                           index: int) -> dict[str, Any]:
        """Show alternative ``index`` of ``turn``; return the turn."""
        alternatives = _with_current_image(turn, turn["alternatives"])
        chosen = alternatives[index]
        fields = {"alternatives": alternatives, "chosen": index, "alt_count": len(alternatives),
                  "narration": chosen["narration"], "image_prompt": chosen["image_prompt"],
                  "image": chosen.get("image")}
        return self._rewrite_turn(session, turn, fields)

    def edit_turn(self, session: Mapping[str, Any], turn: Mapping[str, Any],
                  changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a turn's action or narration in place (its image stays); return the turn."""
        fields = dict(changes)
        if "narration" in fields and turn.get("alternatives"):
            alternatives = [dict(a) for a in turn["alternatives"]]
            alternatives[turn.get("chosen", 0)]["narration"] = fields["narration"]
            fields["alternatives"] = alternatives
        fields["alt_count"] = turn.get("alt_count", 1)
        return self._rewrite_turn(session, turn, fields)

    def _rewrite_turn(self, session: Mapping[str, Any], turn: Mapping[str, Any],
                      fields: dict[str, Any]) -> dict[str, Any]:
        count = turn.get("alt_count", 1)
        guard = {"alt_count": count} if "alt_count" in turn else {"alt_count": {"$exists": False}}
        try:
            updated = self._turn(self.turns.find_one_and_update(
                {"_id": turn["_id"], **guard}, {"$set": self._sealed_turn(fields)},
                return_document=ReturnDocument.AFTER))
        finally:
            self._changed(session["_id"])
        if updated is None:
            raise ImageReplaced("This turn changed meanwhile; load the game again.")
        return updated

    def settle(self, session: dict[str, Any], turn: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``session`` counting the committed ``turn``, repairing the count if it lags."""
        if session["turn_count"] > turn["n"]:
            return session
        return self._advance(session, turn["n"], {"$max": {"turn_count": turn["n"] + 1},
                                                  "$inc": {"version": 1}}, turn["_id"])

    def _advance(self, session: dict[str, Any], n: int, update: dict[str, Any],
                 turn_id: Any) -> dict[str, Any]:
        guard = {"_id": session["_id"], "user_id": session["user_id"]}
        try:
            document = self.sessions.find_one_and_update(
                {**guard, "version": session["version"]}, update,
                return_document=ReturnDocument.AFTER)
            if document is None:
                # Someone else moved the version (a repair, an image retry);
                # the turn counts all the same while the count still reaches
                # it ($max never takes it back).  A count below it means an
                # undo took the turn before ours: ours would leave a gap.
                document = self.sessions.find_one_and_update(
                    {**guard, "turn_count": {"$in": [n, n + 1]}}, update,
                    return_document=ReturnDocument.AFTER)
                if document is None and self.exists(session["_id"]):
                    self.turns.delete_one({"_id": turn_id})
                    self.forget_cached(session["user_id"], session["_id"])
                    raise SessionConflict()
            document = self._session(document)
        except PyMongoError as exc:
            # The turn is stored: that is the commit.  The session's count
            # may lag; every load checks it against the turns and repairs it.
            log.warning("session not advanced after turn %s was saved; repaired on next load", n,
                        extra={"session_id": session["_id"], **store_error_fields(exc)})
            self.forget_cached(session["user_id"], session["_id"])
            return {**session, **update.get("$set", {}),
                    "turn_count": max(session["turn_count"], n + 1)}
        if document is None:
            self.turns.delete_one({"_id": turn_id})
            self._miss("not_found", session["user_id"], session["_id"], "deleted during a turn")
        self.cache.put(_key(document), document)
        return document

    def delete(self, user_id: str, session_id: str) -> bool:
        """Delete a game and its turns; return False if no game of that id was left to delete.

        Deleting the session is the commit point.  A delete interrupted
        after it is finished by the retry: with no session of that id left,
        its remaining turns go too, and False tells the caller to clean up
        what else hangs off the game and answer 404.  Another user's game is
        SessionNotFound, untouched.
        """
        if not valid_session_id(session_id):
            raise SessionNotFound()
        result = self.sessions.delete_one({"_id": session_id, "user_id": user_id})
        self.cache.invalidate((user_id, session_id))
        self.turn_cache.invalidate(session_id)
        self._cache_size()
        if result.deleted_count == 0:
            other = self.sessions.find_one({"_id": session_id}, {"user_id": 1})
            if other is not None:
                self._explain_miss(user_id, session_id, other)
            log.info("delete found no game; its leftovers are removed",
                     extra={"session_id": session_id, "user_id": user_id})
        self.turns.delete_many({"session_id": session_id})
        return result.deleted_count > 0

    def update_game(self, user_id: str, session_id: str, changes: Mapping[str, Any],
                    cleared: list[str]) -> dict[str, Any]:
        """Change a game's title, memory or image mode; return the game as it now is.

        The version moves, so other processes' copies are retired.
        """
        if not valid_session_id(session_id):
            raise SessionNotFound()
        update: dict[str, Any] = {"$set": {**self._sealed_session(dict(changes)),
                                           "updated_at": self.now()},
                                  "$inc": {"version": 1}}
        if cleared:
            update["$unset"] = {name: "" for name in cleared}
        document = self._session(self.sessions.find_one_and_update(
            {"_id": session_id, "user_id": user_id}, update,
            return_document=ReturnDocument.AFTER))
        self.cache.invalidate((user_id, session_id))
        if document is None:
            self._explain_miss(user_id, session_id)
        self.cache.put(_key(document), document)
        return document

    def set_summary(self, session: Mapping[str, Any], summary: str, through: int) -> None:
        """Keep the story's running summary, written through turn ``through``.

        Guarded on the summary it replaces, so two writers never go back in
        time; the version stays (a summary changes nothing a client sees).
        """
        updated = self.sessions.update_one(
            {"_id": session["_id"], "summary_through": session.get("summary_through")},
            {"$set": {"summary": self.cipher.seal(summary), "summary_through": through}})
        if updated.modified_count:
            self.cache.put(_key(session), {**session, "summary": summary,
                                           "summary_through": through})

    def update_turn_image(self, session_id: str, n: int, slot_id: str,
                          image: Mapping[str, Any]) -> None:
        """Record a finished image on its turn, and on the version of the turn that has it.

        A retried turn keeps each version's image in ``alternatives``, as it
        was when the version was saved: told too, a read finds every image
        final and need not ask the slots again.  Both writes are idempotent;
        one that fails leaves the image pending there, and reads go by the
        slot.
        """
        self.turns.update_one({"session_id": session_id, "n": n, "image.id": slot_id},
                              {"$set": {f"image.{k}": v for k, v in image.items()}})
        self.turns.update_one(
            {"session_id": session_id, "n": n, "alternatives.image.id": slot_id},
            {"$set": {f"alternatives.$.image.{k}": v for k, v in image.items()}})
        self.turn_cache.update_image(session_id, n, slot_id, dict(image))

    def set_turn_image(self, session_id: str, n: int, replaced: str | None,
                       image: Mapping[str, Any]) -> None:
        """Give a turn a new image in place of ``replaced`` (a retry).

        Raises ImageReplaced, with nothing written, when the turn is gone or
        no longer shows ``replaced`` (another retry won, or the game was
        deleted), so the new image's slot is given up.
        """
        try:
            shown = {"image.id": replaced} if replaced is not None else {"image": None}
            result = self.turns.update_one({"session_id": session_id, "n": n, **shown},
                                           {"$set": {"image": dict(image)}})
        finally:
            self._changed(session_id)
        if result.matched_count == 0:
            raise ImageReplaced()

    def _changed(self, session_id: str) -> None:
        """After a write to a turn: retire every copy of the game, here and elsewhere.

        The version moves after the turn's write, whatever its outcome: a
        process that read in between holds the new turn under the old
        version, which the move then retires.  A move that fails leaves
        other processes' copies for at most their cache's TTL.
        """
        quietly("mark the game changed", self.sessions.update_one,
                {"_id": session_id}, {"$inc": {"version": 1}})
        self.turn_cache.invalidate(session_id)
        self.cache.invalidate_session(session_id)

    def turn_names(self, session_id: str, n: int, slot_id: str) -> bool:
        """Return True if turn ``n`` of ``session_id`` exists and shows image slot ``slot_id``."""
        return self.turns.find_one({"session_id": session_id, "n": n, "image.id": slot_id},
                                   {"_id": 1}) is not None

    # --- expiry ---------------------------------------------------------------

    def _touch(self, document: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Push the game's expiry forward, at most once per ``SESSION_TOUCH_SECONDS``.

        Best effort: a read is not failed because its expiry could not be
        moved; the next read tries again.
        """
        if now - document["last_active_at"] < self.touch_every:
            return document
        try:
            expiry = self._expiry_for_turn(now, document)
            touched = self._session(self.sessions.find_one_and_update(
                {"_id": document["_id"], "user_id": document["user_id"]},
                {"$set": {"last_active_at": now, **expiry}}, return_document=ReturnDocument.AFTER))
        except PyMongoError as exc:
            log.warning("game expiry not moved", extra={"session_id": document["_id"],
                                                         **store_error_fields(exc)})
            return document
        if touched is None:
            self._miss("not_found", document["user_id"], document["_id"], "deleted meanwhile")
        self.cache.put(_key(touched), touched)
        return touched

    def turns_expiry(self) -> datetime | None:
        """Return when the turns of a game played now expire (None: never)."""
        return self._expiry_fields(self.now()).get("turns_expire_at")

    def _expiry_fields(self, now: datetime) -> dict[str, Any]:
        """Return the expiry fields of a game active at ``now`` and of its turns."""
        if not self.expiry:
            return {"expires_at": None}
        expires = now + self.expiry
        return {"expires_at": expires, "turns_expire_at": expires + TURN_EXPIRY_SLACK}

    def _expiry_for_turn(self, now: datetime, session: Mapping[str, Any]) -> dict[str, Any]:
        """Return the game's new expiry fields, first moving its turns' expiry when due.

        Turns' expiry moves in steps of ``TURN_EXPIRY_SLACK``, so this writes
        once a week of play, not once a turn.  The session records the new
        turn expiry only once the turns carry it: a failed push is retried
        by the next turn, and turns never expire before their game.
        """
        fields = self._expiry_fields(now)
        current = session.get("turns_expire_at")
        if "turns_expire_at" not in fields or (current is not None and
                                               current >= fields["expires_at"]):
            fields.pop("turns_expire_at", None)
            return fields
        try:
            self._push_turns_expiry(session["_id"], fields["turns_expire_at"])
        except PyMongoError as exc:
            log.warning("turns' expiry not moved; retried by the next turn",
                        extra={"session_id": session["_id"], **store_error_fields(exc)})
            del fields["turns_expire_at"]
        return fields

    def _push_turns_expiry(self, session_id: str, when: datetime) -> None:
        """Give every turn of ``session_id`` (and what hangs off them) the expiry ``when``."""
        self.turns.update_many({"session_id": session_id}, {"$set": {"expires_at": when}})
        self.on_turns_expiry(session_id, when)

    # --- encryption at rest -----------------------------------------------------

    def _sealed_session(self, document: Mapping[str, Any]) -> dict[str, Any]:
        return self.cipher.seal_fields(document, SESSION_FIELDS)

    def _sealed_turn(self, document: Mapping[str, Any]) -> dict[str, Any]:
        return self.cipher.seal_fields(document, TURN_FIELDS)

    def _session(self, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return self.cipher.open_fields(document, SESSION_FIELDS)

    def _turn(self, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return self.cipher.open_fields(document, TURN_FIELDS)

    # --- the cache ------------------------------------------------------------

    def forget_cached(self, user_id: str, session_id: str) -> None:
        """Drop this process's copy of a game, so the next load reads the database."""
        self.cache.invalidate((user_id, session_id))
        self.turn_cache.invalidate(session_id)

    def changed_elsewhere(self, session_id: str | None) -> None:
        """Drop this process's copies of a game another process changed (all games with None)."""
        if session_id is None:
            self.cache.clear()
        else:
            self.cache.invalidate_session(session_id)
        self.turn_cache.invalidate(session_id)

    # --- metrics --------------------------------------------------------------

    def _lookup(self, outcome: str) -> None:
        self.metrics.count_lookup(outcome)

    def _cache_size(self) -> None:
        self.metrics.session_cache_size.set(len(self.cache))


def _with_current_image(turn: Mapping[str, Any],
                        alternatives: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``alternatives`` with the shown one's image as the turn now shows it."""
    alternatives = [dict(a) for a in alternatives]
    shown = turn.get("chosen", 0)
    if 0 <= shown < len(alternatives):
        alternatives[shown]["image"] = turn.get("image")
    return alternatives


def _undone_ids(session: Mapping[str, Any]) -> set[Any]:
    return {entry.get("turn_id") for entry in session.get("undone") or []}


def _expired(document: Mapping[str, Any], now: datetime) -> bool:
    return bool(document.get("expires_at")) and document["expires_at"] <= now


def _key(document: Mapping[str, Any]) -> tuple[str, str]:
    return document["user_id"], document["_id"]
