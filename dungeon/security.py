"""Headers every answer carries, so a browser treats the API's answers as data and nothing more.

A route that sets one of these headers itself keeps its own: the web client
(``dungeon/api/client.py``), the API reference (``/api/docs``) and images
(``dungeon/api/images.py``) have policies of their own.
"""

from __future__ import annotations

from flask import Flask, Response, g

# JSON (and any other answer that is no page) loads nothing, runs nothing and
# is framed by nobody.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
# A page without a policy of its own: flask-openapi3's index (/api/) and its
# Redoc page (/api/redoc), which run inline scripts; /api/docs is the strict
# one.  Nothing they do is refused, but no one frames them, no plugin runs and
# no form or base URL points elsewhere.
PAGE_POLICY = "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def add_headers(response: Response) -> Response:
    """Add the safety headers a route did not set; ``no-store`` on a user's own JSON."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY
                                if response.mimetype == "text/html" else CONTENT_SECURITY_POLICY)
    # An answer for a token's user (a game, a new token) must stay out of
    # shared and browser caches alike.
    if g.get("user_id") and response.mimetype == "application/json":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every answer of ``app``, after each blueprint's own."""
    app.after_request(add_headers)
