import logging

import mongomock
import pytest

from dungeon import create_app
from tests.fakes import FakeClock, ProvidersPlugin

API_KEY = "sk-test-0123456789abcdefSECRET"
SIGNING_KEY = "test-signing-key-shared-by-every-test-app"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests see only the configuration they set, never the developer's environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("DUNGEON_", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def mongo_client():
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture
def make_app(clock, mongo_client):
    """Build an app on the shared in-memory store, with fake time and the given providers."""

    def make(config=None, providers=(), plugins=(), **options):
        settings = {"LOAD_ENTRYPOINTS": False, "TESTING": True, "SECRET_KEY": SIGNING_KEY,
                    **(config or {})}
        extra = list(plugins)
        if providers:
            extra.append(ProvidersPlugin(*providers))
        image_options = {"sleep": clock.sleep, "clock": clock, "jitter": lambda: 0.0,
                         **options.pop("image_options", {})}
        return create_app(settings, extra, mongo_client=options.pop("client", mongo_client),
                          image_options=image_options, **options)

    return make


@pytest.fixture
def app(make_app):
    return make_app({"IMAGE_PROVIDERS": "placeholder"})


@pytest.fixture
def client(app):
    return app.test_client()


def guest_headers(client):
    """Return the Authorization header of a new guest user of ``client``'s app."""
    token = client.post("/api/auth/guest").get_json()["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(client):
    return guest_headers(client)


@pytest.fixture
def log_lines(caplog):
    """Return a function giving every log line formatted as the service writes it."""
    from dungeon.logs import make_formatter

    caplog.set_level(logging.DEBUG)
    formatter = make_formatter("json")

    def lines():
        return [formatter.format(record) for record in caplog.records]

    return lines
