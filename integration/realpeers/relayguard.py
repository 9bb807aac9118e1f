"""The open-relay guard against real Postfix (issue 12, finding 2).

A legacy MTA trusts its own host: Postfix's mynetworks (Debian's default is
127.0.0.0/8), Sendmail's built-in 127.0.0.1 (integration/sendmail/). Put
tlsfront in front of it on loopback and every Internet client relays.
`tlsfront check` and `tlsfront run` (at start) ask the backend, from the
address tlsfront connects from, to take a recipient in a domain it does not
serve (MAIL FROM:<>, RCPT TO:<relay-test@tlsfront-RANDOM.example.net>, RSET,
never DATA).

  relay       Postfix's default relay restrictions, mynetworks =
              127.0.0.1/32 (run.sh, pf_relay_backend; relayed mail is
              discarded): the guard fires from 127.0.0.1 and
              --source-address 127.0.0.5 clears it (454 4.7.1 Relay access
              denied). A tlsfront run with and without that flag logs the
              same verdicts at start.
  legacy-rsa  refuses other domains at RCPT (its error transport): the
              guard says refused, also from 127.0.0.1.

Python stdlib only; every wait is bounded.
"""

import json
import os
import re
import time

from .harness import Fail, FileTail, check, free_ports, run, tail
from .proxy import Proxy

UNTRUSTED = "127.0.0.5"
LOG_TIMEOUT = 20  # seconds for tlsfront's start-up relay test to be logged


def tlsfront_check(rig, backend, source=None):
    """`tlsfront check` from flags against the backend: (exit code, JSON)."""
    certs = rig["certs"]
    (port,) = free_ports(1)
    cmd = [rig["proxy_bin"], "check", "--json",
           "--listen", f"127.0.0.1:{port}", "--backend", f"127.0.0.1:{backend['port']}",
           "--cert", f"{certs}/proxy-ecdsa-fullchain.pem", "--key", f"{certs}/proxy-ecdsa-key.pem",
           "--hostname", rig["proxy_hostname"],
           # The rig's tlsfront runs as root, not as the unit's dynamic user.
           "--service-user", "root"]
    if source:
        cmd += ["--source-address", source]
    rc, out = run(cmd)
    start = out.find("{")
    try:
        return rc, json.loads(out[start:])
    except ValueError:
        raise Fail(f"check printed no JSON (exit {rc}): {' '.join(cmd)}\n{out[-2000:]}")


def finding(report, code):
    for f in report["findings"]:
        if f["code"] == code:
            return f
    raise Fail(f"no {code} finding: " + json.dumps(
        [(f["level"], f["code"], f["message"]) for f in report["findings"] if f["level"] != "ok"]
        + [f["code"] for f in report["findings"]]))


def relay_disconnects(backend, mark):
    """Postfix's `disconnect from` lines since mark for sessions that gave a
    recipient: each must show no DATA (the test never sends one)."""
    data = FileTail(backend["maillog"]).read_since(mark).decode("utf-8", "replace")
    return [l for l in data.splitlines() if "disconnect from" in l and " rcpt=" in l]


def wait_log_line(path, pattern, timeout=LOG_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if re.search(pattern, line):
                        return line
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    raise Fail(f"no line matching {pattern!r} in {path} within {timeout}s\n{tail(path)}")


def check_fires(rig, backend, source=None):
    mark = FileTail(backend["maillog"]).mark()
    rc, rep = tlsfront_check(rig, backend, source)
    f = finding(rep, "backend_open_relay")
    check(rc == 1 and f["level"] == "error", f"exit {rc}, {f['level']}: {f['message']}")
    for needle in ["OPEN RELAY", "backend.source_address", "--source-address"]:
        check(needle in f["message"], f"{needle!r} not in: {f['message']}")
    src = source or "127.0.0.1"
    check(f"from tlsfront's address {src}" in f["message"], f"source not named: {f['message']}")
    # Postfix accepted the recipient and saw no DATA.
    time.sleep(1.0)  # postlogd writes the disconnect line a moment later
    lines = relay_disconnects(backend, mark)
    check(lines, f"no disconnect line with rcpt= in the backend log\n{tail(backend['maillog'])}")
    check(all(" data=" not in l for l in lines), f"DATA was sent: {lines}")
    return f["message"]


def a_backend_that_does_not_relay_is_refused(rig, backend):
    rc, rep = tlsfront_check(rig, backend)
    f = finding(rep, "backend_relay_refused")
    check(rc == 0 and f["level"] == "ok", f"exit {rc}: {f['message']}")
    check("from tlsfront's address 127.0.0.1" in f["message"], f["message"])


def source_address_clears_it(rig, backend):
    check_fires(rig, backend)
    rc, rep = tlsfront_check(rig, backend, UNTRUSTED)
    f = finding(rep, "backend_relay_refused")
    check(rc == 0 and f["level"] == "ok", f"exit {rc}: {json.dumps(rep['findings'])}")
    check(re.search(r"4\.7\.1 .*Relay access denied", f["message"]),
          f"not Postfix's relay refusal: {f['message']}")
    check(f"from tlsfront's address {UNTRUSTED}" in f["message"], f["message"])


def run_says_it_at_start(rig, backend):
    certs = rig["certs"]
    verdicts = []
    for source, pattern in [(None, r"WARN.*OPEN RELAY.*from tlsfront's address 127\.0\.0\.1"),
                            (UNTRUSTED, rf"refuses to relay from tlsfront's address {re.escape(UNTRUSTED)}")]:
        p1, p2 = free_ports(2)
        name = "relay-guard" + ("-untrusted" if source else "")
        proxy = Proxy(rig, name, backend["port"], f"{certs}/proxy-ecdsa-fullchain.pem",
                      f"{certs}/proxy-ecdsa-key.pem", p1, p2)
        if source:
            proxy.cmd += ["--source-address", source]
        try:
            proxy.start()
            verdicts.append(wait_log_line(proxy.log, pattern))
        finally:
            msg = proxy.stop()
            if msg:
                raise Fail(msg)
    print("    info: " + "\n    info: ".join(v[-220:] for v in verdicts), flush=True)


def scenarios(runner, rig):
    relay, rsa = rig.get("relay"), rig["backends"]["legacy-rsa"]
    if not relay:
        print("NOTE relay guard scenarios not run: no relay backend in the rig description",
              flush=True)
        return
    runner.scenario("relay guard: check fires against Postfix relaying for mynetworks "
                    f"127.0.0.1/32, --source-address {UNTRUSTED} clears it",
                    source_address_clears_it, rig, relay)
    runner.scenario("relay guard: run warns OPEN RELAY at start, and says refused with "
                    f"--source-address {UNTRUSTED}", run_says_it_at_start, rig, relay)
    runner.scenario("relay guard: a Postfix that refuses other domains at RCPT is not an open "
                    "relay", a_backend_that_does_not_relay_is_refused, rig, rsa)
