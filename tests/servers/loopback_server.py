"""The lifecycle the test HTTP servers share (demo IdP, record source): bind a loopback port
without listening (connections refused), start serving in a thread, stop and release the port
so it can be started again on the same port — how the tests simulate a dependency that is
down, up, or restarted."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threading server that knows its open connections, so that stopping it is a real
    outage: Envoy keeps its HTTP/1.1 connections alive, and closing only the listening socket
    would leave them served by their handler threads."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of concurrent connections from
    # Envoy would overflow it and show up as connect timeouts.
    request_queue_size = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (Envoy's fetch timeout during an injected delay) is expected.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    #: attribute set on the http server pointing back at this object (for the handler)
    owner_attr = "owner"
    #: thread name prefix
    thread_name = "server"

    def __init__(self, server_cls: type[ThreadingHTTPServer], handler_cls: type[BaseHTTPRequestHandler],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server_cls = server_cls
        self._handler_cls = handler_cls
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._listening = False

    def bind(self):
        """Bind the port without listening: connections are refused until `start()`."""
        if self._httpd is None:
            self._httpd = self._server_cls((self.host, self._port), self._handler_cls, bind_and_activate=False)
            setattr(self._httpd, self.owner_attr, self)
            try:
                self._httpd.server_bind()
            except OSError:
                self._httpd.server_close()
                self._httpd = None
                raise
            self._port = self._httpd.server_address[1]
        return self

    def start(self):
        self.bind()
        assert self._httpd is not None
        if not self._listening:
            self._httpd.server_activate()
            self._listening = True
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                name=f"{self.thread_name}-{self._port}",
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections (where the server tracks them) and
        release the port (it can be started again on the same port)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self._listening:
            httpd.shutdown()
        close_connections = getattr(httpd, "close_connections", None)
        if close_connections is not None:
            close_connections()
        httpd.server_close()
        self._listening = False
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._listening

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} has no port yet: call bind() or start() first")
        return self._port

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.authority}"
