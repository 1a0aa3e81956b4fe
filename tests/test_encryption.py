"""Stories encrypted at rest: only ciphertext in the database, old keys still read, rotation."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from dungeon.errors import ConfigError
from dungeon.sessions.crypto import PREFIX, FieldCipher
from tests.conftest import guest_headers
from tests.fakes import InlineExecutor

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SECRET_STORY = "The lighthouse keeper hides a brass key under the third step"


def _app(make_app, keys, **config):
    return make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local",
                     "ENCRYPTION_KEYS": keys, **config},
                    jobs_options={"executor": InlineExecutor()})


def _play(app):
    client = app.test_client()
    auth = guest_headers(client)
    created = client.post("/api/games", headers=auth, json={
        "genre": "mystery", "style": "comic", "title": "The Keeper",
        "custom_prologue": SECRET_STORY}).json
    game_id = created["game"]["id"]
    client.post(f"/api/games/{game_id}/actions", json={"action": "lift the third step"},
                headers=auth)
    return client, auth, game_id


def _raw(mongo_client):
    database = mongo_client["dungeon"]
    return json.dumps([list(database[name].find()) for name in
                       ("sessions", "turns", "image_slots")], default=str)


def test_the_database_holds_only_ciphertext_of_stories(make_app, mongo_client):
    client, auth, game_id = _play(_app(make_app, NEW))
    raw = _raw(mongo_client)
    for plain in (SECRET_STORY, "The Keeper", "lift the third step", "third step"):
        assert plain not in raw
    turn = mongo_client["dungeon"]["turns"].find_one({"n": 0})
    assert turn["narration"].startswith(PREFIX) and turn["image_prompt"].startswith(PREFIX)
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json
    assert loaded["turns"][0]["narration"] == SECRET_STORY
    assert loaded["game"]["title"] == "The Keeper"


def test_a_game_written_under_an_old_key_loads_after_a_new_key_is_put_first(make_app):
    client, auth, game_id = _play(_app(make_app, OLD))
    rotated = _app(make_app, f"{NEW},{OLD}").test_client()
    loaded = rotated.get(f"/api/games/{game_id}", headers=auth).json
    assert loaded["turns"][0]["narration"] == SECRET_STORY


def test_keys_that_cannot_read_the_saved_games_refuse_to_start(make_app):
    _play(_app(make_app, OLD))
    with pytest.raises(ConfigError, match="ENCRYPTION_KEYS"):
        _app(make_app, NEW)
    with pytest.raises(ConfigError, match="encrypted; set the keys"):
        _app(make_app, None)


def test_a_malformed_key_is_a_clear_start_up_error(make_app):
    with pytest.raises(ConfigError, match="key 2 is not a Fernet key"):
        _app(make_app, f"{NEW},not-a-key")


def test_games_stored_in_clear_still_load_when_keys_are_set(make_app):
    client, auth, game_id = _play(_app(make_app, None))
    encrypted = _app(make_app, NEW).test_client()
    assert encrypted.get(f"/api/games/{game_id}", headers=auth).json["turns"][0][
        "narration"] == SECRET_STORY


def test_rotation_reencrypts_in_batches_and_can_be_interrupted_and_rerun(make_app, mongo_client):
    from dungeon.sessions.rotation import rotate

    _play(_app(make_app, OLD))
    _play(_app(make_app, OLD))
    database = mongo_client["dungeon"]
    cipher = FieldCipher([NEW, OLD])
    first = rotate(database, cipher, batch=1, limit=2)  # stopped after two documents
    assert first.rotated == 2 and not first.finished
    second = rotate(database, cipher, batch=2)
    assert second.finished and second.rotated > 0
    third = rotate(database, cipher, batch=2)
    assert third.finished and third.rotated == 0
    assert third.current == first.rotated + second.rotated  # every document, once each
    only_new = FieldCipher([NEW])
    for turn in database["turns"].find():
        assert only_new.open(turn["narration"])  # the old key is no longer needed
    assert only_new.open(database["keyring"].find_one()["token"])


def test_the_rotate_keys_command_reports_what_it_did(make_app, mongo_client, monkeypatch):
    from dungeon import app as app_module
    from dungeon.cli import main

    _play(_app(make_app, OLD))
    original = app_module.create_app

    def create_app(*args, **kwargs):
        return original(*args, mongo_client=mongo_client, **kwargs)

    monkeypatch.setattr(app_module, "create_app", create_app)
    monkeypatch.setenv("DUNGEON_LOAD_ENTRYPOINTS", "false")
    monkeypatch.setenv("DUNGEON_IMAGE_PROVIDERS", "placeholder")
    monkeypatch.setenv("DUNGEON_ENCRYPTION_KEYS", f"{NEW},{OLD}")
    result = CliRunner().invoke(main, ["rotate-keys", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted" in result.output and "turns" in result.output
    again = CliRunner().invoke(main, ["rotate-keys"])
    assert "0 re-encrypted" in again.output
