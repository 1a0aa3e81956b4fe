"""HTTP routes of the image service: run the chain, and serve stored images."""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from ..catalog import GENRES, STYLES
from ..errors import ImageNotFound
from ..state import get_state
from ..validation import Text, json_body
from .types import ASPECTS, QUALITIES, ImageRequest

bp = Blueprint("images", __name__, url_prefix="/api/images")

IMAGE_SCHEMA = {
    "prompt": Text(max_length=4000, multiline=True),
    "genre": Text(choices=GENRES),
    "style": Text(choices=STYLES),
    "aspect": Text(required=False, choices=ASPECTS),
    "quality": Text(required=False, choices=QUALITIES),
}
CACHE_FOREVER = "public, max-age=31536000, immutable"


def image_url(image_id: str) -> str:
    """Return the URL, on this service, of a stored image."""
    return url_for("images.get_image", image_id=image_id)


@bp.post("")
def create_image():
    """Run the provider chain for a prompt and return the result with our URL (201)."""
    body = json_body(IMAGE_SCHEMA)
    result = get_state().images.generate(ImageRequest(**body))
    payload = {"image": {**result.to_dict(), "url": image_url(result.image_id)}}
    return payload, 201, {"Location": image_url(result.image_id)}


@bp.get("/<image_id>")
def get_image(image_id: str):
    """Serve a stored image with a strong ETag; 304 when the client already has it."""
    image = get_state().image_store.get(image_id)
    if image is None:
        raise ImageNotFound()
    etag = f'"{image.image_id}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER}
    if _client_has(etag):
        return Response(status=304, headers=headers)
    return Response(image.data, mimetype=image.content_type, headers=headers)


def _client_has(etag: str) -> bool:
    header = request.headers.get("If-None-Match", "").strip()
    return header == "*" or etag in {tag.strip() for tag in header.split(",")}
