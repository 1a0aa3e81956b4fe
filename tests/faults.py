"""Fault injection for the embedded store: pymongo's own exceptions, before or after an operation.

A real replica set fails in ways mongomock never does: a write can be
applied and still answer with ``WTimeoutError`` or a dropped connection; an
election answers ``NotPrimaryError``; a busy server answers
``OperationFailure`` (WriteConflict).  ``FaultInjector`` patches mongomock's
``Collection`` so that the Nth call of an operation on a named collection
raises one of those, either *before* the operation runs (nothing applied)
or *after* it ran (applied, but the answer lost).  It also records every
call, so a test can first run a flow cleanly to learn its fault points.
"""

from __future__ import annotations

import threading
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mongomock.collection import Collection
from pymongo.errors import (
    AutoReconnect,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    WTimeoutError,
)

from dungeon.db import prepare_mongomock

OPERATIONS = ("insert_one", "insert_many", "find_one", "find", "find_one_and_update",
              "update_one", "update_many", "delete_one", "delete_many")
WRITES = {"insert_one", "insert_many", "find_one_and_update", "update_one", "update_many",
          "delete_one", "delete_many"}

# The errors a replica set answers with, as pymongo raises them (codes and
# bodies as the server sends them).
ERRORS: dict[str, Callable[[], Exception]] = {
    "AutoReconnect": lambda: AutoReconnect("connection closed by the server"),
    "NetworkTimeout": lambda: NetworkTimeout("timed out"),
    "WTimeoutError": lambda: WTimeoutError(
        "waiting for replication timed out", 64,
        {"ok": 1, "writeConcernError": {"code": 64, "codeName": "WriteConcernFailed",
                                        "errmsg": "waiting for replication timed out",
                                        "errInfo": {"wtimeout": True}}}),
    "NotPrimaryError": lambda: NotPrimaryError(
        "not primary", {"ok": 0, "errmsg": "not primary", "code": 10107,
                        "codeName": "NotWritablePrimary"}),
    "OperationFailure": lambda: OperationFailure(
        "WriteConflict error: this operation conflicted with another operation", 112,
        {"ok": 0, "errmsg": "WriteConflict", "code": 112, "codeName": "WriteConflict"}),
}

# The errors that can answer a write the server applied: the answer was lost
# on the way (a dropped connection, a timeout) or replication was not
# confirmed in time.  A refusal (NotPrimaryError, OperationFailure) comes
# instead of applying, never after.
AFTER_ERRORS = ("AutoReconnect", "NetworkTimeout", "WTimeoutError")

_PROJECT = str(Path(__file__).resolve().parent.parent / "dungeon")


@dataclass(frozen=True)
class Fault:
    """Raise ``error`` at the ``nth`` call of ``operation`` on ``collection``, ``when`` it runs."""

    collection: str
    operation: str
    nth: int
    when: str  # "before" (nothing applied) or "after" (applied, the answer lost)
    error: str

    def __str__(self) -> str:
        return f"{self.error} {self.when} {self.collection}.{self.operation} #{self.nth}"


@dataclass(frozen=True)
class Call:
    """One operation the service made, and where in the service it was made."""

    collection: str
    operation: str
    nth: int
    site: str


class FaultInjector:
    """Patches mongomock collections (through ``monkeypatch``); records calls; fires faults."""

    def __init__(self, monkeypatch, faults: list[Fault] | tuple[Fault, ...] = ()):
        # The embedded store's own wrapping goes on first, and stays when
        # monkeypatch takes these off again.
        prepare_mongomock()
        self.faults = set(faults)
        self.fired: list[Fault] = []
        self.calls: list[Call] = []
        self.enabled = True
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._depth = threading.local()
        for operation in OPERATIONS:
            monkeypatch.setattr(Collection, operation,
                                self._wrap(operation, getattr(Collection, operation)))

    def arm(self, collection: str, operation: str, when: str, error: str,
            skip: int = 0) -> Fault:
        """Plan a fault at the next call (after ``skip`` more) of ``operation``."""
        with self._lock:
            nth = self._counts[collection, operation] + 1 + skip
            fault = Fault(collection, operation, nth, when, error)
            self.faults.add(fault)
        return fault

    def _wrap(self, operation: str, original):
        injector = self

        def call(collection, *args, **kwargs):
            depth = getattr(injector._depth, "value", 0)
            if depth or not injector.enabled:  # mongomock calling itself: one operation
                return original(collection, *args, **kwargs)
            fault = injector._count(collection.name, operation)
            if fault is not None and fault.when == "before":
                raise ERRORS[fault.error]()
            injector._depth.value = depth + 1
            try:
                result = original(collection, *args, **kwargs)
                if fault is not None and operation == "find":
                    list(result)  # the server did the work; then the answer was lost
            finally:
                injector._depth.value = depth
            if fault is not None:
                raise ERRORS[fault.error]()
            return result

        return call

    def _count(self, collection: str, operation: str) -> Fault | None:
        with self._lock:
            self._counts[collection, operation] += 1
            nth = self._counts[collection, operation]
            self.calls.append(Call(collection, operation, nth, _site()))
            for fault in self.faults:
                if (fault.collection, fault.operation, fault.nth) == (collection, operation, nth):
                    self.faults.discard(fault)
                    self.fired.append(fault)
                    return fault
        return None


def _site() -> str:
    """Return where in the service the current call was made (file:line of each frame)."""
    frames = [f"{Path(frame.filename).name}:{frame.lineno}"
              for frame in traceback.extract_stack()[:-3] if frame.filename.startswith(_PROJECT)]
    return " < ".join(reversed(frames[-4:]))


def fault_points(calls: list[Call]) -> list[Call]:
    """Return one call per distinct (collection, operation, call site): the first of each.

    A flow makes the same call from the same place for every turn; a fault
    there behaves alike each time, so one of them stands for all.
    """
    seen: set[tuple[str, str, str]] = set()
    points = []
    for call in calls:
        if (call.collection, call.operation, call.site) not in seen:
            seen.add((call.collection, call.operation, call.site))
            points.append(call)
    return points
