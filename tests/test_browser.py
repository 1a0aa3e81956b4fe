"""The web client end to end: headless Chromium (Playwright) against the service under gunicorn.

Each test gets a fresh browser context, so a fresh guest.  The service runs
with the offline narrator and placeholder images, so every scene is ready
quickly and is marked as a placeholder.  Screenshots go to test-artifacts/.
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from dungeon import catalog

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 20_000  # generous: a loaded machine is slow, never wrong

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install -e '.[test]')",
                allow_module_level=True)
if not CHROMIUM.exists():  # pragma: no cover - depends on the environment
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

expect.set_options(timeout=TIMEOUT_MS)


# --- servers -------------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service(tmp_path, **settings):
    """Run the service under gunicorn on a free port; yield its base URL."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("DUNGEON_", "OPENAI_", "PROMETHEUS_"))}
    env.update({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "DUNGEON_BIND": f"127.0.0.1:{port}", "DUNGEON_NARRATOR": "local",
                "DUNGEON_IMAGE_PROVIDERS": "placeholder", "DUNGEON_LOAD_ENTRYPOINTS": "false",
                "DUNGEON_SECRET_KEY": "browser-tests-signing-key-0123456789abcdef",
                "DUNGEON_THREADS": "8", "DUNGEON_GRACEFUL_TIMEOUT": "5",
                **{f"DUNGEON_{name}": value for name, value in settings.items()}})
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log_path)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(base, process, log_path):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")


@contextmanager
def static_site(directory):
    """Serve ``directory`` on a free local port (another origin than the service)."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origins(tmp_path_factory):
    """Two other web origins: one the service allows (CORS), one it does not."""
    site = tmp_path_factory.mktemp("site")
    (site / "index.html").write_text("<!doctype html><title>another origin</title><p>elsewhere")
    with static_site(site) as allowed, static_site(site) as other:
        yield {"allowed": allowed, "other": other}


@pytest.fixture(scope="module")
def server(tmp_path_factory, origins):
    # Three recent turns come with a game: longer games page back for the rest.
    with service(tmp_path_factory.mktemp("service"), CORS_ORIGINS=origins["allowed"],
                 RATE_LIMIT_GUESTS="", RECENT_TURNS="3") as base:
        yield base


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    """The service allowing one action a minute per player."""
    with service(tmp_path_factory.mktemp("limited"), RATE_LIMIT_ACTIONS="1/minute") as base:
        yield base


# --- the browser -----------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


class PageProblems:
    """Uncaught script errors and policy violations seen by a page."""

    def __init__(self, page):
        self.errors = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", self._console)

    def _console(self, message):
        text = message.text
        if re.search(r"Content Security Policy|Refused to|Trusted ?Script|Trusted ?Type", text):
            self.errors.append(f"console: {text}")


@pytest.fixture
def open_page(browser):
    """Open a page in a new context (a new guest); no script error may happen in it."""
    contexts = []

    def open_(viewport=(1280, 800)):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                      reduced_motion="reduce")
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        contexts.append((context, PageProblems(page)))
        return page

    yield open_
    problems = [error for _, watch in contexts for error in watch.errors]
    for context, _ in contexts:
        context.close()
    assert problems == []


@pytest.fixture
def page(open_page):
    return open_page()


def screenshot(page, name, full_page=False):
    """Save a screenshot once every shown picture is decoded."""
    page.evaluate("Promise.all([...document.images].filter((i) => i.src)"
                  ".map((i) => i.decode().catch(() => null)))")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def wait_until(page, condition):
    """Let the page run until ``condition()`` holds (Playwright's events arrive meanwhile)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(25)


def no_horizontal_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# --- helpers that play like a player ------------------------------------------------

def begin(page, base, genre="Horror", style="Comic", title=None):
    page.goto(f"{base}/")
    expect(page.get_by_role("heading", name="Dungeon", level=1)).to_be_visible()
    page.get_by_role("radio", name=re.compile(f"^{genre}")).check()
    page.get_by_role("radio", name=style, exact=True).check()
    if title:
        page.get_by_role("textbox", name=re.compile("^Title")).fill(title)
    page.get_by_role("button", name="Begin the adventure").click()
    expect(page.locator("#story .turn")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"#/games/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


def act(page, text):
    turns = page.locator("#story .turn")
    before = turns.count()
    box = page.get_by_label("What do you do?")
    box.fill(text)
    box.press("Enter")
    expect(turns).to_have_count(before + 1)
    expect(turns.last.locator(".action-text")).to_have_text(text)
    expect(box).to_have_value("")
    expect(box).to_be_enabled()


def expect_placeholder_scenes(page, count):
    scenes = page.locator("#story .scene")
    expect(scenes).to_have_count(count)
    for i in range(count):
        scene = scenes.nth(i)
        expect(scene).to_have_attribute("data-state", "ready")
        expect(scene.locator(".badge")).to_have_text(re.compile("placeholder", re.I))
        expect(scene.locator(".badge")).to_be_visible()
        expect(scene.get_by_role("button", name=re.compile("Try again"))).to_be_visible()
        expect(scene.locator("img")).to_be_visible()
        assert scene.locator("img").evaluate("(img) => img.naturalWidth") > 0


# --- scenarios --------------------------------------------------------------------

def test_a_new_game_plays_two_actions_and_shows_their_pictures(page, server):
    begin(page, server, genre="Horror", style="Comic", title="The Lantern Test")
    expect(page.get_by_role("heading", name="The Lantern Test", level=1)).to_be_visible()
    expect(page.locator("#story-genre")).to_have_text("Horror")
    expect(page.locator("#story .turn").first.locator(".narration p").first).not_to_be_empty()

    # The box is disabled while the turn is in flight: the request is held here.
    held = []
    page.route("**/api/games/*/actions", lambda route: held.append(route))
    box = page.get_by_label("What do you do?")
    box.fill("I light the candle")
    box.press("Enter")
    expect(box).to_be_disabled()
    expect(box).to_have_value("I light the candle")
    expect(page.get_by_text("The narrator is writing")).to_be_visible()
    wait_until(page, lambda: held)
    held[0].continue_()
    page.unroute("**/api/games/*/actions")
    turns = page.locator("#story .turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(1).locator(".action-text")).to_have_text("I light the candle")
    expect(box).to_have_value("")
    expect(box).to_be_focused()

    act(page, "I open the cellar door")
    expect(turns.last).to_be_in_viewport()
    expect(turns.last.locator(".narration p").first).not_to_be_empty()
    expect(page.locator("#story-turns")).to_have_text("2 turns")
    expect_placeholder_scenes(page, 3)

    # Another try at the newest picture: a new image, shown when it is ready.
    scene = page.locator("#story .scene").last
    old_src = scene.locator("img").get_attribute("src")
    with page.expect_request(re.compile(r"/turns/2/image$")) as retry:
        scene.get_by_role("button", name=re.compile("Try again")).click()
    assert retry.value.method == "POST" and retry.value.headers.get("idempotency-key")
    expect(scene.locator("img")).not_to_have_attribute("src", old_src)
    expect(scene).to_have_attribute("data-state", "ready")
    expect(scene.locator(".badge")).to_be_visible()
    assert scene.locator("img").evaluate("(img) => img.naturalWidth") > 0

    turns.last.scroll_into_view_if_needed()
    screenshot(page, "desktop-story.png")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "desktop-story-start.png")


def test_a_saved_game_resumes_from_the_list_after_a_reload(page, server):
    begin(page, server, genre="Mystery", style="Watercolour", title="Rain on Glass")
    act(page, "I follow the stranger")

    page.goto(f"{server}/")
    card = page.locator(".game-card", has_text="Rain on Glass")
    expect(card).to_be_visible()
    expect(card.locator(".genre-tag")).to_have_text("Mystery")
    expect(card.locator(".style-tag")).to_have_text("Watercolour")
    expect(card.locator(".turn-count")).to_have_text("1 turn")
    expect(card.locator("time")).to_have_text(re.compile("played"))
    screenshot(page, "desktop-title.png", full_page=True)

    card.get_by_role("link", name=re.compile("Continue")).click()
    expect(page.get_by_role("heading", name="Rain on Glass", level=1)).to_be_visible()
    turns = page.locator("#story .turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(1).locator(".action-text")).to_have_text("I follow the stranger")
    expect_placeholder_scenes(page, 2)

    # A reload on the story's own address opens it again, and play goes on.
    page.reload()
    expect(turns).to_have_count(2)
    act(page, "I ask about the letter")
    expect(turns).to_have_count(3)


def test_a_long_game_pages_back_to_its_prologue(page, server):
    begin(page, server, genre="Fantasy", style="Pixel art")
    for action in ("I go north", "I go east", "I go south"):
        act(page, action)
    page.reload()
    turns = page.locator("#story .turn")
    expect(turns).to_have_count(3)
    expect(turns.first.locator(".action-text")).to_have_text("I go north")
    page.get_by_role("button", name="Read earlier pages").click()
    expect(turns).to_have_count(4)
    expect(turns.first).to_have_class(re.compile("prologue"))
    expect(page.get_by_role("button", name="Read earlier pages")).to_be_hidden()


def test_deleting_a_game_asks_first(page, server):
    begin(page, server, genre="Fantasy", style="Painterly", title="Keep Me")
    begin(page, server, genre="Cyberpunk", style="Pixel art", title="Delete Me")
    page.goto(f"{server}/")
    cards = page.locator(".game-card")
    expect(cards).to_have_count(2)
    doomed = cards.filter(has_text="Delete Me")

    doomed.get_by_role("button", name=re.compile("Delete")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete Me")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    expect(cards).to_have_count(2)

    doomed.get_by_role("button", name=re.compile("Delete")).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete forever").click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Keep Me")

    page.reload()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Keep Me")


def test_a_game_deleted_elsewhere_sends_the_player_back_to_the_list(page, server):
    game_id = begin(page, server, title="Gone Tomorrow")
    token = page.evaluate("JSON.parse(localStorage.getItem('dungeon.guest')).token")
    deleted = requests.delete(f"{server}/api/games/{game_id}",
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert deleted.status_code == 204
    page.get_by_label("What do you do?").fill("I wait")
    page.get_by_label("What do you do?").press("Enter")
    expect(page.locator("#home-notice")).to_contain_text("This adventure is gone")
    expect(page).not_to_have_url(re.compile("#/games/"))


def test_a_refused_token_is_replaced_by_a_new_guest(page, server):
    page.goto(f"{server}/")
    page.evaluate("localStorage.setItem('dungeon.guest', JSON.stringify({token: 'not-a-token'}))")
    page.reload()
    expect(page.locator("#no-games")).to_be_visible()
    expect(page.locator("#list-notice")).to_be_empty()
    assert page.evaluate("JSON.parse(localStorage.getItem('dungeon.guest')).token") != \
        "not-a-token"


def test_a_failed_turn_keeps_the_text_and_is_retried_with_the_same_key(page, server):
    begin(page, server)
    keys = []
    page.on("request", lambda request: keys.append(request.headers.get("idempotency-key"))
            if request.url.endswith("/actions") else None)
    failing = json.dumps({"error": {"code": "narrator_unavailable",
                                    "message": "The narrator is unavailable."},
                          "request_id": "req-test-1"})
    page.route("**/api/games/*/actions",
               lambda route: route.fulfill(status=503, body=failing,
                                           content_type="application/json"))
    box = page.get_by_label("What do you do?")
    box.fill("I whisper a name")
    box.press("Enter")
    notice = page.locator("#story-notice")
    expect(notice).to_contain_text("The narrator lost the thread")
    expect(notice).to_have_attribute("role", "alert")
    expect(box).to_have_value("I whisper a name")
    expect(box).to_be_enabled()

    # Refused fields are named; the text stays.
    invalid = json.dumps({"error": {"code": "validation_failed", "message": "Not valid.",
                                    "details": {"fields": {"action": "must not be empty"}}},
                          "request_id": "req-test-2"})
    page.unroute("**/api/games/*/actions")
    page.route("**/api/games/*/actions",
               lambda route: route.fulfill(status=422, body=invalid,
                                           content_type="application/json"))
    box.press("Enter")
    expect(notice).to_contain_text("Your action must not be empty")
    expect(page.locator("#action-error")).to_contain_text("must not be empty")
    expect(box).to_have_value("I whisper a name")

    page.unroute("**/api/games/*/actions")
    box.press("Enter")
    expect(page.locator("#story .turn")).to_have_count(2)
    expect(notice).to_be_empty()
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1  # one logical request


def test_too_many_actions_is_a_readable_message(page, limited_server):
    begin(page, limited_server, genre="Science fiction", style="Photoreal")
    act(page, "I check the airlock")
    box = page.get_by_label("What do you do?")
    box.fill("I check it again")
    box.press("Enter")
    notice = page.locator("#story-notice")
    expect(notice).to_contain_text("faster than the story can follow")
    expect(notice).to_contain_text(re.compile(r"Try again in \d+ (seconds?|minutes?)"))
    expect(box).to_have_value("I check it again")
    expect(box).to_be_enabled()
    expect(page.locator("#story .turn")).to_have_count(2)


CROSS_ORIGIN_CALLS = """async (base) => {
  const guest = await (await fetch(`${base}/api/auth/guest`, {method: "POST"})).json();
  const auth = {Authorization: `Bearer ${guest.token}`};
  const created = await fetch(`${base}/api/games`, {method: "POST", headers: {...auth,
    "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID()},
    body: JSON.stringify({genre: "fantasy", style: "comic"})});
  const listed = await fetch(`${base}/api/games`, {headers: auth});
  return {created: created.status, listed: listed.status, games: (await listed.json()).games.length,
          requestId: listed.headers.get("X-Request-ID")};
}"""

BLOCKED_CALL = """async (base) => {
  try {
    await fetch(`${base}/api/games`, {headers: {Authorization: "Bearer x"}});
    return "answered";
  } catch (error) {
    return error.name;
  }
}"""


def test_a_configured_origin_may_call_the_api_and_another_may_not(page, server, origins):
    page.goto(f"{origins['allowed']}/")
    result = page.evaluate(CROSS_ORIGIN_CALLS, server)
    assert result["created"] == 201
    assert result["listed"] == 200 and result["games"] == 1
    assert result["requestId"]  # an exposed header

    page.goto(f"{origins['other']}/")
    assert page.evaluate(BLOCKED_CALL, server) == "TypeError"


def test_the_game_fits_a_phone(open_page, server):
    page = open_page(viewport=(375, 812))
    page.goto(f"{server}/")
    expect(page.locator(".genre-card")).to_have_count(len(catalog.GENRES))
    assert no_horizontal_scroll(page)
    screenshot(page, "phone-title.png", full_page=True)

    begin(page, server, genre="Post-apocalyptic", style="Painterly", title="Dust")
    act(page, "I climb the rusted water tower to look around")
    expect_placeholder_scenes(page, 2)
    expect(page.get_by_label("What do you do?")).to_be_in_viewport()
    assert no_horizontal_scroll(page)
    screenshot(page, "phone-story.png")


def test_the_title_screen_is_keyboard_usable(page, server):
    page.goto(f"{server}/")
    expect(page.locator(".genre-card")).to_have_count(len(catalog.GENRES))
    page.keyboard.press("Tab")  # the skip link
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    first_genre = page.get_by_role("radio").first
    first_genre.focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("radio").nth(1)).to_be_checked()
    outline = page.evaluate("getComputedStyle(document.activeElement.closest('label'))"
                            ".outlineStyle")
    assert outline != "none"
    page.get_by_role("button", name="Begin the adventure").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#story .turn")).to_have_count(1)
    expect(page.get_by_label("What do you do?")).to_be_focused()


# --- modes, versions, undo and editing --------------------------------------------

def play(page, mode, text=None):
    """Play one turn in ``mode`` (the mode selector stays on it); return the new turn."""
    turns = page.locator("#story .turn")
    before = turns.count()
    page.get_by_label("Mode").select_option(mode)
    box = page.locator("#action-input")
    if text is not None:
        box.fill(text)
    page.locator("#act").click()
    expect(turns).to_have_count(before + 1)
    expect(page.locator("#act")).to_be_enabled()
    return turns.last


def test_turns_are_played_in_each_mode_and_shown_by_mode(page, server):
    begin(page, server, genre="Fantasy", style="Painterly")
    bodies = []
    page.on("request", lambda request: bodies.append(request.post_data_json)
            if request.url.endswith("/actions") else None)

    said = play(page, "say", "Is anyone there?")
    expect(said).to_have_attribute("data-mode", "say")
    expect(said.locator(".action-text")).to_have_text("“Is anyone there?”")
    expect(said.locator(".who")).to_have_text("You say")
    expect(page.get_by_label("What do you say?")).to_have_value("")

    written = play(page, "story", "A bell rings in the tower.")
    expect(written).to_have_attribute("data-mode", "story")
    expect(written.locator(".action-text")).to_have_text("A bell rings in the tower.")

    # Continue needs no text: the box is off and the button says what it does.
    page.get_by_label("Mode").select_option("continue")
    expect(page.locator("#action-input")).to_be_disabled()
    expect(page.locator("#act")).to_have_text("Continue")
    went_on = play(page, "continue")
    expect(went_on).to_have_attribute("data-mode", "continue")
    expect(went_on.locator(".narration p").first).not_to_be_empty()

    seen = play(page, "see", "The bell tower at dusk")
    expect(seen).to_have_attribute("data-mode", "see")
    expect(seen.locator(".scene")).to_have_attribute("data-state", "ready")
    expect(seen.locator(".scene img")).to_be_visible()
    expect(seen.locator(".scene-title")).not_to_be_empty()
    expect(seen.locator(".narration")).to_have_count(0)

    assert bodies == [{"action": "Is anyone there?", "mode": "say"},
                      {"action": "A bell rings in the tower.", "mode": "story"},
                      {"mode": "continue"},
                      {"action": "The bell tower at dusk", "mode": "see"}]

    # The modes survive a reload; a plain action is still played as `do`.
    page.reload()
    expect(page.locator("#story .turn")).to_have_count(3)  # the recent ones
    expect(page.locator("#story .turn[data-mode='story'] .action-text")).to_have_text(
        "A bell rings in the tower.")
    expect(page.locator("#story .turn[data-mode='see'] .scene-title")).not_to_be_empty()
    page.get_by_label("Mode").select_option("do")
    act(page, "I climb the stairs")
    assert bodies[-1] == {"action": "I climb the stairs"}


def test_the_last_turn_is_retried_and_its_versions_are_flipped_through(page, server):
    begin(page, server, genre="Mystery", style="Comic")
    act(page, "I knock on the door")
    turn = page.locator("#story .turn").last
    first = turn.locator(".narration").inner_text()
    nav = turn.get_by_role("navigation", name="Versions of this turn")
    expect(nav).to_be_hidden()

    # A busy narrator is a readable message; the turn stays as it was.
    busy = json.dumps({"error": {"code": "narrator_busy", "message": "Busy."},
                       "request_id": "req-test-4"})
    page.route("**/api/games/*/turns/*/retry",
               lambda route: route.fulfill(status=503, body=busy, headers={"Retry-After": "5"},
                                           content_type="application/json"))
    with page.expect_request(re.compile(r"/turns/1/retry$")) as refused:
        page.get_by_role("button", name="Retry last turn").click()
    expect(page.locator("#story-notice")).to_contain_text(
        "The narrator is busy with other stories; nothing was saved. Try again in 5 seconds.")
    expect(nav).to_be_hidden()
    page.unroute("**/api/games/*/turns/*/retry")

    with page.expect_request(re.compile(r"/turns/1/retry$")) as retry:
        page.get_by_role("button", name="Retry last turn").click()
    assert retry.value.method == "POST" and retry.value.headers.get("idempotency-key")
    assert retry.value.headers["idempotency-key"] == refused.value.headers["idempotency-key"]
    expect(page.locator("#story-notice")).to_be_empty()
    turn = page.locator("#story .turn").last
    nav = turn.get_by_role("navigation", name="Versions of this turn")
    expect(nav).to_be_visible()
    expect(nav.locator(".alt-count")).to_have_text("2/2")
    expect(nav.get_by_role("button", name="Next version")).to_be_disabled()
    expect(page.locator("#story .turn")).to_have_count(2)
    second = turn.locator(".narration").inner_text()

    nav.get_by_role("button", name="Previous version").click()
    expect(nav.locator(".alt-count")).to_have_text("1/2")
    expect(turn.locator(".narration")).to_have_text(first)
    expect(nav.get_by_role("button", name="Next version")).to_be_focused()
    page.keyboard.press("Enter")
    expect(nav.locator(".alt-count")).to_have_text("2/2")
    expect(turn.locator(".narration")).to_have_text(second)

    screenshot(page, "desktop-versions.png")

    # The choice is saved.
    nav.get_by_role("button", name="Previous version").click()
    expect(nav.locator(".alt-count")).to_have_text("1/2")
    page.reload()
    expect(page.locator("#story .turn").last.locator(".alt-count")).to_have_text("1/2")
    expect(page.locator("#story .turn").last.locator(".narration")).to_have_text(first)


def test_the_last_turn_is_undone_but_never_the_opening(page, server):
    game_id = begin(page, server, genre="Horror", style="Comic")
    undo = page.get_by_role("button", name="Undo last turn")
    expect(undo).to_be_hidden()
    act(page, "I open the box")
    act(page, "I close the box")
    expect(page.locator("#story-turns")).to_have_text("2 turns")

    with page.expect_request(re.compile(r"/turns/last$")) as undone:
        undo.click()
    assert undone.value.method == "DELETE" and undone.value.headers.get("idempotency-key")
    turns = page.locator("#story .turn")
    expect(turns).to_have_count(2)
    expect(turns.last.locator(".action-text")).to_have_text("I open the box")
    expect(page.locator("#story-turns")).to_have_text("1 turn")
    undo.click()
    expect(turns).to_have_count(1)
    expect(undo).to_be_hidden()
    page.reload()
    expect(turns).to_have_count(1)

    # Taken back elsewhere meanwhile: the service refuses to take the opening, and says so.
    act(page, "I open the box again")
    token = page.evaluate("JSON.parse(localStorage.getItem('dungeon.guest')).token")
    elsewhere = requests.delete(f"{server}/api/games/{game_id}/turns/last", timeout=10,
                                headers={"Authorization": f"Bearer {token}",
                                         "Idempotency-Key": "undo-elsewhere-1"})
    assert elsewhere.status_code == 200
    undo.click()
    notice = page.locator("#story-notice")
    expect(notice).to_contain_text("cannot be undone")
    expect(notice).to_have_attribute("data-code", "conflict")
    expect(undo).to_be_enabled()


def test_a_narration_is_edited_in_place_and_kept(page, server):
    begin(page, server, genre="Fantasy", style="Comic")
    act(page, "I read the map")
    turn = page.locator("#story .turn").last
    turn.get_by_role("button", name="Edit turn 1").click()
    editor = turn.get_by_role("form", name="Edit turn 1")
    narration = editor.get_by_label("Narration")
    expect(narration).to_be_focused()
    editor.get_by_label("Your action").fill("I read the old map")
    narration.fill("The map shows a river.\n\nA cross marks the ford.")
    editor.get_by_role("button", name="Save").click()
    expect(editor).to_have_count(0)
    expect(turn.locator(".narration p")).to_have_text(["The map shows a river.",
                                                      "A cross marks the ford."])
    expect(turn.locator(".action-text")).to_have_text("I read the old map")
    expect(turn.get_by_role("button", name="Edit turn 1")).to_be_focused()

    # Escape leaves the editor without a change.
    turn.get_by_role("button", name="Edit turn 1").click()
    page.keyboard.press("Escape")
    expect(turn.locator(".turn-editor")).to_have_count(0)

    page.reload()
    turn = page.locator("#story .turn").last
    expect(turn.locator(".narration p")).to_have_text(["The map shows a river.",
                                                      "A cross marks the ford."])
    expect(turn.locator(".action-text")).to_have_text("I read the old map")


def test_the_story_memory_and_cards_are_kept(page, server):
    game_id = begin(page, server, genre="Mystery", style="Painterly")
    page.get_by_text("Story memory").click()
    memory = page.get_by_role("form", name="Story memory")
    memory.get_by_label("Author’s note").fill("Keep it tense and brief.")
    memory.get_by_label("Plot essentials").fill("You are a detective named Vale.")
    memory.get_by_role("button", name="Save memory").click()
    expect(memory.get_by_role("status")).to_have_text("Saved.")

    expect(page.locator("#no-cards")).to_be_visible()
    cards = page.get_by_role("form", name="Add a card")
    cards.get_by_label("Card title").fill("The lighthouse")
    cards.get_by_label("Keys").fill("lighthouse, beacon")
    cards.get_by_label("Card text").fill("An old lighthouse, dark for ten years.")
    cards.get_by_role("button", name="Add card").click()
    card = page.locator(".story-card")
    expect(card).to_have_count(1)
    expect(card.locator(".story-card-keys")).to_have_text("Keys: lighthouse, beacon")
    expect(page.locator("#no-cards")).to_be_hidden()

    page.reload()
    page.get_by_text("Story memory").click()
    expect(memory.get_by_label("Author’s note")).to_have_value("Keep it tense and brief.")
    expect(memory.get_by_label("Plot essentials")).to_have_value(
        "You are a detective named Vale.")
    expect(card).to_have_count(1)
    expect(card.locator(".story-card-title")).to_have_text("The lighthouse")
    screenshot(page, "desktop-memory.png", full_page=True)

    # A card is edited, then deleted; clearing the note empties it.
    card.get_by_role("button", name="Edit card The lighthouse").click()
    editing = page.get_by_role("form", name="Edit the card The lighthouse")
    expect(editing.get_by_label("Card title")).to_be_focused()
    editing.get_by_label("Card text").fill("A lighthouse, lit again tonight.")
    editing.get_by_role("button", name="Save card").click()
    expect(card.locator(".story-card-text")).to_have_text("A lighthouse, lit again tonight.")
    card.get_by_role("button", name="Delete card The lighthouse").click()
    expect(card).to_have_count(0)
    memory.get_by_label("Author’s note").fill("")
    memory.get_by_role("button", name="Save memory").click()
    expect(memory.get_by_role("status")).to_have_text("Saved.")

    token = page.evaluate("JSON.parse(localStorage.getItem('dungeon.guest')).token")
    auth = {"Authorization": f"Bearer {token}"}
    game = requests.get(f"{server}/api/games/{game_id}", headers=auth, timeout=10).json()["game"]
    assert game["authors_note"] is None
    assert game["plot_essentials"] == "You are a detective named Vale."
    listed = requests.get(f"{server}/api/games/{game_id}/cards", headers=auth, timeout=10)
    assert listed.json()["cards"] == []
