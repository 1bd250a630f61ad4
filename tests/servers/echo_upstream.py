#!/usr/bin/env python3
"""Echo upstream: answers any method and path with an OpenAI-style chat completion that also
describes the request it received (method, path, lowercased headers, body sha256 and length).

    python tests/servers/echo_upstream.py --host 127.0.0.1 --port 8080 [--name openai]

With a name, the answer says which upstream it is (`"upstream": <name>` and an
`x-echo-upstream` response header): deploy/examples/model-routing.yaml runs two of them.

`EchoServer` is importable; the e2e tests read `requests` (everything received, in order) to
check what the filter let through.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of concurrent connections from
    # Envoy would overflow it and show up as upstream connect timeouts.
    request_queue_size = 256


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, name: str | None = None) -> None:
        self.host = host
        self.name = name
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._httpd = _Server((host, port), _Handler)
        self._httpd.echo = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> "EchoServer":
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"echo-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "EchoServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return list(self._requests)

    def requests_with_header(self, name: str, value: str) -> list[dict]:
        """Received requests carrying header `name: value` (tests tag requests with an id)."""
        name = name.lower()
        return [r for r in self.requests if r["headers"].get(name) == value]


class _Handler(BaseHTTPRequestHandler):
    # Headers and body are separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "echo-upstream/1"

    def log_message(self, fmt: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            sys.stderr.write("echo-upstream: " + (fmt % args) + "\n")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after the chunk
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        echo = {
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
        }
        self.server.echo._record(echo)  # type: ignore[attr-defined]
        payload = {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "model": "echo",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "echo"}, "finish_reason": "stop"}
            ],
            "echo": echo,
        }
        name = self.server.echo.name  # type: ignore[attr-defined]
        if name:
            payload["upstream"] = name
        out = json.dumps(payload).encode()
        self.send_response(200)
        if name:
            self.send_header("x-echo-upstream", name)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-style echo upstream for the llm-jwt-auth demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", help="say which upstream this is in every answer")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    server = EchoServer(args.host, args.port, args.name)
    server._httpd.verbose = args.verbose  # type: ignore[attr-defined]
    server.start()
    print(f"echo-upstream: listening on {server.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
