"""What players write is moderated before the narrator or the database sees it."""

from __future__ import annotations

import json

import pytest
import requests

from dungeon.images.types import ImageRequest
from dungeon.moderation import REFUSED, TextModerator
from tests.conftest import API_KEY, guest_headers
from tests.test_error_shape import assert_error_shape

MODERATIONS = "https://api.openai.com/v1/moderations"
GAME = {"genre": "horror", "style": "comic"}
REFUSED_PROLOGUE = "A story of naked children, told explicitly."  # local: sexual/minors


def _result(**categories):
    names = ["sexual", "sexual/minors", "violence", "violence/graphic", "harassment",
             "hate", "self-harm", "illicit"]
    flags = {name: categories.get(name.replace("/", "_"), False) for name in names}
    return {"flagged": any(flags.values()), "categories": flags,
            "category_scores": {name: 0.9 if hit else 0.01 for name, hit in flags.items()}}


def _stored(mongo_client):
    database = mongo_client["dungeon"]
    return json.dumps([list(database[c].find()) for c in ("sessions", "turns")], default=str)


@pytest.mark.parametrize("body", [
    {**GAME, "custom_prologue": REFUSED_PROLOGUE},
    {**GAME, "title": "naked children explicit"}])
def test_a_refused_prologue_or_title_is_422_and_nothing_is_stored(client, auth, mongo_client,
                                                                 body):
    response = client.post("/api/games", json=body, headers=auth)
    details = assert_error_shape(response, 422, "content_refused")["error"]["details"]
    assert details["categories"] == ["sexual/minors"]
    assert list(mongo_client["dungeon"]["sessions"].find()) == []
    assert list(mongo_client["dungeon"]["turns"].find()) == []


def test_a_refused_action_is_422_and_the_game_is_unchanged(client, auth, mongo_client):
    game = client.post("/api/games", json=GAME, headers=auth).json["game"]
    response = client.post(f"/api/games/{game['id']}/actions", headers=auth,
                           json={"action": "how do I kill myself"})
    details = assert_error_shape(response, 422, "content_refused")["error"]["details"]
    assert details == {"categories": ["self-harm/instructions"], "fields": ["action"]}
    assert mongo_client["dungeon"]["turns"].count_documents({}) == 1
    assert "kill myself" not in _stored(mongo_client)


def test_the_log_names_categories_and_a_hash_never_the_text(client, auth, log_lines):
    client.post("/api/games", json={**GAME, "custom_prologue": REFUSED_PROLOGUE}, headers=auth)
    lines = [line for line in log_lines() if "player text refused" in line]
    assert len(lines) == 1 and "sexual/minors" in lines[0] and "text_sha256" in lines[0]
    assert not any("naked children" in line for line in log_lines())


def test_operator_patterns_refuse_as_custom(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "TEXT_DENY_PATTERNS": r"\bbanana\b"})
    client = app.test_client()
    auth = guest_headers(client)
    game = client.post("/api/games", json=GAME, headers=auth).json["game"]
    response = client.post(f"/api/games/{game['id']}/actions", headers=auth,
                           json={"action": "eat the banana"})
    assert assert_error_shape(response, 422, "content_refused")["error"]["details"][
        "categories"] == ["custom"]


def test_moderation_off_lets_everything_through(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "TEXT_MODERATION": "off"})
    client = app.test_client()
    response = client.post("/api/games", json={**GAME, "custom_prologue": REFUSED_PROLOGUE},
                           headers=guest_headers(client))
    assert response.status_code == 201


def _openai_app(make_app, **config):
    return make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local",
                     "TEXT_MODERATION": "openai", "OPENAI_API_KEY": API_KEY, **config})


def test_openai_moderation_is_asked_with_every_field_and_its_verdict_kept(make_app,
                                                                         requests_mock):
    requests_mock.post(MODERATIONS, json={"id": "modr-1", "model": "omni-moderation-latest",
                                          "results": [_result(), _result(violence=True)]})
    client = _openai_app(make_app).test_client()
    response = client.post("/api/games", headers=guest_headers(client), json={
        **GAME, "title": "Night", "custom_prologue": "The knight strikes the troll down."})
    assert response.status_code == 201  # violence is a story's stuff at the moderate level
    sent = requests_mock.last_request.json()
    assert sent == {"model": "omni-moderation-latest",
                    "input": ["Night", "The knight strikes the troll down."]}
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(("level", "refused"), [("strict", True), ("moderate", False),
                                                ("mature", False)])
def test_the_safety_level_chooses_what_is_refused(make_app, requests_mock, level, refused):
    requests_mock.post(MODERATIONS, json={"results": [_result(violence=True)]})
    client = _openai_app(make_app, SAFETY_LEVEL=level).test_client()
    response = client.post("/api/games", headers=guest_headers(client),
                           json={**GAME, "custom_prologue": "A duel with swords."})
    assert response.status_code == (422 if refused else 201)


@pytest.mark.parametrize("failure", [
    {"status_code": 500, "json": {"error": {"message": "The server had an error",
                                            "type": "server_error", "code": None}}},
    {"exc": requests.exceptions.ConnectTimeout},
    {"status_code": 200, "json": {"results": []}}])
def test_when_moderation_fails_player_text_is_refused_with_503(make_app, requests_mock,
                                                              mongo_client, failure):
    requests_mock.post(MODERATIONS, **failure)
    client = _openai_app(make_app).test_client()
    response = client.post("/api/games", headers=guest_headers(client),
                           json={**GAME, "custom_prologue": "A quiet village."})
    assert_error_shape(response, 503, "moderation_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert list(mongo_client["dungeon"]["sessions"].find()) == []


def test_levels_refuse_ever_more_from_mature_to_strict():
    assert REFUSED["mature"] < REFUSED["moderate"] < REFUSED["strict"]
    assert "sexual/minors" in REFUSED["mature"]


def test_a_mature_player_gets_low_image_moderation_where_the_model_takes_it():
    from providers.openai_images import OpenAIImageProvider
    from providers.openai_models import MODELS

    rows = {row["model"]: row for row in MODELS}
    config = {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": "https://api.openai.com/v1",
              "IMAGE_CONNECT_TIMEOUT": 5.0}
    gpt = OpenAIImageProvider(rows["gpt-image-2"], config, requests.Session())
    dalle = OpenAIImageProvider(rows["dall-e-3"], config, requests.Session())
    assert gpt.build_body(ImageRequest("a cave", moderation="low"))["moderation"] == "low"
    assert "moderation" not in gpt.build_body(ImageRequest("a cave"))
    assert "moderation" not in dalle.build_body(ImageRequest("a cave", moderation="low"))


def test_openai_text_moderation_needs_a_key():
    from dungeon.errors import ConfigError
    from dungeon.settings import defaults

    with pytest.raises(ConfigError, match="TEXT_MODERATION"):
        TextModerator({**defaults(), "TEXT_MODERATION": "openai"})


def test_each_player_chooses_their_safety_level(make_app, requests_mock):
    requests_mock.post(MODERATIONS, json={"results": [_result(violence=True)]})
    client = _openai_app(make_app, SAFETY_LEVEL="moderate").test_client()
    careful, other = guest_headers(client), guest_headers(client)
    me = client.get("/api/auth/me", headers=careful).json
    assert me["safety_level"] == "moderate" and me["safety_level_chosen"] is False
    chosen = client.patch("/api/auth/me", json={"safety_level": "strict"}, headers=careful)
    assert chosen.status_code == 200 and chosen.json["safety_level"] == "strict"
    body = {**GAME, "custom_prologue": "A duel with swords."}
    assert client.post("/api/games", json=body, headers=careful).status_code == 422
    assert client.post("/api/games", json=body, headers=other).status_code == 201
    bad = client.patch("/api/auth/me", json={"safety_level": "anything"}, headers=careful)
    assert_error_shape(bad, 422, "validation_failed")


def test_a_mature_player_s_scenes_ask_for_low_image_moderation(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    client = app.test_client()
    auth = guest_headers(client)
    client.patch("/api/auth/me", json={"safety_level": "mature"}, headers=auth)
    created = client.post("/api/games", json=GAME, headers=auth).json
    slot = app.extensions["dungeon"].db["image_slots"].find_one(
        {"_id": created["turns"][0]["image"]["id"]})
    assert slot["request"]["moderation"] == "low"


@pytest.mark.parametrize("answer", [{"results": [None]}, {"results": ["overloaded"]},
                                    {"results": [{"flagged": True, "categories": ["sexual"]}]}])
def test_a_moderation_answer_that_says_nothing_fails_closed(make_app, requests_mock, answer):
    requests_mock.post(MODERATIONS, json=answer)
    client = _openai_app(make_app).test_client()
    response = client.post("/api/games", headers=guest_headers(client),
                           json={**GAME, "custom_prologue": "A quiet village."})
    assert_error_shape(response, 503, "moderation_unavailable")


def test_image_prompts_of_post_images_are_moderated_at_the_players_level(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    client = app.test_client()
    auth = guest_headers(client)
    refused = client.post("/api/images", headers=auth,
                          json={**GAME, "prompt": "naked children, explicitly"})
    assert_error_shape(refused, 422, "content_refused")
