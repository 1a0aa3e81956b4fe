"""Safety headers on every route, no secrets in the access log, and the production guard."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import mongomock
import pytest

from dungeon import create_app
from dungeon.api import client as client_page
from dungeon.api import images as image_routes
from dungeon.api import reference
from dungeon.errors import ConfigError
from dungeon.logs import (
    MASK,
    AccessLogRedactor,
    make_formatter,
    redact_query,
    redact_request_line,
    redact_url,
)
from dungeon.security import CONTENT_SECURITY_POLICY, PAGE_POLICY
from tests.conftest import guest_headers

ROOT = Path(__file__).resolve().parent.parent
PLAIN = {"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local"}
GAME = {"genre": "fantasy", "style": "comic"}


@pytest.fixture
def app(make_app):
    return make_app(PLAIN)


@pytest.fixture
def world(client):
    """A user with a game, a turn image and a stored image: something for every route."""
    auth = guest_headers(client)
    game = client.post("/api/games", headers=auth, json=GAME).get_json()
    made = client.post("/api/images", headers=auth,
                       json={"prompt": "a lantern", **GAME}).get_json()
    code = client.post("/api/auth/link", headers=auth).get_json()["code"]
    return {"auth": auth, "session_id": game["game"]["id"], "n": 0, "code": code,
            "slot": game["turns"][0]["image"]["id"], "image": made["image"]["id"]}


CARD = {"title": "The keeper", "keys": ["keeper"], "text": "He lies about the key."}


def requests_for(world, client):
    """One request per (rule, method) of the url map: {(rule, method): (url, options)}."""
    auth, sid = world["auth"], world["session_id"]
    return {
        ("/", "GET"): ("/", {}),
        ("/assets/<path:filename>", "GET"): ("/assets/app.css", {}),
        ("/api/docs", "GET"): ("/api/docs", {}),
        ("/api/", "GET"): ("/api/", {}),
        ("/api/redoc", "GET"): ("/api/redoc", {}),
        ("/api/redoc/<path:filename>", "GET"): ("/api/redoc/js/redoc.standalone.js", {}),
        ("/api/static/<path:filename>", "GET"): ("/api/static/nothing.js", {}),
        ("/api/openapi.json", "GET"): ("/api/openapi.json", {}),
        ("/healthz", "GET"): ("/healthz", {}),
        ("/readyz", "GET"): ("/readyz", {}),
        ("/metrics", "GET"): ("/metrics", {}),
        ("/api/catalog", "GET"): ("/api/catalog", {}),
        ("/api/auth/guest", "POST"): ("/api/auth/guest", {}),
        ("/api/auth/link", "POST"): ("/api/auth/link", {"headers": auth}),
        ("/api/auth/me", "GET"): ("/api/auth/me", {"headers": auth}),
        ("/api/auth/me", "PATCH"): ("/api/auth/me", {"headers": auth,
                                                     "json": {"safety_level": "strict"}}),
        ("/api/auth/link/redeem", "POST"): ("/api/auth/link/redeem",
                                            {"json": {"code": world["code"]}}),
        ("/api/auth/logout", "POST"): ("/api/auth/logout", {"headers": guest_headers(client)}),
        ("/api/auth/logout-everywhere", "POST"): ("/api/auth/logout-everywhere",
                                                  {"headers": guest_headers(client)}),
        ("/api/games", "POST"): ("/api/games", {"headers": auth, "json": GAME}),
        ("/api/games", "GET"): ("/api/games", {"headers": auth}),
        ("/api/games/<session_id>", "GET"): (f"/api/games/{sid}", {"headers": auth}),
        ("/api/games/<session_id>/turns", "GET"): (f"/api/games/{sid}/turns",
                                                   {"headers": auth}),
        ("/api/games/<session_id>/actions", "POST"): (
            f"/api/games/{sid}/actions", {"headers": auth, "json": {"action": "I wait"}}),
        ("/api/games/<session_id>/turns/<int:n>/image", "POST"): (
            f"/api/games/{sid}/turns/0/image", {"headers": auth}),
        ("/api/games/<session_id>", "DELETE"): (f"/api/games/{sid}", {"headers": auth}),
        ("/api/games/<session_id>", "PATCH"): (f"/api/games/{sid}", {
            "headers": auth, "json": {"authors_note": "Keep it eerie."}}),
        ("/api/games/<session_id>/turns/<int:n>/retry", "POST"): (
            f"/api/games/{sid}/turns/1/retry", {"headers": auth}),
        ("/api/games/<session_id>/turns/<int:n>/choice", "PUT"): (
            f"/api/games/{sid}/turns/1/choice", {"headers": auth, "json": {"index": 0}}),
        ("/api/games/<session_id>/turns/<int:n>", "PUT"): (
            f"/api/games/{sid}/turns/1", {"headers": auth, "json": {"narration": "Edited."}}),
        ("/api/games/<session_id>/turns/last", "DELETE"): (
            f"/api/games/{sid}/turns/last", {"headers": auth}),
        ("/api/games/<session_id>/cards", "GET"): (f"/api/games/{sid}/cards",
                                                   {"headers": auth}),
        ("/api/games/<session_id>/cards", "POST"): (f"/api/games/{sid}/cards", {
            "headers": auth, "json": CARD}),
        ("/api/games/<session_id>/cards/<card_id>", "PUT"): (
            f"/api/games/{sid}/cards/c_missing", {"headers": auth, "json": CARD}),
        ("/api/games/<session_id>/cards/<card_id>", "DELETE"): (
            f"/api/games/{sid}/cards/c_missing", {"headers": auth}),
        ("/api/images", "POST"): ("/api/images", {"headers": auth,
                                                  "json": {"prompt": "a door", **GAME}}),
        ("/api/images/<image_id>", "GET"): (f"/api/images/{world['image']}", {}),
    }


def test_every_route_answers_with_the_safety_headers(app, client, world):
    table = requests_for(world, client)
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == set(table), "a route without a request here: add one"
    seen = []
    last = ("/api/games/<session_id>", "DELETE")  # the game goes after every other request
    for (rule, method), (url, options) in sorted(
            table.items(), key=lambda kv: (kv[0][1] != "GET", kv[0] == last)):
        response = client.open(url, method=method, **options)
        seen.append((rule, method, response.status_code))
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", rule
        assert headers["Referrer-Policy"] == "no-referrer", rule
        assert headers["Content-Security-Policy"], rule  # ours, or the route's own
        if response.mimetype == "application/json":
            assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, rule
    # Not only errors: every request but the missing file reached its route.
    assert [(rule, status) for rule, _, status in seen if status >= 400] == [
        ("/api/static/<path:filename>", 404),
        ("/api/games/<session_id>/cards/<card_id>", 404)], seen  # no such card, on purpose


def test_pages_and_images_keep_their_own_policies(client, world):
    assert client.get("/").headers["Content-Security-Policy"] == \
        client_page.CONTENT_SECURITY_POLICY
    assert client.get("/assets/app.css").headers["Content-Security-Policy"] == \
        client_page.CONTENT_SECURITY_POLICY
    assert client.get("/api/docs").headers["Content-Security-Policy"] == reference.POLICY
    image = client.get(f"/api/images/{world['image']}")
    assert image.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert image.headers["Cache-Control"] == image_routes.CACHE_FOREVER
    slot = client.get(f"/api/images/{world['slot']}?wait=image")
    assert slot.headers["Cache-Control"] == image_routes.SLOT_CACHING
    # flask-openapi3's own pages run inline scripts: framing and plugins are
    # refused, nothing else.
    assert client.get("/api/redoc").headers["Content-Security-Policy"] == PAGE_POLICY


def test_authenticated_json_is_never_stored(client, world):
    auth = world["auth"]
    for url in ("/api/games", f"/api/games/{world['session_id']}", "/api/games/nothing"):
        assert client.get(url, headers=auth).headers["Cache-Control"] == "no-store", url
    # Answers that hand out a token or a code are a user's too.
    assert client.post("/api/auth/guest").headers["Cache-Control"] == "no-store"
    assert client.post("/api/auth/link", headers=auth).headers["Cache-Control"] == "no-store"
    redeemed = client.post("/api/auth/link/redeem", json={"code": world["code"]})
    assert redeemed.status_code == 201 and redeemed.headers["Cache-Control"] == "no-store"
    made = client.post("/api/images", headers=auth, json={"prompt": "a key", **GAME})
    assert made.headers["Cache-Control"] == "no-store"


def test_answers_for_no_one_in_particular_are_left_to_caches(client):
    assert "Cache-Control" not in client.get("/api/catalog").headers
    assert "Cache-Control" not in client.get("/healthz").headers
    refused = client.get("/api/games", headers={"Authorization": "Bearer not.a.jwt"})
    assert refused.status_code == 401 and "Cache-Control" not in refused.headers


# --- the access log ------------------------------------------------------------------

@pytest.mark.parametrize(("query", "expected"), [
    ("token=abc", f"token={MASK}"),
    ("limit=20&access_token=abc&cursor=x", f"limit=20&access_token={MASK}&cursor=x"),
    ("Code=7K3M9QXD&wait=image", f"Code={MASK}&wait=image"),
    ("%74oken=abc", f"%74oken={MASK}"),  # percent-encoded names too
    ("stability_api_key=sk-1&my_secret=s&user_password=p",
     f"stability_api_key={MASK}&my_secret={MASK}&user_password={MASK}"),
    ("wait=image", "wait=image"), ("token", "token"), ("", ""),
])
def test_secret_query_values_are_masked(query, expected):
    assert redact_query(query) == expected


def test_request_lines_and_urls_lose_their_secrets():
    assert redact_request_line("GET /api/games?token=abc&limit=2 HTTP/1.1") == \
        f"GET /api/games?token={MASK}&limit=2 HTTP/1.1"
    assert redact_request_line("GET /healthz HTTP/1.1") == "GET /healthz HTTP/1.1"
    assert redact_url("https://x.example/p?key=k#frag") == f"https://x.example/p?key={MASK}#frag"


def test_the_redactor_rewrites_gunicorn_atoms_before_formatting():
    atoms = {"h": "10.0.0.1", "r": "POST /api/auth/link/redeem?code=7K3M9QXD HTTP/1.1",
             "s": "201", "b": "300", "M": 3, "{x-request-id}o": "rid-1",
             "q": "code=7K3M9QXD", "f": "https://evil.example/?token=t0k3n",
             "{authorization}i": "Bearer eyJ.secret.sig"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0,
                               '%(h)s "%(r)s" %(q)s %(f)s %({authorization}i)s', (atoms,), None)
    assert AccessLogRedactor().filter(record)
    line = make_formatter("json").format(record)
    for secret in ("7K3M9QXD", "t0k3n", "eyJ.secret.sig"):
        assert secret not in line
    assert f"/api/auth/link/redeem?code={MASK} HTTP/1.1" in line


ACCESS_SCRIPT = """
import datetime, sys
from gunicorn.config import Config
from gunicorn.glogging import Logger
import dungeon.gunicorn_conf as conf

cfg = Config()
for name in ("access_log_format", "accesslog", "logconfig_dict"):
    cfg.set(name, getattr(conf, name))

class Response:
    status, sent = "200 OK", 42
    headers = [("X-Request-ID", "rid-7")]

environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/api/games?token=s3cr3t&limit=5",
           "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/api/games",
           "QUERY_STRING": "token=s3cr3t&limit=5", "REMOTE_ADDR": "127.0.0.1"}
Logger(cfg).access(Response(), [("Authorization", "Bearer s3cr3t")], environ,
                   datetime.timedelta(milliseconds=3))
"""


def test_gunicorns_access_log_as_configured_masks_secret_queries(tmp_path):
    # Its own process: gunicorn's logging set-up reconfigures the whole process.
    environ = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", ACCESS_SCRIPT], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()
             if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert len(access) == 1
    assert access[0]["event"] == f'127.0.0.1 "GET /api/games?token={MASK}&limit=5 HTTP/1.1" ' \
                                 "200 42 3ms rid=rid-7"
    assert "s3cr3t" not in done.stdout + done.stderr


def test_the_server_uses_the_redacted_format():
    source = (ROOT / "dungeon" / "gunicorn_conf.py").read_text()
    assert "access_log_format = ACCESS_LOG_FORMAT" in source


# --- the production guard ------------------------------------------------------------

def fernet_key(byte: bytes) -> str:
    return base64.urlsafe_b64encode(byte * 32).decode()


# What production needs, all of it right; each test takes one thing away.
FIT = {"ENV": "production", "SECRET_KEY": "p" * 40, "MONGO_URI": "mongodb://db.internal/dungeon",
       "ENCRYPTION_KEYS": fernet_key(b"a"), "LOAD_ENTRYPOINTS": False, **PLAIN}


def production_app(monkeypatch, workers: str | None = "1", **changes):
    if workers is not None:
        monkeypatch.setenv("DUNGEON_WORKERS", workers)
    config = {**FIT, **changes}
    return create_app({k: v for k, v in config.items() if v is not None},
                      mongo_client=mongomock.MongoClient(tz_aware=True))


def refusal(monkeypatch, workers: str | None = "1", **changes) -> str:
    with pytest.raises(ConfigError) as caught:
        production_app(monkeypatch, workers, **changes)
    return str(caught.value)


def test_a_fit_production_configuration_starts(monkeypatch):
    assert production_app(monkeypatch).config["ENV"] == "production"


def test_production_refuses_memory_rate_limits_with_several_workers(monkeypatch):
    assert refusal(monkeypatch, workers="4") == (
        "RATE_LIMIT_STORAGE: memory:// counts in each of the 4 workers (DUNGEON_WORKERS) on "
        "its own, so every limit lets 4 times as much through; set a mongodb:// URI (or "
        "DUNGEON_WORKERS=1)")


def test_production_counts_the_workers_as_the_server_starts_them(monkeypatch):
    # Unset, gunicorn_conf.py starts 2 workers with MongoDB ...
    assert refusal(monkeypatch, workers=None).startswith("RATE_LIMIT_STORAGE: memory:// "
                                                         "counts in each of the 2 workers")
    # ... and a wrong value names the variable.
    assert refusal(monkeypatch, workers="many") == \
        "DUNGEON_WORKERS: must be a whole number, got 'many'"


def test_production_refuses_the_development_signing_key(monkeypatch):
    assert refusal(monkeypatch, SECRET_KEY=None).startswith(
        "SECRET_KEY: required when ENV is production; without it each process signs with its "
        "own development key")


def test_production_refuses_to_store_games_unencrypted_unless_told_to(monkeypatch, caplog):
    assert refusal(monkeypatch, ENCRYPTION_KEYS=None) == (
        "ENCRYPTION_KEYS: required when ENV is production, to encrypt saved games; set "
        "DUNGEON_ALLOW_PLAINTEXT=true to run without on purpose")
    app = production_app(monkeypatch, ENCRYPTION_KEYS=None, ALLOW_PLAINTEXT="true")
    assert app.config["ALLOW_PLAINTEXT"] is True
    assert any("stored unencrypted" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


def test_production_names_every_problem_at_once(monkeypatch):
    message = refusal(monkeypatch, workers="3", SECRET_KEY=None, ENCRYPTION_KEYS=None)
    lines = message.splitlines()
    assert lines[0] == "ENV is production and these settings are not fit for it:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "- SECRET_KEY", "- RATE_LIMIT_STORAGE", "- ENCRYPTION_KEYS"]


def test_development_refuses_none_of_it(monkeypatch, make_app):
    monkeypatch.setenv("DUNGEON_WORKERS", "4")
    app = make_app({**PLAIN, "MONGO_URI": "mongodb://db.internal/dungeon"})
    assert app.config["ENCRYPTION_KEYS"] is None and app.config["ENV"] == "development"


def test_each_encryption_key_is_masked_in_logs(monkeypatch):
    keys = [fernet_key(b"k"), fernet_key(b"o")]
    production_app(monkeypatch, ENCRYPTION_KEYS=",".join(keys))
    record = logging.LogRecord("x", logging.ERROR, "", 0, f"old key {keys[1]}", (), None)
    assert keys[1] not in make_formatter("json").format(record)
