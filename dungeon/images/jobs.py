"""Turn images made in the background, so a turn answers as soon as its narration is ready.

Each turn image gets a *slot*: a document with a stable id (the URL the
client receives at once), the request, and a status that goes from
``pending`` to ``ready``.  A slot records a lease; a slot still pending after
its lease (its process died, say) is claimed again by whoever reads it, and
after ``MAX_CLAIMS`` claims it is resolved to the placeholder, so no turn stays
pending forever.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument

from .service import ImageService
from .types import ImageRequest

log = logging.getLogger(__name__)

SLOT_ID = re.compile(r"^s_[A-Za-z0-9_-]{22}$")
MAX_CLAIMS = 3
POLL_SECONDS = 0.25
LEASE_MARGIN = timedelta(seconds=30)


def valid_slot_id(slot_id: str) -> bool:
    """Return True if ``slot_id`` has the shape of an image slot id."""
    return bool(SLOT_ID.match(slot_id))


class ImageJobs:
    """Runs turn images on a bounded pool of threads and records them in their slots."""

    def __init__(self, database, images: ImageService, config: Mapping[str, Any],
                 now: Callable[[], datetime],
                 on_ready: Callable[[Mapping[str, Any]], None]):
        self.slots = database.get_collection("image_slots")
        self.images = images
        self.now = now
        self.on_ready = on_ready
        self.lease = timedelta(seconds=config["IMAGE_DEADLINE"]) + LEASE_MARGIN
        # How long a client's ``?wait=image`` may hold its request.
        self.wait_limit = config["IMAGE_DEADLINE"] + 5
        self.pool = ThreadPoolExecutor(config["IMAGE_WORKERS"], thread_name_prefix="turn-image")
        # Bounds the work waiting for a thread: past it, the placeholder answers.
        self.room = threading.BoundedSemaphore(config["IMAGE_WORKERS"] + config["IMAGE_QUEUE"])
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def ensure_indexes(self) -> None:
        """Create the index used to find a turn's slots."""
        self.slots.create_index([("session_id", 1), ("n", 1)], name="session_turn")

    def reserve(self, session_id: str, n: int, request: ImageRequest) -> dict[str, Any]:
        """Create the pending slot of turn ``n``'s image; ``submit`` it once the turn is saved."""
        now = self.now()
        slot = {"_id": "s_" + secrets.token_urlsafe(16), "session_id": session_id, "n": n,
                "status": "pending", "request": vars(request), "claims": 1,
                "created_at": now, "lease_until": now + self.lease}
        self.slots.insert_one(slot)
        return slot

    def discard(self, slot: Mapping[str, Any]) -> None:
        """Drop a slot whose turn was never saved."""
        self.slots.delete_one({"_id": slot["_id"], "status": "pending"})

    def submit(self, slot: Mapping[str, Any]) -> None:
        """Start making the slot's image in the background (the placeholder when full)."""
        if not self.room.acquire(blocking=False):
            log.warning("turn image queue full: placeholder given at once",
                        extra={"session_id": slot["session_id"]})
            self._resolve(slot, placeholder_only=True)
            return
        context = contextvars.copy_context()  # keeps the request id in the job's log lines
        future = self.pool.submit(context.run, self._run, slot)
        with self.lock:
            self.futures[slot["_id"]] = future
        future.add_done_callback(lambda _f: self._done(slot["_id"]))

    def _done(self, slot_id: str) -> None:
        self.room.release()
        with self.lock:
            self.futures.pop(slot_id, None)

    def _run(self, slot: Mapping[str, Any]) -> None:
        try:
            self._resolve(slot)
        except Exception:  # a background failure must not leave the slot pending for long
            log.exception("turn image failed", extra={"session_id": slot["session_id"]})

    def _resolve(self, slot: Mapping[str, Any], placeholder_only: bool = False) -> None:
        request = ImageRequest(**slot["request"])
        if placeholder_only:
            result = self.images.placeholder(request)
        else:
            result = self.images.generate(request)
        image = {"status": "ready", "image_id": result.image_id, "provider": result.provider,
                 "placeholder": result.placeholder, "content_type": result.content_type}
        updated = self.slots.find_one_and_update(
            {"_id": slot["_id"], "status": "pending"}, {"$set": {**image, "ready_at": self.now()}},
            return_document=ReturnDocument.AFTER)
        if updated is not None:
            self.on_ready(updated)

    def wait(self, slot_id: str, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (default: the image deadline) for a slot's image.

        A slot this process works on is waited for directly; one that another
        worker makes is polled in the database.
        """
        timeout = self.wait_limit if timeout is None else timeout
        with self.lock:
            future = self.futures.get(slot_id)
        if future is not None:
            # A timeout or a failure alike: the caller reads the slot's state next.
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            slot = self.slots.find_one({"_id": slot_id}, {"status": 1})
            if slot is None or slot["status"] != "pending":
                return
            time.sleep(POLL_SECONDS)

    def find(self, slot_id: str) -> dict[str, Any] | None:
        """Return the slot, reclaiming it first if its lease ran out while pending."""
        if not valid_slot_id(slot_id):
            return None
        slot = self.slots.find_one({"_id": slot_id})
        if slot is not None and slot["status"] == "pending":
            slot = self.recover(slot)
        return slot

    def recover(self, slot: dict[str, Any]) -> dict[str, Any]:
        """Take over a pending slot whose lease expired; give up to the placeholder at last."""
        now = self.now()
        if slot["lease_until"] > now:
            return slot
        claimed = self.slots.find_one_and_update(
            {"_id": slot["_id"], "status": "pending", "lease_until": slot["lease_until"]},
            {"$set": {"lease_until": now + self.lease}, "$inc": {"claims": 1}},
            return_document=ReturnDocument.AFTER)
        if claimed is None:
            return self.slots.find_one({"_id": slot["_id"]}) or slot  # someone else took it
        log.warning("turn image abandoned by its process, claimed again",
                    extra={"session_id": slot["session_id"], "claims": claimed["claims"]})
        if claimed["claims"] > MAX_CLAIMS:
            self._resolve(claimed, placeholder_only=True)
        else:
            self.submit(claimed)
        return self.slots.find_one({"_id": slot["_id"]}) or claimed


def turn_image(slot: Mapping[str, Any]) -> dict[str, Any]:
    """Return the image fields stored on a turn for ``slot``."""
    return {"id": slot["_id"], "status": slot["status"], "provider": slot.get("provider"),
            "placeholder": slot.get("placeholder", False)}
