#!/usr/bin/env bash
# `systemd-analyze verify` on the units in systemd/ (the service, the socket
# and the tlsfront@.service template, verified as an instance), with
# ExecStart pointing at the binary just built (verify insists that the
# executables exist) and MANPATH at the man pages it generates (verify runs
# `man` for every Documentation=man:...). The installed units are verified
# the same way by integration/package.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v systemd-analyze >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
command -v man >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null; }
[[ -x $ROOT/target/release/tlsfront ]] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$ROOT"/systemd/*.service "$ROOT"/systemd/*.socket; do
    sed "s|/usr/bin/tlsfront|$ROOT/target/release/tlsfront|g" "$unit" > "$tmp/$(basename "$unit")"
done
"$ROOT/target/release/tlsfront" generate man "$tmp/man/man1"
if out=$(MANPATH=$tmp/man systemd-analyze verify "$tmp"/*.service "$tmp"/*.socket 2>&1); [[ -z $out ]]; then
    echo "1 passed, 0 failed"
else
    echo "$out"
    echo "0 passed, 1 failed"
    exit 1
fi
