"""Saved-game lookup benchmarks; figures go to docs/benchmarks.md.

(a) ``GET /api/games/<id>`` of a 10-turn game under gunicorn, against a bare
    Flask app serving the same bytes. The service runs as ``dungeon serve``
    runs it (dungeon/gunicorn_conf.py: gthread, 128 threads, one worker on
    the embedded store, whose lookup cache is coherent in-process, so a
    cache hit reads nothing from the store); a guest plays a game to 10
    turns (the opening and 9 actions, every image ready), and one GET
    records the answer. benchmarks/bare_app.py then serves those exact
    bytes (same status and headers) at the same path under the same
    configuration file. wrk measures requests/s in interleaved rounds (the
    order turns each round), the real service with the game's Authorization
    header, the bare app with the same header; the ratio is the median of
    each round's ratio real / bare. A second service with
    ``SESSION_CACHE_SIZE=0`` gives the cache-disabled row against its own
    recorded bytes, and the service's ``/healthz`` is measured beside them.
    The cache's own counters (``/metrics``) confirm hits and misses.
(b) With ``--profile``, or when (a) misses its target: the hit path
    in-process, each app called as gunicorn calls it (a WSGI environ in, the
    body iterated): µs per GET of the service, of its /healthz and of the
    bare app serving the same bytes, in interleaved rounds; then cProfile's
    costs per GET by stage of Flask's request handling, by function and by
    package.
(c) With ``--what-if``: the cache-hit GET with changes patched into the
    running service (WHAT_IFS; nothing in dungeon/ changes), in-process and
    under gunicorn, each against the bare app as in (a).
(d) Memory of the lookup cache after 100 000 different games were touched,
    with the default size cap beside an uncapped cache.

Run:  python benchmarks/sessions.py [--rounds 7] [--seconds 2] [--clients 4]
          [--profile] [--what-if] [--skip-http] [--skip-memory]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bare_app import recorded  # noqa: E402
from benchmarks.harness import Gunicorn, new_game, wrk  # noqa: E402

TURNS = 10          # the opening and 9 actions
TARGET = 0.85       # cache hits against the bare app
BARE_APP = "benchmarks.bare_app:create_app()"
CONFIG = {"LOAD_ENTRYPOINTS": False, "NARRATOR": "local", "IMAGE_PROVIDERS": "placeholder",
          "SECRET_KEY": "b" * 40, "LOG_LEVEL": "warning", "RATE_LIMIT_GUESTS": "",
          "RATE_LIMIT_GAMES": "", "RATE_LIMIT_ACTIONS": "", "RATE_LIMIT_IMAGES": ""}


# --- (a) under gunicorn ----------------------------------------------------------------

def play(base: str, turns: int = TURNS) -> tuple[str, dict[str, str]]:
    """Create a guest and a game, play it to ``turns`` turns; return once every image is ready."""
    url, auth = new_game(base)
    for i in range(turns - 1):
        answer = requests.post(f"{url}/actions", headers=auth, timeout=30,
                               json={"action": f"I search room {i + 1} for a way on"})
        answer.raise_for_status()
    deadline = time.monotonic() + 60
    while True:
        game = requests.get(url, headers=auth, timeout=30).json()
        if len(game["turns"]) == turns and all(
                (t["image"] or {}).get("status") == "ready" for t in game["turns"]):
            return url, auth
        if time.monotonic() > deadline:
            raise RuntimeError(f"images still pending after 60 s: {game['turns']}")
        time.sleep(0.1)


def record(url: str, auth: dict[str, str]) -> requests.Response:
    answer = requests.get(url, headers=auth, timeout=30)
    answer.raise_for_status()
    assert answer.json()["game"]["turn_count"] == TURNS, answer.json()["game"]
    return answer


def counters(base: str) -> dict[str, float]:
    """Return the service's game lookups by outcome (its /metrics, loopback only)."""
    text = requests.get(f"{base}/metrics", timeout=30).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^dungeon_session_lookups_total\{outcome="(\w+)"\} ([\d.e+]+)$', text, re.M)}


def bench_http(args: argparse.Namespace, workdir: Path) -> float:
    """Run (a); return the cache hits' ratio to the bare app."""
    with contextlib.ExitStack() as stack:
        hits = stack.enter_context(Gunicorn(workdir / "hits.log"))
        misses = stack.enter_context(Gunicorn(workdir / "misses.log",
                                              {"SESSION_CACHE_SIZE": 0}))
        games = {"hits": (hits, *play(hits.base)), "misses": (misses, *play(misses.base))}
        answers, recorded_bytes = [], {}
        for name, (server, url, auth) in games.items():
            answer = record(url, auth)
            path = url.removeprefix(server.base)
            answers.append(recorded(path, answer.status_code, answer.headers.items(),
                                    answer.content))
            recorded_bytes[name] = answer
        (workdir / "answers.json").write_text(json.dumps(answers))
        bare = stack.enter_context(Gunicorn(workdir / "bare.log", {
            "WSGI_APP": BARE_APP, "BARE_ANSWERS": workdir / "answers.json"}))

        targets = {}
        for name, (server, url, auth) in games.items():
            bare_url = bare.base + url.removeprefix(server.base)
            copy = requests.get(bare_url, headers=auth, timeout=30)
            real = recorded_bytes[name]
            assert copy.content == real.content, "the bare app must serve the same bytes"
            assert copy.headers["Content-Type"] == real.headers["Content-Type"]
            targets[f"bare:{name}"] = (bare_url, auth)
            targets[name] = (url, auth)
        targets["healthz"] = (f"{hits.base}/healthz", {})
        for url, auth in targets.values():
            wrk(url, auth, 1, args.clients)  # warm-up
        before = {name: counters(games[name][0].base) for name in ("hits", "misses")}

        results: dict[str, list] = {name: [] for name in targets}
        order = list(targets)
        for i in range(args.rounds):
            turned = order[i % len(order):] + order[:i % len(order)]
            for name in turned:
                url, auth = targets[name]
                results[name].append(wrk(url, auth, args.seconds, args.clients))

        after = {name: counters(games[name][0].base) for name in ("hits", "misses")}
        for name, (_, url, auth) in games.items():
            assert record(url, auth).content == recorded_bytes[name].content, \
                f"{name}: the game's answer changed during the run"
    size = len(recorded_bytes["hits"].content)
    print(f"(a) GET /api/games/<id> of a {TURNS}-turn game ({size} bytes), gunicorn as "
          f"`dungeon serve` (gthread, 128 threads, 1 worker, embedded store);\n"
          f"    wrk {args.clients} keep-alive connections, {args.rounds} interleaved rounds "
          f"of {args.seconds:g} s (medians)")
    print(f"    {'endpoint':44} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}  "
          "round ratios")

    def row(label: str, name: str, baseline: str | None) -> None:
        runs = results[name]
        ratios = [r["rps"] / b["rps"] for r, b in zip(runs, results[baseline], strict=True)] \
            if baseline else []
        shown = f"{statistics.median(ratios):6.2f}" if ratios else f"{'':6}"
        print(f"    {label:44} {statistics.median(r['rps'] for r in runs):8.0f} {shown} "
              f"{statistics.median(r['p50_ms'] for r in runs):7.2f} "
              f"{statistics.median(r['p99_ms'] for r in runs):7.2f}  "
              f"{' '.join(f'{x:.2f}' for x in ratios)}")

    row("bare Flask app, the hits' bytes (baseline)", "bare:hits", None)
    row("GET /api/games/<id>, cache hits", "hits", "bare:hits")
    row("bare Flask app, the misses' bytes (baseline)", "bare:misses", None)
    row("GET /api/games/<id>, cache disabled", "misses", "bare:misses")
    row("the service's /healthz, against the bare app", "healthz", "bare:hits")
    for name in ("hits", "misses"):
        seen = {k: after[name].get(k, 0) - before[name].get(k, 0) for k in after[name]}
        print(f"    {name}: lookups during the rounds by outcome: "
              f"{', '.join(f'{k} {v:.0f}' for k, v in sorted(seen.items()) if v)}")
    ratio = statistics.median(r["rps"] / b["rps"] for r, b in
                              zip(results["hits"], results["bare:hits"], strict=True))
    print(f"    cache hits at {ratio:.3f} of the bare app (target {TARGET:.2f}): "
          f"{'met' if ratio >= TARGET else 'NOT met'}")
    return ratio


# --- (b) the hit path in-process --------------------------------------------------------

# Where a request's time goes: (label, file suffix, function).
STAGES = (
    ("whole request (the WSGI edge)", "dungeon/edge.py", "__call__"),
    ("  Flask's wsgi_app", "flask/app.py", "wsgi_app"),
    ("    request context push", "flask/ctx.py", "push"),
    ("    before_request hooks", "flask/app.py", "preprocess_request"),
    ("      bearer token check", "dungeon/api/games.py", "authenticate"),
    ("    the view, flask-openapi3's wrapper", "flask_openapi3/scaffold.py", "view_func"),
    ("      request validation (pydantic)", "flask_openapi3/request.py", "_validate_request"),
    ("      get_game", "dungeon/api/games.py", "get_game"),
    ("        engine.load (cache hit, no store call)", "dungeon/game/engine.py", "load"),
    ("          store.load", "dungeon/sessions/store.py", "load"),
    ("          store.recent_for", "dungeon/sessions/store.py", "recent_for"),
    ("        the rendered answer (kept)", "dungeon/api/views.py", "answer"),
    ("    after_request hooks", "flask/app.py", "process_response"),
    ("    the answer's start (edge: headers, metrics)", "dungeon/edge.py", "respond"),
    ("      security headers", "dungeon/security.py", "add_headers"),
    ("      request metrics", "dungeon/metrics.py", "record_request"),
    ("    teardown, context pop", "flask/ctx.py", "pop"),
)


def played_app(changes: str = ""):
    """Return an in-process app with ``changes`` patched in (see ``patch``) and a 10-turn game.

    Returns the app, the game's path, the guest's headers and the game's answer.
    """
    # As under gunicorn: prometheus_client picks its storage when first imported.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="dungeon-metrics-"))
    from dungeon import create_app

    app = patch(create_app(CONFIG), changes)
    jobs = app.extensions["dungeon"].jobs
    client = app.test_client()
    token = client.post("/api/auth/guest").get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    game_id = client.post("/api/games", headers=auth,
                          json={"genre": "fantasy", "style": "comic"}).get_json()["game"]["id"]
    for i in range(TURNS - 1):
        answer = client.post(f"/api/games/{game_id}/actions", headers=auth,
                             json={"action": f"I search room {i + 1} for a way on"})
        assert answer.status_code == 201, answer.get_json()
    deadline = time.monotonic() + 60
    while jobs.futures and time.monotonic() < deadline:
        time.sleep(0.001)
    path = f"/api/games/{game_id}"
    answer = client.get(path, headers=auth)
    assert all(t["image"]["status"] == "ready" for t in answer.get_json()["turns"])
    return app, path, auth, answer


def call_wsgi(wsgi, environ) -> bytes:
    """Call a WSGI app as gunicorn does; return the body (which must come with 200)."""
    seen = []
    body = wsgi(dict(environ), lambda status, headers, exc_info=None: seen.append(status))
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    assert seen[0].startswith("200"), seen
    return data


def bench_profile(requests_count: int, top: int) -> None:
    """Time and profile cache-hit GETs in-process, beside the bare app serving the same bytes.

    The apps are called as gunicorn calls them (a WSGI environ in, the body
    iterated), so the client's own work is left out.
    """
    from werkzeug.test import EnvironBuilder

    from benchmarks.bare_app import create_app as bare_app

    app, path, auth, answer = played_app()
    bare = bare_app([recorded(path, answer.status_code, answer.headers.items(), answer.data)])
    environ = EnvironBuilder(path=path, headers=auth).get_environ()
    health = EnvironBuilder(path="/healthz").get_environ()
    call = call_wsgi
    assert call(bare, environ) == call(app, environ) == answer.data

    def timed(wsgi, env) -> float:
        started = time.perf_counter()
        for _ in range(requests_count):
            call(wsgi, env)
        return (time.perf_counter() - started) / requests_count * 1e6

    rounds: dict[str, list[float]] = {"bare": [], "real": [], "healthz": []}
    for _ in range(5):
        rounds["bare"].append(timed(bare, environ))
        rounds["real"].append(timed(app, environ))
        rounds["healthz"].append(timed(app, health))
    real, base, healthz = (statistics.median(rounds[k]) for k in ("real", "bare", "healthz"))
    print(f"(b) in-process WSGI calls, {requests_count} per round, 5 interleaved rounds "
          f"(medians, no profiler):")
    print(f"    bare app, same bytes (baseline) {base:6.0f} µs")
    print(f"    the service's /healthz          {healthz:6.0f} µs  (+{healthz - base:.0f})")
    print(f"    GET /api/games/<id>, cache hit  {real:6.0f} µs  (+{real - base:.0f})")

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests_count):
        call(app, environ)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    per = 1e6 / requests_count
    print("    under cProfile (which inflates every call, the small ones most), µs per GET:")
    print("    stages, inclusive:")
    for label, suffix, function in STAGES:
        found = [(calls, inclusive) for (file, _, name), (_, calls, _, inclusive, _)
                 in stats.items() if name == function and file.endswith(suffix)]
        if found:  # the outermost of same-named functions (RequestContext.push, not AppContext's)
            calls, inclusive = max(found, key=lambda pair: pair[1])
            print(f"      {inclusive * per:7.1f}  {label}"
                  f"{f' ({calls / requests_count:g} calls)' if calls != requests_count else ''}")
    print(f"    top {top} functions by own time:")
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, name), (_, calls, own, _, _) in ranked:
        print(f"      {own * per:7.1f}  {calls / requests_count:5.1f} calls  "
              f"{_short(file)}:{line}({name})")
    groups: dict[str, float] = {}
    for (file, _, _), (_, _, own, _, _) in stats.items():
        groups[_package(file)] = groups.get(_package(file), 0.0) + own
    total = sum(groups.values())
    print("    own time by package:")
    for name, own in sorted(groups.items(), key=lambda item: -item[1])[:12]:
        print(f"      {own * per:7.1f}  {own / total:5.1%}  {name}")


def _short(file: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _package(file: str) -> str:
    short = _short(file)
    if short.startswith("dungeon/"):
        return "/".join(short.split("/")[:2]).removesuffix(".py")
    if "site-packages/" in file:
        return short.split("/")[0]
    if file.startswith(("~", "<")):
        return "builtins"
    return "stdlib:" + Path(file).stem


# --- (c) what-ifs: the hit path with changes patched in ------------------------------------

# Changes to measure, patched into a running app (nothing in dungeon/ changes).
# None is meant to ship: each sizes what one part of the hit path costs.
WHAT_IFS = {
    "metrics": "metric values not written (prometheus_client's value class a no-op)",
    "validation": "get_game called without flask-openapi3's wrapper (no pydantic)",
    "auth": "the bearer token taken as checked (signature and revocation skipped)",
    "edge": "no WSGI edge (no request id, safety headers or request metrics)",
    "load": "the game loaded once, then handed out again (no store.load, no recent turns)",
}
VARIANTS = ("", "load", "edge", "metrics,validation,auth")


def patch(app, changes: str):
    """Return ``app`` with the comma-separated ``changes`` of WHAT_IFS patched in."""
    from flask import g, request

    wanted = set(filter(None, changes.split(",")))
    assert wanted <= set(WHAT_IFS), wanted - set(WHAT_IFS)
    if "edge" in wanted:  # first: the edge is what app.wsgi_app is until a change wraps it
        app.wsgi_app = app.wsgi_app.app
    if "metrics" in wanted:
        from prometheus_client import values

        # The value class is process-wide: it is a no-op only while this app serves.
        served, written = app.wsgi_app, values.ValueClass.inc

        def without_metric_writes(environ, start_response):
            values.ValueClass.inc = lambda self, amount: None
            try:
                return served(environ, start_response)
            finally:
                values.ValueClass.inc = written

        app.wsgi_app = without_metric_writes
    if "validation" in wanted:
        from dungeon.api import games
        from dungeon.api.schemas import GamePath

        app.view_functions["games.get_game"] = (
            lambda session_id: games.get_game(GamePath.model_construct(session_id=session_id)))
    if "load" in wanted:
        engine, loaded = app.extensions["dungeon"].game, {}
        load = engine.load

        def load_once(user_id, session_id):  # loaded for real once, then the same game
            if (user_id, session_id) not in loaded:
                loaded[user_id, session_id] = load(user_id, session_id)
            return loaded[user_id, session_id]

        engine.load = load_once
    if "auth" in wanted:
        from dungeon import auth, logs, security

        signer, checked = app.extensions["dungeon"].signer, {}

        def authenticate():
            token = auth.bearer_token()
            if token not in checked:  # checked for real once, then taken as checked
                checked[token] = signer.authenticate(token)
            claims = checked[token]
            g.user_id = claims.user_id
            logs.bind(user_id=claims.user_id)
            security.mark_private(request.environ)

        app.before_request_funcs["games"] = [authenticate]
    return app


def patched_app():
    """The service with ``SESSIONS_WHAT_IF``'s changes, for gunicorn (``DUNGEON_WSGI_APP``)."""
    from dungeon import create_app

    return patch(create_app(), os.environ.get("SESSIONS_WHAT_IF", ""))


SHORT = {"metrics": "no metric writes", "validation": "no request validation",
         "auth": "no token check", "edge": "no edge", "load": "no load"}


def label(changes: str) -> str:
    return " + ".join(SHORT[c] for c in changes.split(",") if c) or "as it is"


def bench_what_if(args: argparse.Namespace, workdir: Path) -> None:
    """The cache-hit GET with VARIANTS' changes, in-process and under gunicorn, against bare."""
    from werkzeug.test import EnvironBuilder

    from benchmarks.bare_app import create_app as bare_app

    print("(c) what-ifs, patched into the service: "
          + "; ".join(f"{k}: {v}" for k, v in WHAT_IFS.items()))
    played = {changes: played_app(changes) for changes in ("", *WHAT_IFS, *VARIANTS[1:])}
    app, path, auth, answer = played[""]
    bare = bare_app([recorded(path, answer.status_code, answer.headers.items(), answer.data)])
    environs = {changes: EnvironBuilder(path=p, headers=a).get_environ()
                for changes, (_, p, a, _) in played.items()}
    for changes, (variant, _, _, answered) in played.items():
        assert call_wsgi(variant, environs[changes]) == answered.data
    rounds: dict[str, list[float]] = {name: [] for name in ("bare", *played)}
    for _ in range(5):
        for name in rounds:
            wsgi, environ = (bare, environs[""]) if name == "bare" else (played[name][0],
                                                                          environs[name])
            started = time.perf_counter()
            for _ in range(args.profile_requests):
                call_wsgi(wsgi, environ)
            rounds[name].append((time.perf_counter() - started) / args.profile_requests * 1e6)
    base = statistics.median(rounds["bare"])
    print(f"    in-process, {args.profile_requests} WSGI calls x 5 interleaved rounds: "
          f"bare app {base:.0f} µs (baseline), µs over it:")
    for name in played:
        print(f"      {statistics.median(rounds[name]) - base:+6.0f}  {label(name)}")

    with contextlib.ExitStack() as stack:
        targets, answers = {}, []
        for changes in VARIANTS:
            os.environ["SESSIONS_WHAT_IF"] = changes  # the harness passes its environment on
            try:
                server = stack.enter_context(Gunicorn(
                    workdir / f"what-if-{changes or 'none'}.log",
                    {"WSGI_APP": "benchmarks.sessions:patched_app()"}))
            finally:
                del os.environ["SESSIONS_WHAT_IF"]
            url, auth = play(server.base)
            answer = record(url, auth)
            answers.append(recorded(url.removeprefix(server.base), answer.status_code,
                                    answer.headers.items(), answer.content))
            targets[label(changes)] = (url, auth)
        (workdir / "what-if.json").write_text(json.dumps(answers))
        bare_server = stack.enter_context(Gunicorn(workdir / "what-if-bare.log", {
            "WSGI_APP": BARE_APP, "BARE_ANSWERS": workdir / "what-if.json"}))
        _, first_auth = targets[label("")]
        targets = {"bare (baseline)": (bare_server.base + answers[0]["path"], first_auth),
                   **targets}
        for url, auth in targets.values():
            wrk(url, auth, 1, args.clients)  # warm-up
        results: dict[str, list] = {name: [] for name in targets}
        order = list(targets)
        for i in range(args.rounds):
            for name in order[i % len(order):] + order[:i % len(order)]:
                results[name].append(wrk(*targets[name], args.seconds, args.clients)["rps"])
    print(f"    under gunicorn, wrk {args.clients} connections, {args.rounds} interleaved "
          f"rounds of {args.seconds:g} s (medians):")
    for name, runs in results.items():
        ratios = [r / b for r, b in zip(runs, results["bare (baseline)"], strict=True)]
        print(f"      {statistics.median(runs):7.0f} req/s  {statistics.median(ratios):5.2f}  "
              f"{name}   ({' '.join(f'{x:.2f}' for x in ratios)})")


# --- (d) memory -------------------------------------------------------------------------

def bench_memory(games: int) -> None:
    from dungeon.sessions.cache import SessionCache

    now = datetime.now(UTC)

    def fill(maxsize: int) -> tuple[int, int]:
        tracemalloc.start()
        cache = SessionCache(maxsize, ttl=3600)
        for i in range(games):
            cache.put(("u_user", f"{i:022d}"), {
                "_id": f"{i:022d}", "user_id": "u_user", "title": "A Fantasy Adventure",
                "genre": "fantasy", "style": "comic", "seed": i, "version": 3, "turn_count": 9,
                "status": "active", "created_at": now, "updated_at": now,
                "last_active_at": now, "expires_at": now, "turns_expire_at": now})
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return len(cache), size

    capped, capped_bytes = fill(10000)
    full, full_bytes = fill(games)
    print(f"(d) cache memory after {games} games were touched")
    print(f"    SESSION_CACHE_SIZE=10000 (default)  {capped:6} entries  "
          f"{capped_bytes / 2**20:6.1f} MiB")
    print(f"    uncapped, for comparison            {full:6} entries  "
          f"{full_bytes / 2**20:6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--games", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true",
                        help="also time and profile the hit path in-process")
    parser.add_argument("--profile-requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--what-if", action="store_true",
                        help="also measure the hit path with the changes of WHAT_IFS patched in")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    args.rounds = max(1, min(args.rounds, 20))
    args.seconds = max(1.0, min(args.seconds, 10.0))
    ratio = None
    if not args.skip_http:
        with tempfile.TemporaryDirectory(prefix="dungeon-sessions-") as tmp:
            ratio = bench_http(args, Path(tmp))
    if args.profile or (ratio is not None and ratio < TARGET):
        bench_profile(min(args.profile_requests, 20_000), args.top)
    if args.what_if:
        with tempfile.TemporaryDirectory(prefix="dungeon-what-if-") as tmp:
            bench_what_if(args, Path(tmp))
    if not args.skip_memory:
        bench_memory(args.games)


if __name__ == "__main__":
    main()
