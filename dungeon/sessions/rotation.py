"""``dungeon rotate-keys``: re-encrypt stored texts with the first of ``ENCRYPTION_KEYS``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .crypto import CANARY_ID, CARD_FIELDS, SESSION_FIELDS, SLOT_FIELDS, TURN_FIELDS, FieldCipher

# What holds sealed texts, and which fields.
# A turn's alternatives are rewritten as a whole list (their texts inside).
TURN_TOP_FIELDS = tuple(f for f in TURN_FIELDS if not f.startswith("alternatives.")) + \
    ("alternatives",)
ROTATED = (("sessions", SESSION_FIELDS), ("turns", TURN_TOP_FIELDS),
           ("image_slots", SLOT_FIELDS), ("cards", CARD_FIELDS), ("keyring", ("token",)))


@dataclass
class RotationReport:
    """What a rotation did: documents rewritten, documents already current, by collection."""

    rotated: int = 0
    current: int = 0
    finished: bool = False
    by_collection: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        """Return the report as a person reads it."""
        lines = [f"{name}: {count} re-encrypted" for name, count in
                 sorted(self.by_collection.items())]
        lines.append(f"{self.rotated} re-encrypted, {self.current} already current"
                     + ("" if self.finished else " (stopped before the end: run it again)"))
        return lines


def rotate(database, cipher: FieldCipher, batch: int = 500,
           limit: int | None = None) -> RotationReport:
    """Re-encrypt every stored text not under the first key, ``batch`` documents at a time.

    A document is rewritten only where a field is stale, and only if those
    fields still hold what was read (compare and set), so a write made
    meanwhile is never overwritten, and a rerun skips what is done: the
    rotation can be stopped at any point and run again.  ``limit`` stops it
    after that many rewrites.  Texts stored in clear are encrypted too.
    """
    report = RotationReport()
    for name, fields in ROTATED:
        collection = database.get_collection(name)
        last_id: Any = None
        while True:
            query = {"_id": {"$gt": last_id}} if last_id is not None else {}
            documents = list(collection.find(query, sort=[("_id", 1)], limit=batch))
            if not documents:
                break
            for document in documents:
                last_id = document["_id"]
                stale = {name_: value for name_ in fields
                         if (value := _get(document, name_)) is not None
                         and not all(cipher.current(v) for v in _texts(value))}
                if not stale:
                    report.current += 1
                    continue
                collection.update_one({"_id": document["_id"], **stale},
                                      {"$set": {f: _rotated(cipher, v) for f, v in stale.items()}})
                report.rotated += 1
                report.by_collection[name] += 1
                if limit is not None and report.rotated >= limit:
                    return report
    report.finished = True
    return report


NESTED_TEXTS = ("narration", "image_prompt")


def _texts(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    texts: list[Any] = []
    for item in value:
        if isinstance(item, dict):
            texts += [item.get(name) for name in NESTED_TEXTS]
        else:
            texts.append(item)
    return texts


def _rotated(cipher: FieldCipher, value: Any) -> Any:
    if not isinstance(value, list):
        return cipher.rotate(value)
    return [{**item, **{name: cipher.rotate(item.get(name)) for name in NESTED_TEXTS
                        if name in item}} if isinstance(item, dict) else cipher.rotate(item)
            for item in value]


def _get(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


__all__ = ["CANARY_ID", "RotationReport", "rotate"]
