"""Per-application state, kept in ``app.extensions["dungeon"]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pluggy
from flask import current_app

from .auth import TokenSigner
from .db import IndexSetup
from .game.engine import GameEngine
from .images.jobs import ImageJobs
from .images.service import ImageService
from .images.store import ImageStore
from .metrics import Metrics
from .moderation import TextModerator
from .ratelimit import RateLimiter
from .sessions.idempotency import IdempotencyStore
from .sessions.store import SessionStore
from .users import UserStore


@dataclass(frozen=True, kw_only=True)
class Dungeon:
    """Everything one application instance owns: plugins, providers, stores, services."""

    config: dict[str, Any]
    plugin_manager: pluggy.PluginManager
    providers: dict[str, Any]
    narrators: dict[str, Any]
    metrics: Metrics
    db: Any
    indexes: IndexSetup
    image_store: ImageStore
    images: ImageService
    sessions: SessionStore
    jobs: ImageJobs
    idempotency: IdempotencyStore
    game: GameEngine
    moderator: TextModerator
    rendered: Any  # dungeon.api.views.RenderedGames
    signer: TokenSigner
    limiter: RateLimiter
    users: UserStore


def get_state() -> Dungeon:
    """Return the state of the application serving the current request."""
    return current_app.extensions["dungeon"]
