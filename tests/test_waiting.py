"""Waiting never takes every request thread: bounded per process, counted per client address."""

from __future__ import annotations

from tests.conftest import guest_headers
from tests.test_error_shape import assert_error_shape
from tests.test_turn_images import GatedProvider

GAME = {"genre": "fantasy", "style": "comic"}


def _pending_game(make_app, config=None):
    gated = GatedProvider()
    app = make_app({"IMAGE_PROVIDERS": "gated,placeholder", **(config or {})}, providers=[gated])
    client = app.test_client()
    auth = guest_headers(client)
    created = client.post("/api/games", json=GAME, headers=auth).json
    return app, client, auth, created, gated


def test_past_the_wait_limit_an_image_get_answers_at_once_with_pending(make_app):
    app, client, auth, created, gated = _pending_game(make_app, {"WAIT_LIMIT": 1})
    jobs = app.extensions["dungeon"].jobs
    assert jobs.waiters.acquire(blocking=False)  # another request holds the only wait
    try:
        response = client.get(created["turns"][0]["image"]["url"] + "?wait=image")
        assert response.status_code == 202 and response.json["image"]["status"] == "pending"
    finally:
        jobs.waiters.release()
        gated.gate.set()
    declined = app.extensions["dungeon"].metrics.sample(
        "dungeon_image_waits_declined_total", {"reason": "busy"})
    assert declined == 1


def test_past_the_wait_limit_an_action_answers_with_its_image_pending(make_app):
    app, client, auth, created, gated = _pending_game(make_app, {"WAIT_LIMIT": 1})
    jobs = app.extensions["dungeon"].jobs
    assert jobs.waiters.acquire(blocking=False)
    try:
        played = client.post(f"/api/games/{created['game']['id']}/actions?wait=image",
                             json={"action": "look"}, headers=auth)
        assert played.status_code == 201 and played.json["turn"]["image"]["status"] == "pending"
    finally:
        jobs.waiters.release()
        gated.gate.set()


def test_waits_are_counted_per_client_address(make_app):
    from dungeon.api.views import may_wait

    app = make_app({"IMAGE_PROVIDERS": "placeholder", "RATE_LIMIT_WAITS": "2/minute"})
    seen = []
    for address in ("203.0.113.1",) * 3 + ("203.0.113.2",):
        with app.test_request_context(environ_base={"REMOTE_ADDR": address}):
            seen.append(may_wait())
    assert seen == [True, True, False, True]


def test_image_requests_past_the_limit_get_503_with_retry_after(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "IMAGE_REQUEST_LIMIT": 1})
    client = app.test_client()
    auth = guest_headers(client)
    images = app.extensions["dungeon"].images
    assert images.client_calls.acquire(blocking=False)  # a slow request holds the only place
    try:
        busy = client.post("/api/images", json={"prompt": "a keep", **GAME}, headers=auth)
    finally:
        images.client_calls.release()
    assert_error_shape(busy, 503, "images_busy")
    assert busy.headers["Retry-After"] == "5"
    assert client.post("/api/images", json={"prompt": "a keep", **GAME},
                       headers=auth).status_code == 201


def test_a_full_image_queue_is_counted(make_app):
    app, client, auth, created, gated = _pending_game(
        make_app, {"IMAGE_WORKERS": 1, "IMAGE_QUEUE": 0})
    try:
        client.post("/api/games", json=GAME, headers=auth)
    finally:
        gated.gate.set()
    assert app.extensions["dungeon"].metrics.sample(
        "dungeon_image_queue_overflows_total") == 1


def test_one_client_cannot_hold_every_wait(make_app):
    app, client, auth, created, gated = _pending_game(make_app, {"WAITS_PER_CLIENT": 1})
    jobs = app.extensions["dungeon"].jobs
    assert jobs._client_may_wait("127.0.0.1")  # this address already holds its one wait
    try:
        response = client.get(created["turns"][0]["image"]["url"] + "?wait=image")
        assert response.status_code == 202
    finally:
        jobs._client_done("127.0.0.1")
        gated.gate.set()
    assert app.extensions["dungeon"].metrics.sample(
        "dungeon_image_waits_declined_total", {"reason": "client_busy"}) == 1
