"""gunicorn settings for the dungeon service; every value can be overridden by environment.

Imported by gunicorn before any worker exists, so it reads only the
environment and imports nothing of the application.
"""

from __future__ import annotations

import os


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


wsgi_app = _env("DUNGEON_WSGI_APP", "dungeon:create_app()")
bind = _env("DUNGEON_BIND", "127.0.0.1:8000")

# gthread: image calls wait 10-70 s on the network; threads cover those waits
# without monkey-patching, and in gthread ``timeout`` is a heartbeat, not a
# request limit.
worker_class = "gthread"
threads = int(_env("DUNGEON_THREADS", "16"))
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
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1")
