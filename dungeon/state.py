"""Per-application state, kept in ``app.extensions["dungeon"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy
from flask import current_app

from .auth import TokenSigner
from .db import IndexSetup
from .game.engine import GameEngine
from .game.images import ImageJobs
from .images.service import ImageService
from .images.store import ImageStore
from .metrics import Metrics
from .ratelimit import RateLimiter
from .sessions.idempotency import IdempotencyStore
from .sessions.store import SessionStore


@dataclass
class Dungeon:
    """Everything one application instance owns: plugins, providers, store, services."""

    config: dict[str, Any]
    plugin_manager: pluggy.PluginManager
    providers: dict[str, Any]
    metrics: Metrics
    db: Any
    image_store: ImageStore
    images: ImageService
    sessions: SessionStore
    jobs: ImageJobs
    game: GameEngine
    idempotency: IdempotencyStore
    signer: TokenSigner
    limiter: RateLimiter
    indexes: IndexSetup
    narrators: dict[str, Any] = field(default_factory=dict)


def get_state() -> Dungeon:
    """Return the state of the application serving the current request."""
    return current_app.extensions["dungeon"]
