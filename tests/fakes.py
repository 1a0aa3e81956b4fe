"""Test doubles that behave like the real things and record what they were asked."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from datetime import timedelta

import dungeon
from dungeon.images.types import GeneratedImage, ImageRequest
from dungeon.sessions.store import utcnow

PNG = b"\x89PNG\r\n\x1a\n" + b"fake-image-bytes"


def openai_error(status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> dict:
    """Return kwargs for requests-mock that reproduce one of OpenAI's error answers."""
    return {"status_code": status,
            "json": {"error": {"message": message, "type": type_, "param": param, "code": code}},
            "headers": {"x-request-id": f"req_{status}_{code or 'none'}",
                        "content-type": "application/json"}}


class FakeClock:
    """A monotonic clock that moves only when told to, or when someone sleeps on it."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeNow:
    """A wall clock (the stores' ``now``) that moves only when told to."""

    def __init__(self):
        self.value = utcnow()

    def __call__(self):
        return self.value

    def advance(self, seconds: float = 0, **delta: float) -> None:
        self.value += timedelta(seconds=seconds, **delta)


class InlineExecutor:
    """Runs each turn image at once, in the caller's thread, so a test is deterministic."""

    def submit(self, function, *args):
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool does
            future.set_exception(exc)
        return future


class FakeProvider:
    """An image provider that returns or raises what was enqueued, and records every call.

    With nothing enqueued it returns a PNG.  ``costs`` seconds are added to the
    clock per call, to stand for a slow provider without waiting.
    """

    def __init__(self, name: str, model: str | None = None, clock: FakeClock | None = None,
                 costs: float = 0.0):
        self.name = name
        self.model = model or f"{name}-model"
        self.calls: list[tuple[ImageRequest, float]] = []
        self.queue: deque = deque()
        self.clock, self.costs = clock, costs
        self.lock = threading.Lock()

    def enqueue(self, *outcomes) -> FakeProvider:
        self.queue.extend(outcomes)
        return self

    def generate(self, request: ImageRequest, timeout: float) -> GeneratedImage:
        with self.lock:
            self.calls.append((request, timeout))
            outcome = self.queue.popleft() if self.queue else GeneratedImage(data=PNG)
        if self.clock is not None:
            self.clock.advance(self.costs)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class ProvidersPlugin:
    """A plugin object that registers the given providers."""

    def __init__(self, *providers, name: str = "test-providers"):
        self.providers = providers
        self.__name__ = name

    @dungeon.hookimpl
    def register_image_providers(self, register):
        for provider in self.providers:
            register(provider)
