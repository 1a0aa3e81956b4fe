import struct

import mongomock
import pytest
from dungeon_scenecards import SceneCardProvider

from dungeon import create_app
from dungeon.images.types import ImageRequest


@pytest.mark.parametrize(("aspect", "size"), [("square", (640, 640)),
                                              ("landscape", (768, 512)),
                                              ("portrait", (512, 768))])
def test_cards_are_pngs_of_the_requested_aspect(aspect, size):
    data = SceneCardProvider().generate(ImageRequest("A lantern in the fog", "horror",
                                                     "comic", aspect), 5).data
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", data[16:24]) == size


def test_cards_are_deterministic_and_differ_by_scene():
    provider = SceneCardProvider()
    first = provider.generate(ImageRequest("A lantern in the fog", "horror"), 5).data
    assert provider.generate(ImageRequest("A lantern in the fog", "horror"), 5).data == first
    assert provider.generate(ImageRequest("A door in the fog", "horror"), 5).data != first


def test_cards_serve_a_whole_game_offline(requests_mock):
    app = create_app({"LOAD_ENTRYPOINTS": False, "PLUGINS": ["dungeon_scenecards"],
                      "IMAGE_PROVIDERS": "scenecard,placeholder"},
                     mongo_client=mongomock.MongoClient(tz_aware=True))
    client = app.test_client()
    auth = {"Authorization": "Bearer " + client.post("/api/auth/guest").json["token"]}
    created = client.post("/api/games?wait=image", headers=auth,
                          json={"genre": "scifi", "style": "comic"}).json
    image = created["turns"][0]["image"]
    assert image["provider"] == "scenecard" and image["placeholder"] is False
    assert client.get(image["url"]).mimetype == "image/png"
    assert requests_mock.call_count == 0
