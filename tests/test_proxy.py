"""The service behind nginx with the shipped ops/nginx/dungeon.conf.

Slow clients (headers or a body sent a byte at a time) are held by nginx and
never reach gunicorn, so probes and players keep being answered within a
second. The same slow clients sent straight at gunicorn hold one thread each;
with the default thread count the worker keeps threads to spare for them.
"""

import contextlib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
NGINX = Path("/usr/sbin/nginx")
SHIPPED = ROOT / "ops" / "nginx" / "dungeon.conf"
needs_nginx = pytest.mark.skipif(
    not NGINX.exists(), reason="nginx is not installed (Debian: apt-get install nginx; "
                               ".ci/run installs it)")

SLOW = 64           # slow connections held open at once
ANSWER_BOUND = 1.0  # seconds within which every probe must be answered
HOLD = 3.0          # seconds of probing while the slow connections are held
STARTUP = 60.0      # generous: a loaded 2-core machine starts slowly


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url, process, what):
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {STARTUP:g} s")


def stop(process):
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """The service as deployed behind the proxy: embedded store, default threads."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DUNGEON_", "OPENAI_"))},
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), "DUNGEON_BIND": f"127.0.0.1:{port}",
           "DUNGEON_LOAD_ENTRYPOINTS": "false", "DUNGEON_IMAGE_PROVIDERS": "placeholder",
           "DUNGEON_SECRET_KEY": "s" * 40, "DUNGEON_PROXY_HOPS": "1",
           "DUNGEON_ACCESS_LOG": "/dev/null", "DUNGEON_LOG_LEVEL": "warning"}
    with open(tmp / "gunicorn.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, "gunicorn")
        yield port
    finally:
        stop(process)


def nginx_conf(tmp, listen, upstream):
    """Write the shipped server configuration, and a main file that includes it."""
    lines = SHIPPED.read_text().splitlines(keepends=True)
    for old, new in (("listen 80;", f"listen 127.0.0.1:{listen};"),
                     ("127.0.0.1:8000", f"127.0.0.1:{upstream}"),
                     ("/var/log/nginx/", f"{tmp}/")):
        at = [i for i, line in enumerate(lines)
              if old in line and not line.lstrip().startswith("#")]
        assert len(at) == 1, f"{old!r} should be in one directive of {SHIPPED.name}"
        lines[at[0]] = lines[at[0]].replace(old, new)
    (tmp / "dungeon.conf").write_text("".join(lines))
    # As root, nginx's workers would run as "nobody" and could not write here.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.getuid() == 0 else ""
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp}/{kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(f"""{user}
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
{temp_paths}
    # Test only: the test's requests may say which client address they stand
    # for, so the allow lists can be seen refusing an outside address.
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Test-Client-Address;
    include {tmp}/dungeon.conf;
}}
""")
    return tmp / "nginx.conf"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, gunicorn):
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = nginx_conf(tmp, port, gunicorn)
    checked = subprocess.run([str(NGINX), "-t", "-p", str(tmp), "-c", str(conf),
                              "-e", str(tmp / "error.log")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([str(NGINX), "-p", str(tmp), "-c", str(conf),
                                "-e", str(tmp / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, "nginx")
        yield port, tmp
    finally:
        stop(process)


class SlowClients:
    """Connections that send a request a byte every ``interval`` seconds and never end it.

    ``body=False``: the request line and headers trickle in. ``body=True``: the
    headers arrive whole and announce a body that then trickles in.
    """

    def __init__(self, port, count, body=False, interval=0.5, max_seconds=30.0):
        self.port, self.count, self.body = port, count, body
        self.interval, self.max_seconds = interval, max_seconds
        self.sockets, self.dropped, self.rounds = [], 0, 0
        self.first_drop = None  # monotonic time of the first connection found closed
        self.stopped = threading.Event()

    def __enter__(self):
        if self.body:
            head = (b"POST /api/games HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json"
                    b"\r\nContent-Length: 60000\r\n\r\n")
        else:
            head = b""
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(head or b"G")
            self.sockets.append(sock)
        self.trickle = b"ET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 4000
        if self.body:
            self.trickle = b'{"genre": "' + b"a" * 4000
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.rounds < 3 and time.monotonic() < deadline:  # a few bytes each first
            time.sleep(0.05)
        return self

    def _feed(self):
        ends = time.monotonic() + self.max_seconds  # stops by itself, whatever happens
        i = 0
        while not self.stopped.wait(self.interval) and time.monotonic() < ends:
            byte = self.trickle[i % len(self.trickle):][:1]
            for sock in list(self.sockets):
                try:
                    sock.send(byte)
                except OSError:
                    self.sockets.remove(sock)
                    self.dropped += 1
                    self.first_drop = self.first_drop or time.monotonic()
            i += 1
            self.rounds += 1

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def new_game(base):
    token = requests.post(f"{base}/api/auth/guest", timeout=10).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    answer = requests.post(f"{base}/api/games", headers=auth, timeout=10,
                           json={"genre": "horror", "style": "comic"})
    assert answer.status_code == 201, answer.text
    return f"{base}/api/games/{answer.json()['game']['id']}", auth


def probe_while_held(base, slow):
    """Probe /healthz and a game GET for HOLD seconds; return every answer's latency."""
    game_url, auth = new_game(base)
    rounds_at_start = slow.rounds
    latencies = {"healthz": [], "game": []}
    ends = time.monotonic() + HOLD
    with requests.Session() as http:
        while time.monotonic() < ends:
            for name, url, headers in (("healthz", f"{base}/healthz", {}),
                                       ("game", game_url, auth)):
                started = time.perf_counter()
                answer = http.get(url, headers=headers, timeout=10)
                latencies[name].append(time.perf_counter() - started)
                assert answer.status_code == 200, (name, answer.status_code, answer.text)
            time.sleep(0.1)
    assert slow.rounds > rounds_at_start, "the slow clients were not fed during the probes"
    return latencies


@needs_nginx
def test_slow_clients_behind_nginx_leave_probes_and_players_answered(proxy):
    port, _ = proxy
    with SlowClients(port, SLOW) as headers, SlowClients(port, SLOW, body=True) as bodies:
        latencies = probe_while_held(f"http://127.0.0.1:{port}", headers)
        probes_ended = time.monotonic()
        # Held open throughout the probes. nginx cuts a slow-header client
        # after client_header_timeout (10 s), which a very slow machine might
        # reach just after them; a slow body never idles that long.
        assert headers.first_drop is None or headers.first_drop > probes_ended
        assert bodies.dropped == 0
    for name, seen in latencies.items():
        assert len(seen) >= 3, name
        assert max(seen) < ANSWER_BOUND, (name, sorted(seen)[-3:])


def test_slow_clients_straight_at_gunicorn_leave_threads_to_spare(gunicorn):
    # Without a proxy each slow connection holds a gthread thread; the default
    # thread count keeps more than SLOW threads (docs/serving.md). A client
    # could still open more: the proxy is what stops them.
    with SlowClients(gunicorn, SLOW) as slow:
        latencies = probe_while_held(f"http://127.0.0.1:{gunicorn}", slow)
        assert slow.dropped == 0
    for name, seen in latencies.items():
        assert max(seen) < ANSWER_BOUND, (name, sorted(seen)[-3:])


@needs_nginx
def test_internal_endpoints_answer_only_internal_addresses(proxy):
    port, _ = proxy
    base = f"http://127.0.0.1:{port}"
    for path in ("/metrics", "/healthz", "/readyz"):
        for inside in ("127.0.0.1", "10.1.2.3", "172.20.0.9", "192.168.4.5"):
            answer = requests.get(f"{base}{path}", timeout=10,
                                  headers={"X-Test-Client-Address": inside})
            assert answer.status_code in (200, 503), (path, inside, answer.status_code)
        for outside in ("203.0.113.7", "8.8.8.8", "172.32.0.1"):
            answer = requests.get(f"{base}{path}", timeout=10,
                                  headers={"X-Test-Client-Address": outside})
            assert answer.status_code == 403, (path, outside)
            assert answer.json()["error"]["code"] == "forbidden"
    catalog = requests.get(f"{base}/api/catalog", timeout=10,
                           headers={"X-Test-Client-Address": "203.0.113.7"})
    assert catalog.status_code == 200  # the game API is public


@needs_nginx
def test_request_ids_and_body_limit(proxy):
    port, tmp = proxy
    base = f"http://127.0.0.1:{port}"
    mine = requests.get(f"{base}/api/catalog", headers={"X-Request-ID": "client-1"}, timeout=10)
    assert mine.headers["X-Request-ID"] == "client-1"
    made = requests.get(f"{base}/api/catalog", timeout=10).headers["X-Request-ID"]
    # The body limit is DUNGEON_MAX_CONTENT_LENGTH's 64 KiB, answered in the app's shape.
    _, auth = new_game(base)
    big = requests.post(f"{base}/api/games", headers={**auth, "Content-Type": "application/json"},
                        data=b'{"genre": "' + b"a" * 65536 + b'"}', timeout=10)
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "request_entity_too_large"
    assert big.json()["request_id"] == big.headers["X-Request-ID"]
    deadline = time.monotonic() + 10
    while True:  # nginx writes its log line once the answer is sent
        logged = [json.loads(line) for line in (tmp / "dungeon.access.log").read_text()
                  .splitlines() if line.strip()]
        ids = {line["request_id"] for line in logged}
        if {"client-1", made} <= ids or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {"client-1", made} <= ids  # nginx's id is the one the app used
