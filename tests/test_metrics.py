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


def test_http_metrics_are_grouped_by_route_rule_not_path(client, auth, app):
    for _ in range(2):
        game_id = client.post("/api/games", headers=auth,
                              json={"genre": "fantasy", "style": "comic"}).json["game"]["id"]
        client.get(f"/api/games/{game_id}", headers=auth)
    client.get("/no/such/thing")
    metrics = app.extensions["dungeon"].metrics
    labels = {"method": "GET", "route": "/api/games/<session_id>", "status": "200"}
    assert metrics.sample("dungeon_http_requests_total", labels) == 2
    assert metrics.sample("dungeon_http_requests_total",
                          {"method": "GET", "route": "unmatched", "status": "404"}) == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert game_id not in text


def test_session_metrics_follow_real_flows(client, auth, app):
    game_id = client.post("/api/games", headers=auth,
                          json={"genre": "fantasy", "style": "comic"}).json["game"]["id"]
    client.get(f"/api/games/{game_id}", headers=auth)
    client.get("/api/games/" + "x" * 22, headers=auth)
    client.post(f"/api/games/{game_id}/actions", headers=auth, json={"action": "look"})
    sample = app.extensions["dungeon"].metrics.sample
    assert sample("dungeon_session_creations_total", {"outcome": "created"}) == 1
    assert sample("dungeon_session_lookups_total", {"outcome": "hit"}) >= 2
    assert sample("dungeon_session_lookups_total", {"outcome": "not_found"}) == 1
    assert sample("dungeon_session_cache_size") == 1
    assert sample("dungeon_narrator_attempts_total", {"narrator": "local", "outcome": "ok"}) == 2
    # Only reads from the database are timed: the cache answered the rest.
    assert sample("dungeon_session_load_seconds_count") == 1  # the id no game has
    app.extensions["dungeon"].sessions.forget_cached(
        client.get("/api/auth/me", headers=auth).json["user_id"], game_id)
    client.get(f"/api/games/{game_id}", headers=auth)
    assert sample("dungeon_session_load_seconds_count") == 2
    assert sample("dungeon_session_lookups_total", {"outcome": "found"}) == 1


def test_configured_models_export_their_shutdown_date(make_app):
    app = make_app({"IMAGE_PROVIDERS": "gpt-image-2,gpt-image-1.5,placeholder"})
    sample = app.extensions["dungeon"].metrics.sample
    labels = {"provider": "gpt-image-1.5", "model": "gpt-image-1.5"}
    assert sample("dungeon_provider_model_shutdown_timestamp_seconds", labels) == 1796083200
    assert sample("dungeon_provider_model_shutdown_timestamp_seconds",
                  {"provider": "gpt-image-2", "model": "gpt-image-2"}) == 0


def test_the_process_id_metric_values_use_follows_a_fork():
    import os

    from dungeon.metrics import process_id

    assert process_id() == os.getpid()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports what it sees, then leaves at once
        os.write(writer, f"{process_id()} {os.getpid()}".encode())
        os._exit(0)
    os.close(writer)
    seen, real = os.read(reader, 64).decode().split()
    os.close(reader)
    os.waitpid(child, 0)
    assert seen == real != str(os.getpid())
