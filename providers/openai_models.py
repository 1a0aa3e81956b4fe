"""What each OpenAI image model accepts, kept as data: adding a model is adding a row.

Sources: OpenAI's API reference and OpenAPI schema (CreateImageRequest), its
deprecations page and model pages, as of November 2026.  Keys of a row:

- ``family``: ``gpt-image`` (always base64, no ``response_format``/``style``)
  or ``dall-e`` (asked for ``b64_json``);
- ``sizes``: aspect -> size string, for models with a fixed list of sizes;
- ``qualities``: the game's quality tier -> the model's ``quality`` value
  (absent: the parameter is not sent);
- ``style``: whether ``style`` (vivid/natural) is accepted;
- ``output_formats``, ``background``, ``moderation``: what the model accepts;
- ``max_prompt_chars`` and ``max_n``;
- ``shutdown``: ISO date the model stops (or stopped) working, where announced.
"""

from __future__ import annotations

_GPT_SIZES = {"square": "1024x1024", "landscape": "1536x1024", "portrait": "1024x1536"}
_GPT_QUALITY = {"draft": "low", "standard": "medium", "high": "high"}
_GPT_FORMATS = ("png", "jpeg", "webp")


def _gpt_image(model: str, shutdown: str | None = None, **overrides) -> dict:
    row = {
        "model": model, "family": "gpt-image", "sizes": _GPT_SIZES, "qualities": _GPT_QUALITY,
        "style": False, "response_format": False, "output_formats": _GPT_FORMATS,
        "background": True, "moderation": True, "max_prompt_chars": 32000, "max_n": 10,
        "shutdown": shutdown,
    }
    row.update(overrides)
    return row


MODELS: tuple[dict, ...] = (
    _gpt_image("gpt-image-2.6-sunburst", output_formats=(*_GPT_FORMATS, "gif", "svg")),
    _gpt_image("gpt-image-2.6-flare", output_formats=(*_GPT_FORMATS, "gif", "svg")),
    _gpt_image("gpt-image-2.5-sunburst"),
    _gpt_image("gpt-image-2.5-flare"),
    _gpt_image("gpt-image-2"),
    _gpt_image("gpt-image-1.5", shutdown="2026-12-01"),
    _gpt_image("gpt-image-1-mini", shutdown="2026-12-01"),
    _gpt_image("chatgpt-image-latest", shutdown="2026-12-01"),
    _gpt_image("gpt-image-1", shutdown="2026-10-23"),
    {
        "model": "dall-e-3", "family": "dall-e",
        "sizes": {"square": "1024x1024", "landscape": "1792x1024", "portrait": "1024x1792"},
        "qualities": {"draft": "standard", "standard": "standard", "high": "hd"},
        "style": True, "response_format": True, "output_formats": ("png",),
        "background": False, "moderation": False, "max_prompt_chars": 4000, "max_n": 1,
        "shutdown": "2026-05-12",
    },
    {
        "model": "dall-e-2", "family": "dall-e",
        "sizes": {"square": "1024x1024", "landscape": "1024x1024", "portrait": "1024x1024"},
        "qualities": None, "style": False, "response_format": True, "output_formats": ("png",),
        "background": False, "moderation": False, "max_prompt_chars": 1000, "max_n": 10,
        "shutdown": "2026-05-12",
    },
)
