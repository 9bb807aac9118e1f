#!/usr/bin/env bash
# The whole tlsfront test suite, as the README and CI run it:
#   1. formatting and lints (the same gates CI applies);
#   2. the dependencies against the RustSec advisory database, when it can be
#      fetched (skipped, and said so, when it cannot: CI may be offline);
#   3. unit tests beside the code and in-process end-to-end tests in tests/
#      (the ACME ones against pebble, which it installs);
#   4. real-peer scenarios in integration/ (installs Postfix, swaks, HAProxy, ...
#      itself), the fleet behind HAProxy among them;
#   5. the HTML report in headless Chromium (installs chromium itself);
#   6. a short soak (75 s of mixed sessions, memory flat after a warm-up);
#   7. the example Prometheus alert rules through promtool (installs
#      Debian's prometheus package, never leaves its server running);
#   8. the systemd units, then the Debian package: built, installed with
#      dpkg -i, the installed files checked, purged again.
# Fails on the first failing stage. Works from any directory; needs root for
# the real-peer and package stages (apt-get, private Postfix instances,
# dpkg -i).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

stage() { printf '\n=== %s\n' "$*"; }

stage "cargo fmt --check"
cargo fmt --check

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

# Cargo.lock against the RustSec advisories: a known vulnerability fails the
# run. The database is a git repository on GitHub; TLSFRONT_ADVISORY_DB names
# a local copy instead (a mirror, or to audit offline). Nothing here fails
# when the database or cargo-audit cannot be had: it says so and goes on.
audit() {
    local db=${TLSFRONT_ADVISORY_DB:-} err
    if [[ -z $db ]]; then
        db=$ROOT/target/advisory-db
        rm -rf "$db.new"
        if ! err=$(timeout 120 git clone --quiet --depth 1 \
                https://github.com/rustsec/advisory-db.git "$db.new" 2>&1); then
            rm -rf "$db.new"
            echo "SKIPPED: the RustSec advisory database cannot be fetched" \
                 "(${err##*$'\n'}): dependencies NOT audited" \
                 "(set TLSFRONT_ADVISORY_DB to a local copy to audit offline)"
            return 0
        fi
        rm -rf "$db" && mv "$db.new" "$db"
    fi
    if ! cargo audit --version >/dev/null 2>&1; then
        echo "cargo-audit not installed: cargo install --locked cargo-audit (at most 30 min)"
        if ! timeout 1800 cargo install --locked --quiet cargo-audit; then
            echo "SKIPPED: cargo-audit could not be installed: dependencies NOT audited"
            return 0
        fi
    fi
    timeout 600 cargo audit --no-fetch --db "$db" --file "$ROOT/Cargo.lock"
}

stage "cargo audit (RustSec advisory database)"
audit

# The ACME tests (tests/acme.rs) run against Debian's pebble, a small ACME
# CA the tests start on loopback ports; without it they would only say
# SKIPPED, so the suite installs it and makes them required.
stage "ACME test CA (pebble)"
if ! command -v pebble >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble
    else
        echo "pebble is not installed and this is not root: apt-get install pebble"
        exit 1
    fi
fi
export TLSFRONT_REQUIRE_PEBBLE=1

stage "cargo test (unit and in-process end-to-end)"
cargo test --all-targets

# One release build for every stage below (the rigs, the soak, the package),
# without a time limit of its own: from a clean clone on 2 cores it takes
# several minutes, longer when the machine is busy.
stage "cargo build --release"
cargo build --release

stage "real peers (integration/run.sh)"
TLSFRONT_IT_NO_BUILD=1 bash "$ROOT/integration/run.sh"

stage "real Sendmail 8.17 backend (integration/sendmail/run.sh)"
TLSFRONT_IT_NO_BUILD=1 bash "$ROOT/integration/sendmail/run.sh"

stage "HTML report in headless Chromium (integration/report-html/run.sh)"
TLSFRONT_IT_NO_BUILD=1 bash "$ROOT/integration/report-html/run.sh"

stage "soak, short (integration/soak.sh, 75 s; the full one is 10 minutes)"
SOAK_SECONDS=75 bash "$ROOT/integration/soak.sh"

stage "Prometheus alert rules (integration/promtool.sh)"
bash "$ROOT/integration/promtool.sh"

stage "systemd units (integration/systemd-verify.sh)"
bash "$ROOT/integration/systemd-verify.sh"

# Last: while the package is installed, /etc/tlsfront/tlsfront.toml is the
# default configuration of every tlsfront on this machine.
stage "Debian package (integration/package.sh)"
bash "$ROOT/integration/package.sh"
