"""Test messages and what the backends did with them: messages built to
exercise transparency (dots, folding, long lines, 8-bit), the Maildir
comparison after the backend's trace headers, the backends' connection
counts, and the Postfix sender instance (inject, then read its log)."""

import email
import email.utils
import os
import re
import time
import uuid

from .harness import DELIVERY_TIMEOUT, Fail, check, run, tail


def make_message(tag, rcpt, large=False, eightbit=False):
    """CRLF message bytes with a unique Message-ID, a folded header, a line
    starting with a dot (SMTP dot-stuffing), a lone-dot-looking line,
    trailing whitespace and a long line. large=True pads to ~200 KB."""
    mid = f"<{tag}.{uuid.uuid4().hex}@client.test>"
    lines = [
        "From: tlsfront test <sender@client.test>",
        f"To: <{rcpt}>",
        f"Subject: tlsfront integration {tag}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: {mid}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        f"X-Tlsfront-Scenario: {tag}",
        "X-Folded-Header: first part of a folded header",
        "\tsecond part after a tab",
        "",
        f"Hello from scenario {tag}.",
        ".this line starts with a dot",
        "..and this one with two",
        ".",
        "line with trailing spaces   ",
        "x" * 900,
        "",
        "last line",
    ]
    if eightbit:
        lines[6] = "Content-Type: text/plain; charset=utf-8"
        lines.insert(7, "Content-Transfer-Encoding: 8bit")
        lines.insert(-1, "8-bit body: Grüße, naïve café, 東京, ✓")
    if large:
        i = 0
        while sum(len(l) + 2 for l in lines) < 200 * 1024:
            lines.insert(-1, f"{i:06d} " + "The quick brown fox jumps over the lazy dog. " * 1 + "." * (i % 7))
            if i % 50 == 0:
                lines.insert(-1, ".dot-leading filler line %d" % i)
            i += 1
    data = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return mid, data


def dot_stuff(data):
    """RFC 5321 transparency for clients that send raw DATA (s_client, swaks)."""
    out = []
    for line in data.split(b"\r\n")[:-1]:
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out) + b"\r\n.\r\n"


HOP_HEADERS = re.compile(rb"^(Return-Path|Delivered-To|X-Original-To|Received):", re.I)


def wait_delivered(backend, mid, timeout=DELIVERY_TIMEOUT):
    """Return the bytes of the one message in the backend's Maildir that
    carries Message-ID `mid` (every recipient shares mail/inbox/)."""
    newdir = os.path.join(backend["dir"], "mail", "inbox", "new")
    needle = f"\nMessage-ID: {mid}\n".encode()
    deadline = time.monotonic() + timeout
    seen = {}

    def matches():
        try:
            names = os.listdir(newdir)
        except FileNotFoundError:
            return []
        for n in names:
            if n not in seen:
                with open(os.path.join(newdir, n), "rb") as f:
                    seen[n] = needle in f.read()
        return [n for n, hit in seen.items() if hit]

    while time.monotonic() < deadline:
        if matches():
            time.sleep(0.5)  # a (wrong) duplicate delivery would land now
            hits = matches()
            check(len(hits) == 1, f"expected 1 delivered copy of {mid}, found {len(hits)}")
            with open(os.path.join(newdir, hits[0]), "rb") as f:
                return f.read()
        time.sleep(0.25)
    raise Fail(f"{mid} not delivered to {newdir} within {timeout}s\n"
               f"    backend log tail:\n{tail(backend['maillog'])}")


def assert_same_message(stored, original, via_proxy=True):
    """The backend stores LF line endings and prepends Return-Path, X-Original-To,
    Delivered-To and Received headers. Everything after that prefix must be
    the original message byte for byte (after CRLF->LF)."""
    expected = original.replace(b"\r\n", b"\n")
    if not stored.endswith(expected):
        # Show where they diverge to make a failure actionable.
        idx = stored.find(expected.split(b"\n", 1)[0])
        got = stored[idx:] if idx >= 0 else stored
        n = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                 min(len(got), len(expected)))
        raise Fail("delivered message differs from the original "
                   f"(stored {len(stored)} B, original {len(expected)} B, first difference at "
                   f"offset {n}: got {got[max(0, n - 40):n + 40]!r}, want {expected[max(0, n - 40):n + 40]!r})")
    prefix = stored[: len(stored) - len(expected)]
    # prefix = trace headers only (each possibly folded)
    for line in prefix.split(b"\n")[:-1]:
        check(HOP_HEADERS.match(line) or line[:1] in (b" ", b"\t"),
              f"unexpected header added in front of the message: {line[:120]!r}")
    received = re.findall(rb"^Received:.*(?:\n[ \t].*)*", prefix, re.M)
    check(received, "backend added no Received header")
    if via_proxy:
        # The newest hop (first Received) is proxy -> backend: plaintext by design.
        top = received[0]
        check(b"ESMTPS" not in top and b"using TLS" not in top,
              f"backend hop was expected to be plaintext, Received says: {top[:300]!r}")


def maildir_header_count(backend, mid):
    """Delivered messages whose own Message-ID header is `mid`."""
    newdir = os.path.join(backend["dir"], "mail", "inbox", "new")
    n = 0
    for name in os.listdir(newdir) if os.path.isdir(newdir) else []:
        with open(os.path.join(newdir, name), "rb") as f:
            if email.message_from_bytes(f.read()).get("Message-ID") == mid:
                n += 1
    return n


def count_backend_connects(backend):
    try:
        with open(backend["maillog"], "rb") as f:
            return len(re.findall(rb"smtpd\[\d+\]: connect from ", f.read()))
    except FileNotFoundError:
        return 0


def check_backend_connects(backend, before, rec):
    """One proxied session opens one backend connection, or none when its
    record says it took the connection a previous session left
    (backend.reuse_idle_time): checked against Postfix's own log."""
    want = 0 if rec.get("backend_reused") else 1
    seen = count_backend_connects(backend) - before
    check(seen == want, "backend saw %d new connections for one proxied session (backend_reused=%s)"
          % (seen, rec.get("backend_reused")))


def sendmail_inject(rig, sender, rcpt, data):
    lf = data.replace(b"\r\n", b"\n")  # local submission uses LF
    rc, out = run(["sendmail", "-C", rig["sender"]["etc"], "-i", "-f", sender, rcpt],
                  input_bytes=lf)
    check(rc == 0, f"sendmail -C failed (rc={rc}): {out}")


def check_sender_log(rig, rcpt, client):
    """The sender instance must report TLS to the proxy (trusted/verified) and
    status=sent for this recipient."""
    log = rig["sender"]["maillog"]
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if re.search(rf"to=<{re.escape(rcpt)}>.*status=sent", text):
            break
        time.sleep(0.3)
    check(re.search(rf"to=<{re.escape(rcpt)}>.*status=sent", text),
          f"sender instance did not log status=sent for {rcpt}\n{tail(log)}")
    tls_kind = "Verified" if client == "pf-sec" else "(Trusted|Verified)"
    check(re.search(rf"{tls_kind} TLS connection established to 127\.0\.0\.1", text),
          f"sender log lacks a {tls_kind} TLS connection line\n{tail(log)}")

