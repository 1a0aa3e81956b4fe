"""Headers every answer carries, so a browser treats the API's answers as data and nothing more.

A route that sets one of these headers itself keeps its own: the web client
(``dungeon/api/client.py``), the API reference (``/api/docs``) and images
(``dungeon/api/images.py``) have policies of their own.  They are added to
every answer at the WSGI edge (``dungeon/edge.py``), errors included.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

# JSON (and any other answer that is no page) loads nothing, runs nothing and
# is framed by nobody.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
# A page without a policy of its own: flask-openapi3's index (/api/) and its
# Redoc page (/api/redoc), which run inline scripts; /api/docs is the strict
# one.  Nothing they do is refused, but no one frames them, no plugin runs and
# no form or base URL points elsewhere.
PAGE_POLICY = "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# What each kind of answer gets, as (lower-case name, name, value).
_FOR_DATA = tuple((name.lower(), name, value) for name, value in
                  {**HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}.items())
_FOR_PAGES = tuple((name.lower(), name, value) for name, value in
                   {**HEADERS, "Content-Security-Policy": PAGE_POLICY}.items())
# Set in a request's WSGI environ once its answer belongs to a user.
_PRIVATE = "dungeon.private_answer"


def mark_private(environ: MutableMapping[str, Any]) -> None:
    """Say that the answer to this request is a user's own (a game, a new token)."""
    environ[_PRIVATE] = True


def add_headers(headers: list[tuple[str, str]], environ: MutableMapping[str, Any]) -> set[str]:
    """Add to a WSGI header list the safety headers it lacks; ``no-store`` on a user's own JSON.

    Returns the lower-case names the list had before, so a caller adding
    headers of its own need not walk it again.
    """
    present, content_type = set(), ""
    for name, value in headers:  # one pass: the names the route set, and its type
        key = name.lower()
        present.add(key)
        if key == "content-type":
            content_type = value
    mimetype = content_type.partition(";")[0].strip().lower()
    for key, name, value in _FOR_PAGES if mimetype == "text/html" else _FOR_DATA:
        if key not in present:
            headers.append((name, value))
    # An answer for a token's user must stay out of shared and browser caches alike.
    if "cache-control" not in present and mimetype == "application/json" and \
            environ.get(_PRIVATE):
        headers.append(("Cache-Control", "no-store"))
    return present
