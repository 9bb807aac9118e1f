#!/usr/bin/env python3
"""Real-peer integration scenarios for tlsfront (driven by integration/run.sh).

run.sh generates certificates, starts the private Postfix instances and writes
a rig description (JSON) whose path is the only argument. This script runs the
scenarios of the realpeers package in order; they start the tlsfront proxies
themselves (by PID, always stopped in a finally block) and print
"PASS name" / "FAIL name: why", appending one JSON line per scenario to the
results file named in the rig description. run.sh prints the final
"N passed, N failed" line after cleanup.

The scenarios, by concern (realpeers/):
  harness    Runner, failures, bounded subprocesses, timeouts
  mail       test messages, Maildir comparison, backend and sender logs
  proxy      tlsfront processes and their records
  clients    smtplib with SNI, openssl s_client, raw replies
  direct     a/b: the legacy backends without tlsfront
  delivery   c: delivery through tlsfront with every client; backend down; [::1]
  hostile    STARTTLS injection, SMTP smuggling, refused handshakes
  lifecycle  SIGTERM with an idle session
  legacylog  report --legacy-log on the backend's maillog; records against the schema
  matrix     GnuTLS, Go, Java, certificate choice, sslscan; MATRIX.md
  security   no client inherits another's backend state (SASL backend)
  fleet      HAProxy (send-proxy-v2, smtpchk) in front of two tlsfront hosts
  relayguard check and run say OPEN RELAY when Postfix trusts tlsfront's address
This file composes them: which scenarios run against which proxy.

Python stdlib only. Every network call and subprocess has a timeout; every
wait loop is bounded.
"""

import json
import signal
import sys

from realpeers import direct, fleet, relayguard, security
from realpeers.delivery import (
    PROXY_DELIVERIES, backend_down_scenarios, backend_limit_scenarios, backend_rejection_passthrough,
    concurrent_sessions,
    eightbit_body, ipv6_scenarios, resumed_with_one_ticket, two_messages_one_session, via_proxy,
)
from realpeers.harness import Runner, check, start_or_fail
from realpeers.hostile import dhe_only_rejected, smuggling_blocked, starttls_injection, tls11_rejected
from realpeers.legacylog import legacy_log_catches_direct_sessions
from realpeers.lifecycle import sigterm_with_idle_session
from realpeers.matrix import matrix_cell, matrix_scenarios, write_matrix
from realpeers.proxy import Proxy


def proxy_scenarios(runner, rig, name, backend, cert, key, ports, idle_at_stop=False):
    proxy = Proxy(rig, name, backend["port"], cert, key, *ports)
    prefix = f"proxy[{name}]"
    names = [f"{prefix} deliver via {c}{' 200KB' if big else ''} ({v})"
             for c, v, big in PROXY_DELIVERIES]
    extras = [
        (f"{prefix} two messages in one session", two_messages_one_session),
        (f"{prefix} s_client resumes from the one TLS 1.3 ticket, AES-128-GCM first", resumed_with_one_ticket),
        (f"{prefix} backend's RCPT rejection passed through unchanged", backend_rejection_passthrough),
        (f"{prefix} 8-bit UTF-8 body (BODY=8BITMIME) intact", eightbit_body),
        (f"{prefix} 5 concurrent sessions", concurrent_sessions),
        (f"{prefix} plaintext command pipelined after STARTTLS is not executed", starttls_injection),
        (f"{prefix} SMTP smuggling (<LF>.<LF>) stays one message", smuggling_blocked),
        (f"{prefix} report --legacy-log catches direct sessions in the backend's maillog, "
         "records match the schema", legacy_log_catches_direct_sessions),
    ]
    names += [n for n, _ in extras]
    names.append(f"{prefix} TLS 1.2 DHE-only client rejected, failure recorded")
    names.append(f"{prefix} TLS 1.1 client rejected, failure recorded, backend untouched")
    stop_name = (f"{prefix} SIGTERM with an idle TLS session: clean exit, session recorded"
                 if idle_at_stop else f"{prefix} exits on SIGTERM")
    names.append(stop_name)
    if runner.filter and not any(runner.filter.search(n) for n in names):
        return
    if not start_or_fail(runner, proxy, prefix, names):
        return
    try:
        for (client, ver, large), label in zip(PROXY_DELIVERIES, names):
            runner.scenario(label, via_proxy, rig, proxy, backend, client, ver, large,
                            matrix=matrix_cell(client, ver, large, proxy, name))
        for label, fn in extras:
            runner.scenario(label, fn, rig, proxy, backend)
        runner.scenario(names[-3], dhe_only_rejected, rig, proxy, backend)
        runner.scenario(names[-2], tls11_rejected, rig, proxy, backend)
        if idle_at_stop:
            runner.scenario(stop_name, sigterm_with_idle_session, rig, proxy, backend)
    finally:
        msg = proxy.stop()
        if not idle_at_stop:
            runner.report(stop_name, "FAIL" if msg else "PASS", msg or proxy.exit_note)
        elif msg:
            runner.report(f"{prefix} cleanup", "FAIL", msg)


def no_improper_pipelining(rig):
    """Every Postfix the rig ran, read at the end: none logged "improper
    command pipelining" for a session of tlsfront's (RFC 2920: nothing after a
    command that must end a group). Only the direct smuggling control, which
    pipelines on purpose and never passes through tlsfront, may be there."""
    logs = [b["maillog"] for b in rig["backends"].values()]
    logs += [rig["sasl"]["maillog"], rig["relay"]["maillog"]]
    found = []
    for path in logs:
        try:
            with open(path, errors="replace") as f:
                found += [l.strip() for l in f if "improper command pipelining" in l
                          and "smuggle-direct" not in l]
        except FileNotFoundError:
            pass
    check(not found, "improper pipelining to a backend:\n" + "\n".join(found[:5]))


def main():
    # run.sh may SIGTERM us (its own signal/timeout): unwind through the
    # finally blocks so every proxy we started is stopped by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with open(sys.argv[1]) as f:
        rig = json.load(f)
    runner = Runner(rig)
    rsa, dh = rig["backends"]["legacy-rsa"], rig["backends"]["legacy-dh"]

    # a/b. the legacy backends directly
    direct.scenarios(runner, rig)
    # c/d. tlsfront in front of each backend (ECDSA leaf / RSA leaf + intermediate)
    certs = rig["certs"]
    proxy_scenarios(runner, rig, "legacy-rsa", rsa, f"{certs}/proxy-ecdsa-fullchain.pem",
                    f"{certs}/proxy-ecdsa-key.pem", rig["proxy_ports"]["legacy-rsa"])
    proxy_scenarios(runner, rig, "legacy-dh", dh, f"{certs}/proxy-rsa-fullchain.pem",
                    f"{certs}/proxy-rsa-key.pem", rig["proxy_ports"]["legacy-dh"],
                    idle_at_stop=True)
    ipv6_scenarios(runner, rig, rsa)
    matrix_scenarios(runner, rig, rsa)
    backend_down_scenarios(runner, rig)
    backend_limit_scenarios(runner, rig, rsa)
    # Security scenarios: the SASL backend, inherited state.
    security.scenarios(runner, rig)
    # Two tlsfront hosts behind HAProxy.
    fleet.scenarios(runner, rig)
    # The open-relay guard against both legacy backends' mynetworks.
    relayguard.scenarios(runner, rig)
    runner.scenario("no backend saw improper command pipelining from tlsfront",
                    no_improper_pipelining, rig)
    write_matrix(rig, runner)


if __name__ == "__main__":
    main()
