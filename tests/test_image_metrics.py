from dungeon.errors import ProviderUnavailable
from dungeon.images.types import ImageRequest
from tests.fakes import FakeProvider


def test_chain_records_attempts_requests_fallbacks_and_breaker_state(make_app):
    down = FakeProvider("down").enqueue(*[ProviderUnavailable("x")] * 2)
    app = make_app({"IMAGE_PROVIDERS": "down,up,placeholder", "IMAGE_RETRIES": 0,
                    "BREAKER_FAILURE_THRESHOLD": 2},
                   providers=[down, FakeProvider("up").enqueue(ProviderUnavailable("x"))])
    service, metrics = app.extensions["dungeon"].images, app.extensions["dungeon"].metrics
    for _ in range(2):
        service.generate(ImageRequest("a ship"))
    sample = metrics.sample
    assert sample("dungeon_image_attempts_total", {"provider": "down", "outcome": "transient"}) == 2
    assert sample("dungeon_image_attempts_total", {"provider": "up", "outcome": "success"}) == 1
    assert sample("dungeon_image_requests_total", {"result": "generated"}) == 1
    assert sample("dungeon_image_requests_total", {"result": "placeholder"}) == 1
    assert sample("dungeon_image_fallbacks_total", {"from_provider": "down"}) == 2
    assert sample("dungeon_image_attempt_seconds_count", {"provider": "down"}) == 2
    assert sample("dungeon_provider_circuit_state", {"provider": "down"}) == 2


def test_metrics_endpoint_serves_prometheus_text(client, auth):
    client.post("/api/images", headers=auth,
                json={"prompt": "p", "genre": "fantasy", "style": "comic"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'dungeon_image_requests_total{result="placeholder"} 1.0' in text
