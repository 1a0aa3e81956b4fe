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
