"""Where image bytes live once they arrive: behind a small interface, GridFS by default.

Images are content-addressed: the id is the SHA-256 of the bytes, so the same
image (every placeholder, for one) is stored once, and the id doubles as a
strong ETag.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import gridfs
from bson import ObjectId
from gridfs.errors import CorruptGridFile
from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern

from ..db import with_write_concern
from ..errors import OutcomeUnknown, store_error_fields

log = logging.getLogger(__name__)

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")
PUT_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredImage:
    """An image as served: its id, bytes and content type."""

    image_id: str
    data: bytes
    content_type: str


class ImageStore(Protocol):
    """What the service needs from image storage."""

    def put(self, data: bytes, content_type: str, public: bool = False) -> str:
        """Store ``data`` (idempotently) and return its id."""

    def get(self, image_id: str, public_only: bool = False) -> StoredImage | None:
        """Return the image with ``image_id``, or None."""

    def delete(self, image_id: str) -> None:
        """Remove the image with ``image_id``."""

    def stored_before(self, moment: datetime) -> Iterator[str]:
        """Yield the id of every image stored before ``moment``."""

    def stored_at(self, image_id: str) -> datetime | None:
        """Return when the image was stored, or None if it is not."""

    def remove_orphan_chunks(self, before: datetime) -> int:
        """Remove what writes cut off before ``before`` left behind; return how much."""


def image_id_for(data: bytes) -> str:
    """Return the content address of ``data``."""
    return hashlib.sha256(data).hexdigest()


def valid_image_id(image_id: str) -> bool:
    """Return True if ``image_id`` has the shape of an image id."""
    return isinstance(image_id, str) and bool(IMAGE_ID.fullmatch(image_id))


class GridFSImageStore:
    """Stores images in MongoDB's GridFS (bucket ``images``), found by their content address.

    GridFS writes a file's chunks, then its files document, with no
    transaction between them.  Each write is therefore a file of its own,
    under a fresh ObjectId, that names its content address in
    ``metadata.sha256``: a write cut off between chunks and files document
    leaves chunks no later write can collide with (the sweep removes them),
    and two processes writing the same bytes at once each write a whole
    file.  A content address is stored once it has a files document, which
    GridFS writes only after every chunk.
    """

    def __init__(self, database, write_concern: WriteConcern | None = None):
        if write_concern is not None:
            database = with_write_concern(database, write_concern)
        # The legacy GridFS API: GridFSBucket does not run on the embedded
        # mongomock store, and both write the same files/chunks layout.
        self.fs = gridfs.GridFS(database, collection="images")
        self.files = database.get_collection("images.files")
        self.chunks = database.get_collection("images.chunks")

    def ensure_indexes(self) -> None:
        """Create the index that finds a file by its content address."""
        self.files.create_index("metadata.sha256", name="content_address")

    def put(self, data: bytes, content_type: str, public: bool = False) -> str:
        """Store ``data`` unless it is already there; return its content address.

        ``public`` images (those ``POST /api/images`` returns) are served by
        their content address to anyone; others only through a turn's slot.
        """
        image_id = image_id_for(data)
        failure: PyMongoError | None = None
        for _attempt in range(PUT_ATTEMPTS):
            try:
                stored = self._newest(image_id)
                if stored is None:
                    self.fs.put(data, metadata={"sha256": image_id,
                                                "content_type": content_type, "public": public})
                elif public and not (stored.get("metadata") or {}).get("public"):
                    self.files.update_one({"_id": stored["_id"]},
                                          {"$set": {"metadata.public": True}})
                return image_id
            except PyMongoError as exc:
                # The bytes were paid for: a passing store failure is retried,
                # and a write whose answer was lost is found by the next try.
                log.warning("image not stored yet", extra={"image_id": image_id,
                                                           **store_error_fields(exc)})
                failure = exc
        raise OutcomeUnknown("The image could not be stored.") from failure

    def get(self, image_id: str, public_only: bool = False) -> StoredImage | None:
        """Return the image with content address ``image_id``, or None.

        A file that lost chunks is passed over for another copy of the same
        bytes.  With ``public_only``, only an image stored as public is
        returned (files stored before images were marked count as public).
        """
        if not valid_image_id(image_id):
            return None
        for document in self._files(image_id):
            metadata = document.get("metadata") or {}
            if public_only and metadata.get("public") is False:
                return None
            try:
                data = self.fs.get(document["_id"]).read()
            except (gridfs.NoFile, CorruptGridFile):
                log.warning("stored image is incomplete", extra={"image_id": image_id})
                continue
            content_type = metadata.get("content_type") or "application/octet-stream"
            return StoredImage(image_id, data, content_type)
        return None

    def delete(self, image_id: str) -> None:
        """Remove every stored copy of the image with ``image_id``, chunks included."""
        for document in self._files(image_id):
            self.fs.delete(document["_id"])

    def stored_before(self, moment: datetime) -> Iterator[str]:
        """Yield the content address of every image stored before ``moment``."""
        for document in self.files.find({"uploadDate": {"$lt": moment}},
                                        {"metadata.sha256": 1}):
            yield (document.get("metadata") or {}).get("sha256") or document["_id"]

    def stored_at(self, image_id: str) -> datetime | None:
        """Return when the image was last stored, or None if it is not."""
        document = self._newest(image_id)
        return document["uploadDate"] if document else None

    def remove_orphan_chunks(self, before: datetime) -> int:
        """Remove chunks of writes cut off before ``before`` (no files document); return how many.

        Only chunks older than ``before`` are touched, so a write still in
        progress keeps its chunks.
        """
        removed = 0
        for files_id in self.chunks.distinct("files_id"):
            if not isinstance(files_id, ObjectId) or files_id.generation_time >= before:
                continue
            if self.files.find_one({"_id": files_id}, {"_id": 1}) is None:
                removed += self.chunks.delete_many({"files_id": files_id}).deleted_count
        return removed

    def _files(self, image_id: str) -> list[dict]:
        # Newest first; files stored before content addresses were kept in
        # metadata have the address as their _id.
        return list(self.files.find({"$or": [{"metadata.sha256": image_id}, {"_id": image_id}]},
                                    sort=[("uploadDate", -1)]))

    def _newest(self, image_id: str) -> dict | None:
        found = self._files(image_id)
        return found[0] if found else None
