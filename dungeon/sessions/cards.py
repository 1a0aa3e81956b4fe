"""Story cards: pieces of a game's world the player writes, given to the narrator on cue.

A card has a ``title``, trigger ``keys`` and a ``text``; the engine gives a
card to the narrator when one of its keys appears in the action or the
recent turns.  Cards belong to their game (the engine checks the game's
owner first), expire with its turns and are deleted with it; their texts
are encrypted at rest like the story's.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from ..errors import Conflict, NotFound
from .crypto import CARD_FIELDS, FieldCipher

MAX_CARDS = 50
HAS_KEY = {"request_key": {"$type": "string"}}


class CardStore:
    """Reads and writes the story cards of games."""

    def __init__(self, database, cipher: FieldCipher, now: Callable[[], datetime], *,
                 write_concern: WriteConcern | None = None):
        self.cards = database.get_collection("cards", write_concern=write_concern,
                                             read_preference=ReadPreference.PRIMARY)
        self.cipher = cipher
        self.now = now

    def ensure_indexes(self) -> None:
        """Create the indexes that list a game's cards, settle retries, and expire cards."""
        self.cards.create_index([("session_id", ASCENDING), ("created_at", ASCENDING)],
                                name="session_cards")
        self.cards.create_index([("session_id", ASCENDING), ("request_key", ASCENDING)],
                                name="session_request_key", unique=True,
                                partialFilterExpression=HAS_KEY)
        self.cards.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    def list(self, session_id: str) -> list[dict[str, Any]]:
        """Return the game's cards, oldest first."""
        found = self.cards.find({"session_id": session_id}, sort=[("created_at", ASCENDING)])
        return [self._open(card) for card in found]

    def create(self, session_id: str, fields: Mapping[str, Any], key: str,
               expires_at: datetime | None) -> tuple[dict[str, Any], bool]:
        """Add a card; return it and whether an earlier attempt with ``key`` had made it.

        At most ``MAX_CARDS`` a game (counted first: two writers at once may
        pass the count together, a bound loose by one or two).
        """
        earlier = self.cards.find_one({"session_id": session_id, "request_key": key})
        if earlier is not None:
            return self._open(earlier), True
        if self.cards.count_documents({"session_id": session_id}) >= MAX_CARDS:
            raise Conflict(f"A game has at most {MAX_CARDS} story cards.")
        now = self.now()
        card = {"_id": "c_" + secrets.token_urlsafe(12), "session_id": session_id,
                "request_key": key, **fields, "created_at": now, "updated_at": now,
                "expires_at": expires_at}
        try:
            self.cards.insert_one(self.cipher.seal_fields(card, CARD_FIELDS))
        except DuplicateKeyError:
            earlier = self.cards.find_one({"session_id": session_id, "request_key": key})
            if earlier is None:
                raise
            return self._open(earlier), True
        return card, False

    def update(self, session_id: str, card_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a card's title, keys and text; NotFound if the game has no such card."""
        sealed = self.cipher.seal_fields(dict(fields), CARD_FIELDS)
        card = self.cards.find_one_and_update(
            {"_id": card_id, "session_id": session_id},
            {"$set": {**sealed, "updated_at": self.now()}}, return_document=ReturnDocument.AFTER)
        if card is None:
            raise NotFound("This game has no such story card.")
        return self._open(card)

    def delete(self, session_id: str, card_id: str) -> None:
        """Delete a card (deleting one already gone is not an error: a retry is safe)."""
        self.cards.delete_one({"_id": card_id, "session_id": session_id})

    def forget(self, session_id: str) -> None:
        """Delete every card of a deleted game."""
        self.cards.delete_many({"session_id": session_id})

    def extend(self, session_id: str, expires_at: datetime) -> None:
        """Make the game's cards expire with its turns."""
        self.cards.update_many({"session_id": session_id}, {"$set": {"expires_at": expires_at}})

    def _open(self, card: Mapping[str, Any]) -> dict[str, Any]:
        return self.cipher.open_fields(card, CARD_FIELDS)


def triggered(cards: list[Mapping[str, Any]], texts: list[str]) -> list[Mapping[str, Any]]:
    """Return the cards one of whose keys appears (as a whole word, any case) in ``texts``."""
    haystack = " ".join(text for text in texts if text).casefold()
    return [card for card in cards if any(_mentions(haystack, key) for key in card["keys"])]


def _mentions(haystack: str, key: str) -> bool:
    key = key.strip().casefold()
    return bool(key) and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", haystack) is not None
