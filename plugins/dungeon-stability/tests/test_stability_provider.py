import pytest
import requests
from dungeon_stability import StabilityProvider

from dungeon.errors import (
    ContentRefused,
    InvalidProviderRequest,
    ProviderAuthError,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
)
from dungeon.images.types import ImageRequest

URL = "https://api.stability.ai/v2beta/stable-image/generate/core"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def provider():
    return StabilityProvider("sk-stability-test", "https://api.stability.ai", 5.0)


def test_sends_multipart_form_with_mapped_aspect_and_style(requests_mock, provider):
    requests_mock.post(URL, content=PNG, headers={"finish-reason": "SUCCESS"})
    image = provider.generate(ImageRequest("a lighthouse", "mystery", "comic", "portrait"), 30)
    sent = requests_mock.last_request
    assert image.data == PNG
    assert sent.headers["Accept"] == "image/*"
    assert sent.headers["Authorization"] == "Bearer sk-stability-test"
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    body = sent.body.decode()
    assert 'name="aspect_ratio"\r\n\r\n2:3' in body
    assert 'name="style_preset"\r\n\r\ncomic-book' in body
    assert 'name="prompt"\r\n\r\na lighthouse' in body


@pytest.mark.parametrize(("status", "body", "error"), [
    (403, {"id": "r1", "name": "content_moderation", "errors": ["flagged"]}, ContentRefused),
    (401, {"id": "r2", "name": "unauthorized", "errors": ["bad key"]}, ProviderAuthError),
    (402, {"id": "r3", "name": "payment_required", "errors": ["no credits"]}, ProviderAuthError),
    (400, {"id": "r4", "name": "bad_request", "errors": ["aspect_ratio: bad"]},
     InvalidProviderRequest),
    (500, {"id": "r5", "name": "internal_error", "errors": ["oops"]}, ProviderUnavailable),
])
def test_classifies_error_answers(requests_mock, provider, status, body, error):
    requests_mock.post(URL, status_code=status, json=body)
    with pytest.raises(error) as caught:
        provider.generate(ImageRequest("x"), 30)
    assert caught.value.provider_request_id == body["id"]


def test_rate_limit_carries_retry_after(requests_mock, provider):
    requests_mock.post(URL, status_code=429, headers={"retry-after": "3"},
                       json={"id": "r", "name": "rate_limit_exceeded", "errors": ["slow"]})
    with pytest.raises(RateLimited) as caught:
        provider.generate(ImageRequest("x"), 30)
    assert caught.value.retry_after == 3.0


def test_filtered_image_is_a_content_refusal(requests_mock, provider):
    requests_mock.post(URL, content=PNG, headers={"finish-reason": "CONTENT_FILTERED"})
    with pytest.raises(ContentRefused):
        provider.generate(ImageRequest("x"), 30)


def test_timeout_is_transient(requests_mock, provider):
    requests_mock.post(URL, exc=requests.ConnectTimeout)
    with pytest.raises(ProviderUnavailable):
        provider.generate(ImageRequest("x"), 30)


def test_without_key_is_skipped_not_failed(requests_mock):
    with pytest.raises(ProviderNotConfigured):
        StabilityProvider(None, "https://api.stability.ai", 5.0).generate(ImageRequest("x"), 30)
    assert requests_mock.call_count == 0


def test_plugs_into_the_chain_from_configuration(requests_mock):
    import mongomock

    from dungeon import create_app

    requests_mock.post(URL, content=PNG)
    app = create_app({"LOAD_ENTRYPOINTS": False, "PLUGINS": ["dungeon_stability"],
                      "STABILITY_API_KEY": "sk-stability-test",
                      "IMAGE_PROVIDERS": "stability-core,placeholder"},
                     mongo_client=mongomock.MongoClient())
    client = app.test_client()
    token = client.post("/api/auth/guest").get_json()["token"]
    response = client.post("/api/images", headers={"Authorization": f"Bearer {token}"},
                           json={"prompt": "a tower", "genre": "fantasy", "style": "painterly"})
    assert response.status_code == 201
    assert response.json["image"]["provider"] == "stability-core"
    assert response.json["image"]["placeholder"] is False
