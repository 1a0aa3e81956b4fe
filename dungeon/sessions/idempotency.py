"""``Idempotency-Key``: a client that retries a POST gets what was committed, never a second one.

A key is *claimed* for the length of a lease; the claim ends ``done`` with a
reference to what the request committed (a game, a turn), so a replay is
answered from the current state of that game or turn.  A request that
failed after its write may have been applied *releases* its claim instead
of forgetting it: the retry takes the claim over and first looks for what
the failed attempt may have committed under the same key (the key is stored
on the turn or game itself, in the write that commits it).  Only a request
known to have saved nothing *abandons* its claim.  A claim whose process
died is taken over once its lease has run out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from ..db import quietly
from ..errors import BadRequest, IdempotencyConflict

log = logging.getLogger(__name__)

KEY = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def fingerprint(route: str, body: Any, secret: bytes) -> str:
    """Return a digest of what a request asked for, to tell a retry from a different request.

    Keyed (HMAC-SHA256 with a secret of the service): the digest is stored
    beside encrypted stories, and a plain hash of a short action or title
    would give it away to a dictionary.
    """
    text = json.dumps([route, body], sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def request_key() -> str:
    """Return a fresh key for a request that came without an ``Idempotency-Key``.

    Every commit carries a key, so that one read can tell whether a write
    whose answer was lost was applied.
    """
    return "auto:" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Claim:
    """One request's hold on an ``Idempotency-Key``.

    ``result`` is set when an earlier identical request finished: the
    request is a replay.  ``takeover`` is True when an earlier attempt ended
    without a known outcome: what it committed must be looked for first.
    """

    user_id: str
    key: str
    owner: str | None = None
    takeover: bool = False
    result: Mapping[str, Any] | None = None
    commit_key: str | None = None
    legacy_answer: Mapping[str, Any] | None = None

    @property
    def request_key(self) -> str:
        """The key stored with what this request commits.

        It names the request's body as well as its ``Idempotency-Key``, and
        the claim it belongs to: once a claim has expired, the same key may
        name a new request, which must not find the old commit.
        """
        return self.commit_key or self.key


class IdempotencyStore:
    """Keeps each (user, key) claim and, once done, what it committed."""

    def __init__(self, collection, hours: float, lease_seconds: float,
                 now: Callable[[], datetime], secret: bytes):
        self.collection = collection
        self.secret = secret
        self.keep = timedelta(hours=hours)
        self.lease = timedelta(seconds=lease_seconds)
        self.now = now

    def ensure_indexes(self) -> None:
        """Create the TTL index that forgets old keys."""
        self.collection.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    def digest(self, route: str, body: Any) -> str:
        """Return the keyed digest of a request (see ``fingerprint``)."""
        return fingerprint(route, body, self.secret)

    def claim(self, user_id: str, key: str, digest: str) -> Claim:
        """Claim ``key`` for this request, or return the finished earlier one as a replay.

        Raises IdempotencyConflict (409) for a key used with another body, or
        held by a request whose lease has not run out (``Retry-After`` says
        how long it may still hold it).
        """
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise BadRequest("Idempotency-Key must be 1-128 letters, digits or . _ : -")
        record_id, owner, now = f"{user_id}:{key}", secrets.token_urlsafe(12), self.now()
        commit_key = f"{key}:{digest[:16]}:{secrets.token_urlsafe(6)}"
        record = {"_id": record_id, "digest": digest, "state": "running", "owner": owner,
                  "commit_key": commit_key, "created_at": now, "lease_until": now + self.lease,
                  "expires_at": now + self.keep}
        try:
            self.collection.insert_one(record)
            return Claim(user_id, key, owner, commit_key=commit_key)
        except DuplicateKeyError:
            pass
        except PyMongoError:
            # The claim may have been written: drop it, so that the retry is
            # not kept waiting for a lease nobody holds.
            quietly("drop an unconfirmed claim", self.collection.delete_one,
                    {"_id": record_id, "owner": owner}, then="its lease ends it")
            raise
        return self._existing(user_id, key, digest, now)

    def _existing(self, user_id: str, key: str, digest: str, now: datetime) -> Claim:
        record_id = f"{user_id}:{key}"
        earlier = self.collection.find_one({"_id": record_id})
        if earlier is None or earlier.get("expires_at", now) <= now:
            # Gone, or expired and not yet removed by the TTL monitor: the
            # key may name a new request.
            if earlier is not None:
                self.collection.delete_one({"_id": record_id, "expires_at": earlier["expires_at"]})
            return self.claim(user_id, key, digest)
        if earlier["digest"] != digest:
            raise IdempotencyConflict("This Idempotency-Key was used for a different request.")
        if earlier["state"] == "done":
            if "result" not in earlier:  # kept by an earlier release: its answer verbatim
                return Claim(user_id, key, legacy_answer=earlier.get("answer") or {})
            return Claim(user_id, key, result=earlier["result"])
        lease_until = earlier.get("lease_until") or earlier["created_at"] + self.lease
        if lease_until > now:
            wait = max(1, math.ceil((lease_until - now).total_seconds()))
            raise IdempotencyConflict("A request with this Idempotency-Key is still running.",
                                      headers={"Retry-After": str(wait)})
        owner = secrets.token_urlsafe(12)
        taken = self.collection.find_one_and_update(
            {"_id": record_id, "state": "running", "owner": earlier.get("owner")},
            {"$set": {"owner": owner, "lease_until": now + self.lease}})
        if taken is None:  # another retry took it over first
            raise IdempotencyConflict("A request with this Idempotency-Key is still running.",
                                      headers={"Retry-After": "1"})
        log.info("idempotency claim taken over: the earlier attempt's outcome is settled first")
        return Claim(user_id, key, owner, takeover=True,
                     commit_key=earlier.get("commit_key") or key)

    def finish(self, claim: Claim, result: Mapping[str, Any]) -> None:
        """Record what the request committed, for its replays."""
        self.collection.update_one({"_id": f"{claim.user_id}:{claim.key}", "owner": claim.owner},
                                   {"$set": {"state": "done", "result": dict(result)}})

    def release(self, claim: Claim) -> None:
        """End a claim whose request may have committed: a retry takes it over at once.

        Best effort: when the store cannot be reached, the lease runs out instead.
        """
        quietly("release a claim", self.collection.update_one,
                {"_id": f"{claim.user_id}:{claim.key}", "owner": claim.owner,
                 "state": "running"}, {"$set": {"lease_until": self.now()}},
                then="its lease ends it")

    def abandon(self, claim: Claim) -> None:
        """Forget a claim whose request is known to have saved nothing; a retry runs afresh."""
        quietly("abandon a claim", self.collection.delete_one,
                {"_id": f"{claim.user_id}:{claim.key}", "owner": claim.owner,
                 "state": "running"}, then="its lease ends it")
