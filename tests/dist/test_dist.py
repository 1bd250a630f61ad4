"""Checks of `make dist`'s output (run by `make dist-test`).

The OCI image layout is read back with independent readers — skopeo (containers/image) and
umoci — and its content is held to what Istio's agent accepts (istio/istio
pkg/wasm/imagefetcher.go, see tools/wasm_oci.py's docstring).

Environment:
  LLM_JWT_AUTH_DIST  the dist directory (default: <repo>/dist)
  LLM_JWT_AUTH_WASM  the built filter it was made from
                     (default: <repo>/target/wasm32-wasip1/release/llm_jwt_auth.wasm)
  LLM_JWT_AUTH_REGISTRY  Distribution's registry binary (default: docker-registry on PATH), for
                     the push to a registry and the pull as Istio's agent does it
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import socket
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import wasm_oci  # noqa: E402

DIST = Path(os.environ.get("LLM_JWT_AUTH_DIST", ROOT / "dist"))
BUILT_WASM = Path(os.environ.get("LLM_JWT_AUTH_WASM", ROOT / "target/wasm32-wasip1/release/llm_jwt_auth.wasm"))
LAYOUT = DIST / "oci"
WASM_FILE = DIST / "llm_jwt_auth.wasm"


def cargo_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert m, "no version in Cargo.toml"
    return m.group(1)


VERSION = cargo_version()
COMPAT = f"oci:{LAYOUT}:{VERSION}"
ARTIFACT = f"oci:{LAYOUT}:{VERSION}{wasm_oci.ARTIFACT_SUFFIX}"


def run(*cmd: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not installed (make dist-test installs it: apt-get install {name})"
    return path


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wasm() -> bytes:
    assert WASM_FILE.is_file(), f"{WASM_FILE} missing: run make dist"
    return WASM_FILE.read_bytes()


@pytest.fixture(scope="module")
def index() -> dict:
    return json.loads((LAYOUT / "index.json").read_bytes())


def blob(digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    assert algo == "sha256"
    return (LAYOUT / "blobs" / "sha256" / hexd).read_bytes()


def by_ref(index: dict, ref: str) -> dict:
    found = [m for m in index["manifests"] if m.get("annotations", {}).get(wasm_oci.REF_NAME) == ref]
    assert len(found) == 1, f"ref {ref!r}: {len(found)} manifests in index.json"
    return found[0]


# -- the .wasm and its checksum ------------------------------------------------------------


def test_wasm_is_the_built_module(wasm: bytes) -> None:
    assert wasm.startswith(wasm_oci.WASM_MAGIC), "not a WebAssembly binary"
    if BUILT_WASM.is_file():
        assert wasm == BUILT_WASM.read_bytes(), f"{WASM_FILE} differs from {BUILT_WASM}: run make dist"


def test_sha256_file_checks_with_sha256sum(wasm: bytes) -> None:
    line = (DIST / "llm_jwt_auth.wasm.sha256").read_text()
    assert line == f"{hashlib.sha256(wasm).hexdigest()}  llm_jwt_auth.wasm\n"
    run("sha256sum", "--check", "--strict", "llm_jwt_auth.wasm.sha256", cwd=DIST)


# -- the layout itself ---------------------------------------------------------------------


def test_layout_is_well_formed(index: dict) -> None:
    assert json.loads((LAYOUT / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == wasm_oci.MT_INDEX
    refs = sorted(m["annotations"][wasm_oci.REF_NAME] for m in index["manifests"])
    assert refs == [VERSION, VERSION + wasm_oci.ARTIFACT_SUFFIX]
    for m in index["manifests"]:
        assert m["mediaType"] == wasm_oci.MT_MANIFEST  # a manifest, never an index: Istio wants an image
        assert len(blob(m["digest"])) == m["size"]


def test_every_blob_is_named_by_its_digest_and_referenced(index: dict) -> None:
    referenced = set()
    for m in index["manifests"]:
        referenced.add(m["digest"])
        manifest = json.loads(blob(m["digest"]))
        for desc in [manifest["config"], *manifest["layers"]]:
            referenced.add(desc["digest"])
            assert len(blob(desc["digest"])) == desc["size"], desc
    present = set()
    for path in (LAYOUT / "blobs" / "sha256").iterdir():
        assert sha(path.read_bytes()) == "sha256:" + path.name, f"{path} does not match its name"
        present.add("sha256:" + path.name)
    assert present == referenced, f"stray blobs: {present - referenced}, missing: {referenced - present}"


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    """Reproducible: the same .wasm and SOURCE_DATE_EPOCH give the same layout, file by file."""
    out = tmp_path / "oci"
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
    subprocess.run([sys.executable, str(ROOT / "tools/wasm_oci.py"), "--wasm", str(WASM_FILE),
                    "--out", str(out), "--tag", VERSION], check=True, env=env, capture_output=True)
    ours = sorted(p.relative_to(LAYOUT) for p in LAYOUT.rglob("*"))
    again = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert ours == again
    for rel in ours:
        if (LAYOUT / rel).is_file():
            assert (LAYOUT / rel).read_bytes() == (out / rel).read_bytes(), rel


# -- compat variant, read by skopeo and umoci ----------------------------------------------


def test_compat_manifest_as_skopeo_reads_it(wasm: bytes, index: dict) -> None:
    tool("skopeo")
    raw = run("skopeo", "inspect", "--raw", COMPAT)
    manifest = json.loads(raw)
    assert sha(raw.encode()) == by_ref(index, VERSION)["digest"]
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == wasm_oci.MT_MANIFEST
    assert manifest["config"]["mediaType"] == wasm_oci.MT_IMAGE_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [wasm_oci.MT_LAYER_TAR_GZIP]
    assert manifest["annotations"][wasm_oci.VARIANT_ANNOTATION] == "compat"
    assert manifest["annotations"]["org.opencontainers.image.version"] == VERSION

    info = json.loads(run("skopeo", "inspect", COMPAT))
    assert info["Digest"] == by_ref(index, VERSION)["digest"]
    assert info["Layers"] == [manifest["layers"][0]["digest"]]
    assert (info["Os"], info["Architecture"]) == ("wasip1", "wasm")

    config = json.loads(run("skopeo", "inspect", "--config", COMPAT))
    layer = blob(manifest["layers"][0]["digest"])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha(gzip.decompress(layer))]}


def test_compat_layer_holds_exactly_plugin_wasm(wasm: bytes, index: dict) -> None:
    manifest = json.loads(blob(by_ref(index, VERSION)["digest"]))
    layer = blob(manifest["layers"][-1]["digest"])  # Istio reads the last layer
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer)), mode="r:") as tar:
        members = tar.getmembers()
        assert [(m.name, m.type, m.mode, m.uid, m.gid, m.mtime) for m in members] == [
            ("plugin.wasm", tarfile.REGTYPE, 0o644, 0, 0, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))]
        content = tar.extractfile(members[0]).read()
    assert sha(content) == sha(wasm)


def test_compat_unpacked_by_umoci(wasm: bytes, tmp_path: Path) -> None:
    tool("umoci")
    assert VERSION in run("umoci", "ls", "--layout", str(LAYOUT)).split()
    rootfs = tmp_path / "rootfs"
    # raw unpack: umoci checks every blob's digest; (full `unpack` would also write a runtime
    # spec, which umoci refuses for os "wasip1": nothing runs this image as a container.)
    run("umoci", "raw", "unpack", "--image", f"{LAYOUT}:{VERSION}", str(rootfs))
    assert sorted(p.name for p in rootfs.iterdir()) == ["plugin.wasm"]
    assert (rootfs / "plugin.wasm").read_bytes() == wasm


# -- artifact variant -----------------------------------------------------------------------


def test_artifact_manifest_and_copy(wasm: bytes, index: dict, tmp_path: Path) -> None:
    tool("skopeo")
    raw = run("skopeo", "inspect", "--raw", ARTIFACT)
    assert sha(raw.encode()) == by_ref(index, VERSION + wasm_oci.ARTIFACT_SUFFIX)["digest"]
    manifest = json.loads(raw)
    assert manifest["mediaType"] == wasm_oci.MT_MANIFEST
    assert manifest["config"]["mediaType"] == wasm_oci.MT_WASM_CONFIG
    types = [layer["mediaType"] for layer in manifest["layers"]]
    assert sorted(types) == sorted([wasm_oci.MT_WASM_CONFIG, wasm_oci.MT_WASM_CONTENT])
    content = manifest["layers"][types.index(wasm_oci.MT_WASM_CONTENT)]
    assert content["digest"] == sha(wasm) and content["size"] == len(wasm)
    runtime = json.loads(blob(manifest["config"]["digest"]))
    assert runtime["type"] == "envoy_proxy" and runtime["config"]["root_ids"] == ["llm_jwt_auth"]
    # skopeo copy verifies each blob against its digest on the way.
    out = tmp_path / "copy"
    run("skopeo", "copy", "--quiet", ARTIFACT, f"dir:{out}")
    assert (out / content["digest"].split(":")[1]).read_bytes() == wasm


def test_wasm_declares_the_runtime_configs_abi(wasm: bytes) -> None:
    assert b"proxy_abi_version_0_2_1" in wasm


# -- what Istio's agent does with them -------------------------------------------------------


def istio_extract(manifest: dict, fetch=None) -> bytes:
    """The decision of istio/istio pkg/wasm/imagefetcher.go, restated: Docker schema 2 → last
    layer must be a Docker tar.gzip; OCI → the compat variant (last layer tar+gzip, a file whose
    base name is plugin.wasm), else the oci variant (exactly two layers, one of the Wasm content
    type, taken as is). `fetch(digest)` gives a blob (default: from the layout)."""
    fetch = fetch or blob
    layers = manifest["layers"]
    assert layers, "number of layers must be greater than zero"
    if manifest.get("mediaType") == "application/vnd.docker.distribution.manifest.v2+json":
        raise AssertionError("this project publishes OCI manifests")
    last = layers[-1]
    if last["mediaType"] == wasm_oci.MT_LAYER_TAR_GZIP:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(fetch(last["digest"]))), mode="r:") as tar:
            for member in tar:
                if os.path.basename(member.name) == "plugin.wasm":
                    return tar.extractfile(member).read()
        raise AssertionError("plugin.wasm not found in the archive")
    assert len(layers) == 2, f"number of layers must be 2 but got {len(layers)}"
    for layer in layers:
        if layer["mediaType"] == wasm_oci.MT_WASM_CONTENT:
            return fetch(layer["digest"])
    raise AssertionError("could not find the layer of type " + wasm_oci.MT_WASM_CONTENT)


@pytest.mark.parametrize("ref", [VERSION, VERSION + wasm_oci.ARTIFACT_SUFFIX])
def test_istio_gets_the_module_from_both(ref: str, wasm: bytes, index: dict) -> None:
    manifest = json.loads(blob(by_ref(index, ref)["digest"]))
    assert istio_extract(manifest) == wasm


# -- through a registry ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """Distribution's registry (Debian's docker-registry) on a free loopback port."""
    binary = os.environ.get("LLM_JWT_AUTH_REGISTRY") or tool("docker-registry")
    assert Path(binary).is_file(), f"{binary} missing (make dist-test unpacks Debian's docker-registry)"
    work = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n")
    proc = subprocess.Popen([binary, "serve", str(work / "config.yml")],
                            stdout=open(work / "log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(base + "/v2/", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (work / "log").read_text()
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def registry_get(url: str, accept: str | None = None) -> tuple[bytes, dict]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read(), dict(r.headers)


@pytest.mark.parametrize("ref", [VERSION, VERSION + wasm_oci.ARTIFACT_SUFFIX])
def test_pushed_with_skopeo_and_pulled_as_istio_does(ref: str, registry: str, wasm: bytes, index: dict) -> None:
    """skopeo copy to a registry keeps the manifest's bytes (so its digest: what a WasmPlugin's
    sha256 pins); fetched back over the registry API, manifest then blobs, it yields the module."""
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{LAYOUT}:{ref}",
        f"docker://{registry}/llm-jwt-auth:{ref}")
    accept = ",".join([wasm_oci.MT_MANIFEST, wasm_oci.MT_INDEX,
                       "application/vnd.docker.distribution.manifest.v2+json"])
    raw, headers = registry_get(f"http://{registry}/v2/llm-jwt-auth/manifests/{ref}", accept)
    digest = by_ref(index, ref)["digest"]
    assert headers["Docker-Content-Digest"] == digest == sha(raw)
    assert headers["Content-Type"] == wasm_oci.MT_MANIFEST

    def fetch(d: str) -> bytes:
        data, _ = registry_get(f"http://{registry}/v2/llm-jwt-auth/blobs/{d}")
        assert sha(data) == d
        return data

    assert istio_extract(json.loads(raw), fetch) == wasm


# -- the deployment files name this version ----------------------------------------------------


def test_istio_manifests_pull_this_version() -> None:
    for name in ("wasmplugin.yaml", "envoyfilter.yaml"):
        text = (ROOT / "deploy/istio" / name).read_text()
        tags = re.findall(r"oci://[^\s:]+/llm-jwt-auth:([\w.\-]+)", text)
        assert tags and set(tags) == {VERSION}, f"{name}: oci:// tags {tags}, Cargo.toml says {VERSION}"


def test_envoy_dockerfile_copies_dist_artifacts() -> None:
    text = (ROOT / "deploy/envoy/Dockerfile").read_text()
    assert re.search(r"^FROM envoyproxy/envoy:v1\.40\.0$", text, re.M)
    assert re.search(r"^COPY dist/llm_jwt_auth\.wasm ", text, re.M)
    assert re.search(r"^COPY envoy\.yaml /etc/envoy/envoy\.yaml$", text, re.M)
