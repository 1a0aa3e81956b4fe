"""Every setting the service reads, with its default, its type and its meaning.

The table is data: the application factory loads it, ``dungeon check-config``
prints it and the README's configuration table is written from it.  A value
may come from the defaults, from a ``DUNGEON_``-prefixed environment variable
(Flask's ``from_prefixed_env``, which parses JSON literals such as ``5`` or
``true``), or from the mapping given to ``create_app``; ``coerce`` turns each
of those shapes into the one type the code relies on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Setting:
    """One configuration key: name (without the ``DUNGEON_`` prefix), default and meaning."""

    name: str
    default: Any
    kind: str  # "str", "int", "float", "bool", "list", "choice"
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    secret: bool = False

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to this setting's type, or raise ConfigError."""
        try:
            converted = _CONVERTERS[self.kind](value, self)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        if self.minimum is not None and converted < self.minimum:
            raise ConfigError(f"{self.name}: must be >= {self.minimum:g}, got {converted!r}")
        return converted


def _to_str(value: Any, setting: Setting) -> str | None:
    if value is None:
        return None
    # from_prefixed_env parses JSON literals: DUNGEON_MONGO_WRITE_CONCERN=1 arrives as 1.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"must be text, got {type(value).__name__}")
    return value


def _to_int(value: Any, setting: Setting) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"must be a whole number, got {value!r}")
    if isinstance(value, str) and not re.fullmatch(r"-?\d+", value.strip()):
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(value)


def _to_float(value: Any, setting: Setting) -> float:
    if isinstance(value, bool):
        raise TypeError(f"must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None


def _to_bool(value: Any, setting: Setting) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _to_list(value: Any, setting: Setting) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
        if value.strip() and any(not item for item in items):
            raise ValueError(f"malformed comma-separated list {value!r} (empty item)")
        return [item for item in items if item]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    raise TypeError(f"must be a comma-separated list of names, got {value!r}")


def _to_choice(value: Any, setting: Setting) -> str:
    text = str(value).strip().lower()
    if text not in setting.choices:
        allowed = ", ".join(setting.choices)
        raise ValueError(f"must be one of {allowed}, got {value!r}")
    return text


_CONVERTERS: dict[str, Callable[[Any, Setting], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
    "choice": _to_choice,
}


SETTINGS: tuple[Setting, ...] = (
    # --- service ---
    Setting("ENV", "development", "choice", "development or production; production refuses "
            "unsafe defaults (embedded store, development signing key, per-process rate limits "
            "with several workers, no `ENCRYPTION_KEYS` unless `ALLOW_PLAINTEXT`).",
            choices=("development", "production")),
    Setting("SECRET_KEY", None, "str", "Key that signs bearer tokens. A development key is "
            "used, with a warning, when unset outside production.", secret=True),
    Setting("LOG_LEVEL", "INFO", "choice", "Lowest level of log line written.",
            choices=("debug", "info", "warning", "error")),
    Setting("LOG_FORMAT", "json", "choice", "Log line format: json (one object a line) or "
            "console (for a developer's terminal).", choices=("json", "console")),
    Setting("MAX_CONTENT_LENGTH", 65536, "int", "Largest request body accepted, in bytes.",
            minimum=1024),
    # --- plugins ---
    Setting("PLUGINS", [], "list", "Extra plugin modules to import and register, by import path."),
    Setting("LOAD_ENTRYPOINTS", True, "bool",
            "Load third-party plugins from the `dungeon` entry-point group."),
    Setting("DISABLED_PLUGINS", [], "list", "Plugin names to block (built-ins included)."),
    # --- store ---
    Setting("MONGO_URI", None, "str", "MongoDB connection string. Unset: an embedded in-memory "
            "store that loses everything on restart (refused in production).", secret=True),
    Setting("MONGO_DB", "dungeon", "str", "Database name when the URI names none."),
    Setting("MONGO_WRITE_CONCERN", "majority", "str",
            "Write concern `w` for game writes (`majority` or a number)."),
    Setting("MONGO_JOURNAL", True, "bool", "Wait for the journal before a write counts as done."),
    Setting("MONGO_TIMEOUT_MS", 5000, "int",
            "Server selection and write-concern timeout, in milliseconds.", minimum=1),
    Setting("ENCRYPTION_KEYS", None, "str", "Comma-separated Fernet keys; the first encrypts, "
            "all decrypt. Required in production unless `ALLOW_PLAINTEXT` is true.",
            secret=True),
    Setting("ALLOW_PLAINTEXT", False, "bool", "Let production run without `ENCRYPTION_KEYS`, "
            "on purpose: saved games are stored unencrypted."),
    # --- images ---
    Setting("IMAGE_PROVIDERS", ["gpt-image-2", "placeholder"], "list",
            "Image providers, in the order they are tried. The placeholder is always the last "
            "resort, listed or not. `gpt-image-1`, `dall-e-3` and other models of the "
            "capability table stay available to list."),
    Setting("IMAGE_RETRIES", 2, "int", "Retries per provider after a retryable failure.",
            minimum=0),
    Setting("IMAGE_BACKOFF_BASE", 0.5, "float", "First retry delay in seconds; doubles per retry.",
            minimum=0),
    Setting("IMAGE_BACKOFF_MAX", 8.0, "float", "Largest retry delay in seconds.", minimum=0),
    Setting("IMAGE_RETRY_AFTER_MAX", 20.0, "float",
            "Longest `Retry-After` honoured, in seconds; a longer one moves to the next provider.",
            minimum=0),
    Setting("IMAGE_DEADLINE", 120.0, "float",
            "Overall budget for one image request across providers and retries, in seconds.",
            minimum=1),
    Setting("IMAGE_CONNECT_TIMEOUT", 5.0, "float", "Connect timeout to a provider, in seconds.",
            minimum=0.1),
    Setting("IMAGE_READ_TIMEOUT", 90.0, "float",
            "Read timeout for one provider call, in seconds (image models take 10-70 s).",
            minimum=0.1),
    Setting("IMAGE_MAX_BYTES", 20 * 1024 * 1024, "int",
            "Largest image accepted from a provider, in bytes.", minimum=1024),
    Setting("IMAGE_MODERATION", "off", "choice",
            "Prompt check before any provider call: off, local (built-in and deny patterns) "
            "or openai (/v1/moderations).", choices=("off", "local", "openai")),
    Setting("IMAGE_DENY_PATTERNS", [], "list",
            "Regular expressions; a prompt matching any is refused before any provider call "
            "(write a JSON list when a pattern holds a comma)."),
    Setting("TEXT_MODERATION", "local", "choice",
            "Check of what players write (prologues, actions, titles) before the narrator or "
            "the database sees it: off, local (built-in and deny patterns) or openai "
            "(/v1/moderations as well; when that call fails the text is refused with 503).",
            choices=("off", "local", "openai")),
    Setting("TEXT_DENY_PATTERNS", [], "list",
            "Regular expressions; player text matching any is refused (category `custom`)."),
    Setting("TEXT_MODERATION_TIMEOUT", 10.0, "float",
            "Read timeout of one text moderation call, in seconds.", minimum=0.1),
    Setting("SAFETY_LEVEL", "moderate", "choice",
            "Safety level of a player who chose none: strict, moderate or mature; it decides "
            "which moderation categories are refused and the image `moderation` parameter.",
            choices=("strict", "moderate", "mature")),
    Setting("BREAKER_FAILURE_THRESHOLD", 5, "int",
            "Consecutive failures that open a provider's circuit breaker.", minimum=1),
    Setting("BREAKER_RESET_SECONDS", 30.0, "float",
            "How long an open breaker stays open before one trial call.", minimum=0),
    Setting("BREAKER_AUTH_RESET_SECONDS", 900.0, "float",
            "How long a breaker stays open after an authentication, permission or quota error.",
            minimum=0),
    Setting("MODEL_RECHECK_SECONDS", 3600.0, "float",
            "How long a provider whose model was reported gone stays disabled before one trial "
            "call checks it again.", minimum=1),
    # An image call waits 10-70 s on the network, so the pool is sized for waiting,
    # not for cores: players served ~ IMAGE_WORKERS x think time / image time.
    # benchmarks/capacity.py (docs/benchmarks.md), 3 s images, 3 s think time:
    # 4 workers served 4 players; 128 served 128, twice the 64 wanted (at 64
    # players the worker had 66 MiB and 69 threads). The queue only absorbs
    # bursts: it overflows anyway once players outrun the workers. Half the
    # workers keeps a queued turn's wait plus a 70 s image inside ?wait=image's
    # 125 s and the slot lease's 150 s.
    Setting("IMAGE_WORKERS", 128, "int",
            "Background threads per process generating turn images; players served before "
            "placeholders: about workers × think time ÷ image time.", minimum=1),
    Setting("IMAGE_QUEUE", 64, "int", "Turn images that may wait for a background thread; "
            "beyond that a turn gets its placeholder at once.", minimum=0),
    Setting("WAIT_LIMIT", 32, "int", "Requests per process that may hold their answer for "
            "`?wait=image` at once, well below the server's threads; past it a request answers "
            "at once with the image pending.", minimum=0),
    Setting("WAITS_PER_CLIENT", 4, "int", "`?wait=image` waits one client address may hold at "
            "once in a process; past it the answer comes at once with the image pending.",
            minimum=1),
    Setting("IMAGE_REQUEST_LIMIT", 8, "int", "`POST /api/images` requests per process that may "
            "run the image chain at once; past it they get 503 with `Retry-After`.", minimum=1),
    Setting("IMAGE_HTTP_POOL", 0, "int", "Connections kept open to the OpenAI image API per "
            "process, shared by its models; 0: `IMAGE_WORKERS` + `IMAGE_REQUEST_LIMIT`, one for "
            "every call that may wait on it at once.", minimum=0),
    # --- games and sessions ---
    Setting("SESSION_CACHE_SIZE", 10000, "int",
            "Games kept in each process's lookup cache (0 disables the cache).", minimum=0),
    Setting("SESSION_CACHE_TTL", 60.0, "float",
            "Seconds a cached game is trusted before it is read again.", minimum=0),
    Setting("SESSION_EXPIRY_DAYS", 30.0, "float",
            "Days of inactivity after which a game is deleted (0: never).", minimum=0),
    Setting("SESSION_TOUCH_SECONDS", 300.0, "float",
            "Least time between two writes that push a game's expiry forward on reads.",
            minimum=0),
    Setting("RECENT_TURNS", 20, "int", "Turns returned with a game, most recent last.",
            minimum=1),
    Setting("EMBEDDED_MAX_GAMES", 1000, "int", "Games the embedded store holds before it warns "
            "(once, in the log and in `/readyz`) that it is for trying the service out: it "
            "scans every game on every query and forgets them all on restart.", minimum=1),
    Setting("IDEMPOTENCY_HOURS", 24.0, "float",
            "How long an `Idempotency-Key` answer is kept for retries.", minimum=0.01),
    Setting("IDEMPOTENCY_LEASE_SECONDS", 300.0, "float",
            "How long a request holds its `Idempotency-Key` before a retry may take it over "
            "(about twice the longest request: a turn waiting for its image).", minimum=1),
    Setting("IMAGE_RETENTION_HOURS", 24.0, "float",
            "Stored images that no turn uses any more are collected once this old; also how "
            "long a `POST /api/images` URL lasts at least.", minimum=0),
    Setting("TOKEN_TTL_HOURS", 720.0, "float", "Lifetime of a guest bearer token, in hours.",
            minimum=0.01),
    Setting("AUTH_CACHE_SECONDS", 30.0, "float", "How long a process trusts what it read about "
            "a token's revocation; a token signed out through another process stops working "
            "within this time (0: read on every request).", minimum=0),
    # --- request limits ---
    Setting("RATE_LIMIT_GUESTS", "30/hour", "str",
            "Guest accounts one client address may create (empty: no limit)."),
    Setting("RATE_LIMIT_GAMES", "20/hour", "str", "Games one user may start (empty: no limit)."),
    Setting("RATE_LIMIT_ACTIONS", "30/minute", "str",
            "Actions one user may play (empty: no limit)."),
    Setting("RATE_LIMIT_IMAGES", "10/minute", "str",
            "Image requests and image retries one user may make (empty: no limit)."),
    Setting("RATE_LIMIT_WAITS", "60/minute", "str", "`?wait=image` waits one client address "
            "may make; past it the answer comes at once with the image pending (empty: no "
            "limit)."),
    Setting("RATE_LIMIT_LINKS", "5/hour", "str",
            "Device link codes one user may make (empty: no limit)."),
    Setting("RATE_LIMIT_REDEEM", "20/hour", "str",
            "Link code redeem attempts one client address may make, right or wrong "
            "(empty: no limit)."),
    Setting("RATE_LIMIT_STORAGE", "memory://", "str", "Where limits are counted: `memory://` "
            "(per process) or a `mongodb://` URI (shared; MongoDB 4.2+).", secret=True),
    Setting("CORS_ORIGINS", [], "list", "Web origins allowed to call the API from a browser "
            "(`https://play.example.com`); empty: no cross-origin access."),
    Setting("PROXY_HOPS", 0, "int", "Proxies in front of the service whose X-Forwarded-For "
            "and X-Forwarded-Proto are trusted (1 behind one load balancer).", minimum=0),
    # --- narrators ---
    Setting("NARRATOR", None, "str",
            "Narrator plugin by name: `openai` or `local`. Unset: `openai` when an OpenAI key "
            "is set, `local` otherwise."),
    # gpt-5.6-terra: the balanced GPT-5.6 model (July 2026); gpt-5-mini, its
    # predecessor, shuts down on 2026-12-11.
    Setting("NARRATOR_MODEL", "gpt-5.6-terra", "str", "Chat Completions model of the `openai` "
            "narrator."),
    Setting("NARRATOR_REASONING_EFFORT", None, "str", "`reasoning_effort` sent to the narrator "
            "model (`low` answers faster); unset: not sent, the model's default."),
    Setting("NARRATOR_TIMEOUT", 45.0, "float", "Read timeout of one narrator call, in seconds.",
            minimum=0.1),
    Setting("NARRATOR_RETRIES", 2, "int", "Retries of a failed narrator call.", minimum=0),
    Setting("NARRATOR_CONTEXT_TURNS", 8, "int",
            "Recent turns given to the narrator as context.", minimum=0),
    # --- OpenAI (also read unprefixed, as the OpenAI ecosystem does) ---
    Setting("NARRATOR_CONTEXT_CHARS", 6000, "int",
            "Budget of the narrator's context in characters: story memory, triggered cards, "
            "summary, recent turns and the action; the oldest turns go first past it.",
            minimum=1500),
    Setting("NARRATION_LIMIT", 32, "int",
            "Turns one process narrates at once, well below the server's threads; past it an "
            "action gets 503 `narrator_busy` with `Retry-After`.", minimum=1),
    Setting("MAX_ALTERNATIVES", 10, "int",
            "Alternatives a turn keeps when it is retried (each with its own image).", minimum=1),
    Setting("SUMMARY_EVERY", 5, "int",
            "Turns between two refreshes of a game's running summary (what happened before "
            "the recent turns the narrator sees).", minimum=1),
    Setting("OPENAI_API_KEY", None, "str", "OpenAI API key (also read from `OPENAI_API_KEY`).",
            secret=True),
    Setting("OPENAI_BASE_URL", "https://api.openai.com/v1", "str",
            "Base URL of the OpenAI API or a compatible server (also read from "
            "`OPENAI_BASE_URL`)."),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
UNPREFIXED = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
# DUNGEON_* variables read outside the application: by gunicorn_conf.py when
# serving, and by the test suite.
SERVING_VARIABLES = ("WSGI_APP", "BIND", "THREADS", "WORKERS", "WORKER_TIMEOUT",
                     "GRACEFUL_TIMEOUT", "KEEPALIVE", "MAX_REQUESTS", "ACCESS_LOG",
                     "TEST_MONGO_URI")


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Return each ``DUNGEON_*`` variable no setting reads, with the closest known name.

    A misspelt variable is otherwise silently ignored.  Plugins read their
    own ``DUNGEON_*`` settings, so a name with no close match is only a
    candidate for a mistake.
    """
    known = [f"DUNGEON_{name}" for name in (*SETTINGS_BY_NAME, *SERVING_VARIABLES)]
    unknown = []
    for name in sorted(environ):
        if name.startswith("DUNGEON_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            unknown.append((name, close[0] if close else None))
    return unknown


def defaults() -> dict[str, Any]:
    """Return a fresh mapping of every setting to its default value."""
    return {s.name: list(s.default) if isinstance(s.default, list) else s.default
            for s in SETTINGS}


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the known settings of ``config`` coerced to their types; raise ConfigError."""
    return {s.name: s.coerce(config.get(s.name, s.default)) for s in SETTINGS}


def masked(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the settings of ``config`` with every secret replaced by a mask."""
    shown = {}
    for setting in SETTINGS:
        value = config.get(setting.name)
        shown[setting.name] = "****" if setting.secret and value else value
    return shown
