"""``Idempotency-Key``: a client that retries a POST gets the first answer, not a second game."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from ..errors import BadRequest, IdempotencyConflict

KEY = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def fingerprint(route: str, body: Any) -> str:
    """Return a digest of what a request asked for, to tell a retry from a different request."""
    text = json.dumps([route, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class IdempotencyStore:
    """Remembers the answer to each (user, key) for a while."""

    def __init__(self, collection, hours: float, now: Callable[[], datetime]):
        self.collection = collection
        self.keep = timedelta(hours=hours)
        self.now = now

    def ensure_indexes(self) -> None:
        """Create the TTL index that forgets old keys."""
        self.collection.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    def begin(self, user_id: str, key: str, digest: str) -> Mapping[str, Any] | None:
        """Claim ``key``; return the stored answer of an earlier identical request, if any."""
        if not KEY.match(key):
            raise BadRequest("Idempotency-Key must be 1-128 letters, digits or . _ : -")
        now = self.now()
        record = {"_id": f"{user_id}:{key}", "digest": digest, "state": "running",
                  "created_at": now, "expires_at": now + self.keep}
        try:
            self.collection.insert_one(record)
            return None
        except DuplicateKeyError:
            pass
        earlier = self.collection.find_one({"_id": record["_id"]})
        if earlier is None:  # expired between the two calls: claim it afresh
            return self.begin(user_id, key, digest)
        if earlier["digest"] != digest:
            raise IdempotencyConflict("This Idempotency-Key was used for a different request.")
        if earlier["state"] != "done":
            raise IdempotencyConflict("A request with this Idempotency-Key is still running.",
                                      headers={"Retry-After": "1"})
        return earlier["answer"]

    def finish(self, user_id: str, key: str, status: int, body: Mapping[str, Any]) -> None:
        """Store the answer for retries of the same request."""
        self.collection.update_one({"_id": f"{user_id}:{key}"},
                                   {"$set": {"state": "done",
                                             "answer": {"status": status, "body": body}}})

    def abandon(self, user_id: str, key: str) -> None:
        """Forget a claim whose request failed, so that a retry runs it again."""
        self.collection.delete_one({"_id": f"{user_id}:{key}", "state": "running"})
