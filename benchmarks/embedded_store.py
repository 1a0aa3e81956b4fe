"""The embedded store's curve: cost of one action, and process memory, by stored games.

In one process, an app on the embedded store (mongomock, no DUNGEON_MONGO_URI)
with the local narrator and placeholder images, driven through Flask's test
client. The store is filled in steps (100, 1 000, 10 000 games by default,
from an empty store as the baseline); a stored game is a copy of a real one
made through the API: the game, its opening turn and ``--turns`` played
turns, and their image slots (the placeholder images themselves are shared,
as the image store keeps one copy of identical bytes). Copies are written
straight into mongomock's document store: inserting them one by one would
check the unique indexes by scanning each collection, and loading 10 000
games would take longer than measuring them.

At each step, a new game is created through the API and ``--actions``
actions are played on it; for each: the action's answer, the action until its
background image is saved, and a cache-hit ``GET /api/games/<id>``. Medians,
and the process's resident memory (``/proc/self/status``) after a garbage
collection.

Run:  python benchmarks/embedded_store.py [--sizes 100,1000,10000] [--actions 10] [--turns 4]
"""

from __future__ import annotations

import argparse
import copy
import gc
import secrets
import statistics
import sys
import time
from pathlib import Path

from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import proc_status  # noqa: E402
from dungeon import create_app  # noqa: E402

CONFIG = {"LOAD_ENTRYPOINTS": False, "NARRATOR": "local", "IMAGE_PROVIDERS": "placeholder",
          "SECRET_KEY": "e" * 40, "LOG_LEVEL": "error", "RATE_LIMIT_GUESTS": "",
          "RATE_LIMIT_GAMES": "", "RATE_LIMIT_ACTIONS": "", "RATE_LIMIT_IMAGES": ""}


class Bench:
    def __init__(self, turns: int):
        self.app = create_app(CONFIG)
        self.state = self.app.extensions["dungeon"]
        self.client = self.app.test_client()
        token = self.client.post("/api/auth/guest").get_json()["token"]
        self.auth = {"Authorization": f"Bearer {token}"}
        game_id, _ = self.new_game()
        for _ in range(turns):
            self.act(game_id)
        self.template = self._documents_of(game_id)
        self.stored = 1

    def new_game(self) -> tuple[str, float]:
        started = time.perf_counter()
        answer = self.client.post("/api/games", headers=self.auth,
                                  json={"genre": "horror", "style": "comic"})
        assert answer.status_code == 201, answer.get_json()
        elapsed = time.perf_counter() - started
        self.settle()
        return answer.get_json()["game"]["id"], elapsed

    def act(self, game_id: str) -> tuple[float, float]:
        """Play one action; return its answer time and the time until its image is saved."""
        started = time.perf_counter()
        answer = self.client.post(f"/api/games/{game_id}/actions", headers=self.auth,
                                  json={"action": "I open the cellar door"})
        assert answer.status_code == 201, answer.get_json()
        answered = time.perf_counter() - started
        self.settle()
        return answered, time.perf_counter() - started

    def settle(self) -> None:
        """Wait (at most 60 s) until no turn image is being made."""
        deadline = time.monotonic() + 60
        while self.state.jobs.futures and time.monotonic() < deadline:
            time.sleep(0.0005)

    def load(self, game_id: str) -> float:
        started = time.perf_counter()
        assert self.client.get(f"/api/games/{game_id}", headers=self.auth).status_code == 200
        return time.perf_counter() - started

    def _documents_of(self, game_id: str) -> dict[str, list[dict]]:
        found = {}
        for name in self.state.db.list_collection_names():
            documents = self.state.db[name]._store._documents.values()
            mine = [copy.deepcopy(d) for d in documents
                    if d.get("_id") == game_id or d.get("session_id") == game_id]
            if mine:
                found[name] = mine
        return found

    def fill(self, games: int) -> None:
        """Store copies of the template game until ``games`` games are stored."""
        (sid,) = [d["_id"] for d in self.template["sessions"]]
        ids = {d["_id"] for docs in self.template.values() for d in docs
               if isinstance(d["_id"], str) and d["_id"] != sid}
        while self.stored < games:
            fresh = {sid: secrets.token_urlsafe(16)}
            fresh.update({old: old[:2] + secrets.token_urlsafe(16) for old in ids})
            user = "u_" + secrets.token_urlsafe(16)
            for name, documents in self.template.items():
                store = self.state.db[name]._store
                for document in documents:
                    clone = _renamed(copy.deepcopy(document), fresh)
                    if isinstance(clone["_id"], ObjectId):
                        clone["_id"] = ObjectId()
                    if "user_id" in clone:
                        clone["user_id"] = user
                    store[clone["_id"]] = clone
            self.stored += 1

    def measure(self, actions: int) -> dict[str, float]:
        game_id, create = self.new_game()
        answers, with_image, loads = [], [], []
        for _ in range(actions):
            answered, done = self.act(game_id)
            answers.append(answered)
            with_image.append(done)
            loads.append(self.load(game_id))
        gc.collect()
        return {"create": create, "action": statistics.median(answers),
                "with_image": statistics.median(with_image), "load": statistics.median(loads),
                "rss": proc_status()["rss_mib"]}


def _renamed(value, names: dict[str, str]):
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        type=lambda text: sorted(int(x) for x in text.split(",")))
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--turns", type=int, default=4, help="played turns per stored game")
    args = parser.parse_args()
    bench = Bench(args.turns)
    rows = [("empty (baseline)", 0, bench.measure(args.actions))]
    for size in args.sizes:
        bench.fill(size)
        rows.append((f"{size:,}".replace(",", " "), size, bench.measure(args.actions)))
    base = rows[0][2]
    print(f"embedded store, stored game = game + {args.turns + 1} turns + their image slots; "
          f"medians of {args.actions} actions per step")
    print(f"  {'stored games':16} {'action ms':>10} {'x base':>7} {'+image ms':>10} "
          f"{'GET ms':>8} {'create ms':>10} {'us/game':>8} {'RSS MiB':>8} {'KiB/game':>9}")
    for label, size, r in rows:
        per_game = (r["action"] - base["action"]) / size * 1e6 if size else 0.0
        memory = (r["rss"] - base["rss"]) * 1024 / size if size else 0.0
        print(f"  {label:16} {r['action'] * 1000:10.2f} {r['action'] / base['action']:7.1f} "
              f"{r['with_image'] * 1000:10.2f} {r['load'] * 1000:8.2f} "
              f"{r['create'] * 1000:10.2f} {per_game:8.1f} {r['rss']:8.1f} {memory:9.1f}",
              flush=True)
    print("  action: the answer; +image: until its image is saved; us/game: the answer's "
          "cost per stored game above the baseline")

if __name__ == "__main__":
    main()
