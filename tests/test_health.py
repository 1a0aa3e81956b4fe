import mongomock
from pymongo.errors import ServerSelectionTimeoutError


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_reports_store_and_providers(make_app):
    response = make_app({"IMAGE_PROVIDERS": "gpt-image-2,placeholder"}).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["store"]["ok"] is True
    providers = response.json["checks"]["image_providers"]
    assert [p["name"] for p in providers] == ["gpt-image-2", "placeholder"]
    assert providers[0]["state"] == "closed" and providers[0]["model"] == "gpt-image-2"


class _DownClient(mongomock.MongoClient):
    """A client whose server stopped answering."""

    @property
    def admin(self):
        raise ServerSelectionTimeoutError("no servers available")


def test_readyz_is_503_when_the_store_is_down(make_app):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"}, client=_DownClient())
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["store"] == {"ok": False,
                                                "error": "ServerSelectionTimeoutError"}


def test_a_store_down_at_start_does_not_stop_the_app_and_blocks_writes(make_app, monkeypatch):
    from dungeon.sessions.store import SessionStore

    server = {"up": False}
    real = SessionStore.ensure_indexes

    def ensure_indexes(self):
        if not server["up"]:
            raise ServerSelectionTimeoutError("no servers available")
        return real(self)

    monkeypatch.setattr(SessionStore, "ensure_indexes", ensure_indexes)
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    app.extensions["dungeon"].indexes.retry_seconds = 0  # try again on every request here
    client = app.test_client()
    auth = {"Authorization": "Bearer " + client.post("/api/auth/guest").json["token"]}
    body = {"genre": "fantasy", "style": "comic"}
    response = client.post("/api/games", headers=auth, json=body)
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    assert client.get("/readyz").status_code == 503
    server["up"] = True
    assert client.get("/readyz").status_code == 200
    assert client.post("/api/games", headers=auth, json=body).status_code == 201


def test_an_unreachable_store_during_a_request_is_a_503(make_app, monkeypatch):
    app = make_app({"IMAGE_PROVIDERS": "placeholder"})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    auth = {"Authorization": "Bearer " + client.post("/api/auth/guest").json["token"]}
    store = app.extensions["dungeon"].sessions

    def down(*args, **kwargs):
        raise ServerSelectionTimeoutError("no servers available")

    monkeypatch.setattr(store, "list_games", down)
    response = client.get("/api/games", headers=auth)
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert response.json["error"]["code"] == "store_unavailable"


def test_index_creation_is_tried_again_at_most_once_per_interval():
    from dungeon.db import IndexSetup

    class Down:
        calls = 0

        def ensure_indexes(self):
            Down.calls += 1
            raise ServerSelectionTimeoutError("no servers available")

    now = [100.0]
    setup = IndexSetup([Down()], retry_seconds=5, clock=lambda: now[0])
    assert [setup.ensure() for _ in range(20)] == [False] * 20
    assert Down.calls == 1 and "ServerSelectionTimeoutError" in setup.error
    now[0] += 6
    setup.ensure()
    assert Down.calls == 2
