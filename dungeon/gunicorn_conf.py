"""gunicorn settings for the dungeon service; every value can be overridden by environment.

gunicorn imports this before any worker exists.  Its first statements set
``PROMETHEUS_MULTIPROC_DIR``: prometheus_client picks its way of storing
values when it is first imported, and workers inherit that choice, so the
variable must be set before anything imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_METRICS_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "dungeon-metrics"))

from dungeon.logs import ACCESS_LOG_FORMAT, gunicorn_logconfig  # noqa: E402 - after the variable above


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


wsgi_app = _env("DUNGEON_WSGI_APP", "dungeon:create_app()")
bind = _env("DUNGEON_BIND", "127.0.0.1:8000")

# gthread: image calls wait 10-70 s on the network; threads cover those waits
# without monkey-patching, and in gthread ``timeout`` is a heartbeat, not a
# request limit.
worker_class = "gthread"
# A request holds its thread until it is answered, and a ?wait=image request
# holds it for up to 125 s: threads are sized for waiting requests, not for
# cores. benchmarks/serving.py (docs/serving.md): with 64 such waits held, 16
# threads stopped answering /healthz, 128 answered it within milliseconds;
# throughput and memory were the same at 16 and 128 (threads start only when
# used). Slow clients are nginx's to hold (ops/nginx/dungeon.conf), not ours.
threads = int(_env("DUNGEON_THREADS", "128"))
# The embedded store lives in one process's memory: a second worker would see
# other games, so without a MongoDB URI there is exactly one worker.
_default_workers = "2" if os.environ.get("DUNGEON_MONGO_URI") else "1"
workers = int(_env("DUNGEON_WORKERS", _default_workers))
if not os.environ.get("DUNGEON_MONGO_URI"):
    workers = 1

timeout = int(_env("DUNGEON_WORKER_TIMEOUT", "60"))
# Longer than the longest image request (IMAGE_DEADLINE, 120 s by default), so
# a deploy lets in-flight turns finish instead of cutting them off.
graceful_timeout = int(_env("DUNGEON_GRACEFUL_TIMEOUT", "150"))
# Above a load balancer's idle timeout (60 s on AWS ALB, for one), so the
# balancer closes idle connections first and never sends into a closed one.
keepalive = int(_env("DUNGEON_KEEPALIVE", "75"))
# Recycled workers leave metric files behind; enable only against a leak.
max_requests = int(_env("DUNGEON_MAX_REQUESTS", "0"))
preload_app = False  # each worker opens its own MongoDB connections after the fork
control_socket_disable = True
accesslog = _env("DUNGEON_ACCESS_LOG", "-")
# Secrets in query strings are masked before a line is written (dungeon/logs.py).
access_log_format = ACCESS_LOG_FORMAT
logconfig_dict = gunicorn_logconfig(_env("DUNGEON_LOG_FORMAT", "json"))
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """Start with an empty metrics directory: files of an earlier run would be summed in."""
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    os.makedirs(_METRICS_DIR, exist_ok=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges; its counters stay, so totals never go back."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
