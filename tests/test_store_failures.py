"""What a client sees when the database fails as a real replica set does: one test per failure.

Faults are pymongo's own exceptions, raised by the embedded store before an
operation (nothing applied) or after it (applied, the answer lost).
"""

from __future__ import annotations

import sys
import threading
from datetime import timedelta

import pytest
from pymongo.errors import BulkWriteError, CursorNotFound, OperationFailure

from dungeon import db
from dungeon.errors import ModelGone, ProviderAuthError
from dungeon.images.store import image_id_for
from dungeon.images.types import ImageRequest
from tests.fakes import PNG, FakeNow, FakeProvider, InlineExecutor
from tests.faults import FaultInjector
from tests.test_error_shape import assert_error_shape

GAME = {"genre": "horror", "style": "comic"}


@pytest.fixture
def now():
    return FakeNow()


@pytest.fixture
def faults(monkeypatch):
    return FaultInjector(monkeypatch)


@pytest.fixture
def world(make_app, now, faults):
    """An app whose images are made at once, with a movable wall clock and injectable faults."""
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local"},
                   store_options={"now": now}, jobs_options={"executor": InlineExecutor()})
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    return app, client, {"Authorization": f"Bearer {token}"}


def _game(client, auth, key="create"):
    response = client.post("/api/games", json=GAME, headers={**auth, "Idempotency-Key": key})
    assert response.status_code == 201, response.json
    return response.json


def _turns(app, game_id):
    return sorted(app.extensions["dungeon"].db["turns"].find({"session_id": game_id}),
                  key=lambda t: t["n"])


# --- 1. an unknown commit outcome never duplicates a turn or a game ------------------

@pytest.mark.parametrize("error", ["WTimeoutError", "AutoReconnect"])
def test_a_turn_whose_session_advance_lost_its_answer_is_played_once(world, faults, error):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("sessions", "find_one_and_update", "after", error)
    headers = {**auth, "Idempotency-Key": "open-door"}
    first = client.post(f"/api/games/{game_id}/actions", json={"action": "open the door"},
                        headers=headers)
    # The turn is the commit: it is stored, so the client is told so.
    assert first.status_code == 201
    retry = client.post(f"/api/games/{game_id}/actions", json={"action": "open the door"},
                        headers=headers)
    assert retry.status_code == 201 and retry.json["turn"]["n"] == 1
    assert [t["action"] for t in _turns(app, game_id)] == [None, "open the door"]
    assert client.get(f"/api/games/{game_id}", headers=auth).json["game"]["turn_count"] == 2


def test_a_turn_insert_whose_answer_was_lost_is_settled_by_one_read(world, faults):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("turns", "insert_one", "after", "WTimeoutError")
    response = client.post(f"/api/games/{game_id}/actions", json={"action": "look"},
                           headers={**auth, "Idempotency-Key": "look"})
    assert response.status_code == 201 and response.json["turn"]["n"] == 1
    assert len(_turns(app, game_id)) == 2


def test_an_unsettled_outcome_is_503_with_retry_after_and_the_retry_plays_it_once(world, faults):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("turns", "insert_one", "after", "AutoReconnect")
    faults.arm("turns", "find_one", "before", "AutoReconnect")  # the settling read fails too
    headers = {**auth, "Idempotency-Key": "unsure"}
    failed = client.post(f"/api/games/{game_id}/actions", json={"action": "wait"},
                         headers=headers)
    assert_error_shape(failed, 503)
    assert failed.json["error"]["code"] == "store_unavailable"
    assert "same Idempotency-Key" in failed.json["error"]["message"]
    assert failed.headers["Retry-After"]
    retry = client.post(f"/api/games/{game_id}/actions", json={"action": "wait"}, headers=headers)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert [t["action"] for t in _turns(app, game_id)] == [None, "wait"]


def test_a_game_whose_insert_lost_its_answer_is_created_once(world, faults):
    app, client, auth = world
    faults.arm("sessions", "insert_one", "after", "WTimeoutError")
    faults.arm("sessions", "find_one", "before", "NetworkTimeout")
    failed = client.post("/api/games", json=GAME, headers={**auth, "Idempotency-Key": "new"})
    assert_error_shape(failed, 503)
    retry = client.post("/api/games", json=GAME, headers={**auth, "Idempotency-Key": "new"})
    assert retry.status_code == 201
    games = list(app.extensions["dungeon"].db["sessions"].find())
    assert [g["_id"] for g in games] == [retry.json["game"]["id"]]
    assert retry.json["turns"][0]["image"]["status"] == "ready"


# --- 2. a turn image is never pending for good -----------------------------------------

def test_a_saved_turn_keeps_its_image_when_the_answer_of_its_commit_was_lost(world, faults):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("turns", "insert_one", "after", "AutoReconnect")
    faults.arm("turns", "find_one", "before", "AutoReconnect")
    client.post(f"/api/games/{game_id}/actions", json={"action": "run"}, headers=auth)
    turn = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][-1]
    assert turn["action"] == "run" and turn["image"]["status"] == "ready"
    assert client.get(turn["image"]["url"]).status_code == 200


def test_a_turn_whose_slot_is_missing_reads_as_a_retryable_placeholder(world, now):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    state = app.extensions["dungeon"]
    turn = _turns(app, game_id)[0]
    state.db["turns"].update_one({"_id": turn["_id"]}, {"$set": {"image.status": "pending"}})
    state.db["image_slots"].delete_many({})  # a failover rolled the slot back
    state.sessions.forget_cached(turn["session_id"], game_id)
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][0]["image"]
    assert loaded["status"] == "ready" and loaded["placeholder"] is True
    assert client.get(loaded["url"]).status_code == 200
    assert client.post(f"/api/games/{game_id}/turns/0/image", headers=auth).status_code == 202


def test_every_store_collection_uses_the_configured_write_concern(make_app):
    from pymongo import MongoClient

    # connect=False: nothing is contacted; the collections only carry their options.
    client = MongoClient("mongodb://db.invalid:27017", connect=False,
                         serverSelectionTimeoutMS=50)
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "MONGO_WRITE_CONCERN": "majority"},
                   client=client)
    state = app.extensions["dungeon"]
    for collection in (state.sessions.sessions, state.sessions.turns, state.jobs.slots,
                       state.idempotency.collection, state.image_store.files,
                       state.image_store.chunks):
        assert collection.write_concern.document == {"w": "majority", "j": True,
                                                      "wtimeout": 5000}, collection.name
    client.close()


# --- 3. a cut-off GridFS write cannot poison a content id --------------------------------

def test_orphan_chunks_of_a_cut_off_upload_are_replaced(world):
    app, client, auth = world
    state = app.extensions["dungeon"]
    state.image_store.put(b"\x89PNG\r\n\x1a\nanother", "image/png")  # GridFS's indexes exist
    image_id = image_id_for(PNG)
    state.db["images.chunks"].insert_one({"files_id": image_id, "n": 0, "data": b"torn"})
    assert state.image_store.put(PNG, "image/png") == image_id
    stored = state.image_store.get(image_id)
    assert stored is not None and stored.data == PNG


def test_an_upload_cut_off_between_chunks_and_file_is_written_again(world, faults):
    app, client, auth = world
    state = app.extensions["dungeon"]
    faults.arm("images.files", "insert_one", "before", "AutoReconnect")
    image_id = state.image_store.put(PNG, "image/png")
    assert state.image_store.get(image_id).data == PNG


# --- 4. a stuck idempotency claim ends with its lease -----------------------------------

def test_a_claim_left_by_a_dead_process_is_taken_over_after_its_lease(world, now):
    app, client, auth = world
    state = app.extensions["dungeon"]
    user = client.get("/api/games", headers=auth)  # any authenticated call: learn nothing
    assert user.status_code == 200

    user_id = state.signer.user_for(auth["Authorization"].split()[1])
    body = dict(GAME)
    state.db["idempotency_keys"].insert_one({
        "_id": f"{user_id}:killed", "digest": state.idempotency.digest("create_game", body),
        "state": "running", "owner": "dead-process", "created_at": now(),
        "lease_until": now() + timedelta(seconds=120), "expires_at": now() + timedelta(hours=1)})
    early = client.post("/api/games", json=body, headers={**auth, "Idempotency-Key": "killed"})
    assert_error_shape(early, 409)
    assert 110 <= int(early.headers["Retry-After"]) <= 120
    now.advance(121)
    late = client.post("/api/games", json=body, headers={**auth, "Idempotency-Key": "killed"})
    assert late.status_code == 201


# --- 5. the embedded store under threads ------------------------------------------------

def test_the_embedded_store_serves_image_and_request_threads_together():
    # Threads switch as often as the interpreter allows, so that unserialised
    # access would meet a document in mid-update within a few hundred rounds.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    database = db.embedded_client()["race"]
    slots = database["image_slots"]
    slots.insert_many([{"_id": f"s{i}", "status": "pending", "n": i} for i in range(20)])
    errors: list[BaseException] = []

    def image_thread(offset):
        try:
            for round_ in range(300):
                slot = f"s{(round_ + offset) % 20}"
                slots.update_one({"_id": slot}, {"$set": {f"extra_{round_}": round_,
                                                          "status": "ready"}})
                slots.update_one({"_id": slot}, {"$unset": {f"extra_{round_ - 1}": ""}})
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    def request_thread():
        try:
            for _ in range(300):
                list(slots.find({"status": "ready"}))
                slots.find_one({"_id": "s7"})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=image_thread, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=request_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert slots.count_documents({"status": "ready"}) == 20


# --- 6. delete is complete ----------------------------------------------------------------

def test_a_deleted_games_images_are_no_longer_served_and_unused_ones_are_collected(
        make_app, now):
    painter = FakeProvider("painter")
    app = make_app({"IMAGE_PROVIDERS": "painter,placeholder"}, providers=[painter],
                   store_options={"now": now}, jobs_options={"executor": InlineExecutor()})
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    state = app.extensions["dungeon"]
    keep = _game(client, auth, "keep")
    doomed = _game(client, auth, "doomed")
    doomed_url = doomed["turns"][0]["image"]["url"]
    slot = state.db["image_slots"].find_one({"_id": doomed["turns"][0]["image"]["id"]})
    assert client.get(doomed_url).status_code == 200
    now.advance(25 * 3600)  # past IMAGE_RETENTION_HOURS
    assert client.delete(f"/api/games/{doomed['game']['id']}", headers=auth).status_code == 204
    assert client.get(doomed_url).status_code == 404
    assert state.db["image_slots"].find_one({"session_id": doomed["game"]["id"]}) is None
    # Both games' pictures are the same bytes: still used by the game that lives.
    assert state.image_store.get(slot["image_id"]) is not None
    assert client.get(keep["turns"][0]["image"]["url"]).status_code == 200
    client.delete(f"/api/games/{keep['game']['id']}", headers=auth)
    assert state.image_store.get(slot["image_id"]) is None


def test_slots_expire_with_their_games_turns(world, now):
    app, client, auth = world
    created = _game(client, auth)
    state = app.extensions["dungeon"]
    slot = state.db["image_slots"].find_one({"_id": created["turns"][0]["image"]["id"]})
    turn = _turns(app, created["game"]["id"])[0]
    assert slot["expires_at"] == turn["expires_at"]
    assert "expiry_ttl" in state.db["image_slots"].index_information()


def test_the_sweep_collects_images_nothing_uses(world, now):
    app, client, auth = world
    state = app.extensions["dungeon"]
    orphan = state.image_store.put(b"\x89PNG\r\n\x1a\nunused", "image/png")
    used = _game(client, auth)
    assert state.jobs.collect() == 0  # young images are kept
    now.advance(25 * 3600)
    assert state.jobs.collect() == 1
    assert state.image_store.get(orphan) is None
    assert client.get(used["turns"][0]["image"]["url"]).status_code == 200


def test_an_interrupted_delete_is_finished_by_its_retry(world, faults):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("turns", "delete_many", "before", "AutoReconnect")
    assert_error_shape(client.delete(f"/api/games/{game_id}", headers=auth), 503)
    assert client.delete(f"/api/games/{game_id}", headers=auth).status_code == 404
    state = app.extensions["dungeon"]
    assert state.db["turns"].find_one({"session_id": game_id}) is None
    assert state.db["image_slots"].find_one({"session_id": game_id}) is None


# --- 7. list cursors ----------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                    "2026-01-01T00:00:00"])
def test_a_crafted_list_cursor_is_refused_with_422(client, auth, moment):
    import base64
    import json

    raw = json.dumps([moment, "A" * 22]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = client.get(f"/api/games?cursor={cursor}", headers=auth)
    assert_error_shape(response, 422)
    assert "cursor" in response.json["error"]["message"]
    assert "cursor" in response.json["error"]["details"]["fields"]


# --- 8. every store error answers JSON ----------------------------------------------------

@pytest.mark.parametrize("error", [
    OperationFailure("WriteConflict", 112), OperationFailure("operation exceeded time limit", 262),
    OperationFailure("InterruptedDueToReplStateChange", 11602),
    CursorNotFound("cursor id not found", 43),
    BulkWriteError({"writeErrors": [{"code": 2, "errmsg": "bad"}], "nInserted": 0})])
def test_store_errors_that_are_not_connection_errors_answer_503(world, monkeypatch, error):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    state = app.extensions["dungeon"]
    state.sessions.forget_cached(state.signer.user_for(auth["Authorization"].split()[1]),
                                 game_id)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(state.sessions.turns, "find", fail)
    response = client.get(f"/api/games/{game_id}", headers=auth)
    assert_error_shape(response, 503)
    assert response.json["error"]["code"] == "store_unavailable"
    assert response.headers["Retry-After"]


def test_an_index_conflict_at_start_up_fails_readiness_with_its_reason(make_app, monkeypatch,
                                                                       caplog):
    from mongomock.collection import Collection

    create_index = Collection.create_index

    def conflicting(collection, keys, **options):
        # What a server answers when an index of that name exists with other options.
        if options.get("name") == "session_turn":
            raise OperationFailure(
                "An existing index has the same name as the requested index. Requested index: "
                "{ v: 2, unique: true, key: { session_id: 1, n: 1 }, name: \"session_turn\" }",
                86, {"ok": 0, "code": 86, "codeName": "IndexKeySpecsConflict",
                     "errmsg": "An existing index has the same name as the requested index "
                               "(session_turn)"})
        return create_index(collection, keys, **options)

    monkeypatch.setattr(Collection, "create_index", conflicting)
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    error = ready.json["checks"]["store"]["error"]
    assert "indexes not created" in error and "session_turn" in error
    assert any(getattr(r, "error_code", None) in (85, 86) for r in caplog.records)


# --- 9. providers that come back ------------------------------------------------------------

def test_a_model_reported_gone_is_tried_again_after_the_recheck_interval(make_app, clock):
    flaky = FakeProvider("flaky").enqueue(ModelGone("The model does not exist", http_status=404,
                                                    error_code="model_not_found"))
    app = make_app({"IMAGE_PROVIDERS": "flaky,placeholder", "MODEL_RECHECK_SECONDS": 600},
                   providers=[flaky])
    images = app.extensions["dungeon"].images
    assert images.generate(ImageRequest("a cave")).placeholder
    assert images.generate(ImageRequest("a cave")).placeholder
    assert len(flaky.calls) == 1  # disabled: not called
    clock.advance(601)
    assert images.generate(ImageRequest("a cave")).provider == "flaky"
    assert len(flaky.calls) == 2 and "flaky" not in images.disabled


def test_a_shared_key_auth_failure_shows_in_readiness_and_is_logged_once(make_app, caplog):
    denied = FakeProvider("denied").enqueue(*[ProviderAuthError(
        "Incorrect API key provided", http_status=401, error_code="invalid_api_key")] * 3)
    app = make_app({"IMAGE_PROVIDERS": "denied,placeholder"}, providers=[denied])
    images = app.extensions["dungeon"].images
    for _ in range(3):
        images.generate(ImageRequest("a cave"))
    said = [r for r in caplog.records if "refused our credentials" in r.getMessage()]
    assert len(said) == 1
    entry = app.test_client().get("/readyz").json["checks"]["image_providers"][0]
    assert entry["state"] == "open" and entry["opened_by"] == "auth_error"


# --- 10. replays ------------------------------------------------------------------------------

def test_replays_are_answered_before_rate_limiting(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "RATE_LIMIT_GAMES": "2/hour"})
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "same"}
    statuses = [client.post("/api/games", json=GAME, headers=headers).status_code
                for _ in range(25)]
    assert statuses == [201] * 25


def test_a_replay_shows_the_turns_current_image(make_app, now):
    gate = threading.Event()

    class Slow(FakeProvider):
        def generate(self, request, timeout):
            gate.wait(5)
            return super().generate(request, timeout)

    app = make_app({"IMAGE_PROVIDERS": "slow,placeholder"}, providers=[Slow("slow")],
                   store_options={"now": now})
    client = app.test_client()
    token = client.post("/api/auth/guest").json["token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "look"}
    first = client.post("/api/games", json=GAME, headers=headers)
    assert first.json["turns"][0]["image"]["status"] == "pending"
    gate.set()
    app.extensions["dungeon"].jobs.wait(first.json["turns"][0]["image"]["id"], 5)
    replay = client.post("/api/games", json=GAME, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["turns"][0]["image"]["status"] == "ready"
    assert replay.json["game"]["id"] == first.json["game"]["id"]


# --- what a second look found ------------------------------------------------------------

def test_a_takeover_is_not_rate_limited_and_keeps_its_key(make_app, now, faults):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "RATE_LIMIT_ACTIONS": "1/minute"},
                   store_options={"now": now}, jobs_options={"executor": InlineExecutor()})
    client = app.test_client()
    auth = {"Authorization": "Bearer " + client.post("/api/auth/guest").json["token"]}
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("turns", "insert_one", "after", "AutoReconnect")
    faults.arm("turns", "find_one", "before", "AutoReconnect")
    headers = {**auth, "Idempotency-Key": "limited"}
    assert client.post(f"/api/games/{game_id}/actions", json={"action": "go"},
                       headers=headers).status_code == 503
    retry = client.post(f"/api/games/{game_id}/actions", json={"action": "go"}, headers=headers)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"


def test_a_key_reused_after_its_record_expired_names_a_new_request(world):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    headers = {**auth, "Idempotency-Key": "reused"}
    client.post(f"/api/games/{game_id}/actions", json={"action": "look"}, headers=headers)
    app.extensions["dungeon"].db["idempotency_keys"].delete_many({})  # as the TTL monitor does
    again = client.post(f"/api/games/{game_id}/actions", json={"action": "open the chest"},
                        headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert [t["action"] for t in _turns(app, game_id)] == [None, "look", "open the chest"]


def test_a_record_kept_by_an_earlier_release_is_replayed_verbatim(world, now):

    app, client, auth = world
    state = app.extensions["dungeon"]
    user_id = state.signer.user_for(auth["Authorization"].split()[1])
    state.db["idempotency_keys"].insert_one({
        "_id": f"{user_id}:old", "digest": state.idempotency.digest("create_game", dict(GAME)),
        "state": "done", "answer": {"status": 201, "body": {"game": {"id": "kept"}}},
        "created_at": now(), "expires_at": now() + timedelta(hours=1)})
    replay = client.post("/api/games", json=GAME, headers={**auth, "Idempotency-Key": "old"})
    assert replay.status_code == 201 and replay.json == {"game": {"id": "kept"}}


def test_a_lost_answer_is_never_called_nothing_saved(world, faults):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    faults.arm("turns", "insert_one", "before", "NetworkTimeout")  # may still be running
    response = client.post(f"/api/games/{game_id}/actions", json={"action": "wait"},
                           headers=auth)
    assert_error_shape(response, 503)
    assert "nothing was saved" not in response.json["error"]["message"]
    assert "same Idempotency-Key" in response.json["error"]["message"]


def test_a_write_no_server_received_is_nothing_saved(world, monkeypatch):
    from mongomock.collection import Collection
    from pymongo.errors import ServerSelectionTimeoutError

    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    insert_one = Collection.insert_one

    def unreachable(collection, document, *args, **kwargs):
        if collection.name == "turns":
            raise ServerSelectionTimeoutError("no servers available")
        return insert_one(collection, document, *args, **kwargs)

    monkeypatch.setattr(Collection, "insert_one", unreachable)
    response = client.post(f"/api/games/{game_id}/actions", json={"action": "wait"},
                           headers=auth)
    assert_error_shape(response, 503)
    assert "nothing was saved" in response.json["error"]["message"]


def test_reading_a_game_never_fails_on_the_reclaim_write_behind_it(world, now, faults):
    app, client, auth = world
    game_id = _game(client, auth)["game"]["id"]
    state = app.extensions["dungeon"]
    turn = _turns(app, game_id)[0]
    state.db["turns"].update_one({"_id": turn["_id"]}, {"$set": {"image.status": "pending"}})
    state.db["image_slots"].update_one({"_id": turn["image"]["id"]}, {"$set": {
        "status": "pending", "lease_until": now() - timedelta(minutes=5)}})
    faults.arm("image_slots", "find_one_and_update", "before", "AutoReconnect")
    assert client.get(f"/api/games/{game_id}", headers=auth).status_code == 200


def test_a_delete_cut_off_part_way_already_hides_the_games_images(world, faults):
    app, client, auth = world
    created = _game(client, auth)
    url = created["turns"][0]["image"]["url"]
    faults.arm("turns", "delete_many", "before", "AutoReconnect")
    assert_error_shape(client.delete(f"/api/games/{created['game']['id']}", headers=auth), 503)
    assert client.get(url).status_code == 404  # before any retry


def test_a_slot_is_not_restored_for_a_turn_that_is_gone(world):
    app, client, auth = world
    state = app.extensions["dungeon"]
    restored = state.jobs.restore("s_" + "E" * 22, "Z" * 22, 0, ImageRequest("p"), None)
    assert restored is None
    assert state.db["image_slots"].find_one({"_id": "s_" + "E" * 22}) is None


def test_an_image_retry_that_lost_the_race_gives_up_its_slot(world, monkeypatch):
    app, client, auth = world
    state = app.extensions["dungeon"]
    game_id = _game(client, auth)["game"]["id"]
    real = state.sessions.turns.update_one

    def someone_else_first(query, update, *args, **kwargs):
        if "image.id" in query:  # another retry replaced the image just before
            real({"session_id": query["session_id"], "n": query["n"]},
                 {"$set": {"image.id": "s_" + "F" * 22}})
        return real(query, update, *args, **kwargs)

    monkeypatch.setattr(state.sessions.turns, "update_one", someone_else_first)
    response = client.post(f"/api/games/{game_id}/turns/0/image", headers=auth)
    assert_error_shape(response, 409, "image_conflict")
    slots = [s["_id"] for s in state.db["image_slots"].find({"session_id": game_id})]
    assert len(slots) == 1  # the new slot was discarded


def test_a_replay_on_another_process_shows_the_game_as_it_now_is(make_app, now):
    apps = [make_app({"IMAGE_PROVIDERS": "placeholder"}, store_options={"now": now},
                     jobs_options={"executor": InlineExecutor()}) for _ in range(2)]
    first, second = (app.test_client() for app in apps)
    auth = {"Authorization": "Bearer " + first.post("/api/auth/guest").json["token"]}
    game_id = _game(first, auth)["game"]["id"]
    second.get(f"/api/games/{game_id}", headers=auth)  # cached there with one turn
    headers = {**auth, "Idempotency-Key": "once"}
    played = first.post(f"/api/games/{game_id}/actions", json={"action": "x"}, headers=headers)
    replay = second.post(f"/api/games/{game_id}/actions", json={"action": "x"}, headers=headers)
    assert replay.json["game"]["turn_count"] == played.json["game"]["turn_count"] == 2
