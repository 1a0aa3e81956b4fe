from tests.conftest import guest_headers
from tests.fakes import PNG, FakeProvider
from tests.test_error_shape import assert_error_shape

BODY = {"prompt": "A neon alley in the rain", "genre": "cyberpunk", "style": "pixel_art"}


def test_post_runs_the_chain_and_returns_our_url(make_app):
    app = make_app({"IMAGE_PROVIDERS": "fake,placeholder"}, providers=[FakeProvider("fake")])
    client = app.test_client()
    response = client.post("/api/images", headers=guest_headers(client),
                           json={**BODY, "aspect": "portrait", "quality": "high"})
    assert response.status_code == 201
    image = response.json["image"]
    assert image["provider"] == "fake" and image["model"] == "fake-model"
    assert image["placeholder"] is False
    assert image["attempts"][0]["outcome"] == "success"
    assert image["url"] == f"/api/images/{image['id']}"
    assert "http" not in image["url"]


def test_stored_image_is_served_with_strong_etag_and_immutable_cache(make_app):
    app = make_app({"IMAGE_PROVIDERS": "fake,placeholder"}, providers=[FakeProvider("fake")])
    client = app.test_client()
    url = client.post("/api/images", json=BODY, headers=guest_headers(client)).json["image"]["url"]
    response = client.get(url)
    assert response.status_code == 200 and response.data == PNG
    assert response.mimetype == "image/png"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_if_none_match_gives_304_without_a_body(client, auth):
    url = client.post("/api/images", json=BODY, headers=auth).json["image"]["url"]
    etag = client.get(url).headers["ETag"]
    again = client.get(url, headers={"If-None-Match": f'"other", {etag}'})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_unknown_and_malformed_ids_are_json_404s(client):
    assert_error_shape(client.get("/api/images/" + "a" * 64), 404, "image_not_found")
    assert_error_shape(client.get("/api/images/{\"$gt\":\"\"}"), 404, "image_not_found")


def test_placeholder_bytes_are_stored_once(client, app, auth):
    first = client.post("/api/images", json=BODY, headers=auth).json["image"]["id"]
    second = client.post("/api/images", json=BODY, headers=auth).json["image"]["id"]
    assert first == second
    assert app.extensions["dungeon"].db["images.files"].count_documents({}) == 1


def test_creating_images_needs_a_bearer_token(client):
    assert_error_shape(client.post("/api/images", json=BODY), 401, "unauthorized")


def test_images_are_served_with_headers_that_stop_content_sniffing(client, auth):
    url = client.post("/api/images", json=BODY, headers=auth).json["image"]["url"]
    headers = client.get(url).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_svg_from_a_provider_is_refused(make_app):
    from dungeon.images.types import GeneratedImage, ImageRequest

    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    sneaky = FakeProvider("sneaky").enqueue(*[GeneratedImage(data=svg)] * 3)
    app = make_app({"IMAGE_PROVIDERS": "sneaky,placeholder"}, providers=[sneaky])
    assert app.extensions["dungeon"].images.generate(ImageRequest("x")).placeholder


def test_cors_allows_only_configured_origins(make_app):
    client = make_app({"CORS_ORIGINS": "https://play.example.com"}).test_client()
    allowed = client.options("/api/games", headers={
        "Origin": "https://play.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Idempotency-Key"})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://play.example.com"
    assert "idempotency-key" in allowed.headers["Access-Control-Allow-Headers"].lower()
    other = client.get("/api/catalog", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_no_cors_headers_by_default(client):
    response = client.get("/api/catalog", headers={"Origin": "https://play.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_preflight_of_every_game_route_is_answered_without_a_token(make_app):
    client = make_app({"CORS_ORIGINS": "https://play.example.com"}).test_client()
    game = "A" * 22
    for path, method in [("/api/games", "POST"), ("/api/games", "GET"),
                         (f"/api/games/{game}", "DELETE"), (f"/api/games/{game}/actions", "POST"),
                         (f"/api/games/{game}/turns/1/image", "POST"), ("/api/images", "POST")]:
        response = client.options(path, headers={
            "Origin": "https://play.example.com", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type"})
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == "https://play.example.com"
    refused = client.options("/api/games", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in refused.headers
