"""Fetching an image that a provider returned as a URL, at once and within limits."""

from __future__ import annotations

import requests

from ..errors import ProviderUnavailable

ALLOWED_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def download(session: requests.Session, url: str, *, max_bytes: int,
             timeout: tuple[float, float]) -> tuple[bytes, str]:
    """Return ``(bytes, content_type)`` of the image at ``url``.

    Provider URLs expire (OpenAI's after an hour), so the bytes are fetched
    as soon as the URL arrives.  A wrong content type, an oversized body or a
    failed fetch is a transient provider failure: the service may retry.
    """
    try:
        with session.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ProviderUnavailable(f"image download answered {response.status_code}",
                                          http_status=response.status_code)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in ALLOWED_TYPES:
                raise ProviderUnavailable(f"image download has content type {content_type!r}")
            return _read_capped(response, max_bytes), content_type
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"image download failed: {type(exc).__name__}") from None


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ProviderUnavailable(f"image download is {declared} bytes, over {max_bytes}")
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ProviderUnavailable(f"image download exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
