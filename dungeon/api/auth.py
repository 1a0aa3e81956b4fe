"""Guest identity: ``POST /api/auth/guest`` makes a user and gives its bearer token."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import request
from flask_openapi3 import APIBlueprint, Tag

from ..state import get_state
from .schemas import Guest, _iso
from .views import responses

bp = APIBlueprint("auth", __name__, url_prefix="/api/auth",
                  abp_tags=[Tag(name="auth", description="Guest identity and bearer tokens.")])


@bp.post("/guest", responses=responses({201: Guest}, 429))
def create_guest():
    """Make a new guest user and return a bearer token for it.

    Send the token as `Authorization: Bearer <token>` on every game route.
    Rate-limited per client address.
    """
    get_state().limiter.check("guests", request.remote_addr or "unknown")
    issued = get_state().signer.issue_guest()
    expires = datetime.fromtimestamp(issued["expires_at"], UTC)
    return {**issued, "expires_at": _iso(expires), "token_type": "Bearer"}, 201
