"""Reading the repository's envoy.yaml without a YAML library (the suite has none): the plugin
configurations (the JSON under each `value: |`) in the order they appear, by listener."""

from __future__ import annotations

import json
import re
from pathlib import Path

import harness

PATH = harness.REPO_ROOT / "envoy.yaml"


def text(path: Path = PATH) -> str:
    return path.read_text()


def plugin_configs(source: str | None = None) -> list[dict]:
    """Every `value: |` block (the Wasm filter's StringValue configuration) parsed as JSON: the
    lines after it that are indented deeper than the `value:` key."""
    lines = (text() if source is None else source).splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != "value: |":
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for follow in lines[i + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            block.append(follow)
        out.append(json.loads("\n".join(block)))
    return out


def listeners(source: str | None = None) -> dict[str, int]:
    """Listener name → port, from `- name: <n>` followed by its socket address."""
    src = text() if source is None else source
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r"^  - name: (\w+)\n    address:\n      socket_address: \{ address: 127\.0\.0\.1, port_value: (\d+) \}",
        src, re.M)}


def claim_fields(config: dict) -> dict[str, str]:
    """The claims a plugin configuration reads: `<setting>` → claim name, for every
    `*_jwt_field` in litellm_jwtauth (and its issuers) and the scope claims."""
    jwt = config.get("general_settings", {}).get("litellm_jwtauth", {})
    out = {k: v for k, v in jwt.items() if k.endswith("_jwt_field") and isinstance(v, str)}
    for i, issuer in enumerate(config.get("issuers", []) + jwt.get("issuers", [])):
        out.update({f"issuers[{i}].{k}": v for k, v in issuer.items() if k.endswith("_jwt_field") and isinstance(v, str)})
    for i, claim in enumerate(config.get("scope_claims", ["scope"])):
        out[f"scope_claims[{i}]"] = claim
    return out
