"""Hostile and refused clients: a plaintext command pipelined after
STARTTLS (CVE-2011-0411 class), SMTP smuggling with <LF>.<LF> (shown to work
against the backend directly, then blocked through tlsfront), and
handshakes tlsfront refuses (TLS 1.1, finite-field DHE only), each recorded
without touching the backend."""

import json
import re
import socket
import ssl
import time
import uuid

from .clients import read_reply
from .harness import CLIENT_TIMEOUT, DELIVERY_TIMEOUT, check, run, tail, uniq
from .mail import count_backend_connects, maildir_header_count, wait_delivered
from .proxy import assert_record


def starttls_injection(rig, proxy, backend):
    """RFC 3207 / CVE-2011-0411 class: a plaintext command sent in the same
    packet as STARTTLS must not be executed inside the TLS session. Accepted
    outcomes: the proxy drops the connection, or TLS comes up and the
    injected MAIL FROM has no effect (RCPT without MAIL is refused)."""
    helo = "inject.client.test"
    mark = proxy.records.mark()
    sock = socket.create_connection((proxy.host, proxy.port), timeout=CLIENT_TIMEOUT)
    outcome = None
    try:
        code, _, rest = read_reply(sock)
        check(code == 220 and not rest, f"greeting {code}")
        sock.sendall(f"EHLO {helo}\r\n".encode())
        read_reply(sock)
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<inject@evil.test>\r\n")  # one segment
        try:
            code, text, rest = read_reply(sock)
        except (ConnectionError, OSError):
            outcome = "connection closed after STARTTLS+injection"
        if outcome is None:
            check(not rest, f"proxy answered the injected plaintext command: {rest!r}")
            if code != 220:
                outcome = f"STARTTLS refused: {text!r}"
            else:
                ctx = ssl.create_default_context(cafile=rig["ca"])
                try:
                    tls = ctx.wrap_socket(sock, server_hostname=rig["proxy_hostname"])
                except (ssl.SSLError, OSError) as e:
                    outcome = f"handshake refused ({e})"
                else:
                    sock = tls
                    try:
                        sock.sendall(f"EHLO {helo}\r\n".encode())
                        code, text, rest = read_reply(sock)
                        check(code == 250 and not rest,
                              f"EHLO under TLS got {code} {text!r} (extra {rest!r}): injected reply leaked?")
                        sock.sendall(b"RCPT TO:<inject-target@tlsfront.test>\r\n")
                        code, text, _ = read_reply(sock)
                        check(code >= 500, f"RCPT without MAIL accepted ({code} {text!r}): the "
                              "injected plaintext MAIL FROM was executed inside TLS")
                        outcome = f"TLS up, injected MAIL discarded (RCPT got {code})"
                        sock.sendall(b"QUIT\r\n")
                        read_reply(sock)
                    except (ConnectionError, OSError) as e:
                        outcome = f"connection closed under TLS ({e})"
    finally:
        sock.close()
    rec = proxy.records.wait_one(mark)
    check(rec.get("messages_accepted") == 0, f"a message was accepted: {json.dumps(rec)}")
    print(f"    (info) {outcome}; record tls={rec.get('tls')!r} close_reason={rec.get('close_reason')!r} "
          f"pipelined_after_starttls={rec.get('pipelined_after_starttls')!r}", flush=True)


def smuggling_payload(tag, rcpt):
    """An outer message whose body hides `<LF>.<LF>` followed by a second,
    spoofed transaction (the SMTP smuggling attack of December 2023)."""
    u = uuid.uuid4().hex[:12]
    outer, inner = f"<{tag}.outer.{u}@client.test>", f"<{tag}.inner.{u}@client.test>"
    payload = (
        f"From: <sender@client.test>\r\nTo: <{rcpt}>\r\nSubject: outer {tag}\r\n"
        f"Message-ID: {outer}\r\n\r\nouter body\r\n"
        "\n.\n"  # the smuggled end of data: bare LF, dot, bare LF
        f"MAIL FROM:<spoofed@bank.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
        f"From: <ceo@bank.test>\r\nTo: <{rcpt}>\r\nSubject: smuggled {tag}\r\n"
        f"Message-ID: {inner}\r\n\r\ninner body\r\n"
        ".\r\n"
    ).encode()
    return outer, inner, payload


def send_raw_transaction(sock, helo, rcpt, payload):
    """EHLO/MAIL/RCPT/DATA on an open socket, then the raw payload; returns
    every reply code the server sent after the payload (quiet for 2 s)."""
    for cmd, want in ((f"EHLO {helo}", 250), ("MAIL FROM:<sender@client.test>", 250),
                      (f"RCPT TO:<{rcpt}>", 250), ("DATA", 354)):
        sock.sendall(cmd.encode() + b"\r\n")
        code, text, _ = read_reply(sock)
        check(code == want, f"{cmd} got {code} {text!r}")
    sock.sendall(payload)
    buf = b""
    sock.settimeout(2.0)
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLError, TimeoutError):
            if buf:
                break
            continue
        if not chunk:
            break
        buf += chunk
    try:
        sock.sendall(b"QUIT\r\n")
    except OSError:
        pass
    return [int(l[:3]) for l in buf.split(b"\r\n") if l[:3].isdigit() and l[3:4] != b"-"]


def smuggling_direct_control(rig, backend):
    """Control: Postfix 3.7 with default settings, reached directly, takes
    `<LF>.<LF>` for the end of data and delivers the smuggled inner message."""
    rcpt = f"{uniq('smuggle-direct')}@tlsfront.test"
    outer, inner, payload = smuggling_payload("direct", rcpt)
    sock = socket.create_connection(("127.0.0.1", backend["port"]), timeout=CLIENT_TIMEOUT)
    try:
        read_reply(sock)
        codes = send_raw_transaction(sock, "smuggler.client.test", rcpt, payload)
    finally:
        sock.close()
    wait_delivered(backend, outer)
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while maildir_header_count(backend, inner) == 0 and time.monotonic() < deadline:
        time.sleep(0.25)
    check(maildir_header_count(backend, inner) == 1,
          f"the backend was expected to be vulnerable when reached directly (replies {codes}); "
          "without that this rig cannot prove the shield")
    print(f"    (info) direct: replies after the payload {codes}; smuggled message delivered", flush=True)


def smuggling_blocked(rig, proxy, backend):
    """Through tlsfront the same payload is one message: the bare LFs reach the
    backend as CRLF and the dot line dot-stuffed, so the spoofed transaction is
    content of the outer message, never a second message."""
    mark = proxy.records.mark()
    rcpt = f"{uniq('smuggle-proxy')}@tlsfront.test"
    outer, inner, payload = smuggling_payload("proxy", rcpt)
    sock = socket.create_connection((proxy.host, proxy.port), timeout=CLIENT_TIMEOUT)
    try:
        read_reply(sock)
        sock.sendall(b"EHLO smuggler.client.test\r\n")
        read_reply(sock)
        sock.sendall(b"STARTTLS\r\n")
        code, text, _ = read_reply(sock)
        check(code == 220, f"STARTTLS got {code} {text!r}")
        sock = ssl.create_default_context(cafile=rig["ca"]).wrap_socket(
            sock, server_hostname=rig["proxy_hostname"])
        codes = send_raw_transaction(sock, "smuggler.client.test", rcpt, payload)
    finally:
        sock.close()
    check(codes == [250], f"expected exactly one 250 for one message, got replies {codes}")
    stored = wait_delivered(backend, outer)
    time.sleep(1.0)  # a smuggled second message would have landed by now
    check(maildir_header_count(backend, inner) == 0, "the smuggled inner message was delivered")
    check(b"\nMAIL FROM:<spoofed@bank.test>\n" in stored,
          "the smuggled commands should be content of the outer message")
    check(b"\n.\nMAIL FROM:" in stored, "the smuggled dot line should arrive as a content line '.'")
    rec = proxy.records.wait_one(mark)
    assert_record(rec, messages_accepted=1, bare_line_endings=2)


def dhe_only_rejected(rig, proxy, backend):
    """A TLS 1.2 client offering only finite-field DHE suites (what the
    legacy-dh backend speaks) must be refused: tlsfront is ECDHE only."""
    mark = proxy.records.mark()
    before = count_backend_connects(backend)
    rc, out = run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{proxy.port}",
                   "-name", "dhe-only.client.test", "-tls1_2",
                   "-cipher", "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
                   "-CAfile", rig["ca"], "-brief"])
    check(rc != 0 and "CONNECTION ESTABLISHED" not in out,
          f"DHE-only handshake unexpectedly succeeded (rc={rc}):\n{out}")
    rec = proxy.records.wait_one(mark)
    assert_record(rec, tls="failed", failure_reason_nonempty=True, backend_contacted=False,
                  starttls_used=True, messages_accepted=0)
    check(count_backend_connects(backend) == before, "backend contacted for a failed handshake")


def tls11_rejected(rig, proxy, backend):
    mark = proxy.records.mark()
    before = count_backend_connects(backend)
    rc, out = run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{proxy.port}",
                   "-name", "tls11.client.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                   "-CAfile", rig["ca"], "-brief"])
    check(rc != 0 and "CONNECTION ESTABLISHED" not in out,
          f"TLS 1.1 handshake unexpectedly succeeded (rc={rc}):\n{out}")
    # The ClientHello must actually have been sent (not a local refusal).
    check(not re.search(r"no protocols available", out), f"client refused locally:\n{out}")
    rec = proxy.records.wait_one(mark)
    assert_record(rec, tls="failed", failure_reason_nonempty=True, backend_contacted=False,
                  starttls_used=True, messages_accepted=0)
    check(re.search(r"version|protocol", rec["failure_reason"] + " " + str(rec.get("failure_detail")), re.I),
          f"failure_reason does not name the TLS version problem: {json.dumps(rec)}")
    time.sleep(1.0)
    after = count_backend_connects(backend)
    check(after == before, f"backend log shows {after - before} new connection(s) for a session "
          f"without mail\n{tail(backend['maillog'])}")

