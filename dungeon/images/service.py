"""The image chain: providers in configured order, retries, breakers, placeholder, storage.

An image request never fails: when every provider is refused, broken, open or
out of time, the placeholder answers, and the result says so.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import requests
import tenacity

from ..errors import (
    ImagesBusy,
    ModelGone,
    PromptRefused,
    ProviderAuthError,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from ..metrics import Metrics
from .breaker import OPEN, STATE_VALUES, CircuitBreaker
from .download import download
from .prompts import PromptChecker, fingerprint, truncate
from .store import ImageStore
from .types import Attempt, GeneratedImage, ImageRequest, ImageResult, describe

log = logging.getLogger(__name__)

PLACEHOLDER = "placeholder"
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"GIF8")


class CircuitOpen(ProviderError):
    """The provider's breaker is open: skipped without a call."""

    outcome = "circuit_open"
    counts_as_failure = False


class ImageService:
    """Runs one image request through the configured providers."""

    def __init__(self, providers: Mapping[str, Any], config: Mapping[str, Any],
                 store: ImageStore, metrics: Metrics, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random,
                 checker: PromptChecker | None = None,
                 session: requests.Session | None = None):
        self.providers = dict(providers)
        self.order = [n for n in config["IMAGE_PROVIDERS"] if n != PLACEHOLDER]
        self.config = config
        self.store = store
        self.metrics = metrics
        self.sleep, self.clock, self.jitter = sleep, clock, jitter
        self.checker = checker or PromptChecker(config)
        # Prompts are story text: kept out of the logs when stories are encrypted.
        self.log_prompts = not config.get("ENCRYPTION_KEYS")
        self.session = session or requests.Session()
        # A provider whose model is gone: why, and when one trial may check again.
        # POST /api/images runs the chain in a request thread: bounded, so a
        # slow provider cannot take every thread of the server.
        self.client_calls = threading.BoundedSemaphore(config["IMAGE_REQUEST_LIMIT"])
        self.disabled: dict[str, str] = {}
        self._recheck_at: dict[str, float] = {}
        self._disabled_lock = threading.Lock()
        self.breakers = {name: self._make_breaker(name) for name in self.order}
        for name in self.order:
            shutdown = getattr(self.providers[name], "shutdown_date", None)
            if shutdown is not None:
                moment = datetime.combine(shutdown, datetime.min.time(), tzinfo=UTC)
                metrics.model_shutdown.labels(name, self.providers[name].model).set(
                    moment.timestamp())

    def _make_breaker(self, name: str) -> CircuitBreaker:
        gauge = self.metrics.circuit_state.labels(name)
        gauge.set(STATE_VALUES["closed"])
        # Called under the breaker's lock: it only sets a gauge, never re-enters.
        return CircuitBreaker(
            name, self.config["BREAKER_FAILURE_THRESHOLD"], self.config["BREAKER_RESET_SECONDS"],
            clock=self.clock, on_change=lambda _old, new: gauge.set(STATE_VALUES[new]))

    # --- the chain -----------------------------------------------------------

    def generate(self, request: ImageRequest, public: bool = False) -> ImageResult:
        """Return the first provider's image that succeeds, else the placeholder.

        A ``public`` image may be fetched by its content address by anyone
        (``POST /api/images``); a turn's image only through its slot.
        """
        deadline = self.clock() + self.config["IMAGE_DEADLINE"]
        attempts: list[Attempt] = []
        try:
            request = replace(request, prompt=self.checker.check(request.prompt))
        except PromptRefused as exc:
            log.warning("image prompt refused: %s", "; ".join(exc.reasons),
                        extra=fingerprint(request.prompt, self.log_prompts))
            attempts.append(Attempt("prompt_check", "prompt_refused"))
            return self._placeholder(request, attempts, refused=exc.reasons, public=public)
        for name in self.order:
            image = self._try_provider(name, request, deadline, attempts)
            if image is not None:
                return self._finish(name, image, attempts, public)
            if attempts[-1].outcome != ProviderNotConfigured.outcome:
                self.metrics.image_fallbacks.labels(name).inc()
        return self._placeholder(request, attempts, public=public)

    def generate_for_client(self, request: ImageRequest) -> ImageResult:
        """Run the chain for a client waiting on it (``POST /api/images``), a public image.

        At most ``IMAGE_REQUEST_LIMIT`` such calls run at once in a process;
        past it ImagesBusy (503 with ``Retry-After``) is raised at once.
        """
        if not self.client_calls.acquire(blocking=False):
            self.metrics.image_requests_refused.inc()
            raise ImagesBusy()
        try:
            return self.generate(request, public=True)
        finally:
            self.client_calls.release()

    def _try_provider(self, name: str, request: ImageRequest, deadline: float,
                      attempts: list[Attempt]) -> GeneratedImage | None:
        if name in self.disabled and not self._recheck_due(name):
            attempts.append(Attempt(name, "disabled"))
            return None
        if self.clock() >= deadline:
            attempts.append(Attempt(name, "deadline_exceeded"))
            return None
        provider = self.providers[name]
        if self.breakers[name].state == OPEN:  # skipped at no cost: no retry machinery
            attempts.append(Attempt(name, CircuitOpen.outcome,
                                    model=getattr(provider, "model", None)))
            return None
        request = replace(request, prompt=truncate(request.prompt,
                                                   getattr(provider, "max_prompt_chars", None)))
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config["IMAGE_RETRIES"] + 1)
            | _stop_at(deadline, self.clock, self.config["IMAGE_RETRY_AFTER_MAX"]),
            wait=self._wait, retry=tenacity.retry_if_exception(_retryable),
            sleep=self.sleep, reraise=True)
        try:
            return retrying(self._attempt, name, provider, request, deadline, attempts)
        except ProviderError:
            return None

    def _attempt(self, name: str, provider: Any, request: ImageRequest, deadline: float,
                 attempts: list[Attempt]) -> GeneratedImage:
        breaker = self.breakers[name]
        model = getattr(provider, "model", None)
        if not breaker.allow():
            attempts.append(Attempt(name, CircuitOpen.outcome, model=model))
            raise CircuitOpen(f"circuit breaker of {name} is open")
        started = self.clock()
        timeout = max(0.1, min(self.config["IMAGE_READ_TIMEOUT"], deadline - started))
        try:
            image = self._materialize(provider.generate(request, timeout))
        except ProviderError as exc:
            self._failed(name, model, breaker, exc, started, request, attempts)
            raise
        except Exception as exc:  # a plugin's bug must cost one provider, not the image
            log.exception("provider %s raised %s", name, type(exc).__name__)
            error = ProviderError(f"{type(exc).__name__} in provider {name}")
            self._failed(name, model, breaker, error, started, request, attempts)
            raise error from None
        breaker.record_success()
        if name in self.disabled:
            self._enable(name, model)
        self._record(name, model, "success", started, attempts, request)
        return image

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        """Exponential backoff with jitter, or the provider's Retry-After when it gave one."""
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        retries_done = retry_state.attempt_number - 1
        delay = min(self.config["IMAGE_BACKOFF_BASE"] * 2**retries_done,
                    self.config["IMAGE_BACKOFF_MAX"])
        return delay * (1 - 0.25 * self.jitter())  # the official SDK's jitter: x[0.75, 1]

    # --- outcomes --------------------------------------------------------------

    def _failed(self, name: str, model: str | None, breaker: CircuitBreaker, exc: ProviderError,
                started: float, request: ImageRequest, attempts: list[Attempt]) -> None:
        if isinstance(exc, ModelGone):
            self._disable(name, model, exc.message)
        if isinstance(exc, ProviderAuthError):
            opened_for = self.config["BREAKER_AUTH_RESET_SECONDS"]
            if breaker.record_failure(open_for=opened_for, reason=exc.outcome):
                # Providers share one key: every request would say the same
                # thing, so it is said once per opening, and /readyz shows it.
                log.error("provider %s refused our credentials (%s, status %s): its breaker is "
                          "open for %.0f s; check the API key, its permissions and quota",
                          name, exc.error_code or exc.error_type or "auth", exc.http_status,
                          opened_for, extra={"provider": name, "model": model})
        elif exc.counts_as_failure:
            breaker.record_failure()
        else:
            breaker.record_neutral()
        self._record(name, model, exc.outcome, started, attempts, request, exc)

    def _disable(self, name: str, model: str | None, why: str) -> None:
        with self._disabled_lock:
            self.disabled[name] = why
            self._recheck_at[name] = self.clock() + self.config["MODEL_RECHECK_SECONDS"]
        self.metrics.provider_disabled.labels(name).set(1)
        log.error("provider %s disabled: model %s is gone; checked again in %.0f s", name, model,
                  self.config["MODEL_RECHECK_SECONDS"])

    def _recheck_due(self, name: str) -> bool:
        """Return True for the one caller that may try a disabled provider again now."""
        with self._disabled_lock:
            if self.clock() < self._recheck_at.get(name, 0.0):
                return False
            # Later callers wait for this trial's verdict, one interval more.
            self._recheck_at[name] = self.clock() + self.config["MODEL_RECHECK_SECONDS"]
            return True

    def _enable(self, name: str, model: str | None) -> None:
        with self._disabled_lock:
            self.disabled.pop(name, None)
            self._recheck_at.pop(name, None)
        self.metrics.provider_disabled.labels(name).set(0)
        log.warning("provider %s enabled again: model %s answered", name, model)

    def _record(self, name: str, model: str | None, outcome: str, started: float,
                attempts: list[Attempt], request: ImageRequest,
                exc: ProviderError | None = None) -> None:
        elapsed = self.clock() - started
        attempt = Attempt(name, outcome, round(elapsed * 1000, 1),
                          exc.http_status if exc else None, exc.error_code if exc else None, model)
        attempts.append(attempt)
        self.metrics.image_attempts.labels(name, outcome).inc()
        self.metrics.image_attempt_seconds.labels(name).observe(elapsed)
        fields = {"provider": name, "model": model, "latency_ms": attempt.ms,
                  **fingerprint(request.prompt, self.log_prompts),
                  **(exc.log_fields() if exc else {})}
        if outcome == "invalid_request":
            # Our request builder sent something the model rejects: a defect.
            log.error("image request rejected as invalid, parameter %s: %s",
                      exc.param, exc.message, extra=fields)
        elif isinstance(exc, ProviderNotConfigured):
            log.debug("image provider skipped: %s", exc.message, extra=fields)
        elif exc is not None:
            log.warning("image attempt failed: %s", outcome, extra=fields)
        else:
            log.info("image attempt succeeded", extra=fields)

    def _materialize(self, image: GeneratedImage) -> GeneratedImage:
        """Return ``image`` with its bytes: downloaded if it came as a URL, checked either way."""
        if image.data is None and image.url:
            data, content_type = download(
                self.session, image.url, max_bytes=self.config["IMAGE_MAX_BYTES"],
                timeout=(self.config["IMAGE_CONNECT_TIMEOUT"], self.config["IMAGE_READ_TIMEOUT"]))
            image = replace(image, data=data, url=None, content_type=content_type)
        if not image.data:
            raise ProviderUnavailable("provider answered without an image")
        if len(image.data) > self.config["IMAGE_MAX_BYTES"]:
            raise ProviderUnavailable(f"image of {len(image.data)} bytes is too large")
        # Raster formats only: an SVG served from our origin could carry script.
        if not image.data.startswith(_IMAGE_MAGIC):
            raise ProviderUnavailable("provider answered with bytes that are not an image")
        return image

    def _finish(self, name: str, image: GeneratedImage, attempts: list[Attempt],
                public: bool) -> ImageResult:
        image_id = self.store.put(image.data, image.content_type, public)
        self.metrics.image_requests.labels("generated").inc()
        return ImageResult(image_id, image.content_type, name,
                           getattr(self.providers[name], "model", None), False,
                           image.revised_prompt, attempts)

    def placeholder(self, request: ImageRequest) -> ImageResult:
        """Return the placeholder for ``request`` at once, calling no provider."""
        return self._placeholder(request, [])

    def _placeholder(self, request: ImageRequest, attempts: list[Attempt],
                     refused: list[str] | None = None, public: bool = False) -> ImageResult:
        image = self.providers[PLACEHOLDER].generate(request, timeout=0)
        image_id = self.store.put(image.data, image.content_type, public)
        attempts.append(Attempt(PLACEHOLDER, "success"))
        self.metrics.image_requests.labels("placeholder").inc()
        return ImageResult(image_id, image.content_type, PLACEHOLDER, None, True, None,
                           attempts, refused or [])

    # --- reporting -------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Return each configured provider with its model, breaker state and availability."""
        report = []
        for name in self.order:
            entry = {"name": name, **describe(self.providers[name]),
                     **self.breakers[name].snapshot()}
            entry["disabled"] = self.disabled.get(name)
            report.append(entry)
        report.append({"name": PLACEHOLDER, **describe(self.providers[PLACEHOLDER]),
                       "state": "closed", "disabled": None})
        return report


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def _stop_at(deadline: float, clock: Callable[[], float], retry_after_max: float):
    """Stop retrying when the next wait would pass the deadline or is longer than allowed."""

    def stop(retry_state: tenacity.RetryCallState) -> bool:
        wait = retry_state.upcoming_sleep
        return wait > retry_after_max or clock() + wait >= deadline

    return stop


def decode_b64(value: Any) -> bytes:
    """Decode a provider's base64 image; an undecodable one is a transient failure."""
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable("provider answered without image data")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderUnavailable("provider answered with undecodable base64") from None
