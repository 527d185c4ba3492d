#!/usr/bin/env bash
# Short fuzz smoke runs of every cargo-fuzz target (needs the nightly toolchain and cargo-fuzz;
# installs cargo-fuzz from crates.io when missing). Seconds per target: $FUZZ_SECONDS (default 45).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECONDS:-45}
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
for target in $(cargo +nightly fuzz list); do
  echo "--- fuzz $target for ${secs}s"
  mkdir -p "corpus/$target"
  # Committed seeds (inputs the fuzzer could not find alone, such as validly signed lines) are
  # read beside the run's own corpus, which stays the only one written to.
  seeds=()
  if [ -d "seeds/$target" ]; then seeds=("seeds/$target"); fi
  cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 5
done
