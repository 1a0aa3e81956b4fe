"""Guest identity: signed bearer tokens (JWT, HS256) and the check every authenticated route makes.

A token names its user (``sub``), carries its own id (``jti``) and the
user's token generation when it was issued (``gen``).  Signing a token out
records its ``jti``; signing a user out everywhere raises the generation, so
every older token is refused.  Whether a token was signed out is asked of
``revocations`` (``dungeon.users.UserStore``) on every request, after the
signature: the signature cache below never makes a revoked token last longer.
Tokens issued before ``jti`` and ``gen`` existed count as generation 0, with
an id derived from the token itself, so they keep working and can be signed
out like any other.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cachetools import TTLCache
from flask import g, request

from . import logs, security
from .caching import lookup
from .errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)

USER_ID = re.compile(r"^u_[A-Za-z0-9_-]{22}$")
TOKEN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALGORITHM = "HS256"
_DEV_KEY_BYTES = 32
# A verified signature is remembered this long (never past the token's
# expiry).  It says nothing about revocation, which is checked every time.
VERIFIED_SECONDS = 60


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: whose it is, its id, its generation and its expiry."""

    user_id: str
    token_id: str
    generation: int
    expires: float  # Unix seconds


class Revocations(Protocol):
    """Says whether a verified token was signed out; raises Unauthorized if so."""

    def check(self, claims: TokenClaims) -> None: ...


class TokenSigner:
    """Issues and checks bearer tokens with one signing key."""

    def __init__(self, config: Mapping[str, Any], revocations: Revocations | None = None):
        self.ttl = config["TOKEN_TTL_HOURS"] * 3600
        self.revocations = revocations
        key = config["SECRET_KEY"]
        if not key:
            if config["ENV"] == "production":
                raise ConfigError("SECRET_KEY: required when ENV is production")
            # A random key per process: tokens do not survive a restart and are
            # not shared between workers, which is fine only for development.
            log.warning("DUNGEON_SECRET_KEY is unset: using a random development key; "
                        "tokens stop working on restart")
            key = secrets.token_urlsafe(_DEV_KEY_BYTES)
        elif len(key) < 32:
            raise ConfigError("SECRET_KEY: must be at least 32 characters")
        self._key = key
        # Verifying a signature costs more than the rest of a cached game
        # lookup; a verified token is remembered for a minute (never past its
        # expiry).  Only successes are kept, so a bad token is always checked.
        self._verified: TTLCache = TTLCache(maxsize=10000, ttl=VERIFIED_SECONDS)
        self._verified_lock = threading.Lock()

    def issue_guest(self, now: float | None = None) -> dict[str, Any]:
        """Return a new guest user id, a token for it and the token's expiry (Unix seconds)."""
        return self.issue("u_" + secrets.token_urlsafe(16), 0, now)

    def issue(self, user_id: str, generation: int, now: float | None = None) -> dict[str, Any]:
        """Return a new token of ``user_id`` at ``generation``, with its id and expiry."""
        now = time.time() if now is None else now
        expires = int(now + self.ttl)
        token_id = secrets.token_urlsafe(16)
        claims = {"sub": user_id, "iat": int(now), "exp": expires, "typ": "guest",
                  "jti": token_id, "gen": generation}
        return {"token": jwt.encode(claims, self._key, algorithm=ALGORITHM),
                "user_id": user_id, "token_id": token_id, "generation": generation,
                "expires_at": expires}

    def claims(self, token: str, now: float | None = None) -> TokenClaims:
        """Return what a validly signed, unexpired token says, or raise Unauthorized.

        Revocation is not looked at here: ``authenticate`` does both.
        """
        now = time.time() if now is None else now
        with self._verified_lock:
            known = lookup(self._verified, token)
        if known is not None and known.expires > now:
            return known
        claims = self._verify(token)
        if claims.expires <= now:
            raise Unauthorized("The bearer token has expired.")
        with self._verified_lock:
            self._verified[token] = claims
        return claims

    def authenticate(self, token: str, now: float | None = None) -> TokenClaims:
        """Return the claims of a valid token that was not signed out, or raise Unauthorized."""
        claims = self.claims(token, now)
        if self.revocations is not None:
            self.revocations.check(claims)
        return claims

    def user_for(self, token: str, now: float | None = None) -> str:
        """Return the user id a validly signed, unexpired token names, or raise Unauthorized."""
        return self.claims(token, now).user_id

    def _verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                options={"require": ["sub", "exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired.") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The bearer token is not valid.") from None
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not USER_ID.match(user_id):
            raise Unauthorized("The bearer token is not valid.")
        generation = claims.get("gen", 0)  # tokens from before generations: 0
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise Unauthorized("The bearer token is not valid.")
        token_id = claims.get("jti")
        if token_id is None:  # a token from before token ids: named by its own digest
            token_id = "h_" + hashlib.sha256(token.encode()).hexdigest()[:32]
        elif not isinstance(token_id, str) or not TOKEN_ID.match(token_id):
            raise Unauthorized("The bearer token is not valid.")
        return TokenClaims(user_id, token_id, generation, float(claims["exp"]))


def bearer_token() -> str:
    """Return the current request's bearer token, or raise Unauthorized."""
    # From the WSGI environ: werkzeug's header lookup costs more than the rest.
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="dungeon"'})
    return token.strip()


def require_claims(signer: TokenSigner, *, signed_out_too: bool = False) -> TokenClaims:
    """Return the claims of the current request's token; bind its user to the request.

    ``signed_out_too`` accepts a token that was signed out (what signing out
    again needs, so that a retried sign-out answers like the first).
    """
    token = bearer_token()
    claims = signer.claims(token) if signed_out_too else signer.authenticate(token)
    bind_user(claims.user_id)
    return claims


def bind_user(user_id: str) -> None:
    """Make ``user_id`` the current request's user: in ``g``, in the log, and for caches.

    The answer is that user's own from now on, so it gets ``no-store``.
    """
    g.user_id = user_id
    logs.bind(user_id=user_id)
    security.mark_private(request.environ)


def require_user(signer: TokenSigner) -> str:
    """Return the user id of the current request's bearer token, or raise Unauthorized."""
    return require_claims(signer).user_id
