"""Guest identity: signed bearer tokens (JWT, HS256) and the check every game route makes."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import jwt
from cachetools import TTLCache
from flask import g, request

from . import logs
from .errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)

USER_ID = re.compile(r"^u_[A-Za-z0-9_-]{22}$")
ALGORITHM = "HS256"
_DEV_KEY_BYTES = 32


class TokenSigner:
    """Issues and checks guest tokens with one signing key."""

    def __init__(self, config: Mapping[str, Any]):
        self.ttl = config["TOKEN_TTL_HOURS"] * 3600
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
        self._verified: TTLCache = TTLCache(maxsize=10000, ttl=60)
        self._verified_lock = threading.Lock()

    def issue_guest(self, now: float | None = None) -> dict[str, Any]:
        """Return a new guest user id, a token for it and the token's expiry (Unix seconds)."""
        now = time.time() if now is None else now
        user_id = "u_" + secrets.token_urlsafe(16)
        expires = int(now + self.ttl)
        claims = {"sub": user_id, "iat": int(now), "exp": expires, "typ": "guest"}
        return {"token": jwt.encode(claims, self._key, algorithm=ALGORITHM),
                "user_id": user_id, "expires_at": expires}

    def user_for(self, token: str, now: float | None = None) -> str:
        """Return the user id a valid token names, or raise Unauthorized."""
        now = time.time() if now is None else now
        with self._verified_lock:
            known = self._verified.get(token)
        if known is not None and known[1] > now:
            return known[0]
        user_id, expires = self._verify(token)
        if expires <= now:
            raise Unauthorized("The bearer token has expired.")
        with self._verified_lock:
            self._verified[token] = (user_id, expires)
        return user_id

    def _verify(self, token: str) -> tuple[str, float]:
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
        return user_id, float(claims["exp"])


def require_user(signer: TokenSigner) -> str:
    """Return the user id of the current request's bearer token, or raise Unauthorized."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="dungeon"'})
    g.user_id = signer.user_for(token.strip())
    logs.bind(user_id=g.user_id)
    return g.user_id
