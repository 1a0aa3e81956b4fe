"""Log lines as one JSON object each, through structlog, for every logger in the process.

The code logs with the standard library (``logging.getLogger(__name__)``,
fields in ``extra=``); werkzeug, urllib3 and gunicorn do too.  One structlog
``ProcessorFormatter`` renders all of them: time, level, logger, event, the
fields, and the request context bound with ``bind`` (``request_id``,
``user_id``, ``session_id``).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

import structlog

HANDLER_NAME = "dungeon"
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime"}
_SECRETS: list[str] = []  # process-wide like the logging system it guards
# The request's log fields, one immutable mapping in one context variable.
# Not structlog.contextvars: it keeps a variable per field, and clearing them
# copies the whole context, twice a request on the hot path; one variable
# costs a set.  Work handed on with contextvars.copy_context() keeps it.
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "dungeon_log_context", default=MappingProxyType({}))


def bind(**fields: Any) -> None:
    """Add fields to every log line of the current request (and of work it hands on)."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


def new_context(**fields: Any) -> None:
    """Start a fresh log context: gthread workers reuse threads between requests."""
    _CONTEXT.set(fields)


def context() -> Mapping[str, Any]:
    """Return the fields bound to the current log context."""
    return _CONTEXT.get()


def _stamping_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap a LogRecord factory so each record carries the context it was logged in.

    Stamping at creation, not at formatting, keeps the right ids on records
    that are formatted later or on another thread.
    """

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record._log_context = _CONTEXT.get()
        return record

    factory.stamps_context = True  # type: ignore[attr-defined]
    return factory


def _mask_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace any known secret found in a value: the last guard if one slipped into text."""
    if not _SECRETS:
        return event
    for key, value in event.items():
        if isinstance(value, str):
            for secret in _SECRETS:
                value = value.replace(secret, "****")
            event[key] = value
    return event


def _record_fields(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Add a record's ``extra=`` fields, then the context it was logged in."""
    record = event.get("_record")
    if record is None:
        return event
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
            event.setdefault(key, value)
    for key, value in getattr(record, "_log_context", {}).items():
        event.setdefault(key, value)
    return event


def _pre_chain() -> list[Callable]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _record_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def make_formatter(style: str = "json") -> logging.Formatter:
    """Return the formatter for all log lines: ``json`` (one object a line) or ``console``."""
    renderer = (structlog.processors.JSONRenderer(default=str) if style == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _mask_secrets, renderer])


def configure(level: str = "INFO", secrets: Iterable[str] = (), style: str = "json") -> None:
    """Send every logger's output through one formatter to standard error (once per process)."""
    _SECRETS[:] = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
    current = logging.getLogRecordFactory()
    if not getattr(current, "stamps_context", False):
        logging.setLogRecordFactory(_stamping_factory(current))
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
    handler.setFormatter(make_formatter(style))


def gunicorn_logconfig(style: str = "json") -> Mapping[str, Any]:
    """Return gunicorn's ``logconfig_dict``: its error and access logs in the same format.

    The access log goes through ``AccessLogRedactor``, so no secret sent in
    a query string (or a header) reaches it.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"dungeon": {"()": make_formatter, "style": style}},
        "filters": {"redact": {"()": AccessLogRedactor}},
        "handlers": {HANDLER_NAME: {"class": "logging.StreamHandler", "formatter": "dungeon",
                                    "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": [HANDLER_NAME]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True,
                                "filters": ["redact"]},
        },
    }


# --- the access log ---------------------------------------------------------------
# gunicorn's access log line, one per request: the request line (%(r)s holds
# the query string, redacted below), status, bytes, milliseconds, request id.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Query parameters whose values are secrets (matched without regard to case),
# and any name ending in one of SECRET_SUFFIXES.
SECRET_PARAMETERS = frozenset({
    "token", "access_token", "refresh_token", "id_token", "code", "key", "api_key", "apikey",
    "password", "passwd", "secret", "client_secret", "signature", "sig", "auth",
    "authorization", "session", "jwt"})
SECRET_SUFFIXES = ("_token", "_key", "_secret", "password")
# Atoms of gunicorn's access log that hold a URL or a query, and headers never to show.
_URL_ATOMS = ("f", "{referer}i", "{raw_uri}e", "{request_uri}e")
_QUERY_ATOMS = ("q", "{query_string}e")
_SECRET_HEADERS = ("{authorization}i", "{cookie}i", "{proxy-authorization}i", "{x-api-key}i")
MASK = "****"


def secret_parameter(name: str) -> bool:
    """Return True if a query parameter of this name carries a secret."""
    name = unquote_plus(name).strip().lower()
    return name in SECRET_PARAMETERS or name.endswith(SECRET_SUFFIXES)


def redact_query(query: str) -> str:
    """Return ``query`` with the value of every secret parameter replaced by ``MASK``."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _value = part.partition("=")
        parts.append(f"{name}={MASK}" if equals and secret_parameter(name) else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """Return ``url`` (or a path) with its query's secret values replaced by ``MASK``."""
    path, question, query = url.partition("?")
    if not question:
        return url
    query, hash_, fragment = query.partition("#")
    return f"{path}?{redact_query(query)}{hash_}{fragment}"


def redact_request_line(line: str) -> str:
    """Return a request line (``GET /path?query HTTP/1.1``) with its query's secrets masked."""
    method, space, rest = line.partition(" ")
    target, space2, protocol = rest.rpartition(" ")
    if not space2:  # no protocol: the whole rest is the target
        target, protocol = rest, ""
    return f"{method}{space}{redact_url(target)}{space2}{protocol}"


class AccessLogRedactor(logging.Filter):
    """Masks secrets in gunicorn's access-log atoms before the line is formatted.

    gunicorn logs each request as ``access_log.info(format, atoms)``; the
    atoms (a dict) are rewritten in place: the request line, the query, the
    referrer and the raw URI lose their secret parameters' values, and the
    credential headers, should a format show them, are masked whole.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if not isinstance(atoms, dict):
            return True
        if isinstance(atoms.get("r"), str):
            atoms["r"] = redact_request_line(atoms["r"])
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_url(atoms[key])
        for key in _QUERY_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_query(atoms[key])
        for key in _SECRET_HEADERS:
            if key in atoms:
                atoms[key] = MASK
        return True
