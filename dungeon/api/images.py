"""Images: make one from a prompt, and serve stored images and turns' images."""

from __future__ import annotations

import hashlib

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag

from ..auth import require_user
from ..errors import ImageNotFound
from ..images.jobs import valid_slot_id
from ..images.types import ImageRequest
from ..moderation import image_moderation
from ..state import get_state
from .schemas import ImageAnswer, ImageAsk, ImagePath, PendingImage, Waiting
from .views import image_url, may_wait, responses

bp = APIBlueprint("images", __name__, url_prefix="/api/images",
                  abp_tags=[Tag(name="images", description="Pictures, made and served.")])

CACHE_FOREVER = "public, max-age=31536000, immutable"
SLOT_CACHING = "private, no-cache"
PENDING_RETRY_SECONDS = 2
# Browsers must treat the bytes as the declared image type and run nothing in them.
IMAGE_SAFETY_HEADERS = {"X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "default-src 'none'; sandbox"}
IMAGE_BYTES = {"description": "The image.", "content": {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in ("image/png", "image/jpeg", "image/webp", "image/gif")}}


@bp.before_request
def authenticate():
    """Making an image needs a bearer token (before the body is looked at); serving one does not.

    A turn's image URL is unguessable and is handed only to the game's owner;
    a content address names bytes anyone with the URL may fetch.
    """
    if request.method == "POST":
        require_user(get_state().signer)


@bp.post("", responses=responses({201: ImageAnswer}, 400, 401, 422, 429, 503),
         security=[{"bearer": []}])
def create_image(body: ImageAsk):
    """Run the provider chain for a prompt and return the image with our URL (201).

    Never fails for want of a provider: the genre's placeholder answers last
    (`placeholder: true`).
    """
    state = get_state()
    state.limiter.check("images", g.user_id)
    safety = state.users.safety_level(g.user_id)
    state.moderator.check({"prompt": body.prompt}, safety)
    result = state.images.generate_for_client(ImageRequest(
        **body.model_dump(exclude_none=True), moderation=image_moderation(safety)))
    found = result.to_dict()
    image = {"id": found.pop("image_id"), "url": image_url(result.image_id), "status": "ready",
             **found}
    return {"image": image}, 201, {"Location": image_url(result.image_id)}


@bp.get("/<image_id>", responses=responses(
    {200: IMAGE_BYTES, 202: PendingImage, 304: {"description": "Not modified."}}, 404, 422))
def get_image(path: ImagePath, query: Waiting):
    """Serve an image with a strong ETag (304 when the client has it); 202 while it is made.

    `image_id` is either a stored image's content address, whose URL never
    changes, or a turn image's slot id, which names the image before it
    exists and ends with its game.
    """
    state = get_state()
    if valid_slot_id(path.image_id):
        slot = _slot(path.image_id, query)
        if slot["status"] != "ready":
            body = {"image": {"id": path.image_id, "url": image_url(path.image_id),
                              "status": slot["status"], "provider": None, "placeholder": False}}
            return body, 202, {"Retry-After": str(PENDING_RETRY_SECONDS),
                               "Cache-Control": "no-store"}
        image = state.image_store.get(slot["image_id"])
        if image is None:  # its stored image was lost: the placeholder stands in
            slot = state.jobs.image_lost(slot) or slot
            image = state.image_store.get(slot["image_id"])
        # A turn's image ends with its game: caches must ask again (a cheap
        # 304 while it lives), so a deleted game's pictures stop being served;
        # its ETag does not give away the content address either.
        caching = SLOT_CACHING
        etag = hashlib.sha256(f"{path.image_id}:{slot['image_id']}".encode()).hexdigest()[:40]
    else:
        # Content addresses are served only for images POST /api/images made.
        image = state.image_store.get(path.image_id, public_only=True)
        caching, etag = CACHE_FOREVER, path.image_id
    if image is None:
        raise ImageNotFound()
    etag = f'"{etag}"'
    headers = {"ETag": etag, "Cache-Control": caching, **IMAGE_SAFETY_HEADERS}
    if _client_has(etag):
        return Response(status=304, headers=headers)
    return Response(image.data, mimetype=image.content_type, headers=headers)


def _slot(slot_id: str, query: Waiting) -> dict:
    state = get_state()
    jobs = state.jobs
    slot = jobs.find_and_reclaim(slot_id)
    # The game must still exist: a slot that outlived its game (a delete cut
    # off part way, a slot restored while the game was being deleted) shows
    # nothing of it.
    if slot is None or not state.sessions.exists(slot["session_id"]):
        raise ImageNotFound()
    if slot["status"] == "pending" and query.wait == "image" and may_wait():
        jobs.wait(slot_id, client=request.remote_addr or "unknown")
        slot = jobs.find_and_reclaim(slot_id) or slot
    return slot


def _client_has(etag: str) -> bool:
    header = request.headers.get("If-None-Match", "").strip()
    return header == "*" or etag in {tag.strip() for tag in header.split(",")}
