"""OpenAI image providers: one class, one instance per model of the capability table.

Each request is built from the model's row in ``openai_models.MODELS`` and
carries only parameters that model accepts; each failure is classified from
OpenAI's error body so the image service knows whether to retry, move on,
open the breaker or disable the provider.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

import dungeon
from dungeon.catalog import scene_prompt
from dungeon.errors import (
    ContentRefused,
    InvalidProviderRequest,
    ModelGone,
    ProviderAuthError,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
)
from dungeon.images.prompts import truncate
from dungeon.images.service import decode_b64
from dungeon.images.types import GeneratedImage, ImageRequest

from .openai_models import MODELS

log = logging.getLogger(__name__)

CONTENT_CODES = {"content_policy_violation", "moderation_blocked"}
QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "credit_balance_exhausted"}
RETRY_STATUSES = {408, 409}
# Request threads that may run the chain themselves (POST /api/images, at
# most IMAGE_REQUEST_LIMIT at once) while every background image thread waits
# on the API: the pool's room beyond IMAGE_WORKERS when IMAGE_HTTP_POOL is 0.
REQUEST_CALLERS = 16  # when IMAGE_REQUEST_LIMIT is not configured
POOL_SIZE = 32  # make_session's default, for callers without a configuration


@dungeon.hookimpl
def register_image_providers(register, config):
    """Register one provider per model of the capability table, sharing one HTTP pool."""
    session = make_session(pool_size(config))
    for row in MODELS:
        register(OpenAIImageProvider(row, config, session))


def pool_size(config: Mapping[str, Any]) -> int:
    """Return how many connections to the API host one process keeps open.

    An image call is a network wait of 10-70 s, so every background image
    thread may hold a connection at once.  A smaller pool still works, but
    whenever more calls than it holds end together, the extra connections are
    closed ("connection pool is full") and the next calls open new ones, a
    TLS handshake each (benchmarks/capacity.py --pool-check).
    """
    workers = config["IMAGE_WORKERS"]
    size = (config.get("IMAGE_HTTP_POOL")
            or workers + config.get("IMAGE_REQUEST_LIMIT", REQUEST_CALLERS))
    if size < workers:
        log.warning("IMAGE_HTTP_POOL (%d) is smaller than IMAGE_WORKERS (%d): image calls "
                    "beyond it will keep opening new connections", size, workers)
    return size


def make_session(pool: int = POOL_SIZE) -> requests.Session:
    """Return a session keeping up to ``pool`` connections to each API host."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class OpenAIImageProvider:
    """Generates images with one OpenAI image model through ``/images/generations``."""

    def __init__(self, row: Mapping[str, Any], config: Mapping[str, Any],
                 session: requests.Session):
        self.row = row
        self.name = self.model = row["model"]
        self.max_prompt_chars = row["max_prompt_chars"]
        self.shutdown_date = date.fromisoformat(row["shutdown"]) if row["shutdown"] else None
        self.api_key = config["OPENAI_API_KEY"]
        self.base_url = config["OPENAI_BASE_URL"].rstrip("/")
        self.connect_timeout = config["IMAGE_CONNECT_TIMEOUT"]
        self.session = session

    def build_body(self, request: ImageRequest) -> dict[str, Any]:
        """Return the JSON body for ``request``, with only parameters this model accepts."""
        row = self.row
        prompt = truncate(scene_prompt(request.prompt, request.genre, request.style),
                          self.max_prompt_chars)
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1,
                                "size": row["sizes"].get(request.aspect, row["sizes"]["square"])}
        if row["qualities"]:
            body["quality"] = row["qualities"].get(request.quality, row["qualities"]["standard"])
        if row["style"]:
            body["style"] = "natural" if request.style == "photoreal" else "vivid"
        if row["response_format"]:
            body["response_format"] = "b64_json"
        if row["family"] == "gpt-image":
            body["output_format"] = "png"
        # "auto" is the API's default: sent only when a mature player asks for less.
        if row.get("moderation") and request.moderation != "auto":
            body["moderation"] = request.moderation
        return body

    def generate(self, request: ImageRequest, timeout: float) -> GeneratedImage:
        """Call the API once and return the image, or raise a classified ProviderError."""
        if not self.api_key:
            raise ProviderNotConfigured("no OpenAI API key is set")
        try:
            response = self.session.post(
                f"{self.base_url}/images/generations", json=self.build_body(request),
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=(self.connect_timeout, timeout))
        except requests.Timeout:
            raise ProviderUnavailable("timed out waiting for the image") from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"connection failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise classify(response)
        return self._parse(response)

    def _parse(self, response: requests.Response) -> GeneratedImage:
        request_id = response.headers.get("x-request-id")
        try:
            payload = response.json()
        except ValueError:
            raise ProviderUnavailable("malformed JSON in the answer",
                                      provider_request_id=request_id) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not data or not isinstance(data[0], dict):
            # An empty success is a failure: no image means no image.
            raise ProviderUnavailable("answer has no image data", provider_request_id=request_id)
        item = data[0]
        if item.get("b64_json"):
            return GeneratedImage(data=decode_b64(item["b64_json"]),
                                  content_type=_content_type(payload),
                                  revised_prompt=item.get("revised_prompt"))
        if item.get("url"):
            return GeneratedImage(url=item["url"], revised_prompt=item.get("revised_prompt"))
        raise ProviderUnavailable("answer has neither b64_json nor url",
                                  provider_request_id=request_id)


def _content_type(payload: Mapping[str, Any]) -> str:
    fmt = payload.get("output_format") or "png"
    return {"jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
            "svg": "image/svg+xml"}.get(str(fmt), "image/png")


def classify(response: requests.Response) -> ProviderError:
    """Return the ProviderError that an OpenAI error response stands for."""
    status = response.status_code
    fields = _error_fields(response)
    code, error_type = fields["error_code"], fields["error_type"]
    if code in CONTENT_CODES or error_type == "image_generation_user_error":
        return ContentRefused(**fields)
    if code in QUOTA_CODES or error_type == "insufficient_quota" or status in (401, 403):
        return ProviderAuthError(**fields)
    if status == 404 or code == "model_not_found":
        return ModelGone(**fields)
    if status == 429:
        return RateLimited(retry_after=retry_after(response.headers), **fields)
    if status in RETRY_STATUSES or status >= 500:
        return ProviderUnavailable(**fields)
    return InvalidProviderRequest(**fields)


def _error_fields(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {"message": str(error)}
    message = error.get("message") or f"HTTP {response.status_code}"
    return {
        "message": str(message)[:500], "http_status": response.status_code,
        "error_type": error.get("type"), "error_code": error.get("code"),
        "param": error.get("param"), "provider_request_id": response.headers.get("x-request-id"),
    }


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Return the wait the server asked for, in seconds: ``retry-after-ms`` first, then
    ``Retry-After`` as seconds or as an HTTP date (the order the official SDK reads them)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
