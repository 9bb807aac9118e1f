"""c: delivery through tlsfront, with every client (s_client, swaks,
smtplib, the Postfix sender), checked at the backend byte for byte and in
the proxy's record; several transactions in one session, a backend's
refusal passed through unchanged, 8-bit bodies, concurrent sessions, a
backend that is down, a proxy listening on [::1], and a burst of senders
against backend.max_connections."""

import os
import re
import smtplib
import socket
import subprocess
import threading
import time

from .clients import rcpt_reply, s_client_deliver, smtplib_deliver, smtplib_session
from .harness import CLIENT_TIMEOUT, Fail, RECORD_TIMEOUT, check, free_ports, run, start_or_fail, uniq
from .mail import (
    assert_same_message, check_backend_connects, check_sender_log, count_backend_connects,
    dot_stuff, make_message, sendmail_inject, wait_delivered,
)
from .matrix import matrix_cell
from .proxy import Proxy, assert_record, proxied_want


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


def resumed_with_one_ticket(rig, proxy, backend):
    """OpenSSL's client keeps the one TLS 1.3 ticket tlsfront sends and
    resumes with it: the first session is full, the second resumed (the
    records say so), both messages arrive, and both negotiate tlsfront's
    first suite, AES-128-GCM, though OpenSSL's own first choice is AES-256."""
    sess = os.path.join(proxy.dir, uniq("s_client") + ".sess")
    helo = "resume.client.test"
    for resumed, extra in ((False, ("-sess_out", sess)), (True, ("-sess_in", sess))):
        lp = uniq(f"resume-{int(resumed)}-{backend['name']}")
        rcpt = f"{lp}@tlsfront.test"
        mid, data = make_message(lp, rcpt)
        mark = proxy.records.mark()
        err = s_client_deliver(rig, proxy.port, helo, "sender@client.test", rcpt, data, extra)
        check("Ciphersuite: TLS_AES_128_GCM_SHA256" in err, f"s_client negotiated another suite:\n{err}")
        check(resumed or os.path.exists(sess), "s_client saved no session: no ticket arrived")
        assert_same_message(wait_delivered(backend, mid), data)
        assert_record(proxy.records.wait_one(mark),
                      **proxied_want(rig, helo, resumed=resumed, cipher_suite="TLS13_AES_128_GCM_SHA256"))


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


def deliver_at_once(rig, port, sends):
    """Opens one verified session per (helo, rcpt, data), all before any
    sends (a barrier), then one message each and QUIT; fails on any error."""
    errors = []
    barrier = threading.Barrier(len(sends), timeout=CLIENT_TIMEOUT)

    def worker(helo, rcpt, data):
        try:
            s = smtplib_session(rig, port, helo)
            try:
                barrier.wait()  # all sessions open at once
                check(not s.sendmail("sender@client.test", [rcpt], data), "recipient refused")
                s.quit()
            finally:
                s.close()
        except Exception as e:
            errors.append(f"{helo}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=job, daemon=True) for job in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT * 2)
    check(not any(t.is_alive() for t in threads), "a client thread did not finish")
    check(not errors, "; ".join(errors))


def concurrent_sessions(rig, proxy, backend, n=5):
    """n simultaneous verified sessions: every message delivered intact and
    one correct record per connection."""
    mark = proxy.records.mark()
    jobs = []
    for i in range(n):
        lp = uniq(f"conc{i}-{backend['name']}")
        rcpt = f"{lp}@tlsfront.test"
        mid, data = make_message(lp, rcpt)
        jobs.append((f"conc{i}.client.test", rcpt, mid, data))
    deliver_at_once(rig, proxy.port, [(h, r, d) for h, r, _, d in jobs])
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
    if not start_or_fail(runner, proxy, prefix, names):
        return
    try:
        runner.scenario(names[0], via_proxy, rig, proxy, backend, "smtplib-tls13", "TLSv1.3", False,
                        matrix=matrix_cell("smtplib-tls13", "TLSv1.3", False, proxy, "legacy-rsa"))
        runner.scenario(names[1], via_proxy, rig, proxy, backend, "smtplib-implicit", "TLSv1.3", False,
                        matrix=matrix_cell("smtplib-implicit", "TLSv1.3", False, proxy, "legacy-rsa"))
    finally:
        msg = proxy.stop()
        runner.report(f"{prefix} exits on SIGTERM", "FAIL" if msg else "PASS", msg or proxy.exit_note)



def backend_connections_of(pid, port):
    """Established connections process `pid` holds to 127.0.0.1:`port` (ss)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dst", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=5).stdout
    return sum(1 for line in out.splitlines() if re.search(rf"pid={pid}\b", line))


def burst_within_backend_limit(rig, proxy, backend, limit, n=8):
    """One sender keeps its session open after a message while n more arrive at
    once: Postfix never sees more than `limit` connections from this tlsfront
    (sampled with ss), every message is delivered once, nobody gets a 4xx (the
    idle session lends its connection and takes its turn for its second
    message)."""
    mark = proxy.records.mark()
    msgs = []

    def message(tag):
        lp = uniq(f"{tag}-{backend['name']}")
        rcpt = f"{lp}@tlsfront.test"
        mid, data = make_message(lp, rcpt)
        msgs.append((mid, data))
        return rcpt, data

    holder = smtplib_session(rig, proxy.port, "holder.client.test")
    seen, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            seen[0] = max(seen[0], backend_connections_of(proxy.proc.pid, backend["port"]))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    jobs = [message(f"burst{i}") for i in range(n)]
    try:
        rcpt, data = message("held")
        check(not holder.sendmail("sender@client.test", [rcpt], data), "recipient refused")
        deliver_at_once(rig, proxy.port,
                        [(f"burst{i}.client.test", r, d) for i, (r, d) in enumerate(jobs)])
        rcpt, data = message("held-again")
        check(not holder.sendmail("sender@client.test", [rcpt], data), "recipient refused")
        holder.quit()
    finally:
        stop.set()
        sampler.join(5)
        holder.close()
    for mid, data in msgs:
        assert_same_message(wait_delivered(backend, mid), data)
    check(1 <= seen[0] <= limit,
          f"tlsfront held {seen[0]} connections to the backend at once (limit {limit})")
    recs = proxy.records.since(mark)
    deadline = time.monotonic() + RECORD_TIMEOUT
    while time.monotonic() < deadline and len(recs) < n + 1:
        time.sleep(0.2)
        recs = proxy.records.since(mark)
    check(len(recs) == n + 1, f"expected {n + 1} records, got {len(recs)}")
    for r in recs:
        check(r.get("backend_error") is None, f"backend_error in {r}")
    print(f"    (info) at most {seen[0]} backend connections seen at once (limit {limit})",
          flush=True)


def backend_limit_scenarios(runner, rig, backend, limit=2):
    """A proxy with backend.max_connections = `limit` before the real Postfix."""
    certs = rig["certs"]
    p1, p2 = free_ports(2)
    proxy = Proxy(rig, "backend-limit", backend["port"], f"{certs}/proxy-ecdsa-fullchain.pem",
                  f"{certs}/proxy-ecdsa-key.pem", p1, p2)
    conf = os.path.join(proxy.dir, "limit.toml")
    with open(conf, "w") as f:
        f.write(f"[backend]\nmax_connections = {limit}\n")
    proxy.cmd += ["--config", conf]
    prefix = f"proxy[legacy-rsa, backend.max_connections = {limit}]"
    names = [f"{prefix} a burst of senders waits its turn: every message delivered, never more "
             f"than {limit} backend connections"]
    if runner.filter and not any(runner.filter.search(x) for x in names):
        return
    if not start_or_fail(runner, proxy, prefix, names):
        return
    try:
        runner.scenario(names[0], burst_within_backend_limit, rig, proxy, backend, limit)
    finally:
        msg = proxy.stop()
        runner.report(f"{prefix} exits on SIGTERM", "FAIL" if msg else "PASS", msg or proxy.exit_note)
