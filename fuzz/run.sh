#!/usr/bin/env bash
# Build every fuzz target and run each for SECONDS (default 12), one process at a time.
#   fuzz/run.sh [SECONDS] [TARGET...]        (make fuzz-smoke / make fuzz FUZZ_SECONDS=N)
# Stable Rust is enough: `-s none` drops AddressSanitizer, the only nightly-only flag cargo-fuzz
# adds (the core has no unsafe code; coverage and -a overflow checks stay). Seeds come from
# fuzz/seeds/<target> and dictionaries from fuzz/dicts/ (both committed, written by
# fuzz/make_seeds.py); new inputs go to target/fuzz-corpus/<target>;
# crashes to fuzz/artifacts/<target>/. Exit status 1 if any target crashed or timed out.
set -uo pipefail

# One function, called on the last line: bash has read the whole script before running any of
# it, so an edit or checkout during a long run cannot change what it does.
main() {
  cd "$(dirname "$0")/.." || return 1
  local seconds=${1:-12}
  shift || true

  # libfuzzer-sys compiles libFuzzer (C++).
  if ! command -v c++ >/dev/null; then
    local sudo; sudo=$( [ "$(id -u)" = 0 ] || echo sudo )
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ || return 1
  fi
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || return 1
  local flags=(-s none -a)
  cargo fuzz build "${flags[@]}" || return 1
  local bin; bin=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

  local logs=target/fuzz-logs failed=() t rc last cov ft corp execs rate result
  mkdir -p "$logs"
  printf '%-16s %12s %9s %6s %7s %7s %s\n' target execs exec/s cov ft corpus result
  for t in "${targets[@]}"; do
    mkdir -p "target/fuzz-corpus/$t" "fuzz/artifacts/$t"
    # The binaries built above, not `cargo fuzz run`, which would rebuild per target.
    "$bin/$t" "target/fuzz-corpus/$t" "fuzz/seeds/$t" -artifact_prefix="fuzz/artifacts/$t/" \
      -dict="fuzz/dicts/$t.dict" -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 >"$logs/$t.log" 2>&1
    rc=$?
    last=$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$logs/$t.log")
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$logs/$t.log")
    result=ok
    if [ $rc -ne 0 ]; then result="FAILED (see $logs/$t.log, fuzz/artifacts/$t/)"; failed+=("$t"); fi
    printf '%-16s %12s %9s %6s %7s %7s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failures in: ${failed[*]}" >&2
    return 1
  fi
}

main "$@"; exit $?
