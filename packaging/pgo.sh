#!/usr/bin/env bash
# A profile-guided build of tlsfront: what packaging/build-deb.sh ships and
# what integration/bench.sh measures (about 10 % less CPU per STARTTLS session
# than the plain build, measured at the same moment; docs/benchmarks.md).
#   packaging/pgo.sh [release|profiling]   # default release; prints the binary's path
# 1. tlsfront and the load generator (benches/loadgen.rs) built instrumented
#    (-Cprofile-generate) in target/pgo-gen/;
# 2. a training load on loopback, about 20 s: tlsfront (a generated
#    self-signed certificate) in front of Postfix's smtp-sink (package
#    postfix), or of the load generator's minimal SMTP responder where
#    smtp-sink is not installed; sessions by STARTTLS with TLS 1.3 (X25519,
#    then the post-quantum hybrid) and 1.2, resumed, implicit TLS, plaintext
#    and pipelined; tlsfront is then stopped with SIGTERM, and writes its
#    profile as it exits;
# 3. the profile merged with llvm-profdata of rustc's own LLVM (rustup's
#    llvm-tools component, added when missing) and tlsfront built again with
#    it (-Cprofile-use) in target/pgo/: the binary is
#    target/pgo/PROFILE/tlsfront;
# 4. that binary checked the same way: 200 STARTTLS sessions through it, and
#    a clean stop. Every training load must pass too (the load generator
#    fails on any failed session).
# The instrumented build is removed once the profile is merged (disk).
# Without rustup (no llvm-tools to match rustc's LLVM) it fails and says so;
# PGO=0 then builds without a profile (target/PROFILE/tlsfront) and says that.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
profile=${1:-release}
case $profile in release | profiling) ;; *) echo "usage: packaging/pgo.sh [release|profiling]" >&2; exit 2 ;; esac
target=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ ${PGO:-1} == 0 ]]; then
    echo "pgo.sh: PGO=0: building without a profile" >&2
    cargo build --profile "$profile" --locked --quiet --bin tlsfront
    echo "$target/$profile/tlsfront"
    exit 0
fi

host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [[ ! -x $profdata ]] && command -v rustup >/dev/null; then
    rustup component add llvm-tools >&2
fi
[[ -x $profdata ]] || {
    echo "pgo.sh: no llvm-profdata for rustc's LLVM at $profdata (rustup component add llvm-tools); PGO=0 builds without a profile" >&2
    exit 1
}

gen=$target/pgo-gen
work=$(mktemp -d /tmp/tlsfront-pgo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "pgo.sh: 1/3 instrumented build (target/pgo-gen)" >&2
# Two builds, the load generator first: building a bench builds the binary
# too, with the dev-dependencies' features (tlsfront's `fuzzing`, tokio's
# `test-util`), so its symbols and code would not match the optimized build
# and most of the profile would go unused. The second build puts back the
# binary as step 3 builds it.
for what in "--bench loadgen" "--bin tlsfront"; do
    # shellcheck disable=SC2086 # two words each
    RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$work/discard" CARGO_TARGET_DIR=$gen \
        cargo build --profile "$profile" --locked --quiet $what
done
loadgen=$(find "$gen/$profile/deps" -maxdepth 1 -type f -executable -name 'loadgen-*' -printf '%T@ %p\n' |
    sort -n | tail -1 | cut -d' ' -f2)
[[ -n $loadgen ]] || { echo "pgo.sh: the instrumented load generator was not built" >&2; exit 1; }
# Kept for the check of step 4 (the build directory goes after step 2).
cp "$loadgen" "$work/loadgen"
loadgen=$work/loadgen

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "pgo.sh: nothing listens on 127.0.0.1:$1 after 10 s" >&2
    return 1
}

echo "pgo.sh: 2/3 training load (about 20 s)" >&2
backend=$(free_port) starttls=$(free_port) implicit=$(free_port)
# Only tlsfront's profile is kept: the load generator's goes elsewhere.
# The backend: a real MTA's replies where there is one, else the responder's
# fixed ones.
if command -v smtp-sink >/dev/null; then
    echo "pgo.sh: backend: Postfix's smtp-sink" >&2
    user=(); [[ $(id -u) == 0 ]] && user=(-u nobody)
    smtp-sink "${user[@]}" "127.0.0.1:$backend" 5000 >/dev/null 2>&1 &
else
    echo "pgo.sh: backend: the load generator's minimal SMTP responder (no smtp-sink: package postfix)" >&2
    LLVM_PROFILE_FILE=$work/discard/loadgen-%p.profraw "$loadgen" --serve "127.0.0.1:$backend" --smtp \
        >/dev/null 2>&1 &
fi
pids+=($!)
cat >"$work/tlsfront.toml" <<EOF
[server]
hostname = "mx.pgo.test"
[[listener]]
mode = "starttls"
address = ["127.0.0.1:$starttls"]
[[listener]]
mode = "implicit"
address = ["127.0.0.1:$implicit"]
[backend]
address = "127.0.0.1:$backend"
[records]
path = "$work/records.jsonl"
EOF
start_tlsfront() {
    LLVM_PROFILE_FILE=$work/tlsfront-%p.profraw "$1" run --config "$work/tlsfront.toml" \
        --log warn 2>"$work/tlsfront.log" &
    tlsfront=$!
    pids+=("$tlsfront")
    wait_port "$starttls"
}
stop_tlsfront() {
    kill -TERM "$tlsfront"
    wait "$tlsfront" || { echo "pgo.sh: tlsfront did not exit cleanly:" >&2; tail -5 "$work/tlsfront.log" >&2; exit 1; }
}
wait_port "$backend"
start_tlsfront "$gen/$profile/tlsfront"
train() {
    LLVM_PROFILE_FILE=$work/discard/loadgen-%p.profraw "$loadgen" --name mx.pgo.test --no-verify \
        --sources 64 --size 10240 --target "127.0.0.1:$1" "${@:2}" >"$work/load.out" 2>&1 || {
        echo "pgo.sh: a training load failed: loadgen ${*:2}" >&2
        tail -5 "$work/load.out" >&2
        return 1
    }
}
# Most senders today: TLS 1.3 over X25519; then the post-quantum hybrid.
train "$starttls" --tls 1.3 --groups X25519 --concurrency 16 --duration 8s
train "$starttls" --tls 1.3 --groups X25519MLKEM768 --concurrency 8 --duration 2s
train "$starttls" --tls 1.2 --concurrency 8 --duration 2s
train "$starttls" --tls 1.3 --resume --concurrency 8 --duration 2s
train "$implicit" --implicit --tls 1.3 --concurrency 8 --duration 2s
train "$starttls" --tls none --concurrency 8 --duration 2s
train "$starttls" --tls 1.3 --pipelining --concurrency 8 --duration 2s
stop_tlsfront

echo "pgo.sh: 3/3 optimized build (target/pgo)" >&2
shopt -s nullglob
raw=("$work"/tlsfront-*.profraw)
((${#raw[@]})) || { echo "pgo.sh: tlsfront wrote no profile" >&2; exit 1; }
"$profdata" merge -o "$work/tlsfront.profdata" "${raw[@]}"
rm -rf "$gen"
# Code the training did not reach is treated as cold (optimized for size).
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$work/tlsfront.profdata" CARGO_TARGET_DIR=$target/pgo \
    cargo build --profile "$profile" --locked --quiet --bin tlsfront

echo "pgo.sh: checking the optimized build" >&2
start_tlsfront "$target/pgo/$profile/tlsfront"
train "$starttls" --tls 1.3 --concurrency 8 --sessions 200
stop_tlsfront
echo "$target/pgo/$profile/tlsfront"
