"""Players one process serves before a turn gets an overflow placeholder.

The service runs under gunicorn (one worker, the embedded store, the local
narrator) with ``gpt-image-2`` pointed at a fake OpenAI server on loopback
(``benchmarks/fake_openai.py``) that answers every image after
``--image-seconds``.  Each simulated player (a thread) creates a game, then
plays an action every ``--think-seconds`` (from one answer to its next action,
the prologue included) without waiting for its images; players start spread
over one think time.  A run ends at its first "turn image queue full" log line
(the service's overflow signal) or after ``--duration`` seconds.  Player
counts run in rising order and stop at the first that overflows, so capacity
lies between the last two counts tried.

For each count: when the first overflow came, actions played, images made,
placeholders given (and the overflows among them, from
``dungeon_image_queue_overflows_total``), action latency, and the worker process's resident memory
and threads (``/proc/<pid>/status``: at start and at the run's peak), plus the
connections the fake API saw opened (more than the image threads means the
provider's HTTP pool was too small and connections were thrown away).

``--pool-check`` adds bursts of IMAGE_WORKERS concurrent calls through the
provider's HTTP session, with the old pool size (32) and the configured one,
counting the connections opened and urllib3's "connection pool is full"
warnings.

Run:  python benchmarks/capacity.py [--players 16,32,64,96,128,160] [--image-seconds 3]
          [--think-seconds 3] [--duration 30] [--set IMAGE_WORKERS=64 ...] [--baseline]
          [--pool-check]
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import FakeOpenAI, Gunicorn, new_game, proc_status  # noqa: E402
from dungeon.settings import SETTINGS_BY_NAME, defaults  # noqa: E402

OVERFLOW = "turn image queue full"
POOL_FULL = "connection pool is full"
# The defaults before this benchmark existed, for --baseline.
OLD_DEFAULTS = {"IMAGE_WORKERS": 4, "IMAGE_QUEUE": 32, "IMAGE_HTTP_POOL": 32}


class Player(threading.Thread):
    def __init__(self, base: str, delay: float, think: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.base, self.delay, self.think, self.stop = base, delay, think, stop
        self.latencies: list[float] = []
        self.errors = 0

    def run(self) -> None:
        if self.stop.wait(self.delay):
            return
        with requests.Session() as http:
            try:
                url, auth = new_game(self.base, http)
            except requests.RequestException:
                self.errors += 1
                return
            # The prologue comes with its own image: a player reads it before acting.
            while not self.stop.wait(self.think):
                started = time.perf_counter()
                try:
                    answer = http.post(f"{url}/actions", headers=auth, timeout=30,
                                       json={"action": "I open the next door"})
                    if answer.status_code != 201:
                        self.errors += 1
                except requests.RequestException:
                    self.errors += 1
                self.latencies.append(time.perf_counter() - started)


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}(\{{[^}}]*{re.escape(labels)}[^}}]*\}})? ([0-9.e+]+)$"
    return sum(float(m.group(2)) for m in re.finditer(pattern, text, re.MULTILINE))


def run(players: int, args: argparse.Namespace, settings: dict[str, str], fake: FakeOpenAI,
        workdir: Path) -> dict:
    config = {"IMAGE_PROVIDERS": "gpt-image-2,placeholder", "OPENAI_API_KEY": "sk-bench",
              "OPENAI_BASE_URL": fake.base_url, **settings}
    opened_before = fake.stats()["connections"]
    with Gunicorn(workdir / f"capacity-{players}.log", config) as server:
        pid = server.worker_pid()
        idle = proc_status(pid)
        stop = threading.Event()
        crowd = [Player(server.base, i * args.think_seconds / players, args.think_seconds, stop)
                 for i in range(players)]
        started = time.monotonic()
        for player in crowd:
            player.start()
        peak_rss, peak_threads, first_overflow, offset = idle["rss_mib"], idle["threads"], None, 0
        while time.monotonic() - started < args.duration:
            time.sleep(0.25)
            status = proc_status(pid)
            peak_rss = max(peak_rss, status["rss_mib"])
            peak_threads = max(peak_threads, status["threads"])
            with open(server.log_path, errors="replace") as log:
                log.seek(offset)
                fresh = log.read()
                offset = log.tell()
            if OVERFLOW in fresh:
                first_overflow = time.monotonic() - started
                break
        elapsed = time.monotonic() - started
        stop.set()
        for player in crowd:
            player.join(35)
        text = requests.get(f"{server.base}/metrics", timeout=30).text
        log_text = server.log_path.read_text(errors="replace").lower()
    latencies = [x for p in crowd for x in p.latencies]
    return {
        "players": players, "seconds": elapsed, "first_overflow": first_overflow,
        "actions": len(latencies), "errors": sum(p.errors for p in crowd),
        "generated": metric(text, "dungeon_image_requests_total", 'result="generated"'),
        "placeholders": metric(text, "dungeon_image_requests_total", 'result="placeholder"'),
        "overflows": metric(text, "dungeon_image_queue_overflows_total"),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": (statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1
                   else float("nan")),
        "idle_rss": idle["rss_mib"], "peak_rss": peak_rss, "idle_threads": idle["threads"],
        "peak_threads": peak_threads, "opened": fake.stats()["connections"] - opened_before,
        "pool_full": log_text.count(POOL_FULL),
    }


def sweep(label: str, args: argparse.Namespace, settings: dict[str, str], fake: FakeOpenAI,
          workdir: Path) -> None:
    effective = {name: settings.get(name, SETTINGS_BY_NAME[name].default)
                 for name in ("IMAGE_WORKERS", "IMAGE_QUEUE", "IMAGE_HTTP_POOL")}
    workers = int(effective["IMAGE_WORKERS"])
    print(f"\n{label}: " + ", ".join(f"{k}={v}" for k, v in effective.items())
          + f"  (workers x think / image = {workers * args.think_seconds / args.image_seconds:g}"
          " players)")
    print("  players  first overflow   actions  generated  placeholders (overflows)  "
          "action p50/p99 ms  RSS MiB start/peak  threads start/peak  API conns opened  "
          "pool-full warnings")
    last_ok = None
    for players in args.players:
        r = run(players, args, settings, fake, workdir)
        overflow = (f"at {r['first_overflow']:5.1f} s" if r["first_overflow"] is not None
                    else f"none in {r['seconds']:.0f} s")
        print(f"  {players:7}  {overflow:>15}  {r['actions']:8}  {r['generated']:9.0f}  "
              f"{r['placeholders']:12.0f} ({r['overflows']:9.0f})  "
              f"{r['p50_ms']:7.1f} / {r['p99_ms']:7.1f}  "
              f"{r['idle_rss']:8.1f} / {r['peak_rss']:6.1f}  {r['idle_threads']:8} / "
              f"{r['peak_threads']:4}  {r['opened']:16}  {r['pool_full']:18}"
              + (f"  ({r['errors']} failed requests)" if r["errors"] else ""), flush=True)
        if r["first_overflow"] is not None:
            break
        last_ok = players
    print(f"  => {last_ok or 'fewer than ' + str(args.players[0])} players per process "
          f"without an overflow placeholder ({args.image_seconds:g} s images, "
          f"{args.think_seconds:g} s think time)")


class _Count(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1


def bench_pool(workers: int, pools: list[int], bursts: int = 3) -> None:
    """Connections opened by ``bursts`` bursts of ``workers`` concurrent image calls
    through the provider's session, with a pause between bursts."""
    from providers.openai_images import make_session

    print(f"\nHTTP pool: {bursts} bursts of {workers} concurrent calls (0.5 s each) through "
          "providers.openai_images.make_session")
    print("  pool size  connections opened  pool-full warnings")
    with FakeOpenAI(0.5) as fake:
        for pool in pools:
            handler = _Count()
            urllib3_log = logging.getLogger("urllib3.connectionpool")
            urllib3_log.addHandler(handler)
            urllib3_log.propagate = False
            session, opened = make_session(pool), fake.stats()["connections"]
            for _ in range(bursts):
                calls = [threading.Thread(target=session.post, args=(
                    f"{fake.base_url}/images/generations",), kwargs={"json": {}, "timeout": 30})
                    for _ in range(workers)]
                for call in calls:
                    call.start()
                for call in calls:
                    call.join(35)
                time.sleep(0.2)
            session.close()
            urllib3_log.removeHandler(handler)
            print(f"  {pool:9}  {fake.stats()['connections'] - opened:18}  {handler.seen:18}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", default="16,32,64,96,128,160",
                        type=lambda text: sorted(int(x) for x in text.split(",")))
    parser.add_argument("--image-seconds", type=float, default=3.0)
    parser.add_argument("--think-seconds", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="longest run per player count, in seconds (at most 300)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a DUNGEON_ setting for the service (without the prefix)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure the defaults before this benchmark: "
                             + ", ".join(f"{k}={v}" for k, v in OLD_DEFAULTS.items()))
    parser.add_argument("--pool-check", action="store_true",
                        help="also count the connections bursts of IMAGE_WORKERS calls open "
                             "with the old pool (32) and the configured one")
    args = parser.parse_args()
    args.duration = min(args.duration, 300.0)
    settings = dict(item.split("=", 1) for item in args.set)
    with tempfile.TemporaryDirectory(prefix="dungeon-capacity-") as tmp, \
            FakeOpenAI(args.image_seconds) as fake:
        print(f"fake OpenAI at {fake.base_url}, {args.image_seconds:g} s per image; "
              f"players act every {args.think_seconds:g} s; runs end at the first overflow "
              f"or after {args.duration:g} s")
        if args.baseline:
            sweep("old defaults", args, {**settings, **{k: str(v) for k, v in
                                                        OLD_DEFAULTS.items()}}, fake, Path(tmp))
        sweep("measured" if settings else "defaults", args, settings, fake, Path(tmp))
    if args.pool_check:
        from providers.openai_images import pool_size

        config = {**defaults(), **{name: SETTINGS_BY_NAME[name].coerce(value)
                                   for name, value in settings.items()
                                   if name in SETTINGS_BY_NAME}}
        bench_pool(config["IMAGE_WORKERS"], [OLD_DEFAULTS["IMAGE_HTTP_POOL"], pool_size(config)])


if __name__ == "__main__":
    main()
