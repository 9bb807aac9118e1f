#!/usr/bin/env python3
"""Writes two hosts' record files and a legacy MTA log for the HTML report
test: 14 days of scanners, plaintext senders, modern TLS 1.3 and 1.2
senders, one TLS 1.0-only sender, a client refusing the certificate, and a
direct session in the legacy log.

    make_records.py DIR

Deterministic (fixed seed), ending now, so --since 14d selects it all."""

import datetime
import json
import os
import random
import sys

MODERN = {"versions": ["TLSv1.3", "TLSv1.2"], "groups": ["X25519MLKEM768", "X25519", "secp256r1"],
          "sigs": ["ecdsa", "rsa_pss", "rsa_pkcs1"], "suites": ["tls13", "ecdhe_ecdsa", "ecdhe_rsa"]}
CLASSIC13 = {"versions": ["TLSv1.3", "TLSv1.2"], "groups": ["X25519", "secp256r1"],
             "sigs": ["ecdsa", "rsa_pss", "rsa_pkcs1"], "suites": ["tls13", "ecdhe_ecdsa", "ecdhe_rsa"]}
TLS12 = {"versions": ["TLSv1.2"], "groups": ["secp256r1", "secp384r1"], "sigs": ["rsa_pkcs1"],
         "suites": ["ecdhe_rsa", "ecdhe_cbc", "rsa_cbc"]}
TLS10 = {"versions": ["TLSv1.0"], "groups": [], "sigs": [], "suites": ["rsa_cbc", "weak"]}


def record(ts, host, n, ip, kind):
    r = {"ts": ts, "host": host, "session": f"{host}-{n}", "listener": "192.0.2.1:25",
         "mode": "starttls", "client_ip": ip, "client_port": 40000 + n % 20000,
         "server_hostname": "mx.example.test", "sni": None, "starttls_offered": True,
         "starttls_used": False, "tls": "not_attempted", "tls_version": None,
         "cipher_suite": None, "kx_group": None, "cert_subject": None, "cert_key_type": None,
         "self_signed": False, "resumed": None, "handshake_ms": None, "failure_reason": None,
         "failure_detail": None, "offer": None, "client_hello": None,
         "pipelined_after_starttls": 0, "helo": "client.example", "messages_accepted": 0,
         "messages_rejected": 0, "recipients": 0, "bytes": 0, "bare_line_endings": 0,
         "control_dot_lines": 0, "tls_required_refusals": 0, "tls_required_would_refuse": 0,
         "backend_contacted": False, "backend_addr": None, "backend_connect_ms": None,
         "backend_reused": False, "backend_identity": None, "backend_tls_version": None,
         "backend_cipher_suite": None, "backend_error": None, "close_reason": "client_quit",
         "duration_ms": 12.5, "truncated": False}
    mail = {"backend_contacted": True, "backend_addr": "127.0.0.1:10025", "messages_accepted": 1,
            "recipients": 1, "bytes": 2048}
    tls = {"starttls_used": True, "sni": "mx.example.test", "cert_subject": "CN=mx.example.test",
           "handshake_ms": 3.2, "resumed": False}
    if kind == "probe":
        r["helo"] = None
    elif kind == "plaintext":
        r.update(mail)
    elif kind in ("tls13", "tls13-classic", "tls12"):
        r.update(mail)
        r.update(tls)
        r["tls"] = "established"
        if kind == "tls12":
            r.update(tls_version="TLSv1.2", cipher_suite="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                     kx_group="secp256r1", cert_key_type="rsa_2048", offer=TLS12)
        else:
            pq = kind == "tls13"
            r.update(tls_version="TLSv1.3", cipher_suite="TLS13_AES_256_GCM_SHA384",
                     kx_group="X25519MLKEM768" if pq else "X25519", cert_key_type="ecdsa_p256",
                     offer=MODERN if pq else CLASSIC13)
    elif kind == "tls10":
        r.update(tls)
        r.update(tls="failed", failure_reason="client_tls_version_too_old",
                 failure_detail="peer is incompatible", offer=TLS10,
                 close_reason="handshake_failed")
    elif kind == "unknown-ca":
        r.update(tls)
        r.update(tls="failed", failure_reason="alert_unknown_ca", offer=CLASSIC13,
                 close_reason="handshake_failed")
    return r


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(13)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    senders = ([(f"192.0.2.{i}", "tls13") for i in range(1, 40)]
               + [(f"198.51.100.{i}", "tls13-classic") for i in range(1, 20)]
               + [(f"198.51.100.{i}", "tls12") for i in range(100, 110)]
               + [(f"203.0.113.{i}", "plaintext") for i in range(1, 8)]
               + [(f"203.0.113.{i}", "probe") for i in range(100, 130)])
    files = {"mx1": open(os.path.join(out, "mx1.jsonl"), "w"),
             "mx2": open(os.path.join(out, "mx2.jsonl"), "w")}
    n = 0
    for day in range(14, 0, -1):
        for _ in range(120 + 10 * (14 - day)):
            n += 1
            ip, kind = rnd.choice(senders)
            # The TLS share grows over the fortnight: fewer plaintext later.
            if kind == "plaintext" and rnd.random() < (14 - day) / 16:
                kind = "tls13"
            ts = now - datetime.timedelta(days=day - 1, seconds=rnd.randrange(0, 86000))
            host = "mx1" if n % 3 else "mx2"
            line = record(ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"), host, n, ip, kind)
            files[host].write(json.dumps(line) + "\n")
        for kind, ip in (("tls10", "198.51.100.250"), ("unknown-ca", "192.0.2.200")):
            n += 1
            ts = now - datetime.timedelta(days=day - 1, seconds=rnd.randrange(0, 86000))
            files["mx2"].write(json.dumps(record(ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "mx2", n, ip, kind)) + "\n")
    for f in files.values():
        f.close()
    # The legacy MTA's log: tlsfront (10.0.0.5) and one sender straight to it.
    stamp = (now - datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    with open(os.path.join(out, "maillog"), "w") as f:
        f.write(f"{stamp} old postfix/smtpd[100]: connect from mx[10.0.0.5]\n"
                f"{stamp} old postfix/smtpd[100]: disconnect from mx[10.0.0.5] ehlo=1 quit=1\n"
                f"{stamp} old postfix/smtpd[101]: connect from unknown[198.51.100.77]\n"
                f"{stamp} old postfix/smtpd[101]: Anonymous TLS connection established from "
                f"unknown[198.51.100.77]: TLSv1 with cipher AES256-SHA (256/256 bits)\n"
                f"{stamp} old postfix/smtpd[101]: disconnect from unknown[198.51.100.77] ehlo=2\n")
    print(n)


if __name__ == "__main__":
    main()
