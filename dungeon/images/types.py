"""The image vocabulary shared by the game, the image service and provider plugins."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

ASPECTS = ("square", "landscape", "portrait")
QUALITIES = ("draft", "standard", "high")


@dataclass(frozen=True)
class ImageRequest:
    """What the game asks for, in its own terms; each provider maps it to its model.

    ``aspect`` is one of ASPECTS and ``quality`` one of QUALITIES.
    """

    prompt: str
    genre: str = "generic"
    style: str = "generic"
    aspect: str = "landscape"
    quality: str = "standard"
    # The provider's own moderation strictness where the model takes it
    # (``auto`` or ``low``), from the player's safety level.
    moderation: str = "auto"


@dataclass(frozen=True)
class GeneratedImage:
    """What a provider returns: bytes, or a URL the service downloads at once."""

    data: bytes | None = None
    url: str | None = None
    content_type: str = "image/png"
    revised_prompt: str | None = None
    placeholder: bool = False


@runtime_checkable
class ImageProvider(Protocol):
    """The interface an image provider plugin implements.

    ``name`` is what ``IMAGE_PROVIDERS`` refers to.  ``generate`` raises a
    ``dungeon.errors.ProviderError`` subclass on failure; it must not retry on
    its own (the service retries, with backoff and a deadline) and must not
    wait longer than ``timeout`` seconds.
    """

    name: str

    def generate(self, request: ImageRequest, timeout: float) -> GeneratedImage:
        """Make one image for ``request`` within ``timeout`` seconds, or raise ProviderError."""


def describe(provider: object) -> dict[str, object]:
    """Return the optional facts a provider declares: model, shutdown date, limits."""
    shutdown = getattr(provider, "shutdown_date", None)
    return {
        "model": getattr(provider, "model", None),
        "shutdown_date": shutdown.isoformat() if isinstance(shutdown, date) else None,
        "max_prompt_chars": getattr(provider, "max_prompt_chars", None),
        "placeholder": bool(getattr(provider, "is_placeholder", False)),
    }


@dataclass
class Attempt:
    """One try of one provider, as reported in the result, the logs and the metrics."""

    provider: str
    outcome: str
    ms: float = 0.0
    status: int | None = None
    error_code: str | None = None
    model: str | None = None


@dataclass
class ImageResult:
    """The image service's answer: which provider served, and every attempt on the way."""

    image_id: str
    content_type: str
    provider: str
    model: str | None
    placeholder: bool
    revised_prompt: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    prompt_refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form of the result."""
        return asdict(self)
