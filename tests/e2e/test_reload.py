"""Hot configuration reload and restarts: Envoy reads its listener — and with it the filter's
plugin configuration — from a file (LDS `path_config_source` + `watched_directory`), which the
tests replace atomically (write, then rename) while Envoy runs.

What Envoy 1.36 to 1.40 do, as these tests pin it down:
  * a good new plugin config is applied in place (`listener_in_place_updated`): the same
    process, the same port, new requests decided by the new config — including tokens the
    old config had verified and cached;
  * a plugin config the filter refuses (its `on_configure` returns false) fails Envoy's
    configuration canary ("Failed to configure base Wasm plugin"), so the LDS update is
    rejected (`listener_manager.lds.update_rejected`) whatever the Wasm `failure_policy`
    (FAIL_OPEN included): the listener and the old config stay in force, and the filter's
    critical log line names the offending field;
  * a restart with the same files serves as before; a restart with a refused config on disk
    brings up no listener at all (connections refused — closed, not open) until the file is
    fixed.

One Envoy per test, `--concurrency 2`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import pytest
import requests

import harness
import jwt_fixtures as jf

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
UPDATE_TIMEOUT = 10.0
CHAT = "/v1/chat/completions"


@functools.lru_cache(maxsize=None)
def envoy_version(envoy_bin: str) -> tuple[int, ...]:
    """`envoy --version` (`.../1.36.4/Clean/RELEASE/BoringSSL`) as (1, 36, 4)."""
    out = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"/(\d+)\.(\d+)\.(\d+)/", out)
    assert match, f"no version in `{envoy_bin} --version`: {out!r}"
    return tuple(int(part) for part in match.groups())


# -- an Envoy whose listener comes from a watched file ------------------------------------


def _plugin_config_of(listener: Mapping[str, Any]) -> dict:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["http_filters"][0]["typed_config"]["config"]


class LdsEnvoy:
    """harness.render_bootstrap()'s config with the listener moved into `lds/lds.json`."""

    def __init__(self, factory, name: str, *, plugin_config: Mapping[str, Any] | str,
                 clusters: Mapping[str, tuple[str, int]], failure_policy: str | None = None,
                 listener_port: int = 0) -> None:
        self.factory = factory
        self.name = name
        self.clusters = dict(clusters)
        self.failure_policy = failure_policy
        self.listener_port = listener_port
        self.workdir: Path = factory.workdir(name)
        self.lds_dir = self.workdir / "lds"
        self.lds_dir.mkdir()
        self.lds_path = self.lds_dir / "lds.json"
        self.bootstrap = self._render(plugin_config)
        listener = self.bootstrap["static_resources"].pop("listeners")[0]
        self.bootstrap["node"] = {"id": name, "cluster": "llm-jwt-auth-e2e"}
        self.bootstrap["dynamic_resources"] = {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": str(self.lds_path), "watched_directory": {"path": str(self.lds_dir)}},
        }}
        self._write(listener)
        self.envoy: harness.Envoy | None = None
        self.generation = 0

    def _render(self, plugin_config: Mapping[str, Any] | str) -> dict:
        config = harness.render_bootstrap(upstream_port=self.factory.upstream.port, plugin_config=plugin_config,
                                          wasm=harness.require_wasm(), jwks_clusters=self.clusters,
                                          listener_port=self.listener_port)
        if self.failure_policy is not None:
            _plugin_config_of(config["static_resources"]["listeners"][0])["failure_policy"] = self.failure_policy
        return config

    def _write(self, listener: Mapping[str, Any]) -> None:
        # Envoy watches the directory for a rename onto the file: a half-written file is never seen.
        tmp = self.lds_dir / ".lds.json.tmp"
        tmp.write_text(json.dumps({"version_info": str(time.time_ns()),
                                   "resources": [{"@type": LISTENER_TYPE, **listener}]}))
        os.rename(tmp, self.lds_path)

    def start(self, *, wait: bool = True) -> harness.Envoy:
        self.generation += 1
        # A drain time, as every real deployment has (Envoy's default is 600 s): with 0, the
        # in-place update closes the old filter chain's connections at once, and a request in
        # flight on one of them fails with a connection error (seen on 1.36 and 1.39 under load;
        # the upstream saw a broken pipe) — Envoy cutting it, not the filter deciding it.
        envoy = harness.Envoy(copy.deepcopy(self.bootstrap), name=f"{self.name}-{self.generation}", concurrency=2,
                              drain_time_s=5,
                              workdir=self.workdir / f"run-{self.generation}")
        self.factory.track(envoy)
        self.envoy = envoy.start(wait=wait)
        return envoy

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()

    def lds(self) -> dict[str, int]:
        """The `listener_manager.*` stats (filtered by the admin: the full dump can be slow on a
        loaded machine; a slow answer is retried)."""
        assert self.envoy is not None
        deadline = time.monotonic() + UPDATE_TIMEOUT
        while True:
            try:
                status, body = self.envoy.admin_get("/stats?format=json&filter=%5Elistener_manager%5C.")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
        assert status == 200, body[:300]
        return {s["name"]: s["value"] for s in json.loads(body).get("stats", []) if "value" in s}

    def push(self, plugin_config: Mapping[str, Any] | str) -> str:
        """Replace the listener with one carrying `plugin_config`; "accepted" or "rejected"
        once Envoy has handled the update."""
        before = self.lds()
        self._write(self._render(plugin_config)["static_resources"]["listeners"][0])
        deadline = time.monotonic() + UPDATE_TIMEOUT
        while time.monotonic() < deadline:
            now = self.lds()
            for outcome, stat in (("accepted", "listener_manager.lds.update_success"),
                                  ("rejected", "listener_manager.lds.update_rejected")):
                if now.get(stat, 0) > before.get(stat, 0):
                    return outcome
            time.sleep(0.05)
        raise AssertionError(f"Envoy did not take up the new LDS file within {UPDATE_TIMEOUT}s: {self.lds()}")

    def active_plugin_config(self) -> dict:
        """The plugin configuration of the listener Envoy is serving (admin /config_dump)."""
        assert self.envoy is not None
        status, body = self.envoy.admin_get("/config_dump?resource=dynamic_listeners")
        assert status == 200, body[:500]
        for entry in json.loads(body)["configs"]:
            if entry.get("name") == "ingress" and "active_state" in entry:
                value = _plugin_config_of(entry["active_state"]["listener"])["configuration"]["value"]
                return json.loads(value)
        raise AssertionError(f"no active ingress listener in the config dump: {body[:1000]}")

    def request(self, token: str | None, path: str = "/v1/models", **kwargs: Any) -> requests.Response:
        assert self.envoy is not None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return requests.request(kwargs.pop("method", "GET"), self.envoy.url + path, headers=headers, timeout=10,
                                **kwargs)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("reload-rs256", "RS256")


@pytest.fixture(scope="module")
def other_key(keyring):
    return keyring.get("reload-es256", "ES256")


@pytest.fixture()
def idp(idps, key):
    return idps.new([key])


@pytest.fixture()
def make(envoys, idp):
    def build(name: str, plugin_config: Mapping[str, Any], *, extra_idps=(), sources=(), **kwargs: Any) -> LdsEnvoy:
        clusters = {s.authority: (s.host, s.port) for s in (idp, *extra_idps, *sources)}
        return LdsEnvoy(envoys, name, plugin_config=plugin_config, clusters=clusters, **kwargs)

    return build


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(idp, **fields: Any) -> dict:
    return {"public_key_url": idp.jwks_url, **fields}


def token_for(key, sub: str = "alice", **claims: Any) -> str:
    return key.sign(jf.claims(sub, **claims))


def decision(reply: requests.Response) -> tuple[int, str | None]:
    return reply.status_code, reply.headers.get("x-llm-jwt-auth-reason")


def wait_for(lds: LdsEnvoy, token: str, expected: tuple[int, str | None], allowed: set, path: str = "/v1/models",
             timeout: float = UPDATE_TIMEOUT) -> None:
    """Poll until `token` gets `expected`; every other answer on the way must be in `allowed`
    (the old config's decision): an update may take a moment to reach both workers."""
    deadline = time.monotonic() + timeout
    while True:
        got = decision(lds.request(token, path=path))
        if got == expected:
            return
        assert got in allowed, f"answer {got} is neither the old decision {allowed} nor the new one {expected}"
        assert time.monotonic() < deadline, f"still {got} {timeout}s after the update, expected {expected}"
        time.sleep(0.05)


class Traffic:
    """Requests in a background thread while the config changes: each token must always get
    one of the decisions listed for it (no 503, no reset, nothing in between)."""

    def __init__(self, lds: LdsEnvoy, cases: Mapping[str, set]) -> None:
        self.lds = lds
        self.cases = dict(cases)
        self.seen: Counter = Counter()
        self.wrong: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for token, allowed in self.cases.items():
                try:
                    got = decision(self.lds.request(token))
                except requests.RequestException as exc:
                    got = (0, type(exc).__name__)
                self.seen[got] += 1
                if got not in allowed:
                    self.wrong.append(got)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def check(self) -> None:
        assert sum(self.seen.values()) >= len(self.cases), f"no background traffic ran: {self.seen}"
        assert not self.wrong, f"answers outside the old/new decisions during the reload: {Counter(self.wrong)}"


OK = (200, None)
AUDIENCE = (401, "audience")


# ==========================================================================================
# (a) a new config applies to new requests, without a restart
# ==========================================================================================


def test_audience_change_applies_in_place_and_cached_tokens_follow_it(make, idp, key):
    lds = make("reload-audience", config(idp, audience="aud-1"))
    envoy = lds.start()
    pid, port = envoy.proc.pid, envoy.listener_port
    old_token = token_for(key, aud="aud-1")
    new_token = token_for(key, aud="aud-2")
    assert decision(lds.request(old_token)) == OK  # now in the verified-token cache
    assert decision(lds.request(new_token)) == AUDIENCE

    both = token_for(key, "both", aud=["aud-1", "aud-2"])
    forged = jf.forged_token(key, jf.claims("forged", aud=["aud-1", "aud-2"]))
    with Traffic(lds, {both: {OK}, forged: {(401, "bad_signature")}, None: {(401, "missing_token")}}) as traffic:
        assert lds.push(config(idp, audience="aud-2")) == "accepted"
        wait_for(lds, new_token, OK, {AUDIENCE})
        wait_for(lds, old_token, AUDIENCE, {OK})
        time.sleep(0.3)
    traffic.check()

    assert lds.active_plugin_config()["audience"] == "aud-2"
    assert envoy.poll() is None and envoy.proc.pid == pid, "Envoy restarted"
    assert envoy.listener_port == port
    stats = lds.lds()
    assert stats.get("listener_manager.listener_in_place_updated", 0) >= 1, stats
    for _ in range(5):  # settled: every new request, on either worker, follows the new config
        assert decision(lds.request(new_token)) == OK
        assert decision(lds.request(old_token)) == AUDIENCE


def test_admin_scope_change_applies_in_place(make, idp, key):
    lds = make("reload-admin-scope", config(idp))
    lds.start()
    default_admin = token_for(key, "root", scope="litellm_proxy_admin")
    gateway_admin = token_for(key, "ops", scope="gw.admin")
    assert_forwarded_response(lds.request(default_admin, path="/key/generate", method="POST"), "root")
    assert decision(lds.request(gateway_admin, path="/key/generate", method="POST")) == (401, "denied")

    scoped = config(idp, general_settings={"litellm_jwtauth": {"admin_jwt_scope": "gw.admin"}})
    assert lds.push(scoped) == "accepted"
    wait_for(lds, gateway_admin, OK, {(401, "denied")}, path="/key/generate")
    wait_for(lds, default_admin, (401, "denied"), {OK}, path="/key/generate")
    assert_forwarded_response(lds.request(gateway_admin, path="/key/generate", method="POST"), "ops")


def assert_forwarded_response(reply: requests.Response, sub: str) -> None:
    assert reply.status_code == 200, (reply.status_code, reply.text[:300])
    headers = reply.json()["echo"]["headers"]
    assert headers.get("x-litellm-user-id") == sub and headers.get("x-litellm-user-role") == "proxy_admin", headers


def test_key_source_change_stops_accepting_the_old_keys(make, idps, idp, key, other_key):
    """Moving to another IdP: tokens of the old keys — even ones verified and cached a moment
    ago — are refused, the new IdP's tokens accepted."""
    new_idp = idps.new([other_key])
    lds = make("reload-keys", config(idp), extra_idps=[new_idp])
    lds.start()
    old_token, new_token = token_for(key, "old"), token_for(other_key, "new")
    assert decision(lds.request(old_token)) == OK
    assert decision(lds.request(new_token))[0] == 401

    assert lds.push(config(new_idp)) == "accepted"
    wait_for(lds, new_token, OK, {(401, "unknown_kid"), (401, "bad_signature")})
    wait_for(lds, old_token, (401, "unknown_kid"), {OK})
    assert new_idp.fetch_count >= 1


def test_static_team_removed_from_the_config_is_refused(make, idp, key):
    teams = [{"team_id": "team-kept"}, {"team_id": "team-dropped"}]
    jwtauth = {"general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team_id"}}}
    lds = make("reload-teams", config(idp, teams=teams, **jwtauth))
    lds.start()
    kept, dropped = token_for(key, team_id="team-kept"), token_for(key, team_id="team-dropped")
    assert decision(lds.request(kept)) == OK
    assert decision(lds.request(dropped)) == OK

    assert lds.push(config(idp, teams=teams[:1], **jwtauth)) == "accepted"
    wait_for(lds, dropped, (401, "denied"), {OK})
    assert decision(lds.request(kept)) == OK


def test_record_source_change_is_not_answered_from_the_old_sources_cache(make, sources, idp, key):
    old_src, new_src = sources.new(master_key="sk-master"), sources.new(master_key="sk-master")
    old_src.put_team("team-moved")
    new_src.put_team("team-moved", blocked=True)

    def with_source(src) -> dict:
        return config(idp, record_source={"type": "litellm", "url": src.url, "master_key": "sk-master", "ttl": 60},
                      general_settings={"litellm_jwtauth": {"team_id_jwt_field": "team_id"}})

    lds = make("reload-source", with_source(old_src), sources=[old_src, new_src])
    lds.start()
    token = token_for(key, team_id="team-moved")
    assert decision(lds.request(token)) == OK
    assert lds.push(with_source(new_src)) == "accepted"
    wait_for(lds, token, (401, "denied"), {OK}, timeout=5.0)
    assert new_src.count("/team/info?team_id=team-moved") >= 1


# ==========================================================================================
# (b) a refused config: the update is rejected, the old config stays in force
# ==========================================================================================

BAD_CONFIGS: dict[str, tuple[Any, str]] = {
    "unknown-field": (lambda idp: config(idp, audience="aud-2", bogus_field_xyz=True), "bogus_field_xyz"),
    "jwks-url-not-a-url": (lambda idp: {"public_key_url": "not a url", "audience": "aud-2"}, "public_key_url"),
    "wrong-type": (lambda idp: config(idp, audience="aud-2", leeway="soon"), "leeway"),
    "record-source-without-master-key": (
        lambda idp: config(idp, audience="aud-2", record_source={"type": "litellm", "url": idp.base_url},
                           general_settings={"litellm_jwtauth": {"team_id_jwt_field": "team_id"}}),
        "record_source.master_key"),
    "litellm-setting-misspelt": (
        lambda idp: config(idp, audience="aud-2", general_settings={"litellm_jwtauth": {"team_id_jwt_feld": "t"}}),
        "team_id_jwt_feld"),
    "not-json": (lambda idp: '{"public_key_url": ', "invalid plugin configuration"),
}


@pytest.mark.parametrize("failure_policy", [None, "FAIL_OPEN"], ids=["default-policy", "failure_policy-FAIL_OPEN"])
@pytest.mark.parametrize("bad,mentions", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_refused_config_is_rejected_and_the_old_one_stays_in_force(make, idp, key, bad, mentions, failure_policy):
    lds = make("reload-bad", config(idp, audience="aud-1"), failure_policy=failure_policy)
    envoy = lds.start()
    pid = envoy.proc.pid
    old_token, new_token = token_for(key, aud="aud-1"), token_for(key, aud="aud-2")
    forged = jf.forged_token(key, jf.claims("forged", aud="aud-1"))
    before = lds.lds()

    with Traffic(lds, {old_token: {OK}, new_token: {AUDIENCE}, forged: {(401, "bad_signature")},
                       None: {(401, "missing_token")}}) as traffic:
        assert lds.push(bad(idp)) == "rejected"
        time.sleep(0.5)
    traffic.check()

    after = lds.lds()
    assert after.get("listener_manager.lds.update_success") == before.get("listener_manager.lds.update_success"), after
    assert after.get("listener_manager.total_listeners_active") == 1, after
    assert lds.active_plugin_config() == config(idp, audience="aud-1")
    assert envoy.poll() is None and envoy.proc.pid == pid
    for _ in range(5):
        assert decision(lds.request(old_token)) == OK
        assert decision(lds.request(new_token)) == AUDIENCE
    log = envoy.log_text()
    refusal = [line for line in log.splitlines() if "[critical][wasm]" in line and "invalid plugin configuration" in line]
    assert refusal and mentions in refusal[-1], f"no critical line from the filter naming {mentions!r}:\n{log[-4000:]}"
    # Envoy's own word for the rejection: the file subscription's line on every supported
    # version; the LDS API's line only from 1.39 on (1.36-1.38 do not write it).
    assert ("Filesystem config update rejected: Error adding/updating listener(s) ingress: "
            "Unable to create Wasm plugin llm_jwt_auth") in log, log[-4000:]
    if envoy_version(envoy.envoy_bin) >= (1, 39):
        assert "lds: listener 'ingress' config rejected" in log, log[-4000:]

    # The next good config is taken as usual.
    assert lds.push(config(idp, audience="aud-2")) == "accepted"
    wait_for(lds, new_token, OK, {AUDIENCE})


# ==========================================================================================
# (c) restarts
# ==========================================================================================


def test_restart_with_the_same_config_serves_again(make, idp, key):
    lds = make("reload-restart", config(idp, audience="aud-1"))
    first = lds.start()
    first_pid = first.proc.pid
    old_token, new_token = token_for(key, aud="aud-1"), token_for(key, aud="aud-2")
    assert lds.push(config(idp, audience="aud-2")) == "accepted"
    wait_for(lds, new_token, OK, {AUDIENCE})
    lds.stop()
    assert first.returncode == 0, f"Envoy did not stop cleanly: {first.returncode}"

    second = lds.start()
    assert second.proc.pid != first_pid
    assert lds.active_plugin_config()["audience"] == "aud-2"  # the file on disk: the last accepted push
    assert decision(lds.request(new_token)) == OK
    assert decision(lds.request(old_token)) == AUDIENCE
    reply = lds.request(None)
    assert decision(reply) == (401, "missing_token")


def test_restart_with_a_refused_config_on_disk_serves_nothing_until_fixed(make, idp, key):
    """After a rejected push the file holds the refused config. A restart then has no listener
    at all — connections are refused, nothing is let through — until the file is fixed."""
    port = free_port()  # fixed, so "nothing listens there" means something
    lds = make("reload-restart-bad", config(idp, audience="aud-1"), listener_port=port)
    lds.start()
    assert lds.push(config(idp, audience="aud-2", bogus_field_xyz=True)) == "rejected"
    lds.stop()

    second = lds.start(wait=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert second.poll() is None, f"Envoy exited: {second.log_tail()}"
        if second.admin_address_path.exists() and second.admin_address_path.read_text().strip():
            second.admin_url = f"http://{second.admin_address_path.read_text().strip()}"
            try:
                stats = lds.lds()
            except OSError:  # admin not answering yet
                stats = {}
            if stats.get("listener_manager.lds.update_rejected", 0) >= 1:
                break
        time.sleep(0.1)
    else:
        pytest.fail(f"the restarted Envoy never rejected the config on disk:\n{second.log_tail()}")
    status, body = second.admin_get("/listeners?format=json")
    assert status == 200 and not json.loads(body).get("listener_statuses"), body
    assert "bogus_field_xyz" in second.log_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)

    assert lds.push(config(idp, audience="aud-2")) == "accepted"
    second.wait_ready(timeout=UPDATE_TIMEOUT)
    assert second.listener_port == port
    assert decision(lds.request(token_for(key, aud="aud-2"))) == OK
    assert decision(lds.request(token_for(key, aud="aud-1"))) == AUDIENCE
