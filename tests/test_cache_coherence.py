"""Cache hits that skip the database, where this process knows its copies are current."""

from __future__ import annotations

from contextlib import contextmanager

from pymongo.errors import AutoReconnect, OperationFailure

from dungeon.sessions.changes import LOCAL, VERSION, WATCH, ChangeFeed, Coherence
from tests.conftest import guest_headers
from tests.fakes import InlineExecutor
from tests.faults import FaultInjector

GAME = {"genre": "mystery", "style": "comic"}


def _app(make_app, mode, **options):
    return make_app({"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local"},
                    store_options={"coherence": Coherence(mode)},
                    jobs_options={"executor": InlineExecutor()}, **options)


def _played(client, auth, actions=3):
    game_id = client.post("/api/games", json=GAME, headers=auth).json["game"]["id"]
    for i in range(actions):
        client.post(f"/api/games/{game_id}/actions", json={"action": f"look {i}"}, headers=auth)
    return game_id


def test_a_cache_hit_of_a_current_game_makes_no_database_call(make_app, monkeypatch):
    client = _app(make_app, LOCAL).test_client()
    auth = guest_headers(client)
    game_id = _played(client, auth)
    first = client.get(f"/api/games/{game_id}", headers=auth).json
    calls = FaultInjector(monkeypatch)  # from here on, records every collection call
    again = client.get(f"/api/games/{game_id}", headers=auth).json
    assert calls.calls == [] and again == first
    assert len(again["turns"]) == 4 and all(t["image"]["status"] == "ready"
                                            for t in again["turns"])


def test_with_versions_checked_a_hit_reads_two_indexed_documents(make_app, monkeypatch):
    client = _app(make_app, VERSION).test_client()
    auth = guest_headers(client)
    game_id = _played(client, auth)
    client.get(f"/api/games/{game_id}", headers=auth)
    calls = FaultInjector(monkeypatch)
    client.get(f"/api/games/{game_id}", headers=auth)
    # The game's version by _id, and whether its next turn number is taken (a
    # turn stored by a process that crashed before counting it).
    assert [(c.collection, c.operation) for c in calls.calls] == [("sessions", "find_one"),
                                                                  ("turns", "find_one")]


def test_a_turn_played_keeps_the_copy_warm(make_app, monkeypatch):
    client = _app(make_app, LOCAL).test_client()
    auth = guest_headers(client)
    game_id = _played(client, auth, actions=1)
    client.get(f"/api/games/{game_id}", headers=auth)
    client.post(f"/api/games/{game_id}/actions", json={"action": "run"}, headers=auth)
    calls = FaultInjector(monkeypatch)
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json
    assert calls.calls == [] and loaded["turns"][-1]["action"] == "run"


def test_an_image_made_after_the_copy_was_kept_shows(make_app):
    from tests.test_turn_images import GatedProvider

    gated = GatedProvider()
    app = make_app({"IMAGE_PROVIDERS": "gated,placeholder"}, providers=[gated],
                   store_options={"coherence": Coherence(LOCAL)})
    client = app.test_client()
    auth = guest_headers(client)
    created = client.post("/api/games", json=GAME, headers=auth).json
    game_id = created["game"]["id"]
    assert client.get(f"/api/games/{game_id}", headers=auth).json["turns"][0]["image"][
        "status"] == "pending"
    gated.gate.set()
    app.extensions["dungeon"].jobs.wait(created["turns"][0]["image"]["id"], 5)
    image = client.get(f"/api/games/{game_id}", headers=auth).json["turns"][0]["image"]
    assert image["status"] == "ready" and image["provider"] == "gated"


def test_another_process_turn_is_seen_when_versions_are_checked(make_app):
    first, second = (_app(make_app, VERSION).test_client() for _ in range(2))
    auth = guest_headers(first)
    game_id = _played(first, auth, actions=1)
    first.get(f"/api/games/{game_id}", headers=auth)  # cached in the first process
    second.post(f"/api/games/{game_id}/actions", json={"action": "elsewhere"}, headers=auth)
    loaded = first.get(f"/api/games/{game_id}", headers=auth).json
    assert loaded["turns"][-1]["action"] == "elsewhere" and loaded["game"]["turn_count"] == 3


class FakeStream:
    """A change stream: yields the events it was given, then fails as told."""

    def __init__(self, events, error=None):
        self.events, self.error, self.opened = list(events), error, []

    @contextmanager
    def watch(self, pipeline, resume_after, full_document):
        self.opened.append({"resume_after": resume_after, "pipeline": pipeline,
                            "full_document": full_document})

        def changes():
            yield from self.events
            self.events = []
            if self.error is not None:
                error, self.error = self.error, None
                raise error

        yield changes()


def _feed(stream, seen):
    coherence = Coherence(WATCH)
    feed = ChangeFeed(coherence, stream.watch, on_session=lambda s: seen.append(("game", s)),
                      on_turns=lambda s: seen.append(("turns", s)),
                      on_reset=lambda: seen.append(("reset", None)),
                      sleep=lambda seconds: seen.append(("slept", seconds)))
    return coherence, feed


def test_the_change_feed_drops_what_other_processes_changed():
    seen = []
    stream = FakeStream([
        {"_id": {"t": 1}, "ns": {"coll": "sessions"}, "documentKey": {"_id": "g1"}},
        {"_id": {"t": 2}, "ns": {"coll": "turns"}, "documentKey": {"_id": "x"},
         "fullDocument": {"session_id": "g2"}},
        {"_id": {"t": 3}, "ns": {"coll": "turns"}, "documentKey": {"_id": "y"}}])
    coherence, feed = _feed(stream, seen)
    feed.run(rounds=1)
    # Opened without a resume point: what was kept before is dropped first.
    assert seen == [("reset", None), ("game", "g1"), ("turns", "g2"), ("turns", None)]
    assert coherence.trusted() and feed.resume_token == {"t": 3}


def test_a_lost_change_stream_is_distrusted_then_resumed_from_its_token():
    seen = []
    stream = FakeStream([{"_id": {"t": 7}, "ns": {"coll": "sessions"},
                          "documentKey": {"_id": "g1"}}], error=AutoReconnect("reset"))
    coherence, feed = _feed(stream, seen)
    feed.run(rounds=1)
    assert not coherence.trusted()
    assert seen[-2:] == [("reset", None), ("slept", 0.5)]
    feed.run(rounds=1)
    assert stream.opened[-1]["resume_after"] == {"t": 7} and coherence.trusted()


def test_without_change_streams_the_feed_stops_and_versions_are_checked():
    seen = []
    error = OperationFailure("The $changeStream stage is only supported on replica sets", 40573)
    stream = FakeStream([], error=error)
    coherence, feed = _feed(stream, seen)
    feed.run(rounds=5)
    assert not coherence.trusted() and set(seen) == {("reset", None)}
    assert len(stream.opened) == 1  # not opened again


def test_the_embedded_store_warns_once_when_it_holds_too_many_games(make_app, caplog):
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "EMBEDDED_MAX_GAMES": 2},
                   store_options={"coherence": Coherence(LOCAL)})
    client = app.test_client()
    auth = guest_headers(client)
    for _ in range(5):
        client.post("/api/games", json=GAME, headers=auth)
    warned = [r for r in caplog.records if "embedded store holds" in r.getMessage()]
    assert len(warned) == 1 and "DUNGEON_MONGO_URI" in warned[0].getMessage()
    store = client.get("/readyz").json["checks"]["store"]
    assert "DUNGEON_MONGO_URI" in store["warning"]


def test_a_turn_stored_by_a_process_that_crashed_is_seen_when_versions_are_checked(
        make_app, mongo_client):
    client = _app(make_app, VERSION).test_client()
    auth = guest_headers(client)
    game_id = _played(client, auth, actions=1)
    client.get(f"/api/games/{game_id}", headers=auth)  # cached with two turns
    turns = mongo_client["dungeon"]["turns"]
    orphan = {k: v for k, v in turns.find_one({"session_id": game_id, "n": 1}).items()
              if k != "_id"}
    orphan.update({"n": 2, "request_key": "crashed"})
    turns.insert_one(orphan)  # stored, and the process died before advancing the game
    loaded = client.get(f"/api/games/{game_id}", headers=auth).json
    assert [t["n"] for t in loaded["turns"]][-1] == 2 and loaded["game"]["turn_count"] == 3


def test_a_kept_rendered_answer_changes_with_what_it_shows(make_app):
    client = _app(make_app, LOCAL).test_client()
    auth = guest_headers(client)
    game_id = _played(client, auth, actions=1)
    first = client.get(f"/api/games/{game_id}", headers=auth)
    again = client.get(f"/api/games/{game_id}", headers=auth)
    assert first.data == again.data and again.mimetype == "application/json"
    client.patch(f"/api/games/{game_id}", headers=auth, json={"authors_note": "Darker."})
    changed = client.get(f"/api/games/{game_id}", headers=auth).json
    assert changed["game"]["authors_note"] == "Darker."
    client.post(f"/api/games/{game_id}/actions", json={"action": "on"}, headers=auth)
    assert client.get(f"/api/games/{game_id}", headers=auth).json["game"]["turn_count"] == 3
    other = guest_headers(client)
    assert client.get(f"/api/games/{game_id}", headers=other).status_code == 404
