"""Image chain benchmarks; figures go to docs/benchmarks.md.

(a) Overhead of the chain per image request, with an instant in-process
    provider, beside calling that provider directly.
(b) With the first provider refusing connections (an OpenAI provider pointed
    at a closed local port), requests per second through the chain before and
    after its breaker opens, beside the second provider alone.

Run:  python benchmarks/image_chain.py [--requests N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dungeon.db import embedded_client  # noqa: E402
from dungeon.images.service import ImageService  # noqa: E402
from dungeon.images.store import GridFSImageStore, image_id_for  # noqa: E402
from dungeon.images.types import GeneratedImage, ImageRequest  # noqa: E402
from dungeon.metrics import Metrics  # noqa: E402
from dungeon.settings import defaults  # noqa: E402
from providers.openai_images import OpenAIImageProvider, make_session  # noqa: E402
from providers.openai_models import MODELS  # noqa: E402
from providers.placeholder import PlaceholderProvider  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + bytes(4096)
REQUEST = ImageRequest("A ruined tower at dusk, crows circling", "fantasy", "painterly")


class InstantProvider:
    name, model = "instant", "instant-1"

    def generate(self, request, timeout):
        return GeneratedImage(data=PNG)


class NullStore:
    """Keeps nothing: isolates the chain from storage cost."""

    def put(self, data, content_type):
        return image_id_for(data)

    def get(self, image_id):
        return None


def service(providers, order, store=None, **config):
    settings = {**defaults(), "IMAGE_PROVIDERS": order, **config}
    chain = {p.name: p for p in providers}
    chain["placeholder"] = PlaceholderProvider()
    return ImageService(chain, settings, store or NullStore(), Metrics(), sleep=lambda s: None)


def per_call_us(fn, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples), statistics.quantiles(samples, n=100)[98]


def bench_overhead(n):
    provider = InstantProvider()
    direct = per_call_us(lambda: provider.generate(REQUEST, 1), n)
    svc = service([provider], ["instant"])
    svc.generate(REQUEST)  # warm-up
    chain = per_call_us(lambda: svc.generate(REQUEST), n)
    stored = service([provider], ["instant"],
                     store=GridFSImageStore(embedded_client()["bench"]))
    with_store = per_call_us(lambda: stored.generate(REQUEST), n)
    print(f"(a) {n} requests, median / p99 per request")
    print(f"    provider called directly      {direct[0]:8.1f} us / {direct[1]:8.1f} us")
    print(f"    through the chain (no store)  {chain[0]:8.1f} us / {chain[1]:8.1f} us"
          f"   added at median: {(chain[0] - direct[0]) / 1000:.3f} ms")
    print(f"    through the chain + GridFS    {with_store[0]:8.1f} us / {with_store[1]:8.1f} us"
          "   (embedded in-memory store)")


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: connections are refused


def rps(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def bench_breaker(n):
    row = next(r for r in MODELS if r["model"] == "gpt-image-2")
    config = {**defaults(), "OPENAI_API_KEY": "sk-bench",
              "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1"}
    refused = OpenAIImageProvider(row, config, make_session())
    second = InstantProvider()
    # Before: a threshold never reached, so every request pays 3 refused
    # connections (1 try + 2 retries) before the second provider answers.
    closed = service([refused, second], ["gpt-image-2", "instant"],
                     BREAKER_FAILURE_THRESHOLD=10**9)
    attempts_before = max(50, n // 20)
    before = rps(lambda: closed.generate(REQUEST), attempts_before)
    svc = service([refused, second], ["gpt-image-2", "instant"],
                  BREAKER_FAILURE_THRESHOLD=3, BREAKER_RESET_SECONDS=3600)
    svc.generate(REQUEST)  # three refused connections open the breaker
    assert svc.breakers["gpt-image-2"].state == "open"
    alone = service([second], ["instant"])
    # Alternate the two in rounds, so that machine noise falls on both alike.
    rounds, block = 10, max(1, n // 10)
    afters, baselines = [], []
    for _ in range(rounds):
        afters.append(rps(lambda: svc.generate(REQUEST), block))
        baselines.append(rps(lambda: alone.generate(REQUEST), block))
    after, baseline = statistics.median(afters), statistics.median(baselines)
    ratio = statistics.median(a / b for a, b in zip(afters, baselines, strict=True))
    print("(b) first provider refusing connections (retries 2, backoff sleeps skipped)")
    print(f"    before its breaker opens  {before:10.0f} req/s  ({attempts_before} requests)")
    print(f"    after its breaker opens   {after:10.0f} req/s  (median of {rounds} rounds"
          f" of {block})")
    print(f"    second provider alone     {baseline:10.0f} req/s  (alternating rounds)")
    print(f"    after-open / alone, median of the rounds' ratios: {ratio:.2f}")


def quiet_json_logs():
    """Log at INFO through the service's JSON formatter, into /dev/null: production's cost."""
    import logging
    import os

    from dungeon import logs

    logs.configure("INFO")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == logs.HANDLER_NAME)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    quiet_json_logs()
    bench_overhead(args.requests)
    bench_breaker(args.requests)


if __name__ == "__main__":
    main()
