"""The service behind nginx with the shipped ops/nginx/dungeon.conf.

Slow clients (headers or a body sent a byte at a time) are held by nginx and
never reach gunicorn, so probes and players keep being answered within a
second. The same slow clients sent straight at gunicorn hold one thread each;
with the default thread count the worker keeps threads to spare for them.

Requests that wait on purpose (``?wait=image`` on an image that is not made
during the test) do reach gunicorn, through nginx or not: at most
``WAIT_LIMIT`` of them hold a thread (``WAITS_PER_CLIENT`` of one address),
the others are answered at once with the image pending, and probes and
players are answered within a second while they are held.
"""

import contextlib
import json
import os
import pwd
import re
import selectors
import signal
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
WAITERS = 64        # ?wait=image requests held open at once
WAIT_LIMIT = 32     # DUNGEON_WAIT_LIMIT's default: waits one process holds at once
WAITS_PER_CLIENT = 4   # DUNGEON_WAITS_PER_CLIENT's default: of one address, at once
WAITS_PER_MINUTE = 60  # DUNGEON_RATE_LIMIT_WAITS's default, per client address
IMAGE_SECONDS = 600.0  # the fake OpenAI's answer time: never within a test


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
    """Stop ``process``, then whatever of its process group is left (a gunicorn worker)."""
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # started with start_new_session: its own group


@contextlib.contextmanager
def serving(tmp, **settings):
    """The service under gunicorn on a free port, embedded store, default threads.

    ``settings`` are environment variables on top of the defaults below.
    """
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DUNGEON_", "OPENAI_"))},
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), "DUNGEON_BIND": f"127.0.0.1:{port}",
           "DUNGEON_LOAD_ENTRYPOINTS": "false", "DUNGEON_IMAGE_PROVIDERS": "placeholder",
           "DUNGEON_SECRET_KEY": "s" * 40, "DUNGEON_PROXY_HOPS": "1",
           "DUNGEON_ACCESS_LOG": "/dev/null", "DUNGEON_LOG_LEVEL": "warning", **settings}
    with open(tmp / "gunicorn.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, "gunicorn")
        yield port
    finally:
        stop(process)


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """The service as deployed behind the proxy: embedded store, default threads."""
    with serving(tmp_path_factory.mktemp("gunicorn")) as port:
        yield port


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


@contextlib.contextmanager
def proxying(tmp, upstream):
    """nginx with the shipped configuration in front of ``upstream``, on a free port."""
    port = free_port()
    conf = nginx_conf(tmp, port, upstream)
    checked = subprocess.run([str(NGINX), "-t", "-p", str(tmp), "-c", str(conf),
                              "-e", str(tmp / "error.log")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([str(NGINX), "-p", str(tmp), "-c", str(conf),
                                "-e", str(tmp / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, "nginx")
        yield port
    finally:
        stop(process)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, gunicorn):
    tmp = tmp_path_factory.mktemp("nginx")
    with proxying(tmp, gunicorn) as port:
        yield port, tmp


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
    latencies = probe(base, game_url, auth)
    assert slow.rounds > rounds_at_start, "the slow clients were not fed during the probes"
    return latencies


def probe(base, game_url, auth):
    """Probe /healthz and ``game_url`` for HOLD seconds; return every answer's latency."""
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


# --- requests that wait on purpose -------------------------------------------------------

@pytest.fixture(scope="module")
def slow_openai():
    """benchmarks/fake_openai.py answering images only after IMAGE_SECONDS: waits really hold."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "fake_openai.py"), "--port", str(port),
         "--latency", str(IMAGE_SECONDS), "--max-seconds", "300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/stats", process, "the fake OpenAI server")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


@contextlib.contextmanager
def waiting_service(tmp, openai_url, **settings):
    """The service with gpt-image-2 pointed at the slow fake, so every image stays pending."""
    with serving(tmp, DUNGEON_IMAGE_PROVIDERS="gpt-image-2,placeholder",
                 OPENAI_API_KEY="sk-test-never-used-elsewhere", OPENAI_BASE_URL=openai_url,
                 DUNGEON_NARRATOR="local",
                 # Held waits end only with the worker: stop it soon after the test.
                 DUNGEON_GRACEFUL_TIMEOUT="2", **settings) as port:
        yield port


class Waiters:
    """``count`` keep-alive connections, each sending one whole ``GET path`` and then waiting.

    A thread collects each answer's status (None: closed without one) as it
    arrives and then closes that connection, as a client does once it has
    its answer; it stops by itself after ``max_seconds``. Leaving the block
    closes every connection, answered or still held.
    """

    def __init__(self, port, path, count, max_seconds=60.0):
        self.port, self.path, self.count, self.max_seconds = port, path, count, max_seconds
        self.sockets, self.answers = [], {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.selector = selectors.DefaultSelector()

    def __enter__(self):
        request = f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        try:
            for i in range(self.count):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sockets.append(sock)
                sock.sendall(request)
                sock.setblocking(False)
                self.selector.register(sock, selectors.EVENT_READ, i)
        except BaseException:
            self._close()
            raise
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()
        return self

    def _collect(self):
        ends = time.monotonic() + self.max_seconds
        received = {}
        while not self.stopped.is_set() and time.monotonic() < ends and self.selector.get_map():
            for key, _ in self.selector.select(timeout=0.05):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                received[key.data] = received.get(key.data, b"") + data
                if b"\r\n" in received[key.data] or not data:
                    line = received[key.data].split(b"\r\n", 1)[0]
                    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)
                    with self.lock:
                        self.answers[key.data] = int(status.group(1)) if status else None
                    self.selector.unregister(key.fileobj)
                    # A client that keeps a connection the server is closing
                    # holds gunicorn's event loop for a while (docs/serving.md).
                    key.fileobj.close()

    def statuses(self):
        """Return the statuses answered so far."""
        with self.lock:
            return list(self.answers.values())

    def held(self):
        """Return how many connections have no answer yet."""
        with self.lock:
            return self.count - len(self.answers)

    def wait_for_answers(self, at_least, seconds):
        deadline = time.monotonic() + seconds
        while len(self.statuses()) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.statuses()

    def _close(self):
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.selector.close()

    def __exit__(self, *exc):
        self.stopped.set()
        if hasattr(self, "thread"):
            self.thread.join(5)
        self._close()


def declined(port):
    """Return the waits the service answered at once, by reason (its /metrics, loopback)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {reason: float(count) for reason, count in re.findall(
        r'^dungeon_image_waits_declined_total\{reason="(\w+)"\} ([\d.e+]+)$', text, re.M)}


def pending_game(base):
    """Create a game whose opening image is pending; return its URL, auth and image slot."""
    game_url, auth = new_game(base)
    turns = requests.get(game_url, headers=auth, timeout=10).json()["turns"]
    image = turns[0]["image"]
    assert image["status"] == "pending", image
    return game_url, auth, image["id"]


@contextlib.contextmanager
def held_waiters(port, slot, service_port, held_at_most):
    """Open WAITERS waits on ``slot`` through ``port``; enter once those not held answered.

    ``held_at_most`` is what the service's limits let one address hold.
    """
    with Waiters(port, f"/api/images/{slot}?wait=image", WAITERS) as waiters:
        # Past the limits a wait is answered at once; "at once" on a loaded
        # machine gets a generous bound, the probes are what must be quick.
        statuses = waiters.wait_for_answers(WAITERS - held_at_most, 20)
        assert len(statuses) >= WAITERS - held_at_most, (statuses, declined(service_port))
        assert set(statuses) <= {200, 202}, statuses
        assert statuses.count(202) >= WAITERS - held_at_most  # the image is still pending
        yield waiters


def check_waiters_after_probes(waiters, service_port, held_at_most):
    """Check what the design promises of the waits; return the answered-at-once reasons."""
    # No wait ended in an error or a dropped connection; the rest still hold.
    statuses = waiters.statuses()
    assert set(statuses) <= {200, 202}, statuses
    assert 1 <= waiters.held() <= held_at_most, (waiters.held(), statuses)
    reasons = declined(service_port)
    assert sum(reasons.values()) == len(statuses), reasons  # each answered at once, by a reason
    return reasons


@needs_nginx
def test_held_waits_behind_nginx_leave_probes_and_players_answered(tmp_path, slow_openai):
    # No per-address limits on waits: all 64 reach the process's WAIT_LIMIT.
    with waiting_service(tmp_path, slow_openai, DUNGEON_RATE_LIMIT_WAITS="",
                         DUNGEON_WAITS_PER_CLIENT=str(WAITERS)) as app_port, \
            proxying(tmp_path, app_port) as port:
        base = f"http://127.0.0.1:{port}"
        game_url, auth, slot = pending_game(base)
        with held_waiters(port, slot, app_port, WAIT_LIMIT) as waiters, \
                SlowClients(port, SLOW) as slow:
            rounds_at_start = slow.rounds
            latencies = probe(base, game_url, auth)  # the game whose image is waited on
            probes_ended = time.monotonic()
            assert slow.rounds > rounds_at_start, "the slow clients were not fed during the probes"
            # nginx cuts a slow-header client after client_header_timeout (10 s).
            assert slow.first_drop is None or slow.first_drop > probes_ended
            reasons = check_waiters_after_probes(waiters, app_port, WAIT_LIMIT)
    assert set(reasons) == {"busy"} and reasons["busy"] >= WAITERS - WAIT_LIMIT, reasons
    for name, seen in latencies.items():
        assert len(seen) >= 3, name
        assert max(seen) < ANSWER_BOUND, (name, sorted(seen)[-3:])


def test_held_waits_straight_at_gunicorn_leave_probes_and_players_answered(tmp_path,
                                                                           slow_openai):
    # The default per-address limits: past 60 a minute the rate limit answers
    # at once, and one address holds at most WAITS_PER_CLIENT waits.
    with waiting_service(tmp_path, slow_openai, DUNGEON_PROXY_HOPS="0") as port:
        base = f"http://127.0.0.1:{port}"
        game_url, auth, slot = pending_game(base)
        with held_waiters(port, slot, port, WAITS_PER_CLIENT) as waiters:
            latencies = probe(base, game_url, auth)
            reasons = check_waiters_after_probes(waiters, port, WAITS_PER_CLIENT)
    assert 1 <= reasons.get("rate_limited", 0) <= WAITERS - WAITS_PER_MINUTE, reasons
    assert reasons.get("client_busy", 0) >= 1, reasons
    for name, seen in latencies.items():
        assert len(seen) >= 3, name
        assert max(seen) < ANSWER_BOUND, (name, sorted(seen)[-3:])
