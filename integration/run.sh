#!/usr/bin/env bash
# Real-peer integration rig for tlsfront. See integration/README.md.
#
#   bash integration/run.sh          (as root; any cwd; CI=true friendly)
#
# Installs what it needs (Debian packages), builds the proxy, generates test
# PKI, starts private Postfix instances on loopback ports, runs the scenarios
# with test_real_peers.py (the scenarios are in realpeers/, one module per
# concern) and prints "N passed, N failed" as the very last line.
# Everything started here is stopped by PID in the EXIT trap.
#
# Environment knobs:
#   TLSFRONT_IT_KEEP=1           keep the work directory (logs, mailboxes, records)
#   TLSFRONT_IT_SCENARIOS=REGEX  run only scenarios whose name matches
#   TLSFRONT_IT_NO_BUILD=1       skip cargo build, use the existing binary
#   TLSFRONT_IT_PROXY_BIN=PATH   test another executable (development stand-in)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROXY_HOSTNAME=mx.tlsfront.test
export PROXY_HOSTNAME
export LC_ALL=C

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*"; }

WORK=
RESULTS=
FINAL_DONE=0
PY_PID=

# record NAME PASS|FAIL [DETAIL] : a rig-level result, counted like a scenario.
record() {
    local name=$1 status=$2 detail=${3:-}
    printf '%s %s%s\n' "$status" "$name" "${detail:+: $detail}"
    if [[ -n $RESULTS ]]; then
        python3 -c 'import json,sys; print(json.dumps({"name":sys.argv[1],"status":sys.argv[2],"detail":sys.argv[3]}))' \
            "$name" "$status" "$detail" >> "$RESULTS"
    fi
}

# shellcheck source=lib/postfix.sh
source "$HERE/lib/postfix.sh"

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # 1. the scenario driver (if interrupted), then tlsfront processes it may
    #    have left behind (by the PIDs it recorded).
    if [[ -n $PY_PID ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null
        wait "$PY_PID" 2>/dev/null
    fi
    if [[ -n $WORK && -d $WORK/pids ]]; then
        local f pid
        for f in "$WORK"/pids/*.pid; do
            [[ -e $f ]] || continue
            pid=$(cat "$f")
            if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                log "stopping leftover process $pid ($f)"
                kill -TERM "$pid" 2>/dev/null
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
                kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
            fi
        done
    fi
    # 2. private Postfix instances, then the default main.cf entry we added.
    pf_stop_all
    pf_unregister_alt_dirs
    # 3. verdict.
    local passed=0 failed=0
    if [[ -n $RESULTS && -f $RESULTS ]]; then
        passed=$(grep -c '"status": "PASS"' "$RESULTS" || true)
        failed=$(grep -c '"status": "FAIL"' "$RESULTS" || true)
    fi
    if [[ $FINAL_DONE != 1 ]]; then
        # Aborted before the scenarios finished (setup error, signal, timeout).
        echo "rig aborted (exit status $rc) before all scenarios ran"
        failed=$((failed + 1))
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${TLSFRONT_IT_KEEP:-0} == 1 ]]; then
            echo "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    echo "$passed passed, $failed failed"
    if ((failed > 0)); then exit 1; fi
    exit 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || { echo "run.sh must run as root (apt-get, postfix instances)" >&2; exit 1; }

# ---------------------------------------------------------------------------
# 1. Packages (non-interactive; only what is missing)
# ---------------------------------------------------------------------------
INSTALLED_POSTFIX=0
need=()
[[ -x /usr/sbin/postfix ]] || { need+=(postfix); INSTALLED_POSTFIX=1; }
command -v swaks >/dev/null || need+=(swaks)
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 2>/dev/null || need+=(libio-socket-ssl-perl)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
# The records against docs/record.schema.json (realpeers/legacylog.py).
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
# Sender matrix: GnuTLS client, Go toolchain (stdlib client built at run
# time), TLS scanner. Java is used only if a JDK is already present.
command -v gnutls-cli >/dev/null || need+=(gnutls-bin)
command -v go >/dev/null || need+=(golang-go)
command -v sslscan >/dev/null || need+=(sslscan)
# The fleet scenario's balancer (realpeers/fleet.py).
command -v haproxy >/dev/null || need+=(haproxy)
if ((${#need[@]})); then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # "No configuration": no default main.cf, no default instance on port 25.
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    timeout 300 apt-get update -q >/dev/null
    timeout 600 apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if [[ $INSTALLED_POSTFIX == 1 ]] && postfix status >/dev/null 2>&1; then
    # The package started the default instance: it is not ours to test with.
    log "stopping the default postfix instance started by the installation"
    postfix stop >/dev/null 2>&1 || true
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlsfront-it.XXXXXX")
chmod 755 "$WORK"   # postfix/nobody must traverse into the instance dirs
mkdir -p "$WORK/pids"
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
log "work directory: $WORK"

# ---------------------------------------------------------------------------
# 2. Build the proxy. A failed build is a failed scenario; the direct
#    (no-proxy) scenarios still run and proxy scenarios report the failure.
# ---------------------------------------------------------------------------
PROXY_BIN=$ROOT/target/release/tlsfront
# rustup installs into ~/.cargo/bin, which a non-login CI shell may lack.
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi
if [[ -n ${TLSFRONT_IT_PROXY_BIN:-} ]]; then
    # Development only (e.g. dev/fake_tlsfront.py); never set in CI.
    PROXY_BIN=$TLSFRONT_IT_PROXY_BIN
    log "using proxy binary $PROXY_BIN (TLSFRONT_IT_PROXY_BIN), no build"
elif [[ ${TLSFRONT_IT_NO_BUILD:-0} == 1 ]]; then
    log "skipping cargo build (TLSFRONT_IT_NO_BUILD=1)"
elif ! command -v cargo >/dev/null; then
    record "cargo build --release" FAIL "cargo not found on PATH"
    PROXY_BIN=$WORK/no-proxy-binary
else
    log "cargo build --release"
    if (cd "$ROOT" && timeout 2400 cargo build --release --quiet) > "$WORK/cargo-build.log" 2>&1; then
        record "cargo build --release" PASS
    else
        tail -30 "$WORK/cargo-build.log"
        record "cargo build --release" FAIL "see output above"
        PROXY_BIN=$WORK/no-proxy-binary   # never test a stale binary
    fi
fi

# ---------------------------------------------------------------------------
# 3. Test PKI (fresh for every run, never committed)
# ---------------------------------------------------------------------------
log "generating certificates"
"$HERE/lib/gen-certs.sh" "$WORK/certs" >/dev/null

# ---------------------------------------------------------------------------
# 4. Loopback ports: 2 backends, 2 proxies x (STARTTLS + implicit TLS), the
#    SASL backend and its (Dovecot protocol) auth server.
# ---------------------------------------------------------------------------
read -r P_RSA P_DH PX_RSA PXI_RSA PX_DH PXI_DH P_SASL P_AUTH P_RELAY < <(python3 - <<'PY'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# ---------------------------------------------------------------------------
# 5. Private Postfix instances: two legacy backends, one sender, and a
#    backend that relays for SASL-authenticated clients (realpeers/security.py).
# ---------------------------------------------------------------------------
PF=$WORK/postfix
mkdir -p "$PF"
chmod 755 "$PF"
pf_register_alt_dirs "$PF/legacy-rsa/etc" "$PF/legacy-dh/etc" "$PF/sender/etc" "$PF/sasl/etc" \
    "$PF/relay/etc"
pf_backend "$PF/legacy-rsa" legacy-rsa "$P_RSA" "$WORK/certs" rsa
pf_backend "$PF/legacy-dh" legacy-dh "$P_DH" "$WORK/certs" dh
# tlsfront reaches it from $SASL_PROXY_SOURCE, outside mynetworks.
SASL_PROXY_SOURCE=127.0.0.5
pf_sasl_backend "$PF/sasl" sasl "$P_SASL" "$P_AUTH" 127.0.0.1/32
# Relays for 127.0.0.1 as Postfix does for its mynetworks: the open-relay
# guard fires from 127.0.0.1 and is cleared from 127.0.0.5 (realpeers/relayguard.py).
pf_relay_backend "$PF/relay" relay "$P_RELAY" 127.0.0.1/32
# Sender routing by recipient local part: pf-enc-* uses TLS "encrypt",
# pf-sec-* TLS "secure" (CA + name mx.tlsfront.test), each to one proxy.
pf_sender "$PF/sender" sender "$WORK/certs" "\
/^pf-enc-legacy-rsa-[^@]*@tlsfront\.test\$/ smtp:[127.0.0.1]:$PX_RSA
/^pf-sec-legacy-rsa-[^@]*@tlsfront\.test\$/ smtpsecure:[127.0.0.1]:$PX_RSA
/^pf-enc-legacy-dh-[^@]*@tlsfront\.test\$/ smtp:[127.0.0.1]:$PX_DH
/^pf-sec-legacy-dh-[^@]*@tlsfront\.test\$/ smtpsecure:[127.0.0.1]:$PX_DH" "\
[127.0.0.1]:$PX_RSA secure match=$PROXY_HOSTNAME
[127.0.0.1]:$PX_DH secure match=$PROXY_HOSTNAME"
log "starting postfix instances (legacy-rsa :$P_RSA, legacy-dh :$P_DH, sender, sasl :$P_SASL, relay :$P_RELAY)"
for inst in legacy-rsa legacy-dh sender sasl relay; do
    if ! pf_start "$PF/$inst" > "$WORK/postfix-start-$inst.log" 2>&1; then
        cat "$WORK/postfix-start-$inst.log"
        tail -20 "$PF/$inst/maillog" 2>/dev/null
        record "postfix $inst starts" FAIL "postfix -c $PF/$inst/etc start failed"
        exit 1
    fi
done

# ---------------------------------------------------------------------------
# 6. Scenarios
# ---------------------------------------------------------------------------
cat > "$WORK/rig.json" <<JSON
{
  "work": "$WORK",
  "results": "$RESULTS",
  "pid_dir": "$WORK/pids",
  "certs": "$WORK/certs",
  "ca": "$WORK/certs/ca.pem",
  "proxy_bin": "$PROXY_BIN",
  "proxy_hostname": "$PROXY_HOSTNAME",
  "proxy_ports": {"legacy-rsa": [$PX_RSA, $PXI_RSA], "legacy-dh": [$PX_DH, $PXI_DH]},
  "backends": {
    "legacy-rsa": {"name": "legacy-rsa", "port": $P_RSA, "dir": "$PF/legacy-rsa",
                   "maillog": "$PF/legacy-rsa/maillog"},
    "legacy-dh": {"name": "legacy-dh", "port": $P_DH, "dir": "$PF/legacy-dh",
                  "maillog": "$PF/legacy-dh/maillog"}
  },
  "sender": {"etc": "$PF/sender/etc", "maillog": "$PF/sender/maillog"},
  "sasl": {"name": "sasl", "port": $P_SASL, "dir": "$PF/sasl", "maillog": "$PF/sasl/maillog",
           "auth_port": $P_AUTH, "proxy_source": "$SASL_PROXY_SOURCE"},
  "relay": {"name": "relay", "port": $P_RELAY, "dir": "$PF/relay", "maillog": "$PF/relay/maillog"}
}
JSON
log "running scenarios"
# In the background + wait, so a SIGTERM/SIGINT to run.sh is handled at once
# (the trap then stops the driver and everything else by PID).
timeout 900 python3 "$HERE/test_real_peers.py" "$WORK/rig.json" &
PY_PID=$!
py_rc=0
wait "$PY_PID" || py_rc=$?
PY_PID=
if ((py_rc != 0)); then
    record "scenario driver" FAIL "test_real_peers.py exited with status $py_rc"
fi
FINAL_DONE=1
# cleanup (EXIT trap) stops everything and prints the verdict line.
