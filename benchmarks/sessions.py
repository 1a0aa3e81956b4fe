"""Saved-game lookup benchmarks; figures go to docs/benchmarks.md.

(a) Under gunicorn (gthread, one worker, the embedded store), requests per
    second for GET /api/games/<id> with the lookup cache on, with it off, and
    for a bare JSON endpoint of the same app (/healthz), measured in one run.
(b) Memory of the lookup cache after 100 000 different games were touched,
    with the default size cap beside an uncapped cache.

Run:  python benchmarks/sessions.py [--seconds S] [--clients C]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


ROUNDS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(cache_size: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DUNGEON_BIND": f"127.0.0.1:{port}", "DUNGEON_LOAD_ENTRYPOINTS": "false",
           "DUNGEON_ACCESS_LOG": "/dev/null", "DUNGEON_LOG_LEVEL": "error",
           "DUNGEON_SESSION_CACHE_SIZE": str(cache_size), "DUNGEON_IMAGE_PROVIDERS": "placeholder",
           "DUNGEON_THREADS": "8"}
    env.pop("DUNGEON_MONGO_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(f"{base}/healthz", timeout=1).ok:
                return process, base
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def new_game(base: str) -> tuple[str, dict[str, str]]:
    token = requests.post(f"{base}/api/auth/guest", timeout=5).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    game = requests.post(f"{base}/api/games", headers=auth, timeout=5,
                         json={"genre": "fantasy", "style": "comic"}).json()
    return f"{base}/api/games/{game['game']['id']}", auth


def load(url: str, headers: dict[str, str], seconds: float, clients: int) -> float:
    """Return requests per second from ``clients`` keep-alive connections over ``seconds``.

    wrk (Debian package ``wrk``) is used when present: a Python client on the
    same two cores would measure itself more than the server.
    """
    if shutil.which("wrk"):
        return _wrk(url, headers, seconds, clients)
    return _python_load(url, headers, seconds, clients)


def _wrk(url: str, headers: dict[str, str], seconds: float, clients: int) -> float:
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"errors during the run:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def _python_load(url: str, headers: dict[str, str], seconds: float, clients: int) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop:
                assert session.get(url, headers=headers, timeout=5).status_code == 200
                counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def bench_http(seconds: float, clients: int) -> None:
    cached, cached_base = start_server(cache_size=10000)
    uncached, uncached_base = start_server(cache_size=0)
    try:
        hit_url, hit_auth = new_game(cached_base)
        miss_url, miss_auth = new_game(uncached_base)
        for url, auth in ((hit_url, hit_auth), (miss_url, miss_auth)):
            load(url, auth, 0.5, clients)  # warm-up
        # Rounds alternate the three endpoints, so machine noise falls on all alike.
        rounds = {"bare": [], "hits": [], "misses": []}
        for _ in range(ROUNDS):
            rounds["bare"].append(load(f"{cached_base}/healthz", {}, seconds, clients))
            rounds["hits"].append(load(hit_url, hit_auth, seconds, clients))
            rounds["misses"].append(load(miss_url, miss_auth, seconds, clients))
    finally:
        for process in (cached, uncached):
            process.terminate()
            process.wait(10)
    tool = "wrk" if shutil.which("wrk") else "a Python client"
    print(f"(a) gunicorn gthread, 1 worker x 8 threads, {clients} connections from {tool}, "
          f"{ROUNDS} alternating rounds of {seconds:g} s per endpoint (medians)")
    bare = statistics.median(rounds["bare"])
    print(f"    bare JSON endpoint (/healthz)        {bare:8.0f} req/s")
    for name, label in (("hits", "cache hits    "), ("misses", "cache disabled")):
        ratio = statistics.median(x / b for x, b in zip(rounds[name], rounds["bare"],
                                                         strict=True))
        print(f"    GET /api/games/<id>, {label}  {statistics.median(rounds[name]):8.0f} "
              f"req/s  ({ratio:.2f} of bare)")


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
    print(f"(b) cache memory after {games} games were touched")
    print(f"    SESSION_CACHE_SIZE=10000 (default)  {capped:6} entries  "
          f"{capped_bytes / 2**20:6.1f} MiB")
    print(f"    uncapped, for comparison            {full:6} entries  "
          f"{full_bytes / 2**20:6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--games", type=int, default=100_000)
    args = parser.parse_args()
    bench_http(args.seconds, args.clients)
    bench_memory(args.games)


if __name__ == "__main__":
    main()
