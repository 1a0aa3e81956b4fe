"""A stand-in for OpenAI's image API on loopback, for the serving benchmarks.

``POST /v1/images/generations`` answers after ``--latency`` seconds with a
small PNG in ``b64_json``, as the GPT image models do; each image differs (a
counter in a text chunk), so the image store keeps one per turn as it would
in production.  ``GET /stats`` reports the requests served, the connections
opened (a client whose pool is too small keeps opening new ones) and the most
requests in flight at once.

Run:  python benchmarks/fake_openai.py --port 8081 --latency 3
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def tiny_png(n: int) -> bytes:
    """Return a valid 1x1 PNG whose bytes differ for every ``n``."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80\x40\x20")
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"tEXt", b"n\x00%d" % n)
            + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b""))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = self.connections = self.in_flight = self.max_in_flight = 0

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "connections": self.connections,
                    "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}


def make_server(port: int, latency: float) -> ThreadingHTTPServer:
    stats = Stats()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as api.openai.com offers

        def setup(self):
            super().setup()
            with stats.lock:
                stats.connections += 1

        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/stats":
                self._send(200, stats.snapshot())
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/images/generations":
                self._send(404, {"error": {"message": "not found", "code": "unknown_url"}})
                return
            with stats.lock:
                stats.requests += 1
                n = stats.requests
                stats.in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            try:
                time.sleep(latency)
                self._send(200, {"created": int(time.time()), "output_format": "png",
                                 "data": [{"b64_json": base64.b64encode(tiny_png(n)).decode()}]})
            finally:
                with stats.lock:
                    stats.in_flight -= 1

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # the listen backlog; 5 by default
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a client that went away mid-answer (a benchmark stopping its server)

    server = Server(("127.0.0.1", port), Handler)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=3600,
                        help="stop by itself after this long")
    args = parser.parse_args()
    server = make_server(args.port, args.latency)
    timer = threading.Timer(args.max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()


if __name__ == "__main__":
    main()
