"""The service under gunicorn: two workers, metrics summed across them, JSON logs."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"left by an earlier run")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DUNGEON_", "OPENAI_"))},
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DUNGEON_BIND": f"127.0.0.1:{port}",
           "DUNGEON_LOAD_ENTRYPOINTS": "false", "DUNGEON_IMAGE_PROVIDERS": "placeholder",
           "DUNGEON_SECRET_KEY": "s" * 40, "DUNGEON_THREADS": "4"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf",
             "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process)
        yield base, metrics_dir, log_path
    finally:
        process.terminate()
        process.wait(20)


def _wait_until_up(base, process):
    deadline = time.monotonic() + 60  # generous: a loaded 2-core machine starts slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited")
        try:
            if requests.get(f"{base}/healthz", timeout=1).ok:
                return
        except requests.RequestException:  # refused, reset or slow: all mean "not yet"
            pass
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def _total(text, route):
    line = next(line for line in text.splitlines()
                if line.startswith("dungeon_http_requests_total{") and f'route="{route}"' in line)
    return float(line.rsplit(" ", 1)[1])


def test_two_workers_report_the_same_totals_on_every_scrape(gunicorn):
    base, metrics_dir, log_path = gunicorn
    assert not (metrics_dir / "counter_99999.db").exists()  # emptied at start
    sent = 0
    # Fresh connections until both workers have served some (each writes its own file).
    while sent < 30 or len(list(metrics_dir.glob("counter_*.db"))) < 2:
        requests.get(f"{base}/healthz", headers={"Connection": "close"}, timeout=5)
        sent += 1
        assert sent < 500, "one worker served everything"
    scrapes = [requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=5).text
               for _ in range(4)]
    # The health checks before the test's own (start-up polling) add a few.
    totals = {_total(text, "/healthz") for text in scrapes}
    assert len(totals) == 1 and totals.pop() >= sent


def test_gunicorn_and_app_log_lines_are_json_with_request_ids(gunicorn):
    base, _, log_path = gunicorn
    requests.get(f"{base}/healthz", headers={"X-Request-ID": "served-1"}, timeout=5)
    time.sleep(0.2)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert {"gunicorn.error", "gunicorn.access", "dungeon.db"} <= {line["logger"]
                                                                    for line in lines}
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert any("rid=served-1" in line["event"] for line in access)
    assert all({"time", "level", "logger", "event"} <= set(line) for line in lines)
