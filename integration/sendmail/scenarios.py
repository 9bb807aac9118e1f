#!/usr/bin/env python3
"""Scenarios of the Sendmail rig (driven by integration/sendmail/run.sh).

run.sh has already started Sendmail (legacy backend, 1024-bit RSA cert) and
tlsfront in front of it; their addresses and files come in SM_RIG_* env vars.
Each scenario prints "PASS name" or "FAIL name: detail" (plus indented
"  info:" lines); run.sh counts them. Every client call has a timeout and
every wait is bounded.
"""
import email.utils
import glob
import json
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import legacylog  # noqa: E402  (integration/lib, shared with the Postfix rig)

E = os.environ
WORK = E["SM_RIG_WORK"]
CA = E["SM_RIG_CA"]
SM_PORT = int(E["SM_RIG_SM_PORT"])
PROXY_PORT = int(E["SM_RIG_PROXY_PORT"])
SMLOG = E["SM_RIG_SMLOG"]
SPOOL = E["SM_RIG_SPOOL"]
RECORDS = E["SM_RIG_RECORDS"]
PROXY_LOG = E["SM_RIG_PROXY_LOG"]
PROXY_OK = E.get("SM_RIG_PROXY_OK") == "1"
PROXY2_PORT = int(E["SM_RIG_PROXY2_PORT"])
PROXY2_OK = E.get("SM_RIG_PROXY2_OK") == "1"
PROXY2_LOG = E["SM_RIG_PROXY2_LOG"]
RECORDS2 = E["SM_RIG_RECORDS2"]
PROXY_HOSTNAME = E["SM_RIG_PROXY_HOSTNAME"]
LEGACY = E["SM_RIG_LEGACY_HOSTNAME"]
PROXY_BIN = E.get("SM_RIG_PROXY_BIN", "")
PKI = E.get("SM_RIG_PKI", "")

ECDHE_GROUPS = {"X25519MLKEM768", "X25519", "secp256r1", "secp384r1"}
WEAK_KEY_RE = re.compile(r"ee key too small|key too small|CA_KEY_TOO_SMALL|EE_KEY_TOO_SMALL", re.I)
CLIENT_TIMEOUT = 30


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def info(msg):
    for line in str(msg).splitlines():
        print(f"  info: {line}", flush=True)


def tail(path, n=12):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e})"


def sm_log():
    with open(SMLOG, errors="replace") as f:
        return f.read()


def wait_for(fn, timeout, step=0.2):
    """Poll fn() until it returns something truthy or timeout (seconds) passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def uniq(tag):
    return f"{tag}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------
# Messages, delivered files, records, Sendmail log
# --------------------------------------------------------------------------

def make_message(tag, rcpt, sender):
    """(message-id, bytes with CRLF line ends) with a dot-leading body line."""
    msgid = f"<{uniq(tag)}@client.tlsfront.test>"
    lines = [
        f"Message-ID: {msgid}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"From: Rig Sender <{sender}>",
        f"To: Legacy User <{rcpt}>",
        f"Subject: tlsfront sendmail rig {tag}",
        "X-Rig-Scenario: " + tag,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"Hello legacy Sendmail, this is {tag}.",
        ".a line that begins with a dot (dot-stuffed on the wire)",
        "..and one that begins with two dots",
        ".",
        "    indented line with trailing spaces   ",
        "",
        "last line",
    ]
    return msgid, ("\r\n".join(lines) + "\r\n").encode("ascii")


def find_delivered(msgid, timeout=25):
    needle = f"Message-ID: {msgid}".encode()

    def look():
        for path in sorted(glob.glob(os.path.join(SPOOL, "*.eml"))):
            with open(path, "rb") as f:
                data = f.read()
            if needle in data:
                try:
                    with open(path[:-4] + ".rcpt") as f:
                        rcpts = f.read().split()
                except OSError:
                    rcpts = []
                return path, data, rcpts
        return None
    return wait_for(look, timeout)


def compare_delivered(original, delivered):
    """The original (headers + body) must be byte-identical at the end of the
    delivered file, after normalising CRLF to LF; what precedes it must be
    header lines Sendmail added (Received, Return-Path, ...)."""
    orig = original.replace(b"\r\n", b"\n")
    got = delivered.replace(b"\r\n", b"\n")
    if not got.endswith(orig):
        # Show the first differing line to make the failure readable.
        o_lines = orig.split(b"\n")
        idx = got.find(o_lines[0])
        g_lines = got[idx:].split(b"\n") if idx >= 0 else got.split(b"\n")
        for i, (a, b) in enumerate(zip(o_lines, g_lines)):
            if a != b:
                raise Fail(f"delivered message differs at original line {i + 1}: sent {a!r}, got {b!r}")
        raise Fail(f"delivered message does not end with the original ({len(orig)} bytes sent, "
                   f"{len(got)} bytes delivered)")
    prefix = got[: len(got) - len(orig)]
    added = []
    for line in prefix.split(b"\n"):
        if not line:
            continue
        check(re.match(rb"^([A-Za-z0-9-]+:|[ \t])", line),
              f"delivered file has a non-header line before the original: {line!r}")
        m = re.match(rb"^([A-Za-z0-9-]+):", line)
        if m:
            added.append(m.group(1).decode())
    return added


def records_for(pred, path=RECORDS):
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip() and line.endswith(b"\n"):
                    rec = json.loads(line)
                    if pred(rec):
                        out.append(rec)
    except FileNotFoundError:
        pass
    return out


def wait_record(pred, timeout=20, path=RECORDS):
    recs = wait_for(lambda: records_for(pred, path), timeout)
    check(recs, f"no tlsfront record matching the session within {timeout}s\n{tail(path, 3)}")
    check(len(recs) == 1, f"{len(recs)} records match the session: {recs}")
    return recs[0]


def assert_record(rec, version):
    problems = []
    want = {"tls": "established", "tls_version": version, "starttls_used": True,
            "messages_accepted": 1, "backend_contacted": True}
    for k, v in want.items():
        if rec.get(k) != v:
            problems.append(f"{k}={rec.get(k)!r}, want {v!r}")
    if rec.get("kx_group") not in ECDHE_GROUPS:
        problems.append(f"kx_group={rec.get('kx_group')!r} is not an ECDHE group")
    check(not problems, "record mismatch: " + "; ".join(problems) + "\n    record: " + json.dumps(rec))


def sendmail_log_for(msgid, timeout=15, client="[127.0.0.1]"):
    """Sendmail's from= line for msgid (must show relay ... [127.0.0.1]) and
    the to= line with stat=Sent for the same queue id."""
    def look():
        log = sm_log()
        m = re.search(r"^.*sendmail\[\d+\]: (\w+): from=.*msgid=" + re.escape(msgid) + r".*$", log, re.M)
        if not m:
            return None
        qid = m.group(1)
        sent = re.search(r"^.*: " + qid + r": to=.*stat=Sent.*$", log, re.M)
        return (m.group(0), sent.group(0)) if sent else None
    got = wait_for(look, timeout)
    check(got, f"Sendmail's log has no from=/to=...stat=Sent lines for msgid={msgid}\n{tail(SMLOG)}")
    from_line, to_line = got
    check(client in from_line, f"Sendmail's from= line does not show {client}: {from_line}")
    return from_line, to_line


def proxy_needed():
    check(PROXY_OK, f"tlsfront is not running (build failed or did not start)\n{tail(PROXY_LOG)}")


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

def sendmail_refuses_weak_cert():
    with smtplib.SMTP("127.0.0.1", SM_PORT, local_hostname="probe.client.tlsfront.test",
                      timeout=CLIENT_TIMEOUT) as s:
        code, banner = s.ehlo()
        check(code == 250, f"EHLO to Sendmail: {code} {banner!r}")
        offers = s.has_extn("starttls")
        keywords = " ".join(banner.decode(errors="replace").splitlines()[1:])
        s.quit()
    info(f"Sendmail EHLO reply: {banner.decode(errors='replace').splitlines()[0]} / {keywords}")
    weak = wait_for(lambda: [l for l in sm_log().splitlines() if WEAK_KEY_RE.search(l)], 10)
    for line in sm_log().splitlines():
        if "STARTTLS" in line and "CRLFile" not in line:
            info(f"Sendmail log: {line}")
    check(weak, f"Sendmail's log has no line about the 1024-bit key being too small\n{tail(SMLOG)}")
    if not offers:
        info("outcome: Sendmail does NOT offer STARTTLS (its TLS setup failed on the 1024-bit key)")
        return
    # Offered: then a modern client must fail against it, with the real error.
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{SM_PORT}",
                        "-CAfile", CA, "-verify_return_error", "-servername", LEGACY],
                       input=b"QUIT\r\n", capture_output=True, timeout=CLIENT_TIMEOUT)
    out = (p.stdout + p.stderr).decode(errors="replace")
    errs = [l for l in out.splitlines() if "error" in l.lower()]
    check(p.returncode != 0, f"Sendmail offers STARTTLS and a modern client completed TLS with it:\n{out[-800:]}")
    info("outcome: Sendmail offers STARTTLS, modern client fails: " + " | ".join(errs[:3]))


def send_via_proxy_smtplib(tag, max_version=None):
    proxy_needed()
    rcpt = f"{uniq('user')}@{LEGACY}"
    sender = f"sender@client.tlsfront.test"
    msgid, msg = make_message(tag, rcpt, sender)
    helo = f"{uniq(tag)}.client.tlsfront.test"
    ctx = ssl.create_default_context(cafile=CA)
    if max_version:
        ctx.maximum_version = max_version
    s = smtplib.SMTP(timeout=CLIENT_TIMEOUT)
    try:
        s.connect("127.0.0.1", PROXY_PORT)
        client_port = s.sock.getsockname()[1]
        s._host = PROXY_HOSTNAME  # server_hostname for certificate verification
        s.ehlo(helo)
        check(s.has_extn("starttls"), f"tlsfront does not offer STARTTLS: {s.ehlo_resp!r}")
        s.starttls(context=ctx)
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        s.ehlo(helo)
        refused = s.sendmail(sender, [rcpt], msg)
        check(not refused, f"recipients refused: {refused}")
        s.quit()
    finally:
        s.close()
    info(f"client side: {version} {cipher}, client port {client_port}")
    return msgid, msg, rcpt, helo, client_port, version


def check_delivery(msgid, msg, rcpt, client="[127.0.0.1]"):
    found = find_delivered(msgid)
    check(found, f"message {msgid} not delivered into {SPOOL} within 25s\n{tail(SMLOG)}")
    path, data, rcpts = found
    check(rcpts == [rcpt.split("@")[0]], f"local mailer got recipients {rcpts}, want {rcpt.split('@')[0]}")
    added = compare_delivered(msg, data)
    check(data.count(b"\nReceived: ") + data.startswith(b"Received: ") == 1,
          "expected exactly one Received header (Sendmail's)")
    info(f"delivered to {os.path.basename(path)} (original headers and body byte-identical); "
         f"headers Sendmail added before the original: {', '.join(added)}")
    rcvd = re.search(rb"^Received: from [^\n]*", data, re.M)
    info(f"  {rcvd.group(0).decode(errors='replace') if rcvd else '(no Received)'}")
    from_line, to_line = sendmail_log_for(msgid, client=client)
    info(f"Sendmail log: {from_line}")
    info(f"Sendmail log: {to_line}")


def check_delivery_and_record(msgid, msg, rcpt, version, rec):
    check_delivery(msgid, msg, rcpt)
    assert_record(rec, version)
    info("record: " + json.dumps({k: rec.get(k) for k in (
        "tls", "tls_version", "kx_group", "cipher_suite", "starttls_used", "messages_accepted",
        "backend_contacted", "helo", "client_port", "close_reason")}))


def tlsfront_delivers_to_sendmail_tls13():
    msgid, msg, rcpt, helo, port, version = send_via_proxy_smtplib("tls13")
    check(version == "TLSv1.3", f"client negotiated {version}, want TLSv1.3")
    rec = wait_record(lambda r: r.get("client_port") == port)
    check_delivery_and_record(msgid, msg, rcpt, "TLSv1.3", rec)


def tlsfront_delivers_to_sendmail_tls12_swaks():
    proxy_needed()
    tag = "swaks-tls12"
    rcpt = f"{uniq('user')}@{LEGACY}"
    sender = "swaks@client.tlsfront.test"
    msgid, msg = make_message(tag, rcpt, sender)
    helo = f"{uniq('swaks')}.client.tlsfront.test"
    data_file = os.path.join(WORK, f"{tag}.eml")
    with open(data_file, "wb") as f:
        # swaks appends CRLF before its closing dot unless the data ends with
        # one itself (it strips a trailing "\n.\n" and sends the rest as-is).
        f.write(msg.replace(b"\r\n", b"\n") + b".\n")
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(PROXY_PORT), "--tls",
           "--tls-protocol", "tlsv1_2", "--tls-verify", "--tls-ca-path", CA,
           "--tls-sni", PROXY_HOSTNAME, "--ehlo", helo, "--from", sender, "--to", rcpt,
           "--data", "@" + data_file, "--timeout", "30"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=90)
    out = (p.stdout + p.stderr).decode(errors="replace")
    with open(os.path.join(WORK, "swaks-tls12.out"), "w") as f:
        f.write(" ".join(cmd) + "\n" + out)
    tls_line = next((l for l in out.splitlines() if "TLS started" in l), "")
    check(p.returncode == 0, f"swaks exited {p.returncode}:\n{out[-1500:]}")
    info(f"swaks: {tls_line.strip()}")
    check("TLSv1.2" in tls_line, f"swaks did not report TLSv1.2: {tls_line!r}")
    rec = wait_record(lambda r: r.get("helo") == helo)
    check_delivery_and_record(msgid, msg, rcpt, "TLSv1.2", rec)


def sendmail_no_open_relay():
    """Sendmail relays only for itself: from 127.0.0.2 (not 'localhost' to
    it) a foreign recipient is refused, a local one accepted. No mail is sent."""
    outsider = "someone@elsewhere.example"
    with smtplib.SMTP(timeout=CLIENT_TIMEOUT, source_address=("127.0.0.2", 0)) as s:
        s.connect("127.0.0.1", SM_PORT)
        s.ehlo("outsider.example")
        code, text = s.mail("spammer@elsewhere.example")
        check(code == 250, f"MAIL FROM from 127.0.0.2: {code} {text!r}")
        code, text = s.rcpt(outsider)
        info(f"from 127.0.0.2 RCPT TO:<{outsider}> -> {code} {text.decode(errors='replace')}")
        check(code >= 500, f"Sendmail accepted relaying for an outsider: {code} {text!r}")
        code, text = s.rcpt(f"user@{LEGACY}")
        info(f"from 127.0.0.2 RCPT TO:<user@{LEGACY}> -> {code} {text.decode(errors='replace')}")
        check(code == 250, f"local recipient refused: {code} {text!r}")
        s.rset()
        s.quit()


def tls_session(port, helo):
    """smtplib session to tlsfront on port, after STARTTLS (verified) and EHLO."""
    ctx = ssl.create_default_context(cafile=CA)
    s = smtplib.SMTP(timeout=CLIENT_TIMEOUT)
    s.connect("127.0.0.1", port)
    s._host = PROXY_HOSTNAME
    s.ehlo(helo)
    s.starttls(context=ctx)
    s.ehlo(helo)
    return s


def tlsfront_source_address_keeps_sendmail_closed():
    """Sendmail trusts 127.0.0.1 as a relay client by a built-in rule
    (proto.m4: "R127.0.0.1 $@ RELAY originated locally"), whatever
    relay-domains or the access map say. tlsfront connecting from 127.0.0.1
    therefore opens the relay to every client (shown as a note); with
    backend.source_address = 127.0.0.2 Sendmail refuses foreign recipients
    again while local mail is still delivered."""
    outsider = "someone@elsewhere.example"
    sender = "sender@client.tlsfront.test"
    if PROXY_OK:
        s = tls_session(PROXY_PORT, "relaytest.client.tlsfront.test")
        try:
            code, text = s.mail(sender)
            check(code == 250, f"MAIL via tlsfront: {code} {text!r}")
            code, text = s.rcpt(outsider)
            note = "ACCEPTED: Sendmail relays for anyone behind a 127.0.0.1 tlsfront" if code == 250 else "refused"
            info(f"NOTE via tlsfront connecting from 127.0.0.1: RCPT TO:<{outsider}> -> {code} "
                 f"{text.decode(errors='replace')} ({note}; nothing was sent, RSET)")
            s.rset()
            s.quit()
        finally:
            s.close()
    check(PROXY2_OK, f"tlsfront with backend.source_address=127.0.0.2 is not running\n{tail(PROXY2_LOG)}")
    rcpt = f"{uniq('user')}@{LEGACY}"
    msgid, msg = make_message("src2", rcpt, sender)
    helo = f"{uniq('src2')}.client.tlsfront.test"
    s = tls_session(PROXY2_PORT, helo)
    try:
        code, text = s.mail(sender)
        check(code == 250, f"MAIL via tlsfront (source 127.0.0.2): {code} {text!r}")
        code, text = s.rcpt(outsider)
        info(f"via tlsfront connecting from 127.0.0.2: RCPT TO:<{outsider}> -> {code} {text.decode(errors='replace')}")
        check(code >= 500, f"Sendmail relayed for an outsider through tlsfront from 127.0.0.2: {code} {text!r}")
        code, text = s.rcpt(rcpt)
        check(code == 250, f"local recipient refused through tlsfront (source 127.0.0.2): {code} {text!r}")
        code, text = s.data(msg)
        check(code == 250, f"DATA through tlsfront (source 127.0.0.2): {code} {text!r}")
        s.quit()
    finally:
        s.close()
    check_delivery(msgid, msg, rcpt, client="[127.0.0.2]")
    rec = wait_record(lambda r: r.get("helo") == helo, path=RECORDS2)
    problems = [f"{k}={rec.get(k)!r}" for k, v in
                {"tls": "established", "messages_accepted": 1, "backend_contacted": True}.items()
                if rec.get(k) != v]
    check(not problems, "record mismatch: " + "; ".join(problems) + "\n    record: " + json.dumps(rec))


def legacy_log_catches_direct_sessions():
    """tlsfront report --legacy-log on this Sendmail's own log: one message
    through tlsfront (from 127.0.0.2) and two sessions straight to Sendmail
    from other addresses: 127.0.0.4 delivers a message, 127.0.0.3 only says
    EHLO (both in plaintext: this Sendmail cannot load its 1024-bit
    certificate, so it offers no STARTTLS; the Postfix rig has a direct TLS
    session). The report names exactly the two direct peers, not tlsfront's
    sources (127.0.0.1 and 127.0.0.2: both tlsfronts of the rig), and says
    NO. Every record both tlsfronts wrote matches docs/record.schema.json."""
    check(PROXY2_OK, f"tlsfront with backend.source_address=127.0.0.2 is not running\n{tail(PROXY2_LOG)}")
    # The scenarios before made sessions too; start in a second of our own.
    time.sleep(1.5)
    since = legacylog.utc_now_floor()
    sender = "sender@client.tlsfront.test"
    rcpt = f"{uniq('user')}@{LEGACY}"
    msgid, msg = make_message("legacylog", rcpt, sender)
    s = tls_session(PROXY2_PORT, f"{uniq('legacylog')}.client.tlsfront.test")
    try:
        check(s.mail(sender)[0] == 250, "MAIL via tlsfront refused")
        check(s.rcpt(rcpt)[0] == 250, "RCPT via tlsfront refused")
        check(s.data(msg)[0] == 250, "DATA via tlsfront refused")
        s.quit()
    finally:
        s.close()
    check_delivery(msgid, msg, rcpt, client="[127.0.0.2]")
    direct_rcpt = f"{uniq('user')}@{LEGACY}"
    direct_id, direct_msg = make_message("legacylog-direct", direct_rcpt, sender)
    with smtplib.SMTP(timeout=CLIENT_TIMEOUT, source_address=("127.0.0.4", 0)) as d:
        d.connect("127.0.0.1", SM_PORT)
        d.ehlo("direct.client.tlsfront.test")
        d.sendmail(sender, [direct_rcpt], direct_msg)
    try:
        legacylog.direct_session(SM_PORT, "127.0.0.3")
        legacylog.wait_log(SMLOG, "[127.0.0.3] did not issue")
        rep = legacylog.report(PROXY_BIN, [RECORDS, RECORDS2], SMLOG, ["127.0.0.1", "127.0.0.2"], since)
        legacylog.check_direct(rep, {"127.0.0.3": "plain", "127.0.0.4": "plain"},
                               ["127.0.0.1", "127.0.0.2"], SMLOG)
        peers = {p["ip"]: p for p in rep["legacy_log"]["direct_peers"]}
        check(peers["127.0.0.4"]["messages"] == 1,
              f"the direct message was not counted: {json.dumps(peers)}\n{tail(SMLOG)}")
        info("direct peers: " + json.dumps(rep["legacy_log"]["direct_peers"]))
        n = legacylog.check_schema([RECORDS, RECORDS2])
        info(f"{n} records match docs/record.schema.json")
    except legacylog.Problem as e:
        raise Fail(str(e))
def tlsfront_check(source=None):
    """`tlsfront check --json` from flags against Sendmail: (exit code, findings by code)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    cmd = [PROXY_BIN, "check", "--json", "--listen", f"127.0.0.1:{port}",
           "--backend", f"127.0.0.1:{SM_PORT}", "--hostname", PROXY_HOSTNAME,
           "--cert", f"{PKI}/proxy-fullchain.pem", "--key", f"{PKI}/proxy-key.pem",
           # The rig's tlsfront runs as root, not as the unit's dynamic user.
           "--service-user", "root"]
    if source:
        cmd += ["--source-address", source]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise Fail(f"timed out: {' '.join(cmd)}")
    try:
        rep = json.loads(p.stdout)
    except ValueError:
        raise Fail(f"check printed no JSON (exit {p.returncode}): {p.stdout[-800:]!r} {p.stderr[-800:]!r}")
    return p.returncode, {f["code"]: f for f in rep["findings"]}


def wait_log(path, pattern, timeout=20):
    line = wait_for(lambda: next((l for l in open(path, errors="replace").read().splitlines()
                                  if re.search(pattern, l)), None), timeout)
    check(line, f"no line matching {pattern!r} in {path} within {timeout}s\n{tail(path)}")
    return line


def relay_guard_fires_against_sendmail():
    """The open-relay guard (issue 12): `tlsfront check` asks Sendmail, from
    the address tlsfront connects from, to take RCPT TO:<relay-test@RANDOM.
    example.net> after MAIL FROM:<> (then RSET; never DATA). From 127.0.0.1
    Sendmail's built-in trust accepts it: backend_open_relay, an error naming
    the fix. With --source-address 127.0.0.2 Sendmail says 550 5.7.1
    Relaying denied: backend_relay_refused. The two running tlsfronts logged
    the same verdicts at start."""
    check(PROXY_BIN and os.access(PROXY_BIN, os.X_OK), f"no tlsfront binary ({PROXY_BIN!r})")
    rc, f = tlsfront_check()
    check("backend_open_relay" in f, f"no backend_open_relay finding (exit {rc}): {sorted(f)}")
    msg = f["backend_open_relay"]["message"]
    info(f"check from 127.0.0.1 (exit {rc}): {msg[:160]}...")
    check(rc == 1 and f["backend_open_relay"]["level"] == "error", f"exit {rc}: {msg}")
    for needle in ["from tlsfront's address 127.0.0.1", "backend.source_address", "--source-address"]:
        check(needle in msg, f"{needle!r} not in: {msg}")
    rc, f = tlsfront_check("127.0.0.2")
    check("backend_relay_refused" in f, f"no backend_relay_refused finding (exit {rc}): "
          + json.dumps({k: v["message"] for k, v in f.items() if v["level"] != "ok"}))
    msg = f["backend_relay_refused"]["message"]
    info(f"check with --source-address 127.0.0.2 (exit {rc}): {msg}")
    others = {k: v["message"] for k, v in f.items() if v["level"] == "error"}
    check(rc == 0 and "5.7.1" in msg and "127.0.0.2" in msg, f"exit {rc}: {msg}; errors: {others}")
    # The relay tests never reached DATA: Sendmail logs each accepted one as
    # a transaction ended by RSET (stat=RSET), never a delivery attempt.
    tests = [l for l in sm_log().splitlines()
             if re.search(r"to=<relay-test@tlsfront-[0-9a-f]+\.example\.net>", l)]
    check(tests, "Sendmail logged no relay test")
    check(all("stat=RSET" in l for l in tests),
          "a relay test left a delivery attempt in Sendmail's log:\n" + "\n".join(tests))
    info(f"Sendmail's log: {tests[0][-120:]}")
    if PROXY_OK:
        line = wait_log(PROXY_LOG, r"WARN.*OPEN RELAY")
        info(f"tlsfront (127.0.0.1) at start: {line[-160:]}")
    if PROXY2_OK:
        line = wait_log(PROXY2_LOG, r"refuses to relay from tlsfront's address 127\.0\.0\.2")
        info(f"tlsfront (127.0.0.2) at start: {line[-160:]}")


SCENARIOS = [
    sendmail_refuses_weak_cert,
    tlsfront_delivers_to_sendmail_tls13,
    tlsfront_delivers_to_sendmail_tls12_swaks,
    sendmail_no_open_relay,
    tlsfront_source_address_keeps_sendmail_closed,
    legacy_log_catches_direct_sessions,
    relay_guard_fires_against_sendmail,
]


def main():
    only = E.get("SM_RIG_SCENARIOS")
    for fn in SCENARIOS:
        name = fn.__name__
        if only and not re.search(only, name):
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Fail as e:
            first, _, rest = str(e).partition("\n")
            print(f"FAIL {name}: {first}", flush=True)
            if rest:
                info(rest)
            continue
        except Exception as e:  # a crash in a scenario is a failure, not a rig abort
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            continue
        print(f"PASS {name}", flush=True)
        info(f"took {time.monotonic() - t0:.1f}s")
    print("scenarios: done", flush=True)


if __name__ == "__main__":
    main()
