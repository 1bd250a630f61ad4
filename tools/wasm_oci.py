#!/usr/bin/env python3
"""Write the filter as an OCI image layout that Istio's agent pulls with `oci://`.

    python3 tools/wasm_oci.py --wasm dist/llm_jwt_auth.wasm --out dist/oci --tag 0.1.0

Two images go into one OCI image layout (oci-layout, index.json, blobs/sha256/...), told apart
by their `org.opencontainers.image.ref.name`:

  <tag>           the "compat" variant of the Wasm image specification
                  (solo-io/wasm spec/spec-compat.md): an ordinary OCI image, config
                  application/vnd.oci.image.config.v1+json, exactly one layer
                  application/vnd.oci.image.layer.v1.tar+gzip holding one file, plugin.wasm,
                  and the manifest annotation module.wasm.image/variant=compat. Every registry
                  and image tool handles it; Istio tries this variant first.
  <tag>-artifact  the "oci" (artifact) variant (spec/spec.md): config and first layer are the
                  runtime config (application/vnd.module.wasm.config.v1+json), second layer the
                  raw module (application/vnd.module.wasm.content.layer.v1+wasm). Istio takes
                  it when the manifest has exactly two layers and one of them is of that type.

What Istio accepts is in istio/istio pkg/wasm/imagefetcher.go: a Docker schema 2 manifest whose
last layer is a Docker tar.gzip layer containing plugin.wasm; else an OCI manifest whose last
layer is tar+gzip containing a file whose base name is plugin.wasm; else exactly two layers, one
of the Wasm content type, read as is. The reference must name a manifest, not an index.

Reproducible: the same .wasm (and the same SOURCE_DATE_EPOCH, default 0) gives the same bytes,
hence the same manifest digest — the digest a WasmPlugin's `sha256` (or url@sha256:...) pins, as
Istio compares it with the manifest's digest for oci:// URLs. Tar entry with fixed mtime, owner
0:0 and mode 0644, gzip without name or time, JSON with sorted keys and no whitespace.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
MT_WASM_CONTENT = "application/vnd.module.wasm.content.layer.v1+wasm"
VARIANT_ANNOTATION = "module.wasm.image/variant"
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
PLUGIN_FILE = "plugin.wasm"
ARTIFACT_SUFFIX = "-artifact"
WASM_MAGIC = b"\0asm\x01\0\0\0"


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """Blobs collected in memory, written out at the end."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, data: bytes, media_type: str, annotations: dict[str, str] | None = None) -> dict:
        digest = sha256(data)
        self.blobs[digest] = data
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc

    def write(self, out: Path, manifests: list[dict]) -> None:
        tmp = out.with_name(out.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for digest, data in sorted(self.blobs.items()):
            (tmp / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        (tmp / "oci-layout").write_bytes(canonical_json(OCI_LAYOUT))
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        (tmp / "index.json").write_bytes(canonical_json(index))
        for path in sorted(tmp.rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)


def plugin_tar(wasm: bytes, mtime: int) -> bytes:
    """A tar stream with one regular file, plugin.wasm: fixed owner, mode and time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0: no name and no time in the gzip header.
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm: bytes, tag: str, epoch: int, root_id: str, version: str) -> tuple[Layout, list[dict]]:
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a WebAssembly binary module (magic/version header missing)")
    created = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {
        TITLE: "llm-jwt-auth",
        "org.opencontainers.image.description": "LiteLLM's JWT authentication as a proxy-wasm filter for Envoy",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
    }
    layout = Layout()
    manifests = []

    # compat: a normal image; the one layer is a tar.gz holding plugin.wasm.
    tar = plugin_tar(wasm, epoch)
    layer = layout.add(gzip_bytes(tar), MT_LAYER_TAR_GZIP)
    config = {
        "created": created,
        # A Wasm module runs on any host: GOOS/GOARCH spelling of WASI preview 1.
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [{"created": created,
                     "created_by": f"tools/wasm_oci.py: {PLUGIN_FILE} = llm_jwt_auth.wasm {sha256(wasm)}"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": layout.add(canonical_json(config), MT_IMAGE_CONFIG),
        "layers": [layer],
        "annotations": {VARIANT_ANNOTATION: "compat", **common},
    }
    manifests.append(layout.add(canonical_json(manifest), MT_MANIFEST, {REF_NAME: tag}))

    # oci (artifact): runtime config + the raw module, exactly two layers.
    runtime_config = {
        "type": "envoy_proxy",
        "abiVersions": ["proxy_abi_version_0_2_1"],
        "config": {"root_ids": [root_id]},
    }
    rc = canonical_json(runtime_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": layout.add(rc, MT_WASM_CONFIG),
        "layers": [
            layout.add(rc, MT_WASM_CONFIG, {TITLE: "runtime-config.json"}),
            layout.add(wasm, MT_WASM_CONTENT, {TITLE: PLUGIN_FILE}),
        ],
        "annotations": dict(common),
    }
    manifests.append(layout.add(canonical_json(manifest), MT_MANIFEST, {REF_NAME: tag + ARTIFACT_SUFFIX}))
    return layout, manifests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="OCI image layout directory (replaced)")
    parser.add_argument("--tag", required=True, help="ref name of the compat image; the artifact one gets -artifact")
    parser.add_argument("--version", help="org.opencontainers.image.version (default: the tag)")
    parser.add_argument("--root-id", default="llm_jwt_auth")
    parser.add_argument("--source-date-epoch", type=int,
                        default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
                        help="timestamp of the tar entry and image config (default $SOURCE_DATE_EPOCH or 0)")
    args = parser.parse_args(argv)

    wasm = args.wasm.read_bytes()
    layout, manifests = build(wasm, args.tag, args.source_date_epoch, args.root_id, args.version or args.tag)
    layout.write(args.out, manifests)
    for desc in manifests:
        print(f"{args.out}:{desc['annotations'][REF_NAME]}  manifest {desc['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
