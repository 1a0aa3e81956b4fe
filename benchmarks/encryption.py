"""Encryption at rest: what sealing a field costs; figures go to docs/benchmarks.md.

(a) Stored bytes per field, plain beside sealed, for representative texts of
    a turn and a game (an action of about 40 characters, a narration of
    about 600, an image prompt of about 300, a title of about 30), through
    ``dungeon.sessions.crypto.FieldCipher`` with a generated Fernet key.
(b) µs to seal and to open one turn played once (its action, narration and
    image prompt, as the store does with ``seal_fields``/``open_fields``) and
    one game's title: timeit, the median of several repeats; the same calls without
    keys (a copy of the document) are the baseline.
(c) End to end in one process: ``POST /api/games/<id>/actions`` through
    Flask's test client on the embedded store, an app with
    ``ENCRYPTION_KEYS`` beside one without, in interleaved rounds (the order
    turns each round; each round plays a fresh game on each app); the time
    of the answer, and until the turn's background image is saved. The
    ratio is the median of the rounds' ratios.

Run:  python benchmarks/encryption.py [--rounds 7] [--actions 30] [--number 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

from bson import ObjectId
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dungeon.sessions.crypto import SESSION_FIELDS, TURN_FIELDS, FieldCipher  # noqa: E402

CONFIG = {"LOAD_ENTRYPOINTS": False, "NARRATOR": "local", "IMAGE_PROVIDERS": "placeholder",
          "SECRET_KEY": "c" * 40, "LOG_LEVEL": "warning", "RATE_LIMIT_GUESTS": "",
          "RATE_LIMIT_GAMES": "", "RATE_LIMIT_ACTIONS": "", "RATE_LIMIT_IMAGES": ""}
ACTIONS = ("I light the candle and climb the stairs", "I ask the ferryman about the ruined tower",
           "I draw my sword and step into the dark", "I search the chest for anything useful")


def text(seed: str, length: int) -> str:
    """Return ``seed`` repeated and cut to exactly ``length`` characters, ending in a full stop."""
    repeated = " ".join([seed] * (length // len(seed) + 1))
    return repeated[:length - 1] + "."


FIELDS = {
    "action": ACTIONS[0],
    "narration": text("You light the candle. Its flame leans toward the stairwell as if "
                      "something below were breathing. The steps are slick with old rain, and "
                      "on the third landing a door stands ajar, a thread of green light beneath "
                      "it. Somewhere above, a bell rings once and stops.", 600),
    "image_prompt": text("A narrow stone stairwell lit by a single candle, green light under a "
                         "half-open door, rain-slick steps, comic book style, heavy ink lines, "
                         "dramatic shadows, fantasy", 300),
    "title": "The Bell Beneath Greywater Hill",
}


# The text fields of a turn played once (a retried turn also keeps its alternatives').
PLAYED = ("action", "narration", "image_prompt")


def turn_document() -> dict:
    now = datetime.now(UTC)
    return {"_id": ObjectId(), "session_id": "x" * 22, "n": 3, "action": FIELDS["action"],
            "narration": FIELDS["narration"], "image_prompt": FIELDS["image_prompt"],
            "image": {"id": "s_" + "y" * 22, "status": "pending", "provider": None,
                      "placeholder": False},
            "request_key": "k" * 32, "created_at": now, "expires_at": now}


def bench_fields(key: str) -> None:
    cipher = FieldCipher([key])
    print("(a) stored bytes per field (UTF-8), plain and sealed (enc1: + Fernet token)")
    print(f"    {'field':14} {'plain':>6} {'sealed':>7} {'added':>6} {'x':>5}")
    for name, value in FIELDS.items():
        plain, sealed = len(value.encode()), len(cipher.seal(value).encode())
        assert cipher.open(cipher.seal(value)) == value
        print(f"    {name:14} {plain:6} {sealed:7} {sealed - plain:6} {sealed / plain:5.2f}")
    turn = sum(len(FIELDS[f].encode()) for f in PLAYED)
    sealed = sum(len(cipher.seal(FIELDS[f]).encode()) for f in PLAYED)
    print(f"    {'a turn':14} {turn:6} {sealed:7} {sealed - turn:6} {sealed / turn:5.2f}  "
          f"({', '.join(PLAYED)})")


def bench_seal(key: str, number: int, repeat: int) -> None:
    keyed, plain = FieldCipher([key]), FieldCipher()
    turn, session = turn_document(), {"_id": "x" * 22, "title": FIELDS["title"], "version": 3}
    sealed_turn = keyed.seal_fields(turn, TURN_FIELDS)
    sealed_session = keyed.seal_fields(session, SESSION_FIELDS)
    cases = (
        ("seal a turn", lambda: keyed.seal_fields(turn, TURN_FIELDS),
         lambda: plain.seal_fields(turn, TURN_FIELDS)),
        ("open a turn", lambda: keyed.open_fields(sealed_turn, TURN_FIELDS),
         lambda: plain.open_fields(turn, TURN_FIELDS)),
        ("seal a title", lambda: keyed.seal_fields(session, SESSION_FIELDS),
         lambda: plain.seal_fields(session, SESSION_FIELDS)),
        ("open a title", lambda: keyed.open_fields(sealed_session, SESSION_FIELDS),
         lambda: plain.open_fields(session, SESSION_FIELDS)),
    )
    print(f"(b) µs per call, timeit {number} calls x {repeat} repeats (median), "
          "the same call without keys as the baseline")
    print(f"    {'':14} {'no keys':>8} {'keys':>8} {'added':>8}")
    for label, with_keys, without in cases:
        medians = {}
        for name, call in (("without", without), ("with", with_keys)):
            medians[name] = statistics.median(
                timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6
        print(f"    {label:14} {medians['without']:8.1f} {medians['with']:8.1f} "
              f"{medians['with'] - medians['without']:8.1f}")


class Player:
    """One app on its own embedded store, and a guest who plays it."""

    def __init__(self, config: dict):
        from dungeon import create_app

        self.app = create_app(config)
        self.jobs = self.app.extensions["dungeon"].jobs
        self.client = self.app.test_client()
        token = self.client.post("/api/auth/guest").get_json()["token"]
        self.auth = {"Authorization": f"Bearer {token}"}

    def new_game(self) -> str:
        answer = self.client.post("/api/games", headers=self.auth,
                                  json={"genre": "fantasy", "style": "comic",
                                        "title": FIELDS["title"]})
        assert answer.status_code == 201, answer.get_json()
        self.settle()
        return answer.get_json()["game"]["id"]

    def act(self, game_id: str, action: str) -> tuple[float, float]:
        started = time.perf_counter()
        answer = self.client.post(f"/api/games/{game_id}/actions", headers=self.auth,
                                  json={"action": action})
        answered = time.perf_counter() - started
        assert answer.status_code == 201, answer.get_json()
        self.settle()
        return answered, time.perf_counter() - started

    def settle(self) -> None:
        """Wait (at most 30 s) until no turn image is being made."""
        deadline = time.monotonic() + 30
        while self.jobs.futures and time.monotonic() < deadline:
            time.sleep(0.0002)


def bench_actions(key: str, rounds: int, actions: int) -> None:
    players = {"plain": Player(dict(CONFIG)), "encrypted": Player({**CONFIG,
                                                                   "ENCRYPTION_KEYS": key})}
    for player in players.values():  # warm-up
        game = player.new_game()
        for action in ACTIONS:
            player.act(game, action)
    for name, player in players.items():
        stored = player.app.extensions["dungeon"].sessions.turns.find_one({"n": 1})
        assert stored["action"].startswith("enc1:") == (name == "encrypted"), name
    results = {name: {"answer": [], "image": []} for name in players}
    order = list(players)
    for i in range(rounds):
        for name in order[i % 2:] + order[:i % 2]:
            player = players[name]
            game = player.new_game()
            times = [player.act(game, ACTIONS[n % len(ACTIONS)]) for n in range(actions)]
            results[name]["answer"].append(statistics.median(t[0] for t in times))
            results[name]["image"].append(statistics.median(t[1] for t in times))
    print(f"(c) POST /api/games/<id>/actions in-process (embedded store, local narrator, "
          f"placeholder images), {rounds} interleaved rounds of {actions} actions on a fresh "
          "game each (medians)")
    print(f"    {'':28} {'answer ms':>10} {'ratio':>6} {'+image ms':>10} {'ratio':>6}")
    for name in players:
        cells = []
        for what in ("answer", "image"):
            ratio = statistics.median(
                x / b for x, b in zip(results[name][what], results["plain"][what], strict=True))
            cells.append(f"{statistics.median(results[name][what]) * 1000:10.3f} {ratio:6.3f}")
        label = "without keys (baseline)" if name == "plain" else "ENCRYPTION_KEYS set"
        print(f"    {label:28} {'  '.join(cells)}")
    added = (statistics.median(results["encrypted"]["answer"])
             - statistics.median(results["plain"]["answer"])) * 1e6
    print(f"    the answer's added cost: {added:.0f} µs per action (difference of medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--actions", type=int, default=30)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    key = Fernet.generate_key().decode()
    bench_fields(key)
    bench_seal(key, min(args.number, 100_000), min(args.repeat, 50))
    bench_actions(key, min(args.rounds, 50), min(args.actions, 500))


if __name__ == "__main__":
    main()
