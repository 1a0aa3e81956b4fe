"""Knowing when this process's copies of games are current, so a cache hit needs no database.

A process keeps copies of games and of their recent turns.  Whether a copy
may be served without asking the database depends on who else writes:

- ``local``: the embedded store lives in this process, so every write goes
  through it and the copies are invalidated as they are made.
- ``watch``: a MongoDB change stream (replica sets) tells this process of
  every other process's write, and the copies it names are dropped.  While
  the stream is down (an error, an election) the process falls back to
  ``version`` and resumes the stream from its last resume token.
- ``version``: one read of the game's ``version`` by ``_id`` (a single
  indexed document) tells whether the copy is current.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from pymongo.errors import PyMongoError

from ..errors import store_error_fields

log = logging.getLogger(__name__)

LOCAL, WATCH, VERSION = "local", "watch", "version"
BACKOFF_SECONDS = (0.5, 1, 2, 5, 10, 30)
WATCHED = ("sessions", "turns")
# "The $changeStream stage is only supported on replica sets", and its kin.
UNSUPPORTED_CODES = {40573, 40324, 136}


class Coherence:
    """Says whether this process's copies can be served as they are."""

    def __init__(self, mode: str):
        self.mode = mode
        self._stream_healthy = False

    def trusted(self) -> bool:
        """Return True when a copy is known current without asking the database."""
        return self.mode == LOCAL or (self.mode == WATCH and self._stream_healthy)

    def stream(self, healthy: bool) -> None:
        """Record whether the change stream is delivering."""
        self._stream_healthy = healthy


class ChangeFeed:
    """Follows the database's change stream and drops the copies other processes made stale.

    ``watch`` opens the stream (``database.watch`` by default, given the
    pipeline and ``resume_after``); tests give a fake.  ``on_session`` is
    called with a game's id when its session document changed, ``on_turns``
    with a game's id when one of its turns did, ``on_reset`` when the stream
    was lost and every copy must be distrusted.
    """

    def __init__(self, coherence: Coherence,
                 watch: Callable[..., AbstractContextManager[Iterator[Mapping[str, Any]]]],
                 on_session: Callable[[str], None], on_turns: Callable[[str | None], None],
                 on_reset: Callable[[], None], sleep: Callable[[float], None] = time.sleep):
        self.coherence = coherence
        self.watch = watch
        self.on_session, self.on_turns, self.on_reset = on_session, on_turns, on_reset
        self.sleep = sleep
        self.resume_token: Mapping[str, Any] | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Follow the stream on a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self.run, name="change-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following after the current event."""
        self._stop.set()

    def run(self, rounds: int | None = None) -> None:
        """Open the stream, follow it, and open it again after each failure (``rounds`` times)."""
        try:
            while not self._stop.is_set() and (rounds is None or rounds > 0):
                rounds = None if rounds is None else rounds - 1
                try:
                    self._follow()
                except PyMongoError as exc:
                    self._lost(exc)
        except Exception:  # the feed is gone: nothing is trusted without it
            log.exception("change feed stopped")
            self.coherence.stream(False)
            self.on_reset()
            raise

    def _follow(self) -> None:
        pipeline = [{"$match": {"ns.coll": {"$in": list(WATCHED)}}}]
        resumed = self.resume_token is not None
        with self.watch(pipeline=pipeline, resume_after=self.resume_token,
                        full_document="updateLookup") as stream:
            if not resumed:
                # Changes made before the stream opened were never delivered:
                # copies kept until now cannot be trusted.
                self.on_reset()
            self.coherence.stream(True)
            self.failures = 0
            for change in stream:
                self._apply(change)
                # The stream's own token also moves on while it is quiet.
                self.resume_token = getattr(stream, "resume_token", None) or change.get("_id")
                if self._stop.is_set():
                    return

    def _apply(self, change: Mapping[str, Any]) -> None:
        collection = change.get("ns", {}).get("coll")
        key = (change.get("documentKey") or {}).get("_id")
        if collection == "sessions":
            self.on_session(key)
        elif collection == "turns":
            document = change.get("fullDocument") or {}
            # A deleted turn names only its own _id: every game's turns are dropped.
            self.on_turns(document.get("session_id"))

    def _lost(self, exc: PyMongoError) -> None:
        self.coherence.stream(False)
        self.on_reset()
        if getattr(exc, "code", None) in UNSUPPORTED_CODES:
            # A standalone server has no change streams: stay with version reads.
            log.info("change streams unavailable; cached games are checked by version")
            self.stop()
            return
        delay = BACKOFF_SECONDS[min(self.failures, len(BACKOFF_SECONDS) - 1)]
        self.failures += 1
        if getattr(exc, "code", None) in (260, 280, 286):  # the resume point is gone
            self.resume_token = None
        log.warning("change stream lost; copies are checked against the database until it "
                    "is back", extra={"retry_in_seconds": delay, **store_error_fields(exc)})
        self.sleep(delay)
