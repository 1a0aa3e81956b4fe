"""The session store, on the embedded store and, with DUNGEON_TEST_MONGO_URI, a real server."""

import os
import threading
import uuid
from datetime import timedelta

import mongomock
import pytest

from dungeon.errors import SessionConflict, SessionNotFound
from dungeon.metrics import Metrics
from dungeon.sessions.idempotency import request_key
from dungeon.sessions.store import AlreadyCommitted, SessionStore, new_session_id
from dungeon.settings import defaults
from tests.fakes import FakeNow


class Counting:
    """Wraps a collection and counts the calls made to the database through it."""

    def __init__(self, collection, calls):
        self._collection, self._calls = collection, calls

    def __getattr__(self, name):
        attribute = getattr(self._collection, name)
        if callable(attribute) and not name.startswith("_"):
            def counted(*args, **kwargs):
                self._calls.append(name)
                return attribute(*args, **kwargs)
            return counted
        return attribute


@pytest.fixture(params=["embedded", "mongodb"])
def database(request):
    if request.param == "embedded":
        yield mongomock.MongoClient(tz_aware=True)["dungeon_test"]
        return
    uri = os.environ.get("DUNGEON_TEST_MONGO_URI")
    if not uri:
        pytest.skip("DUNGEON_TEST_MONGO_URI is not set: no real MongoDB to test against")
    from pymongo import MongoClient

    client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=3000)
    name = f"dungeon_test_{uuid.uuid4().hex[:8]}"
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def now():
    return FakeNow()


@pytest.fixture
def make_store(database, now):
    def make(**config):
        store = SessionStore(database, {**defaults(), **config}, Metrics(), now=now)
        store.ensure_indexes()
        return store
    return make


def new_game(store, user="u_alice", **fields):
    session = {"_id": new_session_id(), "user_id": user, "title": "T", "genre": "fantasy",
               "style": "comic", "seed": 1, **fields}
    document, _ = store.create(session, {"action": None, "narration": "Once upon a time."},
                               request_key())
    return document


def test_a_created_game_loads_at_once_in_every_process(make_store):
    writer, other_process = make_store(), make_store()
    game = new_game(writer)
    assert writer.load("u_alice", game["_id"])["turn_count"] == 1
    assert other_process.load("u_alice", game["_id"])["_id"] == game["_id"]


def test_another_users_id_is_not_found_and_the_log_says_why(make_store, caplog):
    store = make_store()
    game = new_game(store)
    with pytest.raises(SessionNotFound):
        store.load("u_mallory", game["_id"])
    assert "owned by another user" in caplog.text


def test_a_missing_game_is_logged_as_missing(make_store, caplog):
    with pytest.raises(SessionNotFound):
        make_store().load("u_alice", new_session_id())
    assert "no such session" in caplog.text


@pytest.mark.parametrize("bad", ["", "short", "x" * 23, "../../etc", "{'$gt': ''}", "a b" * 8])
def test_malformed_ids_never_reach_a_query(database, now, bad):
    calls = []
    store = SessionStore(database, defaults(), Metrics(), now=now)
    store.sessions = Counting(store.sessions, calls)
    with pytest.raises(SessionNotFound):
        store.load("u_alice", bad)
    assert calls == []


def test_a_cache_hit_makes_no_database_query(make_store):
    store = make_store()
    game = new_game(store)
    calls = []
    store.sessions, store.turns = Counting(store.sessions, calls), Counting(store.turns, calls)
    for _ in range(3):
        store.load("u_alice", game["_id"])
    assert calls == []
    assert store.metrics.sample("dungeon_session_lookups_total", {"outcome": "hit"}) == 3


def test_misses_are_never_cached(make_store, database, now):
    store = make_store()
    session_id = new_session_id()
    with pytest.raises(SessionNotFound):
        store.load("u_alice", session_id)
    database["sessions"].insert_one({"_id": session_id, "user_id": "u_alice", "title": "T",
                                     "genre": "fantasy", "style": "comic", "seed": 1,
                                     "version": 1, "turn_count": 0, "status": "active",
                                     "created_at": now(), "updated_at": now(),
                                     "last_active_at": now(), "expires_at": None})
    assert store.load("u_alice", session_id)["_id"] == session_id


def test_a_stale_copy_cannot_overwrite_a_newer_turn(make_store):
    first, second = make_store(), make_store()
    game = new_game(first)
    stale = second.load("u_alice", game["_id"])
    fresh = first.load("u_alice", game["_id"])
    first.commit_turn(fresh, {"action": "go north", "narration": "North."}, request_key())
    with pytest.raises(SessionConflict):
        second.commit_turn(stale, {"action": "go south", "narration": "South."}, request_key())
    reloaded = second.load("u_alice", game["_id"])  # the conflict dropped the stale copy
    assert reloaded["turn_count"] == 2
    assert [t["action"] for t in second.recent_turns(game["_id"], 10)] == [None, "go north"]


def test_a_crash_between_turn_and_session_write_is_repaired_on_load(make_store, database, now):
    store = make_store()
    game = new_game(store)
    database["turns"].insert_one({"session_id": game["_id"], "n": 1, "action": "x",
                                  "narration": "y", "created_at": now()})
    reader = make_store()  # another process, cold cache
    assert reader.load("u_alice", game["_id"])["turn_count"] == 2


def test_turn_numbers_stay_contiguous_under_concurrent_commits(make_store):
    stores = [make_store(), make_store()]
    game = new_game(stores[0])
    done, errors = [], []

    def play(store, i):
        for _ in range(10):
            try:
                session = store.load("u_alice", game["_id"])
                store.commit_turn(session, {"action": f"a{i}", "narration": "n"}, request_key())
                done.append(i)
                return
            except SessionConflict:
                continue
        errors.append(i)

    threads = [threading.Thread(target=play, args=(stores[i % 2], i)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    turns = stores[0].recent_turns(game["_id"], 100)
    assert [t["n"] for t in turns] == list(range(len(turns)))
    assert len(turns) == 1 + len(done)  # every commit that reported success is there
    assert len(done) + len(errors) == 20 and len(done) >= 2
    # A process that has not cached the game (each process's cache may lag
    # until its next write or TTL; the engine cross-checks against the turns).
    assert make_store().load("u_alice", game["_id"])["turn_count"] == len(turns)


def test_games_expire_after_inactivity(make_store, now, caplog):
    store = make_store(SESSION_EXPIRY_DAYS=30)
    game = new_game(store)
    now.advance(days=31)
    with pytest.raises(SessionNotFound):
        store.load("u_alice", game["_id"])
    assert "expired" in caplog.text
    assert store.metrics.sample("dungeon_session_lookups_total", {"outcome": "expired"}) == 1


def test_every_load_pushes_expiry_forward(make_store, now):
    store = make_store(SESSION_EXPIRY_DAYS=30, SESSION_TOUCH_SECONDS=60)
    game = new_game(store)
    for _ in range(3):
        now.advance(days=20)
        assert store.load("u_alice", game["_id"])["expires_at"] == now() + timedelta(days=30)


def test_expiry_can_be_switched_off(make_store, now):
    store = make_store(SESSION_EXPIRY_DAYS=0)
    game = new_game(store)
    now.advance(days=3650)
    assert store.load("u_alice", game["_id"])["expires_at"] is None


def test_delete_removes_game_turns_and_cache_entry(make_store):
    store = make_store()
    game = new_game(store)
    store.load("u_alice", game["_id"])
    store.delete("u_alice", game["_id"])
    with pytest.raises(SessionNotFound):
        store.load("u_alice", game["_id"])
    assert store.recent_turns(game["_id"], 10) == []


def test_indexes_are_created_idempotently(make_store, database):
    make_store()
    make_store()
    names = {index["name"] for index in database["turns"].list_indexes()}
    assert {"session_turn", "expiry_ttl"} <= names
    assert database["turns"].index_information()["session_turn"]["unique"] is True
    assert database["sessions"].index_information()["expiry_ttl"]["expireAfterSeconds"] == 0


def test_writes_use_majority_with_journal_by_default(make_store):
    concern = make_store().sessions.write_concern.document
    assert concern["w"] == "majority" and concern["j"] is True


def test_turns_always_outlive_their_game(make_store, database, now):
    # Loads never write here, so each turn's own commit pushes the expiries.
    store = make_store(SESSION_EXPIRY_DAYS=30, SESSION_TOUCH_SECONDS=10**9)
    game = new_game(store)
    for _ in range(3):
        now.advance(days=9)  # past the weekly step, so turn expiries are pushed
        session = store.load("u_alice", game["_id"])
        store.commit_turn(session, {"action": "on", "narration": "n"}, request_key())
    session = store.load("u_alice", game["_id"])
    expiries = [t["expires_at"] for t in database["turns"].find({"session_id": game["_id"]})]
    assert len(expiries) == 4
    assert min(expiries) >= session["expires_at"]


# --- request keys: what a lost answer is settled by, on either store -----------------------

def test_a_second_commit_under_one_key_is_refused_by_the_database(make_store):
    first, second = make_store(), make_store()  # two processes retrying one request
    game = new_game(first)
    session = first.load("u_alice", game["_id"])
    _, turn = first.commit_turn(session, {"action": "open", "narration": "It opens."}, "k-1")
    stale = second.load("u_alice", game["_id"])
    fresh = {**stale, "turn_count": 2, "version": stale["version"] + 1}
    with pytest.raises(AlreadyCommitted) as raised:
        second.commit_turn(fresh, {"action": "open", "narration": "Again."}, "k-1")
    assert raised.value.document["_id"] == turn["_id"]
    assert [t["action"] for t in first.recent_turns(game["_id"], 10)] == [None, "open"]


def test_a_second_game_under_one_key_is_refused_and_its_opening_removed(make_store, database):
    store = make_store()
    session = {"_id": new_session_id(), "user_id": "u_alice", "title": "T", "genre": "fantasy",
               "style": "comic", "seed": 1}
    store.create(session, {"action": None, "narration": "One."}, "make-game")
    again = {**session, "_id": new_session_id()}
    with pytest.raises(AlreadyCommitted) as raised:
        store.create(again, {"action": None, "narration": "Two."}, "make-game")
    assert raised.value.document["_id"] == session["_id"]
    assert database["turns"].find_one({"session_id": again["_id"]}) is None
    assert store.session_by_key("u_alice", "make-game")["_id"] == session["_id"]


def test_documents_saved_without_keys_do_not_collide_in_the_key_indexes(make_store, database,
                                                                        now):
    if isinstance(database, mongomock.Database):
        pytest.skip("mongomock checks a partial unique index against every document when "
                    "building it; a real server applies the filter, as this test checks")
    for n in range(2):
        database["turns"].insert_one({"session_id": "legacy", "n": n, "narration": "old",
                                      "created_at": now()})
    make_store()  # the partial unique indexes build over keyless documents
    info = database["turns"].index_information()["session_request_key"]
    assert info["unique"] is True


def test_a_count_that_lags_its_turns_is_settled(make_store):
    store = make_store()
    game = new_game(store)
    session = store.load("u_alice", game["_id"])
    _, turn = store.commit_turn(session, {"action": "a", "narration": "n"}, "k-2")
    settled = store.settle({**session}, turn)
    assert settled["turn_count"] == 2


def test_a_delete_with_no_game_left_removes_its_leftover_turns(make_store, database):
    store = make_store()
    game = new_game(store)
    database["sessions"].delete_one({"_id": game["_id"]})  # a delete cut off after its commit
    assert store.delete("u_alice", game["_id"]) is False
    assert database["turns"].find_one({"session_id": game["_id"]}) is None


def test_a_delete_never_touches_another_users_game(make_store, database):
    store = make_store()
    game = new_game(store)
    with pytest.raises(SessionNotFound):
        store.delete("u_mallory", game["_id"])
    assert database["turns"].find_one({"session_id": game["_id"]}) is not None


def test_idempotency_claims_lease_and_take_over(database, now):
    from dungeon.errors import IdempotencyConflict
    from dungeon.sessions.idempotency import IdempotencyStore

    keys = IdempotencyStore(database["idempotency_keys"], 24, 60, now, secret=b"test")
    keys.ensure_indexes()
    claim = keys.claim("u_alice", "k", "digest")
    with pytest.raises(IdempotencyConflict) as held:
        keys.claim("u_alice", "k", "digest")
    assert held.value.headers["Retry-After"] == "60"
    now.advance(seconds=61)
    taken = keys.claim("u_alice", "k", "digest")
    assert taken.takeover and taken.owner != claim.owner
    keys.finish(claim, {"session_id": "stale-owner"})  # the old owner can no longer finish
    keys.release(taken)
    again = keys.claim("u_alice", "k", "digest")
    assert again.takeover
    keys.finish(again, {"session_id": "s", "n": 1})
    assert keys.claim("u_alice", "k", "digest").result == {"session_id": "s", "n": 1}


def test_gridfs_orphan_chunks_are_replaced_on_either_store(database):
    from dungeon.images.store import GridFSImageStore, image_id_for

    if isinstance(database, mongomock.Database):
        from dungeon.db import prepare_mongomock

        prepare_mongomock()
    images = GridFSImageStore(database)
    images.put(b"\x89PNG\r\n\x1a\nfirst", "image/png")
    data = b"\x89PNG\r\n\x1a\nsecond"
    database["images.chunks"].insert_one({"files_id": image_id_for(data), "n": 0,
                                          "data": b"torn"})
    assert images.get(images.put(data, "image/png")).data == data


def test_a_cached_copy_past_its_expiry_is_checked_against_the_database(make_store, now):
    store, other_process = make_store(SESSION_EXPIRY_DAYS=30), make_store(SESSION_EXPIRY_DAYS=30)
    game = new_game(store)
    store.load("u_alice", game["_id"])  # cached here with the first expiry
    now.advance(days=29)
    other_process.load("u_alice", game["_id"])  # played elsewhere: the expiry moves on
    now.advance(days=2)
    assert store.load("u_alice", game["_id"])["_id"] == game["_id"]
