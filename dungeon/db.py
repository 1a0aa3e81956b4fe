"""The MongoDB database of one application: flask-pymongo, or an embedded in-memory store."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import mongomock
import mongomock.gridfs
import pymongo
from flask import Flask
from flask_pymongo import PyMongo
from pymongo.errors import (
    DuplicateKeyError,
    ExecutionTimeout,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
    WTimeoutError,
)
from pymongo.read_concern import ReadConcern

from .errors import (
    ConfigError,
    NothingSaved,
    OutcomeUnknown,
    StoreUnavailable,
    store_error_fields,
)

log = logging.getLogger(__name__)

# How often index creation is tried again while the store cannot take it.
RETRY_SECONDS = 5.0
# IndexOptionsConflict, IndexKeySpecsConflict, and a unique index over duplicates.
INDEX_CONFLICT_CODES = {85, 86, 11000}


def init_app(app: Flask, client: Any = None):
    """Return the database ``app`` uses: the injected client's, MongoDB's, or an embedded one."""
    config = app.config
    if client is not None:
        if isinstance(client, mongomock.MongoClient):
            prepare_mongomock()
        return client[config["MONGO_DB"]]
    if config["MONGO_URI"]:
        return _mongodb(app)
    if config["ENV"] == "production":
        raise ConfigError("MONGO_URI: required when ENV is production; the embedded store "
                          "loses every saved game on restart")
    log.warning("DUNGEON_MONGO_URI is unset: using the embedded in-memory store. Nothing "
                "survives a restart and worker processes do not share it.")
    return embedded_client()[config["MONGO_DB"]]


def embedded_client() -> mongomock.MongoClient:
    """Return a new in-memory client that speaks pymongo's API."""
    prepare_mongomock()
    return mongomock.MongoClient(tz_aware=True)


@functools.cache
def prepare_mongomock() -> None:
    """Make mongomock fit to serve: GridFS on it, and every operation under one lock."""
    # GridFS accepts mongomock databases only after this process-wide patch;
    # cached because each call would stack another patch.
    mongomock.gridfs.enable_gridfs_integration()
    _serialise_mongomock()


# One lock for every embedded collection of the process.  mongomock is not
# thread-safe: a query copies a collection's documents while another thread
# updates one of them, and "dictionary changed size during iteration" ends
# the request.  gunicorn serves requests and image jobs on threads, so every
# operation of the embedded store runs under this lock.  One lock rather
# than one per collection: an operation may touch several (GridFS does), and
# the embedded store is for trying the service out, not for throughput.
EMBEDDED_LOCK = threading.RLock()
_SERIALISED = (
    "insert_one", "insert_many", "find_one", "find_one_and_update", "find_one_and_replace",
    "find_one_and_delete", "update_one", "update_many", "replace_one", "delete_one",
    "delete_many", "count_documents", "estimated_document_count", "distinct", "aggregate",
    "create_index", "create_indexes", "drop_index", "drop_indexes", "index_information",
    "list_indexes", "bulk_write", "drop", "find")


def _serialise_mongomock() -> None:
    """Make every mongomock collection operation, and reading a cursor, take ``EMBEDDED_LOCK``."""
    from mongomock.collection import Collection, Cursor

    for name in _SERIALISED:
        setattr(Collection, name, _locked(getattr(Collection, name)))
    # A cursor computes its results when first read, after find() returned.
    Cursor._compute_results = _locked(Cursor._compute_results)


def _locked(function):
    @functools.wraps(function)
    def run(*args, **kwargs):
        with EMBEDDED_LOCK:
            return function(*args, **kwargs)

    return run


def with_write_concern(database, concern):
    """Return ``database`` with ``concern`` for every collection taken from it.

    The embedded store has no replication and mongomock refuses the option,
    so its database is returned as it is.
    """
    try:
        return database.with_options(write_concern=concern)
    except NotImplementedError:
        return database


def _mongodb(app: Flask):
    config = app.config
    timeout = config["MONGO_TIMEOUT_MS"]
    # Reads go to the primary: a lagging secondary would not yet hold a game
    # that was just created, which is how saved games went "missing" before.
    mongo = PyMongo(app, config["MONGO_URI"], tz_aware=True, readPreference="primary",
                    serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout,
                    appname="dungeon")
    app.extensions["pymongo"] = mongo
    return mongo.db if mongo.db is not None else mongo.cx[config["MONGO_DB"]]


class IndexSetup:
    """Creates the store's indexes at start-up, and again later if the store was unreachable.

    A database that is down while the service starts must not stop it from
    starting (the readiness check reports it); but no game is written before
    the unique turn index exists, since it is what keeps turns from colliding.
    """

    def __init__(self, parts, retry_seconds: float = RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.parts = list(parts)
        self.ready = False
        self.error: str | None = None  # why the last attempt failed, for /readyz
        self.fatal: ConfigError | None = None  # a failure no retry mends (wrong keys)
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def ensure(self) -> bool:
        """Create every index not yet created; return True once all exist.

        One caller tries at a time, at most once per ``retry_seconds``; the
        others answer at once with the last verdict, so an outage does not
        queue every write behind the lock.
        """
        if self.ready:
            return True
        waiting = self._failed_at is not None and \
            self._clock() < self._failed_at + self.retry_seconds
        if waiting or not self._lock.acquire(blocking=False):
            return self.ready
        try:
            if not self.ready:
                try:
                    for part in self.parts:
                        part.ensure_indexes()
                    self.ready, self.error = True, None
                except PyMongoError as exc:
                    self._failed_at = self._clock()
                    self._failed(exc)
                except ConfigError as exc:
                    self._failed_at = self._clock()
                    self.fatal, self.error = exc, str(exc)
                    log.error("store set-up refused: %s", exc)
        finally:
            self._lock.release()
        return self.ready

    def _failed(self, exc: PyMongoError) -> None:
        fields = store_error_fields(exc)
        code = fields.get("error_code")
        self.error = f"{fields['error_type']}" + (f" (code {code})" if code is not None else "") \
            + f": {fields['error_message']}"
        if code in INDEX_CONFLICT_CODES:
            # Not a passing outage: an index of the same name differs, or
            # existing documents break a unique index.  An operator must act.
            log.error("store index definition conflicts with the database: %s", self.error,
                      extra=fields)
        else:
            log.error("store indexes not created yet: %s", self.error, extra=fields)

    def require(self) -> None:
        """Raise StoreUnavailable unless the indexes exist."""
        if not self.ensure():
            raise StoreUnavailable("Saved games are not ready yet; nothing was saved. Try again.")


def ping(database, timeout: float = 2.0) -> None:
    """Raise if the database's server does not answer a ping within ``timeout`` seconds."""
    # A readiness probe must answer before the load balancer gives up on it,
    # whatever the client's server-selection timeout is.
    with pymongo.timeout(timeout):
        database.client.admin.command("ping")


# Server errors that refuse a write before applying it: WriteConflict, a bad
# command or value, an unauthorised or unknown operation.
REFUSAL_CODES = {2, 9, 13, 14, 59, 112}
# NotWritablePrimary, NotPrimaryNoSecondaryOk: a secondary's answer to a write.
NOT_PRIMARY_CODES = {10107, 13435}


def insert_settled(collection, document: dict[str, Any], *, not_saved: str | None = None,
                   unknown: str | None = None) -> None:
    """Insert ``document``; when the answer is lost, one majority read tells the outcome.

    Returns once the document is known to be stored durably (a majority
    read finds it, whatever the error said).  Raises NothingSaved (message
    ``not_saved``) only when it is not found and the error proves the write
    was refused or never sent; OutcomeUnknown (message ``unknown``)
    when it may yet be applied (a timeout, a dropped connection: the server
    may still be running it, or a write acknowledged by the primary alone
    may be rolled back) and no majority read shows it; DuplicateKeyError as
    the unique indexes decide.
    """
    try:
        collection.insert_one(document)
        return
    except DuplicateKeyError:
        raise
    except PyMongoError as exc:
        failure = exc
    fields = {"collection": collection.name, **store_error_fields(failure)}
    try:
        found = collection.with_options(read_concern=ReadConcern("majority")).find_one(
            {"_id": document["_id"]}, {"_id": 1})
    except PyMongoError:
        found = None
    if found is not None:
        log.warning("write applied though its answer was lost", extra=fields)
        return
    if refused(failure):
        log.warning("write refused, not applied", extra=fields)
        raise NothingSaved(not_saved) from failure
    log.error("write outcome unknown", extra=fields)
    raise OutcomeUnknown(unknown) from failure


def refused(error: PyMongoError) -> bool:
    """Return True if ``error`` proves that the write it answers was not applied.

    No server could be selected (nothing was sent), the node answered that
    it is not the primary (it took no write), or the server refused the
    write outright (a write conflict, a command error).  A timeout, a
    dropped connection, a node interrupted mid-write or a write-concern
    error proves nothing.
    """
    if isinstance(error, ServerSelectionTimeoutError):
        return True
    if isinstance(error, NotPrimaryError):
        return (error.details or {}).get("code") in NOT_PRIMARY_CODES
    return isinstance(error, OperationFailure) and not isinstance(
        error, (WTimeoutError, WriteConcernError, ExecutionTimeout)) and \
        error.code in REFUSAL_CODES


def quietly(what: str, operation: Callable[..., Any], *args: Any, then: str = "") -> None:
    """Run a write that is worth trying but not worth failing for; log a store error.

    ``then`` says, in the log line, what covers for the write when it fails.
    """
    try:
        operation(*args)
    except PyMongoError as exc:
        log.warning("could not %s%s", what, f"; {then}" if then else "",
                    extra=store_error_fields(exc))
