#!/usr/bin/env python3
"""Run the e2e suite once per Envoy version and summarise (`make e2e-matrix`, mk/matrix.mk).

    .venv/bin/python tools/e2e_matrix.py --envoy 1.36.4=.venv-envoy-1.36/bin/envoy \
        [--envoy 1.40.0=...] [--suite core] [--out target/e2e-matrix] \
        [--results tests/e2e/matrix-results.md] -- <pytest arguments: test files, -k, ...>

For each version, one after the other (never two versions at once): check that
`<envoy> --version` reports that version and that `envoy --mode validate` takes the suite's
bootstrap with the filter (a build without V8 is named as such), then run `python -m pytest <args> -q -ra` with
ENVOY=<envoy>, its JUnit XML and full output kept in --out. Every version runs even when an
earlier one failed. At the end a table — version, passed, failed (failures + errors), xfailed,
xpassed, skipped, time — is printed and written (Markdown) to --results, with every test that
did not pass. Exit status 1 if any version had a failure, an error, an unexpected pass of a
strict xfail (pytest reports those as failures) or could not run at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402  (the suite's bootstrap renderer, for the preflight)


@dataclass
class Result:
    version: str
    envoy: str
    reported: str = ""
    passed: int = 0
    failed: int = 0
    errors: int = 0
    xfailed: int = 0
    xpassed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    returncode: int | None = None
    problem: str = ""
    not_passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problem and self.failed == 0 and self.errors == 0 and self.returncode in (0,)


def envoy_version(envoy: str) -> str:
    """The version from `envoy --version` (`.../1.36.4/Clean/RELEASE/BoringSSL` -> `1.36.4`)."""
    out = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=60)
    match = re.search(r"/(\d+\.\d+\.\d+)/", out.stdout + out.stderr)
    if not match:
        raise RuntimeError(f"{envoy} --version: no version in {(out.stdout + out.stderr).strip()!r}")
    return match.group(1)


def preflight(envoy: str, workdir: Path) -> str:
    """`envoy --mode validate` on the suite's bootstrap with the filter in it: "" if Envoy takes
    it, else why not (a wheel built without a Wasm runtime says so here, not in 900 failures)."""
    wasm = harness.wasm_path()
    if not wasm.is_file():
        return f"no filter at {wasm} (make build, or set LLM_JWT_AUTH_WASM)"
    bootstrap = harness.render_bootstrap(
        upstream_port=9, plugin_config={"public_key_url": "http://127.0.0.1:9/jwks.json"}, wasm=wasm,
        jwks_clusters={"127.0.0.1:9": ("127.0.0.1", 9)})
    path = workdir / "preflight.json"
    path.write_text(json.dumps(bootstrap))
    out = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode == 0:
        return ""
    text = out.stdout + out.stderr
    if "compiled without support for it" in text:
        return "this Envoy build has no V8 Wasm runtime (`compiled without support for it`)"
    lines = [line for line in text.splitlines() if line.strip()]
    return f"`envoy --mode validate` refused the suite's bootstrap: {lines[-1][:300] if lines else out.returncode}"


def parse_junit(path: Path, result: Result) -> None:
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".replace("tests.e2e.", "")
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            message = kinds["failure"].get("message", "")
            if message.startswith("[XPASS(strict)]"):
                result.failed += 1
                result.not_passed.append(f"XPASS(strict) {name}")
            else:
                result.failed += 1
                result.not_passed.append(f"FAILED {name}: {message.splitlines()[0][:200] if message else ''}")
        elif "error" in kinds:
            result.errors += 1
            result.not_passed.append(f"ERROR {name}: {(kinds['error'].get('message') or '')[:200]}")
        elif "skipped" in kinds:
            skipped = kinds["skipped"]
            if skipped.get("type") == "pytest.xfail":
                result.xfailed += 1
                result.not_passed.append(f"XFAIL {name}: {(skipped.get('message') or '')[:200]}")
            else:
                result.skipped += 1
                result.not_passed.append(f"SKIPPED {name}: {(skipped.get('message') or '')[:200]}")
        else:
            # pytest writes a non-strict xpass as a plain pass in JUnit; the -ra summary has it.
            result.passed += 1


def run_one(version: str, envoy: str, pytest_args: list[str], out: Path) -> Result:
    result = Result(version, envoy)
    try:
        result.reported = envoy_version(envoy)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        result.problem = f"cannot run {envoy}: {exc}"
        return result
    if result.reported != version:
        result.problem = f"{envoy} reports {result.reported}, asked for {version}"
        return result
    result.problem = preflight(envoy, out)
    if result.problem:
        print(f"\n=== Envoy {version} ({envoy}): not run: {result.problem} ===", flush=True)
        return result
    junit = out / f"envoy-{version}.xml"
    log = out / f"envoy-{version}.log"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", *pytest_args, "-q", "-ra", "-p", "no:cacheprovider",
           f"--junitxml={junit}"]
    env = dict(os.environ, ENVOY=str(Path(envoy).resolve()))
    print(f"\n=== Envoy {version} ({envoy}) ===\n$ ENVOY={env['ENVOY']} {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sink.write(line)
        result.returncode = proc.wait()
    result.seconds = time.monotonic() - start
    if junit.exists():
        parse_junit(junit, result)
        # Non-strict xpasses only show in the -ra summary.
        text = log.read_text(errors="replace")
        result.xpassed = len(re.findall(r"^XPASS ", text, flags=re.M))
        result.passed -= result.xpassed
    else:
        result.problem = f"pytest wrote no JUnit XML (exit {result.returncode}); see {log}"
    if result.returncode not in (0, 1) and not result.problem:
        result.problem = f"pytest exit status {result.returncode}; see {log}"
    return result


def fmt_time(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def table(results: list[Result]) -> list[str]:
    rows = ["| Envoy | passed | failed | xfailed | xpassed | skipped | time | result |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        verdict = r.problem or ("ok" if r.ok else f"FAIL (pytest exit {r.returncode})")
        rows.append(f"| {r.version} | {r.passed} | {r.failed + r.errors} | {r.xfailed} | {r.xpassed} "
                    f"| {r.skipped} | {fmt_time(r.seconds)} | {verdict} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", action="append", required=True, metavar="VERSION=PATH",
                        help="a version and the Envoy binary that must report it (repeatable, run in order)")
    parser.add_argument("--suite", default="core", help="label for the table (core / full)")
    parser.add_argument("--out", default="target/e2e-matrix", type=Path)
    parser.add_argument("--results", default="tests/e2e/matrix-results.md", type=Path)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()

    out = args.out if args.out.is_absolute() else REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    pairs = []
    for item in args.envoy:
        version, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--envoy {item!r}: expected VERSION=PATH")
        pairs.append((version, path))

    started = dt.datetime.now(dt.timezone.utc)
    total = time.monotonic()
    results = [run_one(version, path, args.pytest_args, out) for version, path in pairs]
    total = time.monotonic() - total

    wasm = os.environ.get("LLM_JWT_AUTH_WASM") or "target/wasm32-wasip1/release/llm_jwt_auth.wasm"
    lines = [
        "# e2e suite per Envoy version",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, suite `{args.suite}` (`pytest {shlex.join(args.pytest_args)}`), "
        f"filter `{wasm}`, {os.cpu_count()} cores, total {fmt_time(total)}.",
        "",
        *table(results),
    ]
    details = [(r.version, r.not_passed) for r in results if r.not_passed or r.problem]
    if details:
        lines += ["", "## Not passed"]
        for version, items in details:
            lines += ["", f"Envoy {version}:", ""] + [f"- {item}" for item in items or ["(did not run)"]]
    text = "\n".join(lines) + "\n"
    results_path = args.results if args.results.is_absolute() else REPO / args.results
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(text)
    print("\n" + text, flush=True)
    print(f"(written to {results_path}; JUnit XML and output per version in {out})")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
