#!/usr/bin/env bash
# The performance comparison: tlsfront against nginx's mail proxy, both with
# the same certificate in front of the same sink (Postfix's smtp-sink), driven
# by the same load generator (benches/loadgen.rs), every figure measured in ONE
# run on this machine (integration/bench.py says what and how). Takes about 16
# minutes after the builds (the profile-guided one about 15); not part of the
# test command. Wants a quiet machine: it first waits (at most
# BENCH_QUIET_WAIT seconds, 900 by default) for the load average to fall
# under 0.7, then prints the load average at the start and the end and how
# much of the server's core other processes took.
#   bash integration/bench.sh                  # as root; installs what it needs
#   BENCH_QUICK=1 bash integration/bench.sh    # short runs, one repeat (to try it)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $(nproc) -ge 2 ]] || { echo "bench.sh needs two CPUs (server on 0, load on 1)" >&2; exit 1; }
need=()
command -v smtp-sink >/dev/null || need+=(postfix)
[[ -e /usr/lib/nginx/modules/ngx_mail_module.so ]] || need+=(nginx-light libnginx-mod-mail)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # Installing nginx may start the distribution's server: not ours.
    systemctl stop nginx 2>/dev/null || true
fi
# The profiling profile: release code with debug info, so a perf profile of
# the same build names functions and lines (target/profiling/).
cargo build --profile profiling --manifest-path "$ROOT/Cargo.toml"
cargo build --profile profiling --bench loadgen --manifest-path "$ROOT/Cargo.toml"
# What is measured against nginx is the build the Debian package ships:
# profile-guided (packaging/pgo.sh, about 15 minutes; PGO=0: the plain build
# above). The floor's tlsfront parts run the plain build, like its others.
BENCH_TLSFRONT=$(bash "$ROOT/packaging/pgo.sh" profiling)
export BENCH_TLSFRONT
# 10 000 sessions need 10 000 descriptors in the load generator and more in
# each server: as many as the hard limit allows.
ulimit -n "$(ulimit -Hn)"
exec python3 "$ROOT/integration/bench.py" "$ROOT"
