"""A dungeon image provider for Stability AI's Stable Image Core REST API.

Everything a provider plugin needs is here: a ``register_image_providers``
hook implementation, a class with ``name`` and ``generate(request, timeout)``,
a mapping from the game's request to the API's parameters, and a mapping from
the API's failures to dungeon's provider errors, so that the image service can
retry, fall back or open the breaker.  The plugin never retries by itself.
"""

from __future__ import annotations

import requests

import dungeon
from dungeon.errors import (
    ContentRefused,
    InvalidProviderRequest,
    ProviderAuthError,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
)
from dungeon.images.types import GeneratedImage, ImageRequest

ASPECT_RATIOS = {"square": "1:1", "landscape": "3:2", "portrait": "2:3"}
STYLE_PRESETS = {"painterly": "fantasy-art", "pixel_art": "pixel-art", "comic": "comic-book",
                 "photoreal": "photographic", "watercolor": "digital-art"}


@dungeon.hookimpl
def register_image_providers(register, config):
    """Register the Stable Image Core provider."""
    register(StabilityProvider(config.get("STABILITY_API_KEY"),
                               config.get("STABILITY_BASE_URL", "https://api.stability.ai"),
                               config.get("IMAGE_CONNECT_TIMEOUT", 5.0)))


class StabilityProvider:
    """Generates PNG images with Stable Image Core."""

    name = "stability-core"
    model = "stable-image-core"
    max_prompt_chars = 10000

    def __init__(self, api_key: str | None, base_url: str, connect_timeout: float,
                 session: requests.Session | None = None):
        self.api_key = api_key
        self.url = f"{base_url.rstrip('/')}/v2beta/stable-image/generate/core"
        self.connect_timeout = connect_timeout
        self.session = session or requests.Session()

    def form(self, request: ImageRequest) -> dict[str, str]:
        """Return the multipart form fields for ``request``."""
        fields = {"prompt": request.prompt, "output_format": "png",
                  "aspect_ratio": ASPECT_RATIOS.get(request.aspect, "1:1")}
        if request.style in STYLE_PRESETS:
            fields["style_preset"] = STYLE_PRESETS[request.style]
        return fields

    def generate(self, request: ImageRequest, timeout: float) -> GeneratedImage:
        """Call the API once; return the PNG or raise a classified ProviderError."""
        if not self.api_key:
            raise ProviderNotConfigured("no Stability API key is set")
        # The API takes multipart/form-data: ``files`` with a None filename
        # makes requests send each field as a plain form part.
        parts = {key: (None, value) for key, value in self.form(request).items()}
        try:
            response = self.session.post(
                self.url, files=parts, timeout=(self.connect_timeout, timeout),
                headers={"Authorization": f"Bearer {self.api_key}", "Accept": "image/*"})
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"connection failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise classify(response)
        if response.headers.get("finish-reason") == "CONTENT_FILTERED":
            raise ContentRefused("the image was filtered by Stability's safety system")
        return GeneratedImage(data=response.content, content_type="image/png")


def classify(response: requests.Response) -> ProviderError:
    """Return the ProviderError for a Stability error answer ``{"name", "errors": [...]}``."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    name = body.get("name")
    errors = body.get("errors") or []
    fields = {"message": "; ".join(map(str, errors)) or f"HTTP {response.status_code}",
              "http_status": response.status_code, "error_code": name,
              "provider_request_id": body.get("id")}
    status = response.status_code
    if status == 403 and name == "content_moderation":
        return ContentRefused(**fields)
    if status in (401, 402, 403):
        return ProviderAuthError(**fields)
    if status == 429:
        return RateLimited(retry_after=_seconds(response.headers.get("retry-after")), **fields)
    if status >= 500 or status == 408:
        return ProviderUnavailable(**fields)
    return InvalidProviderRequest(**fields)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
