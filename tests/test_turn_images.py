"""Turn images in the background: pending, then ready; waiting; recovery; retries."""

import threading
from datetime import timedelta

import pytest

from dungeon.errors import ProviderUnavailable
from dungeon.images.types import GeneratedImage
from tests.fakes import PNG, FakeProvider
from tests.faults import FaultInjector
from tests.test_error_shape import assert_error_shape


class GatedProvider(FakeProvider):
    """Holds every image until the test opens the gate."""

    def __init__(self, name="gated"):
        super().__init__(name)
        self.gate = threading.Event()

    def generate(self, request, timeout):
        assert self.gate.wait(10), "gate never opened"
        return super().generate(request, timeout)


@pytest.fixture
def gated():
    provider = GatedProvider()
    yield provider
    provider.gate.set()


@pytest.fixture
def play(make_app, gated):
    app = make_app({"IMAGE_PROVIDERS": "gated,placeholder"}, providers=[gated])
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/games", headers=auth, json={"genre": "fantasy",
                                                            "style": "comic"})
    return app, client, auth, created.json


def test_a_loaded_game_shows_its_image_once_made(play, gated):
    app, client, auth, created = play
    url = f"/api/games/{created['game']['id']}"
    for _ in range(2):  # the second answer is the kept one
        assert client.get(url, headers=auth).json["turns"][0]["image"]["status"] == "pending"
    gated.gate.set()
    app.extensions["dungeon"].jobs.wait(created["turns"][0]["image"]["id"], 5)
    for _ in range(2):
        assert client.get(url, headers=auth).json["turns"][0]["image"]["status"] == "ready"


def test_a_retried_turn_shows_every_version_final_once_its_images_are_made(
        play, gated, monkeypatch):
    app, client, auth, created = play
    game_id = created["game"]["id"]
    first = client.post(f"/api/games/{game_id}/actions", headers=auth,
                        json={"action": "open the chest"}).json["turn"]
    retried = client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth).json["turn"]
    slots = [created["turns"][0]["image"]["id"], first["image"]["id"], retried["image"]["id"]]
    gated.gate.set()
    for slot in slots:
        app.extensions["dungeon"].jobs.wait(slot, 5)
    stored = app.extensions["dungeon"].sessions.turns.find_one(
        {"session_id": game_id, "n": 1})
    assert [a["image"]["status"] for a in stored["alternatives"]] == ["ready", "ready"]
    injector = FaultInjector(monkeypatch)
    for _ in range(2):
        loaded = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][-1]
        assert [a["image"]["status"] for a in loaded["alternatives"]] == ["ready", "ready"]
    # Every image final, in the store and in the kept turns: no slot is asked again.
    assert not [call for call in injector.calls if call.collection == "image_slots"]


@pytest.mark.parametrize("write", [0, 1], ids=["the turn's image", "its version's image"])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("error", ["AutoReconnect", "WTimeoutError", "OperationFailure"])
def test_a_finished_image_the_turn_was_not_told_of_still_shows_ready(play, gated, monkeypatch,
                                                                     write, when, error):
    if when == "after" and error == "OperationFailure":
        pytest.skip("a refused write applied nothing")
    app, client, auth, created = play
    game_id = created["game"]["id"]
    first = client.post(f"/api/games/{game_id}/actions", headers=auth,
                        json={"action": "open the chest"}).json["turn"]
    gated.gate.set()
    for slot in (created["turns"][0]["image"]["id"], first["image"]["id"]):
        app.extensions["dungeon"].jobs.wait(slot, 5)
    injector = FaultInjector(monkeypatch)
    # The retry's image job makes the next two: its turn's image, then its version's.
    fault = injector.arm("turns", "update_one", when, error, skip=write)
    retried = client.post(f"/api/games/{game_id}/turns/1/retry", headers=auth).json["turn"]
    app.extensions["dungeon"].jobs.wait(retried["image"]["id"], 5)
    assert injector.fired == [fault]
    for _ in range(2):  # the slot is what reads go by, whatever the turn was told
        loaded = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][1]
        assert loaded["image"]["status"] == "ready"
        assert [a["image"]["status"] for a in loaded["alternatives"]] == ["ready", "ready"]


def test_a_turn_answers_at_once_with_a_pending_image(play, gated):
    app, client, auth, created = play
    image = created["turns"][0]["image"]
    assert image["status"] == "pending"
    response = client.get(image["url"])
    assert response.status_code == 202 and response.headers["Retry-After"] == "2"
    assert response.headers["Cache-Control"] == "no-store"  # only the final image is cached
    assert response.json["image"]["status"] == "pending"
    gated.gate.set()
    app.extensions["dungeon"].jobs.wait(image["id"], 5)
    ready = client.get(image["url"])
    assert ready.status_code == 200 and ready.data == PNG
    assert ready.headers["Cache-Control"] == "private, no-cache"  # ends with its game
    revalidated = client.get(image["url"], headers={"If-None-Match": ready.headers["ETag"]})
    assert revalidated.status_code == 304
    loaded = client.get(f"/api/games/{created['game']['id']}", headers=auth).json
    assert loaded["turns"][0]["image"] == {**image, "status": "ready", "provider": "gated",
                                           "placeholder": False}


def test_wait_image_returns_the_turn_with_its_image_ready(play, gated):
    app, client, auth, created = play
    gated.gate.set()
    response = client.post(f"/api/games/{created['game']['id']}/actions?wait=image",
                           headers=auth, json={"action": "look"})
    assert response.json["turn"]["image"]["status"] == "ready"
    assert response.json["turn"]["image"]["provider"] == "gated"


def test_get_image_can_wait_for_a_pending_image(play, gated):
    app, client, auth, created = play
    url = created["turns"][0]["image"]["url"]
    threading.Timer(0.05, gated.gate.set).start()
    assert client.get(f"{url}?wait=image").status_code == 200


def test_image_left_pending_by_a_dead_process_is_picked_up_again(make_app, clock):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    state = app.extensions["dungeon"]
    now = state.sessions.now()
    state.db["sessions"].insert_one({"_id": "x" * 22, "user_id": "u_someone"})
    state.db["image_slots"].insert_one({
        "_id": "s_" + "A" * 22, "session_id": "x" * 22, "n": 0, "status": "pending",
        "request": {"prompt": "a ruined abbey", "genre": "horror", "style": "comic",
                    "aspect": "landscape", "quality": "standard"},
        "claims": 1, "created_at": now - timedelta(hours=1),
        "lease_until": now - timedelta(minutes=30)})
    client = app.test_client()
    client.get("/api/images/s_" + "A" * 22)  # reading it claims it again
    state.jobs.wait("s_" + "A" * 22, 5)
    response = client.get("/api/images/s_" + "A" * 22)
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert state.db["image_slots"].find_one({"_id": "s_" + "A" * 22})["claims"] == 2


def test_an_image_abandoned_too_often_resolves_to_the_placeholder(make_app):
    never = FakeProvider("never")
    app = make_app({"IMAGE_PROVIDERS": "never,placeholder"}, providers=[never])
    state = app.extensions["dungeon"]
    now = state.sessions.now()
    state.db["image_slots"].insert_one({
        "_id": "s_" + "B" * 22, "session_id": "x" * 22, "n": 0, "status": "pending",
        "request": {"prompt": "p", "genre": "fantasy", "style": "comic", "aspect": "landscape",
                    "quality": "standard"},
        "claims": 3, "created_at": now, "lease_until": now - timedelta(seconds=1)})
    slot = state.jobs.find_and_reclaim("s_" + "B" * 22)
    assert slot["status"] == "ready" and slot["placeholder"] is True
    assert never.calls == []


def test_a_full_queue_gives_the_placeholder_at_once(make_app, gated):
    app = make_app({"IMAGE_PROVIDERS": "gated,placeholder", "IMAGE_WORKERS": 1,
                    "IMAGE_QUEUE": 0}, providers=[gated])
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    first = client.post("/api/games", headers=auth, json={"genre": "fantasy", "style": "comic"})
    second = client.post("/api/games", headers=auth, json={"genre": "fantasy", "style": "comic"})
    assert first.json["turns"][0]["image"]["status"] == "pending"
    assert second.json["turns"][0]["image"]["status"] == "ready"
    assert second.json["turns"][0]["image"]["placeholder"] is True


def test_a_placeholder_turn_image_can_be_retried(make_app):
    flaky = FakeProvider("flaky").enqueue(*[ProviderUnavailable("down")] * 3,
                                          GeneratedImage(data=PNG))
    app = make_app({"IMAGE_PROVIDERS": "flaky,placeholder"}, providers=[flaky])
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/games?wait=image", headers=auth,
                          json={"genre": "fantasy", "style": "comic"}).json
    game_id = created["game"]["id"]
    assert created["turns"][0]["image"]["placeholder"] is True
    retried = client.post(f"/api/games/{game_id}/turns/0/image?wait=image", headers=auth)
    assert retried.status_code == 202
    image = retried.json["turn"]["image"]
    assert image["status"] == "ready" and image["provider"] == "flaky"
    assert image["id"] != created["turns"][0]["image"]["id"]
    again = client.post(f"/api/games/{game_id}/turns/0/image", headers=auth)
    assert_error_shape(again, 409)
    assert_error_shape(client.post(f"/api/games/{game_id}/turns/7/image", headers=auth), 404)


def test_turn_image_jobs_keep_the_request_id_in_their_logs(play, gated, log_lines):
    app, client, auth, created = play
    client.post(f"/api/games/{created['game']['id']}/actions", headers={
        **auth, "X-Request-ID": "turn-req-1"}, json={"action": "look"})
    gated.gate.set()
    loaded = client.get(f"/api/games/{created['game']['id']}", headers=auth).json
    app.extensions["dungeon"].jobs.wait(loaded["turns"][1]["image"]["id"], 5)
    lines = [line for line in log_lines() if "image attempt succeeded" in line]
    assert any('"request_id": "turn-req-1"' in line for line in lines)


def test_waiting_for_an_image_another_worker_makes_polls_the_store(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    state = app.extensions["dungeon"]
    now = state.sessions.now()
    state.db["sessions"].insert_one({"_id": "x" * 22, "user_id": "u_someone"})
    slot_id = "s_" + "C" * 22
    image_id = state.image_store.put(PNG, "image/png")
    state.db["image_slots"].insert_one({
        "_id": slot_id, "session_id": "x" * 22, "n": 0, "status": "pending",
        "request": {"prompt": "p", "genre": "fantasy", "style": "comic", "aspect": "landscape",
                    "quality": "standard"},
        "claims": 1, "created_at": now, "lease_until": now + timedelta(minutes=5)})

    def other_worker_finishes():
        state.db["image_slots"].update_one({"_id": slot_id}, {"$set": {
            "status": "ready", "image_id": image_id, "provider": "elsewhere",
            "placeholder": False}})

    threading.Timer(0.1, other_worker_finishes).start()
    response = app.test_client().get(f"/api/images/{slot_id}?wait=image")
    assert response.status_code == 200 and response.data == PNG


def test_a_slot_that_outlived_its_game_shows_nothing(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    state = app.extensions["dungeon"]
    now = state.sessions.now()
    image_id = state.image_store.put(PNG, "image/png")
    state.db["image_slots"].insert_one({
        "_id": "s_" + "D" * 22, "session_id": "gone" * 5 + "xx", "n": 0, "status": "ready",
        "image_id": image_id, "request": {"prompt": "p", "genre": "fantasy", "style": "comic",
                                          "aspect": "landscape", "quality": "standard"},
        "claims": 1, "created_at": now, "lease_until": now})
    assert app.test_client().get("/api/images/s_" + "D" * 22).status_code == 404


def test_a_turns_content_address_is_not_served_on_its_own(play, gated):
    app, client, auth, created = play
    gated.gate.set()
    slot_id = created["turns"][0]["image"]["id"]
    app.extensions["dungeon"].jobs.wait(slot_id, 5)
    served = client.get(created["turns"][0]["image"]["url"])
    assert served.status_code == 200
    content_id = app.extensions["dungeon"].db["image_slots"].find_one({"_id": slot_id})["image_id"]
    assert content_id not in served.headers["ETag"]
    assert client.get(f"/api/images/{content_id}").status_code == 404
