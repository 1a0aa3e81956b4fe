"""Encryption at rest of what players write and what the story says.

With ``ENCRYPTION_KEYS`` set (comma-separated Fernet keys), the text fields
of games, turns and image requests are stored as Fernet tokens: the first
key encrypts, every key decrypts (``cryptography``'s MultiFernet), so a new
key is put first, ``dungeon rotate-keys`` re-encrypts what the old ones
wrote, and then the old ones can go.  Ids, numbers, times and statuses stay
in clear: every lookup is by them, never by a text.

A stored token reads ``enc1:<Fernet token>``, so encrypted and plain values
can live side by side (games written before the keys were set stay
readable) and a plain value is never mistaken for a token.  A keyring
document holds a token of a known text: a start with keys that cannot read
it, or with no keys though games were encrypted, is refused with a clear
message, never a failure at read time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pymongo.errors import DuplicateKeyError

from ..errors import ConfigError, StoredDataUnreadable

log = logging.getLogger(__name__)

PREFIX = "enc1:"
CANARY_ID = "encryption-canary"
CANARY_TEXT = "dungeon keyring check"

# The player-written and story fields of each collection, dotted for nesting.
SESSION_FIELDS = ("title", "plot_essentials", "authors_note", "summary")
TURN_FIELDS = ("action", "narration", "image_prompt", "alternatives.narration",
               "alternatives.image_prompt")
SLOT_FIELDS = ("request.prompt",)
CARD_FIELDS = ("title", "keys", "text")


class FieldCipher:
    """Seals and opens text fields; with no keys, stores text as it is."""

    def __init__(self, keys: Iterable[str] = ()):
        self.keys = [key.strip() for key in keys if key.strip()]
        self.enabled = bool(self.keys)
        self._fernets = [_fernet(i, key) for i, key in enumerate(self.keys, 1)]
        self._all = MultiFernet(self._fernets) if self.enabled else None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FieldCipher:
        """Return the cipher ``ENCRYPTION_KEYS`` describes (ConfigError for a bad key)."""
        return cls((config.get("ENCRYPTION_KEYS") or "").split(","))

    # --- one value ---------------------------------------------------------------------

    def seal(self, value: Any) -> Any:
        """Return ``value`` encrypted with the first key if it is a text and keys are set."""
        if not self.enabled or not isinstance(value, str) or value.startswith(PREFIX):
            return value
        return PREFIX + self._fernets[0].encrypt(value.encode()).decode()

    def open(self, value: Any) -> Any:
        """Return the text a sealed ``value`` holds; anything else as it is."""
        if not isinstance(value, str) or not value.startswith(PREFIX):
            return value
        if not self.enabled:
            raise StoredDataUnreadable("a stored text is encrypted and ENCRYPTION_KEYS is unset")
        try:
            return self._all.decrypt(value[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise StoredDataUnreadable(
                "a stored text was encrypted with a key ENCRYPTION_KEYS no longer has") from None

    def current(self, value: Any) -> bool:
        """Return True if ``value`` needs no rotation: sealed with the first key, or no text."""
        if not isinstance(value, str):
            return True
        if not value.startswith(PREFIX):
            return not self.enabled
        try:
            self._fernets[0].decrypt(value[len(PREFIX):].encode())
            return True
        except (InvalidToken, IndexError):
            return False

    def rotate(self, value: Any) -> Any:
        """Return ``value`` sealed with the first key (a plain text is sealed)."""
        return self.seal(self.open(value))

    # --- documents ---------------------------------------------------------------------

    def seal_fields(self, document: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        """Return a copy of ``document`` with ``fields`` sealed."""
        return _map_fields(document, fields, self.seal) if self.enabled else dict(document)

    def open_fields(self, document: Mapping[str, Any] | None,
                    fields: Iterable[str]) -> dict[str, Any] | None:
        """Return a copy of ``document`` with ``fields`` opened (None stays None)."""
        if document is None:
            return None
        return _map_fields(document, fields, self.open)

    # --- the keyring check -------------------------------------------------------------

    def check_keyring(self, collection) -> None:
        """Refuse keys that cannot read what earlier starts wrote; record a canary if none.

        Raises ConfigError naming ``ENCRYPTION_KEYS`` for keys that cannot
        read the canary, or for no keys when the canary is encrypted.
        """
        found = collection.find_one({"_id": CANARY_ID})
        if found is None:
            canary = {"_id": CANARY_ID, "token": self.seal(CANARY_TEXT)}
            try:
                collection.insert_one(canary)
            except DuplicateKeyError:  # another process started at the same moment
                return self.check_keyring(collection)
            return None
        try:
            text = self.open(found["token"])
        except StoredDataUnreadable:
            if not self.enabled:
                raise ConfigError("ENCRYPTION_KEYS: saved games are encrypted; set the keys "
                                  "that wrote them") from None
            raise ConfigError("ENCRYPTION_KEYS: none of the keys can read the saved games; "
                              "put the key that wrote them back (after the new one)") from None
        if text != CANARY_TEXT:
            raise ConfigError("ENCRYPTION_KEYS: the keyring check read the wrong text")
        # The canary moves to the first key only with the data (rotate-keys):
        # until then, a start without the key that wrote the games is refused.
        if not self.enabled:
            log.warning("ENCRYPTION_KEYS is unset: stories are stored in clear")
        return None


def _fernet(index: int, key: str) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise ConfigError(f"ENCRYPTION_KEYS: key {index} is not a Fernet key (32 url-safe "
                          "base64-encoded bytes, as Fernet.generate_key() makes)") from None


def _map_fields(document: Mapping[str, Any], fields: Iterable[str], change) -> dict[str, Any]:
    result = dict(document)
    for field in fields:
        head, _, rest = field.partition(".")
        if head not in result:
            continue
        if rest:
            if isinstance(result[head], Mapping):
                result[head] = _map_fields(result[head], [rest], change)
            elif isinstance(result[head], list):  # a list of documents: each on its own
                result[head] = [_map_fields(item, [rest], change)
                                if isinstance(item, Mapping) else item for item in result[head]]
        elif isinstance(result[head], list):  # a list of texts: each on its own
            result[head] = [change(item) for item in result[head]]
        else:
            result[head] = change(result[head])
    return result


class Keyring:
    """The keyring check as a start-up step: run where the store's indexes are made."""

    def __init__(self, cipher: FieldCipher, collection):
        self.cipher, self.collection = cipher, collection

    def ensure_indexes(self) -> None:
        """Check the keys against the saved games (ConfigError when they cannot read them)."""
        self.cipher.check_keyring(self.collection)
