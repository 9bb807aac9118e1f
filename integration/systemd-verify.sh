#!/usr/bin/env bash
# `systemd-analyze verify` on the shipped units, with ExecStart pointing at the
# binary just built (verify insists that the executables exist).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v systemd-analyze >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
[[ -x $ROOT/target/release/tlsfront ]] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$ROOT"/systemd/*.service "$ROOT"/systemd/*.socket; do
    sed "s|/usr/local/bin/tlsfront|$ROOT/target/release/tlsfront|g" "$unit" > "$tmp/$(basename "$unit")"
done
if out=$(systemd-analyze verify "$tmp"/*.service "$tmp"/*.socket 2>&1); [[ -z $out ]]; then
    echo "1 passed, 0 failed"
else
    echo "$out"
    echo "0 passed, 1 failed"
    exit 1
fi
