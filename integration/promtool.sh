#!/usr/bin/env bash
# The example Prometheus alert rules (packaging/prometheus/tlsfront-alerts.yml)
# through Debian's promtool: `promtool check rules` (syntax, PromQL, templates)
# and `promtool test rules` (each alert fires on the series it should, and
# not before its `for:`). Installs the prometheus package if promtool is
# missing (needs root then); the Prometheus server it brings is never left
# running.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RULES=$ROOT/packaging/prometheus

if ! command -v promtool >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "promtool is not installed and this is not root: apt-get install prometheus"
        exit 1
    fi
    apt-get update -qq
    # A policy-rc.d that says no keeps the package from starting the server
    # (removed again on every exit path, unless it was there before).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # Where policy-rc.d is not honoured, the server may have started anyway.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        systemctl stop prometheus
    fi
fi

promtool --version 2>&1 | head -1
passed=0
failed=0
run() {
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
# Relative paths: the test file names its rules file beside it.
cd "$RULES"
run promtool check rules tlsfront-alerts.yml
run promtool test rules tlsfront-alerts.test.yml
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
