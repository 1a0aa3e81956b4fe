"""Users, signing out, and device links, in MongoDB, with the per-process revocation cache.

Collections (all with the configured write concern, read from the primary):

- ``users``: one document per guest: ``_id`` (the user id), ``generation``
  (every token of a lower generation is refused), ``created_at``,
  ``last_seen_at`` (when a token was last issued to it), ``signed_out_at``.
  A user without a document (a guest from before users were stored, or one
  whose record could not be written) is at generation 0.
- ``revoked_tokens``: one document per signed-out token: ``_id`` (the
  token's ``jti``), ``user_id``, ``revoked_at``, ``expires_at`` (the token's
  own expiry; a TTL index deletes the record once the token is dead anyway).
- ``link_codes``: one document per live device-link code: ``_id`` (the
  SHA-256 of the code, never the code), ``user_id``, ``generation``,
  ``created_at``, ``expires_at`` (TTL index).

Checking a token costs no database read in the common case: each process
remembers a user's generation and the tokens it found not signed out for
``AUTH_CACHE_SECONDS``, and the tokens it found signed out for as long as a
token lives.  A sign-out made in this process takes effect here at once; one
made in another process takes effect here within ``AUTH_CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import Cache, TLRUCache, TTLCache
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_preferences import ReadPreference

from .auth import TokenClaims
from .caching import lookup
from .db import insert_settled
from .errors import (
    LinkCodeInvalid,
    StoreUnavailable,
    TokenRevoked,
    store_error_fields,
)

log = logging.getLogger(__name__)

# Crockford's base32: no I, L, O or U, so a code read aloud or copied by
# hand has one spelling.  8 characters: 32**8 = 2**40 codes.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
LINK_SECONDS = 600
# What a person may type for a code: its characters in either case, with
# dashes or spaces anywhere (the request model enforces the same).
CODE_INPUT = r"^[ -]*(?:[0-9A-Za-z][ -]*){8}$"
# Crockford decoding: letters that look like digits stand for them.
_LOOKALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
CACHE_SIZE = 10000


def utcnow() -> datetime:
    """Return the current time, timezone-aware, at MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_code() -> str:
    """Return a new random link code of ``CODE_LENGTH`` characters of ``ALPHABET``."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str | None:
    """Return a typed code as it was issued (upper case, no separators), or None if none."""
    if not isinstance(text, str) or not re.fullmatch(CODE_INPUT, text):
        return None
    code = re.sub(r"[ -]", "", text).upper().translate(_LOOKALIKES)
    return code if all(ch in ALPHABET for ch in code) else None


def code_digest(code: str, secret: bytes) -> str:
    """Return what is stored for a code: a keyed digest, so the database never holds a usable code.

    Keyed (HMAC-SHA256): a plain hash of a 40-bit code could be reversed
    from a database read within the code's ten minutes.
    """
    return hmac.new(secret, code.encode(), hashlib.sha256).hexdigest()


class _Cache:
    """A cachetools cache behind a lock; None for ``items`` remembers nothing."""

    def __init__(self, items: Cache | None):
        self._items = items
        self._lock = threading.Lock()

    @classmethod
    def for_seconds(cls, ttl: float, timer: Callable[[], float]) -> _Cache:
        """Return a cache that keeps each entry ``ttl`` seconds (nothing with 0)."""
        return cls(TTLCache(maxsize=CACHE_SIZE, ttl=ttl, timer=timer) if ttl > 0 else None)

    def get(self, key: str) -> Any:
        if self._items is None:
            return None
        with self._lock:
            return lookup(self._items, key)

    def put(self, key: str, value: Any, keep: Callable[[Any, Any], Any] | None = None) -> None:
        """Remember ``value``; ``keep(old, new)`` picks what to keep when ``key`` is known."""
        if self._items is None:
            return
        with self._lock:
            old = lookup(self._items, key)
            self._items[key] = value if old is None or keep is None else keep(old, value)


def _signed_out_wins(known: bool, found: bool) -> bool:
    return known or found


class UserStore:
    """User records, revocation checks and device-link codes."""

    def __init__(self, database, config: Mapping[str, Any], *, write_concern, secret: bytes,
                 now: Callable[[], datetime] = utcnow,
                 timer: Callable[[], float] = time.monotonic):
        options = {"write_concern": write_concern, "read_preference": ReadPreference.PRIMARY}
        self.users = database.get_collection("users", **options)
        self.revoked = database.get_collection("revoked_tokens", **options)
        self.links = database.get_collection("link_codes", **options)
        self.secret = secret
        self.now = now
        self.cache_seconds = config["AUTH_CACHE_SECONDS"]
        # user id -> its generation, as read (or raised here) at most cache_seconds ago
        self._generations = _Cache.for_seconds(self.cache_seconds, timer)
        # token id -> True: signed out, which is for good, so kept as long as a
        # token lives; False: found not signed out, kept cache_seconds.  One
        # cache, so a request's check looks once.
        token_seconds = config["TOKEN_TTL_HOURS"] * 3600
        self._tokens = _Cache(TLRUCache(
            maxsize=CACHE_SIZE, timer=timer,
            ttu=lambda _key, ended, now: now + (token_seconds if ended else self.cache_seconds)))
        # user id -> the safety level chose ("" for none), read at most cache_seconds ago
        self._levels = _Cache.for_seconds(self.cache_seconds, timer)

    def ensure_indexes(self) -> None:
        """Create the TTL indexes of signed-out tokens and link codes; safe on every start."""
        self.revoked.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)
        self.links.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    # --- users ----------------------------------------------------------------

    def create(self, user_id: str) -> bool:
        """Store a new guest's record; return whether it is known to be stored.

        A token never depends on its user's record (no record is generation
        0, and signing out everywhere creates it), so a guest whose record
        could not be written is still a guest: the failure is logged, not
        answered.
        """
        now = self.now()
        try:
            insert_settled(self.users, {"_id": user_id, "generation": 0, "created_at": now,
                                 "last_seen_at": now})
        except StoreUnavailable:
            log.warning("user record not stored; it is made when first needed",
                        extra={"user_id": user_id})
            return False
        return True

    def generation(self, user_id: str) -> int:
        """Return ``user_id``'s current token generation, read from the primary."""
        document = self.users.find_one({"_id": user_id}, {"generation": 1})
        current = int((document or {}).get("generation", 0))
        self._generations.put(user_id, current, max)
        return current

    def safety_level(self, user_id: str) -> str | None:
        """Return the safety level ``user_id`` chose, or None for the default (cached)."""
        cached = self._levels.get(user_id)
        if cached is not None:
            return cached or None
        document = self.users.find_one({"_id": user_id}, {"safety_level": 1}) or {}
        level = document.get("safety_level")
        self._levels.put(user_id, level or "")
        return level

    def set_safety_level(self, user_id: str, level: str) -> None:
        """Record the safety level ``user_id`` chose (an upsert: safe to retry)."""
        self.users.update_one({"_id": user_id}, {
            "$set": {"safety_level": level},
            "$setOnInsert": {"generation": 0, "created_at": self.now()}}, upsert=True)
        self._levels.put(user_id, level)

    # --- revocation -------------------------------------------------------------

    def issued(self, user_id: str, token_id: str, generation: int) -> None:
        """Remember a token just issued here: its first request then reads nothing either."""
        self._generations.put(user_id, generation, max)
        self._tokens.put(token_id, False, _signed_out_wins)

    def check(self, claims: TokenClaims) -> None:
        """Raise TokenRevoked if the token was signed out; read the store only on a cache miss."""
        ended = self.signed_out(claims)
        if ended == "everywhere":
            raise TokenRevoked("The bearer token was signed out on every device; get a new one.")
        if ended == "token":
            raise TokenRevoked()

    def signed_out(self, claims: TokenClaims) -> str | None:
        """Return how the token was signed out (``token`` or ``everywhere``), or None."""
        ended = self._tokens.get(claims.token_id)
        if ended:
            return "token"
        current = self._generations.get(claims.user_id)
        if current is None:
            current = self.generation(claims.user_id)
        if claims.generation < current:
            return "everywhere"
        if ended is False:  # found not signed out at most cache_seconds ago
            return None
        ended = self.revoked.find_one({"_id": claims.token_id}, {"_id": 1}) is not None
        # A sign-out recorded meanwhile stays: a check that read before it must not undo it.
        self._tokens.put(claims.token_id, ended, _signed_out_wins)
        return "token" if ended else None

    def sign_out(self, claims: TokenClaims) -> None:
        """End this one token, until it would have expired anyway.  Safe to repeat."""
        now = self.now()
        try:
            # An upsert: doing it twice (a retry after a lost answer) changes nothing.
            self.revoked.update_one(
                {"_id": claims.token_id},
                {"$setOnInsert": {"user_id": claims.user_id, "revoked_at": now,
                                  "expires_at": datetime.fromtimestamp(claims.expires, UTC)}},
                upsert=True)
        except DuplicateKeyError:  # two sign-outs of one token at once: the other one won
            pass
        except PyMongoError as exc:
            log.error("sign-out not confirmed: %s", type(exc).__name__,
                      extra=store_error_fields(exc))
            raise StoreUnavailable("Signing out could not be confirmed. Try again: signing out "
                                   "twice is the same as once.") from exc
        self._tokens.put(claims.token_id, True)
        log.info("token signed out", extra={"token_id": claims.token_id})

    def sign_out_everywhere(self, claims: TokenClaims) -> int:
        """End every token of the user issued up to now; return the new generation.

        ``$max`` to one above the token's generation makes a repeat (a retry
        after a lost answer, or two at once) end nothing more.
        """
        now = self.now()
        update = {"$max": {"generation": claims.generation + 1},
                  "$set": {"signed_out_at": now}, "$setOnInsert": {"created_at": now}}
        document = None
        for _attempt in range(2):  # a concurrent upsert of a missing record wins once
            try:
                document = self.users.find_one_and_update(
                    {"_id": claims.user_id}, update, upsert=True,
                    return_document=ReturnDocument.AFTER)
                break
            except DuplicateKeyError:
                continue
            except PyMongoError as exc:
                log.error("sign-out everywhere not confirmed: %s", type(exc).__name__,
                          extra=store_error_fields(exc))
                raise StoreUnavailable("Signing out everywhere could not be confirmed. Try "
                                       "again: doing it twice is the same as once.") from exc
        if document is None:
            raise StoreUnavailable("Signing out everywhere could not be confirmed. Try again: "
                                   "doing it twice is the same as once.")
        current = int(document.get("generation", claims.generation + 1))
        self._generations.put(claims.user_id, current, max)
        log.info("user signed out everywhere", extra={"generation": current})
        return current

    # --- device links -------------------------------------------------------------

    def make_link(self, claims: TokenClaims) -> tuple[str, datetime]:
        """Store a new one-use link code for the token's user; return the code and its expiry."""
        now = self.now()
        expires = (now + timedelta(seconds=LINK_SECONDS)).replace(microsecond=0)
        for _attempt in range(3):  # 2**40 codes: a collision is rare, two in a row rarer
            code = new_code()
            try:
                digest = code_digest(code, self.secret)
                insert_settled(self.links, {"_id": digest, "user_id": claims.user_id,
                                     "generation": claims.generation, "created_at": now,
                                     "expires_at": expires},
                        not_saved="No link code was made. Try again.",
                        unknown="The link code could not be confirmed. Ask for a new one.")
            except DuplicateKeyError:
                continue
            log.info("link code made", extra={"expires_at": expires.isoformat()})
            return code, expires
        raise StoreUnavailable("No link code was made. Try again.")

    def redeem(self, text: str) -> tuple[str, int]:
        """Use up a link code; return its user and the generation a new token carries.

        The code is taken with one ``find_one_and_delete``, so two redeems
        of one code give one token.  A mistyped, expired, used or unknown
        code, and one made before its user signed out everywhere, all raise
        the same LinkCodeInvalid.
        """
        code = normalise_code(text)
        if code is None:
            raise LinkCodeInvalid()
        now = self.now()
        found = self.links.find_one_and_delete({"_id": code_digest(code, self.secret),
                                                "expires_at": {"$gt": now}})
        if found is None:
            log.info("link code refused")
            raise LinkCodeInvalid()
        current = self.generation(found["user_id"])
        if found.get("generation", 0) < current:
            log.info("link code refused: its user signed out everywhere since",
                     extra={"user_id": found["user_id"]})
            raise LinkCodeInvalid()
        self._seen(found["user_id"], now)
        return found["user_id"], current

    def _seen(self, user_id: str, now: datetime) -> None:
        try:
            self.users.update_one({"_id": user_id}, {"$set": {"last_seen_at": now},
                                                     "$setOnInsert": {"generation": 0,
                                                                      "created_at": now}},
                                  upsert=True)
        except PyMongoError as exc:  # a timestamp for people; never worth failing a request
            log.warning("last_seen_at not recorded: %s", type(exc).__name__,
                        extra=store_error_fields(exc))
