#!/usr/bin/env bash
# The whole tlsfront test suite, as the README and CI run it:
#   1. formatting and lints (the same gates CI applies);
#   2. unit tests beside the code and in-process end-to-end tests in tests/;
#   3. real-peer scenarios in integration/ (installs Postfix, swaks, ... itself).
# Fails on the first failing stage. Works from any directory; needs root for
# the real-peer stage (apt-get and private Postfix instances).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

stage() { printf '\n=== %s\n' "$*"; }

stage "cargo fmt --check"
cargo fmt --check

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

stage "cargo test (unit and in-process end-to-end)"
cargo test --all-targets

stage "real peers (integration/run.sh)"
bash "$ROOT/integration/run.sh"

stage "real Sendmail 8.17 backend (integration/sendmail/run.sh)"
TLSFRONT_IT_NO_BUILD=1 bash "$ROOT/integration/sendmail/run.sh"

stage "systemd units (integration/systemd-verify.sh)"
bash "$ROOT/integration/systemd-verify.sh"
