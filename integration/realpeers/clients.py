"""SMTP clients that speak to the proxy: smtplib with a chosen SNI, openssl
s_client driven through its pipes, and a raw reply reader for sockets."""

import os
import re
import select
import smtplib
import socket
import ssl
import subprocess
import time

from .harness import CLIENT_TIMEOUT, Fail, check
from .mail import dot_stuff


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


def smtplib_session(rig, port, helo):
    """A verified STARTTLS smtplib session to the proxy (caller quits)."""
    ctx = ssl.create_default_context(cafile=rig["ca"])
    s = SMTPWithSNI(rig["proxy_hostname"], host="127.0.0.1", port=port,
                    local_hostname=helo, timeout=CLIENT_TIMEOUT)
    s.starttls(context=ctx)
    s.ehlo()
    return s


def rcpt_reply(s, rcpt):
    """MAIL FROM + RCPT TO on an open smtplib session; returns the RCPT reply."""
    code, text = s.mail("sender@client.test")
    check(code == 250, f"MAIL FROM refused: {code} {text!r}")
    return s.rcpt(rcpt)

