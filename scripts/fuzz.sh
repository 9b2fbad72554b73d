#!/usr/bin/env bash
# Run one coverage-guided fuzz target for SECONDS: scripts/fuzz.sh TARGET SECONDS
#   scripts/fuzz.sh list            the targets
#   scripts/fuzz.sh build [TARGET]  build only (all targets when none is named)
#   scripts/fuzz.sh smoke SECONDS   every target for SECONDS each (CI's smoke)
# FUZZ_PROFILE=fuzz-smoke builds with less optimisation (CI); the default `fuzz` profile is
# for long runs.
#
# libFuzzer through the libfuzzer-sys crate, instrumented with rustc's stable SanitizerCoverage
# flags (what cargo-fuzz passes with --sanitizer none), so neither a nightly toolchain nor
# cargo-fuzz is needed. Overflow checks and debug assertions are on: an unchecked offset is a
# crash. New inputs go to a scratch corpus; the committed seeds in fuzz/corpus/TARGET are read
# only. A crash leaves its input in fuzz/artifacts/TARGET/ and fails the script; turn it into
# a regression test (see docs/hardening.md) before fixing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
manifest="$root/fuzz/Cargo.toml"
# The fuzz crate is a workspace member: the workspace's Cargo.lock pins what is fuzzed, and
# the instrumented build gets a target directory of its own.
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/fuzz}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
export CARGO_INCREMENTAL=0
profile="${FUZZ_PROFILE:-fuzz}"

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | grep -v '^stellaops-fuzz$'; }

build() {
    local args=()
    for t in "$@"; do args+=(--bin "$t"); done
    # --target keeps the instrumentation off build scripts and proc macros.
    cargo build --locked --manifest-path "$manifest" --profile "$profile" --target "$triple" \
        --target-dir "$target_dir" "${args[@]}"
}

case "${1:-}" in
    list) targets; exit 0 ;;
    build)
        shift
        if [ $# -eq 0 ]; then mapfile -t all < <(targets); build "${all[@]}"; else build "$@"; fi
        exit 0 ;;
    smoke)
        seconds="${2:?usage: scripts/fuzz.sh smoke SECONDS}"
        mapfile -t all < <(targets)
        build "${all[@]}"
        # One target per core at a time: each still gets SECONDS of a core of its own, and
        # the smoke takes a core count's share of the time (CI's budget).
        jobs="${FUZZ_SMOKE_JOBS:-$(nproc)}"
        smoke_one() {
            local t="$1" log="${TMPDIR:-/tmp}/stellaops-fuzz-$1.log"
            if ! FUZZ_SKIP_BUILD=1 "$0" "$t" "$seconds" > "$log" 2>&1; then
                tail -40 "$log" >&2
                echo "fuzz target $t failed (log: $log)" >&2
                return 1
            fi
            # One write, so the reports of targets running side by side do not interleave.
            printf '==> fuzz %s for %ss\n%s\n' "$t" "$seconds" "$(grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)" "$log" || true)"
        }
        failed=0 running=0
        for t in "${all[@]}"; do
            if [ "$running" -ge "$jobs" ]; then
                wait -n || failed=1
                running=$((running - 1))
            fi
            [ "$failed" = 0 ] || break
            smoke_one "$t" &
            running=$((running + 1))
        done
        while [ "$running" -gt 0 ]; do
            wait -n || failed=1
            running=$((running - 1))
        done
        exit "$failed" ;;
    ""|-h|--help) sed -n '2,12p' "$0"; exit 2 ;;
esac

target="$1"
seconds="${2:?usage: scripts/fuzz.sh TARGET SECONDS}"
targets | grep -qx "$target" || { echo "no fuzz target $target; scripts/fuzz.sh list" >&2; exit 2; }
[ -n "${FUZZ_SKIP_BUILD:-}" ] || build "$target"
seeds="$root/fuzz/corpus/$target"
work="${FUZZ_WORK_DIR:-${TMPDIR:-/tmp}/stellaops-fuzz-$target}"
artifacts="$root/fuzz/artifacts/$target"
mkdir -p "$seeds" "$work" "$artifacts"
# -timeout: one input taking 10 s is a hang, reported like a crash; -rss_limit_mb: so is 2 GiB.
exec "$target_dir/$triple/$profile/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$seeds"
