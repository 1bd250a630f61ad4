"""deploy/observability/ and the Istio stats tag (deploy/istio/stats-tags.yaml):

* every metric the Grafana dashboard and the alert rules query is one the filter defines
  (src/shell/metrics.rs), with Envoy's Prometheus names (`llm_jwt_auth_<name>`, the `reason`
  label for denials, `_bucket`/`_sum`/`_count` for the histogram only), every reason they name is
  one the filter counts (src/error.rs), and the dashboard graphs every metric;
* the alert rules pass `promtool check rules`, their unit tests (alerts.test.yaml) pass
  `promtool test rules`, and the dashboard's queries parse (as recording rules, Grafana's
  variables filled in);
* the Istio custom bootstrap carries envoy.yaml's tag, and a real Envoy given it with
  `--config-yaml` (as istio-agent does) over an Istio-like stats configuration labels denials;
* the README's metrics table against the code (its known gaps are listed here and reported).

promtool comes from Debian's prometheus package, unpacked into target/ by `make e2e`
(mk/e2e-tools.mk); set PROMTOOL to use another one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

import envoy_yaml
import harness
import jwt_fixtures as jf
from checks import send
from test_docs_examples import parse_yaml, yaml_documents

ROOT = harness.REPO_ROOT
OBS = ROOT / "deploy" / "observability"
DASHBOARD = OBS / "grafana-dashboard.json"
ALERTS = OBS / "alerts.yaml"
ALERT_TESTS = OBS / "alerts.test.yaml"
ISTIO_TAGS = ROOT / "deploy" / "istio" / "stats-tags.yaml"
ISTIO_PATCH = ROOT / "deploy" / "istio" / "stats-tags-patch.yaml"
PREFIX = "llm_jwt_auth_"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# -- what the filter defines ------------------------------------------------------------------


def code_metrics() -> dict[str, str]:
    """Metric name (without `llm_jwt_auth.`) → counter | histogram, from src/shell/metrics.rs;
    the per-reason denial counter is `requests_denied` (its reason becomes a label)."""
    text = (ROOT / "src" / "shell" / "metrics.rs").read_text()
    names = dict.fromkeys(re.findall(r'Metric::\w+ => "(\w+)"', text), "counter")
    assert re.search(r'Metric::Denied\(reason\) => return format!\("llm_jwt_auth\.requests_denied\.\{reason\}"\)', text), \
        "metrics.rs: the denial counter's name changed; update this test and the stats tag"
    names["requests_denied"] = "counter"
    assert 'Metric::Decision { denied, labels } => return decision_name(denied, labels)' in text, \
        "metrics.rs: the decisions series' name changed; update this test and the stats tags"
    names["decisions"] = "counter"
    for variant in re.findall(r"Metric::(\w+) => MetricType::Histogram", text):
        name = re.search(rf'Metric::{variant} => "(\w+)"', text)
        assert name, variant
        names[name.group(1)] = "histogram"
    assert len(names) >= 16 and names["verify_us"] == "histogram", names
    return names


def code_reasons() -> set[str]:
    text = (ROOT / "src" / "error.rs").read_text()
    body = text[text.index("pub fn reason(&self)"):]
    body = body[:body.index("\n    }\n")]
    reasons = set(re.findall(r'=> "(\w+)"', body))
    assert {"expired", "keys_unavailable", "records_unavailable", "route_rule"} <= reasons, reasons
    return reasons


# -- what the dashboard and the alerts query -------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    out = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
            walk(panel.get("panels", []))

    d = dashboard()
    walk(d["panels"])
    for var in d["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable {var['name']}", var["query"]["query"] if isinstance(var["query"], dict) else var["query"]))
    return out


@pytest.fixture(scope="module")
def yaml_files(tmp_path_factory) -> dict[str, object]:
    """alerts.yaml, alerts.test.yaml and the Istio files, read by Envoy (the suite has no YAML library)."""
    docs = {}
    for path in (ALERTS, ALERT_TESTS, ISTIO_TAGS, ISTIO_PATCH):
        [text] = yaml_documents(path)
        docs[path.name] = text
    return parse_yaml(docs, tmp_path_factory.mktemp("obs-yaml"))


def alert_rules(yaml_files) -> list[dict]:
    return [rule for group in yaml_files["alerts.yaml"]["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(llm_jwt_auth_\w+)", expr))


def reason_values(expr: str) -> set[str]:
    out = set()
    for op, value in re.findall(r'reason\s*(=~|=|!=|!~)\s*"([^"]*)"', expr):
        out |= set(value.split("|")) if "~" in op else {value}
    return out


def check_queried(where: str, expr: str, metrics: dict[str, str], reasons: set[str]) -> set[str]:
    """The base metric names `expr` reads; asserts each exists as Envoy exposes it."""
    used = set()
    for name in metric_names(expr):
        base = name[len(PREFIX):]
        suffix = next((s for s in HISTOGRAM_SUFFIXES if base.endswith(s) and base[:-len(s)] in metrics), "")
        if suffix:
            base = base[:-len(suffix)]
            assert metrics[base] == "histogram", f"{where}: {name}: {base} is a counter, it has no {suffix}"
        assert base in metrics, f"{where}: {name} is not a metric the filter defines (src/shell/metrics.rs)"
        if metrics[base] == "histogram":
            assert suffix, f"{where}: the histogram {name} is queried without _bucket/_sum/_count"
        used.add(base)
    if "reason" in expr:
        assert "llm_jwt_auth_requests_denied" in expr or "llm_jwt_auth_decisions" in expr, \
            f"{where}: a reason label on a metric that has none"
    for label in ("route_group", "issuer", "outcome"):
        if label in expr:
            assert "llm_jwt_auth_decisions" in expr, f"{where}: a {label} label on a metric that has none"
    unknown = reason_values(expr) - reasons
    assert not unknown, f"{where}: reasons {unknown} are not reasons the filter counts (src/error.rs)"
    return used


def test_dashboard_queries_only_metrics_the_filter_defines_and_graphs_them_all():
    metrics, reasons = code_metrics(), code_reasons()
    used: set[str] = set()
    for where, expr in dashboard_queries():
        used |= check_queried(where, expr, metrics, reasons)
    assert used == set(metrics), f"metrics the dashboard does not graph: {sorted(set(metrics) - used)}"


def test_alerts_query_only_metrics_the_filter_defines(yaml_files):
    metrics, reasons = code_metrics(), code_reasons()
    rules = alert_rules(yaml_files)
    names = {r["alert"] for r in rules}
    assert names == {"LlmJwtAuthProviderUnavailable", "LlmJwtAuthDenialSpike", "LlmJwtAuthJwksFetchFailing",
                     "LlmJwtAuthRecordFetchFailing", "LlmJwtAuthVerifySlow", "LlmJwtAuthMisconfigured"}, names
    used: set[str] = set()
    for rule in rules:
        used |= check_queried(f"alert {rule['alert']}", rule["expr"], metrics, reasons)
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
    assert {"requests_denied", "jwks_fetch_failure", "record_fetch_failure", "verify_us", "misconfigured"} <= used
    # The provider-unavailable alert watches every 503 of a dependency outage.
    [provider] = [r for r in rules if r["alert"] == "LlmJwtAuthProviderUnavailable"]
    assert reason_values(provider["expr"]) == {"keys_unavailable", "userinfo_unavailable", "records_unavailable"}


def test_every_alert_has_a_unit_test(yaml_files):
    tested = {t["alertname"] for case in yaml_files["alerts.test.yaml"]["tests"] for t in case["alert_rule_test"]}
    assert tested == {r["alert"] for r in alert_rules(yaml_files)}
    fired = {t["alertname"] for case in yaml_files["alerts.test.yaml"]["tests"] for t in case["alert_rule_test"]
             if t.get("exp_alerts")}
    assert fired == tested, "each alert is shown firing, not only staying quiet"


# -- promtool ----------------------------------------------------------------------------------


def promtool() -> str:
    for candidate in (os.environ.get("PROMTOOL"), str(ROOT / "target/observability-tools/usr/bin/promtool"),
                      shutil.which("promtool")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("promtool not found: `make e2e` (or `make e2e-tools`) unpacks it from Debian's prometheus "
                "package into target/observability-tools/; or set PROMTOOL", pytrace=False)


def run_promtool(*args: str, cwd: Path = OBS) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def test_alert_rules_pass_promtool_check():
    assert "SUCCESS: 6 rules found" in run_promtool("check", "rules", ALERTS.name)


def test_alert_rules_unit_tests_pass():
    assert "SUCCESS" in run_promtool("test", "rules", ALERT_TESTS.name)


def test_dashboard_queries_parse(tmp_path):
    """Each panel query as a recording rule, Grafana's variables replaced by what they become."""
    lines = ["groups:", "- name: dashboard", "  rules:"]
    for i, (where, expr) in enumerate(dashboard_queries()):
        if expr.startswith("label_values("):
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", expr)
            assert m and m.group(1).startswith(PREFIX), (where, expr)
            expr = m.group(1)
        promql = (expr.replace("$__rate_interval", "1m").replace("$__range", "6h")
                  .replace('"$instance"', '".*"'))
        assert "$" not in promql, f"{where}: a Grafana variable this test does not know: {expr}"
        lines += [f"  - record: dashboard:q{i}", f"    expr: {json.dumps(promql)}"]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text("\n".join(lines) + "\n")
    run_promtool("check", "rules", str(path), cwd=tmp_path)


def test_dashboard_is_importable_json():
    d = dashboard()
    assert d["uid"] == "llm-jwt-auth" and d["title"] == "llm-jwt-auth"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for panel in d["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


# -- the stats tag: envoy.yaml and Istio -------------------------------------------------------


def envoy_yaml_stats_tags() -> list[dict]:
    text = envoy_yaml.text()
    m = re.search(r"^stats_config:\n  stats_tags:\n((?:  - .*\n(?:    .*\n)*)+)", text, re.M)
    assert m, "envoy.yaml has no stats_config.stats_tags"
    tags = []
    for item in re.finditer(r"  - tag_name: (\w+)\n    regex: '([^']+)'", m.group(1)):
        tags.append({"tag_name": item.group(1), "regex": item.group(2)})  # single-quoted YAML: as written
    return tags


def test_istio_custom_bootstrap_carries_envoy_yamls_tag(yaml_files):
    configmap = yaml_files["stats-tags.yaml"]
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["namespace"] == "istio-ingress"
    custom = json.loads(configmap["data"]["custom_bootstrap.json"])
    assert custom == {"stats_config": {"stats_tags": envoy_yaml_stats_tags()}}
    annotations = yaml_files["stats-tags-patch.yaml"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/bootstrapOverride"] == configmap["metadata"]["name"]
    assert "wasmcustom.llm_jwt_auth" in annotations["proxy.istio.io/config"]


# Istio's bootstrap, the part that matters here (tools/packaging/common/envoy_bootstrap.json):
# no default tags, its own tag list, and a stats matcher that keeps only some prefixes.
ISTIO_LIKE_STATS_CONFIG = {
    "use_all_default_tags": False,
    "stats_tags": [
        {"tag_name": "cluster_name", "regex": "^cluster(\\.(.+);)"},
        {"tag_name": "wasm_filter", "regex": "(wasm_filter\\.(.+?)\\.)"},
    ],
    "stats_matcher": {"inclusion_list": {"patterns": [
        {"prefix": p} for p in ("reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc",
                                "wasm", "component", "istio")]}},
}


def test_istio_custom_bootstrap_labels_denials_in_envoy(yaml_files, upstream, idps, keyring, tmp_path):
    """As istio-agent starts Envoy: `-c <Istio's bootstrap> --config-yaml <custom_bootstrap.json>`."""
    key = keyring.get("observability-rs256", "RS256")
    idp = idps.new([key])
    config = harness.render_bootstrap(upstream_port=upstream.port, plugin_config={"public_key_url": idp.jwks_url},
                                      wasm=harness.require_wasm(), jwks_clusters={idp.authority: (idp.host, idp.port)})
    config["stats_config"] = ISTIO_LIKE_STATS_CONFIG
    custom = yaml_files["stats-tags.yaml"]["data"]["custom_bootstrap.json"]
    envoy = harness.Envoy(config, name="istio-stats-tags", workdir=tmp_path, extra_args=["--config-yaml", custom])
    try:
        envoy.start()
        assert send(envoy, None, upstream=upstream).status == 401                                   # missing_token
        for _ in range(2):
            assert send(envoy, key.sign(jf.claims("o-1", exp_in=-60, iat_in=-120)), upstream=upstream).status == 401
        assert send(envoy, key.sign(jf.claims("o-2")), upstream=upstream).status == 200
        deadline = time.monotonic() + 5
        while True:
            status, body = envoy.admin_get("/stats/prometheus")
            text = body.decode() if isinstance(body, bytes) else body
            if ('llm_jwt_auth_requests_denied{reason="expired"} 2' in text and "llm_jwt_auth_requests_allowed{} 1" in text) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ours = [line for line in text.splitlines() if "llm_jwt_auth_" in line and not line.startswith("#")]
        assert status == 200
        assert 'llm_jwt_auth_requests_denied{reason="missing_token"} 1' in ours, ours
        assert 'llm_jwt_auth_requests_denied{reason="expired"} 2' in ours, ours
        assert "llm_jwt_auth_requests_allowed{} 1" in ours, ours   # kept by Istio's `wasm` prefix
        status, body = envoy.admin_get("/config_dump")
        assert status == 200, body[:500]
        [bootstrap] = [c["bootstrap"] for c in json.loads(body)["configs"] if c["@type"].endswith("BootstrapConfigDump")]
        tags = [t["tag_name"] for t in bootstrap["stats_config"]["stats_tags"]]
        assert tags == ["cluster_name", "wasm_filter", "reason", "outcome", "route_group", "issuer"], tags  # appended
        # The decisions series with all four labels (the token of o-2 is the global keys').
        assert 'llm_jwt_auth_decisions{reason="expired",outcome="denied",route_group="llm_api",issuer="none"} 2' in ours, ours
        assert 'llm_jwt_auth_decisions{reason="missing_token",outcome="denied",route_group="llm_api",issuer="none"} 1' in ours, ours
        assert 'llm_jwt_auth_decisions{outcome="allowed",route_group="llm_api",issuer="default"} 1' in ours, ours
    finally:
        envoy.stop()


# -- the README's metrics table ----------------------------------------------------------------

#: Metrics the code defines that README.md's table may leave out: none.
README_TABLE_GAPS: set[str] = set()


def readme_metrics_table() -> tuple[set[str], set[str]]:
    """(metric names, denial reasons) of README.md's `## Metrics` table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names, reasons = set(), set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, _, rest = line[2:].partition(" | ")
        for name in re.findall(r"`([\w.<>]+)`", first):
            if name == "requests_denied.<reason>":
                names.add("requests_denied")
                # The reasons are the cell's backticked words, not those of its asides "(per-route `rules`)".
                reasons |= set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", rest.split(" | ")[1])))
            else:
                names.add(name)
    return names, reasons


def test_readme_metrics_table_matches_the_code():
    listed, reasons = readme_metrics_table()
    metrics = code_metrics()
    assert not listed - set(metrics), f"README lists metrics the code does not define: {listed - set(metrics)}"
    missing = set(metrics) - listed
    assert missing == README_TABLE_GAPS, (
        f"README.md's metrics table lacks {sorted(missing)} (known gaps: {sorted(README_TABLE_GAPS)}); "
        "update README_TABLE_GAPS when the README changes")
    assert reasons == code_reasons(), (reasons ^ code_reasons())


def test_decisions_are_labelled_by_route_group_and_the_issuer_that_verified_the_token(upstream, idps, keyring, tmp_path):
    """envoy.yaml's stats tags on a gateway with a configured issuer next to the global keys."""
    global_key = keyring.get("observability-rs256", "RS256")
    issuer_key = keyring.get("observability-issuer", "ES256")
    idp, issuer_idp = idps.new([global_key]), idps.new([issuer_key])
    iss = "https://login.example.com/tenant-a/v2.0"
    config = harness.render_bootstrap(
        upstream_port=upstream.port, wasm=harness.require_wasm(),
        plugin_config={"public_key_url": idp.jwks_url,
                       "issuers": [{"issuer": iss, "jwks_url": issuer_idp.jwks_url, "audience": "api"}]},
        jwks_clusters={idp.authority: (idp.host, idp.port), issuer_idp.authority: (issuer_idp.host, issuer_idp.port)})
    config["stats_config"] = {"stats_tags": envoy_yaml_stats_tags()}
    envoy = harness.Envoy(config, name="decision-labels", workdir=tmp_path)
    try:
        envoy.start()
        assert send(envoy, global_key.sign(jf.claims("g-1")), upstream=upstream).status == 200           # llm_api
        assert send(envoy, issuer_key.sign(jf.claims("i-1", iss=iss, aud="api")), upstream=upstream,
                    path="/key/info").status == 200                                                        # info
        assert send(envoy, issuer_key.sign(jf.claims("i-2", iss=iss, aud="other")), upstream=upstream).status == 401
        assert send(envoy, None, upstream=upstream, path="/key/generate").status == 401                    # management
        expected = [
            'llm_jwt_auth_decisions{outcome="allowed",route_group="llm_api",issuer="default"} 1',
            'llm_jwt_auth_decisions{outcome="allowed",route_group="info",issuer="login_example_com_tenant_a_v2_0"} 1',
            'llm_jwt_auth_decisions{reason="audience",outcome="denied",route_group="llm_api",issuer="none"} 1',
            'llm_jwt_auth_decisions{reason="missing_token",outcome="denied",route_group="management",issuer="none"} 1',
        ]
        deadline = time.monotonic() + 5
        while True:
            status, body = envoy.admin_get("/stats/prometheus")
            ours = [line for line in body.splitlines() if line.startswith("llm_jwt_auth_decisions")]
            if all(e in ours for e in expected) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
        assert sorted(ours) == sorted(expected), ours  # nothing else: no series per raw path or token
        status, body = envoy.admin_get("/stats?filter=decisions")
        assert "wasmcustom.llm_jwt_auth.decisions.allowed.route_group.info.issuer.login_example_com_tenant_a_v2_0: 1" in body, body
    finally:
        envoy.stop()
