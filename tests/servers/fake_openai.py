#!/usr/bin/env python3
"""Fake OpenAI-compatible backend: enough of the API for the official `openai` SDK to parse.

    python tests/servers/fake_openai.py --host 127.0.0.1 --port 8081

Endpoints
  POST /v1/chat/completions   a `chat.completion` whose content is `echo: <last user message>`;
                              with `"stream": true` Server-Sent Events: `data: <chat.completion.chunk>`
                              per event (role, one per word of `STREAM_PIECES`, finish_reason),
                              a usage chunk (`choices: []`) when `stream_options.include_usage`,
                              then `data: [DONE]`; HTTP/1.1 chunked, one HTTP chunk per event
  POST /v1/embeddings         one `embedding` per input (`vector(text, dimensions)`), as floats or,
                              with `encoding_format: base64` (what the SDK asks for by default),
                              little-endian float32 in base64
  GET  /v1/models             a `list` of `model` objects (`MODELS`)
  anything else               404 in OpenAI's error shape

`FakeOpenAI` is importable (the LoopbackServer lifecycle: bind / start / stop on the same port).
It records every request (method, path, lowercased headers, the body bytes exactly as
received); `received(test_id)` is the requests tagged `x-test-id: <test_id>`. `lockstep(test_id)`
holds that request's stream after every event until the test calls `gate.ack()` (so a test can
prove the events reach the client one by one: a proxy that buffered the answer would leave
the backend waiting, which the gate records as `stalled`).
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback_server import LoopbackServer, TrackingHTTPServer  # noqa: E402

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
STREAM_PIECES = ("Hello", " from", " the", " fake", " backend")
CREATED = 1_700_000_000
DEFAULT_DIMENSIONS = 4


def vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The embedding of `text`: eighths, so float32 (base64) and JSON carry them exactly."""
    seed = sum(text.encode()) % 64
    return [((seed + 3 * j) % 64) / 8 - 4 for j in range(dimensions)]


def usage_for(prompt: str, completion: str) -> dict:
    p, c = len(prompt.split()), len(completion.split())
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class StreamGate:
    """Lockstep for one streamed answer: after each event the backend waits for `ack()`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._acks = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.sent: list[tuple[str, float]] = []  # (event data, time.monotonic() written)
        self.stalled: list[int] = []  # events after which no ack came within `timeout`
        self.finished = threading.Event()  # [DONE] written and the chunked body terminated

    def ack(self) -> None:
        self._acks.release()

    def _wait(self, index: int) -> None:
        if not self._acks.acquire(timeout=self.timeout):
            with self._lock:
                self.stalled.append(index)


class FakeOpenAI(LoopbackServer):
    owner_attr = "backend"
    thread_name = "fake-openai"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, models: tuple[str, ...] = MODELS) -> None:
        super().__init__(TrackingHTTPServer, _Handler, host, port)
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._gates: dict[str, StreamGate] = {}
        self.verbose = False

    # what was received --------------------------------------------------------------------

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return list(self._requests)

    def received(self, test_id: str) -> list[dict]:
        """The requests tagged `x-test-id: <test_id>`, in arrival order."""
        return [r for r in self.requests if r["headers"].get("x-test-id") == test_id]

    # streaming control --------------------------------------------------------------------

    def lockstep(self, test_id: str, timeout: float = 3.0) -> StreamGate:
        gate = StreamGate(timeout)
        with self._lock:
            self._gates[test_id] = gate
        return gate

    def _gate(self, test_id: str | None) -> StreamGate | None:
        with self._lock:
            return self._gates.get(test_id or "")

    @property
    def url(self) -> str:
        return self.base_url


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1"

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.backend.verbose:
            sys.stderr.write("fake-openai: " + (fmt % args) + "\n")

    @property
    def backend(self) -> FakeOpenAI:
        return self.server.backend  # type: ignore[attr-defined]

    # plumbing -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: Any, extra: Mapping[str, str] | None = None) -> None:
        out = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)

    def _error(self, status: int, message: str, err_type: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": err_type, "param": None, "code": None}})

    def _handle(self) -> None:
        body = self._read_body()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.backend._record({"method": self.command, "path": self.path, "headers": headers, "body": body,
                              "time": time.monotonic()})
        path = self.path.split("?", 1)[0]
        route = {("POST", "/v1/chat/completions"): self._chat, ("POST", "/v1/embeddings"): self._embeddings,
                 ("GET", "/v1/models"): self._models}.get((self.command, path))
        if route is None:
            self._error(404, f"Unknown request URL: {self.command} {path}.")
            return
        if self.command == "POST":
            try:
                request = json.loads(body)
            except ValueError:
                self._error(400, "We could not parse the JSON body of your request.")
                return
            if not isinstance(request, dict):
                self._error(400, "The body of your request must be a JSON object.")
                return
            route(request, headers)  # type: ignore[operator]
        else:
            route(headers)  # type: ignore[operator]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # endpoints ----------------------------------------------------------------------------

    def _chat(self, request: dict, headers: Mapping[str, str]) -> None:
        model = request.get("model")
        messages = request.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list):
            self._error(400, "model and messages are required")
            return
        prompt = next((m.get("content") for m in reversed(messages)
                       if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)), "")
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._stream(model, prompt, include_usage, self.backend._gate(headers.get("x-test-id")))
            return
        content = f"echo: {prompt}"
        self._send_json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage_for(prompt, content),
        })

    def _stream(self, model: str, prompt: str, include_usage: bool, gate: StreamGate | None) -> None:
        def chunk(delta: dict, finish: str | None = None) -> dict:
            out: dict[str, Any] = {"id": "chatcmpl-fake-stream", "object": "chat.completion.chunk",
                                   "created": CREATED, "model": model, "system_fingerprint": "fp_fake",
                                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                out["usage"] = None
            return out

        events: list[dict] = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in STREAM_PIECES]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append({"id": "chatcmpl-fake-stream", "object": "chat.completion.chunk", "created": CREATED,
                           "model": model, "system_fingerprint": "fp_fake", "choices": [],
                           "usage": usage_for(prompt, "".join(STREAM_PIECES))})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        datas = [json.dumps(e) for e in events] + ["[DONE]"]
        for index, data in enumerate(datas):
            event = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            if gate is not None:
                gate.sent.append((data, time.monotonic()))
                if index < len(datas) - 1:
                    gate._wait(index)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if gate is not None:
            gate.finished.set()

    def _embeddings(self, request: dict, headers: Mapping[str, str]) -> None:
        model, raw = request.get("model"), request.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(model, str) or not isinstance(inputs, list) or not inputs \
                or not all(isinstance(i, str) for i in inputs):
            self._error(400, "model and input (a string or a list of strings) are required")
            return
        dimensions = request.get("dimensions") or DEFAULT_DIMENSIONS
        fmt = request.get("encoding_format") or "float"
        data = []
        for index, text in enumerate(inputs):
            values = vector(text, dimensions)
            encoded: Any = values if fmt == "float" else \
                base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in inputs)
        self._send_json(200, {"object": "list", "data": data, "model": model,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _models(self, headers: Mapping[str, str]) -> None:
        self._send_json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "fake-openai"} for m in self.backend.models]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible backend for the llm-jwt-auth tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    backend = FakeOpenAI(args.host, args.port)
    backend.verbose = args.verbose
    backend.start()
    print(f"fake-openai: listening on {backend.base_url}/v1", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
