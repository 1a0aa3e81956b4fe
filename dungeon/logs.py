"""Log lines as one JSON object each, carrying the request id of the request that wrote them."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_HANDLER_NAME = "dungeon-json"


def _stamping_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap a LogRecord factory so every record carries the current request id."""

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    return factory


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, event and its fields.

    Known secret values are masked in the finished line, a last guard for a
    secret that reached a message through some library's exception text.
    """

    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items()
                      if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, default=str)
        for secret in self.secrets:
            line = line.replace(secret, "****")
        return line


def configure(level: str = "INFO", secrets: tuple[str, ...] = ()) -> None:
    """Send the root logger's output, as JSON lines, to standard error (once per process)."""
    # A record factory rather than a handler filter: the id is taken when the
    # line is logged, in the request's context, whatever handler writes it.
    current = logging.getLogRecordFactory()
    if not getattr(current, "stamps_request_id", False):
        logging.setLogRecordFactory(_stamping_factory(current))
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter(secrets))
