"""Real-peer security scenarios: no client inherits another's backend state.

Run by test_real_peers.py's main() (after the other scenarios) against the
private Postfix 3.7 instance "sasl" that run.sh starts (lib/postfix.sh,
pf_sasl_backend): it relays to any domain for SASL-authenticated clients only
(`smtpd_relay_restrictions = permit_sasl_authenticated,
reject_unauth_destination`), refuses everyone else with `554 5.7.1 Relay
access denied`, and asks a Dovecot-protocol auth server for passwords. That
server is DovecotAuth below, started here and stopped in a finally block.

The hole (issue 10, finding 1): Postfix keeps a connection's SASL state
across EHLO. If tlsfront keeps an authenticated backend connection for the
next session (backend.reuse_idle_time, "2s" by default), the next client --
any address, plaintext on port 25 -- relays as the authenticated user. The
attack scenarios below must see that client refused, and Postfix's log must
show no transaction of it carrying `sasl_username=`.

Python stdlib only; every wait is bounded.
"""

import base64
import json
import os
import re
import secrets
import select
import smtplib
import socket
import ssl
import threading
import time
import uuid

from .clients import SMTPSSLWithSNI, SMTPWithSNI
from .harness import CLIENT_TIMEOUT, RECORD_TIMEOUT, Fail, FileTail, check, free_ports, uniq
from .proxy import Proxy, assert_record

SASL_USER = "alice"
SASL_PASSWORD = "correct-horse-battery"
EXTERNAL = "external.example"  # not a domain of the backend: relaying needs AUTH
REUSE = "2s"  # tlsfront's default backend.reuse_idle_time, stated explicitly
REUSE_SETTLE = 2.5  # seconds: longer than REUSE, so no kept connection survives
LOG_TIMEOUT = 15  # seconds to wait for Postfix's log lines (written by postlogd)
AUTH_LINE_MAX = 16384


# --------------------------------------------------------------------------
# A Dovecot authentication server (protocol 1.2), the part Postfix speaks
# --------------------------------------------------------------------------

class DovecotAuth:
    """Serves Postfix's xsasl_dovecot client on 127.0.0.1:port.

    Handshake: server sends VERSION, MECH, SPID, CUID, COOKIE, DONE; the
    client sends VERSION and CPID. Then `AUTH <id> PLAIN service=smtp ...
    [resp=<base64>]`; without an initial response the server answers
    `CONT <id> ` and the client sends `CONT <id> <base64>`. The answer is
    `OK <id> user=<name>` for the one known user and password, `FAIL <id>`
    otherwise. Every verdict is remembered (self.events), so a scenario can
    tell how many logins the backend really checked."""

    def __init__(self, port, users):
        self.port, self.users = port, dict(users)
        self.events = []  # (monotonic time, user or None, "OK"/"FAIL", detail)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)

    def start(self):
        t = threading.Thread(target=self._accept, name="dovecot-auth", daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=5)
        self.sock.close()

    def ok_since(self, t0):
        with self.lock:
            return [e for e in self.events if e[0] >= t0 and e[2] == "OK"]

    def _accept(self):
        while not self.stopping.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), name="dovecot-conn", daemon=True)
            t.start()
            self.threads.append(t)

    def _record(self, user, verdict, detail):
        with self.lock:
            self.events.append((time.monotonic(), user, verdict, detail))

    def _check_plain(self, b64):
        """(user or None, detail) for a SASL PLAIN response."""
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            return None, "bad base64"
        parts = raw.split(b"\0")
        if len(parts) != 3:
            return None, "not authzid NUL authcid NUL password"
        authz, authc, pw = (p.decode("utf-8", "replace") for p in parts)
        if self.users.get(authc) == pw and authz in ("", authc):
            return authc, "password ok"
        return None, f"wrong credentials for {authc!r}"

    def _serve(self, conn):
        pending = set()  # request ids waiting for a CONT (AUTH without resp=)
        buf = b""
        try:
            conn.sendall(("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n"
                          f"SPID\t{os.getpid()}\nCUID\t1\nCOOKIE\t{secrets.token_hex(16)}\nDONE\n").encode())
            while not self.stopping.is_set():
                r, _, _ = select.select([conn], [], [], 0.2)
                if not r:
                    continue
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                if len(buf) > AUTH_LINE_MAX and b"\n" not in buf:
                    return
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    reply = self._handle(line.decode("utf-8", "replace").split("\t"), pending)
                    if reply:
                        conn.sendall(reply.encode())
        except OSError:
            return
        finally:
            conn.close()

    def _handle(self, f, pending):
        if f[0] == "AUTH" and len(f) >= 3:
            rid, mech = f[1], f[2]
            if mech.upper() != "PLAIN":
                self._record(None, "FAIL", f"mechanism {mech}")
                return f"FAIL\t{rid}\treason=unsupported mechanism\n"
            resp = next((a[5:] for a in f[3:] if a.startswith("resp=")), None)
            if resp is None:
                pending.add(rid)
                return f"CONT\t{rid}\t\n"
            return self._verdict(rid, resp)
        if f[0] == "CONT" and len(f) >= 3 and f[1] in pending:
            pending.discard(f[1])
            return self._verdict(f[1], f[2])
        return None  # VERSION, CPID: nothing to answer

    def _verdict(self, rid, b64):
        user, detail = self._check_plain(b64)
        if user is None:
            self._record(None, "FAIL", detail)
            return f"FAIL\t{rid}\treason=authentication failed\n"
        self._record(user, "OK", detail)
        return f"OK\t{rid}\tuser={user}\n"


# --------------------------------------------------------------------------
# Postfix's log, tlsfront in front of the SASL backend, SMTP clients
# --------------------------------------------------------------------------

class Maillog(FileTail):
    def since(self, offset):
        return self.read_since(offset).decode("utf-8", "replace")

    def wait_for(self, offset, pattern, timeout=LOG_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            text = self.since(offset)
            if re.search(pattern, text, re.M):
                return text
            if time.monotonic() >= deadline:
                raise Fail(f"no line matching {pattern!r} in {self.path} within {timeout}s; "
                           f"new lines:\n{indent(text)}")
            time.sleep(0.2)


def indent(text, n=40):
    lines = text.splitlines()[-n:]
    return "\n".join("      | " + l for l in lines) if lines else "      | (nothing)"


class SaslProxy(Proxy):
    """tlsfront from a configuration file (flags cannot give the source
    address or the reuse time) in front of the SASL backend."""

    def __init__(self, rig, name, sasl, reuse):
        certs = rig["certs"]
        super().__init__(rig, name, sasl["port"], f"{certs}/proxy-ecdsa-fullchain.pem",
                         f"{certs}/proxy-ecdsa-key.pem", *free_ports(2))
        self.conf = os.path.join(self.dir, "tlsfront.toml")
        lines = ['[server]', f'hostname = "{rig["proxy_hostname"]}"',
                 '[[listener]]', 'mode = "starttls"', f'address = ["127.0.0.1:{self.port}"]',
                 '[[listener]]', 'mode = "implicit"', f'address = ["127.0.0.1:{self.implicit_port}"]',
                 '[backend]', f'address = "127.0.0.1:{sasl["port"]}"',
                 # Not in the backend's mynetworks: tlsfront is no trusted client.
                 f'source_address = "{sasl["proxy_source"]}"',
                 f'reuse_idle_time = "{reuse}"',
                 '[tls]', 'generate_self_signed = false',
                 '[[tls.certificate]]', f'cert = "{certs}/proxy-ecdsa-fullchain.pem"',
                 f'key = "{certs}/proxy-ecdsa-key.pem"', 'default = true',
                 '[records]', f'path = "{self.records.path}"']
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.cmd = [rig["proxy_bin"], "run", "--config", self.conf]


def auth_plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def authenticate(s, password=SASL_PASSWORD):
    """AUTH PLAIN with an initial response; returns (code, text)."""
    mechs = s.esmtp_features.get("auth", "").upper().split()
    check("PLAIN" in mechs, f"AUTH PLAIN not advertised (EHLO keywords: {s.esmtp_features})")
    code, text = s.docmd("AUTH", "PLAIN " + auth_plain(SASL_USER, password))
    return code, text.decode("utf-8", "replace")


def authed_client(rig, proxy, helo, implicit=False):
    """A verified TLS session to the proxy (STARTTLS or implicit) that has
    authenticated as SASL_USER (235)."""
    ctx = ssl.create_default_context(cafile=rig["ca"])
    sni = rig["proxy_hostname"]
    if implicit:
        s = SMTPSSLWithSNI(sni, local_hostname=helo, context=ctx, timeout=CLIENT_TIMEOUT)
        s.connect("127.0.0.1", proxy.implicit_port)
    else:
        s = SMTPWithSNI(sni, local_hostname=helo, timeout=CLIENT_TIMEOUT)
        s.connect("127.0.0.1", proxy.port)
        s.ehlo()
        s.starttls(context=ctx)
    s.ehlo()
    code, text = authenticate(s)
    check(code == 235, f"AUTH PLAIN with good credentials through tlsfront: want 235, got {code} {text}")
    return s


def quit_and_wait_closed(s):
    """QUIT, then wait until the proxy closes the connection: tlsfront has
    then finished the session (and kept or dropped its backend connection)."""
    try:
        code, text = s.docmd("QUIT")
        check(code == 221, f"QUIT: want 221, got {code} {text!r}")
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while time.monotonic() < deadline:
            s.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if not s.sock.recv(4096):
                    return
            except (ssl.SSLError, ConnectionError):
                return
            except socket.timeout:
                break
        raise Fail(f"tlsfront did not close the connection within {CLIENT_TIMEOUT}s of QUIT")
    finally:
        s.close()


def plain_client(proxy, helo, source):
    """A plaintext session to the STARTTLS listener ("port 25") from another
    loopback address, EHLO done."""
    s = smtplib.SMTP(local_hostname=helo, timeout=CLIENT_TIMEOUT, source_address=(source, 0))
    s.connect("127.0.0.1", proxy.port)
    code, _ = s.ehlo()
    check(code == 250, f"EHLO from {source}: {code}")
    return s


def new_message(sender, rcpt, tag):
    mid = f"<{tag}.{uuid.uuid4().hex}@client.test>"
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {tag}\r\nMessage-ID: {mid}\r\n"
            f"\r\nrelay attempt {tag}\r\n").encode()


def try_relay(s, sender, rcpt, tag):
    """MAIL, RCPT and (if the recipient is accepted) DATA; returns a dict
    with the replies. DATA completes what a relay would do, so Postfix's log
    links the queue ID to the relayed message."""
    out = {}
    code, text = s.docmd("MAIL", f"FROM:<{sender}>")
    out["mail"] = (code, text.decode("utf-8", "replace"))
    if code != 250:
        return out
    code, text = s.docmd("RCPT", f"TO:<{rcpt}>")
    out["rcpt"] = (code, text.decode("utf-8", "replace"))
    if code not in (250, 251):
        s.docmd("RSET")
        return out
    code, text = s.data(new_message(sender, rcpt, tag))
    out["data"] = (code, text.decode("utf-8", "replace"))
    return out


def wait_records(proxy, mark, helos, timeout=RECORD_TIMEOUT):
    """The proxy's records for these EHLO names (one each), bounded."""
    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline:
        found = {r.get("helo"): r for r in proxy.records.since(mark) if r.get("helo") in helos}
        if len(found) == len(helos):
            return found
        time.sleep(0.2)
    raise Fail(f"records for {sorted(set(helos) - set(found))} not written within {timeout}s")


def summarize(rec):
    keys = ("client_ip", "mode", "tls", "helo", "backend_reused", "messages_accepted", "close_reason")
    return json.dumps({k: rec.get(k) for k in keys})


def smtpd_lines(text):
    return "\n".join(l for l in text.splitlines() if "/smtpd[" in l or "/discard[" in l
                     or "/qmgr[" in l)


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

def direct_control(rig, sasl, auth):
    """Without tlsfront: the backend refuses to relay for an anonymous
    client, refuses a wrong password, relays for the authenticated user and
    logs that user. (The rig itself is sound: the auth server is consulted.)"""
    log = Maillog(sasl["maillog"])
    mark = log.mark()
    tag = uniq("direct")
    rcpt, sender = f"{tag}@{EXTERNAL}", f"{tag}@client.test"
    with smtplib.SMTP("127.0.0.1", sasl["port"], local_hostname="direct.client.test",
                      timeout=CLIENT_TIMEOUT) as s:
        s.ehlo()
        anon = try_relay(s, sender, rcpt, tag + "-anon")
        check(anon.get("rcpt", (0,))[0] == 554 and "Relay access denied" in anon["rcpt"][1],
              f"anonymous relay directly: want 554 Relay access denied, got {anon}")
        code, text = authenticate(s, password="wrong")
        check(code == 535, f"AUTH with a wrong password: want 535, got {code} {text}")
        t0 = time.monotonic()
        code, text = authenticate(s)
        check(code == 235, f"AUTH with good credentials: want 235, got {code} {text}")
        check(len(auth.ok_since(t0)) == 1, "the auth server did not see the successful login")
        authed = try_relay(s, sender, rcpt, tag)
        check(authed.get("data", (0,))[0] == 250, f"authenticated relay directly: want 250, got {authed}")
    text = log.wait_for(mark, rf"to=<{re.escape(rcpt)}>.*status=sent")
    check(re.search(rf"client=\S+\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username={SASL_USER}\b", text),
          f"Postfix did not log the authenticated transaction with sasl_username={SASL_USER}:\n"
          + indent(smtpd_lines(text)))


def anonymous_reuse_control(rig, proxy, sasl, auth):
    """Control for the attack window: an anonymous session's clean backend
    connection is reused by the next client within reuse_idle_time (if this
    fails, the attack scenarios below do not exercise reuse at all)."""
    time.sleep(REUSE_SETTLE)
    mark = proxy.records.mark()
    h1, h2 = "anon-first.client.test", "anon-second.client.test"
    s = plain_client(proxy, h1, "127.0.0.1")
    code, text = s.docmd("MAIL", "FROM:<first@client.test>")
    check(code == 250, f"MAIL: {code} {text!r}")
    code, text = s.docmd("RSET")
    check(code == 250, f"RSET: {code} {text!r}")
    quit_and_wait_closed(s)
    s = plain_client(proxy, h2, "127.0.0.2")
    try:
        code, text = s.docmd("MAIL", "FROM:<second@client.test>")
        check(code == 250, f"MAIL: {code} {text!r}")
        s.docmd("RSET")
    finally:
        quit_and_wait_closed(s)
    recs = wait_records(proxy, mark, [h1, h2])
    check(recs[h2].get("backend_reused") is True,
          "the second session did not reuse the first one's backend connection: "
          f"{summarize(recs[h2])}")


def inherited_auth_refused(rig, proxy, sasl, auth, implicit=False, source="127.0.0.2"):
    """The attack: client 1 authenticates through tlsfront (STARTTLS, or
    implicit TLS as on 465) and quits; at once client 2 -- another address,
    plaintext, no AUTH -- tries to relay to an external domain. It must be
    refused, and no transaction in Postfix's log may carry a sasl_username."""
    time.sleep(REUSE_SETTLE)
    log = Maillog(sasl["maillog"])
    mark, lmark, t0 = proxy.records.mark(), log.mark(), time.monotonic()
    kind = "implicit" if implicit else "starttls"
    h1, h2 = f"authed-{kind}.client.test", f"anon-after-{kind}.client.test"
    tag = uniq(f"inherit-{kind}")
    sender, rcpt = f"{tag}@evil.test", f"victim-{tag}@{EXTERNAL}"
    s1 = authed_client(rig, proxy, h1, implicit=implicit)
    quit_and_wait_closed(s1)
    s2 = plain_client(proxy, h2, source)
    try:
        got = try_relay(s2, sender, rcpt, tag)
    finally:
        quit_and_wait_closed(s2)
    recs = wait_records(proxy, mark, [h1, h2])
    logins = auth.ok_since(t0)
    refused = got["mail"][0] >= 500 or got.get("rcpt", (0,))[0] >= 500
    # What Postfix did with client 2's commands: a reject line, or the relayed
    # message's delivery status. (A refusal by tlsfront itself leaves none.)
    try:
        text = log.wait_for(lmark, rf"reject: .*from=<{re.escape(sender)}>|"
                                   rf"to=<{re.escape(rcpt)}>.*status=",
                            timeout=5 if refused else LOG_TIMEOUT)
    except Fail:
        text = log.since(lmark)
    carried = re.findall(r"^.*sasl_username=.*$", text, re.M)
    relayed = re.findall(rf"^.*to=<{re.escape(rcpt)}>.*status=sent.*$", text, re.M)
    evidence = (f"\n    client 2 ({source}, plaintext, never sent AUTH): {got}"
                f"\n    records: client 1 {summarize(recs[h1])}"
                f"\n             client 2 {summarize(recs[h2])}"
                f"\n    logins the auth server accepted in this scenario: {len(logins)}"
                f"\n    Postfix log (smtpd/qmgr/discard lines since client 1 connected):\n"
                + indent(smtpd_lines(text)))
    check(len(logins) == 1, "rig: expected exactly client 1's login at the auth server" + evidence)
    if got.get("rcpt", (0,))[0] in (250, 251) or relayed:
        raise Fail("client 2 relayed as client 1's SASL user (inherited backend AUTH state)" + evidence)
    check(refused, "client 2 was not refused with a 5xx (the backend's own answer is "
                   "554 5.7.1 Relay access denied)" + evidence)
    check(not carried, "client 2 was refused, but Postfix logged a transaction with a sasl_username"
          + evidence)
    print(f"    (info) client 2 got {got}; its record: {summarize(recs[h2])}", flush=True)


def authenticated_relay_control(rig, proxy, sasl, auth):
    """Control: the authenticated client itself relays through tlsfront
    (RCPT 250, message relayed), and Postfix logs it with its sasl_username."""
    time.sleep(REUSE_SETTLE)
    log = Maillog(sasl["maillog"])
    mark, lmark = proxy.records.mark(), log.mark()
    helo = "authed-relay.client.test"
    tag = uniq("authed-relay")
    sender, rcpt = f"{tag}@client.test", f"{tag}@{EXTERNAL}"
    s = authed_client(rig, proxy, helo)
    try:
        got = try_relay(s, sender, rcpt, tag)
    finally:
        quit_and_wait_closed(s)
    check(got.get("rcpt", (0,))[0] == 250 and got.get("data", (0,))[0] == 250,
          f"the authenticated client could not relay through tlsfront: {got}")
    text = log.wait_for(lmark, rf"to=<{re.escape(rcpt)}>.*status=sent")
    check(re.search(rf"client=\S+\[{re.escape(sasl['proxy_source'])}\], sasl_method=PLAIN, "
                    rf"sasl_username={SASL_USER}\b", text),
          f"Postfix did not log the transaction with sasl_username={SASL_USER} from "
          f"{sasl['proxy_source']}:\n" + indent(smtpd_lines(text)))
    rec = wait_records(proxy, mark, [helo])[helo]
    assert_record(rec, tls="established", messages_accepted=1, backend_contacted=True)


def sasl_proxy(runner, rig, sasl, auth, name, reuse, cells):
    """One tlsfront in front of the SASL backend, its scenarios, SIGTERM."""
    proxy = SaslProxy(rig, name, sasl, reuse)
    prefix = f"proxy[{name}]"
    cells = [(f"{prefix} {label}", fn, kw) for label, fn, kw in cells]
    if runner.filter and not any(runner.filter.search(n) for n, _, _ in cells):
        return
    try:
        proxy.start()
    except Fail as e:
        proxy.stop()
        runner.report(f"{prefix} start", "FAIL", str(e))
        for n, _, _ in cells:
            runner.report(n, "FAIL", "proxy did not start")
        return
    try:
        for n, fn, kw in cells:
            runner.scenario(n, fn, rig, proxy, sasl, auth, **kw)
    finally:
        msg = proxy.stop()
        if msg:
            runner.report(f"{prefix} exits on SIGTERM", "FAIL", msg)


def scenarios(runner, rig):
    sasl = rig.get("sasl")
    if not sasl:
        print("NOTE security scenarios not run: no SASL backend in the rig description", flush=True)
        return
    direct = "sasl backend direct: anonymous relay 554, wrong password 535, AUTH relays (control)"
    reuse_cells = [
        ("anonymous session's backend connection reused by the next client (control)",
         anonymous_reuse_control, {}),
        ("AUTH on STARTTLS, then a plaintext client from another address: relay refused, "
         "no sasl_username in its transaction", inherited_auth_refused, {}),
        ("AUTH on implicit TLS (465), then a plaintext client from another address: relay refused, "
         "no sasl_username in its transaction", inherited_auth_refused,
         {"implicit": True, "source": "127.0.0.3"}),
        ("authenticated client relays to an external domain (control)", authenticated_relay_control, {}),
    ]
    noreuse_cells = [
        ("AUTH on STARTTLS, then a plaintext client from another address: relay refused (control)",
         inherited_auth_refused, {}),
    ]
    names = [direct] + [f"proxy[sasl, reuse {REUSE}] {c[0]}" for c in reuse_cells] \
        + [f"proxy[sasl, reuse off] {c[0]}" for c in noreuse_cells]
    if runner.filter and not any(runner.filter.search(n) for n in names):
        return
    try:
        auth = DovecotAuth(sasl["auth_port"], {SASL_USER: SASL_PASSWORD})
    except OSError as e:
        for n in names:
            runner.report(n, "FAIL", f"Dovecot auth server cannot listen on {sasl['auth_port']}: {e}")
        return
    auth.start()
    try:
        runner.scenario(direct, direct_control, rig, sasl, auth)
        sasl_proxy(runner, rig, sasl, auth, f"sasl, reuse {REUSE}", REUSE, reuse_cells)
        sasl_proxy(runner, rig, sasl, auth, "sasl, reuse off", "0s", noreuse_cells)
    finally:
        auth.stop()
