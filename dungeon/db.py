"""The MongoDB database of one application: flask-pymongo, or an embedded in-memory store."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import mongomock
import mongomock.gridfs
import pymongo
from flask import Flask
from flask_pymongo import PyMongo
from pymongo.errors import PyMongoError

from .errors import ConfigError, StoreUnavailable

log = logging.getLogger(__name__)


def init_app(app: Flask, client: Any = None):
    """Return the database ``app`` uses: the injected client's, MongoDB's, or an embedded one."""
    config = app.config
    if client is not None:
        if isinstance(client, mongomock.MongoClient):
            _enable_mongomock_gridfs()
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
    _enable_mongomock_gridfs()
    return mongomock.MongoClient(tz_aware=True)


@functools.cache
def _enable_mongomock_gridfs() -> None:
    # GridFS accepts mongomock databases only after this process-wide patch;
    # cached because each call would stack another patch.
    mongomock.gridfs.enable_gridfs_integration()


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

    def __init__(self, parts):
        self.parts = list(parts)
        self.ready = False
        self._lock = threading.Lock()

    def ensure(self) -> bool:
        """Create every index not yet created; return True once all exist."""
        if self.ready:
            return True
        with self._lock:
            if not self.ready:
                try:
                    for part in self.parts:
                        part.ensure_indexes()
                    self.ready = True
                except PyMongoError as exc:
                    log.error("store indexes not created yet: %s", type(exc).__name__)
        return self.ready

    def require(self) -> None:
        """Raise StoreUnavailable unless the indexes exist."""
        if not self.ensure():
            raise StoreUnavailable(headers={"Retry-After": "2"})


def ping(database, timeout: float = 2.0) -> None:
    """Raise if the database's server does not answer a ping within ``timeout`` seconds."""
    # A readiness probe must answer before the load balancer gives up on it,
    # whatever the client's server-selection timeout is.
    with pymongo.timeout(timeout):
        database.client.admin.command("ping")
