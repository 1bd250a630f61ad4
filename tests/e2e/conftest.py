"""Fixtures for the end-to-end suite: real Envoy + the built llm-jwt-auth wasm + test servers.

Envoys are started lazily, inside the test body, by the first test that touches `.envoy`
(or `.url`, `.request()`); a start failure — including a missing wasm — therefore shows up as
a test FAILURE with Envoy's log, never as a skip.  A failed start is remembered, so the other
tests of the module fail at once with the same message instead of waiting again.

Environment:
  ENVOY              Envoy binary (default: <repo>/.venv/bin/envoy, then `envoy` on PATH)
  LLM_JWT_AUTH_WASM  the filter (default: <repo>/target/wasm32-wasip1/release/llm_jwt_auth.wasm)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "servers"))

import harness  # noqa: E402
from checks import Reply, send, send_raw  # noqa: E402
import jwt_fixtures as jf  # noqa: E402
from demo_idp import IdPServer  # noqa: E402
from echo_upstream import EchoServer  # noqa: E402
from record_source import RecordSource  # noqa: E402


# -- keys ---------------------------------------------------------------------------------


class KeyRing:
    """Session-wide keys, generated on first use and cached by kid."""

    def __init__(self) -> None:
        self._keys: dict[str, jf.SigningKey] = {}

    def get(self, kid: str, alg: str = "RS256") -> jf.SigningKey:
        key = self._keys.get(kid)
        if key is None:
            key = self._keys[kid] = jf.generate_key(alg, kid)
        elif key.alg != alg:
            raise ValueError(f"key {kid!r} exists with alg {key.alg}, asked for {alg}")
        return key

    def per_algorithm(self) -> dict[str, jf.SigningKey]:
        """One key per supported algorithm, kid `test-<alg lowercased>`."""
        return {alg: self.get(f"test-{alg.lower()}", alg) for alg in jf.ALGORITHMS}


@pytest.fixture(scope="session")
def keyring() -> KeyRing:
    return KeyRing()


# -- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream() -> Iterable[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()


class Servers:
    """Starts loopback test servers of one kind and stops them all at teardown."""

    def __init__(self, make: Callable[..., Any]) -> None:
        self._make = make
        self._servers: list[Any] = []

    def new(self, *args: Any, start: bool = True, **kwargs: Any) -> Any:
        server = self._make(*args, **kwargs)
        self._servers.append(server)
        return server.start() if start else server.bind()

    def close(self) -> None:
        for server in self._servers:
            server.stop()


def _servers(make: Callable[..., Any]) -> Iterable[Servers]:
    servers = Servers(make)
    yield servers
    servers.close()


@pytest.fixture(scope="module")
def module_idps() -> Iterable[Servers]:
    """`module_idps.new(keys, start=True, **IdPServer kwargs)`: IdPs for the module."""
    yield from _servers(IdPServer)


@pytest.fixture()
def idps() -> Iterable[Servers]:
    yield from _servers(IdPServer)


@pytest.fixture(scope="module")
def module_sources() -> Iterable[Servers]:
    """`module_sources.new(start=True, **RecordSource kwargs)`: team/user record servers."""
    yield from _servers(RecordSource)


@pytest.fixture()
def sources() -> Iterable[Servers]:
    yield from _servers(RecordSource)


# -- Envoy --------------------------------------------------------------------------------


class Scenario:
    """An Envoy configuration whose process starts on first use, from inside a test."""

    def __init__(self, factory: "Envoys", name: str, *, plugin_config: Mapping[str, Any] | str | None,
                 jwks: Iterable[Any] = (), clusters: Mapping[str, tuple[str, int]] | None = None,
                 env: Mapping[str, str] | None = None, concurrency: int = 1, with_wasm: bool = True,
                 allow_on_headers_stop_iteration: bool = True) -> None:
        self.factory = factory
        self.name = name
        self.plugin_config = plugin_config
        self.jwks = list(jwks)
        self.clusters = clusters
        self.env = env
        self.concurrency = concurrency
        self.with_wasm = with_wasm
        self.allow_on_headers_stop_iteration = allow_on_headers_stop_iteration
        self._envoy: harness.Envoy | None = None
        self._failure: str | None = None

    def build(self) -> harness.Envoy:
        """The (unstarted) Envoy; fails the test if Envoy cannot be found or the filter is part
        of the config and the wasm has not been built."""
        envoy = None
        try:
            wasm = harness.require_wasm() if self.with_wasm else None
            envoy = harness.build_envoy(
                upstream_port=self.factory.upstream.port, plugin_config=self.plugin_config, wasm=wasm,
                jwks=self.jwks, clusters=self.clusters, env=self.env, concurrency=self.concurrency,
                name=self.name, workdir=self.factory.workdir(self.name),
                allow_on_headers_stop_iteration=self.allow_on_headers_stop_iteration,
            )
        except harness.HarnessError as exc:
            self._failure = str(exc)
        if envoy is None:
            pytest.fail(self._failure or "could not build the Envoy config", pytrace=False)
        return envoy

    @property
    def envoy(self) -> harness.Envoy:
        if self._failure:
            pytest.fail(self._failure, pytrace=False)
        if self._envoy is None:
            envoy = self.factory.track(self.build())
            try:
                envoy.start()
            except harness.EnvoyFailed as exc:
                envoy.stop()
                self._failure = f"{exc}\n{envoy.log_tail()}"
            if self._failure:
                pytest.fail(self._failure, pytrace=False)
            self._envoy = envoy
        return self._envoy

    def spawn(self) -> harness.Envoy:
        """Start the process without waiting for readiness (for configs expected to fail)."""
        envoy = self.factory.track(self.build())
        return envoy.start(wait=False)

    @property
    def url(self) -> str:
        return self.envoy.url

    def request(self, token: str | None = None, **kwargs: Any) -> Reply:
        """`checks.send()` through this scenario's Envoy (started on first use)."""
        return send(self.envoy, token, upstream=self.factory.upstream, **kwargs)

    def request_raw(self, headers: Any, **kwargs: Any) -> Reply:
        """`checks.send_raw()` (header lines verbatim, repeats kept) through this scenario's Envoy."""
        return send_raw(self.envoy, headers, upstream=self.factory.upstream, **kwargs)

    def stop(self) -> None:
        if self._envoy is not None:
            self._envoy.stop()


class Envoys:
    """Creates Scenarios / Envoys and stops every Envoy it started at teardown."""

    def __init__(self, upstream: EchoServer, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.upstream = upstream
        self._tmp = tmp_path_factory
        self._envoys: list[harness.Envoy] = []

    def workdir(self, name: str) -> Path:
        return self._tmp.mktemp(name, numbered=True)

    def track(self, envoy: harness.Envoy) -> harness.Envoy:
        self._envoys.append(envoy)
        return envoy

    def scenario(self, name: str, **kwargs: Any) -> Scenario:
        return Scenario(self, name, **kwargs)

    def close(self) -> None:
        for envoy in self._envoys:
            envoy.stop()


@pytest.fixture(scope="module")
def module_envoys(upstream: EchoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterable[Envoys]:
    envoys = Envoys(upstream, tmp_path_factory)
    yield envoys
    envoys.close()


@pytest.fixture()
def envoys(upstream: EchoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterable[Envoys]:
    envoys = Envoys(upstream, tmp_path_factory)
    yield envoys
    envoys.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Attach the logs of every running Envoy to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for envoy in sorted(harness.Envoy.live, key=lambda e: e.name):
            report.sections.append((f"envoy {envoy.name} (pid {envoy.proc.pid if envoy.proc else '-'})",
                                    envoy.log_tail()))
