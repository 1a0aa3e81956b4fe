"""The WSGI edge: what every request and every answer gets, whatever route answered.

One wrapper around the Flask application owns a request's start and end:

1. the request gets its id (``dungeon.requestid``) and a fresh log context
   carrying it, so every log line of the request names it;
2. the answer gets the safety headers (``dungeon.security``) and the id;
3. the request is counted, with its duration, by method, route rule and
   status (``dungeon.metrics``);
4. the log context is dropped, since gthread workers reuse their threads.

Why here and not as Flask hooks: each hook costs Flask's dispatch, and each
header lookup on a werkzeug response walks its header list; on a cached
game load the hooks cost more than the load itself (``benchmarks/sessions.py``).
At the edge the headers are a plain list and the id a dict entry.  It also
reaches answers no hook sees, such as one made after a hook failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import logs, requestid, security
from .metrics import Metrics

log = logging.getLogger(__name__)
_ID_KEY = requestid.HEADER.lower()
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Edge:
    """Wraps a WSGI application (the Flask app's ``wsgi_app``) with the steps above."""

    def __init__(self, app: WSGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        """Serve one request through the wrapped application."""
        started = time.perf_counter()
        request_id = requestid.assign(environ)
        logs.new_context(request_id=request_id)

        def respond(status: str, headers: list[tuple[str, str]], exc_info=None):
            if _ID_KEY not in security.add_headers(headers, environ):
                headers.append((requestid.HEADER, request_id))
            try:
                self.metrics.record_request(environ.get("REQUEST_METHOD", ""), _route(environ),
                                            int(status[:3]), time.perf_counter() - started)
            except Exception:  # a count is never worth an answer
                log.exception("request not counted")
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, respond)
        finally:
            logs.new_context()


def _route(environ: dict[str, Any]) -> str:
    """Return the route rule the request matched, or ``unmatched``.

    Flask's request object, which holds the matched rule, is in the environ
    under ``werkzeug.request`` (werkzeug's ``populate_request``).
    """
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    return rule.rule if rule is not None else "unmatched"
