"""A per-provider circuit breaker: closed, open, half-open with a single trial.

Hand-written rather than pybreaker: pybreaker's ``call()`` holds its lock for
the whole protected call, which would serialise every image request of a
worker behind one slow provider, and its lock-free ``calling()`` path lets
several half-open trials through at once.  Here the lock guards only state
changes; calls run outside it.

State lives in the process: with several gunicorn workers, each worker opens
its own breaker after ``failure_threshold`` failures of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    """Decides whether a provider may be called, from the outcomes of earlier calls."""

    def __init__(self, name: str, failure_threshold: int, reset_seconds: float,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, str], None] | None = None):
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_until = 0.0
        self._trial_in_flight = False
        self._reason: str | None = None

    @property
    def state(self) -> str:
        """Return the current state, moving open to half-open once its time is up."""
        with self._lock:
            if self._state == OPEN and self._clock() >= self._opened_until:
                self._set(HALF_OPEN)
            return self._state

    def allow(self) -> bool:
        """Return True if a call may go ahead now; in half-open, only one trial may."""
        with self._lock:
            if self._state == OPEN and self._clock() >= self._opened_until:
                self._set(HALF_OPEN)
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        """Close the breaker and forget earlier failures."""
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            self._set(CLOSED)

    def record_failure(self, open_for: float | None = None, reason: str | None = None) -> bool:
        """Count a failure; open when the threshold is reached, or at once with ``open_for``.

        Returns True when this failure opened the breaker (it was not open
        already); ``reason`` is then reported by ``snapshot`` while it stays open.
        """
        with self._lock:
            self._failures += 1
            failed_trial = self._state == HALF_OPEN
            self._trial_in_flight = False
            if open_for is not None or failed_trial or self._failures >= self.failure_threshold:
                opened = self._state != OPEN
                self._opened_until = self._clock() + (open_for or self.reset_seconds)
                self._reason = reason
                self._set(OPEN)
                return opened
            return False

    def record_neutral(self) -> None:
        """End a call that says nothing about the provider's health (a content refusal)."""
        with self._lock:
            self._trial_in_flight = False

    def snapshot(self) -> dict[str, object]:
        """Return the state and failure count, for health reports."""
        state = self.state
        with self._lock:
            remaining = max(0.0, self._opened_until - self._clock()) if state == OPEN else 0.0
            return {"state": state, "failures": self._failures,
                    "retry_in_seconds": round(remaining, 1),
                    "opened_by": self._reason if state == OPEN else None}

    def _set(self, state: str) -> None:
        if state != self._state:
            previous, self._state = self._state, state
            if self._on_change is not None:
                self._on_change(previous, state)
