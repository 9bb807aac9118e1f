# shellcheck shell=bash
# Helpers to build and run private Postfix instances for the integration rig.
# Sourced by run.sh. Every instance lives entirely below its own directory:
#   $dir/etc   config_directory (main.cf, master.cf, maps)
#   $dir/queue queue_directory   $dir/data data_directory
#   $dir/mail  virtual mailbox base; every message lands in mail/inbox/new/
#   $dir/maillog                 the instance's log (postlogd, no syslog needed)
# and uses its own OPENSSL_CONF via import_environment.

PF_DEFAULT_MAIN=/etc/postfix/main.cf
PF_CREATED_DEFAULT_MAIN=0
PF_SAVED_ALT_DIRS=
PF_ALT_DIRS_WAS_SET=0
PF_TOUCHED_ALT_DIRS=0
PF_STARTED=()

# pf_register_alt_dirs DIR... : postfix(1) only accepts "-c DIR" for directories
# listed in alternate_config_directories of the *default* main.cf.
pf_register_alt_dirs() {
    if [[ ! -e $PF_DEFAULT_MAIN ]]; then
        # "No configuration" install: create a minimal default main.cf; the
        # default instance is never started by us. Removed again on cleanup.
        printf '# created by tlsfront integration/run.sh; removed on exit\ncompatibility_level = 3.6\n' > "$PF_DEFAULT_MAIN"
        PF_CREATED_DEFAULT_MAIN=1
    else
        # Remember whether it was set explicitly, to restore exactly that.
        if [[ -n $(postconf -n alternate_config_directories) ]]; then
            PF_SAVED_ALT_DIRS=$(postconf -h alternate_config_directories)
            PF_ALT_DIRS_WAS_SET=1
        fi
    fi
    local list=${PF_SAVED_ALT_DIRS}
    local d
    for d in "$@"; do list="${list:+$list, }$d"; done
    postconf -e "alternate_config_directories = $list"
    PF_TOUCHED_ALT_DIRS=1
}

pf_unregister_alt_dirs() {
    if [[ $PF_CREATED_DEFAULT_MAIN == 1 ]]; then
        rm -f "$PF_DEFAULT_MAIN"
    elif [[ $PF_TOUCHED_ALT_DIRS == 1 && $PF_ALT_DIRS_WAS_SET == 1 ]]; then
        postconf -e "alternate_config_directories = $PF_SAVED_ALT_DIRS" || true
    elif [[ $PF_TOUCHED_ALT_DIRS == 1 ]]; then
        postconf -X alternate_config_directories || true
    fi
    PF_TOUCHED_ALT_DIRS=0
}

# pf_write_master DIR SMTPD_LISTEN : master.cf without chroot (no chroot
# jail to populate), logging through postlogd. SMTPD_LISTEN may be empty
# (sender instance: mail is injected with sendmail -C).
pf_write_master() {
    local etc=$1/etc listen=$2
    {
        echo "# service type  private unpriv  chroot  wakeup  maxproc command"
        [[ -n $listen ]] && echo "$listen inet n - n - - smtpd"
        cat <<'MASTER'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
smtp      unix  -       -       n       -       -       smtp
MASTER
    } > "$etc/master.cf"
}

# pf_common_main DIR NAME : settings shared by every instance.
pf_common_main() {
    local dir=$1 name=$2
    local etc=$dir/etc
    local env_default
    env_default=$(postconf -dh import_environment)
    cat > "$etc/main.cf" <<MAIN
# Private Postfix instance "$name" for the tlsfront integration rig.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $name.tlsfront.test
mydomain = tlsfront.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
syslog_name = postfix-$name
# Log to a file through postlogd: no syslog daemon on CI machines.
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
alias_maps =
alias_database =
local_recipient_maps =
biff = no
# Never rewrite the headers of a message under test.
local_header_rewrite_clients =
append_dot_mydomain = no
# No DNS on this machine: every next hop is an IP literal.
smtp_host_lookup = native
smtp_dns_support_level = disabled
# Private OpenSSL configuration (SECLEVEL=0 for the legacy instances).
import_environment = $env_default OPENSSL_CONF=$dir/openssl.cnf
MAIN
}

# pf_openssl_conf DIR SECLEVEL_CIPHERS
pf_openssl_conf() {
    cat > "$1/openssl.cnf" <<CNF
# Private OpenSSL config imported by this Postfix instance only.
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = $2
CNF
}

# pf_backend DIR NAME PORT CERTDIR KIND : a legacy backend that accepts mail
# for @tlsfront.test from 127.0.0.0/8 and stores each message as a Maildir
# file under $DIR/mail/<localpart>/new/. KIND is rsa or dh.
pf_backend() {
    local dir=$1 name=$2 port=$3 certs=$4 kind=$5
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail"
    chmod 755 "$dir" "$dir/etc"
    chown postfix: "$dir/data"   # master.lock etc. are created as mail_owner
    # virtual(8) writes as this uid/gid; keep >= virtual_minimum_uid (100).
    chown nobody:nogroup "$dir/mail"
    pf_common_main "$dir" "$name"
    pf_write_master "$dir" "127.0.0.1:$port"
    pf_openssl_conf "$dir" 'DEFAULT:@SECLEVEL=0'
    cat >> "$dir/etc/main.cf" <<MAIN
virtual_mailbox_domains = tlsfront.test
virtual_mailbox_base = $dir/mail
# Every recipient -> one Maildir (trailing slash); each message is one file
# in inbox/new/, found by its unique Message-ID.
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(getent group nogroup | cut -d: -f3)
# Bounces etc. never leave the machine.
default_transport = error:the legacy backend does not relay
relay_transport = error:the legacy backend does not relay
smtpd_banner = \$myhostname ESMTP legacy backend ($kind)
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
MAIN
    case $kind in
    rsa)
        # 1024-bit RSA certificate; only loadable at SECLEVEL=0.
        cat >> "$dir/etc/main.cf" <<MAIN
smtpd_tls_cert_file = $certs/legacy-rsa.pem
smtpd_tls_key_file = $certs/legacy-rsa-key.pem
MAIN
        ;;
    dh)
        # TLS <= 1.2 only, DHE key exchange only, 1024-bit DH group.
        cat >> "$dir/etc/main.cf" <<MAIN
smtpd_tls_cert_file = $certs/legacy-dh.pem
smtpd_tls_key_file = $certs/legacy-dh-key.pem
smtpd_tls_protocols = !SSLv2, !SSLv3, !TLSv1.3
smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3, !TLSv1.3
smtpd_tls_ciphers = high
smtpd_tls_mandatory_ciphers = high
smtpd_tls_exclude_ciphers = kECDHE, kRSA, kPSK, aNULL, eNULL, aECDSA
smtpd_tls_dh1024_param_file = $certs/dh1024.pem
# Both of Postfix's checks against improper pipelining (a command after one
# that must end a group, RFC 2920 3.1), as the SMTP-smuggling advisories of
# December 2023 had admins set and Postfix >= 3.9 does by default: every
# delivery through tlsfront to this backend proves tlsfront keeps to them.
smtpd_forbid_unauth_pipelining = yes
smtpd_data_restrictions = reject_unauth_pipelining
MAIN
        ;;
    *) echo "pf_backend: unknown kind $kind" >&2; return 1 ;;
    esac
}

# pf_sasl_backend DIR NAME PORT AUTH_PORT TRUSTED : a backend that relays for
# SASL-authenticated clients only (the submission setup of issue 10). SASL is
# Dovecot's protocol on inet:127.0.0.1:AUTH_PORT, served by the scenario
# driver (realpeers/security.py), which must be listening before the first SMTP
# session. No TLS (tlsfront's hop is plaintext on loopback), so AUTH is
# offered in clear. mynetworks is TRUSTED only (tlsfront connects from
# another address) and the relay restrictions do not consult it anyway.
# Relayed mail is discarded: nothing leaves the machine, and the log still
# says which SASL user each accepted transaction ran as.
pf_sasl_backend() {
    local dir=$1 name=$2 port=$3 auth_port=$4 trusted=$5
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chmod 755 "$dir" "$dir/etc"
    chown postfix: "$dir/data"
    pf_common_main "$dir" "$name"
    pf_write_master "$dir" "127.0.0.1:$port"
    pf_openssl_conf "$dir" 'DEFAULT:@SECLEVEL=2'
    postconf -c "$dir/etc" -e "mynetworks = $trusted"
    cat >> "$dir/etc/main.cf" <<MAIN
smtpd_banner = \$myhostname ESMTP SASL relay backend
default_transport = discard:relayed by the tlsfront test rig
relay_transport = discard:relayed by the tlsfront test rig
smtpd_tls_security_level = none
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$auth_port
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
MAIN
}

# pf_relay_backend DIR NAME PORT TRUSTED : a backend as Postfix ships,
# relaying for its mynetworks (TRUSTED) by the default smtpd_relay_restrictions
# (permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination);
# relayed mail is discarded, so nothing leaves the machine. The open-relay
# guard's scenarios (realpeers/relayguard.py) ask it from inside and outside
# TRUSTED.
pf_relay_backend() {
    local dir=$1 name=$2 port=$3 trusted=$4
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chmod 755 "$dir" "$dir/etc"
    chown postfix: "$dir/data"
    pf_common_main "$dir" "$name"
    pf_write_master "$dir" "127.0.0.1:$port"
    pf_openssl_conf "$dir" 'DEFAULT:@SECLEVEL=2'
    postconf -c "$dir/etc" -e "mynetworks = $trusted"
    cat >> "$dir/etc/main.cf" <<MAIN
smtpd_banner = \$myhostname ESMTP relay backend
default_transport = discard:relayed by the tlsfront test rig
relay_transport = discard:relayed by the tlsfront test rig
smtpd_tls_security_level = none
MAIN
}

# pf_sender DIR NAME CERTDIR TRANSPORT_REGEXP POLICY_TEXTHASH : a sending
# instance (mail injected with "sendmail -C DIR/etc") whose smtp client
# relays through the proxy. Routing is per recipient local part (see the
# regexp file written by the caller):
#   smtp:[127.0.0.1]:P        TLS level "encrypt" (main.cf)
#   smtpsecure:[127.0.0.1]:P  TLS level "secure", verified against the test
#                             CA with match=mx.tlsfront.test (policy table)
pf_sender() {
    local dir=$1 name=$2 certs=$3 transport=$4 policy=$5
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chmod 755 "$dir" "$dir/etc"
    chown postfix: "$dir/data"
    pf_common_main "$dir" "$name"
    pf_write_master "$dir" ""
    pf_openssl_conf "$dir" 'DEFAULT:@SECLEVEL=2'
    printf '%s\n' "$transport" > "$dir/etc/transport.regexp"
    printf '%s\n' "$policy" > "$dir/etc/tls_policy_secure"
    cat >> "$dir/etc/master.cf" <<MASTER
smtpsecure unix -       -       n       -       -       smtp
  -o smtp_tls_policy_maps=texthash:$dir/etc/tls_policy_secure
  -o smtp_tls_servername=${PROXY_HOSTNAME:-mx.tlsfront.test}
  -o smtp_helo_name=pf-secure.client.test
MASTER
    cat >> "$dir/etc/main.cf" <<MAIN
transport_maps = regexp:$dir/etc/transport.regexp
# Anything not routed explicitly must not leave the machine.
default_transport = error:not routed by the tlsfront test rig
relay_transport = error:not routed by the tlsfront test rig
smtp_helo_name = pf-encrypt.client.test
smtp_tls_security_level = encrypt
smtp_tls_CAfile = $certs/ca.pem
smtp_tls_loglevel = 1
# One connection per message, so each proxy record maps to one delivery.
smtp_connection_cache_on_demand = no
smtp_tls_connection_reuse = no
MAIN
}

# pf_start DIR : check, fix permissions and start; remembered for pf_stop_all.
pf_start() {
    local dir=$1
    # (explicit "|| return": set -e does not apply inside "if ! pf_start")
    postfix -c "$dir/etc" check || return 1
    PF_STARTED+=("$dir")
    postfix -c "$dir/etc" start || return 1
    local i
    for ((i = 0; i < 50; i++)); do
        postfix -c "$dir/etc" status >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "pf_start: $dir did not come up" >&2
    return 1
}

# pf_master_pid DIR : pid of the instance's master, empty if none.
pf_master_pid() {
    local f=$1/queue/pid/master.pid
    [[ -r $f ]] && tr -d ' \n' < "$f"
}

# pf_stop_all : graceful stop, then abort, then SIGKILL the master by PID.
pf_stop_all() {
    local dir pid i
    for dir in "${PF_STARTED[@]}"; do
        pid=$(pf_master_pid "$dir" || true)
        postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
        [[ -z $pid ]] && continue
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "postfix master $pid ($dir) still running; killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    PF_STARTED=()
}
