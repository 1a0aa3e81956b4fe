"""A bare Flask app that serves recorded answers byte for byte: the baseline of
benchmarks/sessions.py.

It does nothing a real route does (no authentication, no store, no request
id, no metrics): each recorded path answers with its recorded status, headers
and body, so what it costs under gunicorn is Flask's and gunicorn's own
share of a request. ``DUNGEON_BARE_ANSWERS`` names a JSON file, a list of
``{"path", "status", "headers": [[name, value], ...], "body_b64"}``;
``/healthz`` answers too, for start-up checks.

Under the service's own gunicorn settings:

    DUNGEON_WSGI_APP='benchmarks.bare_app:create_app()' DUNGEON_BARE_ANSWERS=answers.json \\
        python -m gunicorn -c python:dungeon.gunicorn_conf
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, abort, request

HOP_HEADERS = {"connection", "content-length", "date", "keep-alive", "server",
               "transfer-encoding"}


def recorded(path: str, status: int, headers: Iterable[tuple[str, str]],
             body: bytes) -> dict[str, Any]:
    """Return one recorded answer, without the headers gunicorn sets itself."""
    return {"path": path, "status": status,
            "headers": [[name, value] for name, value in headers
                        if name.lower() not in HOP_HEADERS],
            "body_b64": base64.b64encode(body).decode()}


def create_app(answers: Iterable[Mapping[str, Any]] | None = None) -> Flask:
    """Return the app serving ``answers`` (default: the file ``DUNGEON_BARE_ANSWERS`` names)."""
    if answers is None:
        with open(os.environ["DUNGEON_BARE_ANSWERS"]) as file:
            answers = json.load(file)
    by_path = {answer["path"]: (base64.b64decode(answer["body_b64"]), answer["status"],
                                [tuple(pair) for pair in answer["headers"]])
               for answer in answers}
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/api/games/<session_id>")
    def game(session_id: str):
        found = by_path.get(request.path)
        if found is None:
            abort(404)
        body, status, headers = found
        return Response(body, status=status, headers=headers)

    return app
