#!/usr/bin/env bash
# Fuzz run of the parsers (issue 14): builds the cargo-fuzz targets in fuzz/ and runs each one
# for a while from its seed corpus. Fails when any target finds a crash: a panic (including a
# failed invariant), a sanitizer report, running out of memory or an input that takes too long.
# Prints one line per target with the runs libFuzzer executed. See fuzz/README.md.
#
# The seed corpora in fuzz/corpus/ are only read: what libFuzzer adds goes to a working corpus
# under $CARGO_TARGET_DIR/fuzz-work (kept between runs, so local runs build on each other), and
# crash artifacts to $CARGO_TARGET_DIR/fuzz-work/artifacts/<target>/.
#
# Environment (all optional):
#   FUZZ_SECONDS      seconds per target (default 20)
#   FUZZ_TARGETS      targets to run, separated by spaces (default: every target of fuzz/)
#   FUZZ_SANITIZER    sanitizer for `cargo fuzz` (`none` builds without one; default: address)
#   FUZZ_TIMEOUT      seconds one input may take before it counts as a crash (default 30)
#   FUZZ_TOOLCHAIN    toolchain for cargo fuzz (default nightly; when it is not installed, the
#                     default toolchain with RUSTC_BOOTSTRAP=1)
#   CARGO_TARGET_DIR  build output (default /var/tmp/itsm-fuzz-target; not the workspace's, since
#                     everything here is built with other flags)
#   ITSM_TOOLS_DIR    where cargo-fuzz is installed (default /var/tmp/itsm-tools)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)
FUZZ_DIR="$ROOT/fuzz"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/itsm-fuzz-target}"
export CARGO_TERM_COLOR=never
if [[ "${CI:-}" == "true" ]]; then
  export CARGO_INCREMENTAL=0
fi

SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
INPUT_TIMEOUT="${FUZZ_TIMEOUT:-30}"
TOOLS_DIR="${ITSM_TOOLS_DIR:-/var/tmp/itsm-tools}"
# Pinned: cargo-fuzz decides the compiler flags, so a new release can change what is built.
CARGO_FUZZ_VERSION=0.13.2
WORK="$CARGO_TARGET_DIR/fuzz-work"

die() {
  echo "fuzz.sh: $*" >&2
  exit 1
}

command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"

# ---- cargo-fuzz ---------------------------------------------------------------------------------

FUZZ_ROOT="$TOOLS_DIR/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [[ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]] \
  && [[ "$(cargo fuzz --version 2>/dev/null || true)" == "cargo-fuzz $CARGO_FUZZ_VERSION"* ]]; then
  echo "using the cargo-fuzz $CARGO_FUZZ_VERSION already installed"
elif [[ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]]; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_ROOT"
  mkdir -p "$TOOLS_DIR"
  # Its own build directory, not the fuzz targets' one.
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" \
    --root "$FUZZ_ROOT" --quiet
fi
export PATH="$FUZZ_ROOT/bin:$PATH"

# ---- toolchain ----------------------------------------------------------------------------------

TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
CARGO=(cargo "+$TOOLCHAIN")
if ! command -v rustup >/dev/null || ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  # Sanitizer flags are unstable; RUSTC_BOOTSTRAP lets a stable compiler accept them.
  echo "no $TOOLCHAIN toolchain: using the default one with RUSTC_BOOTSTRAP=1"
  CARGO=(cargo)
  export RUSTC_BOOTSTRAP=1
fi

SANITIZER_ARGS=()
if [[ -n "${FUZZ_SANITIZER:-}" ]]; then
  SANITIZER_ARGS=(--sanitizer "$FUZZ_SANITIZER")
fi

# ---- build --------------------------------------------------------------------------------------

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
  mapfile -t TARGETS < <("${CARGO[@]}" fuzz list --fuzz-dir "$FUZZ_DIR")
fi
[[ ${#TARGETS[@]} -gt 0 ]] || die "no fuzz targets found in $FUZZ_DIR"

echo "==> building ${#TARGETS[@]} fuzz targets ($("${CARGO[@]}" --version); sanitizer ${FUZZ_SANITIZER:-address})"
build_start=$SECONDS
"${CARGO[@]}" fuzz build --fuzz-dir "$FUZZ_DIR" "${SANITIZER_ARGS[@]}"
echo "built in $((SECONDS - build_start)) s"

# ---- run ----------------------------------------------------------------------------------------

mkdir -p "$WORK/logs"
SUMMARY=()
FAILED=()
for target in "${TARGETS[@]}"; do
  seeds="$FUZZ_DIR/corpus/$target"
  [[ -d "$seeds" ]] || die "no seed corpus $seeds"
  corpus="$WORK/corpus/$target"
  artifacts="$WORK/artifacts/$target/"
  log="$WORK/logs/$target.log"
  mkdir -p "$corpus" "$artifacts"

  echo "==> fuzz $target (${SECONDS_PER_TARGET} s)"
  status=0
  # The working corpus comes first: libFuzzer writes new inputs only to the first directory.
  "${CARGO[@]}" fuzz run --fuzz-dir "$FUZZ_DIR" "${SANITIZER_ARGS[@]}" "$target" "$corpus" "$seeds" -- \
    -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb=2048 \
    -timeout="$INPUT_TIMEOUT" \
    -artifact_prefix="$artifacts" \
    -print_final_stats=1 \
    >"$log" 2>&1 || status=$?

  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
  if [[ -z "$runs" ]]; then
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+$' || true)
  fi
  inputs=$(find "$corpus" -type f | wc -l)
  if [[ $status -eq 0 ]]; then
    line="fuzz $target: ok, ${runs:-?} runs, working corpus $inputs inputs"
  else
    line="fuzz $target: FAILED (exit $status) after ${runs:-?} runs; log $log, artifacts $artifacts"
    FAILED+=("$target")
    echo "---- last lines of $log"
    tail -n 60 "$log"
    echo "----"
  fi
  echo "$line"
  SUMMARY+=("$line")
done

echo
echo "==> fuzz summary"
printf '%s\n' "${SUMMARY[@]}"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "crashes in: ${FAILED[*]} (reproduce: cargo +nightly fuzz run --fuzz-dir fuzz <target> <artifact>)"
  exit 1
fi
