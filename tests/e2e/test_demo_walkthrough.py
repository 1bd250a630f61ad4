"""`make run`'s walkthrough, run as printed: scripts/run-demo.sh is started exactly as `make run`
starts it (demo IdP on 9090, echo upstream on 8080, Envoy with the repository's envoy.yaml on
10000 and 10001, admin on 9901 — the real ports, so they must be free: the test fails, naming
them, when they are not), every command it prints is parsed from its output and run in one bash
session (so `TOKEN=$(curl …)` carries over, as in a terminal), and each step's outcome is checked
against the table below and against what the step's own comment promises (its `-> <status>`,
its quoted texts, its `x-litellm-…: value` pairs). Then `/stats/prometheus` after this known
traffic: the denial reasons as a `reason` label (envoy.yaml's `stats_tags`). The commands are
also the ones docs/try-the-rules.md shows, in the same order. Last, Ctrl-C (SIGINT) stops
everything the script started. Needs `curl` (the printed commands use it) and the built wasm.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness

SCRIPT = harness.REPO_ROOT / "scripts" / "run-demo.sh"
DOC = harness.REPO_ROOT / "docs" / "try-the-rules.md"
PORTS = {9090: "demo IdP", 8080: "echo upstream", 10000: "teams gateway", 10001: "RBAC gateway",
         9901: "Envoy admin"}
TEAMS, RBAC, IDP, ADMIN = "http://127.0.0.1:10000", "http://127.0.0.1:10001", "http://127.0.0.1:9090", \
    "http://127.0.0.1:9901"
READY_LINE = "Press Ctrl-C to stop."


# -- what each step must do ------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    status: int
    url: str                                    # the gateway (or service) the step's last command calls
    identity: dict[str, str] | None = None      # 200 from the echo upstream: exactly these x-litellm-* headers
    error_type: str | None = None               # a denial: LiteLLM's error.type ...
    reason: str | None = None                   # ... the x-llm-jwt-auth-reason header ...
    message: str | None = None                  # ... and text error.message contains


def user(sub: str, **extra: str) -> dict[str, str]:
    headers = {"x-litellm-user-id": sub, "x-litellm-user-role": "internal_user"}
    headers.update({f"x-litellm-{k.replace('_', '-')}": v for k, v in extra.items()})
    return headers


EXPECTED: dict[int, Expect] = {
    1: Expect(200, TEAMS, user("alice", team_id="research", team_alias="Research")),
    2: Expect(401, TEAMS, error_type="team_model_access_denied", reason="forbidden_model",
              message="team not allowed to access model. This team can only access models=['gpt-4o-mini']. "
                      "Tried to access gpt-4o"),
    3: Expect(200, TEAMS, user("bob", team_id="demo-team")),
    4: Expect(400, TEAMS, error_type="budget_exceeded", reason="budget",
              message="Budget has been exceeded! Team=interns Current cost: 12.5, Max budget: 10.0"),
    5: Expect(401, TEAMS, error_type="auth_error", reason="denied",
              message="Authentication Error, Team=legacy is blocked. Update via `/team/unblock` if you're an admin."),
    6: Expect(200, TEAMS, user("alice", team_id="research", team_alias="Research", user_email="alice@example.com",
                               org_id="acme", end_user_id="customer-7")),
    7: Expect(200, TEAMS, {"x-litellm-user-id": "root", "x-litellm-user-role": "proxy_admin"}),
    8: Expect(401, TEAMS, error_type="auth_error", reason="denied",
              message="Authentication Error, Admin not allowed to access this route. Route=/v1/chat/completions, "
                      "Allowed Routes=['management_routes', 'spend_tracking_routes', "
                      "'global_spend_tracking_routes', 'info_routes']"),
    9: Expect(403, TEAMS, error_type="auth_error", reason="route_rule",
              message="route /team/info requires a proxy admin token"),
    10: Expect(200, RBAC, user("erin")),
    11: Expect(403, RBAC, error_type="auth_error", reason="forbidden",
               message="Role=internal_user not allowed to call route=/team/info. Allowed routes=['openai_routes']"),
    12: Expect(403, RBAC, error_type="auth_error", reason="forbidden",
               message="Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, "
                       "team, or user."),
    13: Expect(200, RBAC, user("erin")),
    14: Expect(403, RBAC, error_type="auth_error", reason="forbidden",
               message="The requested model 'gpt-4o' is not available for this API key, or the model name is "
                       "invalid."),
    15: Expect(401, TEAMS, error_type="expired_key", reason="expired", message="Token Expired"),
    16: Expect(401, TEAMS, error_type="auth_error", reason="bad_signature",
               message="Authentication Error, Validation fails: Signature verification failed"),
    17: Expect(401, TEAMS, error_type="auth_error", reason="missing_token",
               message="Authentication Error, No api key passed in."),
    18: Expect(200, TEAMS, {}),                  # public: the filter ran, no token, no identity
    19: Expect(200, ADMIN),                      # checked in test_denials_are_labelled_by_reason
    20: Expect(400, IDP),                        # checked in test_mint_refuses_unknown_parameters
}


# -- the demo, as make run starts it ---------------------------------------------------------


def busy_ports() -> list[int]:
    busy = []
    for port in PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the demo's servers do
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            busy.append(port)
        finally:
            s.close()
    return busy


class Demo:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        python = harness.REPO_ROOT / ".venv" / "bin" / "python"
        env = dict(os.environ, PYTHON=str(python) if python.exists() else sys.executable,
                   ENVOY=harness.find_envoy())
        # What `make run` runs after the build: PYTHON=$(PYTHON) scripts/run-demo.sh
        self.proc = subprocess.Popen([str(SCRIPT)], cwd=harness.REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        # Drain the output for as long as it runs (Envoy's access log goes there too).
        self._reader = threading.Thread(target=self._read, daemon=True, name="run-demo-output")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"scripts/run-demo.sh did not print {READY_LINE!r} "
                            f"(exit status {self.proc.returncode}):\n{self.output}", pytrace=False)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ctrl-C, as a person stops `make run`; the process group is killed if that fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture(scope="module")
def demo():
    if shutil.which("curl") is None:
        pytest.fail("the walkthrough's commands use curl, which is not installed (apt-get install curl)", pytrace=False)
    if not harness.DEFAULT_WASM.is_file():
        pytest.fail(f"envoy.yaml loads {harness.DEFAULT_WASM.relative_to(harness.REPO_ROOT)}, which does not exist: "
                    "build it first (make build)", pytrace=False)
    busy = busy_ports()
    if busy:
        pytest.fail("the demo's ports are in use on 127.0.0.1: "
                    + ", ".join(f"{p} ({PORTS[p]})" for p in busy)
                    + ". This test starts the demo exactly as `make run` does, on its real ports; stop whatever "
                      "holds them (another `make run` or `docker compose up`?) and run it again.", pytrace=False)
    d = Demo()
    try:
        d.wait_ready(90)
        yield d
    finally:
        d.stop()


# -- the printed commands --------------------------------------------------------------------


@dataclass
class Step:
    number: int
    comment: str
    commands: list[str] = field(default_factory=list)


STEP_START = re.compile(r"^# (\d+)\. (.*)$")


def walkthrough_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## "))  # the first section
    end = next(i for i, line in enumerate(lines) if line.strip() == READY_LINE)
    return lines[start:end]


def join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line + "\n"
        else:
            out.append(pending + line)
            pending = ""
    assert not pending, f"a command ends in a line continuation: {pending!r}"
    return out


def parse_steps(output: str) -> list[Step]:
    steps: list[Step] = []
    command_lines: list[str] = []

    def flush() -> None:
        if command_lines:
            assert steps, f"commands before the first numbered step: {command_lines}"
            steps[-1].commands.extend(join_continuations(command_lines))
            command_lines.clear()

    for line in walkthrough_lines(output):
        m = STEP_START.match(line)
        if m:
            flush()
            steps.append(Step(int(m.group(1)), m.group(2)))
        elif line.startswith("#    ") and steps and not steps[-1].commands and not command_lines:
            steps[-1].comment += " " + line[1:].strip()
        elif not line.strip() or line.startswith("#"):
            flush()
        else:
            command_lines.append(line)
    flush()
    return steps


@dataclass
class Ran:
    command: str
    output: str
    exit_code: int
    token: str | None  # $TOKEN after the command


def run_steps(steps: list[Step], workdir: Path) -> dict[int, list[Ran]]:
    """All commands in one bash session, in order, each one's output in its own file."""
    script = []
    for step in steps:
        for i, command in enumerate(step.commands):
            out = workdir / f"{step.number}.{i}"
            if ":9901/" in command:
                # A person takes longer than the filter's 100 ms metrics tick between two commands.
                script.append("sleep 0.5")
            script += [f"{{ {command}\n}} > '{out}.out' 2>&1", f"echo $? > '{out}.rc'",
                       f"printf '%s' \"${{TOKEN:-}}\" > '{out}.token'"]
    proc = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=180,
                          cwd=workdir)
    assert proc.returncode == 0, f"the walkthrough's bash session failed:\n{proc.stdout}\n{proc.stderr}"
    ran: dict[int, list[Ran]] = {}
    for step in steps:
        for i, command in enumerate(step.commands):
            out = workdir / f"{step.number}.{i}"
            ran.setdefault(step.number, []).append(Ran(
                command, (out.with_suffix(out.suffix + ".out")).read_text(),
                int((out.with_suffix(out.suffix + ".rc")).read_text()),
                (out.with_suffix(out.suffix + ".token")).read_text() or None))
    return ran


@pytest.fixture(scope="module")
def steps(demo) -> list[Step]:
    return parse_steps(demo.output)


@pytest.fixture(scope="module")
def ran(steps, tmp_path_factory) -> dict[int, list[Ran]]:
    return run_steps(steps, tmp_path_factory.mktemp("walkthrough"))


@dataclass
class Http:
    status: int
    headers: dict[str, str]
    body: str

    def json(self):
        return json.loads(self.body)


def http_reply(text: str) -> Http:
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    m = re.match(r"HTTP/1\.1 (\d{3})", lines[0]) if lines else None
    assert m, f"not an HTTP answer (the command should use curl -i):\n{text[:2000]}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Http(int(m.group(1)), headers, body)


# -- the checks ------------------------------------------------------------------------------


def test_the_walkthrough_has_the_steps_this_test_knows(steps):
    assert [s.number for s in steps] == sorted(EXPECTED), [(s.number, s.comment) for s in steps]
    for step in steps:
        assert step.commands, f"step {step.number} ({step.comment}) prints no command"
        status = re.search(r"-> (\d{3})", step.comment)
        assert status, f"step {step.number}'s comment does not say what happens (-> <status>): {step.comment}"
        assert int(status.group(1)) == EXPECTED[step.number].status, (step.number, step.comment)


def test_tokens_are_minted_fresh_not_printed(demo, steps):
    jwt_like = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")
    assert not jwt_like.search("\n".join(walkthrough_lines(demo.output))), "the walkthrough prints a literal token"
    mints = [c for s in steps for c in s.commands if c.startswith("TOKEN=")]
    assert len(mints) >= 10, mints
    for command in mints:
        assert re.fullmatch(r"TOKEN=\$\(curl -s 'http://127\.0\.0\.1:9090/mint\?[^']+'\)", command), command


@pytest.mark.parametrize("number", sorted(n for n, e in EXPECTED.items() if e.url in (TEAMS, RBAC)))
def test_step(number, steps, ran):
    step = next(s for s in steps if s.number == number)
    expect = EXPECTED[number]
    results = ran[number]
    for r in results:
        assert r.exit_code == 0, f"step {number}: {r.command!r} exited {r.exit_code}:\n{r.output}"
        if r.command.startswith("TOKEN="):
            assert r.token and r.token.count(".") == 2 and r.output == "", (r.command, r.token, r.output)
    last = results[-1]
    assert f"curl -s -i {expect.url}/" in last.command, f"step {number} should call {expect.url}: {last.command!r}"
    reply = http_reply(last.output)
    assert reply.status == expect.status, f"step {number} ({step.comment}):\n{last.output}"
    if expect.status == 200:
        assert expect.identity is not None
        echo = reply.json()["echo"]
        identity = {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}
        assert identity == expect.identity, f"step {number}: the upstream saw {identity}"
        if "Authorization: Bearer $TOKEN" in last.command:
            assert echo["headers"]["authorization"] == f"Bearer {last.token}", "the token goes upstream as sent"
        assert "x-llm-jwt-auth-reason" not in echo["headers"]
        # What the comment says the upstream sees, it sees.
        for name, value in re.findall(r"(x-litellm-[\w-]+): ([\w.@-]+)", step.comment):
            assert identity.get(name) == value.rstrip(".,"), (number, name, identity)
    else:
        error = reply.json()["error"]
        assert reply.headers.get("content-type") == "application/json"
        assert error["type"] == expect.error_type, (number, error)
        assert error["code"] == str(expect.status), (number, error)
        assert expect.message is not None and expect.message in error["message"], (number, error)
        assert reply.headers.get("x-llm-jwt-auth-reason") == expect.reason, (number, reply.headers)
        for quoted in re.findall(r'"([^"]+)"', step.comment.split("->", 1)[1]):
            assert quoted in error["message"], f"step {number}'s comment quotes {quoted!r}: {error['message']!r}"
        for word in re.findall(r"-> \d{3} (\w+)", step.comment):
            assert word in (error["type"], reply.headers.get("x-llm-jwt-auth-reason")), (number, word, error)


def expected_denials() -> collections.Counter:
    return collections.Counter(e.reason for n, e in EXPECTED.items() if e.reason)


def test_denials_are_labelled_by_reason(steps, ran):
    """Step 19 greps /stats/prometheus: one labelled series per reason, counting exactly the
    walkthrough's denials (the demo was started for this test, so nothing else was counted)."""
    [r] = ran[19]
    assert r.command == f"curl -s {ADMIN}/stats/prometheus | grep '^llm_jwt_auth_requests_denied'"
    assert r.exit_code == 0, r.output
    series = {}
    for line in r.output.splitlines():
        m = re.fullmatch(r'llm_jwt_auth_requests_denied\{reason="(\w+)"\} (\d+)', line)
        assert m, f"not a labelled series: {line!r}"
        series[m.group(1)] = int(m.group(2))
    assert series == dict(expected_denials()), r.output


def test_prometheus_and_stats_views_after_the_walkthrough(ran):
    import requests

    text = requests.get(f"{ADMIN}/stats/prometheus", timeout=5).text
    ours = [line for line in text.splitlines() if "llm_jwt_auth_requests_denied" in line]
    assert ours.count("# TYPE llm_jwt_auth_requests_denied counter") == 1, ours
    assert not [line for line in ours if line.startswith("llm_jwt_auth_requests_denied_")], \
        f"a reason left in the metric name: {ours}"
    assert re.search(r'^llm_jwt_auth_requests_denied\{reason="expired"\} 1$', text, re.M), ours
    assert re.search(r"^llm_jwt_auth_requests_allowed\{\} [1-9]", text, re.M)  # untagged metrics unchanged
    assert re.search(r"^# TYPE llm_jwt_auth_verify_us histogram$", text, re.M)
    # /stats keeps the full names (what test_metrics.py and the compose checks read).
    stats = requests.get(f"{ADMIN}/stats", timeout=5).text
    assert re.search(r"^wasmcustom\.llm_jwt_auth\.requests_denied\.expired: 1$", stats, re.M), stats


def test_mint_refuses_unknown_parameters(steps, ran):
    step = next(s for s in steps if s.number == 20)
    [r] = ran[20]
    reply = http_reply(r.output)
    assert reply.status == 400 and reply.headers["content-type"] == "application/json", r.output
    error = reply.json()["error"]
    assert error.startswith("unknown /mint parameter tenant; accepted: "), error
    accepted = error.split("accepted: ", 1)[1].split(", ")
    listed = step.comment.split("takes", 1)[1].split(";", 1)[0].split()
    assert listed == accepted, "step 20's comment lists the parameters /mint takes"


def test_docs_try_the_rules_shows_the_same_commands(steps):
    """docs/try-the-rules.md (the README's "Try the rules") mirrors the walkthrough: its shell
    blocks hold the printed commands, in the same order, with the same step numbers."""
    text = DOC.read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
    doc_commands: list[str] = []
    doc_numbers: list[int] = []
    for block in blocks:
        lines = block.splitlines()
        doc_numbers += [int(m.group(1)) for line in lines if (m := STEP_START.match(line))]
        doc_commands += [c for c in join_continuations([l for l in lines if l.strip() and not l.startswith("#")])
                         if "127.0.0.1:" in c]
    assert doc_commands == [c for s in steps for c in s.commands]
    assert doc_numbers == [s.number for s in steps]


def test_ctrl_c_stops_everything(demo):
    """Last (tests run in file order): SIGINT, as Ctrl-C, stops the script and what it started."""
    code = demo.stop()
    assert code == 130, f"run-demo.sh exited {code} on SIGINT:\n{demo.output[-3000:]}"
    deadline = time.monotonic() + 10
    while busy_ports() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not busy_ports(), f"still listening after Ctrl-C: {busy_ports()}"
    assert "run-demo: stopping" in demo.output
