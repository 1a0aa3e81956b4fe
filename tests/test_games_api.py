"""The game's JSON API, end to end on the embedded store."""

import threading

import pytest

import dungeon
from dungeon.errors import NarratorUnavailable
from tests.conftest import guest_headers
from tests.test_error_shape import assert_error_shape


@pytest.fixture
def game(client, auth):
    response = client.post("/api/games", headers=auth,
                           json={"genre": "fantasy", "style": "painterly", "title": "The Quest"})
    assert response.status_code == 201
    return response.json


def test_catalog_lists_genres_and_styles(client):
    catalog = client.get("/api/catalog").json
    assert {"fantasy", "scifi", "horror"} <= {g["id"] for g in catalog["genres"]}
    assert "pixel_art" in {s["id"] for s in catalog["styles"]}


def test_guest_token_is_issued(client):
    response = client.post("/api/auth/guest")
    assert response.status_code == 201
    assert response.json["token_type"] == "Bearer" and response.json["user_id"].startswith("u_")


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/games"), ("post", "/api/games"), ("get", "/api/games/abc"),
    ("post", "/api/games/abc/actions"), ("delete", "/api/games/abc"),
    ("get", "/api/games/abc/turns"), ("post", "/api/games/abc/turns/0/image")])
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz"])
def test_every_game_route_needs_a_valid_bearer_token(client, method, path, header):
    headers = {"Authorization": header} if header else {}
    response = getattr(client, method)(path, headers=headers, json={})
    assert_error_shape(response, 401, "unauthorized")


def test_expired_token_is_refused(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "TOKEN_TTL_HOURS": 1,
                    "SECRET_KEY": "k" * 40})
    token = app.extensions["dungeon"].signer.issue_guest(now=0)["token"]
    response = app.test_client().get("/api/games", headers={"Authorization": f"Bearer {token}"})
    assert assert_error_shape(response, 401)["error"]["message"] == "The bearer token has expired."


def test_create_returns_the_game_and_its_opening_turn(game):
    assert game["game"]["turn_count"] == 1 and game["game"]["version"] == 1
    assert game["game"]["title"] == "The Quest"
    opening = game["turns"][0]
    assert opening["n"] == 0 and opening["action"] is None and opening["narration"]
    assert opening["image"]["url"] == f"/api/images/{opening['image']['id']}"


def test_a_custom_prologue_is_the_opening_verbatim(client, auth):
    prologue = "The ferry left without you.\n\nNow the island is yours, and so is its secret."
    response = client.post("/api/games", headers=auth, json={
        "genre": "mystery", "style": "watercolor", "custom_prologue": prologue})
    assert response.json["turns"][0]["narration"] == prologue


def test_playing_a_turn_and_loading_the_game(client, auth, game):
    game_id = game["game"]["id"]
    played = client.post(f"/api/games/{game_id}/actions", headers=auth,
                         json={"action": "I open the old chest"})
    assert played.status_code == 201
    assert played.json["turn"]["n"] == 1 and played.json["game"]["turn_count"] == 2
    assert played.json["turn"]["narration"].startswith("You open the old chest.")
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json
    assert [t["n"] for t in loaded["turns"]] == [0, 1]
    assert loaded["turns"][1]["narration"] == played.json["turn"]["narration"]


def test_the_same_game_loads_in_another_process_at_once(make_app, client, auth, game):
    other = make_app({"IMAGE_PROVIDERS": "placeholder"})  # same store, its own cache
    response = other.test_client().get(f"/api/games/{game['game']['id']}", headers=auth)
    assert response.status_code == 200 and response.json["game"]["turn_count"] == 1


def test_other_users_cannot_see_or_touch_a_game(client, auth, game):
    mallory = guest_headers(client)
    game_id = game["game"]["id"]
    for method, path in [("get", ""), ("get", "/turns"), ("delete", "")]:
        response = getattr(client, method)(f"/api/games/{game_id}{path}", headers=mallory)
        assert_error_shape(response, 404, "session_not_found")
    response = client.post(f"/api/games/{game_id}/actions", headers=mallory,
                           json={"action": "steal everything"})
    assert_error_shape(response, 404, "session_not_found")
    assert client.get(f"/api/games/{game_id}", headers=auth).json["game"]["turn_count"] == 1


@pytest.mark.parametrize("body", [
    {"genre": "western", "style": "comic"},
    {"genre": "fantasy"},
    {"genre": "fantasy", "style": "comic", "title": "x" * 81},
    {"genre": "fantasy", "style": "comic", "title": "bell\x07"},
    {"genre": "fantasy", "style": "comic", "cheat": True},
    {"genre": ["fantasy"], "style": "comic"},
])
def test_bad_game_bodies_are_refused_with_field_details(client, auth, body):
    response = client.post("/api/games", headers=auth, json=body)
    assert assert_error_shape(response, 422, "validation_failed")["error"]["details"]["fields"]


@pytest.mark.parametrize("body", [{"action": ""}, {"action": "x" * 501}, {"action": 7},
                                  {"action": "go\u202enorth"}, {}, {"action": "go", "n": 5}])
def test_bad_actions_are_refused_and_change_nothing(client, auth, game, body):
    game_id = game["game"]["id"]
    assert_error_shape(client.post(f"/api/games/{game_id}/actions", headers=auth, json=body), 422)
    assert client.get(f"/api/games/{game_id}", headers=auth).json["game"]["turn_count"] == 1


@pytest.mark.parametrize("bad_id", ["nope", "a" * 200, "%7B%22%24gt%22%3A%22%22%7D"])
def test_bad_ids_are_plain_not_found(client, auth, bad_id):
    assert_error_shape(client.get(f"/api/games/{bad_id}", headers=auth), 404, "session_not_found")


def test_listing_shows_only_my_games_most_recent_first_in_pages(client, auth):
    ids = [client.post("/api/games", headers=auth, json={"genre": "scifi", "style": "comic"})
           .json["game"]["id"] for _ in range(5)]
    client.post("/api/games", headers=guest_headers(client), json={"genre": "scifi",
                                                                   "style": "comic"})
    client.post(f"/api/games/{ids[0]}/actions", headers=auth, json={"action": "wait"})
    seen, cursor = [], None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = client.get(f"/api/games{query}", headers=auth).json
        seen += [g["id"] for g in page["games"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert seen[0] == ids[0]


@pytest.mark.parametrize("query", ["?cursor=garbage", "?limit=0", "?limit=1000", "?limit=x"])
def test_bad_listing_queries_are_refused(client, auth, query):
    assert_error_shape(client.get(f"/api/games{query}", headers=auth), 422)


def test_older_turns_page_backwards(client, auth, game):
    game_id = game["game"]["id"]
    for i in range(5):
        client.post(f"/api/games/{game_id}/actions", headers=auth, json={"action": f"step {i}"})
    page = client.get(f"/api/games/{game_id}/turns?before=4&limit=2", headers=auth).json
    assert [t["n"] for t in page["turns"]] == [2, 3]


def test_delete_removes_the_game(client, auth, game):
    game_id = game["game"]["id"]
    assert client.delete(f"/api/games/{game_id}", headers=auth).status_code == 204
    assert_error_shape(client.get(f"/api/games/{game_id}", headers=auth), 404)


def test_retried_create_with_idempotency_key_makes_one_game(client, auth, app):
    headers = {**auth, "Idempotency-Key": "create-1"}
    body = {"genre": "horror", "style": "comic"}
    first = client.post("/api/games", headers=headers, json=body)
    second = client.post("/api/games", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    assert first.json["game"]["id"] == second.json["game"]["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert app.extensions["dungeon"].db["sessions"].count_documents({}) == 1


def test_retried_action_with_idempotency_key_makes_one_turn(client, auth, game):
    game_id = game["game"]["id"]
    headers = {**auth, "Idempotency-Key": "act-1"}
    for _ in range(3):
        response = client.post(f"/api/games/{game_id}/actions", headers=headers,
                               json={"action": "look around"})
        assert response.json["turn"]["n"] == 1
    assert client.get(f"/api/games/{game_id}", headers=auth).json["game"]["turn_count"] == 2


def test_an_idempotency_key_reused_for_another_body_is_a_conflict(client, auth, game):
    game_id = game["game"]["id"]
    headers = {**auth, "Idempotency-Key": "act-2"}
    client.post(f"/api/games/{game_id}/actions", headers=headers, json={"action": "look"})
    response = client.post(f"/api/games/{game_id}/actions", headers=headers,
                           json={"action": "run"})
    assert_error_shape(response, 409, "idempotency_conflict")


def test_idempotency_keys_are_per_user(client, auth):
    body = {"genre": "horror", "style": "comic"}
    mine = client.post("/api/games", headers={**auth, "Idempotency-Key": "k"}, json=body)
    theirs = client.post("/api/games", headers={**guest_headers(client), "Idempotency-Key": "k"},
                         json=body)
    assert mine.json["game"]["id"] != theirs.json["game"]["id"]


class BrokenNarrator:
    name = "broken"

    def narrate(self, context):
        raise NarratorUnavailable()


class NarratorPlugin:
    __name__ = "broken-narrator"

    @dungeon.hookimpl
    def register_narrators(self, register):
        register(BrokenNarrator())


def test_a_narrator_failure_is_503_and_changes_nothing(make_app):
    healthy = make_app({"IMAGE_PROVIDERS": "placeholder"})
    broken = make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "broken"},
                      plugins=[NarratorPlugin()])
    client = healthy.test_client()
    auth = guest_headers(client)
    game_id = client.post("/api/games", headers=auth,
                          json={"genre": "fantasy", "style": "comic"}).json["game"]["id"]
    response = broken.test_client().post(f"/api/games/{game_id}/actions", headers={
        **auth, "Idempotency-Key": "retry-me"}, json={"action": "look"})
    assert_error_shape(response, 503, "narrator_unavailable")
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json
    assert loaded["game"]["turn_count"] == 1 and loaded["game"]["version"] == 1
    assert len(loaded["turns"]) == 1
    # The failed attempt released its key: the retry runs for real.
    retried = client.post(f"/api/games/{game_id}/actions",
                          headers={**auth, "Idempotency-Key": "retry-me"}, json={"action": "look"})
    assert retried.status_code == 201


def test_twenty_concurrent_actions_give_contiguous_unique_turns(make_app):
    apps = [make_app({"IMAGE_PROVIDERS": "placeholder"})
            for _ in range(2)]
    client = apps[0].test_client()
    auth = guest_headers(client)
    game_id = client.post("/api/games", headers=auth,
                          json={"genre": "scifi", "style": "comic"}).json["game"]["id"]
    statuses = []

    def act(i):
        response = apps[i % 2].test_client().post(
            f"/api/games/{game_id}/actions", headers=auth, json={"action": f"action {i}"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=act, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 20
    loaded = client.get(f"/api/games/{game_id}?", headers=auth).json
    turns = client.get(f"/api/games/{game_id}/turns?limit=100", headers=auth).json["turns"]
    assert [t["n"] for t in turns] == list(range(len(turns)))
    assert len(turns) == 1 + statuses.count(201)
    assert loaded["game"]["turn_count"] == len(turns)
    assert sorted(t["action"] for t in turns[1:]) == sorted(
        {t["action"] for t in turns[1:]})  # no action saved twice


def test_a_remembered_token_is_not_trusted_past_its_expiry(make_app):
    from dungeon.errors import Unauthorized

    signer = make_app({"TOKEN_TTL_HOURS": 1}).extensions["dungeon"].signer
    issued = signer.issue_guest()
    assert signer.user_for(issued["token"]) == issued["user_id"]  # verified and remembered
    with pytest.raises(Unauthorized):
        signer.user_for(issued["token"], now=issued["expires_at"] + 1)


@pytest.mark.parametrize("data", ["[" * 60000, '{"genre": "fantasy", "style": "comic", '
                                               '"title": "\\ud800"}', "\x00", "{}" * 3])
def test_hostile_bodies_get_a_clear_4xx_never_a_500(client, auth, data):
    response = client.post("/api/games", data=data, content_type="application/json",
                           headers=auth)
    assert response.status_code in (400, 422)
    assert_error_shape(response, response.status_code)


def test_an_absurd_turn_number_is_not_found(client, auth, game):
    game_id = game["game"]["id"]
    response = client.post(f"/api/games/{game_id}/turns/{10**30}/image", headers=auth)
    assert_error_shape(response, 404)


def test_no_secret_reaches_a_log_line_over_a_whole_game(make_app, log_lines):
    from tests.conftest import API_KEY, SIGNING_KEY

    app = make_app({"IMAGE_PROVIDERS": "gpt-image-2,placeholder", "OPENAI_API_KEY": API_KEY,
                    "NARRATOR": "local", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                    "IMAGE_RETRIES": 0})
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    game_id = client.post("/api/games?wait=image", headers=auth,
                          json={"genre": "horror", "style": "comic"}).json["game"]["id"]
    client.post(f"/api/games/{game_id}/actions?wait=image", headers=auth,
                json={"action": "scream"})
    client.get(f"/api/games/{game_id}", headers={"Authorization": "Bearer " + token[:-3]})
    lines = log_lines()
    assert any("image attempt failed" in line for line in lines)  # the failing path ran
    for secret in (API_KEY, SIGNING_KEY, token):
        assert not [line for line in lines if secret in line]
