"""Request ids: taken from the client's ``X-Request-ID`` when safe, made otherwise.

The WSGI edge (``dungeon/edge.py``) gives each request its id; the
application reads it with ``current``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from flask import has_request_context, request

HEADER = "X-Request-ID"
INCOMING = "HTTP_X_REQUEST_ID"  # the client's header, as WSGI names it
ENVIRON_KEY = "dungeon.request_id"  # where the edge keeps the request's id
_SAFE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def pick_request_id(incoming: str | None) -> str:
    """Return ``incoming`` if it is short and made of safe characters, else a new id."""
    if incoming and _SAFE.match(incoming):
        return incoming
    # 128 random bits, from the process's generator (reseeded in every forked
    # child): an id correlates log lines and is no secret (a client may pick
    # its own), and this costs no system call, as os.urandom does.
    return f"{random.getrandbits(128):032x}"


def assign(environ: dict[str, Any]) -> str:
    """Give the request of ``environ`` its id (the client's, if safe) and return it."""
    environ[ENVIRON_KEY] = request_id = pick_request_id(environ.get(INCOMING))
    return request_id


def current() -> str | None:
    """Return the id the edge gave the current request, or None outside a request."""
    return request.environ.get(ENVIRON_KEY) if has_request_context() else None
