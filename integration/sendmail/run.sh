#!/usr/bin/env bash
# Real Sendmail 8.17 backend rig for tlsfront. See integration/sendmail/README.md.
#
#   bash integration/sendmail/run.sh      (as root; any cwd; CI=true friendly)
#
# Downloads Debian's Sendmail 8.17 packages (apt-get download, never
# installed), unpacks them into a private directory and runs that sendmail
# as the "legacy backend" on a loopback port, with STARTTLS configured with a
# 1024-bit RSA certificate. Then it puts tlsfront in front of it and checks
# that a modern client gets its mail delivered over TLS 1.3 / TLS 1.2.
# Prints PASS/FAIL per scenario and "N passed, N failed" as the last line.
#
# Environment knobs:
#   TLSFRONT_IT_NO_BUILD=1     skip cargo build, use the existing binary
#   TLSFRONT_IT_KEEP=1         keep the work directory (logs, mail, records)
#   TLSFRONT_SM_PORT=N         preferred Sendmail port (default 10026; a free one if taken)
#   TLSFRONT_SM_PROXY_PORT=N   preferred tlsfront port (default 10587; a free one if taken)
#   TLSFRONT_SM_CACHE=DIR      where the .debs are cached (default /var/cache/tlsfront-sendmail)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export LC_ALL=C
export DEBIAN_FRONTEND=noninteractive

PROXY_HOSTNAME=mx.tlsfront.test
LEGACY_HOSTNAME=legacy.tlsfront.test
CACHE=${TLSFRONT_SM_CACHE:-/var/cache/tlsfront-sendmail}
SM_PACKAGES=(sendmail-bin sendmail-base sendmail-cf)
# Runtime libraries sendmail-bin links against (its Depends:, minus the
# sendmail-* packages themselves, which we only unpack).
SM_LIBS=(libdb5.3 libldap-2.5-0 liblockfile1 libnsl2 libsasl2-2 libssl3 libwrap0 procps)

log() { printf '[sendmail-rig %(%H:%M:%S)T] %s\n' -1 "$*"; }

WORK=
RESULTS=
FINAL_DONE=0
SINK_PID=
PROXY_PID=
PROXY2_PID=
PROXY2_OK=1
SM_PIDFILE=
T_START=$SECONDS

# result NAME PASS|FAIL [DETAIL]: print and remember one scenario outcome.
result() {
    local name=$1 status=$2 detail=${3:-}
    printf '%s %s%s\n' "$status" "$name" "${detail:+: $detail}"
    [[ -n $RESULTS ]] && printf '%s %s\n' "$status" "$name" >> "$RESULTS"
    return 0
}

# stop_pid PID LABEL: SIGTERM, wait up to 10 s, then SIGKILL. By PID only.
stop_pid() {
    local pid=$1 label=$2
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    log "$label ($pid) did not stop on SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT
    trap '' INT TERM   # a second signal must not cut the cleanup short
    stop_pid "$PROXY_PID" tlsfront
    stop_pid "$PROXY2_PID" "tlsfront (source 127.0.0.2)"
    if [[ -n $SM_PIDFILE && -s $SM_PIDFILE ]]; then
        # sendmail's pid file: first line is the daemon's PID.
        stop_pid "$(head -n1 "$SM_PIDFILE")" "sendmail daemon"
    fi
    # Per-connection children of the daemon (if any lingered), by PID.
    if [[ -n $WORK && -f $WORK/sm-daemon.pid ]]; then
        stop_pid "$(cat "$WORK/sm-daemon.pid")" "sendmail daemon (saved pid)"
    fi
    stop_pid "$SINK_PID" "syslog sink"
    local passed=0 failed=0
    if [[ -n $RESULTS && -f $RESULTS ]]; then
        passed=$(grep -c '^PASS ' "$RESULTS" || true)
        failed=$(grep -c '^FAIL ' "$RESULTS" || true)
    fi
    if [[ $FINAL_DONE != 1 ]]; then
        echo "FAIL sendmail-rig: aborted (exit status $rc) before all scenarios ran"
        if [[ -n $WORK && -f $WORK/sendmail.log ]]; then
            echo "--- last lines of the Sendmail log ---"; tail -n 15 "$WORK/sendmail.log"
        fi
        failed=$((failed + 1))
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${TLSFRONT_IT_KEEP:-0} == 1 || $failed -gt 0 ]]; then
            echo "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    log "run time $((SECONDS - T_START)) s"
    echo "$passed passed, $failed failed"
    ((failed == 0)) || exit 1
    exit 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || { echo "run.sh must run as root (apt-get, namespaces, sendmail)" >&2; exit 1; }

# ---------------------------------------------------------------------------
# 1. Packages: install the tools, download (not install) Sendmail 8.17
# ---------------------------------------------------------------------------
need=()
command -v m4 >/dev/null || need+=(m4)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
# The records against docs/record.schema.json (scenarios.py, ../lib/legacylog.py).
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
command -v swaks >/dev/null || need+=(swaks)
command -v unshare >/dev/null || need+=(util-linux)
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 2>/dev/null || need+=(libio-socket-ssl-perl)
for p in "${SM_LIBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
mkdir -p "$CACHE/debs"
APT_LOG=$CACHE/apt.log
have_debs=1
for p in "${SM_PACKAGES[@]}"; do
    compgen -G "$CACHE/debs/${p}_8.17*.deb" >/dev/null || have_debs=0
done
if ((${#need[@]})) || ((have_debs == 0)); then
    log "apt-get update"
    timeout 300 apt-get update -q > "$APT_LOG" 2>&1 || { cat "$APT_LOG"; exit 1; }
fi
if ((${#need[@]})); then
    log "installing: ${need[*]}"
    timeout 600 apt-get install -y -q --no-install-recommends "${need[@]}" > "$APT_LOG" 2>&1 \
        || { cat "$APT_LOG"; exit 1; }
fi
if ((have_debs == 0)); then
    log "downloading ${SM_PACKAGES[*]} into $CACHE/debs"
    rm -f "$CACHE/debs"/*.deb
    # apt-get download runs as _apt when it can; the cache dir is root's.
    (cd "$CACHE/debs" && timeout 300 apt-get download -q "${SM_PACKAGES[@]}") > "$APT_LOG" 2>&1 \
        || { cat "$APT_LOG"; exit 1; }
    for p in "${SM_PACKAGES[@]}"; do
        compgen -G "$CACHE/debs/${p}_*.deb" >/dev/null || { echo "apt-get download $p failed" >&2; exit 1; }
    done
fi

WORK=$(mktemp -d /var/tmp/tlsfront-sendmail.XXXXXX)
chmod 755 "$WORK"
RESULTS=$WORK/results.txt
: > "$RESULTS"
log "work directory: $WORK"

SMROOT=$WORK/smroot
mkdir -p "$SMROOT"
for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$SMROOT"; done
SENDMAIL=$SMROOT/usr/libexec/sendmail/sendmail
CFDIR=$SMROOT/usr/share/sendmail/cf
[[ -x $SENDMAIL && -f $CFDIR/m4/cf.m4 ]] || { echo "unpacked sendmail is incomplete" >&2; exit 1; }
if ldd "$SENDMAIL" | grep -q 'not found'; then
    echo "sendmail is missing libraries:" >&2; ldd "$SENDMAIL" | grep 'not found' >&2; exit 1
fi
# (Not "sendmail -d0.1": outside the rig's UTS namespace this host's name has
# no dot and sendmail would sleep 60 s looking for a qualified one.)
SM_DEBS=("$CACHE"/debs/sendmail-bin_*.deb)
SM_DEB=${SM_DEBS[0]}
log "sendmail-bin package version: $(dpkg-deb -f "$SM_DEB" Version)"

# ---------------------------------------------------------------------------
# 2. Build the proxy
# ---------------------------------------------------------------------------
PROXY_BIN=$ROOT/target/release/tlsfront
BUILD_OK=1
if [[ ${TLSFRONT_IT_NO_BUILD:-0} == 1 ]]; then
    log "skipping cargo build (TLSFRONT_IT_NO_BUILD=1)"
else
    log "cargo build --release"
    if ! (cd "$ROOT" && timeout 1800 cargo build --release --quiet) > "$WORK/cargo-build.log" 2>&1; then
        tail -n 30 "$WORK/cargo-build.log"
        result cargo_build FAIL "cargo build --release failed (see above)"
        BUILD_OK=0
    fi
fi
[[ -x $PROXY_BIN ]] || BUILD_OK=0

# ---------------------------------------------------------------------------
# 3. Test PKI: root CA, 1024-bit RSA leaf for Sendmail, ECDSA P-256 for tlsfront
# ---------------------------------------------------------------------------
PKI=$WORK/pki
mkdir -p "$PKI"
(
    cd "$PKI"
    cat > ext.cnf <<'EXT'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[legacy]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:legacy.tlsfront.test, DNS:localhost, IP:127.0.0.1
[proxy]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:mx.tlsfront.test, DNS:localhost
EXT
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca-key.pem 2>/dev/null
    openssl req -x509 -new -key ca-key.pem -sha256 -days 7 \
        -subj "/O=tlsfront sendmail rig/CN=tlsfront Sendmail Test CA" \
        -config ext.cnf -extensions ca -out ca.pem 2>/dev/null
    # Sendmail's certificate: RSA-1024, as on the legacy box.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out legacy-key.pem 2>/dev/null
    openssl req -new -key legacy-key.pem -subj "/CN=$LEGACY_HOSTNAME" -out legacy.csr 2>/dev/null
    openssl x509 -req -in legacy.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 7 -sha256 \
        -extfile ext.cnf -extensions legacy -out legacy.pem 2>/dev/null
    # tlsfront's certificate: ECDSA P-256 (full chain = the leaf; the root is the trust anchor).
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out proxy-key.pem 2>/dev/null
    openssl req -new -key proxy-key.pem -subj "/CN=$PROXY_HOSTNAME" -out proxy.csr 2>/dev/null
    openssl x509 -req -in proxy.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 7 -sha256 \
        -extfile ext.cnf -extensions proxy -out proxy-fullchain.pem 2>/dev/null
    rm -f ./*.csr
    # Sendmail refuses group/world-readable private keys.
    chmod 600 ./*-key.pem
    openssl verify -auth_level 0 -CAfile ca.pem legacy.pem proxy-fullchain.pem >/dev/null
    openssl x509 -in legacy.pem -noout -text | grep -q 'Public-Key: (1024 bit)'
)
log "test PKI generated in $PKI"

# ---------------------------------------------------------------------------
# 4. Ports, syslog sink, Sendmail configuration
# ---------------------------------------------------------------------------
# free_port PREFERRED: PREFERRED if nothing listens there, else a free ephemeral port.
free_port() {
    python3 - "$1" <<'PY'
import socket, sys
pref = int(sys.argv[1])
for port in (pref, 0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
    try:
        s.bind(("127.0.0.1", port))
        print(s.getsockname()[1]); break
    except OSError:
        pass
    finally:
        s.close()
PY
}
SM_PORT=$(free_port "${TLSFRONT_SM_PORT:-10026}")
PROXY_PORT=$(free_port "${TLSFRONT_SM_PROXY_PORT:-10587}")
[[ $PROXY_PORT != "$SM_PORT" ]] || PROXY_PORT=$(free_port 0)
PROXY2_PORT=$(free_port 0)
log "sendmail on 127.0.0.1:$SM_PORT, tlsfront on 127.0.0.1:$PROXY_PORT (and :$PROXY2_PORT with source address 127.0.0.2)"

SMLOG=$WORK/sendmail.log
: > "$SMLOG"
python3 "$HERE/syslog_sink.py" "$WORK/syslog.sock" "$SMLOG" 1200 "$LEGACY_HOSTNAME" </dev/null >"$WORK/syslog-sink.out" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 50); do [[ -S $WORK/syslog.sock ]] && break; sleep 0.1; done
[[ -S $WORK/syslog.sock ]] || { echo "syslog sink did not start" >&2; cat "$WORK/syslog-sink.out" >&2; exit 1; }

SMCONF=$WORK/sm
SPOOL=$WORK/delivered
mkdir -p "$SMCONF" "$WORK/mqueue" "$SPOOL" "$WORK/etc" "$WORK/dev"
chmod 700 "$WORK/mqueue"
: > "$WORK/sendmail.st"   # statistics file (sendmail only writes it if it exists)

# Local delivery: every message is written to one file in $SPOOL (runs as
# root thanks to the mailer's S flag; sendmail gives mailers an empty env).
cat > "$SMCONF/deliver.sh" <<EOF
#!/bin/sh
# sendmail local mailer for the rig: deliver.sh RCPT...
umask 077
f="$SPOOL/\$(date +%s.%N).\$\$"
printf '%s\n' "\$@" > "\$f.rcpt"
cat > "\$f.tmp" && mv "\$f.tmp" "\$f.eml"
EOF
chmod 755 "$SMCONF/deliver.sh"

printf '%s\n' "$LEGACY_HOSTNAME" localhost > "$SMCONF/local-host-names"
printf 'postmaster: root\nMAILER-DAEMON: postmaster\nabuse: root\n' > "$SMCONF/aliases"
printf 'hosts files\naliases files\n' > "$SMCONF/service.switch"
cp "$SMROOT/etc/mail/helpfile" "$SMCONF/helpfile" 2>/dev/null || : > "$SMCONF/helpfile"
# Private name service inside Sendmail's mount namespace: no DNS leaves loopback.
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s legacy\n' "$LEGACY_HOSTNAME" > "$WORK/etc/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$WORK/etc/resolv.conf"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\nservices: files\nprotocols: files\n' > "$WORK/etc/nsswitch.conf"

cat > "$SMCONF/sendmail.mc" <<EOF
divert(-1)
# tlsfront integration rig: Sendmail 8.17 as the legacy backend.
divert(0)dnl
VERSIONID(\`tlsfront sendmail rig')dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`$LEGACY_HOSTNAME')dnl
define(\`confCW_FILE', \`-o $SMCONF/local-host-names')dnl
define(\`QUEUE_DIR', \`$WORK/mqueue')dnl
define(\`STATUS_FILE', \`$WORK/sendmail.st')dnl
define(\`confPID_FILE', \`$WORK/sendmail.pid')dnl
define(\`ALIAS_FILE', \`$SMCONF/aliases')dnl
define(\`confHELP_FILE', \`$SMCONF/helpfile')dnl
define(\`confSERVICE_SWITCH_FILE', \`$SMCONF/service.switch')dnl
define(\`confHOST_STATUS_DIRECTORY', \`')dnl
define(\`confUSERDB_SPEC', \`')dnl
define(\`confDEF_USER_ID', \`daemon:daemon')dnl
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confDELIVERY_MODE', \`interactive')dnl
define(\`confLOG_LEVEL', \`14')dnl
define(\`confTO_IDENT', \`0s')dnl
define(\`confTO_QUEUEWARN', \`1h')dnl
define(\`confTO_QUEUERETURN', \`1h')dnl
define(\`confQUEUE_LA', \`100')dnl
define(\`confREFUSE_LA', \`200')dnl
define(\`confPRIVACY_FLAGS', \`authwarnings,novrfy,noexpn')dnl
dnl STARTTLS with the legacy 1024-bit RSA certificate
define(\`confCACERT_PATH', \`$PKI')dnl
define(\`confCACERT', \`$PKI/ca.pem')dnl
define(\`confSERVER_CERT', \`$PKI/legacy.pem')dnl
define(\`confSERVER_KEY', \`$PKI/legacy-key.pem')dnl
dnl local delivery = a file per message in $SPOOL; any local part is accepted
FEATURE(\`local_procmail', \`$SMCONF/deliver.sh', \`deliver.sh \$u', \`SPn9')dnl
MODIFY_MAILER_FLAGS(\`LOCAL', \`-w')dnl
FEATURE(\`no_default_msa')dnl
dnl the rig has no DNS: do not insist that sender domains resolve
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`nocanonify')dnl
DAEMON_OPTIONS(\`Family=inet, Name=MTA-legacy, Addr=127.0.0.1, Port=$SM_PORT')dnl
MAILER(\`local')dnl
MAILER(\`smtp')dnl
EOF
m4 -D_CF_DIR_="$CFDIR/" "$CFDIR/m4/cf.m4" "$SMCONF/sendmail.mc" > "$SMCONF/sendmail.cf" 2> "$SMCONF/m4.err" \
    || { cat "$SMCONF/m4.err" >&2; exit 1; }
[[ ! -s $SMCONF/m4.err ]] || { echo "m4 warnings:" >&2; cat "$SMCONF/m4.err" >&2; }
SMCF=$SMCONF/sendmail.cf
SM_PIDFILE=$WORK/sendmail.pid

# Sendmail runs in its own UTS namespace (dotted host name: no 60 s wait for
# a fully qualified name) and mount namespace (private /etc/hosts,
# /etc/resolv.conf, /etc/nsswitch.conf, and a private /dev whose /dev/log is
# the sink's socket). Nothing outside the namespace is touched.
cat > "$WORK/sm-ns.sh" <<EOF
#!/bin/bash
set -euo pipefail
hostname $LEGACY_HOSTNAME
for f in hosts resolv.conf nsswitch.conf; do mount --bind "$WORK/etc/\$f" "/etc/\$f"; done
mount -t tmpfs -o mode=755 tmpfs "$WORK/dev"
for n in null zero full random urandom; do
    touch "$WORK/dev/\$n"; mount --bind "/dev/\$n" "$WORK/dev/\$n"
done
ln -s /proc/self/fd "$WORK/dev/fd"
ln -s /proc/self/fd/0 "$WORK/dev/stdin"
ln -s /proc/self/fd/1 "$WORK/dev/stdout"
ln -s /proc/self/fd/2 "$WORK/dev/stderr"
touch "$WORK/dev/log"; mount --bind "$WORK/syslog.sock" "$WORK/dev/log"
mount --rbind "$WORK/dev" /dev
"$SENDMAIL" -C "$SMCF" -bi
exec "$SENDMAIL" -C "$SMCF" -bd -q5m
EOF
chmod 700 "$WORK/sm-ns.sh"
log "starting sendmail"
if ! timeout 120 unshare --uts --mount --propagation private -- "$WORK/sm-ns.sh" </dev/null > "$WORK/sm-start.out" 2>&1; then
    cat "$WORK/sm-start.out" >&2
    echo "sendmail did not start" >&2
    exit 1
fi
for _ in $(seq 1 100); do [[ -s $SM_PIDFILE ]] && break; sleep 0.2; done
[[ -s $SM_PIDFILE ]] || { echo "no sendmail pid file" >&2; cat "$WORK/sm-start.out" >&2; exit 1; }
head -n1 "$SM_PIDFILE" > "$WORK/sm-daemon.pid"
SM_PID=$(cat "$WORK/sm-daemon.pid")
log "sendmail daemon pid $SM_PID"

# wait_port PORT SECONDS: bounded wait until 127.0.0.1:PORT accepts.
wait_port() {
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
}
# Sendmail's greeting is what "ready" means; wait_port would leave a
# "lost input channel" line in the log, harmless.
wait_port "$SM_PORT" 30 || { echo "sendmail does not accept on $SM_PORT" >&2; exit 1; }

# ---------------------------------------------------------------------------
# 5. tlsfront in front of Sendmail
# ---------------------------------------------------------------------------
RECORDS=$WORK/records.jsonl
PROXY_LOG=$WORK/tlsfront.log
: > "$RECORDS"
if ((BUILD_OK)); then
    log "starting tlsfront"
    (cd "$WORK" && exec "$PROXY_BIN" run --listen "127.0.0.1:$PROXY_PORT" --backend "127.0.0.1:$SM_PORT" \
        --cert "$PKI/proxy-fullchain.pem" --key "$PKI/proxy-key.pem" \
        --hostname "$PROXY_HOSTNAME" --records "$RECORDS" --log info) </dev/null > "$PROXY_LOG" 2>&1 &
    PROXY_PID=$!
    # A second tlsfront, configured by file, that connects to Sendmail from
    # 127.0.0.2 (backend.source_address): Sendmail's built-in trust in
    # 127.0.0.1 must not extend to Internet clients (README, "The open-relay trap").
    cat > "$WORK/tlsfront-src2.toml" <<EOF
[server]
hostname = "$PROXY_HOSTNAME"
[[listener]]
mode = "starttls"
address = ["127.0.0.1:$PROXY2_PORT"]
[backend]
address = "127.0.0.1:$SM_PORT"
source_address = "127.0.0.2"
[[tls.certificate]]
cert = "$PKI/proxy-fullchain.pem"
key = "$PKI/proxy-key.pem"
[records]
path = "$WORK/records-src2.jsonl"
EOF
    (cd "$WORK" && exec "$PROXY_BIN" run --config "$WORK/tlsfront-src2.toml" --log info) \
        </dev/null > "$WORK/tlsfront-src2.log" 2>&1 &
    PROXY2_PID=$!
    if ! wait_port "$PROXY_PORT" 20; then
        echo "tlsfront does not accept on $PROXY_PORT; its log:"; tail -n 20 "$PROXY_LOG"
        BUILD_OK=0
    fi
    if ! wait_port "$PROXY2_PORT" 20; then
        echo "tlsfront (source 127.0.0.2) does not accept on $PROXY2_PORT; its log:"
        tail -n 20 "$WORK/tlsfront-src2.log"
        PROXY2_OK=0
    fi
fi

# ---------------------------------------------------------------------------
# 6. Scenarios
# ---------------------------------------------------------------------------
export SM_RIG_WORK=$WORK SM_RIG_CA=$PKI/ca.pem SM_RIG_SM_PORT=$SM_PORT SM_RIG_PROXY_PORT=$PROXY_PORT \
    SM_RIG_SMLOG=$SMLOG SM_RIG_SPOOL=$SPOOL SM_RIG_RECORDS=$RECORDS SM_RIG_PROXY_LOG=$PROXY_LOG \
    SM_RIG_PROXY_OK=$BUILD_OK SM_RIG_PROXY_HOSTNAME=$PROXY_HOSTNAME SM_RIG_LEGACY_HOSTNAME=$LEGACY_HOSTNAME \
    SM_RIG_PROXY2_PORT=$PROXY2_PORT SM_RIG_PROXY2_OK=$((BUILD_OK && PROXY2_OK)) \
    SM_RIG_PROXY2_LOG=$WORK/tlsfront-src2.log SM_RIG_RECORDS2=$WORK/records-src2.jsonl \
    SM_RIG_PROXY_BIN=$PROXY_BIN SM_RIG_PKI=$PKI
timeout 420 python3 "$HERE/scenarios.py" </dev/null | tee -a "$RESULTS" || true
grep -q '^scenarios: done' "$RESULTS" || result scenarios FAIL "scenario driver did not finish (crash or 420 s timeout)"
for pair in "$PROXY_PID:$PROXY_LOG" "$PROXY2_PID:$WORK/tlsfront-src2.log"; do
    pid=${pair%%:*} plog=${pair#*:}
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
        result tlsfront_still_running FAIL "tlsfront ($pid) exited during the scenarios; log tail: $(tail -n 5 "$plog" | tr '\n' ' ')"
    fi
done
FINAL_DONE=1
