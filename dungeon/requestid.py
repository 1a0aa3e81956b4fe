"""Request ids: taken from the client's ``X-Request-ID`` when safe, made otherwise."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

from . import logs

HEADER = "X-Request-ID"
_SAFE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def pick_request_id(incoming: str | None) -> str:
    """Return ``incoming`` if it is short and made of safe characters, else a new id."""
    if incoming and _SAFE.match(incoming):
        return incoming
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    """Give every request an id, put it in the log context and echo it on the response."""

    @app.before_request
    def assign_request_id():
        g.request_id = pick_request_id(request.headers.get(HEADER))
        logs.new_context(request_id=g.request_id)

    @app.teardown_request
    def end_log_context(_exc=None):
        logs.new_context()

    @app.after_request
    def echo_request_id(response):
        if "request_id" not in g:  # an error raised before before_request ran
            g.request_id = pick_request_id(request.headers.get(HEADER))
        response.headers[HEADER] = g.request_id
        return response
