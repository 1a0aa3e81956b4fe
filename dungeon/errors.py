"""The one error hierarchy of the service and the one place that maps errors to HTTP.

Every 4xx and 5xx the service answers has the shape::

    {"error": {"code": "<snake_case>", "message": "<for a human>", "details": ...},
     "request_id": "<id>"}

``details`` appears only where it helps (field errors, for instance).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from werkzeug.exceptions import HTTPException

from . import requestid

log = logging.getLogger(__name__)


class NotCommitted(Exception):
    """Mixin: raised by a write path that knows for certain it saved nothing.

    Only these errors let a caller undo what it prepared for the write (an
    image slot) or forget an ``Idempotency-Key``; after any other failure the
    write may have been applied, and the service acts as if it had been.
    """


class DungeonError(Exception):
    """Root of every error the service raises on purpose.

    Subclasses set ``status``, ``code`` and a default ``message`` as class
    attributes, so most of them are one declarative line.
    """

    status = 500
    code = "internal_error"
    message = "The server could not complete the request."

    def __init__(self, message: str | None = None, *, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}


class ConfigError(DungeonError):
    """The configuration is invalid; the application refuses to start."""

    code = "invalid_configuration"


class BadRequest(DungeonError):
    """400: the request is malformed (a body that is not a JSON object, say)."""

    status = 400
    code = "bad_request"
    message = "The request could not be understood."


class ValidationFailed(DungeonError):
    """422: the body or query parsed but breaks the rules; ``details`` names each field."""

    status = 422
    code = "validation_failed"
    message = "The request body is not valid."


class Unauthorized(DungeonError):
    """401: no bearer token, or one that is invalid or expired."""

    status = 401
    code = "unauthorized"
    message = "A valid bearer token is required."


class NotFound(DungeonError):
    """404: nothing at this address."""

    status = 404
    code = "not_found"
    message = "Nothing is here."


class TokenRevoked(Unauthorized):
    """401: the bearer token is valid but was signed out (``logout`` or ``logout-everywhere``)."""

    message = "The bearer token was signed out; get a new one."


class LinkCodeInvalid(NotFound):
    """404: no live link code matches: mistyped, expired, used, or never made (one answer)."""

    code = "link_code_invalid"
    message = ("This link code is not valid: it may be mistyped, used or expired. Make a new "
               "one on the signed-in device.")


class ImageNotFound(NotFound):
    """404: no image, stored or on its way, has this id."""

    code = "image_not_found"
    message = "No image has this id."


class Conflict(DungeonError):
    """409: the request conflicts with the current state."""

    status = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class ServiceUnavailable(DungeonError):
    """503: a dependency failed; retrying later may succeed."""

    status = 503
    code = "service_unavailable"
    message = "A dependency is unavailable; try again shortly."


class SessionNotFound(NotFound):
    """404 for a game that does not exist, expired, or belongs to someone else."""

    code = "session_not_found"
    message = "No game with this id."


class SessionConflict(Conflict, NotCommitted):
    """409: a newer turn was saved by another request; nothing was written."""

    code = "session_conflict"
    message = "The game changed while this request ran; load it again and retry."


class ImageReplaced(Conflict, NotCommitted):
    """409: the turn's image changed (or the turn is gone) while a new one was asked for."""

    code = "image_conflict"
    message = "This turn's image changed meanwhile; load the game again."


class IdempotencyConflict(Conflict):
    """409: the Idempotency-Key is in use by a running or a different request."""

    code = "idempotency_conflict"
    message = "A request with this Idempotency-Key is still running or had another body."


class StoreUnavailable(ServiceUnavailable):
    """503: MongoDB could not be reached or could not confirm a write.

    The message never claims that nothing changed: a write whose answer was
    lost may have been applied.  A retry with the same ``Idempotency-Key`` is
    applied at most once, whichever it was.
    """

    code = "store_unavailable"
    message = ("Saved games are unreachable for a moment. Try again; a retry with the same "
               "Idempotency-Key is applied at most once.")
    retry_after = 2

    def __init__(self, message: str | None = None, *, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, details=details,
                         headers={"Retry-After": str(self.retry_after), **(headers or {})})


class NothingSaved(StoreUnavailable, NotCommitted):
    """503: a write failed with an error that proves it was not applied (refused, never sent)."""

    message = "Saved games are unreachable for a moment; nothing was saved. Try again."


class OutcomeUnknown(StoreUnavailable):
    """503: a write may or may not have been applied, and no read could tell which."""

    message = ("Saved games could not confirm this change. Retry with the same "
               "Idempotency-Key: the change is then applied exactly once.")


class ImagesBusy(ServiceUnavailable):
    """503: this process runs as many image requests as it may; retry after a moment."""

    code = "images_busy"
    message = "Too many pictures are being made right now; try again in a few seconds."

    def __init__(self, message: str | None = None, **kwargs: Any):
        super().__init__(message, headers={"Retry-After": "5"}, **kwargs)


class TextRefused(DungeonError):
    """422: the player's text holds what their safety level refuses; ``details`` names it."""

    status = 422
    code = "content_refused"
    message = "This text cannot be used in the story; nothing was saved. Try other words."


class ModerationUnavailable(ServiceUnavailable):
    """503: the text could not be checked, so it was not used; retrying may succeed."""

    code = "moderation_unavailable"
    message = "Your text could not be checked just now; nothing was saved. Try again shortly."

    def __init__(self, message: str | None = None, **kwargs: Any):
        super().__init__(message, headers={"Retry-After": "5"}, **kwargs)


class StoredDataUnreadable(ServiceUnavailable):
    """503: a stored text cannot be decrypted with ENCRYPTION_KEYS (an operator must act)."""

    code = "stored_data_unreadable"
    message = "This saved game cannot be read right now."


class NarratorUnavailable(ServiceUnavailable):
    """503: the narrator failed; the turn was not saved."""

    code = "narrator_unavailable"
    message = "The narrator is unavailable; nothing was saved. Try the action again."


class NarratorBusy(NarratorUnavailable):
    """503: this process narrates as many turns as it may at once; nothing was saved."""

    code = "narrator_busy"
    message = "The narrator is busy with other stories; nothing was saved. Try again shortly."

    def __init__(self, message: str | None = None, **kwargs: Any):
        super().__init__(message, headers={"Retry-After": "5"}, **kwargs)


def known_not_committed(exc: BaseException) -> bool:
    """Return True if ``exc`` proves that the write it interrupted saved nothing.

    A refusal (4xx) and a narrator failure come before anything is written;
    every other error, a MongoDB error above all, may follow an applied write.
    """
    if isinstance(exc, NotCommitted):
        return True
    return isinstance(exc, DungeonError) and (exc.status < 500 or
                                              isinstance(exc, NarratorUnavailable))


class TooManyRequests(DungeonError):
    """429: a per-user request limit was reached; ``Retry-After`` says when to retry."""

    status = 429
    code = "rate_limited"
    message = "Too many requests; slow down and retry later."


class UnknownPlugin(ConfigError):
    """A plugin or provider named in the configuration does not exist."""


class DuplicateName(ConfigError):
    """Two plugins registered the same provider or narrator name."""


# --- Provider errors -------------------------------------------------------
# Raised by image providers and read by the image service: they never reach a
# client as such, because a failed provider hands over to the next one.


class ProviderError(DungeonError):
    """An image provider could not produce an image.

    ``outcome`` labels the attempt in logs and metrics; ``retryable`` says
    whether the service may call the same provider again; ``counts_as_failure``
    says whether the provider's circuit breaker should count it.
    """

    status = 502
    code = "provider_error"
    outcome = "error"
    retryable = False
    counts_as_failure = True

    def __init__(self, message: str | None = None, *, http_status: int | None = None,
                 error_type: str | None = None, error_code: str | None = None,
                 param: str | None = None, provider_request_id: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.error_type = error_type
        self.error_code = error_code
        self.param = param
        self.provider_request_id = provider_request_id
        self.retry_after = retry_after

    def log_fields(self) -> dict[str, Any]:
        """Return what an operator needs to understand this failure."""
        return {
            "outcome": self.outcome, "status": self.http_status, "error_type": self.error_type,
            "error_code": self.error_code, "param": self.param,
            "error_message": self.message, "provider_request_id": self.provider_request_id,
        }


class ContentRefused(ProviderError):
    """The provider's safety system refused the prompt or the image."""

    outcome = "content_refused"
    counts_as_failure = False


class InvalidProviderRequest(ProviderError):
    """The provider rejected a parameter: a defect in how we build the request."""

    outcome = "invalid_request"


class ProviderAuthError(ProviderError):
    """Bad key, missing permission, unverified organization or exhausted quota."""

    outcome = "auth_error"


class ModelGone(ProviderError):
    """The model no longer exists; the provider is disabled for this process."""

    outcome = "model_gone"


class ProviderNotConfigured(ProviderError):
    """The provider lacks what it needs (an API key, say); skipped at no cost."""

    outcome = "not_configured"
    counts_as_failure = False


class RateLimited(ProviderError):
    """The provider asked us to slow down; retry after ``retry_after`` seconds."""

    outcome = "rate_limited"
    retryable = True


class ProviderUnavailable(ProviderError):
    """A transient failure: 5xx, timeout, broken connection or an unusable answer."""

    outcome = "transient"
    retryable = True


class PromptRefused(DungeonError):
    """Our own prompt checks refused the prompt before any provider call."""

    status = 422
    code = "prompt_refused"
    message = "The image prompt was refused."

    def __init__(self, reasons: list[str]):
        super().__init__(f"prompt refused: {', '.join(reasons)}")
        self.reasons = reasons


# --- HTTP mapping ------------------------------------------------------------


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the one JSON error shape, with the current request's id."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error, "request_id": requestid.current()}


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def handle_dungeon_error(exc: DungeonError):
    """Turn a DungeonError into its JSON response."""
    if exc.status >= 500:
        log.error("request failed: %s", exc.message)
    response = jsonify(error_body(exc.code, exc.message, exc.details))
    response.headers.update(exc.headers)
    return response, exc.status


def handle_http_exception(exc: HTTPException):
    """Turn werkzeug's 404/405/413/500... into the JSON error shape.

    Flask routes an unhandled exception here as an InternalServerError whose
    ``original_exception`` is the real error: it is logged with its traceback
    and the client sees a generic message, never the traceback.
    """
    original = getattr(exc, "original_exception", None)
    if original is not None:
        log.error("unhandled error", exc_info=original)
        message = DungeonError.message
    else:
        message = exc.description or exc.name
    response = jsonify(error_body(_snake(exc.name), message))
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, exc.code or 500


def handle_store_error(exc: PyMongoError):
    """Any MongoDB error that reached a route: 503 ``store_unavailable``, never a crash.

    Connection failures, write-concern timeouts, elections, write conflicts,
    interrupted or timed-out operations all mean "retry shortly"; a write
    whose confirmation was lost may still have been applied, so the client
    retries with the same Idempotency-Key and gets one result either way.
    """
    log.error("store error: %s", type(exc).__name__, extra=store_error_fields(exc))
    return handle_dungeon_error(StoreUnavailable())


def store_error_fields(exc: BaseException) -> dict[str, Any]:
    """Return the log fields that identify a MongoDB error: type, code and server message."""
    fields: dict[str, Any] = {"error_type": type(exc).__name__}
    code = getattr(exc, "code", None)
    if code is not None:
        fields["error_code"] = code
    details = getattr(exc, "details", None) or {}
    message = details.get("errmsg") if isinstance(details, dict) else None
    fields["error_message"] = str(message or exc)[:300]
    return fields


# Where a request model's values come from, by the model's name.
_LOCATIONS = {"GamePath": "path", "TurnPath": "path", "ImagePath": "path",
              "Waiting": "query", "GameList": "query", "TurnList": "query",
              "IdempotencyHeader": "header"}


def validation_error_response(exc: ValidationError) -> Response:
    """Turn pydantic's verdict on a request into the one error shape (422, or 400).

    The models in ``dungeon.api.schemas`` validate every request; this names
    each bad field (body), query parameter or header with its reason.  A
    body that is not a JSON object at all is a 400.
    """
    location = _LOCATIONS.get(exc.title, "body")
    if location == "body" and not isinstance(_json_or_none(), dict):
        error: DungeonError = BadRequest(
            "The body must be a JSON object (Content-Type: application/json).")
    else:
        fields = dict(_field_and_reason(e, location) for e in exc.errors())
        names = ", ".join(fields)
        message = {"body": "The request body is not valid.",
                   "query": f"The query parameter {names} is not valid.",
                   "path": "The address names nothing valid.",
                   "header": f"The header {names} is not valid."}[location]
        error = ValidationFailed(message, details={"fields": fields})
    response = jsonify(error_body(error.code, error.message, error.details))
    response.status_code = error.status
    return response


def _json_or_none() -> Any:
    from flask import request

    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _field_and_reason(error: Mapping[str, Any], location: str) -> tuple[str, str]:
    reason = _reason(error)
    # A rule across fields (a model validator) names its field: "action: is required".
    named = re.fullmatch(r"(\w+): (.+)", reason) if not error.get("loc") else None
    if named:
        return named.group(1), named.group(2)
    return _field_name(error, location), reason


def _field_name(error: Mapping[str, Any], location: str) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "extra_forbidden" or location != "body":
        return ".".join(loc) or location
    return ".".join(loc) or "body"


def _reason(error: Mapping[str, Any]) -> str:
    """Return a person's reason for one pydantic error."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return "must be one of: " + ", ".join(sorted(choices))
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_type":
        return "must be a string"
    if kind == "value_error":
        return str(ctx.get("error", error.get("msg", "is not valid")))
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind == "string_pattern_mismatch":
        return "has characters or a length that are not allowed"
    return str(error.get("msg", "is not valid"))


def handle_too_deep(_exc: RecursionError):
    """A body nested past what the parser can follow: the client's fault, a 400."""
    return handle_dungeon_error(BadRequest("The body is nested too deeply."))


def init_app(app: Flask) -> None:
    """Register the JSON error handlers on ``app``."""
    app.register_error_handler(DungeonError, handle_dungeon_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(PyMongoError, handle_store_error)
    app.register_error_handler(RecursionError, handle_too_deep)
