#!/usr/bin/env python3
"""Real-peer integration scenarios for tlsfront (driven by integration/run.sh).

run.sh generates certificates, starts the private Postfix instances and writes
a rig description (JSON) whose path is the only argument. This script starts
the tlsfront proxies itself (by PID, always stopped in a finally block), runs
each scenario, prints "PASS name" / "FAIL name: why" and appends one JSON line
per scenario to the results file named in the rig description. run.sh prints
the final "N passed, N failed" line after cleanup.

Python stdlib only. Every network call and subprocess has a timeout; every
wait loop is bounded.
"""

import email.utils
import json
import os
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import traceback
import uuid

ECDHE_GROUPS = {"X25519MLKEM768", "X25519", "secp256r1", "secp384r1"}
CLIENT_TIMEOUT = 30  # seconds, per SMTP client operation
DELIVERY_TIMEOUT = 60  # seconds to wait for a message to show up in a Maildir
RECORD_TIMEOUT = 15  # seconds to wait for the proxy's per-connection record


class Fail(Exception):
    """A scenario assertion failed; the message is reported verbatim."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("      | " + l for l in lines[-n:])
    except OSError as e:
        return f"      | ({path}: {e})"


def run(cmd, timeout=CLIENT_TIMEOUT, input_bytes=None, env=None):
    """subprocess.run with a timeout; returns (rc, stdout+stderr as text)."""
    try:
        p = subprocess.run(cmd, input=input_bytes if input_bytes is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        raise Fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{out[-2000:]}")
    return p.returncode, p.stdout.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Test messages and Maildir comparison
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Proxy records (JSON lines, one per connection)
# --------------------------------------------------------------------------

class Records:
    def __init__(self, path):
        self.path = path

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def since(self, offset):
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n")[:-1]:  # only complete lines
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise Fail(f"record line is not JSON ({e}): {line[:300]!r}")
        return out

    def wait_one(self, offset, timeout=RECORD_TIMEOUT):
        """Exactly one new record since offset (one connection per scenario)."""
        deadline = time.monotonic() + timeout
        recs = []
        while time.monotonic() < deadline:
            recs = self.since(offset)
            if recs:
                time.sleep(0.5)  # an unexpected extra connection would show up now
                recs = self.since(offset)
                break
            time.sleep(0.2)
        check(recs, f"no record written to {self.path} within {timeout}s")
        check(len(recs) == 1, f"expected 1 new record, got {len(recs)}: "
              + "; ".join(json.dumps(r) for r in recs))
        return recs[0]


def assert_record(rec, **want):
    """Assert fields; special keys: kx_ecdhe=True, failure_reason_nonempty=True."""
    problems = []
    for k, v in want.items():
        if k == "kx_ecdhe":
            if rec.get("kx_group") not in ECDHE_GROUPS:
                problems.append(f"kx_group={rec.get('kx_group')!r} not an ECDHE group")
        elif k == "failure_reason_nonempty":
            if not (isinstance(rec.get("failure_reason"), str) and rec["failure_reason"].strip()):
                problems.append(f"failure_reason={rec.get('failure_reason')!r} is empty")
        elif rec.get(k) != v:
            problems.append(f"{k}={rec.get(k)!r}, want {v!r}")
    if problems:
        raise Fail("record mismatch: " + "; ".join(problems) + "\n    record: " + json.dumps(rec))


# --------------------------------------------------------------------------
# tlsfront process management
# --------------------------------------------------------------------------

class Proxy:
    def __init__(self, rig, name, backend_port, cert, key, port, implicit_port, host="127.0.0.1"):
        self.rig, self.name, self.host = rig, name, host
        self.port, self.implicit_port = port, implicit_port
        hp = f"[{host}]" if ":" in host else host
        self.dir = os.path.join(rig["work"], "proxy-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.records = Records(os.path.join(self.dir, "records.jsonl"))
        self.log = os.path.join(self.dir, "tlsfront.log")
        self.cmd = [rig["proxy_bin"], "run",
                    "--listen", f"{hp}:{port}",
                    "--implicit-listen", f"{hp}:{implicit_port}",
                    "--backend", f"127.0.0.1:{backend_port}",
                    "--cert", cert, "--key", key,
                    "--hostname", rig["proxy_hostname"],
                    "--records", self.records.path]
        self.proc = None
        self.exit_note = ""
        self.cert_desc = "RSA" if "rsa" in os.path.basename(cert) else "ECDSA"
        self.pidfile = os.path.join(rig["pid_dir"], f"tlsfront-{name}.pid")

    def start(self):
        check(os.access(self.rig["proxy_bin"], os.X_OK),
              f"proxy binary {self.rig['proxy_bin']} missing (did cargo build --release fail?)")
        logf = open(self.log, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=env)
        logf.close()
        with open(self.pidfile, "w") as f:  # run.sh's trap kills it if we die
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + 20
        ready = set()
        while time.monotonic() < deadline and len(ready) < 2:
            if self.proc.poll() is not None:
                raise Fail(f"tlsfront exited early with {self.proc.returncode}: {' '.join(self.cmd)}\n"
                           + tail(self.log))
            for p in (self.port, self.implicit_port):
                if p not in ready:
                    try:
                        socket.create_connection((self.host, p), timeout=1).close()
                        ready.add(p)
                    except OSError:
                        pass
            time.sleep(0.2)
        check(len(ready) == 2, f"tlsfront did not accept on both ports within 20s\n{tail(self.log)}")
        # The readiness probes above are connections too: let their records
        # (if any) land so they are not attributed to the first scenario.
        time.sleep(1.0)

    def stop(self):
        """SIGTERM, then verify it exits; returns None or a failure message."""
        if self.proc is None:
            return None
        msg = None
        if self.proc.poll() is not None and self.exit_note:
            pass  # already stopped by a scenario (sigterm_with_idle_session)
        elif self.proc.poll() is not None:
            msg = f"tlsfront had already exited with {self.proc.returncode} before SIGTERM\n{tail(self.log)}"
        else:
            # tlsfront handles SIGTERM (graceful stop, 30 s grace for sessions
            # in flight) and must exit with status 0; dying from the signal
            # itself means the handler is missing.
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=45)
                self.exit_note = f"exit status {rc} after {time.monotonic() - t0:.1f}s"
                if rc != 0:
                    how = "killed by SIGTERM (no graceful handler)" if rc == -signal.SIGTERM else f"status {rc}"
                    msg = f"tlsfront exited with {how} on SIGTERM\n{tail(self.log)}"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                msg = f"tlsfront did not exit within 45s of SIGTERM (killed)\n{tail(self.log)}"
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        self.proc = None
        return msg


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------

class SMTPWithSNI(smtplib.SMTP):
    """smtplib.SMTP whose STARTTLS uses a chosen server_hostname (SNI and
    name checked), while connecting to an IP address."""

    def __init__(self, sni, **kw):
        self._sni = sni
        super().__init__(**kw)

    def starttls(self, **kw):
        self._host = self._sni  # smtplib passes self._host as server_hostname
        return super().starttls(**kw)


class SMTPSSLWithSNI(smtplib.SMTP_SSL):
    def __init__(self, sni, **kw):
        self._sni = sni
        super().__init__(**kw)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._sni)


class LineReader:
    """Bounded reads of CRLF lines from a pipe (s_client's stdout)."""

    def __init__(self, fd):
        self.fd, self.buf = fd, b""

    def reply(self, timeout=CLIENT_TIMEOUT):
        """Read one complete SMTP reply (multi-line aware); returns (code, text)."""
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail(f"no SMTP reply within {timeout}s (got so far {self.buf!r})")
                r, _, _ = select.select([self.fd], [], [], left)
                if r:
                    chunk = os.read(self.fd, 65536)
                    if not chunk:
                        raise Fail(f"connection closed while waiting for a reply (got {lines!r} {self.buf!r})")
                    self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if re.match(r"^\d{3} ", line) or re.fullmatch(r"\d{3}", line):
                return int(line[:3]), "\n".join(lines)
            if not re.match(r"^\d{3}-", line):
                raise Fail(f"not an SMTP reply line: {line!r}")


def s_client_deliver(rig, port, helo, sender, rcpt, data, extra=()):
    """Deliver one message with openssl s_client -starttls smtp, verifying the
    proxy's chain against the test CA and its name. Returns s_client's -brief
    connection summary (stderr)."""
    cmd = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
           "-name", helo, "-servername", rig["proxy_hostname"],
           "-verify_hostname", rig["proxy_hostname"], "-CAfile", rig["ca"],
           "-verify_return_error", "-brief",
           "-nocommands",  # else a line starting with R (RCPT) renegotiates
           *extra]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rd = LineReader(p.stdout.fileno())

        def cmd_reply(line, want):
            p.stdin.write(line)
            p.stdin.flush()
            code, text = rd.reply()
            check(code == want, f"after {line[:60]!r} want {want}, got: {text}")

        # s_client did EHLO/STARTTLS/handshake itself; now say EHLO again.
        try:
            cmd_reply(f"EHLO {helo}\r\n".encode(), 250)
        except Fail as e:
            err = p.stderr.read1(65536).decode("utf-8", "replace") if p.poll() is not None else ""
            raise Fail(f"{e}\n    s_client stderr: {err}")
        cmd_reply(f"MAIL FROM:<{sender}>\r\n".encode(), 250)
        cmd_reply(f"RCPT TO:<{rcpt}>\r\n".encode(), 250)
        cmd_reply(b"DATA\r\n", 354)
        cmd_reply(dot_stuff(data), 250)
        cmd_reply(b"QUIT\r\n", 221)
        p.stdin.close()
        try:
            p.wait(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Fail("s_client did not exit after QUIT (proxy did not close the connection?)")
        err = p.stderr.read().decode("utf-8", "replace")
        check("Verification: OK" in err, f"s_client did not report a verified chain:\n{err}")
        return err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        for s in (p.stdin, p.stdout, p.stderr):
            try:
                s.close()
            except Exception:
                pass


def smtplib_deliver(rig, port, helo, sender, rcpt, data, implicit=False, max_tls12=False,
                    sni=None, host="127.0.0.1"):
    """Deliver with smtplib; returns (client_port, negotiated TLS version)."""
    ctx = ssl.create_default_context(cafile=rig["ca"])
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sni = sni or rig["proxy_hostname"]
    if implicit:
        s = SMTPSSLWithSNI(sni, local_hostname=helo, context=ctx, timeout=CLIENT_TIMEOUT)
    else:
        s = SMTPWithSNI(sni, local_hostname=helo, timeout=CLIENT_TIMEOUT)
    try:
        code, greeting = s.connect(host, port)
        check(code == 220 and greeting.split()[0] == rig["proxy_hostname"].encode(),
              f"greeting is not '220 {rig['proxy_hostname']} ...': {code} {greeting!r}")
        if not implicit:
            s.ehlo()
            check(s.has_extn("starttls"), f"proxy does not advertise STARTTLS: {s.esmtp_features}")
            s.starttls(context=ctx)
        s.ehlo()
        # RFC 3207: no STARTTLS once TLS is up (the backend's must not leak through).
        check(not s.has_extn("starttls"), f"STARTTLS still advertised under TLS: {s.esmtp_features}")
        client_port = s.sock.getsockname()[1]
        version = s.sock.version()
        refused = s.sendmail(sender, [rcpt], data)
        check(not refused, f"recipients refused: {refused}")
        s.quit()
    finally:
        try:
            s.close()
        except Exception:
            pass
    return client_port, version


# --------------------------------------------------------------------------
# Scenario runner
# --------------------------------------------------------------------------

class Runner:
    def __init__(self, rig):
        self.rig = rig
        self.results = open(rig["results"], "a")
        flt = os.environ.get("TLSFRONT_IT_SCENARIOS")
        self.filter = re.compile(flt) if flt else None

    def scenario(self, name, fn, *args, matrix=None, **kw):
        """matrix: a dict describing the cell (sender, offered, sni, listener,
        backend); fn's return value, if a record dict, fills in what was
        negotiated. The row goes into MATRIX whatever the outcome."""
        if self.filter and not self.filter.search(name):
            return
        t0 = time.monotonic()
        ret = None
        try:
            ret = fn(*args, **kw)
            status, detail = "PASS", ""
        except Fail as e:
            status, detail = "FAIL", str(e)
        except Exception as e:  # a crash in a scenario is a failure, not a rig abort
            status, detail = "FAIL", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        self.report(name, status, detail, time.monotonic() - t0)
        if matrix is not None:
            rec = ret if isinstance(ret, dict) else {}
            if status == "PASS" and matrix.get("known_bug"):
                status = "FAIL (known tlsfront bug, asserted: " + matrix["known_bug"] + ")"
            MATRIX.append(dict(matrix, result=status, scenario=name,
                               **{k: rec.get(k) for k in ("tls_version", "cipher_suite",
                                                          "kx_group", "cert_key_type")}))
        if status == "FAIL":
            # A failed scenario may leave a session closing in the proxy; let
            # its record land before the next scenario marks the record file.
            time.sleep(2)

    def report(self, name, status, detail="", secs=0.0):
        line = f"{status} {name} ({secs:.1f}s)"
        if detail:
            line += ": " + detail.rstrip().replace("\n", "\n    ")
        print(line, flush=True)
        self.results.write(json.dumps({"name": name, "status": status, "detail": detail}) + "\n")
        self.results.flush()


def uniq(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


# ---- a/b: direct to the legacy backends ------------------------------------

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


# ---- c: through the proxy ---------------------------------------------------

def via_proxy(rig, proxy, backend, client, tls_version="TLSv1.3", large=False):
    """Deliver one message through the proxy with `client`, then check the
    backend's copy and the proxy's record for that connection."""
    tag = f"{client}-{backend['name']}" + ("-large" if large else "")
    lp = uniq(tag)
    rcpt = f"{lp}@tlsfront.test"
    sender = "sender@client.test"
    helo = f"{client}{'-large' if large else ''}.client.test"
    mid, data = make_message(lp, rcpt, large=large)
    mark = proxy.records.mark()
    backend_connects = count_backend_connects(backend)
    want = dict(tls="established", tls_version=tls_version, kx_ecdhe=True, client_ip=proxy.host,
                starttls_used=True, mode="starttls", messages_accepted=1,
                backend_contacted=True, helo=helo, sni=rig["proxy_hostname"])
    if client.startswith("s_client"):
        # s_client-p384 / s_client-tls12-p256: pin the key-exchange group so
        # the record's kx_group is checked against a known value.
        extra = {"s_client": (),
                 "s_client-p384": ("-groups", "P-384"),
                 "s_client-tls12-p256": ("-tls1_2", "-groups", "P-256")}[client]
        err = s_client_deliver(rig, proxy.port, helo, sender, rcpt, data, extra)
        check(f"Protocol version: {tls_version}" in err, f"s_client negotiated something else:\n{err}")
        if "p384" in client:
            want.update(kx_group="secp384r1")
        elif "p256" in client:
            want.update(kx_group="secp256r1")
    elif client in ("swaks", "swaks-implicit"):
        path = os.path.join(proxy.dir, lp + ".eml")
        with open(path, "wb") as f:
            f.write(dot_stuff(data))  # --no-data-fixup: we send DATA verbatim
        if client == "swaks":
            mode = ["--port", str(proxy.port), "--tls"]
        else:
            mode = ["--port", str(proxy.implicit_port), "--tls-on-connect"]
            want.update(starttls_used=False, mode="implicit")
        rc, out = run(["swaks", "--server", "127.0.0.1", *mode,
                       "--tls-verify", "--tls-ca-path", rig["ca"],
                       "--tls-sni", rig["proxy_hostname"], "--ehlo", helo,
                       "--from", sender, "--to", rcpt, "--data", path,
                       "--no-data-fixup", "--timeout", "30"])
        check(rc == 0, f"swaks failed (rc={rc}):\n{out[-3000:]}")
    elif client in ("smtplib-tls13", "smtplib-tls12", "smtplib-implicit", "smtplib-ipsan"):
        implicit = client == "smtplib-implicit"
        tls12 = client == "smtplib-tls12"
        sni = "127.0.0.1" if client == "smtplib-ipsan" else None  # IP: no SNI sent
        port = proxy.implicit_port if implicit else proxy.port
        cport, ver = smtplib_deliver(rig, port, helo, sender, rcpt, data,
                                     implicit=implicit, max_tls12=tls12, sni=sni,
                                     host=proxy.host)
        check(ver == tls_version, f"client negotiated {ver}, expected {tls_version}")
        want["client_port"] = cport
        if implicit:
            want.update(starttls_used=False, mode="implicit")
        if sni:
            want.pop("sni")
    elif client in ("pf-enc", "pf-sec"):
        # Postfix sender instance: the local part prefix ("pf-enc-legacy-rsa-")
        # selects transport and proxy (see the transport map run.sh writes).
        want["helo"] = "pf-encrypt.client.test" if client == "pf-enc" else "pf-secure.client.test"
        if client == "pf-enc":
            want.pop("sni")  # Postfix sends no SNI unless smtp_tls_servername is set
        sendmail_inject(rig, sender, rcpt, data)
    else:
        raise AssertionError(client)

    stored = wait_delivered(backend, mid)
    assert_same_message(stored, data)
    rec = proxy.records.wait_one(mark)
    if client in ("pf-enc", "pf-sec"):
        check_sender_log(rig, rcpt, client)
    assert_record(rec, **want)
    check_backend_connects(backend, backend_connects, rec)
    return rec


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


def count_backend_connects(backend):
    try:
        with open(backend["maillog"], "rb") as f:
            return len(re.findall(rb"smtpd\[\d+\]: connect from ", f.read()))
    except FileNotFoundError:
        return 0


def proxied_want(rig, helo, **extra):
    want = dict(tls="established", tls_version="TLSv1.3", kx_ecdhe=True, client_ip="127.0.0.1",
                starttls_used=True, mode="starttls", messages_accepted=1,
                backend_contacted=True, helo=helo, sni=rig["proxy_hostname"])
    want.update(extra)
    return want


def smtplib_session(rig, port, helo):
    """A verified STARTTLS smtplib session to the proxy (caller quits)."""
    ctx = ssl.create_default_context(cafile=rig["ca"])
    s = SMTPWithSNI(rig["proxy_hostname"], host="127.0.0.1", port=port,
                    local_hostname=helo, timeout=CLIENT_TIMEOUT)
    s.starttls(context=ctx)
    s.ehlo()
    return s


def two_messages_one_session(rig, proxy, backend):
    """Two transactions on one connection (RSET in between): both delivered
    intact and counted in one record."""
    helo = "two-msgs.client.test"
    mark = proxy.records.mark()
    sent = []
    s = smtplib_session(rig, proxy.port, helo)
    try:
        for i in (1, 2):
            lp = uniq(f"two-msgs-{i}-{backend['name']}")
            rcpt = f"{lp}@tlsfront.test"
            mid, data = make_message(lp, rcpt)
            check(not s.sendmail("sender@client.test", [rcpt], data), "recipient refused")
            s.rset()
            sent.append((mid, data))
        s.quit()
    finally:
        s.close()
    for mid, data in sent:
        assert_same_message(wait_delivered(backend, mid), data)
    assert_record(proxy.records.wait_one(mark), **proxied_want(rig, helo, messages_accepted=2))


def rcpt_reply(s, rcpt):
    """MAIL FROM + RCPT TO on an open smtplib session; returns the RCPT reply."""
    code, text = s.mail("sender@client.test")
    check(code == 250, f"MAIL FROM refused: {code} {text!r}")
    return s.rcpt(rcpt)


def backend_rejection_passthrough(rig, proxy, backend):
    """The backend refuses a recipient (we do not relay): through the proxy
    the client must get the backend's reply unchanged (code, enhanced code,
    text), and the other recipient in the same transaction still gets the
    message."""
    helo = "reject.client.test"
    lp = uniq(f"reject-{backend['name']}")
    good, bad = f"{lp}@tlsfront.test", f"{lp}@elsewhere.example"
    # What the backend itself answers for that recipient (plaintext, direct).
    with smtplib.SMTP("127.0.0.1", backend["port"], local_hostname=helo,
                      timeout=CLIENT_TIMEOUT) as d:
        d.ehlo()
        direct = rcpt_reply(d, bad)
        d.rset()
    check(400 <= direct[0] < 600, f"backend unexpectedly accepted {bad}: {direct}")

    mark = proxy.records.mark()
    mid, data = make_message(lp, good)
    s = smtplib_session(rig, proxy.port, helo)
    try:
        proxied = rcpt_reply(s, bad)
        s.rset()
        refused = s.sendmail("sender@client.test", [bad, good], data)
        s.quit()
    finally:
        s.close()
    check(proxied == direct, f"rejection changed by the proxy: direct {direct}, proxied {proxied}")
    check(set(refused) == {bad} and refused[bad] == direct,
          f"expected only {bad} refused with {direct}, got {refused}")
    assert_same_message(wait_delivered(backend, mid), data)
    assert_record(proxy.records.wait_one(mark), **proxied_want(rig, helo))


def eightbit_body(rig, proxy, backend):
    """BODY=8BITMIME with a UTF-8 body arrives byte-identical."""
    helo = "eightbit.client.test"
    mark = proxy.records.mark()
    lp = uniq(f"eightbit-{backend['name']}")
    rcpt = f"{lp}@tlsfront.test"
    mid, data = make_message(lp, rcpt, eightbit=True)
    s = smtplib_session(rig, proxy.port, helo)
    try:
        check(s.has_extn("8bitmime"), f"proxy does not advertise 8BITMIME after STARTTLS: {s.esmtp_features}")
        check(not s.sendmail("sender@client.test", [rcpt], data, mail_options=["BODY=8BITMIME"]),
              "recipient refused")
        s.quit()
    finally:
        s.close()
    assert_same_message(wait_delivered(backend, mid), data)
    assert_record(proxy.records.wait_one(mark), **proxied_want(rig, helo))


def concurrent_sessions(rig, proxy, backend, n=5):
    """n simultaneous verified sessions: every message delivered intact and
    one correct record per connection."""
    import threading
    mark = proxy.records.mark()
    jobs, errors = [], []
    for i in range(n):
        lp = uniq(f"conc{i}-{backend['name']}")
        rcpt = f"{lp}@tlsfront.test"
        mid, data = make_message(lp, rcpt)
        jobs.append((f"conc{i}.client.test", rcpt, mid, data))
    barrier = threading.Barrier(n, timeout=CLIENT_TIMEOUT)

    def worker(helo, rcpt, data):
        try:
            s = smtplib_session(rig, proxy.port, helo)
            try:
                barrier.wait()  # all sessions open at once
                check(not s.sendmail("sender@client.test", [rcpt], data), "recipient refused")
                s.quit()
            finally:
                s.close()
        except Exception as e:
            errors.append(f"{helo}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(h, r, d), daemon=True) for h, r, _, d in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT * 2)
    check(not any(t.is_alive() for t in threads), "a client thread did not finish")
    check(not errors, "; ".join(errors))
    for _, _, mid, data in jobs:
        assert_same_message(wait_delivered(backend, mid), data)
    deadline = time.monotonic() + RECORD_TIMEOUT
    while time.monotonic() < deadline and len(proxy.records.since(mark)) < n:
        time.sleep(0.2)
    time.sleep(0.5)
    recs = proxy.records.since(mark)
    check(len(recs) == n, f"expected {n} records, got {len(recs)}")
    by_helo = {r.get("helo"): r for r in recs}
    for helo, _, _, _ in jobs:
        check(helo in by_helo, f"no record with helo {helo}: {[r.get('helo') for r in recs]}")
        assert_record(by_helo[helo], **proxied_want(rig, helo))


def sigterm_with_idle_session(rig, proxy, backend, bound=45):
    """SIGTERM while a verified TLS session sits idle after EHLO: the proxy
    must exit by itself within its shutdown grace (30 s default) + margin,
    with status 0, end the idle session, and still write its record."""
    helo = "idle-at-shutdown.client.test"
    mark = proxy.records.mark()
    s = smtplib_session(rig, proxy.port, helo)
    try:
        t0 = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        try:
            rc = proxy.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            proxy.proc.kill()
            proxy.proc.wait(timeout=10)
            proxy.exit_note = "killed"
            raise Fail(f"tlsfront still running {bound}s after SIGTERM with one idle session\n{tail(proxy.log)}")
        took = time.monotonic() - t0
        proxy.exit_note = f"exit status {rc} after {took:.1f}s"
        check(rc == 0, f"tlsfront exited with status {rc} on SIGTERM\n{tail(proxy.log)}")
        # The client's connection must be gone (or answer 421), not hang.
        try:
            code, text = s.noop()
            check(code == 421, f"idle session still answered {code} {text!r} after the proxy exited")
        except (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError, OSError):
            pass
    finally:
        try:
            s.close()
        except Exception:
            pass
    recs = [r for r in proxy.records.since(mark) if r.get("helo") == helo]
    check(len(recs) == 1, f"idle session's record not written on shutdown "
          f"(records since mark: {proxy.records.since(mark)})")
    assert_record(recs[0], tls="established", messages_accepted=0, backend_contacted=False)
    print(f"    (info) exited {took:.1f}s after SIGTERM; idle session record: "
          f"close_reason={recs[0].get('close_reason')!r}", flush=True)


def read_reply(sock, timeout=CLIENT_TIMEOUT):
    """One SMTP reply from a (TLS or plain) socket, multi-line aware."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {buf!r}")
            buf += chunk
        lines = buf.split(b"\n")
        for i, l in enumerate(lines[:-1]):
            if l[3:4] != b"-":
                return int(l[:3]), b"\n".join(lines[: i + 1]), b"\n".join(lines[i + 1:])
        # need more data for the last line of a multi-line reply
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk


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


# ---- SMTP smuggling ------------------------------------------------------------

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


def maildir_header_count(backend, mid):
    """Delivered messages whose own Message-ID header is `mid`."""
    newdir = os.path.join(backend["dir"], "mail", "inbox", "new")
    n = 0
    for name in os.listdir(newdir) if os.path.isdir(newdir) else []:
        with open(os.path.join(newdir, name), "rb") as f:
            if email.message_from_bytes(f.read()).get("Message-ID") == mid:
                n += 1
    return n


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


# ---- d: failed handshake ----------------------------------------------------

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


PROXY_DELIVERIES = [  # (client, expected TLS version, ~200 KB message)
    ("s_client", "TLSv1.3", False),
    ("s_client-p384", "TLSv1.3", False),
    ("s_client-tls12-p256", "TLSv1.2", False),
    ("swaks", "TLSv1.3", False),
    ("swaks-implicit", "TLSv1.3", False),
    ("smtplib-tls13", "TLSv1.3", False),
    ("smtplib-tls13", "TLSv1.3", True),
    ("smtplib-tls12", "TLSv1.2", False),
    ("smtplib-ipsan", "TLSv1.3", False),
    ("smtplib-implicit", "TLSv1.3", False),
    ("pf-enc", "TLSv1.3", False),
    ("pf-enc", "TLSv1.3", True),
    ("pf-sec", "TLSv1.3", False),
]


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


def proxy_scenarios(runner, rig, name, backend, cert, key, ports, idle_at_stop=False):
    proxy = Proxy(rig, name, backend["port"], cert, key, *ports)
    prefix = f"proxy[{name}]"
    names = [f"{prefix} deliver via {c}{' 200KB' if big else ''} ({v})"
             for c, v, big in PROXY_DELIVERIES]
    extras = [
        (f"{prefix} two messages in one session", two_messages_one_session),
        (f"{prefix} backend's RCPT rejection passed through unchanged", backend_rejection_passthrough),
        (f"{prefix} 8-bit UTF-8 body (BODY=8BITMIME) intact", eightbit_body),
        (f"{prefix} 5 concurrent sessions", concurrent_sessions),
        (f"{prefix} plaintext command pipelined after STARTTLS is not executed", starttls_injection),
        (f"{prefix} SMTP smuggling (<LF>.<LF>) stays one message", smuggling_blocked),
    ]
    names += [n for n, _ in extras]
    names.append(f"{prefix} TLS 1.2 DHE-only client rejected, failure recorded")
    names.append(f"{prefix} TLS 1.1 client rejected, failure recorded, backend untouched")
    stop_name = (f"{prefix} SIGTERM with an idle TLS session: clean exit, session recorded"
                 if idle_at_stop else f"{prefix} exits on SIGTERM")
    names.append(stop_name)
    if runner.filter and not any(runner.filter.search(n) for n in names):
        return
    try:
        proxy.start()
    except Fail as e:
        # Keep the scenario count stable: everything that needed it fails.
        proxy.stop()
        runner.report(f"{prefix} start", "FAIL", str(e))
        for n in names:
            runner.report(n, "FAIL", "proxy did not start")
        return
    try:
        runner.report(f"{prefix} start", "PASS")
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


def free_ports(n, family=socket.AF_INET, host="127.0.0.1"):
    socks = []
    for _ in range(n):
        so = socket.socket(family)
        so.bind((host, 0))
        socks.append(so)
    ports = [so.getsockname()[1] for so in socks]
    for so in socks:
        so.close()
    return ports


def backend_down_tempfail(rig, proxy):
    """The legacy MTA is down (nothing listens on the backend port): the
    client must get a temporary (4xx) failure, never a 250 for mail that
    cannot be delivered, and the record must show nothing accepted."""
    helo = "backend-down.client.test"
    mark = proxy.records.mark()
    rcpt = f"{uniq('down')}@tlsfront.test"
    _, data = make_message("down", rcpt)
    s = smtplib_session(rig, proxy.port, helo)
    code = None
    try:
        try:
            s.sendmail("sender@client.test", [rcpt], data)
            raise Fail("mail accepted although the backend is down")
        except smtplib.SMTPRecipientsRefused as e:
            code = next(iter(e.recipients.values()))[0]
        except smtplib.SMTPResponseException as e:
            code = e.smtp_code
        except smtplib.SMTPServerDisconnected:
            code = "disconnected"
        try:
            s.quit()
        except Exception:
            pass
    finally:
        s.close()
    check(isinstance(code, int) and 400 <= code < 500,
          f"expected a 4xx temporary failure, got {code!r}")
    rec = proxy.records.wait_one(mark)
    assert_record(rec, tls="established", messages_accepted=0, backend_contacted=True,
                  backend_error="connect_failed")
    print(f"    (info) client got {code}; record close_reason={rec.get('close_reason')!r} "
          f"failure_reason={rec.get('failure_reason')!r} backend_contacted={rec.get('backend_contacted')!r}",
          flush=True)


def backend_down_scenarios(runner, rig):
    """A proxy whose backend port has nothing listening."""
    dead, p1, p2 = free_ports(3)
    certs = rig["certs"]
    proxy = Proxy(rig, "backend-down", dead, f"{certs}/proxy-ecdsa-fullchain.pem",
                  f"{certs}/proxy-ecdsa-key.pem", p1, p2)
    prefix = "proxy[backend down]"
    name = f"{prefix} MAIL gets a 4xx temporary failure, nothing accepted"
    if runner.filter and not runner.filter.search(name):
        return
    try:
        proxy.start()
    except Fail as e:
        proxy.stop()
        runner.report(name, "FAIL", f"proxy did not start with its backend down: {e}")
        return
    try:
        runner.scenario(name, backend_down_tempfail, rig, proxy)
    finally:
        msg = proxy.stop()
        if msg:
            runner.report(f"{prefix} exits on SIGTERM", "FAIL", msg)


def ipv6_scenarios(runner, rig, backend):
    """A third proxy listening only on [::1] (backend still 127.0.0.1): the
    bracketed address form works and records carry client_ip "::1"."""
    try:
        ports = free_ports(2, socket.AF_INET6, "::1")
    except OSError as e:
        print(f"NOTE ipv6 scenarios not run: cannot bind [::1] here ({e})", flush=True)
        return
    certs = rig["certs"]
    proxy = Proxy(rig, "legacy-rsa-ipv6", backend["port"], f"{certs}/proxy-ecdsa-fullchain.pem",
                  f"{certs}/proxy-ecdsa-key.pem", *ports, host="::1")
    prefix = "proxy[legacy-rsa, [::1]]"
    names = [f"{prefix} deliver via smtplib-tls13 (TLSv1.3)",
             f"{prefix} deliver via smtplib-implicit (TLSv1.3)"]
    if runner.filter and not any(runner.filter.search(n) for n in names):
        return
    try:
        proxy.start()
    except Fail as e:
        proxy.stop()
        runner.report(f"{prefix} start", "FAIL", str(e))
        for n in names:
            runner.report(n, "FAIL", "proxy did not start")
        return
    try:
        runner.report(f"{prefix} start", "PASS")
        runner.scenario(names[0], via_proxy, rig, proxy, backend, "smtplib-tls13", "TLSv1.3", False,
                        matrix=matrix_cell("smtplib-tls13", "TLSv1.3", False, proxy, "legacy-rsa"))
        runner.scenario(names[1], via_proxy, rig, proxy, backend, "smtplib-implicit", "TLSv1.3", False,
                        matrix=matrix_cell("smtplib-implicit", "TLSv1.3", False, proxy, "legacy-rsa"))
    finally:
        msg = proxy.stop()
        runner.report(f"{prefix} exits on SIGTERM", "FAIL" if msg else "PASS", msg or proxy.exit_note)


# --------------------------------------------------------------------------
# Sender matrix: more TLS stacks (GnuTLS, Go, Java), certificate selection by
# what the client can verify, a TLS scanner, and the table of results.
# --------------------------------------------------------------------------

MATRIX = []  # one dict per delivery cell, filled by Runner.scenario(matrix=...)
SCANS = []  # sslscan findings, one dict per scan, for MATRIX.md

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


class ConfigProxy(Proxy):
    """tlsfront started from a configuration file (for what flags cannot
    say: several certificates)."""

    def __init__(self, rig, name, backend_port, certs, port, implicit_port):
        super().__init__(rig, name, backend_port, "", "", port, implicit_port)
        self.conf = os.path.join(self.dir, "tlsfront.toml")
        lines = ['[server]', f'hostname = "{rig["proxy_hostname"]}"',
                 '[[listener]]', 'mode = "starttls"', f'address = ["127.0.0.1:{port}"]',
                 '[[listener]]', 'mode = "implicit"', f'address = ["127.0.0.1:{implicit_port}"]',
                 '[backend]', f'address = "127.0.0.1:{backend_port}"',
                 '[tls]', 'generate_self_signed = false']
        for cert, key in certs:
            lines += ['[[tls.certificate]]', f'cert = "{cert}"', f'key = "{key}"', 'default = true']
        lines += ['[records]', f'path = "{self.records.path}"']
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.cmd = [rig["proxy_bin"], "run", "--config", self.conf]


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
    import xml.etree.ElementTree as ET
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
    here = os.path.dirname(os.path.abspath(__file__))
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
    try:
        proxy.start()
    except Fail as e:
        proxy.stop()
        runner.report(f"{prefix} start", "FAIL", str(e))
        for n in names:
            runner.report(n, "FAIL", "proxy did not start")
        return
    try:
        runner.report(f"{prefix} start", "PASS")
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
        dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "MATRIX.md")
        with open(dst, "w") as f:
            f.write(text)
        print(f"    (info) matrix written to {dst}", flush=True)



def main():
    # run.sh may SIGTERM us (its own signal/timeout): unwind through the
    # finally blocks so every proxy we started is stopped by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with open(sys.argv[1]) as f:
        rig = json.load(f)
    runner = Runner(rig)
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
    # Security scenarios (SASL backend, inherited state): test_security.py,
    # which imports this module by name, so make that name this very module.
    sys.modules.setdefault("test_real_peers", sys.modules[__name__])
    import test_security
    test_security.scenarios(runner, rig)
    write_matrix(rig, runner)


if __name__ == "__main__":
    main()
