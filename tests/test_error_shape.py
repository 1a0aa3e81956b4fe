import json

import pytest
from flask import Blueprint

from dungeon.errors import Conflict, DungeonError
from tests.conftest import guest_headers


def assert_error_shape(response, status, code=None):
    """Every 4xx/5xx is JSON with error.code, error.message and the request id."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) <= {"code", "message", "details"}
    assert body["error"]["code"] == (code or body["error"]["code"])
    assert body["error"]["code"].replace("_", "").isalnum()
    assert body["error"]["code"] == body["error"]["code"].lower()
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest.fixture
def error_app(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "MAX_CONTENT_LENGTH": 2048})
    app.config["PROPAGATE_EXCEPTIONS"] = False  # behave as in production for uncaught errors
    bp = Blueprint("boom", __name__)

    @bp.get("/boom")
    def boom():
        raise RuntimeError("secret internals: /etc/passwd")

    @bp.get("/conflict")
    def conflict():
        raise Conflict(details={"version": 3})

    @bp.get("/dungeon-error")
    def base_error():
        raise DungeonError()

    app.register_blueprint(bp)
    return app


ERROR_PATHS = [
    ("get", "/no/such/route", {}, 404, "not_found"),
    ("delete", "/healthz", {}, 405, "method_not_allowed"),
    ("post", "/api/images", {"data": "x" * 4096, "content_type": "application/json"}, 413,
     "request_entity_too_large"),
    ("get", "/boom", {}, 500, "internal_server_error"),
    ("get", "/conflict", {}, 409, "conflict"),
    ("get", "/dungeon-error", {}, 500, "internal_error"),
    ("post", "/api/images", {"data": "{not json", "content_type": "application/json"}, 400,
     "bad_request"),
    ("post", "/api/images", {"json": {"prompt": "x", "genre": "western", "style": "comic"}},
     422, "validation_failed"),
    ("get", "/api/images/" + "0" * 64, {}, 404, "image_not_found"),
    ("get", "/api/images/not-an-id", {}, 404, "image_not_found"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), ERROR_PATHS)
def test_every_error_path_has_the_one_shape(error_app, method, path, kwargs, status, code):
    client = error_app.test_client()
    response = getattr(client, method)(path, headers=guest_headers(client), **kwargs)
    assert_error_shape(response, status, code)


def test_a_500_never_leaks_the_traceback(error_app):
    response = error_app.test_client().get("/boom")
    text = json.dumps(response.get_json())
    assert "secret internals" not in text and "Traceback" not in text


def test_405_keeps_the_allow_header(error_app):
    assert "GET" in error_app.test_client().delete("/healthz").headers["Allow"]


def test_validation_errors_name_each_field(client, auth):
    response = client.post("/api/images", headers=auth,
                           json={"prompt": "", "genre": "western", "colour": "red"})
    details = assert_error_shape(response, 422)["error"]["details"]["fields"]
    assert details == {"prompt": "must not be empty", "style": "is required",
                       "genre": details["genre"], "colour": "unknown field"}
    assert details["genre"].startswith("must be one of")
