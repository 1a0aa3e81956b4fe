"""The game flow under every single store fault, and under random fault plans.

A clean run of the flow first records every operation the service makes
on the store.  Then the flow runs again with one fault at each distinct
point (operation × call site), raised before the operation (nothing
applied) and after it (applied, the answer lost), for each error class a
replica set answers with.  The client retries what failed with the same
``Idempotency-Key``, as a client should.  Afterwards the invariants of the
two promises are checked with the faults off.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from dungeon.errors import ProviderUnavailable
from tests.fakes import FakeNow, FakeProvider, InlineExecutor
from tests.faults import (
    AFTER_ERRORS,
    ERRORS,
    OPERATIONS,
    WRITES,
    Fault,
    FaultInjector,
    fault_points,
)

RETRIES = 8
GENRE = {"genre": "fantasy", "style": "comic"}


class Painter(FakeProvider):
    """Fails while ``failing`` (so turns get placeholders), paints afterwards."""

    failing = True

    def generate(self, request, timeout):
        if self.failing:
            raise ProviderUnavailable("upstream 503")
        return super().generate(request, timeout)


@dataclass
class Player:
    """A client that retries a failed request with the same key, waiting as told."""

    clients: list
    now: FakeNow
    headers: dict
    statuses: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    sent: int = 0

    def send(self, method, url, key=None, json=None, ok=(200, 201, 202, 204)):
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        for _ in range(RETRIES):
            client = self.clients[self.sent % len(self.clients)]  # alternate "workers"
            self.sent += 1
            response = client.open(url, method=method, json=json, headers=headers)
            self.statuses.append((method, url, response.status_code))
            if response.status_code in ok:
                return response
            code = (response.get_json(silent=True) or {}).get("error", {}).get("code")
            if response.status_code == 503 or code == "idempotency_conflict":
                self.now.advance(float(response.headers.get("Retry-After", "1")) + 1)
                continue
            break
        self.failures.append((method, url, response.status_code, response.get_data(True)[:300]))
        return response


@dataclass
class Played:
    game_id: str | None
    doomed_id: str | None
    doomed_urls: list
    player: Player


def make_apps(make_app, painter, now, processes=1):
    config = {"IMAGE_PROVIDERS": "painter,placeholder", "NARRATOR": "local",
              "IMAGE_RETRIES": 0, "RATE_LIMIT_ACTIONS": "", "RATE_LIMIT_GAMES": "",
              "RATE_LIMIT_IMAGES": ""}
    return [make_app(config, providers=[painter], store_options={"now": now},
                     jobs_options={"executor": InlineExecutor()}) for _ in range(processes)]


def settle(player: Player, game_id: str) -> list[dict]:
    """Read the game until no image is pending (a lease may have to run out); return its turns."""
    turns: list[dict] = []
    for _ in range(4):
        response = player.send("GET", f"/api/games/{game_id}")
        if response.status_code != 200:
            return []
        turns = response.get_json()["turns"]
        for turn in turns:
            player.send("GET", turn["image"]["url"])
        if all(turn["image"]["status"] != "pending" for turn in turns):
            break
        player.now.advance(400)  # past any lease
    return turns


def play(apps, painter, now) -> Played:
    clients = [app.test_client() for app in apps]
    token = clients[0].post("/api/auth/guest").get_json()["token"]
    player = Player(clients, now, {"Authorization": f"Bearer {token}"})
    painter.failing = True
    created = player.send("POST", "/api/games", "create-1", GENRE)
    if created.status_code != 201:
        return Played(None, None, [], player)
    game_id = created.get_json()["game"]["id"]
    for i in range(1, 4):
        player.send("POST", f"/api/games/{game_id}/actions", f"act-{i}", {"action": f"step {i}"})
    settle(player, game_id)
    painter.failing = False
    player.send("POST", f"/api/games/{game_id}/turns/0/image", "image-1")
    settle(player, game_id)
    doomed = player.send("POST", "/api/games", "create-2", GENRE)
    if doomed.status_code != 201:
        return Played(game_id, None, [], player)
    doomed_id = doomed.get_json()["game"]["id"]
    player.send("POST", f"/api/games/{doomed_id}/actions", "act-d", {"action": "doomed step"})
    doomed_urls = [turn["image"]["url"] for turn in settle(player, doomed_id)]
    player.send("DELETE", f"/api/games/{doomed_id}", ok=(204, 404))
    return Played(game_id, doomed_id, doomed_urls, player)


def violations(played: Played, app, database) -> list[str]:
    """Return every broken invariant of a played flow (the faults are off by now)."""
    found = []
    player = played.player
    server_errors = [s for s in player.statuses if s[2] >= 500 and s[2] != 503]
    if server_errors:
        found.append(f"5xx other than 503: {server_errors}")
    if player.failures:
        found.append(f"requests that never succeeded: {player.failures}")
    sessions = list(database["sessions"].find())
    live = {session["_id"] for session in sessions}
    committed = Counter((t["session_id"], t.get("request_key"))
                        for t in database["turns"].find() if t["session_id"] in live)
    committed.update(("game", s.get("request_key")) for s in sessions)
    found.extend(f"key {key} committed {count} times in {where}"
                 for (where, key), count in committed.items() if count > 1)
    if played.game_id is None or len(sessions) != 1:
        found.append(f"expected one live game, found {len(sessions)}")
        return found
    client = app.test_client()
    turns = sorted(database["turns"].find({"session_id": played.game_id}), key=lambda t: t["n"])
    numbers = [turn["n"] for turn in turns]
    if numbers != list(range(4)):
        found.append(f"turn numbers {numbers}")
    keys = sorted(t["request_key"].split(":")[0] for t in turns)  # key:digest:claim
    if keys != ["act-1", "act-2", "act-3", "create-1"]:
        found.append(f"turn keys {keys}")
    loaded = client.get(f"/api/games/{played.game_id}", headers=player.headers).get_json()
    stored = database["sessions"].find_one({"_id": played.game_id})
    if stored["turn_count"] != len(turns) or loaded["game"]["turn_count"] != len(turns):
        found.append(f"turn_count {stored['turn_count']} for {len(turns)} turns")
    for turn in loaded["turns"]:
        if turn["image"]["status"] == "pending":
            found.append(f"turn {turn['n']} still pending")
        status = client.get(turn["image"]["url"]).status_code
        if status not in (200, 202):
            found.append(f"image of turn {turn['n']} answers {status}")
    if loaded["turns"][0]["image"]["placeholder"]:
        found.append("the retried image of turn 0 is still the placeholder")
    if played.doomed_id is not None:
        if client.get(f"/api/games/{played.doomed_id}", headers=player.headers).status_code != 404:
            found.append("deleted game still loads")
        for url in played.doomed_urls:
            if client.get(url).status_code != 404:
                found.append(f"deleted game's image {url} still served")
        if database["turns"].find_one({"session_id": played.doomed_id}) is not None:
            found.append("deleted game's turns remain")
        if database["image_slots"].find_one({"session_id": played.doomed_id}) is not None:
            found.append("deleted game's image slots remain")
    return found


@pytest.fixture
def run_flow(make_app, mongo_client, monkeypatch):
    """Return a function that plays the flow with the given faults and returns its violations."""

    def run(faults=(), processes=2):
        painter = Painter("painter")
        now = FakeNow()
        database = mongo_client["dungeon"]
        for name in database.list_collection_names():
            database.drop_collection(name)
        with monkeypatch.context() as patch:
            injector = FaultInjector(patch, faults)
            apps = make_apps(make_app, painter, now, processes)
            played = play(apps, painter, now)
            injector.enabled = False
            return injector, violations(played, apps[0], database)

    return run


def test_the_flow_holds_without_faults(run_flow):
    injector, found = run_flow()
    assert found == []
    touched = {(call.collection, call.operation) for call in fault_points(injector.calls)}
    # The flow reaches every collection the service writes, GridFS included.
    assert {"sessions", "turns", "image_slots", "idempotency_keys", "images.files",
            "images.chunks"} <= {collection for collection, _ in touched}


@pytest.mark.parametrize(("when", "error"), [("before", e) for e in sorted(ERRORS)] +
                         [("after", e) for e in AFTER_ERRORS])
def test_the_flow_holds_with_one_fault_at_every_point(run_flow, error, when):
    clean, _ = run_flow()
    points = [p for p in fault_points(clean.calls) if when == "before" or p.operation in WRITES]
    broken = {}
    for point in points:
        fault = Fault(point.collection, point.operation, point.nth, when, error)
        injector, found = run_flow([fault])
        assert injector.fired == [fault], f"{fault} never fired"
        if found:
            broken[str(fault)] = found
    assert not broken, f"{len(broken)} of {len(points)} fault points break an invariant: {broken}"


def test_the_flow_holds_under_random_fault_plans(run_flow):
    clean, _ = run_flow()
    calls = clean.calls
    rng = random.Random(20261201)
    broken = {}
    for _ in range(RANDOM_PLANS):
        plan = []
        for call in rng.sample(calls, rng.randint(1, 3)):
            when = rng.choice(["before", "after"]) if call.operation in WRITES else "before"
            errors = sorted(ERRORS) if when == "before" else AFTER_ERRORS
            plan.append(Fault(call.collection, call.operation, call.nth, when,
                              rng.choice(errors)))
        _, found = run_flow(plan, processes=2)
        if found:
            broken[" + ".join(map(str, plan))] = found
    assert not broken, f"{len(broken)} of {RANDOM_PLANS} plans break an invariant: {broken}"


RANDOM_PLANS = 200
assert set(WRITES) <= set(OPERATIONS)
