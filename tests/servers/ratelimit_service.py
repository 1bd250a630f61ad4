#!/usr/bin/env python3
"""A rate limit service that speaks Envoy's protocol (`envoy.service.ratelimit.v3.RateLimitService`
over gRPC), for the fleet-wide example (deploy/examples/global-rate-limit.yaml): fixed
one-minute windows per descriptor, limits given as `{(key, value): requests_per_minute}`,
everything it was asked recorded.

    python tests/servers/ratelimit_service.py --port 8181 --limit team=research=2

Only what the example needs is decoded — `RateLimitRequest.domain` (1), `.descriptors` (2:
`entries` (1: `key` 1, `value` 2)) and `.hits_addend` (3) — straight from the protobuf wire
format (field numbers from envoy/service/ratelimit/v3/rls.proto and
envoy/extensions/common/ratelimit/v3/ratelimit.proto); the answer is `overall_code` (1: OK = 1,
OVER_LIMIT = 2).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent import futures

import grpc

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
OK, OVER_LIMIT = 1, 2


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """`(field number, value)` of a message: varints as ints, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(data, at)
            out.append((number, value))
        elif wire == 2:
            length, at = _varint(data, at)
            out.append((number, data[at:at + length]))
            at += length
        elif wire == 5:
            at += 4
        elif wire == 1:
            at += 8
        else:
            raise ValueError(f"wire type {wire} not expected in a RateLimitRequest")
    return out


def decode_request(data: bytes) -> dict:
    domain, descriptors, hits = "", [], 1
    for number, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            domain = value.decode()
        elif number == 2 and isinstance(value, bytes):
            entries = []
            for n, entry in fields(value):
                if n == 1 and isinstance(entry, bytes):
                    kv = dict(fields(entry))
                    entries.append((kv.get(1, b"").decode(), kv.get(2, b"").decode()))
            descriptors.append(tuple(entries))
        elif number == 3 and isinstance(value, int):
            hits = value or 1
    return {"domain": domain, "descriptors": descriptors, "hits_addend": hits}


class RateLimitService:
    def __init__(self, limits: dict[tuple[str, str], int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.limits = dict(limits)
        self.requests: list[dict] = []
        self._counts: dict[tuple, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler("envoy.service.ratelimit.v3.RateLimitService", {
            "ShouldRateLimit": grpc.unary_unary_rpc_method_handler(
                self._should_rate_limit, request_deserializer=None, response_serializer=None),
        })
        self._server.add_generic_rpc_handlers((handler,))
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")

    def start(self) -> "RateLimitService":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def _should_rate_limit(self, request: bytes, _context) -> bytes:
        asked = decode_request(request)
        minute = int(time.time() // 60)
        code = OK
        with self._lock:
            self.requests.append(asked)
            for descriptor in asked["descriptors"]:
                limit = next((self.limits[e] for e in descriptor if e in self.limits), None)
                if limit is None:
                    continue
                key = (asked["domain"], descriptor)
                at, count = self._counts.get(key, (minute, 0))
                count = (count if at == minute else 0) + asked["hits_addend"]
                self._counts[key] = (minute, count)
                if count > limit:
                    code = OVER_LIMIT
        return bytes([0x08, code])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--limit", action="append", default=[], help="key=value=requests_per_minute")
    args = parser.parse_args()
    limits = {}
    for spec in args.limit:
        key, value, rpm = spec.split("=")
        limits[(key, value)] = int(rpm)
    service = RateLimitService(limits, args.host, args.port).start()
    print(f"rate limit service on {args.host}:{service.port}, limits {limits}", flush=True)
    service._server.wait_for_termination()


if __name__ == "__main__":
    main()
