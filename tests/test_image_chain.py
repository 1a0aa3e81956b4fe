"""The image chain: ordered fallback, retries with backoff, deadline, breakers, placeholder."""

import base64

import pytest

from dungeon.errors import (
    ContentRefused,
    InvalidProviderRequest,
    ProviderUnavailable,
    RateLimited,
)
from dungeon.images.types import GeneratedImage, ImageRequest
from tests.conftest import API_KEY, guest_headers
from tests.fakes import PNG, FakeProvider, openai_error

URL = "https://api.openai.com/v1/images/generations"
SCENE = ImageRequest("The lantern gutters as the door creaks open", "horror", "painterly")


def ok_answer():
    return {"json": {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]},
            "headers": {"x-request-id": "req_ok"}}


def images(app):
    return app.extensions["dungeon"].images


def outcomes(result):
    return [(a.provider, a.outcome) for a in result.attempts]


@pytest.fixture
def openai_app(make_app):
    def make(order="gpt-image-2,dall-e-3,placeholder", **config):
        return make_app({"IMAGE_PROVIDERS": order, "OPENAI_API_KEY": API_KEY, **config})
    return make


# --- order and fallback, with OpenAI's real answers ---

def test_the_old_400_falls_through_once_and_is_reported(requests_mock, openai_app):
    requests_mock.post(URL, [
        openai_error(400, "Unknown parameter: 'response_format'.", code="unknown_parameter",
                     param="response_format"),
        ok_answer()])
    result = images(openai_app()).generate(SCENE)
    assert result.provider == "dall-e-3" and not result.placeholder
    assert outcomes(result) == [("gpt-image-2", "invalid_request"), ("dall-e-3", "success")]
    assert result.attempts[0].status == 400 and result.attempts[0].error_code == "unknown_parameter"
    assert requests_mock.call_count == 2  # an invalid request is never retried


def test_all_providers_failing_gives_the_placeholder_with_every_attempt(requests_mock,
                                                                        openai_app, clock):
    requests_mock.post(URL, **openai_error(500, "The server had an error.", type_="server_error"))
    result = images(openai_app(IMAGE_RETRIES=1)).generate(SCENE)
    assert result.placeholder and result.provider == "placeholder"
    assert outcomes(result) == [("gpt-image-2", "transient")] * 2 + \
        [("dall-e-3", "transient")] * 2 + [("placeholder", "success")]


def test_all_failing_still_answers_201_over_http(requests_mock, openai_app):
    requests_mock.post(URL, **openai_error(503, "overloaded", type_="service_unavailable_error"))
    client = openai_app().test_client()
    response = client.post("/api/images", headers=guest_headers(client),
                           json={"prompt": "a crypt", "genre": "horror", "style": "comic"})
    assert response.status_code == 201
    image = response.json["image"]
    assert image["placeholder"] is True and image["url"].startswith("/api/images/")
    assert response.headers["Location"] == image["url"]


def test_content_refusal_moves_on_without_retry_or_breaker_count(requests_mock, openai_app):
    requests_mock.post(URL, [openai_error(400, "rejected by the safety system.",
                                          type_="image_generation_user_error",
                                          code="moderation_blocked"), ok_answer()])
    app = openai_app()
    result = images(app).generate(SCENE)
    assert outcomes(result) == [("gpt-image-2", "content_refused"), ("dall-e-3", "success")]
    assert images(app).breakers["gpt-image-2"].snapshot()["failures"] == 0


def test_auth_failure_opens_the_breaker_for_the_long_time(requests_mock, openai_app, clock):
    requests_mock.post(URL, [openai_error(403, "Your organization must be verified to use the "
                                          "model `gpt-image-2`."), ok_answer(), ok_answer()])
    app = openai_app(BREAKER_AUTH_RESET_SECONDS=900)
    first = images(app).generate(SCENE)
    assert outcomes(first)[0] == ("gpt-image-2", "auth_error")
    clock.advance(899)
    second = images(app).generate(SCENE)
    assert outcomes(second)[0] == ("gpt-image-2", "circuit_open")
    assert requests_mock.call_count == 3  # one auth failure, then dall-e-3 twice


def test_retired_model_is_disabled_after_one_call_and_reported(requests_mock, openai_app):
    requests_mock.post(URL, [openai_error(404, "The model `gpt-image-1` does not exist.",
                                          code="model_not_found"), ok_answer(), ok_answer()])
    app = openai_app("gpt-image-1,gpt-image-2,placeholder")
    images(app).generate(SCENE)
    second = images(app).generate(SCENE)
    assert outcomes(second)[0] == ("gpt-image-1", "disabled")
    assert requests_mock.call_count == 3
    ready = app.test_client().get("/readyz").json["checks"]["image_providers"]
    assert "does not exist" in ready[0]["disabled"]


# --- retries, backoff and deadline ---

def test_transient_errors_retry_with_doubling_backoff(make_app, clock):
    flaky = FakeProvider("flaky").enqueue(ProviderUnavailable("502"), ProviderUnavailable("502"))
    app = make_app({"IMAGE_PROVIDERS": "flaky,placeholder", "IMAGE_RETRIES": 2,
                    "IMAGE_BACKOFF_BASE": 0.5}, providers=[flaky])
    result = images(app).generate(SCENE)
    assert result.provider == "flaky" and len(flaky.calls) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_backoff_is_capped_and_jittered_like_the_sdk(make_app, clock):
    flaky = FakeProvider("flaky").enqueue(*[ProviderUnavailable("x")] * 5)
    app = make_app({"IMAGE_PROVIDERS": "flaky,placeholder", "IMAGE_RETRIES": 5,
                    "IMAGE_BACKOFF_BASE": 1, "IMAGE_BACKOFF_MAX": 3},
                   providers=[flaky], image_options={"jitter": lambda: 1.0})
    images(app).generate(SCENE)
    assert clock.sleeps == [0.75, 1.5, 2.25, 2.25, 2.25]


def test_retry_after_is_honoured(requests_mock, openai_app, clock):
    requests_mock.post(URL, [
        {**openai_error(429, "Rate limit reached.", code="rate_limit_exceeded"),
         "headers": {"retry-after-ms": "2500"}},
        ok_answer()])
    result = images(openai_app()).generate(SCENE)
    assert result.provider == "gpt-image-2"
    assert clock.sleeps == [2.5]


def test_retry_after_longer_than_the_cap_moves_to_the_next_provider(make_app, clock):
    slow = FakeProvider("slow").enqueue(RateLimited("slow down", retry_after=300))
    app = make_app({"IMAGE_PROVIDERS": "slow,next,placeholder", "IMAGE_RETRY_AFTER_MAX": 20},
                   providers=[slow, FakeProvider("next")])
    result = images(app).generate(SCENE)
    assert result.provider == "next" and clock.sleeps == []


def test_deadline_stops_retries_and_skips_later_providers(make_app, clock):
    slow = FakeProvider("slow", clock=clock, costs=50).enqueue(*[ProviderUnavailable("x")] * 5)
    later = FakeProvider("later")
    app = make_app({"IMAGE_PROVIDERS": "slow,later,placeholder", "IMAGE_DEADLINE": 100,
                    "IMAGE_RETRIES": 5}, providers=[slow, later])
    result = images(app).generate(SCENE)
    assert len(slow.calls) == 2  # 50 s + 0.5 s wait + 50 s passes the 100 s budget
    assert later.calls == []
    assert ("later", "deadline_exceeded") in outcomes(result)
    assert result.placeholder


def test_provider_timeout_shrinks_to_the_remaining_deadline(make_app, clock):
    provider = FakeProvider("p", clock=clock, costs=70).enqueue(ProviderUnavailable("x"))
    app = make_app({"IMAGE_PROVIDERS": "p,placeholder", "IMAGE_DEADLINE": 100,
                    "IMAGE_READ_TIMEOUT": 90}, providers=[provider])
    images(app).generate(SCENE)
    assert [timeout for _, timeout in provider.calls] == [90, pytest.approx(29.5)]


# --- circuit breaker ---

def test_open_breaker_skips_the_provider_at_no_cost(make_app, clock):
    down = FakeProvider("down").enqueue(*[ProviderUnavailable("x")] * 3)
    app = make_app({"IMAGE_PROVIDERS": "down,up,placeholder", "IMAGE_RETRIES": 0,
                    "BREAKER_FAILURE_THRESHOLD": 3}, providers=[down, FakeProvider("up")])
    for _ in range(3):
        images(app).generate(SCENE)
    result = images(app).generate(SCENE)
    assert len(down.calls) == 3
    assert outcomes(result)[0] == ("down", "circuit_open") and result.provider == "up"


def test_half_open_trial_closes_the_breaker_on_success(make_app, clock):
    down = FakeProvider("down").enqueue(*[ProviderUnavailable("x")] * 2)
    app = make_app({"IMAGE_PROVIDERS": "down,placeholder", "IMAGE_RETRIES": 0,
                    "BREAKER_FAILURE_THRESHOLD": 2, "BREAKER_RESET_SECONDS": 30},
                   providers=[down])
    images(app).generate(SCENE)
    images(app).generate(SCENE)
    assert images(app).breakers["down"].state == "open"
    clock.advance(30)
    assert images(app).breakers["down"].state == "half_open"
    assert images(app).generate(SCENE).provider == "down"
    assert images(app).breakers["down"].state == "closed"


def test_failed_half_open_trial_reopens_at_once(make_app, clock):
    down = FakeProvider("down").enqueue(*[ProviderUnavailable("x")] * 3)
    app = make_app({"IMAGE_PROVIDERS": "down,placeholder", "IMAGE_RETRIES": 0,
                    "BREAKER_FAILURE_THRESHOLD": 2}, providers=[down])
    images(app).generate(SCENE)
    images(app).generate(SCENE)
    clock.advance(31)
    images(app).generate(SCENE)
    assert images(app).breakers["down"].state == "open"


def test_invalid_prompts_and_refusals_never_open_the_breaker(make_app):
    touchy = FakeProvider("touchy").enqueue(*[ContentRefused("no")] * 10)
    app = make_app({"IMAGE_PROVIDERS": "touchy,placeholder", "BREAKER_FAILURE_THRESHOLD": 2},
                   providers=[touchy])
    for _ in range(5):
        images(app).generate(SCENE)
    images(app).generate(ImageRequest("   \u200b  "))
    assert images(app).breakers["touchy"].state == "closed"
    assert len(touchy.calls) == 5


# --- answers that are not images ---

def test_url_answers_are_downloaded_and_stored(make_app, requests_mock):
    requests_mock.get("https://files.example/scene.png", content=PNG,
                      headers={"Content-Type": "image/png"})
    by_url = FakeProvider("by-url").enqueue(GeneratedImage(url="https://files.example/scene.png"))
    app = make_app({"IMAGE_PROVIDERS": "by-url,placeholder"}, providers=[by_url])
    result = images(app).generate(SCENE)
    assert result.provider == "by-url"
    assert app.extensions["dungeon"].image_store.get(result.image_id).data == PNG


@pytest.mark.parametrize("answer", [
    {"content": PNG, "headers": {"Content-Type": "text/html"}},
    {"content": PNG * 1000, "headers": {"Content-Type": "image/png"}},
    {"status_code": 403, "content": b"expired"},
])
def test_bad_downloads_are_retried_then_fall_back(make_app, requests_mock, answer):
    requests_mock.get("https://files.example/scene.png", **answer)
    by_url = FakeProvider("by-url").enqueue(
        *[GeneratedImage(url="https://files.example/scene.png")] * 3)
    app = make_app({"IMAGE_PROVIDERS": "by-url,placeholder", "IMAGE_MAX_BYTES": 4096},
                   providers=[by_url])
    result = images(app).generate(SCENE)
    assert result.placeholder and outcomes(result)[0] == ("by-url", "transient")


@pytest.mark.parametrize("answer", [GeneratedImage(data=b""), GeneratedImage(data=b"not an image")])
def test_an_empty_or_non_image_success_is_a_failure(make_app, answer):
    odd = FakeProvider("odd").enqueue(*[answer] * 3)
    app = make_app({"IMAGE_PROVIDERS": "odd,placeholder"}, providers=[odd])
    assert images(app).generate(SCENE).placeholder


def test_a_plugin_that_crashes_costs_one_provider_not_the_image(make_app):
    buggy = FakeProvider("buggy").enqueue(KeyError("oops"))
    app = make_app({"IMAGE_PROVIDERS": "buggy,placeholder"}, providers=[buggy])
    result = images(app).generate(SCENE)
    assert result.placeholder and outcomes(result)[0] == ("buggy", "error")


# --- prompts ---

def test_refused_prompt_goes_straight_to_the_placeholder(make_app, log_lines):
    never = FakeProvider("never")
    app = make_app({"IMAGE_PROVIDERS": "never,placeholder",
                    "IMAGE_DENY_PATTERNS": r"\bdragon\b"}, providers=[never])
    result = images(app).generate(ImageRequest("A red DRAGON sleeps"))
    assert never.calls == [] and result.placeholder
    assert result.prompt_refused == [r"matches deny pattern '\\bdragon\\b'"]
    assert any("image prompt refused" in line and "prompt_sha256" in line for line in log_lines())


def test_prompt_is_cleaned_before_any_provider_sees_it(make_app):
    seen = FakeProvider("seen")
    app = make_app({"IMAGE_PROVIDERS": "seen,placeholder"}, providers=[seen])
    images(app).generate(ImageRequest("  a\u200b  moonlit\x00 \n\n harbour\u202e "))
    assert seen.calls[0][0].prompt == "a moonlit harbour"


def test_invalid_request_is_logged_as_a_defect_naming_the_parameter(make_app, log_lines):
    bad = FakeProvider("bad").enqueue(InvalidProviderRequest(
        "Unknown parameter: 'style'.", http_status=400, error_code="unknown_parameter",
        param="style", provider_request_id="req_123"))
    app = make_app({"IMAGE_PROVIDERS": "bad,placeholder"}, providers=[bad])
    images(app).generate(SCENE)
    defect = [line for line in log_lines() if "rejected as invalid" in line]
    assert len(defect) == 1
    assert '"param": "style"' in defect[0] and '"provider_request_id": "req_123"' in defect[0]
    assert '"level": "error"' in defect[0]


def test_the_api_key_never_reaches_logs_or_responses(requests_mock, openai_app, log_lines):
    requests_mock.post(URL, [
        openai_error(401, "Incorrect API key provided: sk-test-****CRET.", code="invalid_api_key"),
        *[openai_error(500, "boom", type_="server_error")] * 3])
    app = openai_app()
    client = app.test_client()
    bodies = [client.post("/api/images", headers=guest_headers(client),
                          json={"prompt": "a tower", "genre": "fantasy",
                                "style": "comic"}).get_data(as_text=True),
              client.get("/readyz").get_data(as_text=True),
              client.get("/metrics").get_data(as_text=True)]
    lines = log_lines()
    assert any("invalid_api_key" in line for line in lines)  # the failure itself is logged
    assert not [text for text in bodies + lines if API_KEY in text]


def test_the_log_formatter_masks_known_secrets_as_a_last_guard(make_app):
    import logging

    from dungeon.logs import make_formatter

    make_app({"OPENAI_API_KEY": API_KEY})  # configures logging with the app's secrets
    record = logging.LogRecord("x", logging.ERROR, "", 0, "boom %s", (API_KEY,), None)
    line = make_formatter("json").format(record)
    assert API_KEY not in line and "boom ****" in line
