#!/usr/bin/env bash
# The soak: tlsfront under mixed sessions (good, idle, slow, hostile) for
# SOAK_SECONDS (default 600: ten minutes), asserting that its memory and
# open descriptors stay flat after a warm-up (integration/soak.py says how).
# integration/test-all.sh runs a short one (SOAK_SECONDS=75).
#   bash integration/soak.sh                      # as root if it must install smtp-sink
#   SOAK_SECONDS=75 bash integration/soak.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=()
command -v smtp-sink >/dev/null || need+=(postfix)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    postfix stop >/dev/null 2>&1 || true
fi
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
# Only the load generator: `--benches` would also build the library's and the
# binary's unit tests as release benchmarks (minutes of linking, gigabytes).
cargo build --release --bench loadgen --quiet --manifest-path "$ROOT/Cargo.toml"
ulimit -n "$(ulimit -Hn)"
exec timeout $((${SOAK_SECONDS:-600} + 600)) python3 "$ROOT/integration/soak.py" "$ROOT"
