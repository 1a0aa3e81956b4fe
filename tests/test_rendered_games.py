"""Rendered game answers: kept by everything they show, never stale."""

from datetime import UTC, datetime

from dungeon.api.views import RenderedGames
from dungeon.game.engine import LoadedGame
from dungeon.sessions.cache import TurnCache

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SESSION = {"_id": "g" * 22, "title": "A Tale", "genre": "fantasy", "style": "comic",
           "status": "active", "turn_count": 1, "version": 3, "created_at": NOW,
           "updated_at": NOW, "expires_at": NOW}


def _turn(image_status: str, alternative_status: str) -> dict:
    return {"n": 0, "action": None, "narration": "Once.", "created_at": NOW, "chosen": 1,
            "image": {"id": "s2", "status": image_status},
            "alternatives": [
                {"narration": "Before.", "created_at": NOW,
                 "image": {"id": "s1", "status": alternative_status}},
                {"narration": "Once.", "created_at": NOW, "image": {"id": "s2"}}]}


def test_an_earlier_versions_image_finishing_changes_the_answer(app):
    rendered = RenderedGames()
    with app.test_request_context():
        pending = rendered.answer(LoadedGame(SESSION, [_turn("ready", "pending")], None))
        ready = rendered.answer(LoadedGame(SESSION, [_turn("ready", "ready")], None))
    assert b'"pending"' in pending and b'"pending"' not in ready


def test_kept_turns_are_answered_by_their_stamp(app):
    rendered = RenderedGames()
    with app.test_request_context():
        first = rendered.answer(LoadedGame(SESSION, [_turn("ready", "ready")], 7))
        # Same stamp, same turns: the kept answer is used (a stamp is never reused).
        assert rendered.answer(LoadedGame(SESSION, [_turn("pending", "ready")], 7)) is first
        other = rendered.answer(LoadedGame(SESSION, [_turn("pending", "ready")], 8))
    assert b'"pending"' in other and b'"pending"' not in first


def test_every_change_to_kept_turns_gives_them_a_new_stamp():
    cache = TurnCache(maxsize=10, ttl=60)
    turns = [{"n": 0, "narration": "Once.", "image": {"id": "s0", "status": "pending"}}]
    put = cache.put("g1", 1, turns)
    assert cache.get("g1", 1).stamp == put == cache.get("g1", 1).stamp
    cache.update_image("g1", 0, "s0", {"status": "ready"})
    imaged = cache.get("g1", 1)
    assert imaged.stamp != put and imaged.turns[0]["image"]["status"] == "ready"
    cache.extend("g1", 1, 2, {"n": 1, "narration": "Then."}, keep=10)
    extended = cache.get("g1", 2)
    assert extended.stamp not in (put, imaged.stamp) and len(extended.turns) == 2
    assert cache.put("g1", 2, extended.turns) not in (put, imaged.stamp, extended.stamp)
    assert cache.get("g1", 1) is None  # a list is served for its version only
