"""Identity: guest tokens, signing out (one token or all), and device links.

``POST /api/auth/guest`` makes a user and gives its bearer token.
``POST /api/auth/logout`` ends the token it is sent with;
``POST /api/auth/logout-everywhere`` ends every token of its user.
``POST /api/auth/link`` gives a one-use code that ``POST /api/auth/link/redeem``,
on another device, exchanges for a token of the same user, so saved games
follow the player.  How revocation is checked: ``dungeon.users``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import request
from flask_openapi3 import APIBlueprint, Tag

from ..auth import bind_user, require_claims, require_user
from ..errors import TokenRevoked
from ..state import get_state
from .schemas import Guest, LinkCode, LinkedToken, Me, MeUpdate, RedeemLink, _iso
from .views import responses

bp = APIBlueprint("auth", __name__, url_prefix="/api/auth",
                  abp_tags=[Tag(name="auth", description="Guest identity, bearer tokens, "
                                                         "signing out and device links.")])
BEARER = [{"bearer": []}]


@bp.post("/guest", responses=responses({201: Guest}, 429))
def create_guest():
    """Make a new guest user and return a bearer token for it.

    Send the token as `Authorization: Bearer <token>` on every game route.
    Rate-limited per client address.
    """
    state = get_state()
    state.limiter.check("guests", request.remote_addr or "unknown")
    issued = state.signer.issue_guest()
    bind_user(issued["user_id"])
    state.users.create(issued["user_id"])
    state.users.issued(issued["user_id"], issued["token_id"], issued["generation"])
    return _token_answer(issued), 201


@bp.post("/logout", responses=responses({204: None}, 401, 503), security=BEARER)
def logout():
    """Sign out the token this request is sent with; every other token keeps working.

    Signing out a token that is already signed out answers 204 too, so a
    retry after a lost answer is safe.
    """
    state = get_state()
    claims = require_claims(state.signer, signed_out_too=True)
    if state.users.signed_out(claims) is None:
        state.users.sign_out(claims)
    return "", 204


@bp.post("/logout-everywhere", responses=responses({204: None}, 401, 503), security=BEARER)
def logout_everywhere():
    """Sign out every token of this user, on every device, this one included.

    Unused link codes end too.  Repeating it with a token that it already
    ended answers 204 and ends nothing more; a token signed out on its own
    cannot end the others (401).
    """
    state = get_state()
    claims = require_claims(state.signer, signed_out_too=True)
    ended = state.users.signed_out(claims)
    if ended == "token":
        raise TokenRevoked()
    if ended is None:
        state.users.sign_out_everywhere(claims)
    return "", 204


@bp.post("/link", responses=responses({201: LinkCode}, 401, 429, 503), security=BEARER)
def create_link():
    """Make a one-use code that signs another device in as this user (10 minutes).

    Type it on the other device into `POST /api/auth/link/redeem`.
    Rate-limited per user.
    """
    state = get_state()
    claims = require_claims(state.signer)
    state.limiter.check("links", claims.user_id)
    code, expires = state.users.make_link(claims)
    return {"code": code, "expires_at": _iso(expires)}, 201


@bp.post("/link/redeem", responses=responses({201: LinkedToken}, 400, 404, 422, 429, 503))
def redeem_link(body: RedeemLink):
    """Exchange a link code for a bearer token of the user who made it.

    A code works once, for 10 minutes.  A mistyped, used, expired or unknown
    code all answer the same 404 `link_code_invalid`.  Rate-limited per
    client address, right codes and wrong ones alike.
    """
    state = get_state()
    state.limiter.check("redeem", request.remote_addr or "unknown")
    user_id, generation = state.users.redeem(body.code)
    issued = state.signer.issue(user_id, generation)
    state.users.issued(user_id, issued["token_id"], generation)
    bind_user(user_id)
    return _token_answer(issued), 201


@bp.get("/me", responses=responses({200: Me}, 401, 503), security=BEARER)
def get_me():
    """Show the signed-in user and their safety level."""
    return _me(require_user(get_state().signer))


@bp.patch("/me", responses=responses({200: Me}, 400, 401, 422, 503), security=BEARER)
def update_me(body: MeUpdate):
    """Choose the safety level: what the story may hold, from strict to mature."""
    user_id = require_user(get_state().signer)
    get_state().users.set_safety_level(user_id, body.safety_level)
    return _me(user_id)


def _me(user_id: str) -> dict[str, Any]:
    state = get_state()
    chosen = state.users.safety_level(user_id)
    return {"user_id": user_id, "safety_level": chosen or state.config["SAFETY_LEVEL"],
            "safety_level_chosen": chosen is not None}


def _token_answer(issued: dict[str, Any]) -> dict[str, Any]:
    expires = datetime.fromtimestamp(issued["expires_at"], UTC)
    return {"token": issued["token"], "token_type": "Bearer", "user_id": issued["user_id"],
            "expires_at": _iso(expires)}
