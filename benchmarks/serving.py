"""Serving model: gunicorn gthread with 16, 64, 128 or 256 threads, or gevent.

One worker on the embedded store, the local narrator, as deployed.

(a) Held connections. While 64 connections are held, /healthz and a game GET
    are probed every 0.1 s for ``--hold`` seconds (2 s timeout; over 1 s
    counts as a miss), beside the same probes with nothing held:
    - slow:  64 slow-header connections (a byte every 0.5 s) straight at gunicorn;
    - nginx: the same through nginx with ops/nginx/dungeon.conf (probes too);
    - waits: 64 ``POST .../actions?wait=image`` waiting on images that take
             30 s (the fake OpenAI server of benchmarks/fake_openai.py).
    Each measurement gets a fresh gunicorn; the worker's resident memory and
    threads are read at the end of the hold.
(b) Throughput of a cache-hit ``GET /api/games/<id>`` with wrk (16
    connections), every model in the same run, in interleaved rounds (the
    order turns each round); ratios are the median of each round's ratio to
    gthread with 16 threads, the default before this measurement. gthread 128
    through nginx is measured beside them.

Run:  python benchmarks/serving.py [--hold 4] [--rounds 5] [--seconds 2]
          [--models gthread-16,gthread-64,gthread-128,gthread-256,gevent] [--skip-holds]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    NGINX,
    FakeOpenAI,
    Gunicorn,
    Nginx,
    SlowClients,
    new_game,
    proc_status,
    wrk,
)

HELD = 64
MISS = 1.0  # seconds: a probe slower than this is a miss
IMAGE_SECONDS = 30.0
BASELINE = "gthread-16"


def model(name: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """Return the settings and gunicorn arguments of a model named like gthread-128."""
    if name == "gevent":
        return {}, ("--worker-class", "gevent", "--worker-connections", "1000")
    kind, threads = name.split("-")
    assert kind == "gthread", name
    return {"THREADS": threads}, ()


def probe(base: str, game_url: str, auth: dict[str, str], seconds: float) -> dict[str, list]:
    """Return each probe's latency (seconds; None for a failure) over ``seconds``."""
    seen: dict[str, list] = {"healthz": [], "game": []}
    ends = time.monotonic() + seconds
    with requests.Session() as http:
        while time.monotonic() < ends:
            for name, url, headers in (("healthz", f"{base}/healthz", {}),
                                       ("game", game_url, auth)):
                started = time.perf_counter()
                try:
                    ok = http.get(url, headers=headers, timeout=2).status_code == 200
                except requests.RequestException:
                    ok = False
                seen[name].append(time.perf_counter() - started if ok else None)
            time.sleep(0.1)
    return seen


def summary(seen: list) -> str:
    answered = [x for x in seen if x is not None]
    misses = sum(1 for x in seen if x is None or x > MISS)
    if not answered:
        return f"{'none answered':>24}  {misses:3}/{len(seen):<3}"
    return (f"{statistics.median(answered) * 1000:7.1f} / {max(answered) * 1000:7.1f} ms  "
            f"{misses:3}/{len(seen):<3}")


def waiters(base: str, games: list, stop: threading.Event) -> list[threading.Thread]:
    def wait(url: str, auth: dict[str, str]) -> None:
        with contextlib.suppress(requests.RequestException):
            requests.post(f"{url}/actions?wait=image", headers=auth, timeout=60,
                          json={"action": "I wait for the picture"})

    threads = [threading.Thread(target=wait, args=game, daemon=True) for game in games]
    for thread in threads:
        thread.start()
    return threads


def hold(name: str, kind: str, args: argparse.Namespace, fake: FakeOpenAI | None,
         workdir: Path) -> dict:
    settings, gunicorn_args = model(name)
    if kind == "waits":
        settings = {**settings, "IMAGE_PROVIDERS": "gpt-image-2,placeholder",
                    "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": fake.base_url}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(Gunicorn(workdir / f"{name}-{kind}.log", settings,
                                              gunicorn_args))
        base = server.base
        if kind == "nginx":
            base = stack.enter_context(Nginx(workdir, server.port)).base
        game_url, auth = new_game(base)
        idle = probe(base, game_url, auth, 1.0)
        stop = threading.Event()
        if kind == "waits":
            games = [new_game(base) for _ in range(HELD)]
            waiters(base, games, stop)
            time.sleep(1.0)  # every wait has arrived
        else:
            stack.enter_context(SlowClients(server.port if kind == "slow" else
                                            int(base.rsplit(":", 1)[1]), HELD))
        held = probe(base, game_url, auth, args.hold)
        status = proc_status(server.worker_pid())
        stop.set()
    return {"idle": idle, "held": held, **status}


def bench_holds(args: argparse.Namespace, workdir: Path) -> None:
    kinds = ["slow", "waits"] + (["nginx"] if NGINX.exists() else [])
    print(f"(a) {HELD} held connections; probes every 0.1 s for {args.hold:g} s; "
          f"median / max latency, misses (over {MISS:g} s or failed) / probes")
    print(f"    {'model':12} {'held':6} {'healthz, nothing held':>28}  "
          f"{'healthz, held':>28}  {'game GET, held':>28}  RSS MiB  threads")
    with FakeOpenAI(IMAGE_SECONDS) as fake:
        for kind in kinds:
            for name in args.models:
                r = hold(name, kind, args, fake, workdir)
                print(f"    {name:12} {kind:6} {summary(r['idle']['healthz']):>28}  "
                      f"{summary(r['held']['healthz']):>28}  {summary(r['held']['game']):>28}  "
                      f"{r['rss_mib']:7.1f}  {r['threads']:7}", flush=True)


def bench_throughput(args: argparse.Namespace, workdir: Path) -> None:
    names = list(args.models)
    with contextlib.ExitStack() as stack:
        targets = {}
        for name in names:
            settings, gunicorn_args = model(name)
            server = stack.enter_context(Gunicorn(workdir / f"{name}-wrk.log", settings,
                                                  gunicorn_args))
            targets[name] = (server, *new_game(server.base))
        if NGINX.exists() and "gthread-128" in targets:
            proxy = stack.enter_context(Nginx(workdir, targets["gthread-128"][0].port))
            targets["gthread-128+nginx"] = (targets["gthread-128"][0], *new_game(proxy.base))
        for _, url, auth in targets.values():
            wrk(url, auth, 1, 16)  # warm-up
        results: dict[str, list] = {name: [] for name in targets}
        order = list(targets)
        for i in range(args.rounds):
            turned = order[i % len(order):] + order[:i % len(order)]
            for name in turned:
                _, url, auth = targets[name]
                results[name].append(wrk(url, auth, args.seconds, 16))
        memory = {name: proc_status(server.worker_pid()) for name, (server, _, _) in
                  targets.items()}
    print(f"(b) GET /api/games/<id> (cache hits), wrk 16 connections, {args.rounds} "
          f"interleaved rounds of {args.seconds:g} s (medians)")
    print(f"    {'model':18} {'req/s':>8} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8}  RSS MiB  "
          "threads")
    base = results.get(BASELINE)
    for name, runs in results.items():
        ratio = (statistics.median(r["rps"] / b["rps"] for r, b in zip(runs, base, strict=True))
                 if base else float("nan"))
        print(f"    {name:18} {statistics.median(r['rps'] for r in runs):8.0f} {ratio:6.2f} "
              f"{statistics.median(r['p50_ms'] for r in runs):8.2f} "
              f"{statistics.median(r['p99_ms'] for r in runs):8.2f}  "
              f"{memory[name]['rss_mib']:7.1f}  {memory[name]['threads']:7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--models", type=lambda text: text.split(","),
                        default=["gthread-16", "gthread-64", "gthread-128", "gthread-256",
                                 "gevent"])
    parser.add_argument("--skip-holds", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    args.hold = min(args.hold, 30.0)
    if "gevent" in args.models and importlib.util.find_spec("gevent") is None:
        print("gevent is not installed (pip install gevent): its lines are left out")
        args.models.remove("gevent")
    with tempfile.TemporaryDirectory(prefix="dungeon-serving-") as tmp:
        if not args.skip_holds:
            bench_holds(args, Path(tmp))
        if not args.skip_throughput:
            bench_throughput(args, Path(tmp))


if __name__ == "__main__":
    main()
