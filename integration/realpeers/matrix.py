"""The sender matrix: more TLS stacks (GnuTLS, Go, Java), certificate
selection by what the client can verify, a TLS scanner (sslscan), and
MATRIX.md, the table of every delivery cell's result."""

import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

from .clients import LineReader, s_client_deliver
from .harness import CLIENT_TIMEOUT, Fail, MATRIX, SCANS, check, free_ports, run, start_or_fail, tail, uniq
from .mail import (
    assert_same_message, check_backend_connects, count_backend_connects, dot_stuff,
    make_message, wait_delivered,
)
from .proxy import ConfigProxy, assert_record, proxied_want

# integration/: the clients' sources and the committed MATRIX.md.
INTEGRATION = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLIENT_LABELS = {
    "s_client": ("OpenSSL s_client", "1.2–1.3"),
    "s_client-p384": ("OpenSSL s_client -groups P-384", "1.2–1.3"),
    "s_client-tls12-p256": ("OpenSSL s_client -tls1_2 -groups P-256", "1.2"),
    "swaks": ("swaks (Net::SSLeay/OpenSSL)", "1.2–1.3"),
    "swaks-implicit": ("swaks --tls-on-connect", "1.2–1.3"),
    "smtplib-tls13": ("Python smtplib (OpenSSL)", "1.2–1.3"),
    "smtplib-tls12": ("Python smtplib, max TLS 1.2", "1.2"),
    "smtplib-ipsan": ("Python smtplib, IP SAN", "1.2–1.3"),
    "smtplib-implicit": ("Python smtplib SMTP_SSL", "1.2–1.3"),
    "pf-enc": ("Postfix 3.7 smtp, level encrypt", "1.2–1.3"),
    "pf-sec": ("Postfix 3.7 smtp, level secure", "1.2–1.3"),
}


def matrix_cell(client, ver, large, proxy, backend_name):
    sender, offered = CLIENT_LABELS.get(client, (client, "?"))
    implicit = client.endswith("implicit")
    sni = "no" if client in ("smtplib-ipsan", "pf-enc") else "yes"
    return dict(sender=sender + (" (200 KB)" if large else ""), offered=offered, sni=sni,
                listener=f"{'implicit' if implicit else 'STARTTLS'} {proxy.host}",
                backend=backend_name, proxy_certs=proxy.cert_desc)


def prepare_message(proxy, tag):
    lp = uniq(tag)
    rcpt = f"{lp}@tlsfront.test"
    mid, data = make_message(lp, rcpt)
    return lp, rcpt, mid, data


def finish_delivery(proxy, backend, mid, data, mark, before, want):
    assert_same_message(wait_delivered(backend, mid), data)
    rec = proxy.records.wait_one(mark)
    assert_record(rec, **want)
    check_backend_connects(backend, before, rec)
    return rec


def via_gnutls(rig, proxy, backend, tls12, sni):
    """gnutls-cli --starttls-proto=smtp does EHLO/STARTTLS/handshake itself
    (verifying against the CA); the rest of the dialogue goes through stdin."""
    tag = f"gnutls-{'tls12' if tls12 else 'tls13'}-{'sni' if sni else 'nosni'}"
    helo = tag + ".client.test"
    lp, rcpt, mid, data = prepare_message(proxy, tag)
    mark, before = proxy.records.mark(), count_backend_connects(backend)
    logf = os.path.join(proxy.dir, lp + ".gnutls.log")
    prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2" if tls12 else "NORMAL:-VERS-ALL:+VERS-TLS1.3"
    cmd = ["gnutls-cli", "--starttls-proto=smtp", f"--x509cafile={rig['ca']}",
           f"--priority={prio}", f"--logfile={logf}", "-p", str(proxy.port)]
    if sni:
        cmd += [f"--sni-hostname={rig['proxy_hostname']}", f"--verify-hostname={rig['proxy_hostname']}"]
    else:
        cmd += ["--disable-sni"]  # verified by the IP SAN 127.0.0.1
    cmd.append("127.0.0.1")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        rd = LineReader(p.stdout.fileno())

        def cmd_reply(line, want):
            p.stdin.write(line)
            p.stdin.flush()
            try:
                code, text = rd.reply()
            except Fail as e:
                raise Fail(f"{e}\n    gnutls-cli log:\n{tail(logf)}")
            check(code == want, f"after {line[:60]!r} want {want}, got: {text}\n{tail(logf)}")

        cmd_reply(f"EHLO {helo}\r\n".encode(), 250)
        cmd_reply(f"MAIL FROM:<sender@client.test>\r\n".encode(), 250)
        cmd_reply(f"RCPT TO:<{rcpt}>\r\n".encode(), 250)
        cmd_reply(b"DATA\r\n", 354)
        cmd_reply(dot_stuff(data), 250)
        cmd_reply(b"QUIT\r\n", 221)
        p.stdin.close()
        try:
            p.wait(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Fail("gnutls-cli did not exit after QUIT")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except Exception:
                pass
    with open(logf, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    check(re.search(r"Certificate is trusted|The certificate is trusted", log),
          f"gnutls-cli did not report a trusted certificate:\n{tail(logf, 30)}")
    want_ver = "TLSv1.2" if tls12 else "TLSv1.3"
    check(re.search(r"Description: \(TLS1\.%s-" % ("2" if tls12 else "3"), log),
          f"gnutls-cli negotiated something else:\n{tail(logf, 30)}")
    want = proxied_want(rig, helo, tls_version=want_ver)
    want["sni"] = rig["proxy_hostname"] if sni else None
    return finish_delivery(proxy, backend, mid, data, mark, before, want)


def via_go(rig, proxy, backend, gosend, tls12):
    check(gosend, "Go client not built (see the NOTE above)")
    tag = f"go-{'tls12' if tls12 else 'tls13'}"
    helo = tag + ".client.test"
    lp, rcpt, mid, data = prepare_message(proxy, tag)
    path = os.path.join(proxy.dir, lp + ".eml")
    with open(path, "wb") as f:
        f.write(data)  # net/smtp's DATA writer does the dot-stuffing
    mark, before = proxy.records.mark(), count_backend_connects(backend)
    rc, out = run([gosend, f"127.0.0.1:{proxy.port}", rig["proxy_hostname"], rig["ca"], helo,
                   "sender@client.test", rcpt, path, "1.2" if tls12 else "1.3"], timeout=60)
    want_ver = "TLSv1.2" if tls12 else "TLSv1.3"
    check(rc == 0 and f"version={want_ver}" in out, f"gosend failed (rc={rc}):\n{out}")
    return finish_delivery(proxy, backend, mid, data, mark, before,
                           proxied_want(rig, helo, tls_version=want_ver))


def via_java(rig, proxy, backend, classdir, tls12):
    check(classdir, "Java client not built (see the NOTE above)")
    tag = f"java-{'tls12' if tls12 else 'tls13'}"
    helo = tag + ".client.test"
    lp, rcpt, mid, data = prepare_message(proxy, tag)
    path = os.path.join(proxy.dir, lp + ".eml")
    with open(path, "wb") as f:
        f.write(dot_stuff(data))
    mark, before = proxy.records.mark(), count_backend_connects(backend)
    want_ver = "TLSv1.2" if tls12 else "TLSv1.3"
    rc, out = run(["java", "-cp", classdir, "JavaSend", "127.0.0.1", str(proxy.port),
                   rig["proxy_hostname"], rig["ca"], helo, "sender@client.test", rcpt, path,
                   want_ver], timeout=60)
    check(rc == 0 and f"version={want_ver}" in out, f"JavaSend failed (rc={rc}):\n{out[-3000:]}")
    return finish_delivery(proxy, backend, mid, data, mark, before,
                           proxied_want(rig, helo, tls_version=want_ver))


def s_client_cert_choice(rig, proxy, backend, variant):
    """One proxy holding an ECDSA and an RSA certificate (both default):
    a client that can only verify RSA signatures gets the RSA leaf (+ the
    intermediate, verified against the root only), others get ECDSA."""
    extra, want_key, want_ver = {
        "default": ((), "ecdsa_p256", "TLSv1.3"),
        "rsa-sigalgs-tls13": (("-tls1_3", "-sigalgs", "RSA-PSS+SHA256:RSA-PSS+SHA384:RSA-PSS+SHA512"),
                              "rsa_2048", "TLSv1.3"),
        "rsa-sigalgs-tls12": (("-tls1_2", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"),
                              "rsa_2048", "TLSv1.2"),
        # ECDHE-RSA suites only, default (ECDSA-including) signature algorithms:
        # the offered suites decide, so the RSA certificate is the one that works.
        "rsa-suites-tls12": (("-tls1_2", "-cipher",
                              "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"),
                             "rsa_2048", "TLSv1.2"),
    }[variant]
    tag = f"s_client-{variant}"
    helo = tag + ".client.test"
    lp, rcpt, mid, data = prepare_message(proxy, tag)
    mark, before = proxy.records.mark(), count_backend_connects(backend)
    err = s_client_deliver(rig, proxy.port, helo, "sender@client.test", rcpt, data, extra)
    check(f"Protocol version: {want_ver}" in err, f"s_client negotiated something else:\n{err}")
    sig = re.search(r"^(?:Peer )?[Ss]ignature type: *(\S+)", err, re.M)
    check(sig, f"s_client printed no signature type:\n{err}")
    kind = "ecdsa" if want_key.startswith("ecdsa") else "rsa"  # "RSA-PSS" / "rsa_pss_rsae_sha256"
    check(kind in sig.group(1).lower(),
          f"s_client saw signature type {sig.group(1)}, expected an {kind.upper()} one:\n{err}")
    rec = finish_delivery(proxy, backend, mid, data, mark, before,
                          proxied_want(rig, helo, tls_version=want_ver, cert_key_type=want_key))
    check(rig["proxy_hostname"] in (rec.get("cert_subject") or ""),
          f"record cert_subject {rec.get('cert_subject')!r} does not name the proxy")
    return rec


SCANNER_GROUPS_OK = {"x25519", "secp256r1", "prime256v1", "p-256", "secp384r1", "p-384",
                     "x25519mlkem768"}


def sslscan_scan(rig, proxy, backend):
    """Debian's sslscan (OpenSSL 3) against the STARTTLS listener."""
    before = count_backend_connects(backend)
    xml_path = os.path.join(proxy.dir, "sslscan.xml")
    rc, out = run(["sslscan", "--no-colour", "--starttls-smtp", "--sni-name=" + rig["proxy_hostname"],
                   "--show-certificate", "--no-heartbleed", f"--xml={xml_path}",
                   f"127.0.0.1:{proxy.port}"], timeout=180)
    with open(os.path.join(proxy.dir, "sslscan.txt"), "w") as f:
        f.write(out)
    check(rc == 0, f"sslscan failed (rc={rc}):\n{out[-2000:]}")
    root = ET.parse(xml_path).getroot()
    test = root.find("ssltest")
    check(test is not None, f"no <ssltest> in sslscan XML:\n{out[-2000:]}")
    problems, info = [], []
    protos = {f"{e.get('type')}{e.get('version')}": e.get("enabled") for e in test.iter("protocol")}
    for pv in ("ssl2", "ssl3", "tls1.0", "tls1.1"):
        if protos.get(pv) != "0":
            problems.append(f"protocol {pv} enabled={protos.get(pv)!r}")
    for pv in ("tls1.2", "tls1.3"):
        if protos.get(pv) != "1":
            problems.append(f"protocol {pv} enabled={protos.get(pv)!r}")
    ciphers = [e for e in test.iter("cipher") if e.get("status") in ("accepted", "preferred")]
    check(ciphers, "sslscan found no accepted cipher")
    for c in ciphers:
        name, ver = c.get("cipher", ""), c.get("sslversion", "")
        if ver == "TLSv1.3":
            ok = name in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
        else:
            ok = (ver == "TLSv1.2" and name.startswith("ECDHE-")
                  and re.search(r"GCM|CHACHA20-POLY1305", name)
                  and not re.search(r"CBC|RC4|DES|NULL|EXP|anon|SHA$", name))
        if not ok:
            problems.append(f"cipher {ver} {name} accepted")
    # sslscan names them "secp256r1 (NIST P-256)", "x25519"
    groups = sorted({g.get("name", "").split(" (")[0] for g in test.iter("group")})
    check(groups, "sslscan enumerated no key-exchange group")
    for g in groups:
        if g.lower() not in SCANNER_GROUPS_OK:
            problems.append(f"group {g} accepted")
    certs = list(test.iter("certificate"))
    subj = " ".join(e.text or "" for c in certs for e in c.iter("subject"))
    pks = [(e.get("type"), e.get("curve_name"), e.get("bits")) for c in certs for e in c.iter("pk")]
    if "mx.tlsfront.test" not in subj:
        problems.append(f"certificate subject {subj!r}")
    # (sslscan's "bits" here is the security level, 128 for P-256)
    if not any(t == "EC" and cn == "prime256v1" for t, cn, b in pks):
        problems.append(f"certificate key {pks!r}, expected EC P-256 (the configured default)")
    SCANS.append(dict(
        target=f"STARTTLS 127.0.0.1, proxy certs ECDSA+RSA (default: ECDSA)",
        rows=[("protocols enabled", ", ".join(sorted(k for k, v in protos.items() if v == "1")),
               not any(p.startswith("protocol") for p in problems)),
              ("accepted suites", ", ".join(sorted({c.get("sslversion") + " " + c.get("cipher")
                                                     for c in ciphers})),
               not any(p.startswith("cipher") for p in problems)),
              ("key-exchange groups", ", ".join(groups), not any(p.startswith("group") for p in problems)),
              ("certificate", f"{' '.join(subj.split()[:1])} key "
                              + ", ".join(f"{t} {cn}" for t, cn, _ in pks if cn),
               not any(p.startswith("certificate") for p in problems))]))
    check(count_backend_connects(backend) == before, "the scan made the proxy contact the backend")
    check(not problems, "sslscan: " + "; ".join(problems) + f"\n    (full output in {proxy.dir}/sslscan.txt)")
    print(f"    (info) sslscan: protocols {sorted(k for k, v in protos.items() if v == '1')}; "
          f"{len(ciphers)} ciphers: {sorted({c.get('sslversion') + ' ' + c.get('cipher') for c in ciphers})}; "
          f"groups {groups}; cert {subj.strip()!r} {pks}", flush=True)


def build_clients(rig):
    """Compile the Go and Java senders into the work dir (stdlib only, no
    network). Returns (gosend path or None, Java class dir or None)."""
    here = INTEGRATION
    out = os.path.join(rig["work"], "clients")
    os.makedirs(out, exist_ok=True)
    gosend = classdir = None
    if shutil.which("go"):
        env = dict(os.environ, GOCACHE=os.path.join(out, "gocache"), GOPATH=os.path.join(out, "gopath"),
                   GOPROXY="off", GO111MODULE="off", GOFLAGS="")
        try:
            rc, o = run(["go", "build", "-o", os.path.join(out, "gosend"),
                         os.path.join(here, "clients", "gosend", "main.go")], timeout=180, env=env)
            if rc == 0:
                gosend = os.path.join(out, "gosend")
            else:
                print(f"NOTE go build failed (rc={rc}): {o[-1500:]}", flush=True)
        except Fail as e:
            print(f"NOTE go build: {e}", flush=True)
    else:
        print("NOTE go not installed: Go sender cells fail", flush=True)
    if shutil.which("javac") and shutil.which("java"):
        try:
            rc, o = run(["javac", "-d", out, os.path.join(here, "clients", "JavaSend.java")], timeout=180)
            if rc == 0:
                classdir = out
            else:
                print(f"NOTE javac failed (rc={rc}): {o[-1500:]}", flush=True)
        except Fail as e:
            print(f"NOTE javac: {e}", flush=True)
    else:
        print("NOTE no JDK (javac/java) on this machine: Java sender cells not run", flush=True)
    return gosend, classdir


def matrix_scenarios(runner, rig, backend):
    """A proxy configured with an ECDSA P-256 and an RSA-2048 (+intermediate)
    certificate, both default, in front of legacy-rsa."""
    certs = rig["certs"]
    ports = free_ports(2)
    proxy = ConfigProxy(rig, "matrix", backend["port"],
                        [(f"{certs}/proxy-ecdsa-fullchain.pem", f"{certs}/proxy-ecdsa-key.pem"),
                         (f"{certs}/proxy-rsa-fullchain.pem", f"{certs}/proxy-rsa-key.pem")], *ports)
    proxy.cert_desc = "ECDSA+RSA"
    prefix = "proxy[matrix: ECDSA+RSA certs, legacy-rsa]"
    gosend, classdir = build_clients(rig)
    cells = []  # (name, fn, args, matrix)

    def cell(sender, offered, sni, name, fn, *args):
        cells.append((f"{prefix} {name}", fn, args,
                      dict(sender=sender, offered=offered, sni=sni, listener="STARTTLS 127.0.0.1",
                           backend="legacy-rsa", proxy_certs="ECDSA+RSA")))

    for tls12 in (False, True):
        for sni in (True, False):
            if tls12 and not sni:
                continue
            v = "1.2" if tls12 else "1.3"
            cell("GnuTLS gnutls-cli", v, "yes" if sni else "no",
                 f"deliver via gnutls-cli TLS {v} {'with' if sni else 'without'} SNI",
                 via_gnutls, rig, proxy, backend, tls12, sni)
    for tls12 in (False, True):
        v = "1.2" if tls12 else "1.3"
        cell("Go 1.19 net/smtp + crypto/tls", "1.2" if tls12 else "1.2–1.3", "yes",
             f"deliver via Go net/smtp (max TLS {v})", via_go, rig, proxy, backend, gosend, tls12)
    if classdir:
        for tls12 in (False, True):
            v = "1.2" if tls12 else "1.3"
            cell("Java 17 javax.net.ssl", v, "yes", f"deliver via Java SSLSocket TLS {v}",
                 via_java, rig, proxy, backend, classdir, tls12)
    cell("OpenSSL s_client (default)", "1.2–1.3", "yes", "default client gets the ECDSA certificate",
         s_client_cert_choice, rig, proxy, backend, "default")
    cell("OpenSSL s_client -sigalgs RSA-PSS only", "1.3", "yes",
         "RSA-only client (TLS 1.3 sigalgs) gets the RSA certificate",
         s_client_cert_choice, rig, proxy, backend, "rsa-sigalgs-tls13")
    cell("OpenSSL s_client -sigalgs RSA-PSS+SHA256:RSA+SHA256", "1.2", "yes",
         "RSA-only client (TLS 1.2 sigalgs) gets the RSA certificate",
         s_client_cert_choice, rig, proxy, backend, "rsa-sigalgs-tls12")
    cell("OpenSSL s_client -cipher ECDHE-RSA-* only (default sigalgs)", "1.2", "yes",
         "TLS 1.2 client offering only ECDHE-RSA suites gets the RSA certificate",
         s_client_cert_choice, rig, proxy, backend, "rsa-suites-tls12")
    scan_name = f"{prefix} sslscan: TLS 1.2/1.3 only, ECDHE+AEAD only, configured groups and certificate"
    names = [c[0] for c in cells] + [scan_name]
    if runner.filter and not any(runner.filter.search(n) for n in names):
        return
    if not start_or_fail(runner, proxy, prefix, names):
        return
    try:
        for name, fn, args, m in cells:
            runner.scenario(name, fn, *args, matrix=m)
        if shutil.which("sslscan"):
            runner.scenario(scan_name, sslscan_scan, rig, proxy, backend)
        else:
            runner.report(scan_name, "FAIL", "sslscan not installed")
    finally:
        msg = proxy.stop()
        runner.report(f"{prefix} exits on SIGTERM", "FAIL" if msg else "PASS", msg or proxy.exit_note)


def write_matrix(rig, runner):
    """integration/MATRIX.md from this run (only a full, unfiltered run
    replaces the committed one; every run writes WORK/MATRIX.md)."""
    if not MATRIX and not SCANS:
        return
    passed = sum(r["result"] == "PASS" for r in MATRIX)
    known = sum(r["result"].startswith("FAIL (known") for r in MATRIX)
    lines = [
        "# tlsfront sender matrix",
        "",
        "Generated by `integration/test_real_peers.py` from the run of "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({passed} of {len(MATRIX)} cells passed"
        + (f", {known} a known tlsfront bug the rig asserts as such" if known else "")
        + "). Do not edit: rerun `integration/run.sh`.",
        "",
        "Every PASS means: the message arrived at the backend byte for byte, and the proxy's record for "
        "that connection showed the TLS facts below (version, suite, group, certificate served) "
        "as asserted by the scenario. *offered* is what the client was allowed to negotiate; "
        "*proxy certs* what tlsfront was configured with. Backends are Postfix 3.7 instances "
        "(`legacy-rsa`: 1024-bit RSA certificate; `legacy-dh`: 1024-bit DHE only) that the "
        "same clients cannot reach directly. OpenSSL is Debian 12's 3.0, GnuTLS 3.7, Go 1.19, Java 17.",
        "",
        "| sender | offered | SNI | listener | backend | proxy certs | negotiated | suite | group | cert | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in MATRIX:
        lines.append("| " + " | ".join(str(x) if x is not None else "–" for x in (
            r["sender"], r["offered"], r["sni"], r["listener"], r["backend"], r.get("proxy_certs"),
            r["tls_version"], r["cipher_suite"], r["kx_group"], r["cert_key_type"],
            f"**{r['result']}**" if r["result"] in ("PASS", "FAIL") else r["result"])) + " |")
    for scan in SCANS:
        lines += ["", "## TLS scanner: Debian's `sslscan --starttls-smtp`", "",
                  f"Against {scan['target']}. Required: only TLS 1.2 and 1.3; only ECDHE (or TLS 1.3) "
                  "AEAD suites; groups within x25519, secp256r1, secp384r1, X25519MLKEM768; "
                  "the configured certificate.", "",
                  "| check | sslscan found | result |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v} | **{'PASS' if ok else 'FAIL'}** |" for k, v, ok in scan["rows"]]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(rig["work"], "MATRIX.md"), "w") as f:
        f.write(text)
    if runner.filter is None:
        dst = os.path.join(INTEGRATION, "MATRIX.md")
        with open(dst, "w") as f:
            f.write(text)
        print(f"    (info) matrix written to {dst}", flush=True)

