"""One vocabulary across the API and the tools: times, the image object, errors, settings."""

from __future__ import annotations

import re
from pathlib import Path

from dungeon import settings
from dungeon.settings import unknown_variables
from tests.test_error_shape import assert_error_shape

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
IMAGE_KEYS = {"id", "url", "status", "provider", "placeholder"}
GAME = {"genre": "fantasy", "style": "comic"}


def test_every_time_is_iso_8601_utc(client):
    guest = client.post("/api/auth/guest").json
    assert ISO_UTC.match(guest["expires_at"])
    auth = {"Authorization": f"Bearer {guest['token']}"}
    created = client.post("/api/games", json=GAME, headers=auth).json
    game = created["game"]
    for name in ("created_at", "updated_at", "expires_at"):
        assert ISO_UTC.match(game[name]), name
    assert ISO_UTC.match(created["turns"][0]["created_at"])


def test_one_image_object_everywhere(client, auth):
    turn_image = client.post("/api/games", json=GAME, headers=auth).json["turns"][0]["image"]
    assert set(turn_image) == IMAGE_KEYS
    made = client.post("/api/images", json={"prompt": "a tower", **GAME}, headers=auth).json
    assert set(made["image"]) >= IMAGE_KEYS and "image_id" not in made["image"]
    assert made["image"]["status"] == "ready"
    assert made["image"]["url"] == f"/api/images/{made['image']['id']}"


def test_a_bad_query_parameter_is_named_as_a_query(client, auth):
    response = client.get("/api/games?limit=0", headers=auth)
    body = assert_error_shape(response, 422, "validation_failed")
    assert body["error"]["message"] == "The query parameter limit is not valid."
    assert "limit" in body["error"]["details"]["fields"]


def test_a_bad_body_is_named_as_a_body(client, auth):
    response = client.post("/api/games", json={"genre": "western"}, headers=auth)
    body = assert_error_shape(response, 422, "validation_failed")
    assert body["error"]["message"] == "The request body is not valid."


def test_a_misspelt_setting_is_warned_about_with_the_closest_name(make_app, monkeypatch, caplog):
    monkeypatch.setenv("DUNGEON_IMAGE_PROVIDER", "placeholder")
    monkeypatch.setenv("DUNGEON_STABILITY_API_KEY", "sk-plugin-setting")
    make_app({"IMAGE_PROVIDERS": "placeholder"})
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("DUNGEON_IMAGE_PROVIDER is not a setting; did you mean DUNGEON_IMAGE_PROVIDERS"
               in line for line in warned)
    assert not any("STABILITY" in line for line in warned)  # a plugin's own setting


def test_every_variable_the_server_reads_is_known():
    source = (Path(settings.__file__).parent / "gunicorn_conf.py").read_text()
    read = set(re.findall(r'"DUNGEON_([A-Z_]+)"', source))
    assert read <= set(settings.SETTINGS_BY_NAME) | set(settings.SERVING_VARIABLES)
    assert unknown_variables({f"DUNGEON_{name}": "1" for name in read}) == []


def test_the_default_image_chain_is_what_works_today(make_app):
    assert settings.SETTINGS_BY_NAME["IMAGE_PROVIDERS"].default == ["gpt-image-2", "placeholder"]
    app = make_app({})
    providers = app.extensions["dungeon"].providers
    assert {"gpt-image-1", "dall-e-3"} <= set(providers)  # still there to be listed
    status = {entry["name"] for entry in app.extensions["dungeon"].images.status()}
    assert status == {"gpt-image-2", "placeholder"}


def test_a_default_start_logs_no_shut_down_model(make_app, caplog):
    make_app({})
    assert not [r for r in caplog.records if "was shut down" in r.getMessage()]
