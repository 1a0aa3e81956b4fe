"""OpenAI's real error answers, classified into what the image service does next."""

import pytest
import requests

from dungeon.errors import (
    ContentRefused,
    InvalidProviderRequest,
    ModelGone,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
)
from dungeon.images.types import ImageRequest
from providers.openai_images import OpenAIImageProvider, make_session, retry_after
from providers.openai_models import MODELS
from tests.conftest import API_KEY
from tests.fakes import openai_error

URL = "https://api.openai.com/v1/images/generations"
CONFIG = {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": "https://api.openai.com/v1",
          "IMAGE_CONNECT_TIMEOUT": 5.0}
GPT_IMAGE_2 = next(row for row in MODELS if row["model"] == "gpt-image-2")

CASES = [
    (openai_error(400, "Unknown parameter: 'response_format'.", code="unknown_parameter",
                  param="response_format"), InvalidProviderRequest, False),
    (openai_error(400, "Invalid value: 'standard'. Supported values are: 'low', 'medium', "
                  "'high', and 'auto'.", code="invalid_value", param="quality"),
     InvalidProviderRequest, False),
    (openai_error(400, "Your request was rejected as a result of our safety system.",
                  code="content_policy_violation"), ContentRefused, False),
    (openai_error(400, "Your request was rejected by the safety system. safety_violations="
                  "[sexual].", type_="image_generation_user_error", code="moderation_blocked"),
     ContentRefused, False),
    (openai_error(400, "Billing hard limit has been reached",
                  code="billing_hard_limit_reached"), ProviderAuthError, False),
    (openai_error(401, "Incorrect API key provided: sk-test-***.", code="invalid_api_key"),
     ProviderAuthError, False),
    (openai_error(403, "Your organization must be verified to use the model `gpt-image-2`."),
     ProviderAuthError, False),
    (openai_error(429, "You exceeded your current quota.", type_="insufficient_quota",
                  code="insufficient_quota"), ProviderAuthError, False),
    (openai_error(404, "The model `gpt-image-1` does not exist or you do not have access to it.",
                  code="model_not_found"), ModelGone, False),
    (openai_error(429, "Rate limit reached for gpt-image-2 on images per min.",
                  type_="requests", code="rate_limit_exceeded"), RateLimited, True),
    (openai_error(503, "The server is overloaded.", type_="service_unavailable_error",
                  code="server_is_overloaded"), ProviderUnavailable, True),
    (openai_error(500, "The server had an error while processing your request.",
                  type_="server_error"), ProviderUnavailable, True),
    (openai_error(408, "Request timed out."), ProviderUnavailable, True),
    (openai_error(409, "Conflict."), ProviderUnavailable, True),
]


@pytest.mark.parametrize(("answer", "error", "retryable"), CASES)
def test_error_answers_are_classified(requests_mock, answer, error, retryable):
    requests_mock.post(URL, **answer)
    with pytest.raises(error) as caught:
        OpenAIImageProvider(GPT_IMAGE_2, CONFIG, make_session()).generate(ImageRequest("x"), 5)
    exc = caught.value
    assert type(exc) is error and exc.retryable is retryable
    assert exc.http_status == answer["status_code"]
    assert exc.provider_request_id == answer["headers"]["x-request-id"]
    assert exc.message == answer["json"]["error"]["message"]
    assert exc.error_code == answer["json"]["error"]["code"]


def test_invalid_request_keeps_the_parameter(requests_mock):
    requests_mock.post(URL, **CASES[0][0])
    with pytest.raises(InvalidProviderRequest) as caught:
        OpenAIImageProvider(GPT_IMAGE_2, CONFIG, make_session()).generate(ImageRequest("x"), 5)
    assert caught.value.param == "response_format"


@pytest.mark.parametrize(("answer", "why"), [
    ({"status_code": 200, "text": "<html>bad gateway</html>"}, "malformed JSON"),
    ({"status_code": 200, "json": {"created": 1, "data": []}}, "no image data"),
    ({"status_code": 200, "json": {"created": 1}}, "no image data"),
    ({"status_code": 200, "json": {"created": 1, "data": [{"b64_json": "%%%not-b64"}]}},
     "undecodable base64"),
    ({"status_code": 502, "text": "upstream connect error"}, "HTTP 502"),
    ({"exc": requests.ConnectTimeout}, "timed out"),
    ({"exc": requests.ReadTimeout}, "timed out"),
    ({"exc": requests.ConnectionError}, "connection failed"),
])
def test_unusable_answers_and_broken_connections_are_transient(requests_mock, answer, why):
    requests_mock.post(URL, **answer)
    with pytest.raises(ProviderUnavailable, match=why):
        OpenAIImageProvider(GPT_IMAGE_2, CONFIG, make_session()).generate(ImageRequest("x"), 5)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "0.25"}, 0.25),
    ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after_headers_are_read_like_the_official_sdk(headers, seconds):
    assert retry_after(headers) == seconds
