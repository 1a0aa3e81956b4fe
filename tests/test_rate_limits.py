import pytest

from dungeon.errors import ConfigError
from tests.conftest import guest_headers
from tests.test_error_shape import assert_error_shape


def test_actions_past_the_limit_get_429_with_retry_after(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "RATE_LIMIT_ACTIONS": "3/minute"})
    client = app.test_client()
    auth = guest_headers(client)
    game_id = client.post("/api/games", headers=auth,
                          json={"genre": "fantasy", "style": "comic"}).json["game"]["id"]
    statuses = [client.post(f"/api/games/{game_id}/actions", headers=auth,
                            json={"action": "wait"}).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    refused = client.post(f"/api/games/{game_id}/actions", headers=auth, json={"action": "x"})
    body = assert_error_shape(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert body["error"]["details"] == {"limit": "3 per 1 minute", "scope": "actions"}
    metrics = app.extensions["dungeon"].metrics
    assert metrics.sample("dungeon_rate_limit_rejections_total", {"scope": "actions"}) == 2


def test_limits_are_per_user(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "RATE_LIMIT_GAMES": "1/hour"})
    client = app.test_client()
    body = {"genre": "fantasy", "style": "comic"}
    alice, bob = guest_headers(client), guest_headers(client)
    assert client.post("/api/games", headers=alice, json=body).status_code == 201
    assert client.post("/api/games", headers=alice, json=body).status_code == 429
    assert client.post("/api/games", headers=bob, json=body).status_code == 201


def test_guest_creation_is_limited_per_client_address(make_app):
    client = make_app({"RATE_LIMIT_GUESTS": "2/hour"}).test_client()
    statuses = [client.post("/api/auth/guest").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]


def test_an_empty_limit_switches_it_off(make_app):
    client = make_app({"RATE_LIMIT_GUESTS": ""}).test_client()
    assert {client.post("/api/auth/guest").status_code for _ in range(40)} == {201}


@pytest.mark.parametrize("bad", ["lots", "3/fortnight", "-1/minute"])
def test_a_malformed_limit_stops_the_app(make_app, bad):
    with pytest.raises(ConfigError, match="RATE_LIMIT_ACTIONS"):
        make_app({"RATE_LIMIT_ACTIONS": bad})
