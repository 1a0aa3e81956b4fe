"""Validation of JSON request bodies and query values: types, lengths, choices, no stray fields."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from flask import request

from .errors import BadRequest, ValidationFailed


@dataclass(frozen=True)
class Text:
    """A text field: required or optional, with a length range and optional choices."""

    required: bool = True
    max_length: int = 200
    min_length: int = 1
    choices: Collection[str] | None = None
    multiline: bool = False

    def check(self, value: Any) -> str | None:
        """Return the reason ``value`` is not acceptable, or None."""
        if not isinstance(value, str):
            return "must be a string"
        if has_control_characters(value, allow_newlines=self.multiline):
            return "must not contain control characters"
        length = len(value.strip())
        if length < self.min_length:
            return "must not be empty"
        if len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        if self.choices is not None and value not in self.choices:
            return f"must be one of: {', '.join(sorted(self.choices))}"
        return None


def has_control_characters(value: str, allow_newlines: bool = False) -> bool:
    """Return True if ``value`` holds control, invisible formatting or lone surrogate characters.

    Lone surrogates (category Cs) arrive through JSON escapes like ``\\ud800``
    and cannot be stored: they are refused here rather than failing a write.
    """
    allowed = "\n\t" if allow_newlines else ""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") and ch not in allowed
               for ch in value)


def json_body(schema: Mapping[str, Text]) -> dict[str, Any]:
    """Return the request's JSON object checked against ``schema``, or raise with field details."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # "[[[[..." nested past the parser's depth
        body = None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object (Content-Type: application/json).")
    errors = {name: "unknown field" for name in body if name not in schema}
    for name, field in schema.items():
        if name not in body or body[name] is None:
            if field.required:
                errors[name] = "is required"
            continue
        reason = field.check(body[name])
        if reason:
            errors[name] = reason
    if errors:
        raise ValidationFailed(details={"fields": errors})
    return {name: body[name].strip() for name in schema if body.get(name) is not None}


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    """Return the integer query parameter ``name`` within bounds, or raise with details."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or not minimum <= int(raw) <= maximum:
        raise ValidationFailed(
            details={"fields": {name: f"must be a whole number from {minimum} to {maximum}"}})
    return int(raw)
