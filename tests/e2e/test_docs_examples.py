"""The configurations the documentation shows load into a real Envoy with the built filter, and
the migration guide's worked example does what its table says.

* Fenced blocks tagged ```` ```json plugin-config ```` in docs/configuration.md and
  docs/migration.md, and the plugin configurations in deploy/istio/, pass
  `envoy --mode validate` (which runs the filter's configure step: a bad field fails it).
* docs/migration.md's ```` ```yaml envoy-config ```` bootstrap passes `envoy --mode validate`
  as written (wasm path aside); its LiteLLM block carries over as the doc says; every row of its
  `<!-- cases: migration -->` table is sent through Envoy with a PyJWT-signed token.
* deploy/istio/*.yaml parse, and hold together: the WasmPlugin and EnvoyFilter name the
  clusters the ServiceEntry creates, the EnvoyFilter's Wasm config (with
  `allow_on_headers_stop_iteration`) loads into Envoy.

YAML is read by Envoy itself (no YAML library in the venv): the documents become
`node.metadata` of a throwaway Envoy, whose admin `/server_info` returns them as JSON.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from checks import Reply

DOCS = harness.REPO_ROOT / "docs"
ISTIO = harness.REPO_ROOT / "deploy" / "istio"
MIGRATION = DOCS / "migration.md"
DOC_WASM_PATH = "/etc/envoy/llm_jwt_auth.wasm"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
FENCE = re.compile(r"^```(\w+) ([\w-]+)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


# -- reading the documents ----------------------------------------------------------------


def tagged_blocks(path: Path, tag: str) -> list[tuple[str, str]]:
    """(`file:line`, text) of every fenced block whose info string ends in `tag`."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(2) == tag:
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{path.relative_to(harness.REPO_ROOT)}:{line}", m.group(3)))
    return out


def yaml_documents(path: Path) -> list[str]:
    """The documents of a YAML file (split on `---` lines), empty ones left out."""
    docs, current = [], []
    for line in path.read_text().splitlines():
        if re.fullmatch(r"---\s*", line):
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return [d for d in docs if any(l.strip() and not l.lstrip().startswith("#") for l in d.splitlines())]


def parse_yaml(documents: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Each YAML document as JSON, parsed by Envoy (key → value)."""
    names = {key: f"d{i}" for i, key in enumerate(documents)}
    lines = ["node:", "  id: yaml-reader", "  metadata:"]
    for key, text in documents.items():
        lines.append(f"    {names[key]}:")
        lines.extend("      " + l if l.strip() else "" for l in text.splitlines())
    lines += [
        "admin:",
        "  address: {socket_address: {address: 127.0.0.1, port_value: 0}}",
        "static_resources:",
        "  listeners:",
        "  - name: idle",
        "    address: {socket_address: {address: 127.0.0.1, port_value: 0}}",
        "    filter_chains:",
        "    - filters:",
        "      - name: envoy.filters.network.http_connection_manager",
        "        typed_config:",
        '          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        "          stat_prefix: idle",
        "          route_config:",
        "            virtual_hosts:",
        '            - {name: idle, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 204}}]}',
        "          http_filters:",
        "          - name: envoy.filters.http.router",
        "            typed_config:",
        '              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
    ]
    bootstrap = workdir / "yaml-reader.yaml"
    bootstrap.write_text("\n".join(lines) + "\n")
    envoy = harness.Envoy(bootstrap, name="yaml-reader", workdir=workdir)
    try:
        try:
            envoy.start()
        except harness.EnvoyFailed as exc:
            pytest.fail(f"Envoy could not read the YAML documents {list(documents)}:\n{exc.log}", pytrace=False)
        status, body = envoy.admin_get("/server_info")
        assert status == 200, body
        metadata = json.loads(body)["node"]["metadata"]
    finally:
        envoy.stop()
    return {key: metadata[name] for key, name in names.items()}


@pytest.fixture(scope="module")
def yaml_docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    documents: dict[str, str] = {}
    for tag in ("litellm-config", "envoy-config"):
        blocks = tagged_blocks(MIGRATION, tag)
        assert len(blocks) == 1, f"docs/migration.md should have one ```yaml {tag} block, found {len(blocks)}"
        documents[f"migration:{tag}"] = blocks[0][1]
    for path in sorted(ISTIO.glob("*.yaml")):
        for i, text in enumerate(yaml_documents(path)):
            documents[f"{path.name}#{i}"] = text
    return parse_yaml(documents, tmp_path_factory.mktemp("yaml-reader"))


def istio_objects(yaml_docs: dict[str, Any], kind: str) -> list[dict]:
    return [v for k, v in yaml_docs.items() if "#" in k and isinstance(v, dict) and v.get("kind") == kind]


def wasm_filter_config(bootstrap: dict) -> dict:
    """The Wasm filter's `config` in a bootstrap with one listener."""
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for http_filter in f["typed_config"].get("http_filters", []):
                    if http_filter["typed_config"]["@type"] == WASM_TYPE:
                        return http_filter["typed_config"]["config"]
    raise AssertionError("no Wasm filter in the bootstrap")


# -- envoy --mode validate ----------------------------------------------------------------


def envoy_validate(config: dict | str, workdir: Path, name: str) -> str:
    """Run `envoy --mode validate`; fail the test with Envoy's output unless it says OK."""
    path = workdir / f"{name}.yaml"
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
    result = subprocess.run(
        [harness.find_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "warn",
         "--component-log-level", "wasm:info"],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "OK" in output, f"envoy --mode validate refused {name}:\n{output}"
    return output


def plugin_bootstrap(plugin_config: dict | str, **kwargs: Any) -> dict:
    return harness.render_bootstrap(upstream_port=9, plugin_config=plugin_config, wasm=harness.require_wasm(),
                                    **kwargs)


PLUGIN_BLOCKS = tagged_blocks(DOCS / "configuration.md", "plugin-config") + tagged_blocks(MIGRATION, "plugin-config")


def test_the_docs_mark_their_plugin_configurations():
    assert len(tagged_blocks(DOCS / "configuration.md", "plugin-config")) >= 4
    assert len(tagged_blocks(MIGRATION, "plugin-config")) >= 1


def test_envoy_validate_runs_the_filters_configure_step(tmp_path):
    """Control for the tests below: a configuration the filter refuses fails validation."""
    bad = plugin_bootstrap({"public_key_url": "https://idp.example.com/jwks", "leeway": "soon"})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = subprocess.run([harness.find_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "leeway" in result.stdout + result.stderr


@pytest.mark.parametrize("where,text", PLUGIN_BLOCKS, ids=[w for w, _ in PLUGIN_BLOCKS])
def test_documented_plugin_configuration_loads(where, text, tmp_path):
    config = json.loads(text)
    envoy_validate(plugin_bootstrap(config), tmp_path, "plugin-config")


def test_migration_envoy_yaml_loads_as_written(tmp_path):
    [(_, text)] = tagged_blocks(MIGRATION, "envoy-config")
    assert DOC_WASM_PATH in text
    envoy_validate(text.replace(DOC_WASM_PATH, str(harness.require_wasm())), tmp_path, "migration-envoy")


def test_migration_carries_litellms_jwt_settings_over_unchanged(yaml_docs):
    """The plugin's `general_settings` is LiteLLM's minus the proxy-only keys, and the VM
    environment holds LiteLLM's three variables."""
    litellm = yaml_docs["migration:litellm-config"]["general_settings"]
    envoy_cfg = yaml_docs["migration:envoy-config"]
    wasm = wasm_filter_config(envoy_cfg)
    plugin = json.loads(wasm["configuration"]["value"])
    expected = {k: v for k, v in litellm.items() if k not in ("master_key", "database_url")}
    assert plugin["general_settings"] == expected
    env = wasm["vm_config"]["environment_variables"]["key_values"]
    env_block = MIGRATION.read_text().split("and its environment:", 1)[1].split("```", 2)[1]
    documented = dict(line.split("=", 1) for line in env_block.splitlines() if "=" in line)
    assert env == documented
    assert wasm["allow_on_headers_stop_iteration"] is True


# -- the migration's worked example, through Envoy ----------------------------------------


def case_rows() -> list[dict[str, str]]:
    text = MIGRATION.read_text()
    after = text.split("<!-- cases: migration -->", 1)[1].lstrip("\n").splitlines()
    rows = []
    header: list[str] | None = None
    for line in after:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
        elif not set(line) <= set("|- "):
            rows.append(dict(zip(header, cells)))
    return rows


def spans(cell: str) -> list[str]:
    return cell.split("`")[1::2]


CASES = case_rows()


@pytest.fixture(scope="module")
def migration_proxy(yaml_docs, module_envoys, module_idps, module_sources, keyring):
    """The migration's plugin configuration and VM environment as written, except that the key
    URL points at a local IdP; the record source (the cluster the doc names) is a local
    LiteLLM-shaped server holding the doc's two teams."""
    wasm = wasm_filter_config(yaml_docs["migration:envoy-config"])
    plugin = json.loads(wasm["configuration"]["value"])
    env = dict(wasm["vm_config"]["environment_variables"]["key_values"])
    key = keyring.get("docs-migration", "RS256")
    idp = module_idps.new([key])
    env["JWT_PUBLIC_KEY_URL"] = idp.jwks_url
    source = module_sources.new(master_key=plugin["record_source"]["master_key"])
    source.put_team("research", models=["gpt-4o", "gpt-4o-mini"])
    source.put_team("marketing", models=["gpt-4o-mini"])
    proxy = module_envoys.scenario(
        "docs-migration", jwks=[idp], plugin_config=plugin, env=env, concurrency=2,
        clusters={plugin["record_source"]["cluster"]: (source.host, source.port)})
    return proxy, key, env


def test_the_migration_table_has_cases():
    assert len(CASES) >= 10, CASES
    assert {"credential", "request", "result"} <= set(CASES[0])


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{spans(c['request'])[0]}" for i, c in enumerate(CASES)])
def test_migration_example_behaves_as_documented(migration_proxy, case):
    proxy, key, env = migration_proxy
    credential = case["credential"]
    token = None
    if credential != "none":
        objects = [s for s in spans(credential) if s.startswith("{")]
        if objects:
            now = int(time.time())
            claims = {"iss": env["JWT_ISSUER"], "aud": env["JWT_AUDIENCE"], "iat": now, "exp": now + 600}
            claims.update(json.loads(objects[0]))
            if "expired" in credential:
                claims["iat"], claims["exp"] = now - 900, now - 120
            token = key.sign(claims)
        else:
            token = spans(credential)[0]
    method, path = spans(case["request"])[0].split(" ", 1)
    model = re.search(r"model `([^`]+)`", case["request"])
    kwargs: dict[str, Any] = {"method": method, "path": path}
    if model:
        kwargs["data"] = json.dumps({"model": model.group(1), "messages": [{"role": "user", "content": "hi"}]}).encode()
        kwargs["headers"] = {"content-type": "application/json"}
    reply: Reply = proxy.request(token, **kwargs)

    result = case["result"]
    result_spans = spans(result)
    status = int(result_spans[0])
    assert reply.status == status, f"{case}: got {reply!r}"
    copies = reply.upstream_copies()
    if status != 200:
        assert not copies, f"refused, yet the upstream saw it: {copies}"
        message = result_spans[1] if len(result_spans) > 1 else None
        if message:
            assert message.rstrip("…") in reply.json()["error"]["message"], reply
        return
    assert len(copies) == 1, copies
    seen = copies[0]["headers"]
    for span in result_spans[1:]:
        header = re.fullmatch(r"(x-[a-z-]+): (.+)", span)
        if header:
            assert seen.get(header.group(1)) == header.group(2), seen
    for absent in re.findall(r"without `([^`]+)`", result):
        assert absent not in seen, seen


# -- deploy/istio -------------------------------------------------------------------------


def test_istio_manifests_hold_together(yaml_docs):
    [plugin] = istio_objects(yaml_docs, "WasmPlugin")
    [envoy_filter] = istio_objects(yaml_docs, "EnvoyFilter")
    service_entries = istio_objects(yaml_docs, "ServiceEntry")
    [rule] = istio_objects(yaml_docs, "DestinationRule")
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = plugin["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["url"].startswith("oci://")
    assert spec.get("failStrategy", "FAIL_CLOSE") == "FAIL_CLOSE"
    selector = spec["selector"]["matchLabels"]
    assert selector
    # The WasmPlugin form is for configurations that never read the body.
    config = spec["pluginConfig"]
    jwtauth = config.get("general_settings", {}).get("litellm_jwtauth", {})
    assert not {"record_source", "teams", "users"} & set(config)
    assert not {"scope_mappings", "team_ids_jwt_field"} & set(jwtauth)
    assert "role_permissions" not in config.get("general_settings", {})

    extension, chain = envoy_filter["spec"]["configPatches"]
    assert envoy_filter["spec"]["workloadSelector"]["labels"] == selector
    assert extension["applyTo"] == "EXTENSION_CONFIG" and extension["patch"]["operation"] == "ADD"
    assert chain["applyTo"] == "HTTP_FILTER"
    assert chain["patch"]["value"]["name"] == extension["patch"]["value"]["name"]
    assert WASM_TYPE in chain["patch"]["value"]["config_discovery"]["type_urls"]
    wasm = extension["patch"]["value"]["typed_config"]["config"]
    assert wasm["allow_on_headers_stop_iteration"] is True
    assert wasm["vm_config"]["code"]["remote"]["http_uri"]["uri"] == spec["url"]
    filter_config = json.loads(wasm["configuration"]["value"])

    # Every external host has its cluster named in both plugin configurations.
    assert service_entries
    for entry in service_entries:
        for host in entry["spec"]["hosts"]:
            for port in entry["spec"]["ports"]:
                cluster = f"outbound|{port['number']}||{host}"
                for cfg in (config, filter_config):
                    assert cfg["clusters"].get(f"{host}:{port['number']}") == cluster, cfg["clusters"]
        assert rule["spec"]["host"] in entry["spec"]["hosts"]
    tls = rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]
    assert tls["mode"] == "SIMPLE" and tls["sni"] == rule["spec"]["host"]
    assert rule["spec"]["workloadSelector"]["matchLabels"] == selector


def test_istio_wasmplugin_configuration_loads(yaml_docs, tmp_path):
    [plugin] = istio_objects(yaml_docs, "WasmPlugin")
    # Istio hands pluginConfig to the filter as a JSON string.
    envoy_validate(plugin_bootstrap(json.dumps(plugin["spec"]["pluginConfig"])), tmp_path, "wasmplugin")


def test_istio_envoyfilter_wasm_config_loads(yaml_docs, tmp_path):
    """The EnvoyFilter's extension config, as Envoy gets it once istio-agent has fetched the
    module, is a valid Wasm filter config (`allow_on_headers_stop_iteration` included)."""
    [envoy_filter] = istio_objects(yaml_docs, "EnvoyFilter")
    value = envoy_filter["spec"]["configPatches"][0]["patch"]["value"]
    typed_config = copy.deepcopy(value["typed_config"])
    typed_config["config"]["vm_config"]["code"] = {"local": {"filename": str(harness.require_wasm())}}
    bootstrap = plugin_bootstrap({"public_keys": []})
    http_filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    http_filters[0] = {"name": value["name"], "typed_config": typed_config}
    envoy_validate(bootstrap, tmp_path, "envoyfilter")
