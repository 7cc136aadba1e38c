#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time: `fuzz/run.sh [seconds-per-target] [target...]`.
#
# Stable Rust has no `-Zsanitizer`, so the targets are built with LLVM's SanitizerCoverage
# pass alone (what `cargo fuzz --sanitizer none` does): inline 8-bit edge counters, the PC
# table and comparison tracing give libFuzzer its coverage feedback. Overflow checks and debug
# assertions are on (fuzz/Cargo.toml's release profile), so arithmetic bugs crash too.
#
# Exits non-zero on the first crash, printing the path of the input that caused it (libFuzzer
# writes it under fuzz/artifacts/<target>/); reproduce with
# `fuzz/target/<triple>/release/<target> <path>`. New corpus entries go to fuzz/target/corpus
# (not committed): fuzz/corpus/<target>/ holds the small committed seeds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${1:-30}"
shift || true
all_targets=(resources scheduler_call_json scheduler_call_protobuf recordio credentials acls sandbox_path archive_entry)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebuginfo=0"
export CARGO_INCREMENTAL=0
# `--target` keeps RUSTFLAGS off build scripts and proc macros (they need no coverage).
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --target "$triple" --target-dir target "${bins[@]}"

# The targets' scratch directories (a fake agent work dir, sandboxes to extract into) go
# here, not to the machine's /tmp: each run starts from an empty one.
export TMPDIR="$PWD/target/tmp"

failed=0
for t in "${targets[@]}"; do
  rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
  seeds="corpus/$t"
  work="target/corpus/$t"
  artifacts="artifacts/$t/"
  mkdir -p "$seeds" "$work" "$artifacts"
  echo "== fuzz $t for ${seconds}s"
  log="target/fuzz-$t.log"
  # -rss_limit_mb: a parser that buffers without bound shows up as a crash.
  # -seed: fixed (FUZZ_SEED, default 1) so that a CI run repeats the same
  # mutations and a pass or a crash is reproducible; explore with
  # FUZZ_SEED=0 (random) and a longer time.
  if ! "target/$triple/release/$t" "$work" "$seeds" \
      -seed="${FUZZ_SEED:-1}" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    failed=1
    tail -n 40 "$log"
    crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    echo "fuzz target $t FAILED; crashing input: fuzz/${crash:-<see log above>}"
    echo "reproduce: fuzz/target/$triple/release/$t fuzz/${crash:-<input>}"
  else
    grep -E 'DONE|stat::number_of_executed_units|stat::average_exec_per_sec' "$log" || true
  fi
done
exit "$failed"
