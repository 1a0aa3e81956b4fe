"""Turn images made in the background, so a turn answers as soon as its narration is ready.

Each turn image gets a *slot*: a document with a stable id (the URL the
client receives at once), the request, and a status that goes from
``pending`` to ``ready``.  A slot records a lease; a slot still pending after
its lease (its process died, say) is claimed again by whoever reads it, and
after ``MAX_CLAIMS`` claims it is resolved to the placeholder, so no turn stays
pending forever.  A turn whose slot is missing (a write rolled back, a slot
discarded for a turn whose commit did in fact land) gets its slot back,
resolved to the placeholder, the first time it is read; so does a slot whose
stored image is gone.  Every image a turn shows can therefore be fetched.

Slots expire with their game's turns and are deleted with their game;
stored images that no slot names any more are collected once they are
older than ``IMAGE_RETENTION_HOURS`` (``collect``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import PyMongoError
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from ..errors import known_not_committed, store_error_fields
from ..sessions.crypto import SLOT_FIELDS, FieldCipher
from .service import ImageService
from .types import ImageRequest

log = logging.getLogger(__name__)

SLOT_ID = re.compile(r"^s_[A-Za-z0-9_-]{22}$")
MAX_CLAIMS = 3
RECORD_ATTEMPTS = 3
POLL_SECONDS = 0.25
LEASE_MARGIN = timedelta(seconds=30)


def valid_slot_id(slot_id: str) -> bool:
    """Return True if ``slot_id`` has the shape of an image slot id."""
    return isinstance(slot_id, str) and bool(SLOT_ID.fullmatch(slot_id))


class ImageJobs:
    """Runs turn images on a bounded pool of threads and records them in their slots.

    ``on_ready`` is told of each finished image (to record it on its turn);
    ``turn_names(session_id, n, slot_id)`` says whether a turn still names a
    slot (both answered by the session store, which owns turns).
    """

    def __init__(self, database, images: ImageService, config: Mapping[str, Any],
                 now: Callable[[], datetime],
                 on_ready: Callable[[Mapping[str, Any]], None],
                 turn_names: Callable[[str, int, str], bool], *,
                 write_concern: WriteConcern | None = None,
                 executor: Executor | None = None, cipher: FieldCipher | None = None):
        self.slots = database.get_collection("image_slots", write_concern=write_concern,
                                             read_preference=ReadPreference.PRIMARY)
        self.images = images
        self.cipher = cipher or FieldCipher()
        self.now = now
        self.on_ready = on_ready
        self.turn_names = turn_names
        self.lease = timedelta(seconds=config["IMAGE_DEADLINE"]) + LEASE_MARGIN
        self.retention = timedelta(hours=config["IMAGE_RETENTION_HOURS"])
        # How long a client's ``?wait=image`` may hold its request.
        self.wait_limit = config["IMAGE_DEADLINE"] + 5
        self.pool = executor or ThreadPoolExecutor(config["IMAGE_WORKERS"],
                                                   thread_name_prefix="turn-image")
        # Bounds the work waiting for a thread: past it, the placeholder answers.
        self.room = threading.BoundedSemaphore(config["IMAGE_WORKERS"] + config["IMAGE_QUEUE"])
        # Bounds the request threads held by ?wait=image, so waiting clients
        # can never take every thread of the server.
        self.waiters = threading.BoundedSemaphore(config["WAIT_LIMIT"]) \
            if config["WAIT_LIMIT"] else None
        self.metrics = images.metrics
        self.waits_per_client = config["WAITS_PER_CLIENT"]
        self._client_waits: Counter = Counter()
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def ensure_indexes(self) -> None:
        """Create the indexes used to find a turn's slots, a stored image's users, and expiry."""
        self.slots.create_index([("session_id", 1), ("n", 1)], name="session_turn")
        self.slots.create_index("image_id", name="image")
        self.slots.create_index("expires_at", name="expiry_ttl", expireAfterSeconds=0)

    # --- a turn's image, from reservation to its job ----------------------------

    @contextlib.contextmanager
    def for_turn(self, session_id: str, n: int, request: ImageRequest,
                 expires_at: datetime | None) -> Iterator[dict[str, Any]]:
        """Own turn ``n``'s image across the write that saves the turn.

        Reserves a pending slot and yields it; the caller saves the turn
        (with ``turn_image(slot)``) inside the block.  When the block ends,
        the image is started, unless the write is known to have saved
        nothing, in which case the slot is discarded.  A write whose outcome
        is unknown starts the image too: the turn may exist, and an unused
        slot only waits for its expiry.
        """
        slot = self._reserve(session_id, n, request, expires_at)
        try:
            yield slot
        except BaseException as exc:
            if known_not_committed(exc):
                self._discard(slot)
            else:
                self.submit(slot)
            raise
        self.submit(slot)

    def _reserve(self, session_id: str, n: int, request: ImageRequest,
                 expires_at: datetime | None) -> dict[str, Any]:
        now = self.now()
        slot = {"_id": "s_" + secrets.token_urlsafe(16), "session_id": session_id, "n": n,
                "status": "pending", "request": vars(request), "claims": 1,
                "created_at": now, "lease_until": now + self.lease, "expires_at": expires_at}
        self.slots.insert_one(self.cipher.seal_fields(slot, SLOT_FIELDS))
        return slot

    def _discard(self, slot: Mapping[str, Any]) -> None:
        try:
            self.slots.delete_one({"_id": slot["_id"], "status": "pending"})
        except PyMongoError as exc:  # the slot then waits for its expiry
            log.warning("unused image slot not removed", extra=store_error_fields(exc))

    def submit(self, slot: Mapping[str, Any]) -> None:
        """Start making the slot's image in the background (the placeholder when full)."""
        if not self.room.acquire(blocking=False):
            self.metrics.image_queue_overflows.inc()
            log.warning("turn image queue full: placeholder given at once",
                        extra={"session_id": slot["session_id"]})
            self._run(slot, placeholder_only=True)
            return
        context = contextvars.copy_context()  # keeps the request id in the job's log lines
        future = self.pool.submit(context.run, self._run, slot)
        with self.lock:
            self.futures[slot["_id"]] = future
        # Runs at once if the job is already done, so the entry never stays behind.
        future.add_done_callback(lambda _f: self._done(slot["_id"]))

    def _done(self, slot_id: str) -> None:
        self.room.release()
        with self.lock:
            self.futures.pop(slot_id, None)

    def _run(self, slot: Mapping[str, Any], placeholder_only: bool = False) -> None:
        try:
            self._resolve(slot, placeholder_only)
            return
        except Exception:  # a background failure must not leave the slot pending
            log.exception("turn image failed; trying the placeholder",
                          extra={"session_id": slot["session_id"]})
        try:
            self._resolve(slot, placeholder_only=True)
        except Exception:  # the slot's lease runs out and its next reader claims it
            log.exception("turn image placeholder failed too",
                          extra={"session_id": slot["session_id"]})

    def _resolve(self, slot: Mapping[str, Any], placeholder_only: bool = False,
                 replace: bool = False) -> dict[str, Any] | None:
        request = ImageRequest(**slot["request"])
        if placeholder_only:
            result = self.images.placeholder(request)
        else:
            result = self.images.generate(request)
        image = {"status": "ready", "image_id": result.image_id, "provider": result.provider,
                 "placeholder": result.placeholder, "content_type": result.content_type}
        updated = self._record(slot["_id"], image, replace)
        if updated is not None:
            try:
                self.on_ready(updated)
            except PyMongoError as exc:  # the slot is what reads go by; the turn catches up
                log.warning("turn not told of its image", extra=store_error_fields(exc))
        return updated

    def _record(self, slot_id: str, image: Mapping[str, Any],
                replace: bool) -> dict[str, Any] | None:
        """Save a made image in its slot; return the slot if this call made it ready.

        An image is paid for once it is made, so a passing store failure is
        retried; a write applied though its answer was lost is recognised
        by the image it left.
        """
        guard = {"_id": slot_id} if replace else {"_id": slot_id, "status": "pending"}
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                updated = self.slots.find_one_and_update(
                    guard, {"$set": {**image, "ready_at": self.now()}},
                    return_document=ReturnDocument.AFTER)
                if updated is None and attempt > 1:
                    current = self.slots.find_one({"_id": slot_id})
                    if current is not None and current.get("image_id") == image["image_id"]:
                        return self._slot(current)
                return self._slot(updated)
            except PyMongoError as exc:
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning("turn image not recorded yet", extra=store_error_fields(exc))
        return None

    # --- reading -----------------------------------------------------------------

    def wait(self, slot_id: str, timeout: float | None = None, client: str | None = None) -> bool:
        """Wait up to ``timeout`` seconds (default: the image deadline) for a slot's image.

        A slot this process works on is waited for directly; one that another
        worker makes is polled in the database.  At most ``WAIT_LIMIT``
        requests of a process wait at once, and at most ``WAITS_PER_CLIENT``
        of one ``client`` (address), so no one client holds every wait:
        past either this returns False at once, and the caller answers with
        the image still pending.
        """
        if not self._client_may_wait(client):
            self.metrics.image_waits_declined.labels("client_busy").inc()
            return False
        try:  # the client's place is given back, whatever happens
            if self.waiters is None or not self.waiters.acquire(blocking=False):
                self.metrics.image_waits_declined.labels("busy").inc()
                log.info("image wait declined: the process's wait limit is reached")
                return False
            try:
                self._wait(slot_id, self.wait_limit if timeout is None else timeout)
            finally:
                self.waiters.release()
            return True
        finally:
            self._client_done(client)

    def _client_may_wait(self, client: str | None) -> bool:
        if client is None:
            return True
        with self.lock:
            if self._client_waits[client] >= self.waits_per_client:
                return False
            self._client_waits[client] += 1
            return True

    def _client_done(self, client: str | None) -> None:
        if client is None:
            return
        with self.lock:
            self._client_waits[client] -= 1
            if self._client_waits[client] <= 0:
                del self._client_waits[client]

    def _wait(self, slot_id: str, timeout: float) -> None:
        with self.lock:
            future = self.futures.get(slot_id)
        if future is not None:
            # A timeout or a failure alike: the caller reads the slot's state next.
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                slot = self.slots.find_one({"_id": slot_id}, {"status": 1})
            except PyMongoError:  # the caller answers with the state it can read
                return
            if slot is None or slot["status"] != "pending":
                return
            time.sleep(POLL_SECONDS)

    def find_and_reclaim(self, slot_id: str) -> dict[str, Any] | None:
        """Return the slot, first reclaiming it if its lease ran out while pending.

        The reclaim is best effort: a read is not failed because the write
        behind it failed; the next reader tries again.
        """
        if not valid_slot_id(slot_id):
            return None
        slot = self._slot(self.slots.find_one({"_id": slot_id}))
        if slot is not None and slot["status"] == "pending":
            try:
                slot = self.recover(slot)
            except PyMongoError as exc:
                log.warning("abandoned image not reclaimed yet", extra=store_error_fields(exc))
        return slot

    def recover(self, slot: dict[str, Any]) -> dict[str, Any]:
        """Take over a pending slot whose lease expired; give up to the placeholder at last."""
        now = self.now()
        if slot["lease_until"] > now:
            return slot
        claimed = self._slot(self.slots.find_one_and_update(
            {"_id": slot["_id"], "status": "pending", "lease_until": slot["lease_until"]},
            {"$set": {"lease_until": now + self.lease}, "$inc": {"claims": 1}},
            return_document=ReturnDocument.AFTER))
        if claimed is None:  # someone else took it
            return self._slot(self.slots.find_one({"_id": slot["_id"]})) or slot
        log.warning("turn image abandoned by its process, claimed again",
                    extra={"session_id": slot["session_id"], "claims": claimed["claims"]})
        if claimed["claims"] > MAX_CLAIMS:
            self._run(claimed, placeholder_only=True)
        else:
            self.submit(claimed)
        return self._slot(self.slots.find_one({"_id": slot["_id"]})) or claimed

    def restore(self, slot_id: str, session_id: str, n: int, request: ImageRequest,
                expires_at: datetime | None) -> dict[str, Any] | None:
        """Give back a turn the slot it names but that is missing, resolved to the placeholder.

        The turn reads as a placeholder, which the player can ask again for.
        """
        if not valid_slot_id(slot_id):
            return None
        now = self.now()
        self.slots.update_one({"_id": slot_id}, {"$setOnInsert": self.cipher.seal_fields({
            "session_id": session_id, "n": n, "status": "pending", "request": vars(request),
            "claims": MAX_CLAIMS + 1, "created_at": now, "lease_until": now,
            "expires_at": expires_at}, SLOT_FIELDS)}, upsert=True)
        if not self.turn_names(session_id, n, slot_id):
            # The game was deleted (or the turn given another image) meanwhile:
            # a slot restored now would outlive it.
            self.slots.delete_one({"_id": slot_id})
            return None
        log.warning("turn image slot was missing: restored as the placeholder",
                    extra={"session_id": session_id, "n": n})
        self._resolve({"_id": slot_id, "session_id": session_id, "request": vars(request)},
                      placeholder_only=True)
        return self._slot(self.slots.find_one({"_id": slot_id}))

    def image_lost(self, slot: Mapping[str, Any]) -> dict[str, Any] | None:
        """Point a ready slot whose stored image is gone at the placeholder; return it."""
        log.warning("stored image of a turn is gone: the placeholder stands in",
                    extra={"session_id": slot["session_id"]})
        return self._resolve(slot, placeholder_only=True, replace=True)

    # --- a game's end --------------------------------------------------------------

    def extend(self, session_id: str, expires_at: datetime) -> None:
        """Make every slot of ``session_id`` expire at ``expires_at``, with the game's turns."""
        self.slots.update_many({"session_id": session_id}, {"$set": {"expires_at": expires_at}})

    def forget(self, session_id: str, n: int | None = None) -> None:
        """Delete every slot of a deleted game (or of its undone turn ``n``), and their images.

        Stored images that no other slot uses are collected too.
        """
        query: dict[str, Any] = {"session_id": session_id}
        if n is not None:
            query["n"] = n
        image_ids = {slot.get("image_id") for slot in self.slots.find(query, {"image_id": 1})}
        self.slots.delete_many(query)
        self.collect(image_id for image_id in image_ids if image_id)

    def collect(self, image_ids: Iterable[str] | None = None) -> int:
        """Delete stored images no slot names, once older than the retention; return how many.

        With ``image_ids``, only those are looked at; without, every stored
        image old enough (the periodic sweep, which also removes chunks of
        writes cut off that long ago).  The age bound keeps an image returned
        by ``POST /api/images`` for ``IMAGE_RETENTION_HOURS``.  A shared image
        (a placeholder) collected just as a new slot names it is stored again
        when that slot is read: ``image_lost``.
        """
        cutoff = self.now() - self.retention
        store = self.images.store
        if image_ids is None:
            store.remove_orphan_chunks(cutoff)
            candidates = store.stored_before(cutoff)
        else:
            candidates = [i for i in image_ids if (store.stored_at(i) or cutoff) < cutoff]
        removed = 0
        for image_id in candidates:
            if self.slots.find_one({"image_id": image_id}, {"_id": 1}) is None:
                store.delete(image_id)
                removed += 1
        if removed:
            log.info("stored images collected: %s", removed)
        return removed


    def _slot(self, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return self.cipher.open_fields(document, SLOT_FIELDS)


def turn_image(slot: Mapping[str, Any]) -> dict[str, Any]:
    """Return the image fields stored on a turn for ``slot``."""
    return {"id": slot["_id"], "status": slot["status"], "provider": slot.get("provider"),
            "placeholder": slot.get("placeholder", False)}
