"""HTTP routes of the image service: run the chain, and serve stored images."""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from ..auth import require_user
from ..catalog import GENRES, STYLES
from ..errors import ImageNotFound
from ..state import get_state
from ..validation import Text, json_body
from .jobs import valid_slot_id
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
SLOT_CACHING = "private, no-cache"
PENDING_RETRY_SECONDS = 2
# Browsers must treat the bytes as the declared image type and run nothing in them.
IMAGE_SAFETY_HEADERS = {"X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "default-src 'none'; sandbox"}


def image_url(image_id: str) -> str:
    """Return the URL, on this service, of a stored image."""
    return url_for("images.get_image", image_id=image_id)


@bp.post("")
def create_image():
    """Run the provider chain for a prompt and return the result with our URL (201)."""
    user_id = require_user(get_state().signer)
    get_state().limiter.check("images", user_id)
    body = json_body(IMAGE_SCHEMA)
    result = get_state().images.generate(ImageRequest(**body))
    payload = {"image": {**result.to_dict(), "url": image_url(result.image_id)}}
    return payload, 201, {"Location": image_url(result.image_id)}


@bp.get("/<image_id>")
def get_image(image_id: str):
    """Serve an image with a strong ETag (304 when the client has it); 202 while it is made.

    ``image_id`` is either a stored image's content address or a turn image's
    slot id, which names the image before it exists.
    """
    state = get_state()
    caching = CACHE_FOREVER
    if valid_slot_id(image_id):
        slot = _slot(image_id)
        if slot["status"] != "ready":
            body = {"image": {"id": image_id, "status": slot["status"], "url": image_url(image_id)}}
            return body, 202, {"Retry-After": str(PENDING_RETRY_SECONDS),
                               "Cache-Control": "no-store"}
        image = state.image_store.get(slot["image_id"])
        if image is None:  # its stored image was lost: the placeholder stands in
            slot = state.jobs.image_lost(slot) or slot
            image = state.image_store.get(slot["image_id"])
        # A turn's image ends with its game: caches must ask again (a cheap
        # 304 while it lives), so a deleted game's pictures stop being served.
        caching = SLOT_CACHING
    else:
        image = state.image_store.get(image_id)
    if image is None:
        raise ImageNotFound()
    etag = f'"{image.image_id}"'
    headers = {"ETag": etag, "Cache-Control": caching, **IMAGE_SAFETY_HEADERS}
    if _client_has(etag):
        return Response(status=304, headers=headers)
    return Response(image.data, mimetype=image.content_type, headers=headers)


def _slot(slot_id: str) -> dict:
    jobs = get_state().jobs
    slot = jobs.find(slot_id)
    if slot is None:
        raise ImageNotFound()
    if slot["status"] == "pending" and request.args.get("wait") == "image":
        jobs.wait(slot_id)
        slot = jobs.find(slot_id) or slot
    return slot


def _client_has(etag: str) -> bool:
    header = request.headers.get("If-None-Match", "").strip()
    return header == "*" or etag in {tag.strip() for tag in header.split(",")}
