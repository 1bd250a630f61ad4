"""Checks against docker-compose.yaml running under podman-compose (started by tests/compose/run.sh,
`make compose-test`; not collected by `make e2e`).

First the README's Docker Compose commands, read from README.md and run in bash as written; then
the same requests with status, identity headers and metrics checked one by one; then that the
containers are the compose file's (its commands, mounts, host network) on the harness's images.

Environment (from run.sh):
  LLM_JWT_AUTH_COMPOSE_PROJECT    podman-compose project name
  LLM_JWT_AUTH_ENVOY_CONTAINER    the container Envoy runs in (compose's, or deploy/envoy's image)
  LLM_JWT_AUTH_WASM_IN_CONTAINER  where that Envoy's filter is
  COMPOSE_PYTHON                  a Python with PyYAML (podman-compose's venv), to read the compose file
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
IDP = "http://127.0.0.1:9090"
PROXY = "http://127.0.0.1:10000"
ADMIN = "http://127.0.0.1:9901"
PROJECT = os.environ.get("LLM_JWT_AUTH_COMPOSE_PROJECT", "llm-jwt-auth-compose")
ENVOY_CONTAINER = os.environ.get("LLM_JWT_AUTH_ENVOY_CONTAINER", f"{PROJECT}_envoy_1")
WASM_IN_CONTAINER = os.environ.get("LLM_JWT_AUTH_WASM_IN_CONTAINER",
                                   "/app/target/wasm32-wasip1/release/llm_jwt_auth.wasm")
COMPOSE_PYTHON = os.environ.get("COMPOSE_PYTHON", str(ROOT / "target/compose/venv/bin/python"))
WASM = ROOT / "target/wasm32-wasip1/release/llm_jwt_auth.wasm"
pytestmark = pytest.mark.skipif("LLM_JWT_AUTH_COMPOSE_PROJECT" not in os.environ,
                                reason="needs the compose stack: run make compose-test")

IDENTITY = {"x-litellm-user-id": "alice", "x-litellm-team-id": "demo-team", "x-litellm-user-role": "internal_user"}


def stats() -> dict[str, int]:
    text = requests.get(f"{ADMIN}/stats", timeout=5).text
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^wasmcustom\.llm_jwt_auth\.([\w.]+): (\d+)$", text, re.M)}


def settled(before: dict[str, int], expected: dict[str, int], timeout: float = 5.0) -> dict[str, int]:
    """Stats once each expected delta is reached: the filter publishes its counters on a 100 ms tick."""
    deadline = time.monotonic() + timeout
    while True:
        now = stats()
        if all(now.get(k, 0) - before.get(k, 0) >= v for k, v in expected.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def mint(query: str) -> str:
    r = requests.get(f"{IDP}/mint?{query}", timeout=5)
    assert r.status_code == 200, r.text
    return r.text.strip()


# -- the README's commands, as written ---------------------------------------------------------


def readme_compose_commands() -> list[str]:
    """The shell lines of README.md's Docker Compose block after `docker compose up`."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Docker Compose", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README.md: no ```sh block under ### Docker Compose"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("docker compose up"))
    return lines[start + 1:]


def run_readme_commands() -> list[tuple[str, str]]:
    commands = readme_compose_commands()
    script = ["set -e"]
    for i, cmd in enumerate(commands):
        if ":9901/stats" in cmd:
            # A person takes longer than the filter's 100 ms metrics tick between two commands.
            script.append("sleep 0.3")
        script += [f"printf '\\n@@cmd {i}\\n'", cmd]
        if cmd.startswith("TOKEN="):
            script.append('printf "%s\\n" "$TOKEN"')
    proc = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"README commands failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    outputs = re.split(r"\n@@cmd \d+\n", proc.stdout)[1:]
    assert len(outputs) == len(commands), proc.stdout
    return list(zip(commands, outputs))


def test_readme_compose_commands_as_written() -> None:
    kinds: dict[str, str] = {}
    for cmd, out in run_readme_commands():
        if cmd.startswith("TOKEN=") and "/mint" in cmd:
            token = out.strip()
            assert token.count(".") == 2, f"{cmd!r} minted {out!r}"
            kinds["mint"] = cmd
        elif "Authorization: Bearer $TOKEN" in cmd and ":10000/" in cmd:
            echo = json.loads(out)["echo"]  # the echo upstream's answer: the request got through
            assert echo["headers"]["x-litellm-user-id"] == "alice", echo
            assert echo["headers"]["authorization"] == f"Bearer {token}"
            kinds["allowed"] = cmd
        elif ":10000/" in cmd and "-i" in cmd.split():
            status = out.splitlines()[0]
            assert status.startswith("HTTP/1.1 401"), out
            assert "No api key passed in." in out, out
            kinds["denied"] = cmd
        elif ":9901/stats" in cmd and "llm_jwt_auth" in cmd:
            assert re.search(r"^wasmcustom\.llm_jwt_auth\.requests_allowed: [1-9]", out, re.M), out
            assert re.search(r"^wasmcustom\.llm_jwt_auth\.requests_denied\.missing_token: [1-9]", out, re.M), out
            kinds["metrics"] = cmd
        else:
            pytest.fail(f"README's Docker Compose block has a command this test does not know: {cmd!r}")
    assert sorted(kinds) == ["allowed", "denied", "metrics", "mint"], kinds


# -- the same, checked one by one ------------------------------------------------------------


def test_valid_token_reaches_the_upstream_with_the_identity() -> None:
    token = mint("sub=alice&alg=ES256")
    before = stats()
    r = requests.get(f"{PROXY}/v1/models", timeout=5,
                     headers={"Authorization": f"Bearer {token}", "x-litellm-user-id": "mallory"})
    assert r.status_code == 200, r.text
    headers = r.json()["echo"]["headers"]
    for name, value in IDENTITY.items():
        assert headers.get(name) == value, (name, headers)  # the client's own x-litellm-user-id is gone
    after = settled(before, {"requests_allowed": 1})
    assert after["requests_allowed"] == before.get("requests_allowed", 0) + 1


def test_no_token_is_refused_in_litellms_shape() -> None:
    before = stats()
    r = requests.get(f"{PROXY}/v1/models", timeout=5)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["x-llm-jwt-auth-reason"] == "missing_token"
    assert r.json() == {"error": {"message": "Authentication Error, No api key passed in.",
                                  "type": "auth_error", "param": None, "code": "401"}}
    after = settled(before, {"requests_denied.missing_token": 1})
    assert after["requests_denied.missing_token"] == before.get("requests_denied.missing_token", 0) + 1


def test_expired_and_forged_tokens_are_refused() -> None:
    r = requests.get(f"{PROXY}/v1/models", timeout=5, headers={"Authorization": f"Bearer {mint('expired=1')}"})
    assert (r.status_code, r.json()["error"]["type"], r.json()["error"]["message"]) == (401, "expired_key", "Token Expired")
    r = requests.get(f"{PROXY}/v1/models", timeout=5, headers={"Authorization": f"Bearer {mint('forged=1')}"})
    assert r.status_code == 401 and "Signature verification failed" in r.json()["error"]["message"]


def test_metrics_on_both_admin_endpoints() -> None:
    s = stats()
    assert s.get("jwks_fetch_success", 0) >= 1, s  # the key set came from the idp container
    prom = requests.get(f"{ADMIN}/stats/prometheus", timeout=5).text
    assert re.search(r"^llm_jwt_auth_requests_allowed(\{[^}]*\})? [1-9]", prom, re.M), prom[:2000]


# -- the containers are the compose file's -----------------------------------------------------


def podman_inspect(name: str) -> dict:
    out = subprocess.run(["podman", "inspect", "--type", "container", name], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return json.loads(out)[0]


@pytest.fixture(scope="module")
def compose_file() -> dict:
    out = subprocess.run([COMPOSE_PYTHON, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
                         stdin=open(ROOT / "docker-compose.yaml"), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_envoy_runs_the_built_filter(tmp_path: Path) -> None:
    subprocess.run(["podman", "cp", f"{ENVOY_CONTAINER}:{WASM_IN_CONTAINER}", str(tmp_path / "f.wasm")],
                   check=True, timeout=30)
    assert (tmp_path / "f.wasm").read_bytes() == WASM.read_bytes()
    assert podman_inspect(ENVOY_CONTAINER)["HostConfig"]["NetworkMode"] == "host"


@pytest.mark.parametrize("service", ["idp", "upstream", "envoy"])
def test_services_run_the_compose_files_commands(service: str, compose_file: dict) -> None:
    name = f"{PROJECT}_{service}_1"
    if service == "envoy" and ENVOY_CONTAINER != name:
        info = podman_inspect(ENVOY_CONTAINER)
        assert info["Config"]["Cmd"] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]  # the Dockerfile image's own
        assert info["Config"]["WorkingDir"] == "/etc/envoy"
        return
    spec = compose_file["services"][service]
    info = podman_inspect(name)
    assert info["State"]["Running"], info["State"]
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["Config"]["WorkingDir"] == spec["working_dir"]
    assert info["Config"]["Cmd"] == shlex.split(spec["command"])  # as compose tools split a string command
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    for volume in spec["volumes"]:
        src, dst, mode = volume.split(":")
        assert mounts[dst]["Source"] == str((ROOT / src).resolve()), mounts[dst]
        assert mounts[dst]["RW"] is (mode != "ro")
