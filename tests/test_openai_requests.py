"""The exact JSON each OpenAI image model is sent: only parameters it accepts."""

import base64
import json

import pytest
import requests

from dungeon.images.types import ImageRequest
from providers.openai_images import OpenAIImageProvider, make_session
from providers.openai_models import MODELS
from tests.conftest import API_KEY
from tests.fakes import PNG

URL = "https://api.openai.com/v1/images/generations"
ROWS = {row["model"]: row for row in MODELS}
CONFIG = {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": "https://api.openai.com/v1",
          "IMAGE_CONNECT_TIMEOUT": 5.0}
SCENE = ImageRequest("A goblin market under the bridge", "fantasy", "painterly", "landscape",
                     "standard")
PROMPT = ("A goblin market under the bridge\n\nA fantasy scene. Art style: rich digital oil "
          "painting, dramatic light. No text.")


def provider(model, config=CONFIG):
    return OpenAIImageProvider(ROWS[model], config, make_session())


def ok_answer():
    return {"json": {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}],
                     "output_format": "png", "size": "1536x1024", "quality": "medium"},
            "headers": {"x-request-id": "req_ok"}}


GPT_BODY = {"prompt": PROMPT, "n": 1, "size": "1536x1024", "quality": "medium",
            "output_format": "png"}


GPT_MODELS = ("gpt-image-2.6-sunburst", "gpt-image-2.6-flare", "gpt-image-2.5-sunburst",
              "gpt-image-2.5-flare", "gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini",
              "chatgpt-image-latest", "gpt-image-1")
PINNED_BODIES = {
    **{model: {"model": model, **GPT_BODY} for model in GPT_MODELS},
    "dall-e-3": {"model": "dall-e-3", "prompt": PROMPT, "n": 1, "size": "1792x1024",
                 "quality": "standard", "style": "vivid", "response_format": "b64_json"},
    "dall-e-2": {"model": "dall-e-2", "prompt": PROMPT, "n": 1, "size": "1024x1024",
                 "response_format": "b64_json"},
}


@pytest.mark.parametrize(("model", "expected"), PINNED_BODIES.items())
def test_each_model_gets_exactly_the_body_it_accepts(requests_mock, model, expected):
    requests_mock.post(URL, **ok_answer())
    image = provider(model).generate(SCENE, timeout=42)
    assert requests_mock.last_request.json() == expected
    assert image.data == PNG


def test_every_model_of_the_capability_table_has_a_pinned_body():
    assert set(PINNED_BODIES) == set(ROWS)


@pytest.mark.parametrize("model", [m for m, row in ROWS.items() if row["family"] == "gpt-image"])
def test_gpt_image_models_never_get_response_format_or_style(requests_mock, model):
    requests_mock.post(URL, **ok_answer())
    for quality in ("draft", "standard", "high"):
        for aspect in ("square", "landscape", "portrait"):
            provider(model).generate(ImageRequest("x", "scifi", "photoreal", aspect, quality), 5)
            body = requests_mock.last_request.json()
            assert "response_format" not in body and "style" not in body
            assert body["quality"] in {"low", "medium", "high"}
            assert body["size"] in {"1024x1024", "1536x1024", "1024x1536"}


def test_dall_e_3_maps_quality_and_photoreal_style(requests_mock):
    requests_mock.post(URL, **ok_answer())
    provider("dall-e-3").generate(ImageRequest("x", "scifi", "photoreal", "portrait", "high"), 5)
    body = requests_mock.last_request.json()
    assert (body["quality"], body["style"], body["size"]) == ("hd", "natural", "1024x1792")


def test_prompt_is_cut_at_a_word_boundary_to_the_model_limit(requests_mock):
    requests_mock.post(URL, **ok_answer())
    provider("dall-e-3").generate(ImageRequest("word " * 2000, "fantasy", "comic"), 5)
    prompt = requests_mock.last_request.json()["prompt"]
    assert len(prompt) <= 4000 and prompt.endswith("word")


def test_base_url_key_and_timeouts_are_honoured(requests_mock):
    local = {**CONFIG, "OPENAI_BASE_URL": "http://127.0.0.1:8080/v1/"}
    requests_mock.post("http://127.0.0.1:8080/v1/images/generations", **ok_answer())
    sent = {}
    session = make_session()
    original = session.post

    def spy(url, **kwargs):
        sent.update(kwargs)
        return original(url, **kwargs)

    session.post = spy
    OpenAIImageProvider(ROWS["gpt-image-2"], local, session).generate(SCENE, timeout=33)
    assert sent["timeout"] == (5.0, 33)
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_session_pool_fits_a_worker_of_threads():
    adapter = make_session().get_adapter("https://api.openai.com")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter._pool_maxsize >= 16


def test_url_answers_are_passed_on_for_download(requests_mock):
    requests_mock.post(URL, json={"created": 1, "data": [{"url": "https://files.example/x.png",
                                                          "revised_prompt": "a better one"}]})
    image = provider("dall-e-3").generate(SCENE, 5)
    assert image.url == "https://files.example/x.png" and image.data is None
    assert image.revised_prompt == "a better one"


def test_body_is_json_serialisable_for_every_model():
    for model in ROWS:
        json.dumps(provider(model).build_body(SCENE))
