#!/usr/bin/env bash
# `tlsfront report --html` in a real browser: Debian's chromium, headless.
#
#   bash integration/report-html/run.sh      (as root: it apt-get installs chromium)
#
# Makes two hosts' record files and a legacy MTA log (make_records.py), writes
# the HTML report, then in headless Chromium:
#   1. loads a copy of the page with a measuring script appended (the page
#      itself has none) and dumps the DOM: every chart is an <svg> with a
#      non-zero rendered size and bars of non-zero size;
#   2. takes a screenshot of the page as it is and checks it is not blank and
#      shows the charts' colours (check_png.py, stdlib only).
# The page and the screenshot stay in target/report-html/ (a CI artifact).
# Prints PASS/FAIL lines and "N passed, N failed" last.
#
# Environment knobs:
#   TLSFRONT_IT_NO_BUILD=1   use the existing target/release/tlsfront
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/target/report-html
export LC_ALL=C

passed=0 failed=0
result() {
    printf '%s %s%s\n' "$1" "$2" "${3:+: $3}"
    if [[ $1 == PASS ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
WORK=
cleanup() {
    local rc=$?
    [[ -n $WORK ]] && rm -rf "$WORK"
    if ((rc != 0 && failed == 0)); then
        echo "FAIL report-html: aborted (exit status $rc)"
        failed=1
    fi
    echo "$passed passed, $failed failed"
    ((failed == 0)) || exit 1
    exit 0
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || { echo "run.sh must run as root (apt-get install chromium)" >&2; exit 1; }

if ! command -v chromium >/dev/null; then
    echo "installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q >/dev/null
    timeout 900 apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version

BIN=$ROOT/target/release/tlsfront
if [[ ${TLSFRONT_IT_NO_BUILD:-0} != 1 || ! -x $BIN ]]; then
    (cd "$ROOT" && timeout 1800 cargo build --release --quiet)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlsfront-html.XXXXXX")
mkdir -p "$OUT"
python3 "$HERE/make_records.py" "$WORK" >/dev/null
PAGE=$OUT/report.html
"$BIN" report --since 15d --html "$PAGE" --legacy-log "$WORK/maillog" \
    --tlsfront-source 10.0.0.5 "$WORK/mx1.jsonl" "$WORK/mx2.jsonl" > "$OUT/report.txt"
grep -q '^Legacy path retired: NO' "$OUT/report.txt" \
    && result PASS "report --html writes the page (verdict NO: the TLS 1.0 sender, the direct session)" \
    || result FAIL "report --html" "$(tail -5 "$OUT/report.txt")"

# Chromium as root needs --no-sandbox; a fresh profile each time; nothing
# fetched from the network.
browse() {
    local profile
    profile=$(mktemp -d "$WORK/profile.XXXXXX")
    timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$profile" "$@" 2>>"$WORK/chromium.log"
}

# 1. Rendered sizes, measured in the browser.
MEASURED=$WORK/measured.html
python3 - "$PAGE" "$HERE/measure.js" "$MEASURED" <<'PY'
import sys
page, script = open(sys.argv[1]).read(), open(sys.argv[2]).read()
end = page.rindex("</body>")
open(sys.argv[3], "w").write(page[:end] + "<script>" + script + "</script>" + page[end:])
PY
browse --virtual-time-budget=5000 --dump-dom "file://$MEASURED" \
    > "$WORK/dom.html" || true
if python3 - "$WORK/dom.html" <<'PY'
import json, re, sys
dom = open(sys.argv[1], errors="replace").read()
m = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
if not m:
    sys.exit(f"no measurement in the dumped DOM ({len(dom)} bytes)")
charts = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
want = ["per-day", "tls-share", "categories", "versions", "groups", "failures", "simulation"]
problems = []
for cid in want:
    c = charts.get(cid)
    if not c:
        problems.append(f"{cid}: no such chart")
    elif c["width"] <= 0 or c["height"] <= 0:
        problems.append(f"{cid}: rendered {c['width']}x{c['height']}")
    elif c["marks"] == 0:
        problems.append(f"{cid}: no bar, line or point with a size")
for cid, c in sorted(charts.items()):
    print(f"  {cid}: {c['width']:.0f}x{c['height']:.0f}, {c['marks']} marks")
sys.exit("; ".join(problems) if problems else 0)
PY
then
    result PASS "chromium renders every chart with a size (DOM measured after load)"
else
    result FAIL "chromium DOM" "see above; $(tail -3 "$WORK/chromium.log" | tr '\n' ' ')"
fi

# 2. The page as it is, with no script: a screenshot with the charts in it.
SHOT=$OUT/report.png
rm -f "$SHOT"
(cd "$WORK" && browse --window-size=1000,2600 --screenshot="$SHOT" "file://$PAGE") >/dev/null || true
if [[ -s $SHOT ]] && python3 "$HERE/check_png.py" "$SHOT"; then
    result PASS "chromium screenshot shows the charts (kept in target/report-html/report.png)"
else
    result FAIL "chromium screenshot" "$(tail -3 "$WORK/chromium.log" | tr '\n' ' ')"
fi
