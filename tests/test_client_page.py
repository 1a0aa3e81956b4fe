"""The web client's page and assets as the service serves them (no browser needed)."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dungeon.api.client import STATIC_DIR

JS_DIR = STATIC_DIR / "js"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".html": "text/html"}


class PageParser(HTMLParser):
    """Collects what a Content-Security-Policy cares about in a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script_text: list[str] = []
        self.style_elements = 0
        self.inline_styles: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name) and not attributes[name].startswith("#"):
                self.urls.append(attributes[name])
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style":
            self.style_elements += 1
        if "style" in attributes:
            self.inline_styles.append(tag)
        self.handlers += [f"{tag}[{name}]" for name in attributes if name.startswith("on")]

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_script_text.append(data)


@pytest.fixture
def page(client):
    response = client.get("/")
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return response, parser


def directives(response):
    policy = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_the_page_is_html_with_a_strict_content_security_policy(page):
    response, _ = page
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = directives(response)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert set(policy["img-src"]) == {"'self'", "data:"}
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_has_no_inline_script_style_or_handler(page):
    _, parser = page
    assert parser.inline_script_text == []
    assert parser.style_elements == 0
    assert parser.inline_styles == []
    assert parser.handlers == []
    assert parser.scripts and all(script.get("src") for script in parser.scripts)
    assert all(script.get("type") == "module" for script in parser.scripts)


def test_the_page_references_only_same_origin_assets(page, client):
    _, parser = page
    assert parser.urls
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.mimetype == CONTENT_TYPES[Path(url).suffix], url
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_script_module_is_served_as_javascript(client):
    modules = sorted(JS_DIR.glob("*.js"))
    assert modules
    for module in modules:
        response = client.get(f"/assets/js/{module.name}")
        assert response.status_code == 200
        assert response.mimetype == "text/javascript"
        assert response.get_data() == module.read_bytes()


def test_modules_import_only_sibling_modules_and_call_only_this_origin():
    for module in JS_DIR.glob("*.js"):
        source = module.read_text()
        for target in re.findall(r"""^\s*(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']""",
                                 source, flags=re.MULTILINE):
            assert target.startswith("./") and (JS_DIR / target).is_file(), (module.name, target)
        assert not re.search(r"https?://", source), module.name
        # The page's policy allows no HTML from strings and no evaluated code.
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                          "eval(", "new Function"):
            assert forbidden not in source, (module.name, forbidden)


def test_the_stylesheet_loads_nothing_from_elsewhere():
    css = (STATIC_DIR / "app.css").read_text()
    assert "@import" not in css
    # Quoted URLs are taken whole: a data: URL may hold url(...) of its own.
    found = re.findall(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]+))\s*\)""", css)
    urls = ["".join(parts) for parts in found]
    assert urls
    for url in urls:
        assert url.startswith(("data:", "/")), url


def test_a_missing_asset_is_a_json_404(client):
    response = client.get("/assets/nothing-here.js")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_the_api_keeps_its_own_headers(client):
    response = client.get("/api/catalog")
    assert response.status_code == 200
    # The API's own restrictive policy, not the page's (which allows scripts).
    assert response.headers["Content-Security-Policy"] == \
        "default-src 'none'; frame-ancestors 'none'"
