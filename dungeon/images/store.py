"""Where image bytes live once they arrive: behind a small interface, GridFS by default.

Images are content-addressed: the id is the SHA-256 of the bytes, so the same
image (every placeholder, for one) is stored once, and the id doubles as a
strong ETag.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

import gridfs
from gridfs.errors import FileExists

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


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


def image_id_for(data: bytes) -> str:
    """Return the content address of ``data``."""
    return hashlib.sha256(data).hexdigest()


def valid_image_id(image_id: str) -> bool:
    """Return True if ``image_id`` has the shape of an image id."""
    return bool(IMAGE_ID.match(image_id))


class GridFSImageStore:
    """Stores images in MongoDB's GridFS (bucket ``images``)."""

    def __init__(self, database):
        # The legacy GridFS API: GridFSBucket does not run on the embedded
        # mongomock store, and both write the same fs.files/fs.chunks layout.
        self.fs = gridfs.GridFS(database, collection="images")

    def put(self, data: bytes, content_type: str) -> str:
        """Store ``data`` unless it is already there; return its id."""
        image_id = image_id_for(data)
        if not self.fs.exists(image_id):
            # Another thread may store the same bytes first; either copy will do.
            with contextlib.suppress(FileExists):
                self.fs.put(data, _id=image_id, metadata={"content_type": content_type})
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        """Return the image with ``image_id``, or None."""
        if not valid_image_id(image_id):
            return None
        try:
            grid_out = self.fs.get(image_id)
        except gridfs.NoFile:
            return None
        metadata = grid_out.metadata or {}
        content_type = metadata.get("content_type") or "application/octet-stream"
        return StoredImage(image_id, grid_out.read(), content_type)
