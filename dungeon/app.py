"""The application factory."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import date
from types import MappingProxyType
from typing import Any

from flask import Flask
from flask_cors import CORS
from flask_openapi3 import OpenAPI
from pymongo.read_preferences import ReadPreference
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api, db, errors, logs, metrics, settings
from .api.views import RenderedGames
from .auth import TokenSigner
from .edge import Edge
from .errors import ConfigError, UnknownPlugin
from .game.engine import GameEngine
from .images.jobs import ImageJobs, turn_image
from .images.service import PLACEHOLDER, ImageService
from .images.store import GridFSImageStore
from .moderation import TextModerator
from .plugins import collect, make_plugin_manager
from .ratelimit import RateLimiter
from .sessions.cards import CardStore
from .sessions.changes import LOCAL, VERSION, WATCH, ChangeFeed, Coherence
from .sessions.crypto import FieldCipher, Keyring
from .sessions.idempotency import IdempotencyStore
from .sessions.store import SessionStore, write_concern
from .state import Dungeon
from .users import UserStore

log = logging.getLogger(__name__)
_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$")


def create_app(config: Mapping[str, Any] | None = None, plugins: Iterable[object] = (),
               *, mongo_client: Any = None, image_options: Mapping[str, Any] | None = None,
               store_options: Mapping[str, Any] | None = None,
               jobs_options: Mapping[str, Any] | None = None,
               auth_options: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the dungeon service.

    Configuration comes from the defaults, then ``DUNGEON_*`` environment
    variables (and unprefixed ``OPENAI_API_KEY``/``OPENAI_BASE_URL``), then
    ``config``.  ``plugins`` are extra plugin objects to register (tests use
    them); ``mongo_client`` replaces the configured store with a client that
    speaks pymongo's API; ``image_options`` go to the image service (an
    injected ``sleep`` or ``clock``, say) and ``store_options`` to the session
    store (``now``, the cache's ``timer``), ``jobs_options`` to the turn
    images' background jobs (an ``executor``), ``auth_options`` to the user
    store (``now``, its caches' ``timer``).  Invalid configuration raises
    ConfigError and no application is made.
    """
    app = OpenAPI(__name__, **api.openapi_options())
    app.config.update(load_config(app, config))
    logs.configure(app.config["LOG_LEVEL"], secrets=_secrets(app.config),
                   style=app.config["LOG_FORMAT"])
    _warn_unknown_variables(os.environ)
    if app.config["CORS_ORIGINS"]:
        CORS(app, resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
             allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID",
                            "If-None-Match"],
             expose_headers=["X-Request-ID", "Retry-After", "ETag", "Location",
                             "Idempotent-Replayed"], max_age=600)
    errors.init_app(app)
    app.extensions["dungeon"] = _build_state(app, plugins, mongo_client, image_options or {},
                                             store_options or {}, jobs_options or {},
                                             auth_options or {})
    api.init_app(app)
    # Request ids, safety headers and request metrics, for every answer.
    app.wsgi_app = Edge(app.wsgi_app, app.extensions["dungeon"].metrics)
    if app.config["PROXY_HOPS"]:
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    return app


def load_config(app: Flask, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the validated configuration: defaults, then environment, then ``overrides``."""
    app.config.from_mapping(settings.defaults())
    for name in settings.UNPREFIXED:
        if os.environ.get(name):
            app.config[name] = os.environ[name]
    app.config.from_prefixed_env("DUNGEON")
    app.config.update(overrides or {})
    validated = settings.validate(app.config)
    _check_production(validated)
    return validated


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    for name, close in settings.unknown_variables(environ):
        if close:
            log.warning("%s is not a setting; did you mean %s? It is ignored.", name, close)
        else:
            log.info("%s is not a setting of the core; left to plugins", name)


def _check_production(config: Mapping[str, Any],
                      environ: Mapping[str, str] | None = None) -> None:
    if config["ENV"] == "production":
        problems = production_problems(config, os.environ if environ is None else environ)
        if len(problems) == 1:
            raise ConfigError(problems[0])
        if problems:
            raise ConfigError("ENV is production and these settings are not fit for it:\n"
                              + "\n".join(f"- {problem}" for problem in problems))
        if config["ALLOW_PLAINTEXT"] and not config["ENCRYPTION_KEYS"]:
            log.warning("ALLOW_PLAINTEXT is true: saved games are stored unencrypted")
    if config["NARRATOR"] is not None and not config["NARRATOR"].strip():
        raise ConfigError("NARRATOR: must name a narrator (openai or local) or be unset")


def production_problems(config: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Return what makes ``config`` unfit for production, each naming the setting to fix."""
    problems = []
    if not config["SECRET_KEY"]:
        problems.append("SECRET_KEY: required when ENV is production; without it each process "
                        "signs with its own development key, and tokens stop working on "
                        "restart and on the other workers")
    if not config["MONGO_URI"]:
        problems.append("MONGO_URI: required when ENV is production; the embedded store "
                        "loses every saved game on restart")
    workers = serving_workers(config, environ)
    if config["RATE_LIMIT_STORAGE"].startswith("memory://") and workers > 1:
        problems.append(f"RATE_LIMIT_STORAGE: memory:// counts in each of the {workers} "
                        f"workers (DUNGEON_WORKERS) on its own, so every limit lets {workers} "
                        "times as much through; set a mongodb:// URI (or DUNGEON_WORKERS=1)")
    if not config["ENCRYPTION_KEYS"] and not config["ALLOW_PLAINTEXT"]:
        problems.append("ENCRYPTION_KEYS: required when ENV is production, to encrypt saved "
                        "games; set DUNGEON_ALLOW_PLAINTEXT=true to run without on purpose")
    return problems


def serving_workers(config: Mapping[str, Any], environ: Mapping[str, str]) -> int:
    """Return how many worker processes gunicorn_conf.py starts, by its own rules.

    ``DUNGEON_WORKERS``, 2 by default with MongoDB; always 1 on the embedded
    store.  A ``--workers`` given to gunicorn on its command line is not seen.
    """
    if not config["MONGO_URI"]:
        return 1
    value = environ.get("DUNGEON_WORKERS", "2").strip()
    if not value.isdigit():
        raise ConfigError(f"DUNGEON_WORKERS: must be a whole number, got {value!r}")
    return int(value)


def _secrets(config: Mapping[str, Any]) -> tuple[str, ...]:
    # Known secrets, and the keys and tokens of plugins' own settings.
    known = [str(config[s.name]) for s in settings.SETTINGS if s.secret and config[s.name]]
    known += [key.strip() for key in (config["ENCRYPTION_KEYS"] or "").split(",")]  # each key
    plugin = [value for name, value in config.items()
              if isinstance(value, str) and _SECRET_NAME.search(name)]
    return tuple(known + plugin)


def _build_state(app: Flask, plugins: Iterable[object], mongo_client: Any,
                 image_options: Mapping[str, Any], store_options: Mapping[str, Any],
                 jobs_options: Mapping[str, Any], auth_options: Mapping[str, Any]) -> Dungeon:
    config = {name: app.config[name] for name in settings.SETTINGS_BY_NAME}
    pm = make_plugin_manager(config, plugins)
    # Plugins see the whole configuration: their own settings arrive as
    # DUNGEON_<NAME> variables that the core does not know about.
    plugin_config = MappingProxyType(dict(app.config))
    providers = collect(pm, "register_image_providers", plugin_config, "image provider")
    _check_provider_order(config["IMAGE_PROVIDERS"], providers)
    narrators = collect(pm, "register_narrators", plugin_config, "narrator")
    narrator = _pick_narrator(config, narrators)
    database = db.init_app(app, mongo_client)
    app_metrics = metrics.Metrics()
    # Every collection gets the configured write concern: a slot or a key
    # that a failover rolls back is as lost as a game.
    concern = write_concern(config)
    image_store = GridFSImageStore(database, concern)
    images = ImageService(providers, config, image_store, app_metrics, **image_options)
    _warn_retiring(images)
    jobs: ImageJobs | None = None
    cards: CardStore | None = None
    coherence = Coherence(_coherence_mode(config, mongo_client))
    cipher = FieldCipher.from_config(config)
    digest_secret = _digest_secret(config)
    moderator = TextModerator(config)
    sessions = SessionStore(database, config, app_metrics, **{"coherence": coherence,
                                                              "cipher": cipher,
                                                              **store_options},
                            on_turns_expiry=lambda session_id, when: (
                                jobs.extend(session_id, when), cards.extend(session_id, when)))
    if coherence.mode == WATCH:
        ChangeFeed(coherence, database.watch, on_session=sessions.changed_elsewhere,
                   on_turns=sessions.changed_elsewhere,
                   on_reset=lambda: sessions.changed_elsewhere(None)).start()
    jobs = ImageJobs(database, images, config, sessions.now,
                     on_ready=lambda slot: sessions.update_turn_image(
                         slot["session_id"], slot["n"], slot["_id"], turn_image(slot)),
                     turn_names=sessions.turn_names,
                     write_concern=concern, cipher=cipher, **jobs_options)
    keys = IdempotencyStore(database.get_collection("idempotency_keys", write_concern=concern,
                                                    read_preference=ReadPreference.PRIMARY),
                            config["IDEMPOTENCY_HOURS"], config["IDEMPOTENCY_LEASE_SECONDS"],
                            sessions.now, secret=digest_secret)
    users = UserStore(database, config, write_concern=concern, secret=digest_secret,
                      **auth_options)
    cards = CardStore(database, cipher, sessions.now, write_concern=concern)
    keyring = Keyring(cipher, database.get_collection("keyring", write_concern=concern))
    indexes = db.IndexSetup((keyring, sessions, jobs, keys, image_store, users, cards))
    indexes.ensure()  # a store that is down now is retried before writes and by /readyz
    if indexes.fatal is not None:  # keys that cannot read the saved games: refuse to start
        raise indexes.fatal
    return Dungeon(
        config=config, plugin_manager=pm, providers=providers, narrators=narrators,
        metrics=app_metrics, db=database, indexes=indexes, image_store=image_store,
        images=images, sessions=sessions, jobs=jobs, idempotency=keys,
        game=GameEngine(sessions, narrator, jobs, app_metrics, config, moderator, cards),
        moderator=moderator,
        rendered=RenderedGames(ttl=config["SESSION_CACHE_TTL"]),
        signer=TokenSigner(config, revocations=users), limiter=_limiter(config, app_metrics),
        users=users)


def _limiter(config: Mapping[str, Any], app_metrics: metrics.Metrics) -> RateLimiter:
    limiter = RateLimiter(config, app_metrics)
    return limiter


def _digest_secret(config: Mapping[str, Any]) -> bytes:
    """The key of stored digests (request fingerprints, link codes), derived from SECRET_KEY.

    Without SECRET_KEY (development only) a random one per process, as the
    token signer's.
    """
    secret = config["SECRET_KEY"] or secrets.token_urlsafe(32)
    return hashlib.sha256(b"dungeon stored digests\0" + secret.encode()).digest()


def _coherence_mode(config: Mapping[str, Any], mongo_client: Any) -> str:
    """How this process learns that its cached games are current (dungeon/sessions/changes.py)."""
    if mongo_client is not None:
        # An injected client may be shared by several apps standing for
        # processes (the tests do so): check versions.
        return VERSION
    return WATCH if config["MONGO_URI"] else LOCAL


def _pick_narrator(config: Mapping[str, Any], narrators: Mapping[str, Any]):
    name = config["NARRATOR"] or ("openai" if config["OPENAI_API_KEY"] else "local")
    if name not in narrators:
        raise UnknownPlugin(f"NARRATOR: unknown narrator {name!r}; known: "
                            f"{', '.join(sorted(narrators))}")
    log.info("narrator: %s", name)
    return narrators[name]


def _check_provider_order(order: list[str], providers: Mapping[str, Any]) -> None:
    unknown = [name for name in order if name not in providers]
    if unknown:
        raise UnknownPlugin(f"IMAGE_PROVIDERS: unknown provider(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(providers))}")
    if len(set(order)) != len(order):
        raise ConfigError(f"IMAGE_PROVIDERS: a provider is listed twice in {','.join(order)}")
    if PLACEHOLDER not in providers:
        raise ConfigError("IMAGE_PROVIDERS: the placeholder provider is not registered "
                          "(is the built-in plugin blocked?)")


def _warn_retiring(images: ImageService, today: date | None = None) -> None:
    today = today or date.today()
    for entry in images.status():
        if not entry["shutdown_date"]:
            continue
        shutdown = date.fromisoformat(entry["shutdown_date"])
        if shutdown <= today:
            log.error("image provider %s: model %s was shut down on %s; remove it from "
                      "IMAGE_PROVIDERS", entry["name"], entry["model"], shutdown)
        elif (shutdown - today).days <= 30:
            log.warning("image provider %s: model %s shuts down on %s", entry["name"],
                        entry["model"], shutdown)
