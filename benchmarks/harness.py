"""What the serving benchmarks share: gunicorn on a free loopback port, the fake
OpenAI image server, a worker's memory and threads from /proc, and wrk.

Every server here listens on 127.0.0.1 only and is stopped when its ``with``
block ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    """Return once ``url`` answers 200; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:g} s")


def stop(process: subprocess.Popen, grace: float = 5) -> None:
    """Stop ``process`` and its children; SIGKILL after ``grace`` seconds.

    A gunicorn worker finishes its queued turn images before it exits, which
    would make each benchmark round wait for a whole queue of fake images.
    """
    children = {pid: _cmdline(pid) for pid in child_pids(process.pid)}
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    for pid, cmdline in children.items():
        if cmdline and _cmdline(pid) == cmdline:  # still the same process, not a reused id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Gunicorn:
    """The service under gunicorn, one worker on the embedded store, on a free port.

    ``settings`` are ``DUNGEON_*`` variables (without the prefix) or, when
    they start with ``OPENAI_``, OpenAI's own; ``args`` go to gunicorn's
    command line (``-k gevent``, say), which beats the configuration file.
    Per-user request limits are off unless given: a benchmark measures the
    service, not its limits.
    """

    def __init__(self, log_path: Path, settings: dict[str, Any] | None = None,
                 args: tuple[str, ...] = ()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DUNGEON_", "OPENAI_"))}
        env.update({"DUNGEON_BIND": f"127.0.0.1:{self.port}", "DUNGEON_LOAD_ENTRYPOINTS": "false",
                    "DUNGEON_ACCESS_LOG": "/dev/null", "DUNGEON_LOG_LEVEL": "warning",
                    "DUNGEON_SECRET_KEY": "b" * 40, "DUNGEON_NARRATOR": "local",
                    "DUNGEON_IMAGE_PROVIDERS": "placeholder",
                    "PROMETHEUS_MULTIPROC_DIR": str(self.log_path.parent / f"metrics-{self.port}"),
                    **{f"DUNGEON_RATE_LIMIT_{scope}": ""
                       for scope in ("GUESTS", "GAMES", "ACTIONS", "IMAGES")}})
        for name, value in (settings or {}).items():
            key = name if name.startswith("OPENAI_") else f"DUNGEON_{name}"
            env[key] = str(value)
        self.env, self.args = env, tuple(args)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf",
                 *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(f"{self.base}/healthz", self.process)
        except BaseException:
            stop(self.process)
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def worker_pid(self) -> int:
        children = child_pids(self.process.pid)
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {children}")
        return children[0]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


class FakeOpenAI:
    """``benchmarks/fake_openai.py`` in its own process (its threads stay off the
    service's and the clients' interpreter)."""

    def __init__(self, latency: float):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.latency = latency

    def __enter__(self) -> FakeOpenAI:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "fake_openai.py"), "--port",
             str(self.port), "--latency", str(self.latency), "--max-seconds", "1800"])
        wait_until_up(f"http://127.0.0.1:{self.port}/stats", self.process)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def stats(self) -> dict[str, int]:
        return requests.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; ppid follows it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """Return a process's resident memory now and at its peak (MiB) and its threads."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
            "hwm_mib": int(fields["VmHWM"].split()[0]) / 1024,
            "threads": int(fields["Threads"])}


def new_game(base: str, session: requests.Session | None = None,
             timeout: float = 30) -> tuple[str, dict[str, str]]:
    """Create a guest and a game; return the game's URL and the guest's headers."""
    http = session or requests
    token = http.post(f"{base}/api/auth/guest", timeout=timeout).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    game = http.post(f"{base}/api/games", headers=auth, timeout=timeout,
                     json={"genre": "fantasy", "style": "comic"})
    game.raise_for_status()
    return f"{base}/api/games/{game.json()['game']['id']}", auth


def wrk(url: str, headers: dict[str, str], seconds: float, connections: int) -> dict[str, float]:
    """Return requests/s and latency percentiles (ms) from one wrk run (Debian's ``wrk``)."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"errors during the run:\n{output}")

    def millis(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", output)
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50_ms": millis("50"), "p99_ms": millis("99")}


class SlowClients:
    """``count`` connections that send a request a byte every ``interval`` seconds and
    never finish it (a slow-header client); they stop by themselves after ``max_seconds``."""

    def __init__(self, port: int, count: int, interval: float = 0.5, max_seconds: float = 120):
        self.port, self.count, self.interval, self.max_seconds = port, count, interval, max_seconds
        self.sockets: list[socket.socket] = []
        self.rounds = self.dropped = 0
        self.stopped = threading.Event()

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(b"G")
            self.sockets.append(sock)
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.rounds < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def _feed(self) -> None:
        trickle = b"ET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 100_000
        ends, i = time.monotonic() + self.max_seconds, 0
        while not self.stopped.wait(self.interval) and time.monotonic() < ends:
            for sock in list(self.sockets):
                try:
                    sock.send(trickle[i:i + 1])
                except OSError:
                    self.sockets.remove(sock)
                    self.dropped += 1
            i, self.rounds = i + 1, self.rounds + 1

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


NGINX = Path("/usr/sbin/nginx")


class Nginx:
    """Debian's nginx with the shipped ops/nginx/dungeon.conf in front of ``upstream_port``
    (only its listen port, upstream address and log directory replaced)."""

    def __init__(self, workdir: Path, upstream_port: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = Path(workdir) / f"nginx-{self.port}"
        self.dir.mkdir(parents=True)
        lines = (ROOT / "ops" / "nginx" / "dungeon.conf").read_text().splitlines(keepends=True)
        for old, new in (("listen 80;", f"listen 127.0.0.1:{self.port};"),
                         ("127.0.0.1:8000", f"127.0.0.1:{upstream_port}"),
                         ("/var/log/nginx/", f"{self.dir}/")):
            at = [i for i, line in enumerate(lines)
                  if old in line and not line.lstrip().startswith("#")]
            lines[at[0]] = lines[at[0]].replace(old, new)
        (self.dir / "dungeon.conf").write_text("".join(lines))
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.getuid() == 0 else ""
        temp = "\n".join(f"    {kind}_temp_path {self.dir}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.dir / "nginx.conf").write_text(
            f"{user}\nworker_processes 1;\ndaemon off;\nmaster_process on;\n"
            f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log warn;\n"
            f"events {{ worker_connections 4096; }}\n"
            f"http {{\n{temp}\n    include {self.dir}/dungeon.conf;\n}}\n")

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
             "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(f"{self.base}/healthz", self.process)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)
