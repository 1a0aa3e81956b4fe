"""HTTP routes of the service, a module per resource, and the contract they publish.

``auth``, ``catalog``, ``games``, ``images`` and ``operations`` hold the
JSON API; ``client`` serves the web client; ``reference`` the readable API
reference.  Requests are validated, and responses documented, by the models
in ``schemas``; the OpenAPI 3.1 document is served at ``/api/openapi.json``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask.sessions import SessionInterface
from flask_openapi3 import Info, OpenAPI

from ..errors import validation_error_response
from . import auth, catalog, client, games, images, operations, reference
from .schemas import ErrorBody

DESCRIPTION = """The JSON API of dungeon, an AI text-adventure game.

Get a guest token (`POST /api/auth/guest`), start a game (`POST /api/games`),
play turns (`POST /api/games/{session_id}/actions`) and fetch each turn's
image from its `url` (202 while it is being made, then the picture).

Every 4xx and 5xx answer has one shape, `ErrorBody`: a stable
`error.code`, a human `error.message`, optional `error.details`, and the
`request_id`. Writes take an `Idempotency-Key`: a retry with the same key
gets what the first attempt committed, and is applied at most once. Times
are ISO 8601 in UTC.
"""


def openapi_options() -> dict[str, Any]:
    """Return how the application publishes its OpenAPI document."""
    return {
        "info": Info(title="dungeon", version=_version(), description=DESCRIPTION),
        "security_schemes": {"bearer": {"type": "http", "scheme": "bearer",
                                        "bearerFormat": "JWT",
                                        "description": "A guest token from POST /api/auth/guest."}},
        "doc_prefix": "/api", "doc_url": "/openapi.json",
        "validation_error_status": 422, "validation_error_model": ErrorBody,
        "validation_error_callback": validation_error_response,
        # The web client's files are served by the client blueprint, with its
        # headers; the app's own /static route would serve them without.
        "static_folder": None,
    }


class NoSessions(SessionInterface):
    """The API keeps no cookie session (identity is the bearer token): none is opened.

    Flask would otherwise sign and parse a session cookie on every request,
    because SECRET_KEY, the token signing key, is set.
    """

    def open_session(self, app, request):
        return None

    def save_session(self, app, session, response):
        return None


def init_app(app: OpenAPI) -> None:
    """Register every route of the service on ``app``."""
    app.session_interface = NoSessions()
    for blueprint in (operations.bp, auth.bp, catalog.bp, games.bp, images.bp):
        app.register_api(blueprint)
    app.register_blueprint(reference.bp)
    app.register_blueprint(client.bp)


def _version() -> str:
    try:
        return version("dungeon")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"
