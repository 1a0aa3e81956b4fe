"""Where image bytes live once they arrive: behind a small interface, GridFS by default.

Images are content-addressed: the id is the SHA-256 of the bytes, so the same
image (every placeholder, for one) is stored once, and the id doubles as a
strong ETag.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import gridfs
from gridfs.errors import CorruptGridFile, FileExists
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

    def put(self, data: bytes, content_type: str) -> str:
        """Store ``data`` (idempotently) and return its id."""

    def get(self, image_id: str) -> StoredImage | None:
        """Return the image with ``image_id``, or None."""

    def delete(self, image_id: str) -> None:
        """Remove the image with ``image_id``."""

    def stored_before(self, moment: datetime) -> Iterator[str]:
        """Yield the id of every image stored before ``moment``."""

    def stored_at(self, image_id: str) -> datetime | None:
        """Return when the image was stored, or None if it is not."""


def image_id_for(data: bytes) -> str:
    """Return the content address of ``data``."""
    return hashlib.sha256(data).hexdigest()


def valid_image_id(image_id: str) -> bool:
    """Return True if ``image_id`` has the shape of an image id."""
    return bool(IMAGE_ID.match(image_id))


class GridFSImageStore:
    """Stores images in MongoDB's GridFS (bucket ``images``).

    GridFS writes a file's chunks, then its files document, with no
    transaction between them: a write cut off in between leaves chunks that
    no file names.  A later write of the same bytes (same content id) then
    meets those chunks, and GridFS reports the file as existing though it
    cannot be read.  So ``put`` never takes "exists" on trust: it confirms
    the files document, and otherwise removes the orphan chunks and writes
    again.
    """

    def __init__(self, database, write_concern: WriteConcern | None = None):
        if write_concern is not None:
            database = with_write_concern(database, write_concern)
        # The legacy GridFS API: GridFSBucket does not run on the embedded
        # mongomock store, and both write the same fs.files/fs.chunks layout.
        self.fs = gridfs.GridFS(database, collection="images")
        self.files = database.get_collection("images.files")
        self.chunks = database.get_collection("images.chunks")

    def put(self, data: bytes, content_type: str) -> str:
        """Store ``data`` unless it is already there; return its id once it can be read."""
        image_id = image_id_for(data)
        failure: PyMongoError | None = None
        for _attempt in range(PUT_ATTEMPTS):
            try:
                if self._stored(image_id):
                    return image_id
                # FileExists: stored by another writer meanwhile, or orphan
                # chunks; which of the two is checked next.
                with contextlib.suppress(FileExists):
                    self.fs.put(data, _id=image_id, metadata={"content_type": content_type})
                if self._stored(image_id):
                    return image_id
                log.warning("image chunks without a file document removed before writing again",
                            extra={"image_id": image_id})
                self._remove_orphan_chunks(image_id)
            except PyMongoError as exc:
                # The bytes were paid for: a passing store failure is retried.
                # Whatever this attempt left is checked by the next one.
                log.warning("image not stored yet", extra={"image_id": image_id,
                                                           **store_error_fields(exc)})
                failure = exc
        raise OutcomeUnknown("The image could not be stored.") from failure

    def _stored(self, image_id: str) -> bool:
        return self.files.find_one({"_id": image_id}, {"_id": 1}) is not None

    def _remove_orphan_chunks(self, image_id: str) -> None:
        # Only chunks no files document names: a whole file is never touched.
        if not self._stored(image_id):
            self.chunks.delete_many({"files_id": image_id})

    def get(self, image_id: str) -> StoredImage | None:
        """Return the image with ``image_id``, or None (also for a file that lost its chunks)."""
        if not valid_image_id(image_id):
            return None
        try:
            grid_out = self.fs.get(image_id)
            data = grid_out.read()
        except gridfs.NoFile:
            return None
        except CorruptGridFile:
            log.warning("stored image is incomplete", extra={"image_id": image_id})
            return None
        metadata = grid_out.metadata or {}
        content_type = metadata.get("content_type") or "application/octet-stream"
        return StoredImage(image_id, data, content_type)

    def delete(self, image_id: str) -> None:
        """Remove the image with ``image_id``, its chunks included."""
        self.fs.delete(image_id)

    def stored_before(self, moment: datetime) -> Iterator[str]:
        """Yield the id of every image stored before ``moment``."""
        for document in self.files.find({"uploadDate": {"$lt": moment}}, {"_id": 1}):
            yield document["_id"]

    def stored_at(self, image_id: str) -> datetime | None:
        """Return when the image was stored, or None if it is not."""
        document = self.files.find_one({"_id": image_id}, {"uploadDate": 1})
        return document["uploadDate"] if document else None
