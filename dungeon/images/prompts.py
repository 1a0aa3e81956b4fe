"""Image prompt hygiene, applied before any provider is called.

Cleaning never refuses: it strips control and zero-width characters and
collapses whitespace.  Checking may refuse: an empty prompt, a configured deny
pattern, the built-in local list, or OpenAI's moderation endpoint.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import requests

from ..errors import ConfigError, PromptRefused

log = logging.getLogger(__name__)

MODERATION_MODEL = "omni-moderation-latest"

# Categories of prompt that no scene of this game needs and that every image
# provider refuses; refusing them here saves a paid call and a breaker count.
_LOCAL_DENY = (
    r"\b(child|children|kid|minor|underage|teen)\w*\b.{0,40}\b(nude|naked|sexual|explicit)\w*",
    r"\b(nude|naked|sexual|explicit)\w*\b.{0,40}\b(child|children|kid|minor|underage|teen)\w*",
    r"\b(beheading|gore porn|snuff)\b",
)

# Zero-width and bidi-control characters are category Cf; control characters Cc.
_INVISIBLE_CATEGORIES = {"Cc", "Cf"}


def clean(prompt: str) -> str:
    """Return ``prompt`` without control or zero-width characters and with collapsed spaces."""
    kept = "".join(" " if ch in "\t\n\r" else ch for ch in prompt
                   if ch in "\t\n\r" or unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    return " ".join(kept.split())


def truncate(prompt: str, limit: int | None) -> str:
    """Cut ``prompt`` to at most ``limit`` characters, at a word boundary where there is one."""
    if limit is None or len(prompt) <= limit:
        return prompt
    cut = prompt[:limit]
    boundary = cut.rfind(" ")
    return cut[:boundary] if boundary > limit // 2 else cut


def fingerprint(prompt: str, head: bool = True) -> dict[str, str]:
    """Return what logs may carry about a prompt: a short hash, and its first 200 characters.

    Without ``head`` only the hash: a prompt is story text, which must not
    reach the logs in clear when stories are encrypted at rest.
    """
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]
    fields = {"prompt_sha256": digest}
    if head:
        fields["prompt_head"] = prompt[:200]
    return fields


class PromptChecker:
    """Refuses prompts before any provider is called, as configured."""

    def __init__(self, config: Mapping[str, Any], session: requests.Session | None = None):
        self.mode = config["IMAGE_MODERATION"]
        self.deny = [_compile(p) for p in config["IMAGE_DENY_PATTERNS"]]
        if self.mode != "off":
            self.deny += [re.compile(p, re.IGNORECASE) for p in _LOCAL_DENY]
        self.api_key = config["OPENAI_API_KEY"]
        self.base_url = config["OPENAI_BASE_URL"].rstrip("/")
        self.timeout = (config["IMAGE_CONNECT_TIMEOUT"], 15.0)
        self.session = session or requests.Session()

    def check(self, prompt: str) -> str:
        """Return the cleaned prompt, or raise PromptRefused with every reason found."""
        cleaned = clean(prompt)
        if not cleaned:
            raise PromptRefused(["empty prompt"])
        reasons = [f"matches deny pattern {p.pattern!r}" for p in self.deny if p.search(cleaned)]
        if not reasons and self.mode == "openai":
            reasons = self._moderate(cleaned)
        if reasons:
            raise PromptRefused(reasons)
        return cleaned

    def _moderate(self, prompt: str) -> list[str]:
        # The moderation call is advisory: when it fails, the provider's own
        # safety system still applies, so the prompt goes ahead rather than
        # costing the player a real image.
        if not self.api_key:
            log.warning("IMAGE_MODERATION=openai but no OpenAI API key is set; skipped")
            return []
        try:
            response = self.session.post(
                f"{self.base_url}/moderations", timeout=self.timeout,
                headers={"Authorization": f"Bearer {self.api_key}"},
                json={"model": MODERATION_MODEL, "input": prompt})
            response.raise_for_status()
            results = response.json()["results"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            log.warning("moderation check failed, prompt allowed: %s", type(exc).__name__)
            return []
        return [f"flagged by moderation: {', '.join(_flagged(r))}"
                for r in results if isinstance(r, dict) and r.get("flagged")]


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"IMAGE_DENY_PATTERNS: {pattern!r} is not a regular expression: "
                          f"{exc}") from None


def _flagged(result: Mapping[str, Any]) -> list[str]:
    categories = result.get("categories") or {}
    return sorted(name for name, hit in categories.items() if hit) or ["unspecified"]
