"""On a real MongoDB every query of an action and a load uses an index (no collection scans).

Runs only against a real server (``DUNGEON_TEST_MONGO_URI``): the embedded
store scans every document whatever its indexes, which is why its cost grows
with the games it holds (docs/benchmarks.md) while a real server's does not.
"""

from __future__ import annotations

import os
import uuid

import pytest
from pymongo import MongoClient, monitoring

EXPLAINED = {"find", "update", "delete", "findAndModify", "count", "aggregate"}
FIELDS_NOT_EXPLAINED = {"$db", "lsid", "$clusterTime", "txnNumber", "$readPreference",
                        "writeConcern", "readConcern", "apiVersion"}


class Recorder(monitoring.CommandListener):
    """Keeps every query-like command the service sends."""

    def __init__(self):
        self.commands: list[dict] = []

    def started(self, event):
        if event.command_name in EXPLAINED:
            self.commands.append(dict(event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _stages(plan):
    yield plan.get("stage")
    for child in ("inputStage", "queryPlan"):
        if child in plan:
            yield from _stages(plan[child])
    for item in plan.get("inputStages", []):
        yield from _stages(item)


@pytest.fixture
def real_server():
    uri = os.environ.get("DUNGEON_TEST_MONGO_URI")
    if not uri:
        pytest.skip("DUNGEON_TEST_MONGO_URI is not set: no real MongoDB to explain queries on")
    recorder = Recorder()
    client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=3000,
                         event_listeners=[recorder])
    name = f"dungeon_explain_{uuid.uuid4().hex[:8]}"
    yield client, name, recorder
    client.drop_database(name)
    client.close()


def test_every_query_of_an_action_and_a_load_uses_an_index(make_app, real_server):
    client, name, recorder = real_server
    app = make_app({"IMAGE_PROVIDERS": "placeholder", "MONGO_DB": name, "NARRATOR": "local"},
                   client=client)
    web = app.test_client()
    auth = {"Authorization": "Bearer " + web.post("/api/auth/guest").json["token"]}
    game_id = web.post("/api/games", json={"genre": "horror", "style": "comic"},
                       headers={**auth, "Idempotency-Key": "g"}).json["game"]["id"]
    app.extensions["dungeon"].sessions.forget_cached(
        app.extensions["dungeon"].signer.user_for(auth["Authorization"].split()[1]), game_id)
    recorder.commands.clear()
    web.post(f"/api/games/{game_id}/actions", json={"action": "listen"},
             headers={**auth, "Idempotency-Key": "a"})
    web.get(f"/api/games/{game_id}", headers=auth)
    web.get("/api/games", headers=auth)
    assert recorder.commands, "no query was recorded"
    database = client[name]
    scans = []
    for command in recorder.commands:
        explained = {k: v for k, v in command.items() if k not in FIELDS_NOT_EXPLAINED}
        plan = database.command("explain", explained, verbosity="queryPlanner")
        winning = plan["queryPlanner"]["winningPlan"]
        if "COLLSCAN" in set(_stages(winning)):
            scans.append(explained)
    assert scans == []
