"""The WSGI edge: every answer's id, safety headers and count, and a log context per request."""

import contextvars
import json

import pytest
from flask import Blueprint

from dungeon import logs
from dungeon.security import CONTENT_SECURITY_POLICY


@pytest.fixture
def game(client, auth):
    return client.post("/api/games", headers=auth,
                       json={"genre": "fantasy", "style": "comic"}).get_json()["game"]["id"]


def test_an_answer_made_after_a_hook_failed_still_has_its_id_and_headers(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "PROPAGATE_EXCEPTIONS": False})
    bp = Blueprint("broken", __name__)

    @bp.get("/broken")
    def broken():
        return {}

    @bp.after_request
    def fail(_response):
        raise RuntimeError("a hook that fails")

    app.register_blueprint(bp)
    response = app.test_client().get("/broken", headers={"X-Request-ID": "edge-1"})
    assert response.status_code == 500
    assert response.get_json()["request_id"] == "edge-1"
    assert response.headers["X-Request-ID"] == "edge-1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_every_answer_carries_exactly_one_request_id(client, auth):
    for response in (client.get("/healthz"), client.get("/api/games", headers=auth),
                     client.get("/no/such/thing"), client.post("/healthz")):
        assert len(response.headers.getlist("X-Request-ID")) == 1, response.status_code


def test_a_method_no_route_knows_is_counted_as_other(client, app):
    assert client.open("/healthz", method="BREW").status_code == 405
    metrics = app.extensions["dungeon"].metrics
    assert metrics.sample("dungeon_http_requests_total", {
        "method": "other", "route": "unmatched", "status": "405"}) == 1
    assert "BREW" not in client.get("/metrics").get_data(as_text=True)


def test_request_durations_are_counted_with_their_requests(client, app):
    for _ in range(3):
        client.get("/healthz")
    metrics = app.extensions["dungeon"].metrics
    labels = {"method": "GET", "route": "/healthz"}
    assert metrics.sample("dungeon_http_request_seconds_count", labels) == 3
    assert metrics.sample("dungeon_http_requests_total", {**labels, "status": "200"}) == 3


def test_the_log_context_ends_with_its_request(client, auth, game):
    logs.new_context(request_id="left-over")
    client.get(f"/api/games/{game}", headers=auth)
    assert dict(logs.context()) == {}


def test_log_lines_of_a_game_request_name_the_request_user_and_game(client, auth, log_lines):
    user_id = client.get("/api/auth/me", headers=auth).get_json()["user_id"]
    client.get("/api/games/" + "x" * 22, headers={**auth, "X-Request-ID": "edge-2"})
    missed = [json.loads(line) for line in log_lines()
              if "session lookup missed" in json.loads(line)["event"]]
    assert missed and missed[-1]["request_id"] == "edge-2"
    assert missed[-1]["user_id"] == user_id and missed[-1]["session_id"] == "x" * 22


def test_work_handed_on_keeps_the_context_it_was_given():
    logs.new_context(request_id="outer")
    copied = contextvars.copy_context()
    logs.bind(user_id="u_later")  # a later bind is not seen by work handed on before it
    seen = copied.run(lambda: dict(logs.context()))
    assert seen == {"request_id": "outer"}
    assert dict(logs.context()) == {"request_id": "outer", "user_id": "u_later"}
    logs.new_context()


def test_an_answer_is_sent_even_when_its_count_fails(client, app, monkeypatch):
    def broken(*_args):
        raise RuntimeError("metrics storage gone")

    monkeypatch.setattr(app.extensions["dungeon"].metrics, "record_request", broken)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.headers["X-Request-ID"]


def test_an_id_a_route_set_itself_is_kept_and_not_doubled(app):
    bp = Blueprint("own_id", __name__)

    @bp.get("/own-id")
    def own_id():
        return {}, 200, {"X-Request-ID": "route-1"}

    app.register_blueprint(bp)
    response = app.test_client().get("/own-id", headers={"X-Request-ID": "client-1"})
    assert response.headers.getlist("X-Request-ID") == ["route-1"]
