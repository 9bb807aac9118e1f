#!/usr/bin/env bash
# The performance comparison (issue "make it the fastest STARTTLS front"):
# tlsfront vs nginx's mail proxy vs plaintext straight to Postfix's smtp-sink,
# plus the in-process rustls handshake ceiling, measured in ONE run on this
# machine and printed as ratios. Not part of the test command (slow, noisy).
#   bash integration/bench.sh            # as root; installs what it needs
#   BENCH_QUICK=1 bash integration/bench.sh   # fewer sessions, one repeat
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=()
command -v smtp-sink >/dev/null || need+=(postfix)
[[ -e /usr/lib/nginx/modules/ngx_mail_module.so ]] || need+=(nginx-light libnginx-mod-mail)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    # Installing nginx may start the distribution's server: not ours.
    systemctl stop nginx 2>/dev/null || true
fi
# The profiling profile: release code with debug info, so a perf profile of
# the same build names functions and lines (target/profiling/).
cargo build --profile profiling --manifest-path "$ROOT/Cargo.toml"
cargo build --profile profiling --benches --manifest-path "$ROOT/Cargo.toml"
exec python3 "$ROOT/integration/bench.py" "$ROOT"
