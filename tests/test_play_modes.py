"""Playing as the best text-adventure systems do: modes, story memory, cards, images on demand."""

from __future__ import annotations

import pytest

import dungeon
from dungeon.game.context import context_size
from dungeon.narrators.types import Narration
from tests.conftest import guest_headers
from tests.fakes import InlineExecutor
from tests.test_error_shape import assert_error_shape

GAME = {"genre": "fantasy", "style": "comic"}


class Recorder:
    """A narrator that records every context it is given and answers plainly."""

    name = "recorder"

    def __init__(self):
        self.contexts = []

    def narrate(self, context):
        self.contexts.append(context)
        return Narration(f"Passage {context.turn} ({context.mode}): the lantern flickers. "
                         + "The corridor goes on. " * 10, f"scene {context.turn}")


class RecorderPlugin:
    __name__ = "recorder-plugin"

    def __init__(self, recorder):
        self.recorder = recorder

    @dungeon.hookimpl
    def register_narrators(self, register):
        register(self.recorder)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def game_app(make_app, recorder):
    def make(**config):
        return make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "recorder", **config},
                        plugins=[RecorderPlugin(recorder)],
                        jobs_options={"executor": InlineExecutor()})
    return make


def _start(client, auth, **fields):
    response = client.post("/api/games", json={**GAME, **fields}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def _act(client, auth, game_id, **body):
    return client.post(f"/api/games/{game_id}/actions", json=body, headers=auth)


@pytest.mark.parametrize("mode", ["do", "say", "story"])
def test_each_mode_reaches_the_narrator_and_the_turn(game_app, recorder, mode):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    played = _act(client, auth, game_id, action="Who goes there?", mode=mode)
    assert played.status_code == 201 and played.json["turn"]["mode"] == mode
    assert recorder.contexts[-1].mode == mode
    assert recorder.contexts[-1].action == "Who goes there?"


def test_continue_writes_on_with_no_action(game_app, recorder):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    played = _act(client, auth, game_id, mode="continue")
    assert played.status_code == 201 and played.json["turn"]["action"] is None
    assert recorder.contexts[-1].mode == "continue" and recorder.contexts[-1].action is None


def test_see_makes_a_picture_without_narration(game_app, recorder, mongo_client):
    client = game_app(IMAGE_PROVIDERS="placeholder").test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    narrated = len(recorder.contexts)
    described = _act(client, auth, game_id, action="the gate at dusk", mode="see").json["turn"]
    assert described["narration"] == "the gate at dusk" and described["image"]["status"]
    scene = _act(client, auth, game_id, mode="see").json["turn"]
    assert len(recorder.contexts) == narrated  # no narration for either
    slot = mongo_client["dungeon"]["image_slots"].find_one({"_id": scene["image"]["id"]})
    assert slot["request"]["prompt"] == "the gate at dusk"  # the current scene


@pytest.mark.parametrize(("body", "field"), [({"mode": "do"}, "action"),
                                             ({"mode": "say"}, "action"),
                                             ({"mode": "continue", "action": "x"}, "action"),
                                             ({"action": "x", "mode": "shout"}, "mode")])
def test_a_mode_without_what_it_needs_is_refused(game_app, body, field):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    response = _act(client, auth, game_id, **body)
    assert field in assert_error_shape(response, 422, "validation_failed")["error"]["details"][
        "fields"]


def test_story_memory_reaches_the_narrator_and_can_change(game_app, recorder):
    client = game_app().test_client()
    auth = guest_headers(client)
    created = _start(client, auth, plot_essentials="The king is dead; the heir is hidden.",
                     authors_note="Keep it grim.")
    game_id = created["game"]["id"]
    assert created["game"]["plot_essentials"] == "The king is dead; the heir is hidden."
    _act(client, auth, game_id, action="look")
    assert recorder.contexts[-1].plot_essentials.startswith("The king is dead")
    assert recorder.contexts[-1].authors_note == "Keep it grim."
    changed = client.patch(f"/api/games/{game_id}", headers=auth,
                           json={"authors_note": "Lighter now.", "clear": ["plot_essentials"]})
    assert changed.status_code == 200 and changed.json["game"]["authors_note"] == "Lighter now."
    assert changed.json["game"]["plot_essentials"] is None
    _act(client, auth, game_id, action="look again")
    assert recorder.contexts[-1].authors_note == "Lighter now."
    assert recorder.contexts[-1].plot_essentials is None


def test_memory_over_its_bound_is_refused(game_app):
    client = game_app().test_client()
    auth = guest_headers(client)
    response = client.post("/api/games", headers=auth, json={**GAME, "authors_note": "x" * 301})
    assert "authors_note" in assert_error_shape(response, 422)["error"]["details"]["fields"]


def test_a_card_reaches_the_narrator_only_when_its_key_comes_up(game_app, recorder):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    for title, key in (("Mirela", "witch"), ("The Vault", "vault")):
        made = client.post(f"/api/games/{game_id}/cards", headers=auth,
                           json={"title": title, "keys": [key], "text": f"All about {title}."})
        assert made.status_code == 201
    _act(client, auth, game_id, action="I call for the Witch")
    assert [card.title for card in recorder.contexts[-1].cards] == ["Mirela"]


def test_cards_are_listed_changed_deleted_and_a_retried_create_makes_one(game_app):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    body = {"title": "Mirela", "keys": ["witch"], "text": "A witch of the marsh."}
    headers = {**auth, "Idempotency-Key": "card-1"}
    first = client.post(f"/api/games/{game_id}/cards", headers=headers, json=body)
    again = client.post(f"/api/games/{game_id}/cards", headers=headers, json=body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["card"]["id"] == first.json["card"]["id"]
    card_id = first.json["card"]["id"]
    changed = client.put(f"/api/games/{game_id}/cards/{card_id}", headers=auth,
                         json={**body, "text": "A witch of the hills."})
    assert changed.json["card"]["text"] == "A witch of the hills."
    listed = client.get(f"/api/games/{game_id}/cards", headers=auth).json["cards"]
    assert [c["id"] for c in listed] == [card_id]
    assert client.delete(f"/api/games/{game_id}/cards/{card_id}", headers=auth).status_code == 204
    assert client.delete(f"/api/games/{game_id}/cards/{card_id}", headers=auth).status_code == 204
    assert client.get(f"/api/games/{game_id}/cards", headers=auth).json["cards"] == []
    other = guest_headers(client)
    assert client.get(f"/api/games/{game_id}/cards", headers=other).status_code == 404


def test_a_game_has_at_most_fifty_cards(game_app):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    for i in range(50):
        client.post(f"/api/games/{game_id}/cards", headers=auth,
                    json={"title": f"C{i}", "keys": [f"k{i}"], "text": "t"})
    response = client.post(f"/api/games/{game_id}/cards", headers=auth,
                           json={"title": "one more", "keys": ["x"], "text": "t"})
    assert_error_shape(response, 409)


def test_the_context_holds_to_its_budget_and_long_games_keep_a_summary(game_app, recorder,
                                                                       mongo_client):
    client = game_app(NARRATOR_CONTEXT_CHARS=1500, NARRATOR_CONTEXT_TURNS=4,
                      SUMMARY_EVERY=2).test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth, plot_essentials="P" * 1000, authors_note="A" * 300)["game"][
        "id"]
    for i in range(9):
        _act(client, auth, game_id, action=f"step {i}")
    for context in recorder.contexts:
        assert context_size(context) <= 1500
    assert recorder.contexts[-1].summary  # the turns before the window, summarised
    assert recorder.contexts[-1].plot_essentials == "P" * 1000  # memory stays whole
    stored = mongo_client["dungeon"]["sessions"].find_one({"_id": game_id})
    assert stored["summary_through"] >= 2


@pytest.mark.parametrize("image_mode", ["on_demand", "off"])
def test_image_modes_make_pictures_only_when_asked(game_app, image_mode):
    client = game_app().test_client()
    auth = guest_headers(client)
    created = _start(client, auth, image_mode=image_mode)
    game_id = created["game"]["id"]
    assert created["game"]["image_mode"] == image_mode
    assert created["turns"][0]["image"] is None
    played = _act(client, auth, game_id, action="look").json["turn"]
    assert played["image"] is None
    asked = client.post(f"/api/games/{game_id}/turns/1/image", headers=auth)
    assert asked.status_code == 202 and asked.json["turn"]["image"]["status"] in ("pending",
                                                                                 "ready")
    seen = _act(client, auth, game_id, mode="see").json["turn"]
    assert seen["image"] is not None


def test_memory_and_cards_are_moderated_and_encrypted(make_app, recorder, mongo_client):
    from cryptography.fernet import Fernet

    app = make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "recorder",
                    "ENCRYPTION_KEYS": Fernet.generate_key().decode()},
                   plugins=[RecorderPlugin(recorder)])
    client = app.test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth, plot_essentials="The heir hides in the mill.")["game"]["id"]
    client.post(f"/api/games/{game_id}/cards", headers=auth,
                json={"title": "The mill", "keys": ["mill"], "text": "Its wheel never turns."})
    raw = str(list(mongo_client["dungeon"]["sessions"].find())) + \
        str(list(mongo_client["dungeon"]["cards"].find()))
    assert "heir hides" not in raw and "wheel never" not in raw and "'mill'" not in raw
    refused = client.post(f"/api/games/{game_id}/cards", headers=auth, json={
        "title": "x", "keys": ["y"], "text": "naked children, explicitly"})
    assert_error_shape(refused, 422, "content_refused")


def test_retry_keeps_every_alternative_and_a_choice_picks_one(game_app, recorder):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    first = _act(client, auth, game_id, action="open the chest").json["turn"]
    retried = client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth)
    assert retried.status_code == 201
    turn = retried.json["turn"]
    assert turn["chosen"] == 1 and len(turn["alternatives"]) == 2
    assert turn["alternatives"][0]["narration"] == first["narration"]
    assert recorder.contexts[-1].action == "open the chest"
    assert turn["alternatives"][0]["image"]["id"] != turn["alternatives"][1]["image"]["id"]
    picked = client.put(f"/api/games/{game_id}/turns/1/choice", headers=auth,
                        json={"index": 0}).json["turn"]
    assert picked["chosen"] == 0 and picked["narration"] == first["narration"]
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][-1]
    assert loaded["narration"] == first["narration"] and len(loaded["alternatives"]) == 2
    assert client.post(f"/api/games/{game_id}/turns/0/retry", headers=auth).status_code == 409


def test_a_failed_retry_leaves_the_alternatives_as_they_were(game_app, recorder):
    from dungeon.errors import NarratorUnavailable

    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    _act(client, auth, game_id, action="look")
    client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth)
    before = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][-1]

    def down(context):
        raise NarratorUnavailable()

    recorder.narrate = down
    assert_error_shape(client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth), 503)
    assert client.get(f"/api/games/{game_id}", headers=auth).json["turns"][-1] == before


def test_alternatives_are_bounded(game_app):
    client = game_app(MAX_ALTERNATIVES=2).test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    _act(client, auth, game_id, action="look")
    assert client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth).status_code == 201
    assert_error_shape(client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth), 409)


def test_undo_takes_back_the_last_turn_never_the_opening(game_app, mongo_client):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    _act(client, auth, game_id, action="one")
    _act(client, auth, game_id, action="two")
    undone = client.delete(f"/api/games/{game_id}/turns/last", headers=auth)
    assert undone.status_code == 200 and undone.json["game"]["turn_count"] == 2
    assert client.delete(f"/api/games/{game_id}/turns/last",
                         headers=auth).json["game"]["turn_count"] == 1
    assert_error_shape(client.delete(f"/api/games/{game_id}/turns/last", headers=auth), 409)
    turns = sorted(t["n"] for t in mongo_client["dungeon"]["turns"].find({"session_id": game_id}))
    assert turns == [0]
    again = _act(client, auth, game_id, action="three").json
    assert again["turn"]["n"] == 1 and again["game"]["turn_count"] == 2


def test_an_undo_replayed_with_its_key_takes_back_one_turn(game_app):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    _act(client, auth, game_id, action="one")
    _act(client, auth, game_id, action="two")
    headers = {**auth, "Idempotency-Key": "undo-1"}
    first = client.delete(f"/api/games/{game_id}/turns/last", headers=headers)
    replay = client.delete(f"/api/games/{game_id}/turns/last", headers=headers)
    assert first.json["game"]["turn_count"] == replay.json["game"]["turn_count"] == 2
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_an_action_from_a_stale_copy_after_an_undo_leaves_no_gap(make_app, mongo_client):
    apps = [make_app({"IMAGE_PROVIDERS": "placeholder"},
                     jobs_options={"executor": InlineExecutor()}) for _ in range(2)]
    first, second = (app.test_client() for app in apps)
    auth = guest_headers(first)
    game_id = _start(first, auth)["game"]["id"]
    _act(first, auth, game_id, action="one")
    second.get(f"/api/games/{game_id}", headers=auth)  # the second process caches 2 turns
    assert first.delete(f"/api/games/{game_id}/turns/last", headers=auth).status_code == 200
    played = _act(second, auth, game_id, action="two")
    assert played.status_code == 201 and played.json["turn"]["n"] == 1
    numbers = sorted(t["n"] for t in mongo_client["dungeon"]["turns"].find(
        {"session_id": game_id}))
    assert numbers == [0, 1] and played.json["game"]["turn_count"] == 2


def test_edit_changes_a_turn_in_place_with_the_checks_of_actions(game_app):
    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    image = _act(client, auth, game_id, action="look").json["turn"]["image"]
    edited = client.put(f"/api/games/{game_id}/turns/1", headers=auth,
                        json={"action": "look closer", "narration": "You see a key."})
    assert edited.status_code == 200
    turn = edited.json["turn"]
    assert turn["action"] == "look closer" and turn["narration"] == "You see a key."
    assert turn["image"]["id"] == image["id"]  # the image stays
    too_long = client.put(f"/api/games/{game_id}/turns/1", headers=auth,
                          json={"action": "x" * 501})
    assert_error_shape(too_long, 422)
    refused = client.put(f"/api/games/{game_id}/turns/1", headers=auth,
                         json={"narration": "naked children, explicitly"})
    assert_error_shape(refused, 422, "content_refused")
    assert client.put(f"/api/games/{game_id}/turns/0", headers=auth,
                      json={"action": "x"}).status_code == 409  # the opening has no action


def test_past_the_narration_limit_an_action_is_refused_at_once(game_app):
    app = game_app(NARRATION_LIMIT=1)
    client = app.test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    engine = app.extensions["dungeon"].game
    assert engine._narrations.acquire(blocking=False)  # another request is being narrated
    try:
        busy = _act(client, auth, game_id, action="look")
    finally:
        engine._narrations.release()
    assert_error_shape(busy, 503, "narrator_busy")
    assert busy.headers["Retry-After"] == "5"
    assert _act(client, auth, game_id, action="look").status_code == 201


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("error", ["AutoReconnect", "WTimeoutError"])
def test_an_undo_whose_commit_failed_takes_back_one_turn_on_its_retry(game_app, mongo_client,
                                                                     monkeypatch, when, error):
    from tests.faults import FaultInjector

    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    _act(client, auth, game_id, action="one")
    _act(client, auth, game_id, action="two")
    faults = FaultInjector(monkeypatch)
    faults.arm("sessions", "find_one_and_update", when, error)
    headers = {**auth, "Idempotency-Key": "undo-once"}
    first = client.delete(f"/api/games/{game_id}/turns/last", headers=headers)
    assert first.status_code in (200, 503)
    retry = client.delete(f"/api/games/{game_id}/turns/last", headers=headers)
    assert retry.status_code == 200 and retry.json["game"]["turn_count"] == 2
    faults.enabled = False
    numbers = sorted(t["n"] for t in mongo_client["dungeon"]["turns"].find(
        {"session_id": game_id}))
    assert numbers == [0, 1]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_turn_retry_whose_write_failed_adds_one_alternative_on_its_retry(
        game_app, monkeypatch, when):
    from tests.faults import FaultInjector

    client = game_app().test_client()
    auth = guest_headers(client)
    game_id = _start(client, auth)["game"]["id"]
    _act(client, auth, game_id, action="one")
    faults = FaultInjector(monkeypatch)
    faults.arm("turns", "find_one_and_update", when, "AutoReconnect")
    headers = {**auth, "Idempotency-Key": "retry-once"}
    first = client.post(f"/api/games/{game_id}/turns/1/retry", headers=headers)
    assert first.status_code in (201, 503)
    retry = client.post(f"/api/games/{game_id}/turns/1/retry", headers=headers)
    assert retry.status_code == 201
    faults.enabled = False
    turn = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][-1]
    assert len(turn["alternatives"]) == 2 and turn["chosen"] == 1
