"""a/b: the legacy backends reached directly, without tlsfront: the
failures modern clients see (1024-bit RSA, 1024-bit DH), with controls that
show the backends really serve mail and STARTTLS."""

import re
import smtplib
import ssl

from .harness import CLIENT_TIMEOUT, Fail, check, run, uniq
from .hostile import smuggling_direct_control
from .mail import assert_same_message, make_message, wait_delivered


def direct_plain_delivery(rig, backend):
    """Control: the backend accepts and stores mail (plaintext), and the
    comparison logic works on its Maildir format."""
    lp = uniq("direct-" + backend["name"])
    rcpt = f"{lp}@tlsfront.test"
    mid, data = make_message(lp, rcpt)
    with smtplib.SMTP("127.0.0.1", backend["port"], local_hostname="direct.client.test",
                      timeout=CLIENT_TIMEOUT) as s:
        s.ehlo()
        check(s.has_extn("starttls"), "backend does not offer STARTTLS")
        s.sendmail("sender@client.test", [rcpt], data)
    assert_same_message(wait_delivered(backend, mid), data, via_proxy=False)


def direct_weak_handshake_control(rig, backend, expect):
    """Control: a client that tolerates weak crypto (SECLEVEL=0) completes the
    backend's STARTTLS, so the failures below are about key strength only."""
    rc, out = run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                   f"127.0.0.1:{backend['port']}", "-cipher", "DEFAULT@SECLEVEL=0",
                   "-CAfile", rig["ca"], "-brief"])
    check("CONNECTION ESTABLISHED" in out, f"handshake failed even at SECLEVEL=0 (rc={rc}):\n{out}")
    check(re.search(expect, out), f"expected {expect!r} in s_client output:\n{out}")


def direct_s_client_fails(rig, backend, expect):
    rc, out = run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                   f"127.0.0.1:{backend['port']}", "-CAfile", rig["ca"],
                   "-verify_return_error", "-brief"])
    check(rc != 0, f"s_client unexpectedly succeeded:\n{out}")
    check("CONNECTION ESTABLISHED" not in out, f"handshake unexpectedly completed:\n{out}")
    check(re.search(expect, out, re.I), f"s_client failed but without {expect!r}:\n{out}")


def direct_smtplib_fails(rig, backend, expect):
    ctx = ssl.create_default_context(cafile=rig["ca"])
    with smtplib.SMTP("127.0.0.1", backend["port"], local_hostname="direct.client.test",
                      timeout=CLIENT_TIMEOUT) as s:
        s.ehlo()
        try:
            s.starttls(context=ctx)
        except ssl.SSLError as e:
            check(re.search(expect, str(e), re.I), f"starttls failed, but with {e!r}")
            return
    raise Fail("smtplib starttls unexpectedly succeeded")


def direct_swaks_fails(rig, backend, expect, verify):
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(backend["port"]), "--tls",
           "--ehlo", "direct.client.test", "--from", "sender@client.test",
           "--to", f"{uniq('swaks-direct')}@tlsfront.test", "--timeout", "20"]
    if verify:
        cmd += ["--tls-verify", "--tls-ca-path", rig["ca"]]
    rc, out = run(cmd)
    check(rc != 0, f"swaks unexpectedly succeeded:\n{out}")
    check(re.search(expect, out, re.I), f"swaks failed (rc={rc}) but without {expect!r}:\n{out}")



def scenarios(runner, rig):
    rsa, dh = rig["backends"]["legacy-rsa"], rig["backends"]["legacy-dh"]
    # a. legacy-rsa: 1024-bit RSA certificate
    runner.scenario("legacy-rsa plaintext delivery works (control)", direct_plain_delivery, rig, rsa)
    runner.scenario("legacy-rsa STARTTLS works at SECLEVEL=0 (control)",
                    direct_weak_handshake_control, rig, rsa, r"Peer certificate: CN = legacy-rsa")
    runner.scenario("legacy-rsa s_client -verify_return_error fails: EE key too weak",
                    direct_s_client_fails, rig, rsa, r"EE certificate key too weak|ee key too small")
    runner.scenario("legacy-rsa smtplib default context fails: EE key too weak",
                    direct_smtplib_fails, rig, rsa, r"EE certificate key too weak|ee key too small")
    runner.scenario("legacy-rsa (Postfix 3.7 defaults) is vulnerable to SMTP smuggling directly (control)",
                    smuggling_direct_control, rig, rsa)
    runner.scenario("legacy-rsa swaks --tls-verify fails",
                    direct_swaks_fails, rig, rsa, r"TLS startup failed.*certificate verify failed", True)
    # b. legacy-dh: DHE-only with a 1024-bit group
    runner.scenario("legacy-dh plaintext delivery works (control)", direct_plain_delivery, rig, dh)
    runner.scenario("legacy-dh STARTTLS works at SECLEVEL=0 with 1024-bit DH (control)",
                    direct_weak_handshake_control, rig, dh, r"Server Temp Key: DH, 1024 bits")
    runner.scenario("legacy-dh s_client fails: dh key too small",
                    direct_s_client_fails, rig, dh, r"dh key too small")
    runner.scenario("legacy-dh swaks --tls fails: dh key too small",
                    direct_swaks_fails, rig, dh, r"TLS startup failed.*dh key too small", False)
    runner.scenario("legacy-dh smtplib default context fails: dh key too small",
                    direct_smtplib_fails, rig, dh, r"dh key too small")
